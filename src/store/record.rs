//! One execution as the history keeps it: a row of the `executions` table.

use std::collections::BTreeMap;

use rusqlite::Row;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::model::{ExecutionState, JobStatus, OutputSummary, Progress, StopReason, Stream};

/// An execution's record, typed: each column is decoded once, here, and a column that does not decode is an
/// error (see [`RecordError`]), never read as something else. Times are milliseconds since the Unix epoch;
/// `output`, `progress`, `held_open` and `job` are kept as JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecutionRecord {
    pub id: Uuid,
    pub workflow: String,
    pub params: Map<String, Value>,
    pub argv: Vec<String>,
    pub cwd: String,
    pub idempotency_key: Option<String>,
    pub state: ExecutionState,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub error: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub pid: Option<u32>,
    /// The leader's start time in clock ticks after boot (with `pid`, names one process).
    pub pid_start: Option<u64>,
    /// The instance that runs (or ran) it.
    pub owner: String,
    pub stop_request: Option<StopReason>,
    pub output: Option<OutputSummary>,
    pub progress: Option<Progress>,
    /// Streams a descendant kept open after the workflow exited (NULL in the row when none).
    pub held_open: Vec<Stream>,
    pub log_bytes: u64,
    /// The remote job (JSON), for an execution on a remote engine.
    pub job: Option<JobStatus>,
    /// For a record as a listing loads it (see [`LISTED_COLUMNS`]): the whole length in bytes of each string
    /// param loaded cut short. Empty when the params are whole.
    pub params_bytes: BTreeMap<String, usize>,
}

/// A record's place in a listing (newest first): its creation time, then the order records were written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListKey {
    pub created_at: i64,
    pub rowid: i64,
}

pub(super) const COLUMNS: &str = "id, workflow, params, argv, cwd, idempotency_key, state, exit_code, signal, error, \
     created_at, started_at, finished_at, pid, pid_start, owner, stop_request, output, progress, held_open, log_bytes, job";

/// A listing shows at most this many characters of a string param (a status echoes 256 bytes), so it loads no
/// more: more than that of a long value is cut before it leaves SQLite.
pub const LISTED_PARAM_CHARS: usize = 257;

/// Params up to this size are loaded whole by a listing: cutting them would cost more than it saves.
const LISTED_WHOLE_PARAMS_BYTES: usize = 4096;

/// The columns a listing loads: as [`COLUMNS`], but without `argv` (a listing does not show it), with long
/// string params cut to [`LISTED_PARAM_CHARS`] characters, and the whole lengths of those (`params_bytes`) last.
pub(super) static LISTED_COLUMNS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let big = format!("octet_length(params) > {LISTED_WHOLE_PARAMS_BYTES}");
    let long = format!("type = 'text' AND octet_length(value) > {LISTED_PARAM_CHARS}");
    COLUMNS
        .replacen(
            "params, argv",
            &format!(
                "CASE WHEN {big} THEN (SELECT json_group_object(key, CASE WHEN {long} THEN \
                 substr(value, 1, {LISTED_PARAM_CHARS}) ELSE params -> fullkey END) FROM json_each(params)) \
                 ELSE params END, '[]'"
            ),
            1,
        )
        .replace(
            ", job",
            &format!(
                ", job, CASE WHEN {big} THEN (SELECT json_group_object(key, octet_length(value)) \
                 FROM json_each(params) WHERE {long}) END"
            ),
        )
});

/// A row of the history that does not decode: which execution, which column, and why.
#[derive(Debug, thiserror::Error)]
#[error("the history's record of execution {id} is unreadable (column {column})")]
pub struct RecordError {
    pub id: String,
    pub column: &'static str,
    /// What was wrong with it (for a value that did not convert, the conversion's own error: rusqlite's
    /// wrapper would say it twice).
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// A JSON column: written from and read into its typed value.
pub(super) struct Json<T>(pub T);

impl<T: Serialize> ToSql for Json<T> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        serde_json::to_string(&self.0)
            .map(ToSqlOutput::from)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
    }
}

impl<T: DeserializeOwned> FromSql for Json<T> {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        serde_json::from_str(value.as_str()?)
            .map(Json)
            .map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

/// The unfinished states as an SQL list, `('queued', 'running')`, made from [`ExecutionState`]. A literal list
/// rather than bound parameters: SQLite uses the partial index `executions_unfinished` only for a query whose
/// terms match its own.
pub(super) static UNFINISHED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let words: Vec<String> = ExecutionState::ALL
        .into_iter()
        .filter(|s| !s.is_terminal())
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    format!("({})", words.join(", "))
});

const COLUMN_NAMES: [&str; 23] = [
    "id",
    "workflow",
    "params",
    "argv",
    "cwd",
    "idempotency_key",
    "state",
    "exit_code",
    "signal",
    "error",
    "created_at",
    "started_at",
    "finished_at",
    "pid",
    "pid_start",
    "owner",
    "stop_request",
    "output",
    "progress",
    "held_open",
    "log_bytes",
    "job",
    "params_bytes",
];

impl ExecutionRecord {
    /// A queued execution of `workflow` owned by `owner`, created at `created_at` (ms): nothing run, nothing
    /// printed yet. What a test or a benchmark sets beyond that, it sets with `..ExecutionRecord::queued(..)`.
    pub fn queued(id: Uuid, workflow: &str, argv: Vec<String>, owner: &str, created_at: i64) -> ExecutionRecord {
        ExecutionRecord {
            id,
            workflow: workflow.to_owned(),
            params: Map::new(),
            argv,
            cwd: "/".to_owned(),
            idempotency_key: None,
            state: ExecutionState::Queued,
            exit_code: None,
            signal: None,
            error: None,
            created_at,
            started_at: None,
            finished_at: None,
            pid: None,
            pid_start: None,
            owner: owner.to_owned(),
            stop_request: None,
            output: None,
            progress: None,
            held_open: Vec::new(),
            log_bytes: 0,
            job: None,
            params_bytes: BTreeMap::new(),
        }
    }

    /// Whether the execution is still queued or running (as far as the record says).
    pub fn unfinished(&self) -> bool {
        !self.state.is_terminal()
    }

    /// Decodes a row; a column that does not decode is a [`RecordError`] naming the execution and the column.
    pub(super) fn decode(row: &Row<'_>) -> Result<ExecutionRecord, RecordError> {
        Self::from_row(row).map_err(|source| {
            let column = match &source {
                rusqlite::Error::FromSqlConversionFailure(i, ..)
                | rusqlite::Error::InvalidColumnType(i, ..)
                | rusqlite::Error::IntegralValueOutOfRange(i, _) => COLUMN_NAMES.get(*i).copied().unwrap_or("?"),
                _ => "?",
            };
            RecordError {
                id: row.get::<_, String>(0).unwrap_or_else(|_| "(unreadable id)".to_owned()),
                column,
                source: match source {
                    rusqlite::Error::FromSqlConversionFailure(_, _, inner) => inner,
                    other => Box::new(other),
                },
            }
        })
    }

    fn from_row(row: &Row<'_>) -> rusqlite::Result<ExecutionRecord> {
        let text = |i: usize| -> rusqlite::Result<String> { row.get(i) };
        let json_err = |i: usize, e: serde_json::Error| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
        };
        let id: String = row.get(0)?;
        Ok(ExecutionRecord {
            id: Uuid::parse_str(&id)
                .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))?,
            workflow: row.get(1)?,
            params: serde_json::from_str(&text(2)?).map_err(|e| json_err(2, e))?,
            argv: serde_json::from_str(&text(3)?).map_err(|e| json_err(3, e))?,
            cwd: row.get(4)?,
            idempotency_key: row.get(5)?,
            state: row.get(6)?,
            exit_code: row.get(7)?,
            signal: row.get(8)?,
            error: row.get(9)?,
            created_at: row.get(10)?,
            started_at: row.get(11)?,
            finished_at: row.get(12)?,
            pid: row.get(13)?,
            pid_start: row.get::<_, Option<i64>>(14)?.map(|v| v as u64),
            owner: row.get(15)?,
            stop_request: row.get(16)?,
            output: row.get::<_, Option<Json<_>>>(17)?.map(|j| j.0),
            progress: row.get::<_, Option<Json<_>>>(18)?.map(|j| j.0),
            held_open: row.get::<_, Option<Json<_>>>(19)?.map(|j| j.0).unwrap_or_default(),
            log_bytes: row.get::<_, i64>(20)? as u64,
            job: row.get::<_, Option<Json<_>>>(21)?.map(|j| j.0),
            params_bytes: match row.as_ref().column_count() > 22 {
                true => row
                    .get::<_, Option<String>>(22)?
                    .map(|t| serde_json::from_str(&t).map_err(|e| json_err(22, e)))
                    .transpose()?
                    .unwrap_or_default(),
                false => BTreeMap::new(),
            },
        })
    }
}
