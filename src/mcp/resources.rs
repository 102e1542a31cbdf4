//! Executions as MCP resources, for people and IDEs (VS Code shows resources as files and watches subscribed
//! ones): each retained execution is `workflow://executions/{id}` (its status as JSON, what `get_status`
//! answers) with its output beside it at `workflow://executions/{id}/logs` (the newest lines in the compact
//! form, within the result budget), and the catalog is `workflow://workflows` (what `list_workflows` answers).
//! `resources/list` gives the catalog, then the executions newest first, a page at a time, with titles a person
//! reads: workflow, state, start time.

use std::sync::Arc;

use rmcp::ErrorData as McpError;
use rmcp::model::{
    Annotations, ListResourceTemplatesResult, ListResourcesResult, ReadResourceResult, Resource as McpResource,
    ResourceContents, ResourceTemplate,
};
use serde_json::Value;
use uuid::Uuid;

use super::reply;
use crate::app::App;
use crate::engine::{ExecutionStatus, ExecutionView, PageKey};
use crate::format::Summary;
use crate::logs::{BudgetHit, CompactLines, LogQuery};

pub const CATALOG_URI: &str = "workflow://workflows";
const EXECUTIONS_PREFIX: &str = "workflow://executions/";
pub const STATUS_TEMPLATE: &str = "workflow://executions/{execution_id}";
pub const LOGS_TEMPLATE: &str = "workflow://executions/{execution_id}/logs";

/// Executions per `resources/list` page (two resources each).
const PAGE: usize = 50;
/// The newest lines a logs resource shows, and the bytes they may take as sent (JSON-escaped): the whole
/// result stays under the 50,000 characters Claude Code shows inline.
const LOG_LINES: u64 = 1000;
const LOG_BYTES: usize = 40_000;

/// A resource of this server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResourceRef {
    Catalog,
    Status(Uuid),
    Logs(Uuid),
}

impl ResourceRef {
    pub fn parse(uri: &str) -> Option<ResourceRef> {
        if uri == CATALOG_URI {
            return Some(ResourceRef::Catalog);
        }
        let rest = uri.strip_prefix(EXECUTIONS_PREFIX)?;
        match rest.strip_suffix("/logs") {
            Some(id) => Uuid::parse_str(id).ok().map(ResourceRef::Logs),
            None => Uuid::parse_str(rest).ok().map(ResourceRef::Status),
        }
    }

    /// The execution it belongs to, if any.
    pub fn execution(self) -> Option<Uuid> {
        match self {
            ResourceRef::Catalog => None,
            ResourceRef::Status(id) | ResourceRef::Logs(id) => Some(id),
        }
    }
}

pub fn status_uri(id: &str) -> String {
    format!("{EXECUTIONS_PREFIX}{id}")
}

pub fn logs_uri(id: &str) -> String {
    format!("{EXECUTIONS_PREFIX}{id}/logs")
}

/// `2026-11-30T08:41:02.123Z` as a person reads it: `2026-11-30 08:41:02 UTC`.
fn readable_time(rfc3339: &str) -> String {
    match (rfc3339.get(..10), rfc3339.get(11..19)) {
        (Some(day), Some(time)) => format!("{day} {time} UTC"),
        _ => rfc3339.to_owned(),
    }
}

/// When the status last changed: the newest of its times.
pub fn last_updated(s: &ExecutionStatus) -> String {
    [
        Some(&s.created_at),
        s.started_at.as_ref(),
        s.output.last_output_at.as_ref(),
        s.finished_at.as_ref(),
    ]
    .into_iter()
    .flatten()
    .max()
    .cloned()
    .unwrap_or_default()
}

/// When a person would say it began: "started 2026-11-30 08:41:02 UTC" (or "created …" while queued).
fn began(s: &ExecutionStatus) -> String {
    match &s.started_at {
        Some(t) => format!("started {}", readable_time(t)),
        None => format!("created {}", readable_time(&s.created_at)),
    }
}

/// "build: failed (exit code 2), started 2026-11-30 08:41:02 UTC".
fn status_title(s: &ExecutionStatus) -> String {
    format!("{}, {}", Summary(s).title(), began(s))
}

/// "build output: 1234 lines, started 2026-11-30 08:41:02 UTC".
fn logs_title(s: &ExecutionStatus) -> String {
    format!("{} output: {}, {}", s.workflow, Summary(s).lines(), began(s))
}

/// The two resources of an execution, as `resources/list` shows them.
fn execution_resources(s: &ExecutionStatus) -> [McpResource; 2] {
    let id = &s.execution_id;
    let short = id.get(..8).unwrap_or(id);
    let mut annotations = Annotations::default();
    annotations.last_modified = Some(last_updated(s));
    let status = McpResource::new(status_uri(id), format!("{}-{short}", s.workflow))
        .with_title(status_title(s))
        .with_description(format!(
            "Status of execution {id} as JSON (what get_status answers: state, exit code, progress, output counts)"
        ))
        .with_mime_type("application/json")
        .with_annotations(annotations.clone());
    let logs = McpResource::new(logs_uri(id), format!("{}-{short}-logs", s.workflow))
        .with_title(logs_title(s))
        .with_description(format!(
            "The newest lines execution {id} printed, one record per line as get_logs gives them (`SEQ TEXT`, \
             `!` after the seq for stderr)"
        ))
        .with_mime_type("text/plain")
        .with_annotations(annotations);
    [status, logs]
}

/// A page cursor: the place of the last execution shown (`CREATED:SEQ:ID`, see [`PageKey`]); the next page
/// starts after it, so executions added meanwhile do not shift it, and only that page is read.
fn cursor(key: &PageKey) -> String {
    format!("{}:{}:{}", key.created_at, key.seq, key.id)
}

fn parse_cursor(c: &str) -> Option<PageKey> {
    let mut parts = c.splitn(3, ':');
    let created_at = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let id = Uuid::parse_str(parts.next()?).ok()?;
    Some(PageKey { created_at, seq, id })
}

pub(super) fn templates() -> ListResourceTemplatesResult {
    ListResourceTemplatesResult::with_all_items(vec![
        ResourceTemplate::new(STATUS_TEMPLATE, "execution-status")
            .with_title("Execution status")
            .with_description(
                "An execution's status as JSON, as get_status answers it (execution_id as execute_workflow \
                 returns it)",
            )
            .with_mime_type("application/json"),
        ResourceTemplate::new(LOGS_TEMPLATE, "execution-logs")
            .with_title("Execution output")
            .with_description(
                "The newest lines an execution printed, in get_logs' compact form (a `# ` line notes what is \
                 left out)",
            )
            .with_mime_type("text/plain"),
    ])
}

/// One page of resources: the catalog first, then two resources per execution, newest first.
pub(super) async fn page(app: &App, cursor_in: Option<&str>) -> Result<ListResourcesResult, McpError> {
    let after = match cursor_in {
        None => None,
        Some(c) => Some(parse_cursor(c).ok_or_else(|| {
            McpError::invalid_params(
                format!("cursor \"{c}\" is not one resources/list gave; start again without a cursor"),
                None,
            )
        })?),
    };
    // One past the page says whether there is a next one.
    let mut listed = app
        .engine
        .page(after, PAGE + 1)
        .await
        .map_err(|e| McpError::internal_error(crate::engine::error_chain(&e), None))?;
    let more = listed.len() > PAGE;
    listed.truncate(PAGE);
    let mut resources = Vec::with_capacity(2 * listed.len() + 1);
    if cursor_in.is_none() {
        resources.push(
            McpResource::new(CATALOG_URI, "workflows")
                .with_title("Workflows this server can run")
                .with_description("The catalog as JSON, as list_workflows answers it, with each workflow's params")
                .with_mime_type("application/json"),
        );
    }
    resources.extend(listed.iter().flat_map(|(_, s)| execution_resources(s)));
    let mut result = ListResourcesResult::with_all_items(resources);
    if more && let Some((last, _)) = listed.last() {
        result.next_cursor = Some(cursor(last));
    }
    Ok(result)
}

/// The execution a resource URI names, or an error that says why there is none.
pub(super) async fn execution(app: &App, uri: &str) -> Result<(ResourceRef, Option<ExecutionView>), McpError> {
    let resource = ResourceRef::parse(uri).ok_or_else(|| {
        McpError::resource_not_found(
            format!(
                "no resource {uri}: this server has {CATALOG_URI}, {STATUS_TEMPLATE} and {LOGS_TEMPLATE} \
                 (execution ids as execute_workflow returns them)"
            ),
            None,
        )
    })?;
    let Some(id) = resource.execution() else {
        return Ok((resource, None));
    };
    let found = app.engine.find(&id).await;
    let view = found
        .map_err(|e| McpError::internal_error(crate::engine::error_chain(&e), None))?
        .ok_or_else(|| {
            McpError::resource_not_found(
                format!(
                    "no execution {id}: it never existed on this server's state directory, or was forgotten by the \
                 retention rule ({}); resources/list shows the known ones",
                    app.engine.retention_rule()
                ),
                None,
            )
        })?;
    Ok((resource, Some(view)))
}

pub(super) async fn read(app: &Arc<App>, uri: &str) -> Result<ReadResourceResult, McpError> {
    let (resource, view) = execution(app, uri).await?;
    let text = match (resource, view) {
        (ResourceRef::Catalog, _) => {
            reply::catalog_settled(app).await;
            json_text(&reply::catalog(app))?
        }
        (ResourceRef::Status(_), Some(view)) => {
            let reply = reply::status_reply(app, &view, 0, false)
                .await
                .map_err(|e| McpError::internal_error(e.to_string(), None))?;
            json_text(&reply.structured_content.unwrap_or(Value::Null))?
        }
        (ResourceRef::Logs(_), Some(view)) => {
            // A stored execution's lines come from its files: read off the async workers.
            let app = app.clone();
            tokio::task::spawn_blocking(move || log_tail(&app, &view))
                .await
                .map_err(|e| McpError::internal_error(format!("reading the log failed: {e}"), None))?
        }
        _ => unreachable!("an execution resource comes with its execution"),
    };
    let mime = match resource {
        ResourceRef::Logs(_) => "text/plain",
        _ => "application/json",
    };
    Ok(ReadResourceResult::new(vec![
        ResourceContents::text(text, uri).with_mime_type(mime),
    ]))
}

/// The newest lines that fit [`LOG_BYTES`] (at most [`LOG_LINES`]), after a note of what comes before.
fn log_tail(app: &App, view: &ExecutionView) -> String {
    let snap = app.engine.refresh_blocking(view).snapshot();
    let mut lines = LOG_LINES;
    // A tail is read oldest first, so a byte budget would keep its oldest lines: ask for fewer lines until the
    // newest ones fit (a few rounds at most, lines being of similar sizes).
    let page = loop {
        let q = LogQuery {
            tail: Some(lines),
            max_lines: lines as usize,
            max_bytes: LOG_BYTES,
            ..LogQuery::default()
        };
        let page = q.run_into(&snap, CompactLines::default());
        if page.budget_hit != Some(BudgetHit::MaxBytes) || lines <= 1 {
            break page;
        }
        lines = (page.count as u64).min(lines - 1).max(1);
    };
    let mut text = String::new();
    match page.first_seq {
        Some(first) if first > 0 => text.push_str(&format!(
            "# lines 0-{} are not shown here: get_logs reads them (since_seq, tail, grep)\n",
            first - 1
        )),
        None => text.push_str("# no output yet\n"),
        _ => {}
    }
    text.push_str(&page.lines.text);
    text
}

fn json_text<T: serde::Serialize>(value: &T) -> Result<String, McpError> {
    serde_json::to_string_pretty(value).map_err(|e| McpError::internal_error(format!("cannot encode: {e}"), None))
}
