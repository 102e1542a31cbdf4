//! Executions as MCP tasks (the `io.modelcontextprotocol/tasks` extension, SEP-2663). A client that declares
//! the extension on its request (per request on 2026-07-28; at `initialize` on older sessions) gets
//! `execute_workflow` answered with a task instead of a status: the task id is the execution id, `tasks/get`
//! reads the execution (working while queued or running, with a status message from its progress and line
//! counts; completed with the `CallToolResult` get_status gives once it has finished; cancelled when it was
//! cancelled), and `tasks/cancel` stops it as cancel_execution does. Nothing about a task is kept apart from its
//! execution — no in-memory helper with an expiry of its own — so a task can be polled after a restart, or from
//! another server process on the same state directory, for as long as its execution is retained.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rmcp::ErrorData as McpError;
use rmcp::RoleServer;
use rmcp::model::{
    CallToolResult, CreateTaskResult, DetailedTask, IntoContents, JsonObject, ProtocolVersion, ServerResult, Task,
    TaskPayload, TaskStatus,
};
use rmcp::service::RequestContext;
use uuid::Uuid;

use super::reply;
use super::resources::last_updated;
use crate::app::App;
use crate::clock::{millis_between, parse_rfc3339};
use crate::engine::{ExecutionState, ExecutionStatus, ExecutionView, StopReason};
use crate::format::Summary;

/// Whether the request's client declared the tasks extension (rmcp reads the request's `_meta` on 2026-07-28,
/// and falls back to the `initialize` capabilities on older sessions).
pub fn declared(ctx: &RequestContext<RoleServer>) -> bool {
    ctx.client_capabilities().is_some_and(|c| c.supports_tasks())
}

/// How often to poll: often at first (most executions are short), less as it goes on.
fn poll_interval_ms(s: &ExecutionStatus) -> u64 {
    match (s.state, s.duration_ms) {
        (ExecutionState::Queued, _) => 2000,
        (_, Some(ms)) if ms >= 60_000 => 5000,
        (_, Some(ms)) if ms >= 10_000 => 2000,
        _ => 1000,
    }
}

/// The task's lifetime from its creation: unlimited while the execution runs (running executions are never
/// forgotten); once it has finished, until the retention rule's age forgets it (the count and disk rules may
/// forget it sooner).
fn ttl_ms(s: &ExecutionStatus, retain_age: Duration) -> Option<u64> {
    if !s.state.is_terminal() {
        return None;
    }
    let created = parse_rfc3339(&s.created_at)?;
    let finished = s.finished_at.as_deref().and_then(parse_rfc3339).unwrap_or(created);
    let forgotten = finished.checked_add(retain_age).unwrap_or(SystemTime::UNIX_EPOCH);
    Some(millis_between(created, forgotten))
}

/// The task an execution is, without its payload.
fn task_of(s: &ExecutionStatus, retain_age: Duration) -> Task {
    let status = match s.state {
        ExecutionState::Queued | ExecutionState::Running => TaskStatus::Working,
        ExecutionState::Cancelled => TaskStatus::Cancelled,
        _ => TaskStatus::Completed,
    };
    let mut task = Task::new(&s.execution_id, status, &s.created_at, last_updated(s));
    task.ttl_ms = ttl_ms(s, retain_age);
    if !s.state.is_terminal() {
        task.poll_interval_ms = Some(poll_interval_ms(s));
    }
    task
}

/// A task id as this server gives them (an execution id), or the error that says it is not one.
fn task_id(task_id: &str) -> Result<Uuid, McpError> {
    Uuid::parse_str(task_id.trim()).map_err(|_| {
        McpError::invalid_params(
            format!(
                "task \"{task_id}\" is not a task of this server: its task ids are execution ids (UUIDs, as \
                 execute_workflow returns them)"
            ),
            None,
        )
    })
}

/// A tool result as a task carries it: the shape the request's protocol version gives a `CallToolResult`.
fn inline_result(result: CallToolResult, ctx: &RequestContext<RoleServer>) -> Result<JsonObject, McpError> {
    let mut result = ServerResult::CallToolResult(result);
    let modern = ctx
        .protocol_version()
        .is_some_and(|v| v.as_str() >= ProtocolVersion::V_2026_07_28.as_str());
    if !modern {
        result.strip_result_type_for_legacy_peer();
    }
    match serde_json::to_value(result) {
        Ok(serde_json::Value::Object(o)) => Ok(o),
        _ => Err(McpError::internal_error("cannot encode the tool result", None)),
    }
}

/// The execution a task id names, or the error that says there is none.
async fn execution(app: &App, id: &str) -> Result<ExecutionView, McpError> {
    let id = task_id(id)?;
    let found = app.engine.find(&id).await;
    found
        .map_err(|e| McpError::internal_error(crate::engine::error_chain(&e), None))?
        .ok_or_else(|| {
            McpError::invalid_params(
                format!(
                    "no task {id} here: no execution with that id on this server's state directory (a task of \
                 another server, or one forgotten by the retention rule: {})",
                    app.engine.retention_rule()
                ),
                None,
            )
        })
}

/// `execute_workflow`'s answer to a client that declared tasks, for an execution still queued or running.
pub(super) async fn created(app: &App, view: &ExecutionView) -> CreateTaskResult {
    let engine = &app.engine;
    let Ok(status) = engine.follow(view).status().await;
    let task = task_of(&status, engine.config().retain_age).with_status_message(Summary(&status).standing());
    CreateTaskResult::new(task)
}

/// `tasks/get`: the task as its execution stands now, with the final result inline once it has finished.
pub(super) async fn now(app: &Arc<App>, id: &str, ctx: &RequestContext<RoleServer>) -> Result<DetailedTask, McpError> {
    let engine = &app.engine;
    let view = execution(app, id).await?;
    let Ok(status) = engine.follow(&view).status().await;
    let task = task_of(&status, engine.config().retain_age);
    Ok(match status.state {
        ExecutionState::Queued | ExecutionState::Running => DetailedTask::new(
            task.with_status_message(Summary(&status).standing()),
            TaskPayload::Working,
        ),
        ExecutionState::Cancelled => {
            let message = format!(
                "{}; get_status and get_logs still read execution {}",
                Summary(&status).ended(),
                status.execution_id
            );
            DetailedTask::new(task.with_status_message(message), TaskPayload::Cancelled)
        }
        _ => {
            let result = reply::status_reply(app, &view, 0, false)
                .await
                .unwrap_or_else(|e| CallToolResult::error(e.into_contents()));
            DetailedTask::new(
                task.with_status_message(Summary(&status).ended()),
                TaskPayload::Completed {
                    result: inline_result(result, ctx)?,
                },
            )
        }
    })
}

/// `tasks/cancel`: stops the execution as cancel_execution does (SIGTERM to its tree, the grace, SIGKILL) and
/// answers once it is final; a finished one is left as it is.
pub(super) async fn cancel(app: &App, id: &str) -> Result<(), McpError> {
    let view = execution(app, id).await?;
    let engine = &app.engine;
    engine
        .stop(&view, StopReason::Cancel, engine.config().grace)
        .await
        .map_err(|e| McpError::internal_error(e.to_string(), None))
}

/// `tasks/update`: no execution ever waits for input, so there is nothing to answer; only the id is checked.
pub(super) async fn update(app: &App, id: &str) -> Result<(), McpError> {
    execution(app, id).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: ExecutionState, duration_ms: Option<u64>, finished_at: Option<&str>) -> ExecutionStatus {
        serde_json::from_value(serde_json::json!({
            "execution_id": "4c1f0c3e-7a4c-4b8e-9a57-1d1b8f3f6a10",
            "workflow": "build",
            "state": state,
            "created_at": "2026-11-30T08:00:00.000Z",
            "started_at": "2026-11-30T08:00:01.000Z",
            "finished_at": finished_at,
            "duration_ms": duration_ms,
            "output": {"stdout": {"lines": 0, "bytes": 0}, "stderr": {"lines": 0, "bytes": 0}},
        }))
        .unwrap()
    }

    #[test]
    fn a_task_lives_while_it_runs_and_then_as_long_as_retention_keeps_it() {
        let day = Duration::from_secs(86_400);
        let running = task_of(&status(ExecutionState::Running, Some(3000), None), day);
        assert_eq!(
            (running.status, running.ttl_ms, running.poll_interval_ms),
            (TaskStatus::Working, None, Some(1000))
        );
        let long = task_of(&status(ExecutionState::Running, Some(600_000), None), day);
        assert_eq!(long.poll_interval_ms, Some(5000));
        let done = task_of(
            &status(ExecutionState::Failed, Some(59_000), Some("2026-11-30T08:01:00.000Z")),
            day,
        );
        assert_eq!(
            done.status,
            TaskStatus::Completed,
            "a failed workflow is a completed task"
        );
        assert_eq!(
            done.ttl_ms,
            Some(60_000 + 86_400_000),
            "finished a minute after creation, kept a day"
        );
        assert_eq!(done.last_updated_at, "2026-11-30T08:01:00.000Z");
        assert_eq!(done.poll_interval_ms, None);
        let cancelled = task_of(
            &status(ExecutionState::Cancelled, Some(1000), Some("2026-11-30T08:00:02.000Z")),
            day,
        );
        assert_eq!(cancelled.status, TaskStatus::Cancelled);
    }

    #[test]
    fn a_finished_task_says_how_it_ended() {
        let mut s = status(ExecutionState::Failed, Some(1005), Some("2026-11-30T08:00:02.005Z"));
        s.exit_code = Some(2);
        s.output.stdout.lines = 1;
        s.output.stderr.lines = 1;
        assert_eq!(
            Summary(&s).ended(),
            "failed after 1.0 s (exit code 2); 1 stdout and 1 stderr lines"
        );
        s.state = ExecutionState::Cancelled;
        s.exit_code = None;
        s.signal = Some("SIGTERM".into());
        s.error = Some("cancelled by request".into());
        assert_eq!(
            Summary(&s).ended(),
            "cancelled after 1.0 s (cancelled by request); 1 stdout and 1 stderr lines"
        );
    }

    #[test]
    fn a_task_id_that_is_not_an_execution_id_is_refused_saying_so() {
        let e = task_id("task-7").unwrap_err();
        assert_eq!(e.code, rmcp::model::ErrorCode::INVALID_PARAMS);
        assert!(e.message.contains("not a task of this server"), "{}", e.message);
    }
}
