//! Snapshots of what the model reads — the structured content and the text of each kind of result — with ids,
//! times, durations and pids redacted. A change to what clients see shows up here as a diff to review;
//! `UPDATE_SNAPSHOTS=1 cargo test snapshots` rewrites them.

use std::path::Path;

use rmcp::ClientHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ClientCapabilities, ClientConfig, GetTaskParams, Implementation,
};
use serde_json::json;

use crate::util::{Reply, Server, TestDir, release_fifo, wf};

/// Seq numbers and counts, for a snapshot whose numbers depend on how the pipe was read (eviction by segment).
fn redact_numbers(s: &str) -> String {
    regex::Regex::new(r"\b\d{4,}\b")
        .unwrap()
        .replace_all(s, "<n>")
        .into_owned()
}

fn redact(s: &str) -> String {
    let rules = [
        (r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<id>"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", "<time>"),
        (r#""(duration_ms|pid)": \d+"#, r#""$1": <n>"#),
        (r"(after|running for|exit \d+) \d+(\.\d+)? (ms|s)\b", "$1 <duration>"),
        (r"pid \d+", "pid <n>"),
        (r"/[^\s\x22]*wfmcp-test-[^/\s\x22]*", "<test dir>"),
    ];
    let mut out = s.to_owned();
    for (pattern, with) in rules {
        out = regex::Regex::new(pattern).unwrap().replace_all(&out, with).into_owned();
    }
    out
}

/// Compares (or with UPDATE_SNAPSHOTS, writes) one result's snapshot; returns the name when it differs.
fn check(name: &str, reply: &Reply) -> Option<String> {
    let body = format!(
        "== structuredContent ==\n{}\n== text ==\n{}",
        serde_json::to_string_pretty(&reply.structured).unwrap(),
        reply.text
    );
    let mut body = redact(&body);
    if name.contains("omitted") {
        body = redact_numbers(&body);
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &body).unwrap();
        return None;
    }
    match std::fs::read_to_string(&path) {
        Ok(old) if old == body => None,
        Ok(old) => {
            eprintln!("--- {name}: checked in\n{old}\n--- {name}: now\n{body}");
            Some(name.to_owned())
        }
        Err(_) => {
            eprintln!("--- {name}: no snapshot yet; now\n{body}");
            Some(name.to_owned())
        }
    }
}

#[tokio::test]
async fn what_the_model_reads_matches_the_reviewed_snapshots() {
    let dir = TestDir::new("snapshots");
    let fifo = dir.fifo("hold");
    dir.fifo("never");
    let s = Server::builder(
        "snapshots",
        json!({"workflows": [
            {"name": "build", "description": "Build the project", "command": [crate::util::fake(),
                "err", "   Compiling app v0.1.0", "err", "error[E0425]: cannot find value `x` in this scope",
                "err", " --> src/main.rs:2:5", "exit", "101"],
             "params": [{"name": "release", "type": "boolean", "flag": "--release", "default": false},
                        {"name": "jobs", "type": "integer", "minimum": 1, "maximum": 64, "arg": "--jobs"}]},
            wf("count", &["lines", "5"]),
            {"name": "serve", "description": "Hold until released", "command": [crate::util::fake(),
                "out", "listening on :8080", "out", "ready", "wait-fifo", dir.join("hold").to_str().unwrap()]},
            wf("crash", &["err", "about to crash", "signal", "11"]),
            {"name": "stuck", "command": [crate::util::fake(), "err", "waiting for the lock", "wait-fifo",
                dir.join("never").to_str().unwrap()], "timeout_ms": 300},
            {"name": "missing", "command": ["/nonexistent/build-tool", "--fast"]},
            wf("phases", &[
                "event", r#"{"type":"phase_started","phase":0,"name":"Analyze","total_phases":2}"#,
                "event", r#"{"type":"task_started","phase":0,"task_id":"t1","description":"read the code","total_tasks":2}"#,
                "event", r#"{"type":"agent_message","task_id":"t1","agent_name":"reader","message":"3 modules found"}"#,
                "event", r#"{"type":"task_completed","task_id":"t1","result":"ok"}"#,
                "event", r#"{"type":"task_started","phase":0,"task_id":"t2","description":"plan"}"#,
                "event", "not json",
                "exit", "3",
            ]),
            wf("long", &["long-line", "3000", "out", "after"]),
            wf("many", &["lines", "200000"]),
        ], "limits": {"log_bytes_per_execution": 1048576}}),
    )
    .ephemeral()
    .start()
    .await;
    let mut stale = Vec::new();
    let mut take = |name: &str, reply: &Reply| stale.extend(check(name, reply));

    take("list_workflows", &s.call("list_workflows", json!({})).await);
    let failed = s
        .call(
            "execute_workflow",
            json!({"workflow": "build", "params": {"jobs": 4}, "wait_ms": 50000}),
        )
        .await;
    take("execute_workflow_failed", &failed);
    let build = failed.structured["execution_id"].as_str().unwrap().to_owned();
    take(
        "get_logs_grep_context",
        &s.call(
            "get_logs",
            json!({"execution_id": build, "grep": "^error", "context": 1}),
        )
        .await,
    );
    let count = s.start_wf("count", json!({})).await;
    s.wait_final(&count).await;
    take(
        "get_logs_page",
        &s.call("get_logs", json!({"execution_id": count, "max_lines": 3})).await,
    );
    take(
        "get_logs_done",
        &s.call("get_logs", json!({"execution_id": count, "since_seq": 3})).await,
    );
    let serve = s.start_wf("serve", json!({})).await;
    s.wait_line(&serve, "^ready").await;
    take(
        "get_status_running_tail",
        &s.call("get_status", json!({"execution_id": serve, "tail_lines": 5}))
            .await,
    );
    take(
        "get_logs_no_more_yet",
        &s.call("get_logs", json!({"execution_id": serve, "since_seq": 2})).await,
    );
    release_fifo(&fifo);
    s.wait_final(&serve).await;
    take("list_executions", &s.call("list_executions", json!({"limit": 2})).await);
    for (name, workflow) in [
        ("execute_failed_signal", "crash"),
        ("execute_timed_out", "stuck"),
        ("execute_failed_to_start", "missing"),
        ("execute_failed_with_progress", "phases"),
    ] {
        take(
            name,
            &s.call("execute_workflow", json!({"workflow": workflow, "wait_ms": 50000}))
                .await,
        );
    }
    let long = s.start_wf("long", json!({})).await;
    s.wait_final(&long).await;
    take(
        "get_logs_cut",
        &s.call("get_logs", json!({"execution_id": long, "max_bytes": 120}))
            .await,
    );
    let many = s.start_wf("many", json!({})).await;
    s.wait_final(&many).await;
    let seqs: Vec<u64> = s
        .all_lines(&many, 10_000)
        .await
        .iter()
        .map(|l| l["seq"].as_u64().unwrap())
        .collect();
    let gap = seqs
        .windows(2)
        .position(|w| w[1] != w[0] + 1)
        .expect("a 1 MiB cap evicts");
    let across = seqs[gap] - 1;
    take(
        "get_logs_omitted",
        &s.call(
            "get_logs",
            json!({"execution_id": many, "since_seq": across, "max_lines": 4}),
        )
        .await,
    );
    take(
        "error_unknown_execution",
        &s.call(
            "get_status",
            json!({"execution_id": "0b7e5b0e-9f0a-4c55-8a4e-2f1f4f1f4f1f"}),
        )
        .await,
    );
    take(
        "error_invalid_param",
        &s.call(
            "execute_workflow",
            json!({"workflow": "build", "params": {"jobs": "many"}}),
        )
        .await,
    );
    take(
        "error_unknown_workflow",
        &s.call("execute_workflow", json!({"workflow": "buidl"})).await,
    );
    assert!(
        stale.is_empty(),
        "what the model reads changed for {stale:?} (diffs above); review, then `UPDATE_SNAPSHOTS=1 cargo test \
         snapshots` and commit tests/snapshots/"
    );
}

/// `2026-11-30 08:41:02 UTC` as a title shows a time.
fn redact_titles(s: &str) -> String {
    let time = regex::Regex::new(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC").unwrap();
    redact(&time.replace_all(s, "<time>"))
}

/// Compares (or with UPDATE_SNAPSHOTS, writes) a snapshot of plain text; returns the name when it differs.
fn check_text(name: &str, body: &str) -> Option<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, body).unwrap();
        return None;
    }
    match std::fs::read_to_string(&path) {
        Ok(old) if old == body => None,
        old => {
            eprintln!(
                "--- {name}: checked in\n{}\n--- {name}: now\n{body}",
                old.unwrap_or_default()
            );
            Some(name.to_owned())
        }
    }
}

/// A client that declares the tasks extension.
#[derive(Clone)]
struct TasksClient;

impl ClientHandler for TasksClient {
    fn get_info(&self) -> ClientConfig {
        let capabilities = ClientCapabilities::builder().enable_tasks().build();
        ClientConfig::new(capabilities, Implementation::new("snapshot-tasks", "0"))
    }
}

/// Starts `workflow` and returns its execution id, and the created task's `statusMessage` when it was
/// answered with a task.
async fn start_task(s: &Server<TasksClient>, workflow: &str) -> (String, Option<String>) {
    let params = CallToolRequestParams::new("execute_workflow")
        .with_arguments(json!({"workflow": workflow}).as_object().unwrap().clone());
    match s.client.call_tool_once(params).await.unwrap() {
        CallToolResponse::Task(t) => {
            let t = serde_json::to_value(t).unwrap();
            let message = t["statusMessage"].as_str().map(str::to_owned);
            (t["taskId"].as_str().unwrap().to_owned(), message)
        }
        CallToolResponse::Complete(r) => {
            let id = r.structured_content.unwrap()["execution_id"]
                .as_str()
                .unwrap()
                .to_owned();
            (id, None)
        }
        other => panic!("execute_workflow answered {other:?}"),
    }
}

/// What a person or a model reads of an execution outside tool results: a task's status and `statusMessage`
/// (working and finished, every way an execution ends) and the titles `resources/list` gives its two resources.
#[tokio::test]
async fn task_messages_and_resource_titles_match_the_reviewed_snapshot() {
    let dir = TestDir::new("snapshot-tasks");
    let hold = dir.fifo("hold");
    let never = dir.fifo("never");
    let s = Server::builder(
        "snapshot-tasks",
        json!({"workflows": [
            wf("build", &["out", "compiled", "err", "error: it broke", "exit", "2"]),
            wf("count", &["lines", "3"]),
            wf("crash", &["err", "about to crash", "signal", "11"]),
            {"name": "stuck", "command": [crate::util::fake(), "err", "waiting for the lock", "wait-fifo",
                never.to_str().unwrap()], "timeout_ms": 300},
            {"name": "missing", "command": ["/nonexistent/build-tool", "--fast"]},
            {"name": "hold", "max_concurrent": 1, "command": [crate::util::fake(),
                "event", r#"{"type":"phase_started","phase":0,"name":"Build","total_phases":2}"#,
                "err", "ready", "wait-fifo", hold.to_str().unwrap()]},
        ]}),
    )
    .handler(TasksClient)
    .start()
    .await;
    let mut shown: Vec<(String, String)> = Vec::new();
    for workflow in ["build", "count", "crash", "stuck", "missing"] {
        let (id, _) = start_task(&s, workflow).await;
        s.wait_final(&id).await;
        shown.push((workflow.to_owned(), id));
    }
    let (running, created) = start_task(&s, "hold").await;
    s.wait_line(&running, "^ready").await;
    let (queued, queued_created) = start_task(&s, "hold").await;
    let mut body = format!("created, queued: {}\n", queued_created.unwrap_or_default());
    // The first one's message was taken as it started: its counts depend on how far it had got.
    assert!(
        created.is_some_and(|m| m.starts_with("running") || m.starts_with("queued")),
        "a running execution is answered with a working task"
    );
    let tell = async |label: &str, id: &str, body: &mut String| {
        let task = serde_json::to_value(s.client.get_task(GetTaskParams::new(id)).await.unwrap()).unwrap();
        let resources = s.client.list_all_resources().await.unwrap();
        let title = |uri: String| {
            resources
                .iter()
                .find(|r| r.uri == uri)
                .and_then(|r| r.title.clone())
                .unwrap_or_default()
        };
        body.push_str(&format!(
            "== {label}\ntask: {} | {}\ntitle: {}\nlogs title: {}\n",
            task["status"].as_str().unwrap(),
            task["statusMessage"].as_str().unwrap_or_default(),
            title(format!("workflow://executions/{id}")),
            title(format!("workflow://executions/{id}/logs")),
        ));
    };
    tell("running", &running, &mut body).await;
    tell("queued", &queued, &mut body).await;
    for (label, id) in &shown {
        tell(label, id, &mut body).await;
    }
    s.ok("cancel_execution", json!({"execution_id": queued})).await;
    tell("cancelled while queued", &queued, &mut body).await;
    s.ok("cancel_execution", json!({"execution_id": running})).await;
    tell("cancelled while running", &running, &mut body).await;
    let stale = check_text("tasks_and_titles", &redact_titles(&body));
    assert!(
        stale.is_none(),
        "task messages or resource titles changed (diff above); review, then `UPDATE_SNAPSHOTS=1 cargo test \
         snapshots` and commit tests/snapshots/"
    );
}
