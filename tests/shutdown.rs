//! How the server ends: end of input, signals, malformed input; what it leaves behind (nothing).

use serde_json::json;

use crate::util::{RawServer, TestDir, alive, records, structured, wf};

/// A workflow that leaves one grandchild in its group and one escaped with setsid, then holds.
fn tree_config() -> serde_json::Value {
    json!({"workflows": [wf("tree", &["grandchild", "setsid-grandchild", "hold"])]})
}

/// Starts the tree; returns every pid of it (leader, grandchild, escaped grandchild).
async fn start_tree(s: &mut RawServer) -> Vec<u32> {
    let st = s.call_ok("execute_workflow", json!({"workflow": "tree"})).await;
    let exec = st["execution_id"].as_str().unwrap().to_owned();
    let mut pids = vec![st["pid"].as_u64().unwrap() as u32];
    let mut since = 0;
    while pids.len() < 3 {
        let page = s
            .call_ok(
                "get_logs",
                json!({"execution_id": exec, "grep": "^grandchild ", "wait_ms": 60000, "since_seq": since}),
            )
            .await;
        since = page["next_seq"].as_u64().unwrap();
        for l in records(&page["lines"]) {
            pids.push(l["text"].as_str().unwrap()[11..].parse().unwrap());
        }
    }
    assert!(pids.iter().all(|p| alive(*p)));
    pids
}

#[tokio::test]
async fn stdin_eof_shuts_the_server_down_and_leaves_no_process() {
    let mut s = RawServer::start("eof", tree_config()).await;
    let pids = start_tree(&mut s).await;
    s.close_stdin();
    let took = s.wait_exit().await;
    eprintln!("server exited {took:?} after stdin EOF");
    for pid in pids {
        assert!(
            !alive(pid),
            "{pid} is gone (leader, grandchild in the group, escaped grandchild)"
        );
    }
}

#[tokio::test]
async fn stdin_eof_still_answers_a_call_that_is_waiting() {
    let dir = crate::util::TestDir::new("eof-wait-fifo");
    let gate = dir.fifo("gate");
    let mut s = RawServer::start(
        "eof-wait",
        json!({"workflows": [wf("gated", &["wait-fifo", gate.to_str().unwrap(), "out", "released"])]}),
    )
    .await;
    let id = s
        .call("execute_workflow", json!({"workflow": "gated", "wait_ms": 60000}))
        .await;
    // The request is on its way; end the input while the call waits, then let the workflow finish.
    s.close_stdin();
    tokio::task::spawn_blocking(move || crate::util::release_fifo(&gate))
        .await
        .unwrap();
    let r = s.response(id).await;
    assert_eq!(
        structured(&r)["state"],
        "succeeded",
        "the waiting call finished its wait: {r}"
    );
    s.wait_exit().await;
}

async fn signal_answers_pending_calls_at_once_and_kills_every_group(signal: i32) {
    let mut s = RawServer::start("signal", tree_config()).await;
    let pids = start_tree(&mut s).await;
    let exec_list = s.call("list_executions", json!({})).await;
    let exec = structured(&s.response(exec_list).await)["executions"][0]["execution_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let pending = s
        .call("get_status", json!({"execution_id": exec, "wait_ms": 60000}))
        .await;
    // Requests are read in order: once this one is answered, the waiting call is in the server's hands.
    let marker = s.call("list_workflows", json!({})).await;
    s.response(marker).await;
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(s.pid() as i32, signal) };
    let r = s.response(pending).await;
    assert!(
        structured(&r)["state"].is_string(),
        "the pending call was answered: {r}"
    );
    let took = s.wait_exit().await;
    eprintln!("server exited {took:?} after signal {signal}");
    for pid in pids {
        assert!(!alive(pid), "{pid} is gone");
    }
}

#[tokio::test]
async fn sigterm_answers_pending_calls_at_once_and_kills_every_group() {
    signal_answers_pending_calls_at_once_and_kills_every_group(libc::SIGTERM).await;
}

#[tokio::test]
async fn sigint_answers_pending_calls_at_once_and_kills_every_group() {
    signal_answers_pending_calls_at_once_and_kills_every_group(libc::SIGINT).await;
}

#[tokio::test]
async fn malformed_requests_get_json_rpc_errors() {
    let mut s = RawServer::start("malformed", json!({"workflows": []})).await;
    s.send_line("{this is not json").await;
    let r = s.recv().await.unwrap();
    assert_eq!(r["error"]["code"], -32700, "{r}");
    s.send_line(r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":7}"#)
        .await;
    let r = s.response(5).await;
    assert_eq!(r["error"]["code"], -32600, "{r}");
    let id = s.call("no_such_tool", json!({})).await;
    let r = s.response(id).await;
    assert!(r["error"]["code"].is_i64(), "an unknown tool is a JSON-RPC error: {r}");
    s.close_stdin();
    s.wait_exit().await;
}

#[tokio::test]
async fn the_shipped_session_prints_one_response_per_request() {
    let root = env!("CARGO_MANIFEST_DIR");
    let session = std::fs::read_to_string(format!("{root}/examples/session.jsonl")).unwrap();
    let requests: Vec<serde_json::Value> = session
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&serde_json::Value> = requests.iter().filter_map(|r| r.get("id")).collect();
    let out = std::process::Command::new(crate::util::server_bin())
        .env("XDG_STATE_HOME", crate::util::test_state_home())
        .args(["--config", &format!("{root}/examples/workflows.json")])
        .stdin(std::fs::File::open(format!("{root}/examples/session.jsonl")).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let responses: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("stdout carries JSON-RPC only"))
        .collect();
    assert_eq!(responses.len(), ids.len(), "one response per request");
    for id in ids {
        let r = responses
            .iter()
            .find(|r| &r["id"] == id)
            .expect("a response for every id");
        assert!(r.get("result").is_some(), "request {id} failed: {r}");
        assert_ne!(r["result"]["isError"], true, "request {id} failed: {r}");
    }
    let finished = responses
        .iter()
        .filter_map(|r| r["result"]["structuredContent"]["state"].as_str())
        .any(|s| s == "succeeded");
    assert!(finished, "the session shows a finished workflow");
}

/// Regression (issue 15, item 8): each queued execution was ended with a write and a retention pass of its own
/// (6000 took 13.6 s), and on SIGTERM the server exited half-way, leaving most `queued` in the history.
#[tokio::test]
async fn every_way_of_stopping_ends_every_queued_execution_in_the_history() {
    const QUEUED: usize = 2000;
    for how in ["end of input", "SIGTERM"] {
        let dir = TestDir::new("queued-at-exit");
        let state_dir = dir.join("state");
        let gate = dir.fifo("gate");
        let config = json!({
            "limits": {"max_concurrent": 1, "max_queued": QUEUED, "retain_executions": 10 * QUEUED},
            "workflows": [wf("held", &["wait-fifo", gate.to_str().unwrap()])]
        });
        let mut s = RawServer::builder("queued-at-exit", config)
            .state_dir(&state_dir)
            .start()
            .await;
        // In batches, reading the answers between them: a client that stops reading is cut off.
        let mut states = std::collections::HashMap::new();
        for _ in 0..QUEUED / 50 {
            for _ in 0..50 {
                s.call("execute_workflow", json!({"workflow": "held"})).await;
            }
            // Answers come in any order.
            for _ in 0..50 {
                let r = s.recv().await.expect("an answer");
                let state = structured(&r)["state"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{r}"))
                    .to_owned();
                *states.entry(state).or_insert(0) += 1;
            }
        }
        assert_eq!(states["running"], 1, "{states:?}");
        assert_eq!(states["queued"], QUEUED - 1, "{states:?}");
        match how {
            "SIGTERM" => {
                // SAFETY: signalling our own child process.
                unsafe { libc::kill(s.pid() as i32, libc::SIGTERM) };
            }
            _ => s.close_stdin(),
        }
        s.wait_exit().await;
        let history = workflow_mcp::store::Store::open_reader(&state_dir).unwrap();
        for unfinished in ["queued", "running"] {
            assert_eq!(
                history.list(None, Some(unfinished), 0).unwrap().1,
                0,
                "after {how}: executions left {unfinished} in the history"
            );
        }
        assert_eq!(
            history.list(None, Some("cancelled"), 0).unwrap().1,
            states.values().sum::<usize>()
        );
        // Nothing ran but the one that printed nothing: no log folder was made (none to delete at exit).
        let folders = std::fs::read_dir(state_dir.join("logs")).map_or(0, |d| d.count());
        assert_eq!(folders, 0, "after {how}");
    }
}
