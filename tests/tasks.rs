//! Executions as MCP tasks (for clients that declare the tasks extension) and as resources, with
//! subscriptions — through rmcp's client, on sessions that began with `initialize` (up to 2025-11-25) and on
//! 2026-07-28 ones (per-request capabilities, `subscriptions/listen`).

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CancelTaskParams, ClientCapabilities, ClientConfig, ErrorCode,
    GetTaskParams, Implementation, ReadResourceRequestParams, ResourceContents, ResourceUpdatedNotificationParam,
    ServerNotification, SubscribeRequestParams, SubscriptionFilter, UnsubscribeRequestParams, UpdateTaskParams,
};
use rmcp::service::{NotificationContext, SubscriptionEnd};
use rmcp::{ClientHandler, RoleClient, ServiceError};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::util::{RawServer, Server, TestDir, records, release_fifo, wf};

/// What a client heard from the server outside of answers.
#[derive(Debug, PartialEq)]
enum Heard {
    Updated(String),
    ListChanged,
}

/// A client that declares the tasks extension (or not) and records resource notifications.
#[derive(Clone)]
struct Client {
    tasks: bool,
    heard: mpsc::UnboundedSender<Heard>,
}

fn client(tasks: bool) -> (Client, mpsc::UnboundedReceiver<Heard>) {
    let (heard, rx) = mpsc::unbounded_channel();
    (Client { tasks, heard }, rx)
}

impl ClientHandler for Client {
    fn get_info(&self) -> ClientConfig {
        let capabilities = if self.tasks {
            ClientCapabilities::builder().enable_tasks().build()
        } else {
            ClientCapabilities::default()
        };
        ClientConfig::new(capabilities, Implementation::new("tasks-test", "0"))
    }

    async fn on_resource_updated(&self, p: ResourceUpdatedNotificationParam, _: NotificationContext<RoleClient>) {
        let _ = self.heard.send(Heard::Updated(p.uri));
    }

    async fn on_resource_list_changed(&self, _: NotificationContext<RoleClient>) {
        let _ = self.heard.send(Heard::ListChanged);
    }
}

fn fifo_str(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// execute_workflow through `call_tool_once`, which hands back a task as it came.
async fn execute<H: ClientHandler>(s: &Server<H>, args: Value) -> CallToolResponse {
    let params = CallToolRequestParams::new("execute_workflow").with_arguments(args.as_object().unwrap().clone());
    s.client.call_tool_once(params).await.expect("execute_workflow answers")
}

/// Starts `workflow` and returns the task it was answered with, as JSON (the wire shape).
async fn execute_task<H: ClientHandler>(s: &Server<H>, workflow: &str) -> Value {
    match execute(s, json!({"workflow": workflow})).await {
        CallToolResponse::Task(t) => serde_json::to_value(t).unwrap(),
        other => panic!("a client that declared tasks gets a task, got {other:?}"),
    }
}

async fn get_task<H: ClientHandler>(s: &Server<H>, id: &str) -> Result<Value, rmcp::ErrorData> {
    match s.client.get_task(GetTaskParams::new(id)).await {
        Ok(t) => Ok(serde_json::to_value(t).unwrap()),
        Err(ServiceError::McpError(e)) => Err(e),
        Err(e) => panic!("tasks/get failed below the protocol: {e}"),
    }
}

fn protocol_error<T: std::fmt::Debug>(r: Result<T, ServiceError>) -> rmcp::ErrorData {
    match r {
        Err(ServiceError::McpError(e)) => e,
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
}

async fn read<H: ClientHandler>(s: &Server<H>, uri: &str) -> Result<(String, String), rmcp::ErrorData> {
    match s.client.read_resource(ReadResourceRequestParams::new(uri)).await {
        Ok(r) => match r.contents.into_iter().next() {
            Some(ResourceContents::TextResourceContents { text, mime_type, .. }) => {
                Ok((text, mime_type.unwrap_or_default()))
            }
            other => panic!("{uri}: expected one text content, got {other:?}"),
        },
        Err(ServiceError::McpError(e)) => Err(e),
        Err(e) => panic!("resources/read failed below the protocol: {e}"),
    }
}

/// Waits for the next notification about `uri`, leaving list changes aside.
async fn next_update(heard: &mut mpsc::UnboundedReceiver<Heard>, uri: &str) {
    loop {
        match heard.recv().await.expect("the client is still connected") {
            Heard::Updated(u) if u == uri => return,
            Heard::Updated(u) => panic!("an update for {u}, which is not subscribed"),
            Heard::ListChanged => {}
        }
    }
}

#[tokio::test]
async fn a_client_that_declares_tasks_gets_one_and_polls_it_to_the_result_get_status_gives() {
    let dir = TestDir::new("task");
    let fifo = dir.fifo("go");
    let (c, _) = client(true);
    let s = Server::start_with_handler(
        "task",
        json!({"limits": {"retain_seconds": 3600}, "workflows": [wf("build", &[
            "out", "compiling", "wait-fifo", fifo_str(&fifo), "err", "error: it broke", "exit", "2"])]}),
        &[],
        c,
    )
    .await;
    let created = execute_task(&s, "build").await;
    assert_eq!(created["resultType"], "task", "{created}");
    assert_eq!(created["status"], "working");
    assert!(
        created["ttlMs"].is_null(),
        "a running execution is never forgotten: {created}"
    );
    assert!(created["pollIntervalMs"].as_u64().unwrap() >= 1000, "{created}");
    let id = created["taskId"].as_str().unwrap().to_owned();
    Uuid::parse_str(&id).expect("the task id is an execution id");

    // The tools know the task by the same id.
    s.wait_line(&id, "compiling").await;
    let working = get_task(&s, &id).await.unwrap();
    assert_eq!(
        (&working["status"], &working["resultType"]),
        (&json!("working"), &json!("complete"))
    );
    let message = working["statusMessage"].as_str().unwrap();
    assert!(
        message.starts_with("running for") && message.ends_with("1 stdout and 0 stderr lines so far"),
        "{working}"
    );
    assert!(working.get("result").is_none());

    release_fifo(&fifo);
    let status = s.wait_final(&id).await;
    let done = get_task(&s, &id).await.unwrap();
    assert_eq!(
        done["status"], "completed",
        "a failed workflow is a completed task: {done}"
    );
    assert_eq!(
        done["result"]["structuredContent"], status,
        "the result inline is what get_status gives"
    );
    assert_eq!(status["state"], "failed");
    assert_eq!(status["exit_code"], 2);
    assert!(
        done["result"].get("isError").is_none_or(|e| e == false),
        "a failed workflow is not a failed call: {done}"
    );
    let text = s.call("get_status", json!({"execution_id": id})).await.text;
    assert_eq!(done["result"]["content"][0]["text"], text);
    assert!(done.get("pollIntervalMs").is_none(), "nothing more to poll: {done}");
    let at = |k: &str| workflow_mcp::clock::parse_rfc3339(status[k].as_str().unwrap()).unwrap();
    let lived = at("finished_at").duration_since(at("created_at")).unwrap().as_millis() as u64;
    assert_eq!(
        done["ttlMs"],
        lived + 3_600_000,
        "kept for the retention age after it finished: {done}"
    );
    assert_eq!(done["lastUpdatedAt"], status["finished_at"]);
}

#[tokio::test]
async fn tasks_cancel_stops_the_execution_and_the_task_ends_cancelled() {
    let dir = TestDir::new("task-cancel");
    let fifo = dir.fifo("never");
    let (c, _) = client(true);
    let s = Server::start_with_handler(
        "task-cancel",
        json!({"workflows": [wf("stuck", &["out", "waiting", "wait-fifo", fifo_str(&fifo)])]}),
        &[],
        c,
    )
    .await;
    let id = execute_task(&s, "stuck").await["taskId"].as_str().unwrap().to_owned();
    s.wait_line(&id, "waiting").await;
    s.client
        .cancel_task(CancelTaskParams::new(&id))
        .await
        .expect("tasks/cancel is acknowledged");
    let task = get_task(&s, &id).await.unwrap();
    assert_eq!(task["status"], "cancelled", "{task}");
    assert!(
        task["statusMessage"]
            .as_str()
            .unwrap()
            .contains("(cancelled by request)"),
        "{task}"
    );
    let status = s.ok("get_status", json!({"execution_id": id})).await;
    assert_eq!(status["state"], "cancelled");
    assert!(
        status["signal"] == "SIGTERM" || status["signal"] == "SIGKILL",
        "{status}"
    );
    s.client
        .cancel_task(CancelTaskParams::new(&id))
        .await
        .expect("cancelling a finished task is acknowledged and changes nothing");
}

#[tokio::test]
async fn a_client_without_the_extension_gets_the_status_as_always() {
    let dir = TestDir::new("no-tasks");
    let fifo = dir.fifo("go");
    let (c, _) = client(false);
    let s = Server::start_with_handler(
        "no-tasks",
        json!({"workflows": [wf("hold", &["wait-fifo", fifo_str(&fifo)])]}),
        &[],
        c,
    )
    .await;
    let CallToolResponse::Complete(r) = execute(&s, json!({"workflow": "hold"})).await else {
        panic!("a plain result");
    };
    let status = r.structured_content.unwrap();
    assert_eq!(status["state"], "running");
    let id = status["execution_id"].as_str().unwrap();
    let refused = get_task(&s, id).await.unwrap_err();
    assert_eq!(
        refused.code.0, -32021,
        "tasks/get from a client that did not declare the extension: {refused:?}"
    );
    release_fifo(&fifo);
}

#[tokio::test]
async fn on_2026_07_28_the_extension_is_declared_per_request() {
    for declared in [true, false] {
        let (c, _) = client(declared);
        let s = Server::start_2026(
            "task-2026",
            json!({"workflows": [wf("hold", &["out", "x", "hold"])]}),
            c,
        )
        .await;
        match execute(&s, json!({"workflow": "hold"})).await {
            CallToolResponse::Task(t) if declared => {
                let id = t.task.task_id;
                let task = get_task(&s, &id).await.unwrap();
                assert_eq!(task["status"], "working");
                s.client.cancel_task(CancelTaskParams::new(&id)).await.unwrap();
                assert_eq!(get_task(&s, &id).await.unwrap()["status"], "cancelled");
            }
            CallToolResponse::Complete(r) if !declared => {
                assert_eq!(r.structured_content.unwrap()["state"], "running");
            }
            other => panic!("declared={declared}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_task_that_is_over_before_the_answer_is_answered_as_a_result() {
    let (c, _) = client(true);
    let s = Server::start_with_handler(
        "task-fast",
        json!({"workflows": [wf("quick", &["out", "done"]), {"name": "missing", "command": ["/nonexistent/tool"]}]}),
        &[],
        c,
    )
    .await;
    let CallToolResponse::Complete(r) = execute(&s, json!({"workflow": "quick", "wait_ms": 50000})).await else {
        panic!("finished within wait_ms: a plain result");
    };
    assert_eq!(r.structured_content.unwrap()["state"], "succeeded");
    let CallToolResponse::Complete(r) = execute(&s, json!({"workflow": "missing"})).await else {
        panic!("a start that failed is a plain result");
    };
    let status = r.structured_content.unwrap();
    assert_eq!(status["state"], "failed_to_start");
    assert_ne!(
        r.is_error,
        Some(true),
        "as for any client: the execution exists, it failed to start"
    );
    let CallToolResponse::Complete(r) = execute(&s, json!({"workflow": "nope"})).await else {
        panic!("a refused call is a plain result");
    };
    assert_eq!(r.is_error, Some(true));
    // Its execution is a task all the same (the id is the execution id).
    let task = get_task(&s, status["execution_id"].as_str().unwrap()).await.unwrap();
    assert_eq!(
        task["result"]["structuredContent"]["state"], "failed_to_start",
        "{task}"
    );
}

#[tokio::test]
async fn unknown_and_foreign_task_ids_are_errors_that_say_so() {
    let (c, _) = client(true);
    let s = Server::start_with_handler("task-ids", json!({"workflows": [wf("w", &["out", "x"])]}), &[], c).await;
    let e = get_task(&s, "task-123").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::INVALID_PARAMS);
    assert!(e.message.contains("not a task of this server"), "{}", e.message);
    let id = Uuid::new_v4().to_string();
    let e = get_task(&s, &id).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::INVALID_PARAMS);
    assert!(
        e.message.contains(&format!("no task {id} here")) && e.message.contains("another server"),
        "{}",
        e.message
    );
    let e = protocol_error(s.client.cancel_task(CancelTaskParams::new(&id)).await);
    assert!(e.message.contains("no task"), "{}", e.message);
    let e = protocol_error(
        s.client
            .update_task(UpdateTaskParams::new(&id, Default::default()))
            .await,
    );
    assert!(e.message.contains("no task"), "{}", e.message);
}

#[tokio::test]
async fn a_task_is_polled_from_another_server_and_after_a_restart() {
    let state = TestDir::new("task-shared");
    let fifo = state.fifo("go");
    let config = json!({"workflows": [wf("build", &["out", "started", "wait-fifo", fifo_str(&fifo), "out", "built"])]});
    let (a_client, _) = client(true);
    let a = Server::spawn_in_with_handler("task-a", config.clone(), &state.join("state"), a_client).await;
    let (b_client, _) = client(true);
    let b = Server::spawn_in_with_handler("task-b", config.clone(), &state.join("state"), b_client).await;
    let id = execute_task(&a, "build").await["taskId"].as_str().unwrap().to_owned();
    a.wait_line(&id, "started").await;
    assert_eq!(
        get_task(&b, &id).await.unwrap()["status"],
        "working",
        "another server on the state directory knows the task"
    );
    release_fifo(&fifo);
    let status = b.wait_final(&id).await;
    let done = get_task(&b, &id).await.unwrap();
    assert_eq!(done["status"], "completed");
    assert_eq!(done["result"]["structuredContent"]["state"], "succeeded");
    assert_eq!(done["result"]["structuredContent"], status);
    drop((a, b));
    // A new server process on the same state directory, as after a restart.
    let (c_client, _) = client(true);
    let c = Server::spawn_in_with_handler("task-c", config, &state.join("state"), c_client).await;
    let again = get_task(&c, &id).await.unwrap();
    assert_eq!(again["status"], "completed", "a restarted server still answers it");
    assert_eq!(again["result"]["structuredContent"]["state"], "succeeded");
}

#[tokio::test]
async fn executions_are_resources_listed_newest_first_and_read_as_get_status_and_get_logs_give_them() {
    let dir = TestDir::new("resources");
    let fifo = dir.fifo("go");
    let s = Server::start(
        "resources",
        json!({"workflows": [
            // One stream: across stdout and stderr, lines keep the order they were read in.
            wf("chatty", &["wide", "3000", "99", "78", "out", "the last line"]),
            wf("hold", &["out", "holding", "wait-fifo", fifo_str(&fifo)]),
        ]}),
    )
    .await;
    let chatty = s.start_wf("chatty", json!({})).await;
    s.wait_final(&chatty).await;
    let hold = s.start_wf("hold", json!({})).await;
    s.wait_line(&hold, "holding").await;

    let listed = s.client.list_all_resources().await.unwrap();
    let uris: Vec<&str> = listed.iter().map(|r| r.uri.as_str()).collect();
    assert_eq!(
        uris,
        [
            "workflow://workflows".to_owned(),
            format!("workflow://executions/{hold}"),
            format!("workflow://executions/{hold}/logs"),
            format!("workflow://executions/{chatty}"),
            format!("workflow://executions/{chatty}/logs"),
        ],
        "the catalog, then executions newest first"
    );
    let title = listed[1].title.as_deref().unwrap();
    assert!(
        title.starts_with("hold: running, started 20") && title.ends_with(" UTC"),
        "workflow, state, start time: {title}"
    );
    assert!(
        listed[3]
            .title
            .as_deref()
            .unwrap()
            .starts_with("chatty: succeeded, started ")
    );
    assert!(
        listed[4]
            .title
            .as_deref()
            .unwrap()
            .starts_with("chatty output: 3001 lines, started "),
        "{:?}",
        listed[4].title
    );
    assert_eq!(listed[1].mime_type.as_deref(), Some("application/json"));
    assert_eq!(listed[2].mime_type.as_deref(), Some("text/plain"));

    let (status, mime) = read(&s, &format!("workflow://executions/{chatty}")).await.unwrap();
    assert_eq!(mime, "application/json");
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status, s.ok("get_status", json!({"execution_id": chatty})).await);

    let (logs, mime) = read(&s, &format!("workflow://executions/{chatty}/logs")).await.unwrap();
    assert_eq!(mime, "text/plain");
    assert!(logs.len() < 50_000, "within the result budget: {}", logs.len());
    let first = logs.lines().next().unwrap();
    assert!(first.starts_with("# lines 0-") && first.contains("get_logs"), "{first}");
    let lines = records(&json!(logs));
    assert_eq!(lines.last().unwrap()["text"], "the last line", "the newest lines");
    let n = lines.len();
    let newest = s
        .ok(
            "get_logs",
            json!({"execution_id": chatty, "tail": n, "max_lines": n, "max_bytes": 1048576}),
        )
        .await;
    assert_eq!(records(&newest["lines"]), lines, "the same records get_logs gives");

    let (catalog, _) = read(&s, "workflow://workflows").await.unwrap();
    let catalog: Value = serde_json::from_str(&catalog).unwrap();
    assert_eq!(catalog, s.ok("list_workflows", json!({})).await);

    let templates = s.client.list_all_resource_templates().await.unwrap();
    let templates: Vec<&str> = templates.iter().map(|t| t.uri_template.as_str()).collect();
    assert_eq!(
        templates,
        [
            "workflow://executions/{execution_id}",
            "workflow://executions/{execution_id}/logs"
        ]
    );

    let unknown = Uuid::new_v4();
    let e = read(&s, &format!("workflow://executions/{unknown}")).await.unwrap_err();
    assert!(e.message.contains(&format!("no execution {unknown}")), "{}", e.message);
    let e = read(&s, "workflow://nothing").await.unwrap_err();
    assert!(
        e.message.contains("workflow://executions/{execution_id}"),
        "{}",
        e.message
    );
    release_fifo(&fifo);
}

#[tokio::test]
async fn the_list_of_resources_comes_in_pages_without_repeats() {
    let s = Server::start("resource-pages", json!({"workflows": [wf("w", &["out", "x"])]})).await;
    let mut ids = Vec::new();
    for _ in 0..60 {
        ids.push(s.start_wf("w", json!({})).await);
    }
    let first = s.client.list_resources(None).await.unwrap();
    assert_eq!(first.resources.len(), 101, "the catalog and 50 executions");
    assert!(first.next_cursor.is_some());
    // An execution started between two pages does not shift the next one.
    s.start_wf("w", json!({})).await;
    let all = s.client.list_all_resources().await.unwrap();
    let mut seen: Vec<&str> = all.iter().map(|r| r.uri.as_str()).collect();
    assert_eq!(seen.len(), 1 + 2 * 61);
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 1 + 2 * 61, "no resource twice");
    for id in ids {
        assert!(seen.contains(&format!("workflow://executions/{id}").as_str()));
    }
}

#[tokio::test]
#[expect(
    deprecated,
    reason = "resources/subscribe is how sessions up to 2025-11-25 subscribe, which is what stdio clients speak"
)]
async fn a_subscriber_hears_of_new_output_state_and_new_executions_and_nothing_once_unsubscribed() {
    let dir = TestDir::new("subscribe");
    let (a, b, c, d) = (dir.fifo("a"), dir.fifo("b"), dir.fifo("c"), dir.fifo("d"));
    let (client, mut heard) = client(false);
    let s = Server::start_with_handler(
        "subscribe",
        json!({"workflows": [
            wf("x", &["out", "first", "wait-fifo", fifo_str(&a), "out", "second", "wait-fifo", fifo_str(&b)]),
            wf("y", &["out", "ready", "wait-fifo", fifo_str(&c), "out", "more", "wait-fifo", fifo_str(&d)]),
            wf("quick", &["out", "hi"]),
        ]}),
        &[],
        client,
    )
    .await;
    let x = s.start_wf("x", json!({})).await;
    s.wait_line(&x, "first").await;
    let x_uri = format!("workflow://executions/{x}");
    let x_logs = format!("{x_uri}/logs");
    s.client.subscribe(SubscribeRequestParams::new(&x_logs)).await.unwrap();

    release_fifo(&a);
    next_update(&mut heard, &x_logs).await;
    let (logs, _) = read(&s, &x_logs).await.unwrap();
    assert!(
        logs.ends_with("1 second\n"),
        "an update means the resource has changed: {logs}"
    );

    // A subscriber also hears when executions are added to the list.
    s.start_wf("quick", json!({})).await;
    loop {
        match heard.recv().await.unwrap() {
            Heard::ListChanged => break,
            Heard::Updated(u) => assert_eq!(u, x_logs),
        }
    }

    let e = protocol_error(
        s.client
            .subscribe(SubscribeRequestParams::new(format!(
                "workflow://executions/{}",
                Uuid::new_v4()
            )))
            .await,
    );
    assert!(e.message.contains("no execution"), "{}", e.message);

    s.client
        .unsubscribe(UnsubscribeRequestParams::new(&x_logs))
        .await
        .unwrap();
    let y = s.start_wf("y", json!({})).await;
    s.wait_line(&y, "ready").await;
    let y_uri = format!("workflow://executions/{y}");
    s.client.subscribe(SubscribeRequestParams::new(&y_uri)).await.unwrap();
    // x ends, then y changes twice. y's second update comes at least UPDATE_EVERY after its first, by when any
    // update for x (held back at most that long) would have come: one session, one ordered stream.
    release_fifo(&b);
    assert_eq!(s.wait_final(&x).await["state"], "succeeded");
    let mut after = Vec::new();
    for (fifo, until) in [(&c, "running"), (&d, "succeeded")] {
        release_fifo(fifo);
        loop {
            match heard.recv().await.unwrap() {
                Heard::Updated(u) if u == y_uri => {
                    let (status, _) = read(&s, &y_uri).await.unwrap();
                    let status: Value = serde_json::from_str(&status).unwrap();
                    if status["state"] == until && status["output"]["last_seq"] == 1 {
                        break;
                    }
                }
                other => after.push(other),
            }
        }
    }
    assert!(
        !after.contains(&Heard::Updated(x_logs.clone())),
        "nothing about {x_logs} once unsubscribed: {after:?}"
    );
}

/// Up to `n` different spellings of execution `id`'s status URI that all parse to it: the id's letters in
/// every mix of cases, hyphenated, simple (no hyphens), braced and as a `urn:uuid:`. The first is the canonical one.
fn spellings(id: &str, n: usize) -> Vec<String> {
    let letters: Vec<usize> = id
        .char_indices()
        .filter(|(_, c)| c.is_ascii_alphabetic())
        .map(|(i, _)| i)
        .collect();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for k in 0..(4usize << letters.len().min(16)) {
        let (form, mask) = (k % 4, k / 4);
        let mut cased: Vec<char> = id.chars().collect();
        for (bit, &i) in letters.iter().enumerate() {
            if mask >> bit & 1 == 1 {
                cased[i] = cased[i].to_ascii_uppercase();
            }
        }
        let cased: String = cased.into_iter().collect();
        let spelled = match form {
            0 => cased,
            1 => cased.replace('-', ""),
            2 => format!("{{{cased}}}"),
            _ => format!("urn:uuid:{cased}"),
        };
        let uri = format!("workflow://executions/{spelled}");
        if seen.insert(uri.clone()) {
            out.push(uri);
        }
        if out.len() == n {
            break;
        }
    }
    out
}

#[tokio::test]
#[expect(
    deprecated,
    reason = "resources/subscribe is how sessions up to 2025-11-25 subscribe, which is what stdio clients speak"
)]
async fn subscribing_to_one_execution_however_spelled_is_one_subscription_and_a_session_has_a_cap() {
    let dir = TestDir::new("subscribe-many");
    let (a, b) = (dir.fifo("a"), dir.fifo("b"));
    let (client, mut heard) = client(false);
    let s = Server::start_with_handler(
        "subscribe-many",
        json!({"workflows": [
            wf("x", &["out", "first", "wait-fifo", fifo_str(&a), "out", "second", "wait-fifo", fifo_str(&b)]),
            wf("quick", &["out", "hi"]),
        ]}),
        &[],
        client,
    )
    .await;
    let x = s.start_wf("x", json!({})).await;
    s.wait_line(&x, "first").await;
    let uris = spellings(&x, 2000);
    assert!(uris.len() >= 100, "{} spellings", uris.len());
    for uri in &uris {
        s.client.subscribe(SubscribeRequestParams::new(uri)).await.unwrap();
    }
    // One subscription: each change is told once, under the URI it was first asked for.
    let mut updates = Vec::new();
    for (fifo, until) in [(&a, "running"), (&b, "succeeded")] {
        release_fifo(fifo);
        loop {
            match heard.recv().await.unwrap() {
                Heard::Updated(u) if u == uris[0] => {
                    updates.push(u);
                    let status: Value = serde_json::from_str(&read(&s, &uris[0]).await.unwrap().0).unwrap();
                    if status["state"] == until && status["output"]["last_seq"] == 1 {
                        break;
                    }
                }
                Heard::Updated(u) => panic!("an update for {u}: the execution is watched more than once"),
                Heard::ListChanged => {}
            }
        }
    }
    assert!(updates.len() <= 4, "{updates:?}");

    // A session watches at most 1000 resources: x's status, then 999 others (x's logs, 500 executions' two).
    let mut others = vec![format!("{}/logs", uris[0])];
    for _ in 0..500 {
        let id = s.start_wf("quick", json!({})).await;
        others.push(format!("workflow://executions/{id}"));
        others.push(format!("workflow://executions/{id}/logs"));
    }
    for uri in &others[..999] {
        s.client.subscribe(SubscribeRequestParams::new(uri)).await.unwrap();
    }
    let e = protocol_error(s.client.subscribe(SubscribeRequestParams::new(&others[999])).await);
    assert!(
        e.message.contains("1000") && e.message.contains("unsubscribe"),
        "over the cap, a clear error: {}",
        e.message
    );
    // Asking again for one already watched is no new subscription, even when full.
    s.client.subscribe(SubscribeRequestParams::new(&uris[1])).await.unwrap();
    // Unsubscribing under another spelling frees its place.
    s.client
        .unsubscribe(UnsubscribeRequestParams::new(uris.last().unwrap()))
        .await
        .unwrap();
    s.client
        .subscribe(SubscribeRequestParams::new(&others[999]))
        .await
        .unwrap();
}

#[tokio::test]
#[expect(
    deprecated,
    reason = "resources/subscribe is how sessions up to 2025-11-25 subscribe, which is what stdio clients speak"
)]
async fn a_subscriber_hears_of_what_another_server_runs_once_per_change() {
    let dir = TestDir::new("subscribe-other");
    let (a, b) = (dir.fifo("a"), dir.fifo("b"));
    let state = dir.join("state");
    let config = json!({"workflows": [
        wf("x", &["out", "first", "wait-fifo", fifo_str(&a), "out", "second", "wait-fifo", fifo_str(&b)]),
    ]});
    let runner = Server::spawn_in("subscribe-runner", config.clone(), &state).await;
    let x = runner.start_wf("x", json!({})).await;
    runner.wait_line(&x, "first").await;
    let (client, mut heard) = client(false);
    let watcher = Server::spawn_in_with_handler("subscribe-watcher", config, &state, client).await;
    let uris = spellings(&x, 50);
    let logs = format!("{}/logs", uris[0]);
    for uri in uris.iter().chain([&logs]) {
        watcher
            .client
            .subscribe(SubscribeRequestParams::new(uri))
            .await
            .unwrap();
    }
    for (fifo, until) in [(&a, "running"), (&b, "succeeded")] {
        release_fifo(fifo);
        loop {
            match heard.recv().await.unwrap() {
                Heard::Updated(u) if u == uris[0] => {
                    let status: Value = serde_json::from_str(&read(&watcher, &uris[0]).await.unwrap().0).unwrap();
                    if status["state"] == until && status["output"]["last_seq"] == 1 {
                        break;
                    }
                }
                Heard::Updated(u) => assert_eq!(u, logs, "only what was subscribed, once"),
                Heard::ListChanged => {}
            }
        }
    }
}

#[tokio::test]
async fn a_client_that_never_subscribes_hears_nothing() {
    let mut s = RawServer::start("quiet", json!({"workflows": [wf("w", &["out", "x"])]})).await;
    let calls = [
        ("execute_workflow", json!({"workflow": "w", "wait_ms": 50000})),
        ("execute_workflow", json!({"workflow": "w", "wait_ms": 50000})),
        ("list_executions", json!({})),
    ];
    for (tool, args) in calls {
        let id = s.call(tool, args).await;
        // The next message is the answer: no notification comes before it.
        let msg = s.recv().await.expect("an answer");
        assert_eq!(msg["id"], id, "an unasked-for message: {msg}");
    }
}

#[tokio::test]
async fn subscriptions_listen_streams_updates_and_list_changes_until_cancelled() {
    let dir = TestDir::new("listen");
    let fifo = dir.fifo("go");
    let (c, _) = client(false);
    let s = Server::start_2026(
        "listen",
        json!({"workflows": [
            wf("x", &["out", "first", "wait-fifo", fifo_str(&fifo), "out", "second"]),
            wf("quick", &["out", "hi"]),
        ]}),
        c,
    )
    .await;
    let x = s.start_wf("x", json!({})).await;
    s.wait_line(&x, "first").await;
    let x_uri = format!("workflow://executions/{x}");
    let stranger = format!("workflow://executions/{}", Uuid::new_v4());
    let filter = SubscriptionFilter::builder()
        .resources_list_changed()
        .resource_subscriptions([x_uri.clone(), stranger])
        .build();
    let mut sub = s
        .client
        .listen(filter)
        .await
        .expect("subscriptions/listen is acknowledged");
    assert_eq!(
        sub.acknowledged().resource_subscriptions,
        Some(vec![x_uri.clone()]),
        "only resources that exist are accepted"
    );
    assert_eq!(sub.acknowledged().resources_list_changed, Some(true));

    release_fifo(&fifo);
    let mut updates = 0;
    loop {
        match sub.next().await.unwrap().expect("the stream is open") {
            ServerNotification::ResourceUpdatedNotification(n) => {
                assert_eq!(n.params.uri, x_uri);
                updates += 1;
                let (status, _) = read(&s, &x_uri).await.unwrap();
                if serde_json::from_str::<Value>(&status).unwrap()["state"] == "succeeded" {
                    break;
                }
            }
            ServerNotification::ResourceListChangedNotification(_) => {}
            other => panic!("not asked for: {other:?}"),
        }
    }
    assert!(updates >= 1);
    s.start_wf("quick", json!({})).await;
    loop {
        if let ServerNotification::ResourceListChangedNotification(_) =
            sub.next().await.unwrap().expect("the stream is open")
        {
            break;
        }
    }
    sub.cancel().await.unwrap();
    assert!(matches!(sub.end(), Some(SubscriptionEnd::Cancelled)));
    assert!(sub.next().await.unwrap().is_none(), "nothing after the end");
    // The session goes on.
    s.ok("list_executions", json!({})).await;
}

#[tokio::test]
async fn an_open_subscription_ends_gracefully_at_end_of_input() {
    let mut s = RawServer::start_bare("listen-eof", json!({"workflows": [wf("w", &["out", "x"])]})).await;
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "raw-test", "version": "0"},
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    s.send(json!({"jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen",
        "params": {"notifications": {"resourcesListChanged": true}, "_meta": meta}}))
        .await;
    let ack = s.recv().await.expect("an acknowledgement");
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged", "{ack}");
    s.close_stdin();
    let end = match s.recv().await {
        Some(end) => end,
        None => panic!("no final result for the stream:\n{}", s.stderr()),
    };
    assert_eq!(
        end["id"], 1,
        "the listen request is answered when the session ends: {end}"
    );
    assert!(end.get("result").is_some(), "{end}");
    s.wait_exit().await;
    assert!(
        !s.stderr().contains("gave up waiting"),
        "the end of input did not wait for the stream:\n{}",
        s.stderr()
    );
}
