//! What the tools' answers share: argument checks, finding an execution or a workflow, waiting for an end while
//! reporting progress, the status reply every status-returning tool and resource gives, one read of a log, and
//! the catalog listing.

use std::sync::Arc;
use std::time::Duration;

use rmcp::RoleServer;
use rmcp::model::{CallToolResult, ContentBlock, IntoContents, JsonObject};
use rmcp::service::RequestContext;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use super::types::*;
use super::{text, waiting};
use crate::app::App;
use crate::catalog::WorkflowDef;
use crate::catalog::param::ParamError;
use crate::engine::ReadError;
use crate::engine::{EngineError, ExecutionState, ExecutionStatus, ExecutionView};
use crate::format::Summary;
use crate::logs::{CompactLines, LogPage, LogQuery};

/// A whole result (structured content and text, serialized) stays under this by default: Claude Code stores a
/// result over 50,000 characters in a file instead of showing it.
const RESULT_BUDGET: usize = 48_000;

pub(super) type ToolResult = Result<CallToolResult, ToolError>;

/// Why a tool could not do what was asked: answered in band (`isError: true`) with this one sentence, which names
/// the problem and the way out.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("invalid arguments for {tool}: {error}")]
    Arguments { tool: String, error: serde_json::Error },
    #[error("invalid argument \"{path}\" for {tool}: {error}")]
    Argument {
        tool: String,
        path: String,
        error: serde_json::Error,
    },
    #[error("\"{name}\" must be between {min} and {max}, got {got}")]
    OutOfRange {
        name: &'static str,
        min: u64,
        max: u64,
        got: u64,
    },
    #[error("\"grep\" is {0} bytes long; the limit is {MAX_GREP_BYTES}")]
    GrepTooLong(usize),
    #[error("\"grep\" is not a valid regular expression: {0}")]
    Grep(regex::Error),
    #[error("\"idempotency_key\" must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} bytes long, got {0}")]
    IdempotencyKey(usize),
    #[error("\"params\" must be a JSON object of param values such as {{\"name\": value}}, got {0}")]
    ParamsNotObject(Value),
    #[error(transparent)]
    Param(#[from] ParamError),
    /// The catalog's sentence naming the workflows it knows.
    #[error("{0}")]
    UnknownWorkflow(String),
    /// The catalog's sentence: the config is not trusted (or changed), with the command that allows it.
    #[error("{0}")]
    Untrusted(String),
    #[error(
        "execution_id \"{0}\" is not an execution id (a UUID as execute_workflow returns it); list_executions \
         shows the known ones"
    )]
    NotAnExecutionId(String),
    #[error(
        "no execution with id {0}: it never existed here or was forgotten by the retention rule (the server \
         restarted, or it finished long ago); list_executions shows the known ones"
    )]
    UnknownExecution(Uuid),
    /// The history could not say (busy, corrupt, a bad record): its sentence names the file and what to do.
    #[error("{}", crate::engine::error_chain(.0))]
    History(#[from] ReadError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The engine's sentence on why the execution could not be stopped.
    #[error("{0}")]
    Stop(String),
    #[error("rescanning the discovery folders failed: {0}")]
    Rescan(tokio::task::JoinError),
    #[error("internal error: cannot encode the result: {0}")]
    Encode(serde_json::Error),
    #[error("internal error: reading the status failed: {0}")]
    StatusRead(tokio::task::JoinError),
    #[error("internal error: reading the log failed: {0}")]
    LogRead(tokio::task::JoinError),
}

impl IntoContents for ToolError {
    fn into_contents(self) -> Vec<ContentBlock> {
        vec![ContentBlock::text(self.to_string())]
    }
}

/// Parses tool arguments; a bad one is named with what was expected.
pub(super) fn parse_args<T: DeserializeOwned>(tool: &str, args: JsonObject) -> Result<T, ToolError> {
    serde_path_to_error::deserialize(Value::Object(args)).map_err(|e| {
        let path = e.path().to_string();
        let (tool, error) = (tool.to_owned(), e.into_inner());
        if path.is_empty() || path == "." {
            ToolError::Arguments { tool, error }
        } else {
            ToolError::Argument { tool, path, error }
        }
    })
}

pub(super) fn at_most(name: &'static str, value: Option<u64>, max: u64) -> Result<Option<u64>, ToolError> {
    match value {
        Some(got) if got > max => Err(ToolError::OutOfRange { name, min: 0, max, got }),
        v => Ok(v),
    }
}

pub(super) fn in_range(
    name: &'static str,
    value: Option<u64>,
    min: u64,
    max: u64,
    default: u64,
) -> Result<u64, ToolError> {
    match value {
        None => Ok(default),
        Some(v) if (min..=max).contains(&v) => Ok(v),
        Some(got) => Err(ToolError::OutOfRange { name, min, max, got }),
    }
}

/// A requested wait, capped at [`MAX_WAIT_MS`]; the flag says whether the cap applied.
pub(super) fn wait_of(requested: Option<u64>) -> (Duration, bool) {
    let ms = requested.unwrap_or(0);
    (Duration::from_millis(ms.min(MAX_WAIT_MS)), ms > MAX_WAIT_MS)
}

pub(super) fn reply<T: Serialize>(value: &T, text: String) -> ToolResult {
    let structured = serde_json::to_value(value).map_err(ToolError::Encode)?;
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = Some(structured);
    Ok(result)
}

/// Bytes a value takes serialized, as sent.
pub(super) fn sent_len<T: Serialize>(value: &T) -> usize {
    serde_json::to_string(value).map_or(0, |s| s.len())
}

/// What to do next with an execution in this status, in one line.
pub(super) fn status_hint(s: &ExecutionStatus, capped: bool) -> String {
    let lines = Summary(s).lines();
    let waited = if capped {
        format!("waited the {MAX_WAIT_MS} ms maximum of one call; ")
    } else {
        String::new()
    };
    match s.state {
        ExecutionState::Queued if s.job.is_some() => {
            let job = s.job.as_ref().expect("checked");
            let why = job
                .reason
                .as_deref()
                .map(|r| format!(", reason {r}"))
                .unwrap_or_default();
            format!(
                "{waited}waiting in {}'s queue (job {}{why}): call get_status with wait_ms (at most {MAX_WAIT_MS}) \
                 to wait for it, or cancel_execution",
                job.system, job.id
            )
        }
        ExecutionState::Queued => format!(
            "{waited}queued at position {}: call get_status with wait_ms (at most {MAX_WAIT_MS}) to wait for it, or \
             cancel_execution",
            s.queue_position.unwrap_or(1)
        ),
        ExecutionState::Running => format!(
            "{waited}still running: call get_status with wait_ms (at most {MAX_WAIT_MS}) to wait for the end, or \
             get_logs to read its {lines} so far"
        ),
        ExecutionState::Succeeded => {
            format!("succeeded: get_logs reads its {lines} (tail=N for the last ones, grep to search)")
        }
        ExecutionState::Cancelled => format!("cancelled: get_logs reads the {lines} it printed"),
        ExecutionState::FailedToStart => {
            "could not start: fix what error names (the config, the program or the params) and run it again".into()
        }
        ExecutionState::Failed | ExecutionState::TimedOut | ExecutionState::Lost if s.evidence.is_some() => format!(
            "{}: evidence has its last lines; get_logs reads all {lines} (grep, e.g. \"error\", to search them)",
            s.state.as_str()
        ),
        ExecutionState::Failed | ExecutionState::TimedOut | ExecutionState::Lost => {
            format!(
                "{}: it printed nothing that explains it; error and exit_code say what is known",
                s.state.as_str()
            )
        }
    }
}

/// [`status_reply`], on the calling thread (which may block on files).
fn status_reply_now(app: &App, view: &ExecutionView, tail_lines: u64, capped: bool) -> ToolResult {
    let view = app.engine.refresh_blocking(view);
    let mut status = app.engine.status(&view);
    status.evidence = view.evidence();
    let capped = capped && !status.state.is_terminal();
    let mut tail_bytes = TAIL_MAX_BYTES;
    loop {
        if tail_lines > 0 {
            let q = LogQuery {
                tail: Some(tail_lines),
                max_lines: tail_lines as usize,
                max_bytes: tail_bytes,
                ..LogQuery::default()
            };
            status.tail = Some(q.run_into(&view.snapshot(), CompactLines::default()).lines.text);
        }
        let out = StatusOutput {
            hint: status_hint(&status, capped),
            status: status.clone(),
        };
        let text = text::status(&out);
        let size = sent_len(&out) + sent_len(&text);
        if size <= RESULT_BUDGET || tail_lines == 0 || tail_bytes < 1000 {
            return reply(&out, text);
        }
        tail_bytes = tail_bytes.saturating_sub(size - RESULT_BUDGET).min(tail_bytes / 2);
    }
}

/// Log scans running at once, in every session: one per core, at most 4. More wait (without holding a thread),
/// so however many greps clients send, scans take a bounded share of the CPU and memory (a segment each).
fn scan_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        tokio::sync::Semaphore::new(cores.clamp(1, 4))
    })
}

/// One read of an execution's log as `get_logs` does it, on a blocking thread (a scan reads files and takes up
/// to its budget): the page, and the state read before it (a final state means the page saw every line).
pub(super) async fn read_logs(
    app: &Arc<App>,
    exec: &ExecutionView,
    query: &LogQuery,
    timestamps: bool,
) -> Result<(LogPage<CompactLines>, ExecutionState), ToolError> {
    let (app, exec, query) = (app.clone(), exec.clone(), query.clone());
    // A page without a selection costs at most its own size and never waits for a slot.
    let _slot = match query.scans() {
        true => scan_slots().acquire().await.ok(),
        false => None,
    };
    tokio::task::spawn_blocking(move || {
        let now = app.engine.refresh_blocking(&exec);
        let state = now.state();
        (query.run_into(&now.snapshot(), CompactLines::new(timestamps)), state)
    })
    .await
    .map_err(ToolError::LogRead)
}

pub(super) async fn find(app: &App, execution_id: &str) -> Result<ExecutionView, ToolError> {
    let id = Uuid::parse_str(execution_id.trim()).map_err(|_| ToolError::NotAnExecutionId(execution_id.to_owned()))?;
    app.engine.find(&id).await?.ok_or(ToolError::UnknownExecution(id))
}

/// Whether an execution with this id is known, for a caller that cannot wait (a sync trait method): the lookup
/// may block, so on a multi-thread runtime this worker first hands its other tasks to another one.
pub(super) fn known(app: &App, id: &Uuid) -> bool {
    let find = || app.engine.find_blocking(id).is_ok_and(|v| v.is_some());
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(find),
        _ => find(),
    }
}

pub(super) fn workflow(app: &App, name: &str) -> Result<Arc<WorkflowDef>, ToolError> {
    app.catalog
        .get(name)
        .ok_or_else(|| ToolError::UnknownWorkflow(app.catalog.unknown_message(name)))
}

/// Waits for a discovery scan in progress (bounded by the probe timeout), off the tokio workers. Trust is read
/// anew too: the user may have trusted the config (or a file changed) since the last call.
pub(super) async fn catalog_settled(app: &App) {
    let catalog = app.catalog.clone();
    let _ = tokio::task::spawn_blocking(move || catalog.settle()).await;
}

/// Waits up to `wait` for the execution to finish, reporting progress to the client meanwhile.
pub(super) async fn wait_final(app: &App, ctx: &RequestContext<RoleServer>, view: &ExecutionView, wait: Duration) {
    if wait.is_zero() || view.state().is_terminal() {
        return;
    }
    let engine = &app.engine;
    waiting::reporting(ctx, engine, view, engine.wait_final(view, wait, &ctx.ct)).await;
}

/// The status as every status-returning tool answers it: with the evidence of a failure, the last
/// `tail_lines` lines if asked, and a hint; the tail shrinks if the whole would pass the result budget. Read
/// on a blocking thread: a stored execution's lines come from its files.
pub(super) async fn status_reply(app: &Arc<App>, view: &ExecutionView, tail_lines: u64, capped: bool) -> ToolResult {
    let (app, view) = (app.clone(), view.clone());
    tokio::task::spawn_blocking(move || status_reply_now(&app, &view, tail_lines, capped))
        .await
        .map_err(ToolError::StatusRead)?
}

/// The catalog as list_workflows answers it without arguments: what does not fit is named in `more`.
pub(super) fn catalog(app: &App) -> ListWorkflowsOutput {
    let mut out = ListWorkflowsOutput {
        workflows: Vec::new(),
        more: Vec::new(),
        config: app.catalog.config().map(|p| p.display().to_string()),
        hint: app.catalog.hint(),
    };
    let mut used = 0;
    for w in app.catalog.all().iter() {
        let info = app.catalog.info(w);
        used += sent_len(&info);
        if used > DEFAULT_LIST_BYTES as usize && !out.workflows.is_empty() {
            out.more.push(info.name);
        } else {
            out.workflows.push(info);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_errors_name_the_argument_and_what_it_takes() {
        let e = in_range("limit", Some(0), 1, 1000, 20).unwrap_err();
        assert_eq!(e.to_string(), "\"limit\" must be between 1 and 1000, got 0");
        let e = at_most("context", Some(11), 10).unwrap_err();
        assert_eq!(e.to_string(), "\"context\" must be between 0 and 10, got 11");
        let args = serde_json::json!({"execution_id": 7}).as_object().unwrap().clone();
        let e = parse_args::<GetStatusInput>("get_status", args).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid argument \"execution_id\" for get_status: invalid type: integer `7`"),
            "{e}"
        );
    }
}
