//! One execution as the history keeps it: a row of the `executions` table.

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
}

pub(super) const COLUMNS: &str = "id, workflow, params, argv, cwd, idempotency_key, state, exit_code, signal, error, \
     created_at, started_at, finished_at, pid, pid_start, owner, stop_request, output, progress, held_open, log_bytes, job";

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
        })
    }
}
