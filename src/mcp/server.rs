//! The rmcp server: six tools on top of the catalog and the engine. Every result carries `structuredContent`
//! (matching the declared output schema) and a compact text for the model; a tool that ran and could not do
//! what was asked answers `isError: true` with one sentence naming the problem and the way out. Beside the
//! tools: executions as tasks for clients that declare the tasks extension ([`super::tasks`]), executions as
//! resources ([`super::resources`]) and subscriptions to them ([`super::subscriptions`]).

use std::sync::Arc;
use std::time::Duration;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResponse, CancelTaskParams, GetTaskParams, GetTaskResult, Implementation, JsonObject,
    ListResourceTemplatesResult, ListResourcesResult, PaginatedRequestParams, ReadResourceRequestParams,
    ReadResourceResponse, ServerCapabilities, ServerConfig, SubscribeRequestParams, SubscriptionFilter,
    UnsubscribeRequestParams, UpdateTaskParams,
};
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use serde_json::Value;

use super::reply::{
    ToolError, ToolResult, at_most, catalog, catalog_settled, find, in_range, known, parse_args, read_logs, reply,
    sent_len, status_reply, wait_final, wait_of, workflow,
};
use super::resources::ResourceRef;
use super::schema::{input_schema, output_schema};
use super::subscriptions::{MAX_SUBSCRIPTIONS, Session};
use super::transport::Streams;
use super::types::*;
use super::{resources, tasks, text, waiting};
use crate::app::App;
use crate::catalog::param::resolve;
use crate::engine::{ListFilter, StopReason};
use crate::logs::{BudgetHit, LogQuery, StreamSelector};

#[derive(Clone)]
pub struct WorkflowServer {
    pub(super) app: Arc<App>,
    tool_router: ToolRouter<Self>,
    /// What this session's client subscribed to.
    pub(super) session: Arc<Session>,
}

#[tool_router]
impl WorkflowServer {
    /// A server for one session: what the session subscribes to is watched until `ended` fires; `streams`, if
    /// given, is told when a `subscriptions/listen` request has become a stream.
    pub fn for_session(app: Arc<App>, ended: tokio_util::sync::CancellationToken, streams: Option<Streams>) -> Self {
        WorkflowServer {
            app,
            tool_router: Self::tool_router(),
            session: Session::new(ended, streams),
        }
    }

    /// A server whose session never ends by itself (its subscriptions last as long as the process).
    pub fn new(app: Arc<App>) -> Self {
        Self::for_session(app, tokio_util::sync::CancellationToken::new(), None)
    }

    #[tool(
        description = "List the workflows this server can run, each with a JSON Schema of its params. \
                       Start here; pass refresh=true to rescan discovery folders and re-read imported task files.",
        input_schema = input_schema::<ListWorkflowsInput>(),
        output_schema = output_schema::<ListWorkflowsOutput>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_workflows(&self, Parameters(args): Parameters<JsonObject>) -> ToolResult {
        let input: ListWorkflowsInput = parse_args("list_workflows", args)?;
        if input.refresh {
            let catalog = self.app.catalog.clone();
            tokio::task::spawn_blocking(move || catalog.refresh())
                .await
                .map_err(ToolError::Rescan)?;
        } else {
            catalog_settled(&self.app).await;
        }
        let out = match &input.workflow {
            Some(name) => ListWorkflowsOutput {
                workflows: vec![self.app.catalog.info(&*workflow(&self.app, name)?)],
                more: Vec::new(),
                config: self.app.catalog.config().map(|p| p.display().to_string()),
                hint: self.app.catalog.blocked(),
            },
            None => catalog(&self.app),
        };
        reply(&out, text::workflows(&out))
    }

    #[tool(
        description = "Start a workflow with params; returns its status (with execution_id) at once, or after \
                       waiting up to wait_ms (at most 50000) for it to finish. Follow it with get_status and \
                       get_logs. A failed run's status carries its last stderr lines as evidence.",
        input_schema = input_schema::<ExecuteInput>(),
        output_schema = output_schema::<StatusOutput>(),
        annotations(destructive_hint = true, idempotent_hint = false, open_world_hint = true)
    )]
    async fn execute_workflow(
        &self,
        Parameters(args): Parameters<JsonObject>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ToolError> {
        let input: ExecuteInput = parse_args("execute_workflow", args)?;
        let (wait, capped) = wait_of(input.wait_ms);
        if let Some(key) = &input.idempotency_key
            && (key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_BYTES)
        {
            return Err(ToolError::IdempotencyKey(key.len()));
        }
        catalog_settled(&self.app).await;
        let def = workflow(&self.app, &input.workflow)?;
        if let Some(refusal) = self.app.catalog.blocked() {
            return Err(ToolError::Untrusted(refusal));
        }
        let given = match input.params {
            None | Some(Value::Null) => JsonObject::new(),
            Some(Value::Object(m)) => m,
            Some(other) => {
                return Err(ToolError::ParamsNotObject(other));
            }
        };
        let invocation = resolve(&def.name, &def.params, &given)?;
        let exec = self.app.engine.execute(def, invocation, input.idempotency_key).await?;
        wait_final(&self.app, &ctx, &exec, wait).await;
        // A client that can follow a task gets one for an execution that is not over yet (its id is the
        // execution id); everyone else gets the status, as always.
        if tasks::declared(&ctx) && !self.app.engine.refresh(&exec).await.state().is_terminal() {
            return Ok(tasks::created(&self.app, &exec).await.into());
        }
        status_reply(&self.app, &exec, 0, capped).await.map(Into::into)
    }

    #[tool(
        description = "The status of an execution: state, exit code or signal, duration, progress from \
                       structured events, output counts, and for a failure its last stderr lines (evidence). \
                       wait_ms (at most 50000) waits for it to finish; tail_lines adds the last lines of output.",
        input_schema = input_schema::<GetStatusInput>(),
        output_schema = output_schema::<StatusOutput>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_status(
        &self,
        Parameters(args): Parameters<JsonObject>,
        ctx: RequestContext<RoleServer>,
    ) -> ToolResult {
        let input: GetStatusInput = parse_args("get_status", args)?;
        let (wait, capped) = wait_of(input.wait_ms);
        let tail = at_most("tail_lines", input.tail_lines, MAX_TAIL_LINES)?.unwrap_or(0);
        let exec = find(&self.app, &input.execution_id).await?;
        wait_final(&self.app, &ctx, &exec, wait).await;
        status_reply(&self.app, &exec, tail, capped).await
    }

    #[tool(
        description = "Read an execution's output. `lines` holds one record per line, `SEQ TEXT`, with marks \
                       after the seq: `!` stderr, `~` partial (continues in the next record), `-` grep context, \
                       `+` cut to fit max_bytes; `# ...` lines are notes. Pass next_seq back as since_seq to \
                       continue exactly where you stopped (nothing skipped or repeated). tail=N gives the last N \
                       lines; stream, events and grep (+context) select lines; max_lines and max_bytes bound the \
                       answer; wait_ms (at most 50000) long-polls for new lines; timestamps=true adds read times.",
        input_schema = input_schema::<GetLogsInput>(),
        output_schema = output_schema::<LogsOutput>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_logs(&self, Parameters(args): Parameters<JsonObject>, ctx: RequestContext<RoleServer>) -> ToolResult {
        let input: GetLogsInput = parse_args("get_logs", args)?;
        let (wait, _) = wait_of(input.wait_ms);
        let context = at_most("context", input.context, MAX_CONTEXT)?.unwrap_or(0);
        let max_lines = in_range("max_lines", input.max_lines, 1, MAX_LINES, DEFAULT_MAX_LINES)?;
        let max_bytes = in_range("max_bytes", input.max_bytes, 1, MAX_BYTES, DEFAULT_MAX_BYTES)?;
        let grep = match &input.grep {
            None => None,
            Some(p) if p.len() > MAX_GREP_BYTES => {
                return Err(ToolError::GrepTooLong(p.len()));
            }
            Some(p) => Some(
                regex::bytes::RegexBuilder::new(p)
                    .size_limit(1 << 22)
                    .build()
                    .map_err(ToolError::Grep)?,
            ),
        };
        let exec = find(&self.app, &input.execution_id).await?;
        let timestamps = input.timestamps.unwrap_or(false);
        let mut query = LogQuery {
            since_seq: input.since_seq,
            tail: input.tail,
            stream: input.stream.unwrap_or(StreamSelector::Both),
            events: input.events.unwrap_or_default(),
            grep,
            context: context as usize,
            max_lines: max_lines as usize,
            max_bytes: max_bytes as usize,
            raw: input.raw.unwrap_or(false),
            ..LogQuery::default()
        };
        let engine = &self.app.engine;
        // Followed from before the first read, so a line that arrives during it still wakes the wait.
        let mut follow = engine.follow(&exec);
        let (mut page, mut state) = read_logs(&self.app, &exec, &query, timestamps).await?;
        // Waits only when caught up: a scan that stopped at its budget answers at once.
        if page.count == 0 && !page.has_more && !state.is_terminal() && !wait.is_zero() {
            let deadline = tokio::time::Instant::now() + wait;
            let shutdown = self.app.engine.shutdown_token();
            // Later rounds only look at what arrives after the first scan (or at the seq asked for, if the log has
            // not reached it yet).
            query.since_seq = Some(page.next_seq.max(query.since_seq.unwrap_or(0)));
            query.tail = None;
            let new_lines = async {
                loop {
                    tokio::select! {
                        _ = follow.changed() => {}
                        _ = tokio::time::sleep_until(deadline) => return,
                        _ = ctx.ct.cancelled() => return,
                        _ = shutdown.cancelled() => return,
                    }
                    let Ok((p, st)) = read_logs(&self.app, &exec, &query, timestamps).await else {
                        return;
                    };
                    if p.count > 0 || p.has_more || st.is_terminal() {
                        return;
                    }
                }
            };
            waiting::reporting(&ctx, engine, &exec, new_lines).await;
            (page, state) = read_logs(&self.app, &exec, &query, timestamps).await?;
        }
        let done = state.is_terminal() && !page.has_more;
        let out = LogsOutput {
            execution_id: exec.id().to_string(),
            state,
            first_seq: page.first_seq,
            last_seq: page.last_seq,
            next_seq: page.next_seq,
            has_more: page.has_more,
            done,
            total_lines: page.total_lines,
            truncated: page.budget_hit,
            omitted: page.omitted,
            hint: text::logs_hint(
                page.next_seq,
                page.has_more,
                done,
                page.cut_seq,
                page.budget_hit == Some(BudgetHit::ScanBudget),
                page.looked_back_to,
                exec.unwritten(),
            ),
            lines: std::mem::take(&mut page.lines.text),
        };
        reply(&out, text::logs(&out))
    }

    #[tool(
        description = "Stop an execution: SIGTERM to its whole process group, grace_ms (default 5000, at most \
                       50000) to exit, then SIGKILL. Returns the final status once no process of the group is \
                       left. A queued execution is removed from the queue; a finished one is returned unchanged.",
        input_schema = input_schema::<CancelInput>(),
        output_schema = output_schema::<StatusOutput>(),
        annotations(destructive_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn cancel_execution(
        &self,
        Parameters(args): Parameters<JsonObject>,
        ctx: RequestContext<RoleServer>,
    ) -> ToolResult {
        let input: CancelInput = parse_args("cancel_execution", args)?;
        let grace = at_most("grace_ms", input.grace_ms, MAX_GRACE_MS)?
            .map(Duration::from_millis)
            .unwrap_or(self.app.engine.config().grace);
        let exec = find(&self.app, &input.execution_id).await?;
        let engine = &self.app.engine;
        waiting::reporting(&ctx, engine, &exec, engine.stop(&exec, StopReason::Cancel, grace))
            .await
            .map_err(|e| ToolError::Stop(e.to_string()))?;
        status_reply(&self.app, &exec, 0, false).await
    }

    #[tool(
        description = "List executions, newest first, optionally only one workflow's or one state's.",
        input_schema = input_schema::<ListExecutionsInput>(),
        output_schema = output_schema::<ListExecutionsOutput>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_executions(&self, Parameters(args): Parameters<JsonObject>) -> ToolResult {
        let input: ListExecutionsInput = parse_args("list_executions", args)?;
        let limit = in_range("limit", input.limit, 1, MAX_LIST_LIMIT, DEFAULT_LIST_LIMIT)?;
        let max_bytes = in_range("max_bytes", input.max_bytes, 1, MAX_BYTES, DEFAULT_LIST_BYTES)? as usize;
        if let Some(w) = &input.workflow
            && self.app.catalog.get(w).is_none()
            && self
                .app
                .engine
                .list(&ListFilter {
                    workflow: Some(w.clone()),
                    state: None,
                    limit: 0,
                })
                .await?
                .1
                == 0
        {
            return Err(ToolError::UnknownWorkflow(self.app.catalog.unknown_message(w)));
        }
        let (mut executions, total) = self
            .app
            .engine
            .list(&ListFilter {
                workflow: input.workflow,
                state: input.state,
                limit: limit as usize,
            })
            .await?;
        let wanted = executions.len();
        let mut used = 0;
        let fits = executions
            .iter()
            .position(|s| {
                used += sent_len(s);
                used > max_bytes
            })
            .unwrap_or(wanted)
            .max(1)
            .min(wanted);
        executions.truncate(fits);
        let out = ListExecutionsOutput {
            hint: (fits < wanted).then(|| {
                format!(
                    "{fits} of the {wanted} asked for fit in max_bytes {max_bytes}: raise max_bytes, or narrow \
                     with workflow or state"
                )
            }),
            executions,
            total,
            retained: self.app.engine.retained().await?,
            retention: self.app.engine.retention_rule(),
        };
        reply(&out, text::executions(&out))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for WorkflowServer {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_resources_list_changed()
            .enable_tasks()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("workflow-mcp", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Runs registered workflows (builds, test suites, multi-phase agent workflows) as subprocesses. \
                 list_workflows shows what can run and each workflow's params; execute_workflow starts one and \
                 returns an execution_id at once; get_status (wait_ms to wait for the end; a failure carries its \
                 last stderr lines) and get_logs (pass next_seq back as since_seq to follow; tail, grep) report \
                 on it; cancel_execution stops it. Every result ends with a hint of what to call next.",
            )
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, McpError> {
        Ok(GetTaskResult::new(tasks::now(&self.app, &request.task_id, &ctx).await?))
    }

    async fn cancel_task(&self, request: CancelTaskParams, _: RequestContext<RoleServer>) -> Result<(), McpError> {
        tasks::cancel(&self.app, &request.task_id).await
    }

    async fn update_task(&self, request: UpdateTaskParams, _: RequestContext<RoleServer>) -> Result<(), McpError> {
        tasks::update(&self.app, &request.task_id).await
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        resources::page(&self.app, request.as_ref().and_then(|r| r.cursor.as_deref())).await
    }

    async fn list_resource_templates(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(resources::templates())
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        resources::read(&self.app, &request.uri).await.map(Into::into)
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        // Asked again (under any spelling) or over the cap: answered before the execution is looked up.
        if let Some(resource) = ResourceRef::parse(&request.uri)
            && self
                .session
                .admits(resource)
                .map_err(|e| McpError::invalid_params(e.to_string(), None))?
        {
            return Ok(());
        }
        let (resource, view) = resources::execution(&self.app, &request.uri).await?;
        let view = view.ok_or_else(|| {
            McpError::invalid_params(
                format!(
                    "{} is not watched; subscribe to an execution's status or output \
                     (workflow://executions/{{execution_id}}, or …/logs)",
                    request.uri
                ),
                None,
            )
        })?;
        self.session
            .subscribe(&self.app.engine, (resource, request.uri), view, ctx.peer.clone())
            .map_err(|e| McpError::invalid_params(e.to_string(), None))
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.session.unsubscribe(&request.uri);
        Ok(())
    }

    fn accepted_subscription_filter(&self, requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        let mut accepted = SubscriptionFilter::new();
        accepted.resources_list_changed = requested.resources_list_changed;
        // Each resource once, however spelled, and at most MAX_SUBSCRIPTIONS: what is left out is not acknowledged.
        accepted.resource_subscriptions = requested.resource_subscriptions.as_ref().map(|uris| {
            let mut taken = std::collections::HashSet::new();
            uris.iter()
                .filter(|uri| {
                    ResourceRef::parse(uri).is_some_and(|r| {
                        taken.len() < MAX_SUBSCRIPTIONS
                            && !taken.contains(&r)
                            && r.execution().is_some_and(|id| known(&self.app, &id))
                            && taken.insert(r)
                    })
                })
                .cloned()
                .collect()
        });
        Some(accepted)
    }

    async fn listen(&self, ctx: SubscriptionContext) -> Result<(), McpError> {
        let accepted = ctx.accepted().clone();
        let mut executions = Vec::new();
        for uri in accepted.resource_subscriptions.unwrap_or_default() {
            if let Some(id) = ResourceRef::parse(&uri).and_then(|r| r.execution())
                && let Ok(Some(view)) = self.app.engine.find(&id).await
            {
                executions.push((uri, view));
            }
        }
        let list = accepted.resources_list_changed == Some(true);
        self.session
            .listen(
                &self.app.engine,
                executions,
                list,
                (ctx.request_context().id.clone(), ctx.sink().clone()),
                ctx.cancelled(),
            )
            .await;
        Ok(())
    }
}
