//! The status of an execution as clients read it: state, exit, times, output counts, progress, and for a failure
//! its evidence. What does not apply is left out.

use std::collections::BTreeMap;
use std::time::SystemTime;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::execution::{Execution, ExecutionState};
use super::progress::Progress;
use crate::clock::{from_unix_ms, millis_between, rfc3339};
use crate::logs::{Snapshot, StreamSelector, last_lines};
pub use crate::model::{JobStatus, OutputSummary};
use crate::proc::signal::signal_name;
use crate::store::ExecutionRecord;

/// At most this many lines of evidence, within this many bytes as sent.
const EVIDENCE_LINES: usize = 20;
const EVIDENCE_BYTES: usize = 1400;

/// Why an execution failed, in the same answer that reports it: its last stderr lines (or its last lines when
/// stderr has none), in the compact line form, within about 1.5 KB.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Evidence {
    /// What the lines are, e.g. "last 5 stderr lines".
    pub about: String,
    /// Compact records (`SEQ[!] TEXT` per line, see get_logs).
    pub lines: String,
}

/// The status of an execution, as every status-returning tool reports it. What does not apply is left out.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ExecutionStatus {
    pub execution_id: String,
    pub workflow: String,
    pub state: ExecutionState,
    /// Exit code when the process exited normally (absent when it was killed by a signal or has not exited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The signal that killed the process, e.g. "SIGKILL".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// Why the execution failed to start (the OS error), or why it was stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Every param with a value (absent when none).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub params: Map<String, Value>,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Run time so far (running) or in all (finished); absent before it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// 1-based place in the queue while `queued`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<usize>,
    pub output: OutputSummary,
    /// From structured events; absent if the workflow sent none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// The job, for an execution on a remote engine (Slurm): its id, and where it stands there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobStatus>,
    /// The last lines, when asked for with `tail_lines`: compact records as get_logs gives them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<String>,
    /// For a failed, timed-out or lost execution (and one that failed to start, if it printed anything): its
    /// last stderr lines, or its last lines when stderr is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
}

/// A param value longer than this is echoed shortened in a status (the workflow got it whole).
const MAX_ECHOED_PARAM: usize = 256;

/// The params as a status shows them: long string values shortened, saying by how much (`whole`: the lengths of
/// values loaded cut short already, see `ExecutionRecord::params_bytes`).
fn echoed_params(params: &Map<String, Value>, whole: &BTreeMap<String, usize>) -> Map<String, Value> {
    params
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) if s.len() > MAX_ECHOED_PARAM => {
                    let mut end = MAX_ECHOED_PARAM;
                    while !s.is_char_boundary(end) {
                        end -= 1;
                    }
                    let len = whole.get(k).copied().unwrap_or(s.len());
                    Value::String(format!("{}…[+{} bytes]", &s[..end], len - end))
                }
                v => v.clone(),
            };
            (k.clone(), v)
        })
        .collect()
}

impl Execution {
    /// The status as clients see it (`queue_position` is filled in by the engine).
    pub fn status(&self, queue_position: Option<usize>) -> ExecutionStatus {
        let now = SystemTime::now();
        let stats = self.logs_buffer.stats();
        let life = self.life();
        let duration_ms = life
            .started_at
            .map(|s| millis_between(s, life.finished_at.unwrap_or(now)));
        ExecutionStatus {
            execution_id: self.id.to_string(),
            workflow: self.workflow.name.clone(),
            state: life.state,
            exit_code: life.exit_code,
            signal: life.signal.map(signal_name),
            error: life.error.clone(),
            params: echoed_params(&self.params, &BTreeMap::new()),
            created_at: rfc3339(self.created_at),
            started_at: life.started_at.map(rfc3339),
            finished_at: life.finished_at.map(rfc3339),
            duration_ms,
            pid: life.pid,
            queue_position,
            output: OutputSummary {
                stdout: stats.stdout,
                stderr: stats.stderr,
                last_seq: stats.next_seq.checked_sub(1),
                last_output_at: stats.last_output_at.map(rfc3339),
                dropped_lines: stats.dropped_lines,
                dropped_bytes: stats.dropped_bytes,
                truncated_lines: stats.truncated_lines,
                held_open: life.held_open.clone(),
                disk_error: stats.disk_error,
            },
            progress: self.progress.snapshot(),
            job: life.job.as_ref().map(|(job, state)| JobStatus {
                system: job.system.to_owned(),
                id: job.id.clone(),
                state: state
                    .as_ref()
                    .filter(|_| !life.state.is_terminal())
                    .map(|s| s.state.clone()),
                reason: state
                    .as_ref()
                    .filter(|_| !life.state.is_terminal())
                    .and_then(|s| s.reason.clone()),
                node: state.as_ref().and_then(|s| s.node.clone()),
                dir: job.dir.as_ref().map(|d| d.display().to_string()),
            }),
            tail: None,
            evidence: None,
        }
    }

    /// The last lines that explain a failure, for the states that have one.
    pub fn evidence(&self) -> Option<Evidence> {
        evidence(self.state(), &self.logs_buffer.snapshot())
    }
}

/// The last lines that explain a failure — the last stderr lines, else the last lines — for the states that
/// have one.
pub fn evidence(state: ExecutionState, snap: &Snapshot) -> Option<Evidence> {
    if !matches!(
        state,
        ExecutionState::Failed | ExecutionState::TimedOut | ExecutionState::FailedToStart | ExecutionState::Lost
    ) {
        return None;
    }
    let (page, what) = match last_lines(snap, StreamSelector::Stderr, EVIDENCE_LINES, EVIDENCE_BYTES) {
        Some(page) if page.count > 0 => (page, ["stderr line", "stderr lines"]),
        _ => (
            last_lines(snap, StreamSelector::Both, EVIDENCE_LINES, EVIDENCE_BYTES)?,
            ["line of output (stderr has none)", "lines of output (stderr has none)"],
        ),
    };
    (page.count > 0).then(|| Evidence {
        about: match page.count {
            1 => format!("last {}", what[0]),
            n => format!("last {n} {}", what[1]),
        },
        lines: page.lines.text,
    })
}

/// The status of an execution known from its record.
pub fn status_of_record(rec: &ExecutionRecord) -> ExecutionStatus {
    let now = SystemTime::now();
    ExecutionStatus {
        execution_id: rec.id.to_string(),
        workflow: rec.workflow.clone(),
        state: rec.state,
        exit_code: rec.exit_code,
        signal: rec.signal.map(signal_name),
        error: rec.error.clone(),
        params: echoed_params(&rec.params, &rec.params_bytes),
        created_at: rfc3339(from_unix_ms(rec.created_at)),
        started_at: rec.started_at.map(from_unix_ms).map(rfc3339),
        finished_at: rec.finished_at.map(from_unix_ms).map(rfc3339),
        duration_ms: rec
            .started_at
            .map(|s| millis_between(from_unix_ms(s), rec.finished_at.map_or(now, from_unix_ms))),
        pid: rec.pid,
        queue_position: None,
        // A record written before its first counters (queued, or just started) has none yet.
        output: rec.output.clone().unwrap_or_default(),
        progress: rec.progress.clone(),
        job: rec.job.clone(),
        tail: None,
        evidence: None,
    }
}
