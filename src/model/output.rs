//! An execution's output as counted: the two streams, their counters, and the summary a status and the history
//! carry (lines and bytes per stream, what was lost or cut).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which pipe a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Counters of one stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StreamCounters {
    /// Records stored for this stream (a line split at the max line length counts once per piece).
    pub lines: u64,
    /// Every byte read from the pipe, newlines included.
    pub bytes: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Lines and bytes per stream, and what was lost or cut. Counts that are zero and fields that do not apply yet
/// are left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OutputSummary {
    pub stdout: StreamCounters,
    pub stderr: StreamCounters,
    /// Seq of the newest line (absent before the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_output_at: Option<String>,
    /// Lines evicted from memory (the head and the newest lines are kept; `get_logs` reports the gap).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped_lines: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped_bytes: u64,
    /// Records that are pieces of a line longer than the max line length.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub truncated_lines: u64,
    /// Streams a descendant that escaped the process group kept open after the workflow exited; reading them
    /// stopped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_open: Vec<Stream>,
    /// Why the log stopped being written to disk, if it did: its lines are then kept in memory only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_error: Option<String>,
}
