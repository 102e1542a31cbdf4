//! Where an execution stands and why it was stopped, with the words the history stores them as.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where an execution stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionState {
    /// Waiting for a concurrency slot.
    Queued,
    Running,
    /// Exited with code 0.
    Succeeded,
    /// Exited with a non-zero code, or was killed by a signal we did not send.
    Failed,
    /// Stopped by `cancel_execution` (or by the server shutting down).
    Cancelled,
    /// Stopped because it ran longer than its timeout.
    TimedOut,
    /// The process could not be started; `error` says why.
    FailedToStart,
    /// Known, but no longer supervised.
    Lost,
}

impl ExecutionState {
    pub fn is_terminal(self) -> bool {
        !matches!(self, ExecutionState::Queued | ExecutionState::Running)
    }

    /// The state a record names (`as_str` backwards).
    pub fn parse(s: &str) -> Option<ExecutionState> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub const ALL: [ExecutionState; 8] = [
        ExecutionState::Queued,
        ExecutionState::Running,
        ExecutionState::Succeeded,
        ExecutionState::Failed,
        ExecutionState::Cancelled,
        ExecutionState::TimedOut,
        ExecutionState::FailedToStart,
        ExecutionState::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionState::Queued => "queued",
            ExecutionState::Running => "running",
            ExecutionState::Succeeded => "succeeded",
            ExecutionState::Failed => "failed",
            ExecutionState::Cancelled => "cancelled",
            ExecutionState::TimedOut => "timed_out",
            ExecutionState::FailedToStart => "failed_to_start",
            ExecutionState::Lost => "lost",
        }
    }
}

/// Why the engine is stopping an execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    Cancel,
    Timeout,
    Shutdown,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Cancel => "cancel",
            StopReason::Timeout => "timeout",
            StopReason::Shutdown => "shutdown",
        }
    }

    pub fn parse(s: &str) -> Option<StopReason> {
        [StopReason::Cancel, StopReason::Timeout, StopReason::Shutdown]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// A word the history holds where a state or a stop reason belongs, but that names none: a bad row, never read
/// as some other state.
#[derive(Debug, thiserror::Error)]
#[error("\"{word}\" is not {what}")]
pub struct UnknownWord {
    pub word: String,
    pub what: &'static str,
}

impl rusqlite::types::ToSql for ExecutionState {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl rusqlite::types::FromSql for ExecutionState {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let word = value.as_str()?;
        ExecutionState::parse(word).ok_or_else(|| {
            rusqlite::types::FromSqlError::Other(Box::new(UnknownWord {
                word: word.to_owned(),
                what: "an execution state",
            }))
        })
    }
}

impl rusqlite::types::ToSql for StopReason {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl rusqlite::types::FromSql for StopReason {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let word = value.as_str()?;
        StopReason::parse(word).ok_or_else(|| {
            rusqlite::types::FromSqlError::Other(Box::new(UnknownWord {
                word: word.to_owned(),
                what: "a stop reason",
            }))
        })
    }
}
