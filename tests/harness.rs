//! The in-process harness itself: a test that ends leaves no workflow of its server running.

use serde_json::json;

use crate::util::{Server, alive, wf};

#[tokio::test]
async fn dropping_an_in_process_server_kills_its_workflows() {
    let s = Server::start("drop", json!({"workflows": [wf("hold", &["out", "ready", "hold"])]})).await;
    let id = s.start_wf("hold", json!({})).await;
    s.wait_line(&id, "^ready$").await;
    let pid = s.ok("get_status", json!({"execution_id": id})).await["pid"]
        .as_u64()
        .unwrap() as u32;
    assert!(alive(pid));
    drop(s);
    assert!(!alive(pid), "the workflow is gone once its server is dropped");
}
