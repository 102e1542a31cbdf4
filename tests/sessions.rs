//! Sessions on one server: a client that ends (or is gone) ends its own session and nothing else; what the other
//! sessions started goes on, and only the server's shutdown takes session-scoped workflows along.

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{Server, TestDir, alive, exited, wf};

fn pid_in(path: &std::path::Path) -> u32 {
    std::fs::read_to_string(path).unwrap().trim().parse().unwrap()
}

#[tokio::test]
async fn a_session_that_ends_leaves_the_other_sessions_and_their_executions_running() {
    let dir = TestDir::new("sessions");
    let (pid_a, pid_b) = (dir.join("a.pid"), dir.join("b.pid"));
    let config = json!({"workflows": [
        wf("hold-a", &["pid-file", pid_a.to_str().unwrap(), "out", "started", "hold"]),
        wf("hold-b", &["pid-file", pid_b.to_str().unwrap(), "out", "started", "hold"]),
        wf("quick", &["out", "done"]),
    ]});
    let a = Server::start("sessions", config).await;
    let b = a.another_session().await;
    let started_by_a = a.start_wf("hold-a", json!({})).await;
    a.wait_line(&started_by_a, "started").await;
    let started_by_b = b.start_wf("hold-b", json!({})).await;
    b.wait_line(&started_by_b, "started").await;

    a.end_session().await;

    // The other session still serves, and neither execution was touched: session-scoped means "until the
    // server stops", not "until the client that started it leaves".
    let quick = b.start_wf("quick", json!({})).await;
    assert_eq!(b.wait_final(&quick).await["state"], "succeeded");
    for (id, pid) in [(&started_by_a, &pid_a), (&started_by_b, &pid_b)] {
        let st = b.ok("get_status", json!({"execution_id": id})).await;
        assert_eq!(st["state"], "running", "{st}");
        assert!(alive(pid_in(pid)), "the workflow of {id} is still running");
    }

    // The server's shutdown still kills them.
    b.shut_down().await;
    for pid in [&pid_a, &pid_b] {
        assert!(
            exited(pid_in(pid)).await,
            "the server's shutdown kills every session-scoped workflow"
        );
    }
}

#[tokio::test]
async fn a_client_that_stops_reading_loses_its_session_and_nothing_else() {
    let dir = TestDir::new("sessions-stall");
    let pid = dir.join("hold.pid");
    let config = json!({
        "limits": {"client_stall_ms": 1000},
        "workflows": [
            wf("hold", &["pid-file", pid.to_str().unwrap(), "out", "started", "hold"]),
            wf("big", &["lines", "20000"]),
            wf("quick", &["out", "done"]),
        ],
    });
    let s = Server::start("sessions-stall", config).await;
    let big = s.start_wf("big", json!({})).await;
    s.wait_final(&big).await;
    let held = s.start_wf("hold", json!({})).await;
    s.wait_line(&held, "started").await;

    // A second client asks for more than the pipe holds and never reads an answer.
    let (mut stalled, session) = s.raw_session();
    let mut requests = vec![
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "stalled", "version": "0"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    ];
    for id in 1..=6 {
        requests.push(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
            "name": "get_logs", "arguments": {"execution_id": big, "max_lines": 10000, "max_bytes": 1048576}}}));
    }
    for r in requests {
        stalled.write_all(format!("{r}\n").as_bytes()).await.unwrap();
    }
    tokio::time::timeout(std::time::Duration::from_secs(30), session)
        .await
        .expect("a client that stops reading loses its session after limits.client_stall_ms")
        .unwrap();

    // Its session is over; the server, the other session and the workflow it started are not.
    let st = s.ok("get_status", json!({"execution_id": held})).await;
    assert_eq!(st["state"], "running", "{st}");
    assert!(alive(pid_in(&pid)));
    let quick = s.start_wf("quick", json!({})).await;
    assert_eq!(s.wait_final(&quick).await["state"], "succeeded");
    // The server closed that session's pipe: what it wrote is followed by the end.
    let mut rest = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(30), stalled.read_to_end(&mut rest))
        .await
        .expect("an ended session closes its pipe")
        .unwrap();
}
