//! Executions as MCP tasks, for clients that declare the tasks extension — through rmcp's client, on sessions that
//! began with `initialize` (up to 2025-11-25) and on 2026-07-28 ones (the extension declared per request).

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CancelTaskParams, ErrorCode, GetTaskParams, UpdateTaskParams,
};
use rmcp::{ClientHandler, ServiceError};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::util::{Server, TestDir, client, path_arg, protocol_error, release_fifo, wf};

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

#[tokio::test]
async fn a_client_that_declares_tasks_gets_one_and_polls_it_to_the_result_get_status_gives() {
    let dir = TestDir::new("task");
    let fifo = dir.fifo("go");
    let (c, _) = client(true);
    let s = Server::builder(
        "task",
        json!({"limits": {"retain_seconds": 3600}, "workflows": [wf("build", &[
            "out", "compiling", "wait-fifo", path_arg(&fifo), "err", "error: it broke", "exit", "2"])]}),
    )
    .handler(c)
    .start()
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
    let s = Server::builder(
        "task-cancel",
        json!({"workflows": [wf("stuck", &["out", "waiting", "wait-fifo", path_arg(&fifo)])]}),
    )
    .handler(c)
    .start()
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
    let s = Server::builder(
        "no-tasks",
        json!({"workflows": [wf("hold", &["wait-fifo", path_arg(&fifo)])]}),
    )
    .handler(c)
    .start()
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
        let s = Server::builder("task-2026", json!({"workflows": [wf("hold", &["out", "x", "hold"])]}))
            .handler(c)
            .protocol_2026()
            .start()
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
    let s = Server::builder(
        "task-fast",
        json!({"workflows": [wf("quick", &["out", "done"]), {"name": "missing", "command": ["/nonexistent/tool"]}]}),
    )
    .handler(c)
    .start()
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
    let s = Server::builder("task-ids", json!({"workflows": [wf("w", &["out", "x"])]}))
        .handler(c)
        .start()
        .await;
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
    let config = json!({"workflows": [wf("build", &["out", "started", "wait-fifo", path_arg(&fifo), "out", "built"])]});
    let (a_client, _) = client(true);
    let a = Server::builder("task-a", config.clone())
        .state_dir(&state.join("state"))
        .handler(a_client)
        .spawn()
        .await;
    let (b_client, _) = client(true);
    let b = Server::builder("task-b", config.clone())
        .state_dir(&state.join("state"))
        .handler(b_client)
        .spawn()
        .await;
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
    let c = Server::builder("task-c", config)
        .state_dir(&state.join("state"))
        .handler(c_client)
        .spawn()
        .await;
    let again = get_task(&c, &id).await.unwrap();
    assert_eq!(again["status"], "completed", "a restarted server still answers it");
    assert_eq!(again["result"]["structuredContent"]["state"], "succeeded");
}
