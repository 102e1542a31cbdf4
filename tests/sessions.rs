//! Sessions on one server: a client that ends (or is gone) ends its own session and nothing else; what the other
//! sessions started goes on, and only the server's shutdown takes session-scoped workflows along.

use serde_json::json;

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
