//! One execution as the history keeps it: a row of the `executions` table.

use std::collections::BTreeMap;

use rusqlite::Row;
use serde_json::{Map, Value};
use uuid::Uuid;

/// An execution's record. Times are milliseconds since the Unix epoch; `output`, `progress` and `held_open` are
/// JSON written by the engine.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecutionRecord {
    pub id: Uuid,
    pub workflow: String,
    pub params: Map<String, Value>,
    pub argv: Vec<String>,
    pub cwd: String,
    pub idempotency_key: Option<String>,
    pub state: String,
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
    pub stop_request: Option<String>,
    pub output: Option<String>,
    pub progress: Option<String>,
    pub held_open: Option<String>,
    pub log_bytes: u64,
    /// The remote job (JSON), for an execution on a remote engine.
    pub job: Option<String>,
    /// For a record as a listing loads it (see [`LISTED_COLUMNS`]): the whole length in bytes of each string
    /// param loaded cut short. Empty when the params are whole.
    pub params_bytes: BTreeMap<String, usize>,
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

impl ExecutionRecord {
    /// Whether the execution is still queued or running (as far as the record says).
    pub fn unfinished(&self) -> bool {
        matches!(self.state.as_str(), "queued" | "running")
    }

    pub(super) fn from_row(row: &Row<'_>) -> rusqlite::Result<ExecutionRecord> {
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
            output: row.get(17)?,
            progress: row.get(18)?,
            held_open: row.get(19)?,
            log_bytes: row.get::<_, i64>(20)? as u64,
            job: row.get(21)?,
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
