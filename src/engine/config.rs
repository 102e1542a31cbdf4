//! How the engine behaves (its config, with the retention rule in words) and why it refuses a request.

use std::time::Duration;

use uuid::Uuid;

use crate::logs::LogLimits;
use crate::proc::ChildEnv;

/// How the engine behaves (handed whole to the supervisor of an execution that outlives its session).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct EngineConfig {
    pub max_concurrent: usize,
    /// Executions that may wait for a slot; past it a new one is refused.
    pub max_queued: usize,
    pub default_timeout: Option<Duration>,
    /// Between SIGTERM and SIGKILL when an execution is stopped.
    pub grace: Duration,
    pub log_limits: LogLimits,
    pub log_bytes_total: usize,
    pub retain_executions: usize,
    pub retain_age: Duration,
    /// With a history: the log files of finished executions, in all, before the oldest are forgotten.
    pub retain_log_bytes: u64,
    /// With a history: one execution's log files, before whole middle segments are deleted.
    pub log_disk_bytes: u64,
    /// The environment every execution starts from (the workflow's own variables and params come on top).
    pub base_env: ChildEnv,
    /// How long the drain threads may keep reading after the workflow exited and its group was killed.
    pub drain_grace: Duration,
}

/// Why the engine refused a request.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the server is shutting down; no new executions start")]
    ShuttingDown,
    #[error(
        "too many executions are waiting: {queued} are queued and limits.max_queued is {cap}; wait for some to \
         finish or cancel some with cancel_execution, or raise limits.max_queued in the config"
    )]
    QueueFull { queued: usize, cap: usize },
    #[error(
        "workflow \"{workflow}\" outlives its session (outlive_session), which needs a history on disk to be \
         followed after this server exits, and this server runs --ephemeral; start it without --ephemeral, or set \
         outlive_session to false for this workflow"
    )]
    OutliveNeedsHistory { workflow: String },
    #[error(
        "workflow \"{workflow}\" outlives its session (outlive_session), but this engine cannot start supervisor \
         processes (it is embedded, not the workflow-mcp binary); run it from workflow-mcp, or set outlive_session \
         to false for this workflow"
    )]
    CannotDetach { workflow: String },
    #[error(
        "workflow \"{workflow}\" runs at most {max} at a time (max_concurrent) and {} already {}: {}; it outlives \
         its session, so it is not queued — cancel one with cancel_execution, or wait until one ends",
        running.len(),
        if running.len() == 1 { "runs" } else { "run" },
        running.iter().map(Uuid::to_string).collect::<Vec<_>>().join(", ")
    )]
    WorkflowAtLimit {
        workflow: String,
        max: usize,
        running: Vec<Uuid>,
    },
    /// A bug: the panic itself is in the server's log.
    #[error("internal error: {task} panicked; the server's log (stderr) says where")]
    Panicked { task: &'static str },
}

/// Why a supervisor could not take over the execution handed to it.
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    #[error("a supervisor needs the history of a state directory")]
    NoHistory,
    #[error("execution {id} is no longer the handing server's ({recorded_by}): another instance took it over")]
    NotTheirs { id: Uuid, recorded_by: String },
    #[error("the supervisor is shutting down")]
    ShuttingDown,
}

/// Why a stop did not end an execution.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error(
        "execution {id} is run by another server process (instance {owner}, pid {}) that has not ended it yet; its \
         stop was requested — get_status shows when it ends",
        .pid.map_or_else(|| "unknown".to_owned(), |p| p.to_string())
    )]
    OwnerHasNotEnded { id: Uuid, owner: String, pid: Option<u32> },
}

impl EngineError {
    /// Why the blocking work of `task` did not return: a panic is a bug, reported as one; only a task the
    /// runtime cancelled (it is shutting down) is a shutdown.
    pub(super) fn from_join(task: &'static str, failed: tokio::task::JoinError) -> Self {
        if failed.is_panic() {
            EngineError::Panicked { task }
        } else {
            EngineError::ShuttingDown
        }
    }
}

impl EngineConfig {
    /// The retention rule in words, e.g. "the last 1000 finished executions, for at most 7 days, with at most
    /// 10.00 GiB of log files"; `durable` when there is a history.
    pub(super) fn retention_rule(&self, durable: bool) -> String {
        let secs = self.retain_age.as_secs();
        let age = match secs {
            s if s % 86_400 == 0 => format!("{} days", s / 86_400),
            s if s % 3600 == 0 => format!("{} hours", s / 3600),
            s => format!("{s} s"),
        };
        let mut rule = format!(
            "the last {} finished executions, for at most {age}",
            self.retain_executions
        );
        if durable {
            rule.push_str(&format!(
                ", with at most {:.1} GiB of log files (kept on disk, across restarts)",
                self.retain_log_bytes as f64 / f64::from(1u32 << 30)
            ));
        } else {
            rule.push_str(" (in memory only: gone when the server exits)");
        }
        rule
    }
}
