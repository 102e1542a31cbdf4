//! How an execution's leader ended, and the job that runs it on a remote engine.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How the leader ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exit {
    /// The exit code, when it exited normally.
    pub code: Option<i32>,
    /// The signal that killed it.
    pub signal: Option<i32>,
}

impl Exit {
    /// The signal's name ("SIGKILL", or "signal 64" for one without a name), rendered from its number: the number
    /// is what is kept.
    pub fn signal_name(&self) -> Option<String> {
        self.signal.map(crate::proc::signal::signal_name)
    }
}

/// A remote job as a status shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct JobStatus {
    /// The engine, e.g. "slurm".
    pub system: String,
    /// The engine's job id.
    pub id: String,
    /// The engine's state for it, e.g. PENDING or RUNNING (absent before it was first read, and once it ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Why it waits, e.g. Resources or Priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Where it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Its folder: the job script and its output files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
}
