//! Work that outlives the client: a workflow with `outlive_session` is run by a supervisor process of its own, so it
//! goes on when the server that started it exits however it exits, any server on the state directory follows and
//! cancels it, and it still never outlives its own supervisor.

use serde_json::{Value, json};

use crate::util::*;

/// A manifest workflow of the fake workflow with `actions`, outliving its session.
fn outliving(name: &str, actions: &[&str]) -> Value {
    let mut w = wf(name, actions);
    w["outlive_session"] = json!(true);
    w
}

fn sigkill(pid: u32) {
    // SAFETY: a signal to a process this test started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

fn leader(status: &Value) -> u32 {
    status["pid"].as_u64().expect("a running execution has a pid") as u32
}

#[tokio::test]
async fn a_detached_execution_outlives_a_sigkilled_server_and_another_follows_and_cancels_it() {
    let dir = TestDir::new("outlive-kill");
    let state_dir = dir.join("state");
    let go = dir.fifo("go");
    let config = json!({"workflows": [
        outliving("keep", &["out", "ready", "grandchild", "setsid-grandchild", "wait-fifo", go.to_str().unwrap(),
                            "out", "after the restart", "hold"]),
        wf("attached", &["hold"]),
    ]});
    let a = Server::builder("outlive-kill-a", config.clone())
        .state_dir(&state_dir)
        .spawn()
        .await;
    let id = a.start_wf("keep", json!({})).await;
    let attached = a.start_wf("attached", json!({})).await;
    let tree = a.grandchildren(&id, 2).await;
    let detached_leader = leader(&a.ok("get_status", json!({"execution_id": id})).await);
    let attached_leader = leader(&a.ok("get_status", json!({"execution_id": attached})).await);
    sigkill(a.pid());
    assert!(
        exited(attached_leader).await,
        "a session-scoped execution still dies with its server"
    );
    assert!(alive(detached_leader), "the detached workflow goes on");
    for pid in &tree {
        assert!(alive(*pid), "its descendant {pid} goes on");
    }

    let b = Server::builder("outlive-kill-b", config)
        .state_dir(&state_dir)
        .spawn()
        .await;
    let st = b.ok("get_status", json!({"execution_id": id})).await;
    assert_eq!(state(&st), "running", "{st}");
    assert_eq!(leader(&st), detached_leader);
    let before = b.ok("get_status", json!({"execution_id": attached})).await;
    assert_eq!(state(&before), "lost", "the session-scoped one is lost: {before}");
    // A line written after the restart reaches the new server's follower.
    release_fifo(&go);
    assert_eq!(b.wait_line(&id, "^after").await, "after the restart");
    let lines = b.ok("get_logs", json!({"execution_id": id})).await;
    assert!(
        records(&lines["lines"]).iter().any(|l| l["text"] == "ready"),
        "every line is kept, from before the restart too: {lines}"
    );

    let cancelled = b.ok("cancel_execution", json!({"execution_id": id})).await;
    assert_eq!(state(&cancelled), "cancelled", "{cancelled}");
    assert!(!alive(detached_leader), "the leader is gone once cancel answers");
    for pid in tree {
        assert!(exited(pid).await, "descendant {pid} is gone, in the group or escaped");
    }
}

#[tokio::test]
async fn a_detached_execution_outlives_the_end_of_input_and_sigterm() {
    let dir = TestDir::new("outlive-eof");
    let state_dir = dir.join("state");
    let config = json!({"workflows": [outliving("keep", &["out", "ready", "hold"]), wf("attached", &["hold"])]});
    let mut leaders = Vec::new();
    for how in ["end of input", "SIGTERM"] {
        let s = Server::builder("outlive-eof", config.clone())
            .state_dir(&state_dir)
            .spawn()
            .await;
        let id = s.start_wf("keep", json!({})).await;
        s.wait_line(&id, "^ready").await;
        let detached = leader(&s.ok("get_status", json!({"execution_id": id})).await);
        let attached = s.start_wf("attached", json!({})).await;
        let attached_leader = leader(&s.ok("get_status", json!({"execution_id": attached})).await);
        let pid = s.pid();
        if how == "SIGTERM" {
            // SAFETY: a signal to the server this test started.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        } else {
            s.client.cancel().await.ok();
        }
        assert!(exited(pid).await, "the server exits on {how}");
        assert!(
            !alive(attached_leader),
            "a session-scoped execution ends with it ({how})"
        );
        leaders.push((id, detached));
    }
    let c = Server::builder("outlive-eof-c", config)
        .state_dir(&state_dir)
        .spawn()
        .await;
    for (id, pid) in leaders {
        assert!(alive(pid), "the detached workflow outlived its server");
        assert_eq!(state(&c.ok("get_status", json!({"execution_id": id})).await), "running");
        let st = c.ok("cancel_execution", json!({"execution_id": id})).await;
        assert_eq!(state(&st), "cancelled", "{st}");
        assert!(!alive(pid));
    }
}

#[tokio::test]
async fn a_killed_supervisor_takes_the_whole_tree_and_the_execution_is_lost_with_its_lines() {
    let dir = TestDir::new("outlive-owner");
    let config =
        json!({"workflows": [outliving("keep", &["out", "ready", "grandchild", "setsid-grandchild", "hold"])]});
    let s = Server::builder("outlive-owner", config)
        .state_dir(&dir.join("state"))
        .spawn()
        .await;
    let id = s.start_wf("keep", json!({})).await;
    let tree = s.grandchildren(&id, 2).await;
    let leader = leader(&s.ok("get_status", json!({"execution_id": id})).await);
    // The supervisor is the leader's parent: a process of its own, not the server.
    let supervisor = workflow_mcp::proc::scan::process(leader).expect("the leader runs").ppid;
    assert_ne!(supervisor, s.pid(), "the server does not own it");
    let cmdline = std::fs::read(format!("/proc/{supervisor}/cmdline")).unwrap();
    assert!(
        cmdline.split(|b| *b == 0).any(|a| a == b"__supervise"),
        "{:?}",
        String::from_utf8_lossy(&cmdline)
    );
    sigkill(supervisor);
    assert!(exited(leader).await, "the workflow dies with its supervisor");
    for pid in tree {
        assert!(
            exited(pid).await,
            "descendant {pid} dies with it, in the group or escaped"
        );
    }
    let st = s.wait_final(&id).await;
    assert_eq!(state(&st), "lost", "{st}");
    let lines = s.ok("get_logs", json!({"execution_id": id})).await;
    assert!(
        records(&lines["lines"]).iter().any(|l| l["text"] == "ready"),
        "its lines up to then are kept: {lines}"
    );
}

#[tokio::test]
async fn a_detached_execution_times_out_without_its_server() {
    let dir = TestDir::new("outlive-timeout");
    let state_dir = dir.join("state");
    let mut keep = outliving("keep", &["out", "ready", "ignore-term", "hold"]);
    keep["timeout_ms"] = json!(500);
    let config = json!({"limits": {"grace_ms": 200}, "workflows": [keep]});
    let a = Server::builder("outlive-timeout-a", config.clone())
        .state_dir(&state_dir)
        .spawn()
        .await;
    let id = a.start_wf("keep", json!({})).await;
    a.wait_line(&id, "^ready").await;
    sigkill(a.pid());
    let b = Server::builder("outlive-timeout-b", config)
        .state_dir(&state_dir)
        .spawn()
        .await;
    let st = b.wait_final(&id).await;
    assert_eq!(state(&st), "timed_out", "its timeout applies with no server: {st}");
    assert_eq!(st["signal"], "SIGKILL", "TERM ignored, then KILL after the grace: {st}");
}

#[tokio::test]
async fn an_idempotency_key_repeated_after_a_restart_returns_the_running_detached_execution() {
    let dir = TestDir::new("outlive-key");
    let state_dir = dir.join("state");
    let config = json!({"workflows": [outliving("keep", &["hold"])]});
    let args = json!({"workflow": "keep", "idempotency_key": "deploy-42"});
    let a = Server::builder("outlive-key-a", config.clone())
        .state_dir(&state_dir)
        .spawn()
        .await;
    let first = a.ok("execute_workflow", args.clone()).await;
    sigkill(a.pid());
    let b = Server::builder("outlive-key-b", config)
        .state_dir(&state_dir)
        .spawn()
        .await;
    let again = b.ok("execute_workflow", args).await;
    assert_eq!(again["execution_id"], first["execution_id"], "{again}");
    assert_eq!(state(&again), "running");
    b.ok("cancel_execution", json!({"execution_id": first["execution_id"]}))
        .await;
}

#[tokio::test]
async fn fifty_detached_executions_outlive_their_server_and_are_all_cancelled() {
    let dir = TestDir::new("outlive-fifty");
    let state_dir = dir.join("state");
    let config = json!({"workflows": [outliving("keep", &["hold"])]});
    let a = Server::builder("outlive-fifty-a", config.clone())
        .state_dir(&state_dir)
        .spawn()
        .await;
    let mut ids = Vec::new();
    for _ in 0..50 {
        ids.push(a.start_wf("keep", json!({})).await);
    }
    let mut leaders = Vec::new();
    for id in &ids {
        leaders.push(leader(&a.ok("get_status", json!({"execution_id": id})).await));
    }
    sigkill(a.pid());
    let b = Server::builder("outlive-fifty-b", config)
        .state_dir(&state_dir)
        .spawn()
        .await;
    let running = b.ok("list_executions", json!({"state": "running", "limit": 100})).await;
    assert_eq!(running["executions"].as_array().unwrap().len(), 50, "{running}");
    for id in &ids {
        let st = b.ok("cancel_execution", json!({"execution_id": id})).await;
        assert_eq!(state(&st), "cancelled", "{st}");
    }
    for pid in leaders {
        assert!(!alive(pid));
    }
}

#[tokio::test]
async fn outlive_session_without_a_history_is_refused_and_says_why() {
    let s = Server::builder(
        "outlive-ephemeral",
        json!({"workflows": [outliving("keep", &["hold"])]}),
    )
    .ephemeral()
    .start()
    .await;
    let e = s.err("execute_workflow", json!({"workflow": "keep"})).await;
    assert!(e.contains("outlive_session") && e.contains("--ephemeral"), "{e}");
}

#[tokio::test]
async fn another_server_sees_a_detached_executions_progress_not_restarted_from_empty() {
    let dir = TestDir::new("outlive-progress");
    let state_dir = dir.join("state");
    let config = json!({"workflows": [outliving("phases", &[
        "event", r#"{"type":"phase_started","phase":0,"name":"build","total_phases":2}"#,
        "event", r#"{"type":"phase_completed","phase":0}"#,
        "event", r#"{"type":"phase_started","phase":1,"name":"test","total_phases":2}"#,
        "out", "ready", "hold",
    ])]});
    let a = Server::builder("outlive-progress-a", config.clone())
        .state_dir(&state_dir)
        .spawn()
        .await;
    let id = a.start_wf("phases", json!({})).await;
    a.wait_line(&id, "^ready").await;
    sigkill(a.pid());
    let b = Server::builder("outlive-progress-b", config)
        .state_dir(&state_dir)
        .spawn()
        .await;
    // The supervisor writes progress to the history once a second when it changed: wait for the first write.
    let mut st = b.ok("get_status", json!({"execution_id": id})).await;
    while st["progress"].is_null() {
        st = b.ok("get_status", json!({"execution_id": id, "wait_ms": 2000})).await;
    }
    let progress = &st["progress"];
    assert_eq!(progress["events"], 3, "{st}");
    assert_eq!(progress["phase"]["name"], "test", "{st}");
    b.ok("cancel_execution", json!({"execution_id": id})).await;
}

#[tokio::test]
async fn a_detached_execution_outlives_its_server_binary_being_replaced_on_disk() {
    let dir = TestDir::new("outlive-upgrade");
    let state_dir = dir.join("state");
    let bin = dir.join("workflow-mcp");
    std::fs::copy(server_bin(), &bin).unwrap();
    let go = dir.fifo("go");
    let config = json!({"workflows": [
        outliving("keep", &["out", "ready", "grandchild", "wait-fifo", go.to_str().unwrap(),
                            "out", "after the upgrade", "hold"]),
    ]});
    let a = Server::builder("outlive-upgrade-a", config.clone())
        .state_dir(&state_dir)
        .program(&bin)
        .spawn()
        .await;
    let id = a.start_wf("keep", json!({})).await;
    let tree = a.grandchildren(&id, 1).await;
    let leader = leader(&a.ok("get_status", json!({"execution_id": id})).await);
    let supervisor = workflow_mcp::proc::scan::process(leader).expect("the leader runs").ppid;
    sigkill(a.pid());
    assert!(exited(a.pid()).await);
    // The upgrade: a new build renamed over the old file, as package managers and `cargo install` do.
    let new = dir.join("workflow-mcp.new");
    std::fs::copy(server_bin(), &new).unwrap();
    std::fs::rename(&new, &bin).unwrap();
    let exe = std::fs::read_link(format!("/proc/{supervisor}/exe")).unwrap();
    assert!(
        exe.to_string_lossy().ends_with(" (deleted)"),
        "the supervisor runs the replaced build: {}",
        exe.display()
    );

    let b = Server::builder("outlive-upgrade-b", config)
        .state_dir(&state_dir)
        .program(&bin)
        .spawn()
        .await;
    let st = b.ok("get_status", json!({"execution_id": id})).await;
    assert_eq!(state(&st), "running", "{st}");
    release_fifo(&go);
    assert_eq!(b.wait_line(&id, "^after").await, "after the upgrade");
    let cancelled = b.ok("cancel_execution", json!({"execution_id": id})).await;
    assert_eq!(state(&cancelled), "cancelled", "{cancelled}");
    assert!(!alive(leader), "the leader is gone once cancel answers");
    for pid in tree {
        assert!(exited(pid).await, "descendant {pid} is gone");
    }
    assert!(exited(supervisor).await, "its supervisor exits once it is final");
}

#[tokio::test]
async fn two_servers_cancelling_one_detached_execution_at_once_both_answer_cancelled() {
    let dir = TestDir::new("outlive-cancel2");
    let state_dir = dir.join("state");
    // TERM ignored: both cancels are still waiting out the grace when the other arrives.
    let config = json!({"limits": {"grace_ms": 500}, "workflows": [
        outliving("keep", &["out", "ready", "ignore-term", "grandchild", "setsid-grandchild", "hold"]),
    ]});
    let a = Server::builder("outlive-cancel2-a", config.clone())
        .state_dir(&state_dir)
        .spawn()
        .await;
    let b = Server::builder("outlive-cancel2-b", config)
        .state_dir(&state_dir)
        .spawn()
        .await;
    let id = a.start_wf("keep", json!({})).await;
    let tree = a.grandchildren(&id, 2).await;
    let leader = leader(&a.ok("get_status", json!({"execution_id": id})).await);
    let args = json!({"execution_id": id});
    let (from_a, from_b) = tokio::join!(
        a.call("cancel_execution", args.clone()),
        b.call("cancel_execution", args)
    );
    for (who, reply) in [("a", from_a), ("b", from_b)] {
        assert!(!reply.is_error, "{who}: {}", reply.text);
        assert_eq!(state(&reply.structured), "cancelled", "{who}: {}", reply.structured);
        assert_eq!(
            reply.structured["signal"], "SIGKILL",
            "{who}: TERM ignored, then KILL: {}",
            reply.structured
        );
    }
    assert!(!alive(leader), "the leader is gone once both answer");
    for pid in tree {
        assert!(exited(pid).await, "descendant {pid} is gone");
    }
}

/// Marks `dir` immutable (`chattr +i`): nothing new can be created in it, not even by root, until dropped.
struct Immutable(std::path::PathBuf);

impl Immutable {
    fn set(dir: &std::path::Path) -> Immutable {
        let done = std::process::Command::new("chattr")
            .arg("+i")
            .arg(dir)
            .status()
            .unwrap();
        assert!(done.success(), "chattr +i {} (needs root and ext4)", dir.display());
        Immutable(dir.to_owned())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_supervisor_that_cannot_start_makes_the_execution_failed_to_start_and_says_why() {
    let dir = TestDir::new("outlive-nostart");
    let state_dir = dir.join("state");
    let config = json!({"workflows": [outliving("keep", &["out", "ready", "hold"]), wf("attached", &["out", "here"])]});
    let s = Server::builder("outlive-nostart", config)
        .state_dir(&state_dir)
        .spawn()
        .await;
    // A supervisor is an instance of its own: it needs a new lock file where the server already has its own.
    let _frozen = Immutable::set(&state_dir.join("instances"));
    let st = s
        .ok("execute_workflow", json!({"workflow": "keep", "wait_ms": 60000}))
        .await;
    assert_eq!(state(&st), "failed_to_start", "{st}");
    let error = st["error"].as_str().expect("it says why");
    assert!(
        error.contains("supervisor")
            && error.contains(&state_dir.display().to_string())
            && error.contains("Operation not permitted")
            && !error.contains("--ephemeral"),
        "the supervisor's own error reaches the status, without a server's advice that does not apply: {error}"
    );
    let id = st["execution_id"].as_str().unwrap();
    let again = s.ok("get_status", json!({"execution_id": id})).await;
    assert_eq!(state(&again), "failed_to_start", "and it stays so: {again}");
    let other = s.start_wf("attached", json!({})).await;
    assert_eq!(state(&s.wait_final(&other).await), "succeeded", "the server goes on");
}

#[tokio::test]
async fn a_full_disk_keeps_a_detached_execution_going_and_every_reader_is_told() {
    let dir = TestDir::new("outlive-enospc");
    let state_dir = dir.join("state");
    std::fs::create_dir_all(state_dir.join("logs")).unwrap();
    let _tmpfs = Tmpfs::mount(&state_dir.join("logs"), "1m");
    let config = json!({"workflows": [outliving("big", &["lines", "300000"])]});
    let s = Server::builder("outlive-enospc", config)
        .state_dir(&state_dir)
        .spawn()
        .await;
    let id = s.start_wf("big", json!({})).await;
    let st = s.wait_final(&id).await;
    assert_eq!(state(&st), "succeeded", "the execution went on: {st}");
    assert_eq!(st["output"]["stdout"]["lines"], 300_000, "every line was counted: {st}");
    let error = st["output"]["disk_error"]
        .as_str()
        .unwrap_or_else(|| panic!("the status says the log could not be written: {st}"));
    assert!(error.contains("No space left on device"), "{error}");
    // The server reads a detached execution's lines from its files: those the full disk kept out are said to be
    // missing, and why, never served as the end of the log.
    let page = s.ok("get_logs", json!({"execution_id": id, "tail": 10})).await;
    assert_eq!(page["total_lines"], 300_000, "{page}");
    let hint = page["hint"].as_str().unwrap();
    assert!(
        hint.contains("No space left on device"),
        "the reader is told why lines are missing: {page}"
    );
    assert!(!hint.contains("every line has been read"), "{page}");
    assert_eq!(
        page["omitted"]["to_seq"], 300_000,
        "the lines never written are omitted, counted: {page}"
    );
    let written = page["omitted"]["from_seq"].as_u64().unwrap();
    let note = format!(
        "# seq {written}-299999 omitted: {} lines evicted from memory\n",
        300_000 - written
    );
    assert!(
        page["lines"].as_str().unwrap().ends_with(&note),
        "the page ends with a note: {page}"
    );
    let past = s
        .ok("get_logs", json!({"execution_id": id, "since_seq": written}))
        .await;
    assert_eq!(past["omitted"]["from_seq"], written, "{past}");
    assert_eq!(past["done"], true, "{past}");
}

async fn task_of(s: &Server<Client>, id: &str) -> Value {
    let task = s.client.get_task(rmcp::model::GetTaskParams::new(id)).await;
    serde_json::to_value(task.expect("tasks/get answers")).unwrap()
}

#[tokio::test]
async fn a_detached_execution_is_a_task_another_server_polls_to_its_result_after_the_first_is_killed() {
    use rmcp::model::{CallToolRequestParams, CallToolResponse};
    let dir = TestDir::new("outlive-task");
    let state_dir = dir.join("state");
    let go = dir.fifo("go");
    let config = json!({"workflows": [outliving("build", &["out", "started", "wait-fifo", go.to_str().unwrap(), "out", "built"])]});
    let (a_client, _) = client(true);
    let a = Server::builder("outlive-task-a", config.clone())
        .state_dir(&state_dir)
        .handler(a_client)
        .spawn()
        .await;
    let params = CallToolRequestParams::new("execute_workflow")
        .with_arguments(json!({"workflow": "build"}).as_object().unwrap().clone());
    let task = match a.client.call_tool_once(params).await.expect("execute_workflow answers") {
        CallToolResponse::Task(t) => serde_json::to_value(t).unwrap(),
        other => panic!("a client that declared tasks gets a task, got {other:?}"),
    };
    assert_eq!(task["status"], "working", "{task}");
    let id = task["taskId"].as_str().unwrap().to_owned();
    a.wait_line(&id, "^started").await;
    sigkill(a.pid());
    let (b_client, _) = client(true);
    let b = Server::builder("outlive-task-b", config)
        .state_dir(&state_dir)
        .handler(b_client)
        .spawn()
        .await;
    let working = task_of(&b, &id).await;
    assert_eq!(
        working["status"], "working",
        "another server knows the running task: {working}"
    );
    release_fifo(&go);
    let status = b.wait_final(&id).await;
    let done = task_of(&b, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["structuredContent"]["state"], "succeeded", "{done}");
    assert_eq!(done["result"]["structuredContent"], status);
}

#[tokio::test]
#[expect(
    deprecated,
    reason = "resources/subscribe is how sessions up to 2025-11-25 subscribe, which is what stdio clients speak"
)]
async fn a_subscriber_on_another_server_hears_a_detached_execution_end() {
    use rmcp::model::{ReadResourceRequestParams, ResourceContents, SubscribeRequestParams};
    let dir = TestDir::new("outlive-subscribe");
    let state_dir = dir.join("state");
    let go = dir.fifo("go");
    let config = json!({"workflows": [outliving("build", &["out", "started", "wait-fifo", go.to_str().unwrap(), "out", "built"])]});
    let a = Server::builder("outlive-subscribe-a", config.clone())
        .state_dir(&state_dir)
        .spawn()
        .await;
    let id = a.start_wf("build", json!({})).await;
    a.wait_line(&id, "^started").await;
    sigkill(a.pid());
    let (watcher, mut heard) = client(false);
    let b = Server::builder("outlive-subscribe-b", config)
        .state_dir(&state_dir)
        .handler(watcher)
        .spawn()
        .await;
    let uri = format!("workflow://executions/{id}");
    b.client.subscribe(SubscribeRequestParams::new(&uri)).await.unwrap();
    release_fifo(&go);
    loop {
        match heard.recv().await.expect("the client is still connected") {
            Heard::Updated(u) if u == uri => {
                let read = b
                    .client
                    .read_resource(ReadResourceRequestParams::new(&uri))
                    .await
                    .unwrap();
                let Some(ResourceContents::TextResourceContents { text, .. }) = read.contents.into_iter().next() else {
                    panic!("{uri}: one text content");
                };
                let status: Value = serde_json::from_str(&text).unwrap();
                if status["state"] == "succeeded" {
                    break;
                }
            }
            Heard::Updated(u) => panic!("an update for {u}, which is not subscribed"),
            Heard::ListChanged => {}
        }
    }
}

#[tokio::test]
async fn a_detached_workflows_max_concurrent_holds_across_servers_and_restarts() {
    let dir = TestDir::new("outlive-limit");
    let state_dir = dir.join("state");
    let mut dev = outliving("dev-server", &["hold"]);
    dev["max_concurrent"] = json!(1);
    let config = json!({"workflows": [dev]});
    let a = Server::builder("outlive-limit-a", config.clone())
        .state_dir(&state_dir)
        .spawn()
        .await;
    let first = a.start_wf("dev-server", json!({})).await;
    let refused = a.err("execute_workflow", json!({"workflow": "dev-server"})).await;
    assert!(
        refused.contains("max_concurrent") && refused.contains(&first) && refused.contains("cancel"),
        "{refused}"
    );
    sigkill(a.pid());
    let b = Server::builder("outlive-limit-b", config)
        .state_dir(&state_dir)
        .spawn()
        .await;
    let again = b.err("execute_workflow", json!({"workflow": "dev-server"})).await;
    assert!(again.contains(&first), "another server counts it too: {again}");
    b.ok("cancel_execution", json!({"execution_id": first})).await;
    let second = b.start_wf("dev-server", json!({})).await;
    assert_ne!(second, first);
    b.ok("cancel_execution", json!({"execution_id": second})).await;
}

#[tokio::test]
async fn run_follows_a_detached_execution_to_its_end_and_an_interrupt_leaves_it_running() {
    use std::io::BufRead;
    let dir = TestDir::new("outlive-run");
    let state_dir = dir.join("state");
    let go = dir.fifo("go");
    let config = json!({"workflows": [
        outliving("short", &["out", "one", "exit", "3"]),
        outliving("held", &["out", "ready", "wait-fifo", go.to_str().unwrap(), "out", "done"]),
    ]});
    let (_config_dir, config_path) = write_config("outlive-run-config", &config);
    let run = |workflow: &str| {
        let mut cmd = std::process::Command::new(server_bin());
        cmd.arg("run")
            .arg(workflow)
            .arg("--config")
            .arg(&config_path)
            .arg("--state-dir")
            .arg(&state_dir);
        cmd
    };
    let out = run("short").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "its exit code: {stdout}");
    assert!(stdout.contains("one"), "{stdout}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("outlives this command"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut held = run("held").stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut lines = std::io::BufReader::new(held.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    // SAFETY: SIGINT to the command this test started, as Ctrl-C does.
    unsafe { libc::kill(held.id() as i32, libc::SIGINT) };
    held.wait().unwrap();
    let s = Server::builder("outlive-run", config)
        .state_dir(&state_dir)
        .spawn()
        .await;
    let listed = s.ok("list_executions", json!({"workflow": "held"})).await;
    let id = listed["executions"][0]["execution_id"].as_str().unwrap().to_owned();
    assert_eq!(
        state(&listed["executions"][0]),
        "running",
        "Ctrl-C of run leaves it running: {listed}"
    );
    release_fifo(&go);
    let st = s.wait_final(&id).await;
    assert_eq!(state(&st), "succeeded", "{st}");
}
