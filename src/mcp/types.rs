//! Tool inputs and outputs. The `///` docs become the schema descriptions an agent reads. Domain types (the
//! execution status, log lines) are used as they are; only what exists for the protocol is defined here.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::WorkflowInfo;
use crate::engine::{ExecutionState, ExecutionStatus};
use crate::logs::{BudgetHit, EventSelector, Omitted, StreamSelector};

/// The longest a call waits: under the ~60 s after which Claude Desktop, the MCP Inspector and Codex give up on
/// a call, with margin for the answer. Longer requested waits are capped (and the answer says so).
pub const MAX_WAIT_MS: u64 = 50_000;
pub const MAX_TAIL_LINES: u64 = 200;
pub const MAX_LINES: u64 = 10_000;
pub const DEFAULT_MAX_LINES: u64 = 200;
pub const MAX_BYTES: u64 = 1_048_576;
/// Lines are sent twice (structured and text), so the default page stays well under the 50,000 characters
/// above which Claude Code stores a result in a file instead of showing it.
pub const DEFAULT_MAX_BYTES: u64 = 20_000;
/// The byte budget of a status's `tail`.
pub const TAIL_MAX_BYTES: usize = 16_000;
/// What one form (structured or text) of a listing may take by default.
pub const DEFAULT_LIST_BYTES: u64 = 20_000;
pub const MAX_CONTEXT: u64 = 100;
pub const MAX_GRACE_MS: u64 = 50_000;
pub const DEFAULT_LIST_LIMIT: u64 = 20;
pub const MAX_LIST_LIMIT: u64 = 1000;
pub const MAX_GREP_BYTES: usize = 1024;
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListWorkflowsInput {
    /// Rescan the discovery folders and re-read imported task files (package.json, Makefile, justfile,
    /// Taskfile.yml) before answering.
    #[serde(default)]
    pub refresh: bool,
    /// Only this workflow (its full entry, whatever its size).
    #[serde(default)]
    pub workflow: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteInput {
    /// The workflow's name, as list_workflows gives it.
    pub workflow: String,
    /// Param values as a JSON object, checked against the workflow's params_schema.
    #[serde(default)]
    pub params: Option<Value>,
    /// Wait up to this many milliseconds for the execution to finish before answering (default 0: answer at
    /// once; at most 50000, so the call ends before clients give up on it).
    #[serde(default)]
    #[schemars(range(max = MAX_WAIT_MS))]
    pub wait_ms: Option<u64>,
    /// A repeated key for the same workflow returns the execution the first call started instead of starting
    /// another.
    #[serde(default)]
    #[schemars(length(max = MAX_IDEMPOTENCY_KEY_BYTES))]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetStatusInput {
    /// The id execute_workflow returned.
    pub execution_id: String,
    /// If the execution is not finished, wait up to this many milliseconds for it to finish (at most 50000).
    #[serde(default)]
    #[schemars(range(max = MAX_WAIT_MS))]
    pub wait_ms: Option<u64>,
    /// Include the last N log lines as `tail` (compact lines, within 16000 bytes).
    #[serde(default)]
    #[schemars(range(max = MAX_TAIL_LINES))]
    pub tail_lines: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetLogsInput {
    /// The id execute_workflow returned.
    pub execution_id: String,
    /// Return lines with seq >= this. Pass the previous answer's `next_seq` to continue exactly where it
    /// stopped.
    #[serde(default)]
    pub since_seq: Option<u64>,
    /// Return the last N lines of the selection (after since_seq, if given).
    #[serde(default)]
    pub tail: Option<u64>,
    /// Which stream: "stdout", "stderr" or "both" (default).
    #[serde(default)]
    pub stream: Option<StreamSelector>,
    /// Structured-event lines (`__WF_EVENT__:`): "all" (default), "only" them, or "exclude" them.
    #[serde(default)]
    pub events: Option<EventSelector>,
    /// A regular expression (Rust regex syntax); only matching lines are returned, plus `context` lines around
    /// each.
    #[serde(default)]
    #[schemars(length(max = MAX_GREP_BYTES))]
    pub grep: Option<String>,
    /// With grep: lines of context before and after each match (default 0).
    #[serde(default)]
    #[schemars(range(max = MAX_CONTEXT))]
    pub context: Option<u64>,
    /// At most this many lines (default 200, at most 10000).
    #[serde(default)]
    #[schemars(range(min = 1, max = MAX_LINES))]
    pub max_lines: Option<u64>,
    /// At most this many bytes of lines, counted as sent (default 20000, at most 1048576).
    #[serde(default)]
    #[schemars(range(min = 1, max = MAX_BYTES))]
    pub max_bytes: Option<u64>,
    /// When no line is available at the cursor and the execution is not done, wait up to this many
    /// milliseconds for new lines (at most 50000).
    #[serde(default)]
    #[schemars(range(max = MAX_WAIT_MS))]
    pub wait_ms: Option<u64>,
    /// Keep ANSI escapes and carriage returns as the workflow wrote them.
    #[serde(default)]
    pub raw: Option<bool>,
    /// Put each line's read time (RFC 3339) after its marks: `SEQ@TIME TEXT`.
    #[serde(default)]
    pub timestamps: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelInput {
    /// The id execute_workflow returned.
    pub execution_id: String,
    /// Milliseconds between SIGTERM and SIGKILL (default 5000, at most 50000).
    #[serde(default)]
    #[schemars(range(max = MAX_GRACE_MS))]
    pub grace_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListExecutionsInput {
    /// Only executions of this workflow.
    #[serde(default)]
    pub workflow: Option<String>,
    /// Only executions in this state.
    #[serde(default)]
    pub state: Option<ExecutionState>,
    /// At most this many, newest first (default 20).
    #[serde(default)]
    #[schemars(range(min = 1, max = MAX_LIST_LIMIT))]
    pub limit: Option<u64>,
    /// At most this many bytes of executions, counted as sent (default 20000, at most 1048576).
    #[serde(default)]
    #[schemars(range(min = 1, max = MAX_BYTES))]
    pub max_bytes: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ListWorkflowsOutput {
    pub workflows: Vec<WorkflowInfo>,
    /// Workflows left out to keep the answer small: ask for one with `workflow`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more: Vec<String>,
    /// The config file these workflows come from (absent: none was given or found).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// What to do first: how to make a config when there is none, or the command that allows an untrusted one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// The status of an execution and what to do next.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct StatusOutput {
    #[serde(flatten)]
    pub status: ExecutionStatus,
    /// What to call next, in one line.
    pub hint: String,
}

/// A page of an execution's output.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct LogsOutput {
    pub execution_id: String,
    /// The execution's state when the page was read.
    pub state: ExecutionState,
    /// One record per log line: `SEQ MARKS[@TIME] TEXT`. Marks, in this order: `!` stderr, `~` partial (a piece
    /// of an over-long line, continued in the next record), `-` grep context (not a match), `+` cut to fit
    /// max_bytes. A line starting with `# ` is a note (lines no longer available), not a log line.
    pub lines: String,
    /// Pass back as since_seq to continue exactly where this page stopped.
    pub next_seq: u64,
    /// Seq of the first returned line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seq: Option<u64>,
    /// Seq of the last returned line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
    /// More lines exist at or after next_seq right now.
    pub has_more: bool,
    /// The execution has finished and every line has been drained: no line will ever be added.
    pub done: bool,
    /// Lines produced so far (seq of the next line to come).
    pub total_lines: u64,
    /// Which budget ended this page, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<BudgetHit>,
    /// Lines in the requested range that are no longer available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub omitted: Option<Omitted>,
    /// What to call next, in one line.
    pub hint: String,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ListExecutionsOutput {
    /// Newest first.
    pub executions: Vec<ExecutionStatus>,
    /// How many executions matched (the list may be shorter: see limit and max_bytes).
    pub total: usize,
    /// Executions the server remembers in all; finished ones are forgotten beyond the retention rule.
    pub retained: usize,
    /// The retention rule, e.g. "the last 1000 finished executions, for at most 86400 s".
    pub retention: String,
    /// Present when max_bytes cut the list short of limit: what to do to see more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}
