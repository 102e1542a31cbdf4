//! The server under load from its own client: parallel greps over a log of hundreds of megabytes, and a client
//! that is slow to read a big answer. Neither may take the server or its workflows down, and a grep's memory stays
//! within the store's caps. (The latency figures are in `benches/load.rs`.)

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::util::{RawServer, alive, structured, wf};

/// The memory a server with `executions` may peak at: each at the default 8 MiB log cap with a history, plus
/// 64 MiB for the server itself (in kB, as `/proc` counts).
fn caps_kb(executions: u64) -> u64 {
    (executions * 8 + 64) << 10
}

/// A line no log here holds.
const NO_MATCH: &str = "no line says this";

/// A `/proc/PID/status` field in kB (`VmHWM:`, the peak resident set).
fn proc_status_kb(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the server's /proc status");
    let line = status.lines().find(|l| l.starts_with(key)).expect("the field");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Starts `workflow` and returns its execution id and leader pid.
async fn start(s: &mut RawServer, workflow: &str) -> (String, u32) {
    let st = s.call_ok("execute_workflow", json!({"workflow": workflow})).await;
    (
        st["execution_id"].as_str().unwrap().to_owned(),
        st["pid"].as_u64().unwrap() as u32,
    )
}

/// Reads messages until every id in `ids` has its response; panics (with the server's log) if the server ends
/// first.
async fn responses(s: &mut RawServer, ids: &[u64]) -> HashMap<u64, Value> {
    let mut got = HashMap::new();
    while got.len() < ids.len() {
        let Some(msg) = s.recv().await else {
            panic!(
                "the server ended with {} of {} calls answered\n{}",
                got.len(),
                ids.len(),
                s.stderr()
            );
        };
        if let Some(id) = msg["id"].as_u64()
            && ids.contains(&id)
        {
            got.insert(id, msg);
        }
    }
    got
}

/// A finished log of ~349 MB (`seq 1 40000000`, as in the report) while another workflow runs; returns the
/// server, the big log's id and the running execution's id and pid.
async fn big_log_and_a_running_workflow(label: &str, lines: u64) -> (RawServer, String, String, u32) {
    let mut s = RawServer::start(
        label,
        json!({"workflows": [
            {"name": "big", "command": ["seq", "1", lines.to_string()]},
            wf("sleeper", &["hold"]),
        ]}),
    )
    .await;
    let (big, _) = start(&mut s, "big").await;
    let st = s.wait_final(&big).await;
    assert_eq!(st["state"], "succeeded", "{st}");
    assert_eq!(st["output"]["stdout"]["lines"], lines);
    let (sleeper, pid) = start(&mut s, "sleeper").await;
    (s, big, sleeper, pid)
}

#[tokio::test]
async fn parallel_greps_over_a_big_log_leave_the_server_and_its_workflows_running() {
    let (mut s, big, sleeper, pid) = big_log_and_a_running_workflow("greps", 40_000_000).await;
    // Eight greps that match nothing, pipelined: each scans until its budget, then says where it stopped.
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(s.call("get_logs", json!({"execution_id": big, "grep": NO_MATCH})).await);
    }
    s.send(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"})).await;
    ids.push(1);
    let got = responses(&mut s, &ids).await;
    for id in &ids[..8] {
        let page = structured(&got[id]);
        assert_eq!(page["lines"], "", "{page}");
        let next = page["next_seq"].as_u64().unwrap();
        // 40,000,000 lines are past one call's scan budget: it stops, says so and says where to go on.
        assert!(
            next > 0 && next < 40_000_000,
            "the scan advanced and stopped at its budget: {page}"
        );
        assert_eq!(page["has_more"], true, "{page}");
        assert_eq!(page["truncated"], "scan_budget", "{page}");
        let hint = page["hint"].as_str().unwrap();
        assert!(hint.contains(&format!("since_seq={next}")), "{hint}");
    }
    let st = s.call_ok("get_status", json!({"execution_id": sleeper})).await;
    assert_eq!(st["state"], "running", "the running workflow is untouched: {st}");
    assert!(alive(pid), "its process is alive");
    let (peak, caps) = (proc_status_kb(s.pid(), "VmHWM:"), caps_kb(2));
    assert!(
        peak <= caps,
        "the server's peak RSS was {peak} kB, over the caps + 64 MiB ({caps} kB)"
    );
    s.call_ok("cancel_execution", json!({"execution_id": sleeper, "grace_ms": 0}))
        .await;
}

#[tokio::test]
async fn parallel_greps_over_a_whole_live_log_stay_within_the_memory_caps() {
    // ~93 MB of text, far past the 8 MiB a history keeps in memory: the greps read it back from the files, while
    // the workflow that wrote it still runs.
    let lines = 12_000_000u64;
    let mut s = RawServer::start(
        "grep-memory",
        json!({"workflows": [
            {"name": "big", "command": ["sh", "-c", format!("seq 1 {lines}; exec sleep 1000")]},
        ]}),
    )
    .await;
    let (big, _) = start(&mut s, "big").await;
    let sleeper = big.clone();
    // Long-polls for the last line.
    loop {
        let page = s
            .call_ok(
                "get_logs",
                json!({"execution_id": big, "since_seq": lines - 1, "wait_ms": 50000}),
            )
            .await;
        if !page["lines"].as_str().unwrap().is_empty() {
            break;
        }
    }
    let server = s.pid();
    let before = proc_status_kb(server, "VmHWM:");
    // Four greps paging through the whole log, pipelined: each answer's next_seq continues it.
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(s.call("get_logs", json!({"execution_id": big, "grep": NO_MATCH})).await);
    }
    let mut open = ids.len();
    while open > 0 {
        let msg = s
            .recv()
            .await
            .unwrap_or_else(|| panic!("the server ended\n{}", s.stderr()));
        if msg["id"].as_u64().is_none_or(|id| !ids.contains(&id)) {
            continue;
        }
        let page = structured(&msg);
        assert_eq!(page["lines"], "", "{page}");
        if page["has_more"] == true {
            let since = page["next_seq"].clone();
            let id = s
                .call(
                    "get_logs",
                    json!({"execution_id": big, "grep": NO_MATCH, "since_seq": since}),
                )
                .await;
            ids.push(id);
        } else {
            assert_eq!(page["next_seq"], lines, "the grep reached the end: {page}");
            open -= 1;
        }
    }
    let (peak, caps) = (proc_status_kb(server, "VmHWM:"), caps_kb(1));
    assert!(
        peak <= caps,
        "the server's peak RSS was {peak} kB (before the greps {before} kB), over the caps + 64 MiB ({caps} kB)"
    );
    s.call_ok("cancel_execution", json!({"execution_id": sleeper, "grace_ms": 0}))
        .await;
}

#[tokio::test]
async fn a_client_that_pauses_mid_page_keeps_its_server_and_workflows() {
    let mut s = RawServer::start(
        "pausing-client",
        json!({"workflows": [wf("wide", &["wide", "10000", "200", "78"]), wf("sleeper", &["hold"])]}),
    )
    .await;
    let (wide, _) = start(&mut s, "wide").await;
    assert_eq!(s.wait_final(&wide).await["state"], "succeeded");
    let (sleeper, pid) = start(&mut s, "sleeper").await;
    let id = s
        .call(
            "get_logs",
            json!({"execution_id": wide, "max_lines": 10000, "max_bytes": 1048576}),
        )
        .await;
    // A client busy elsewhere for 5 s after the first 100 KiB of a 1 MiB page (the server's write blocks on the
    // full pipe meanwhile), then reading on.
    let r = s.recv_pausing(100 << 10, Duration::from_secs(5)).await;
    assert_eq!(r["id"], id);
    let page = structured(&r);
    assert!(
        page["lines"].as_str().unwrap().len() > 1_000_000,
        "a 1 MiB page: {}",
        page["lines"].as_str().unwrap().len()
    );
    let st = s.call_ok("get_status", json!({"execution_id": sleeper})).await;
    assert_eq!(st["state"], "running", "{st}\n{}", s.stderr());
    assert!(alive(pid), "the workflow is alive");
    s.call_ok("cancel_execution", json!({"execution_id": sleeper, "grace_ms": 0}))
        .await;
}
