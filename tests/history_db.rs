//! The history database under stress from outside: a read that waits on a database another process holds
//! locked never holds up the rest of the server.

use std::os::fd::AsRawFd;
use std::path::Path;

use serde_json::{Value, json};

use crate::util::{RawServer, TestDir, wf};

/// Holds every WAL read lock of the database at `db` (POSIX locks on its `-shm` file, as another SQLite process
/// would hold them), so a read of this database waits — SQLite's own retries, about 10 s — and then fails.
/// Released when the file is dropped.
fn hold_read_locks(db: &Path) -> std::fs::File {
    let mut shm = db.as_os_str().to_owned();
    shm.push("-shm");
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&shm).unwrap();
    // SQLite's WAL index: bytes 123..128 are the five read marks a reader must lock shared.
    let lock = libc::flock {
        l_type: libc::F_WRLCK as i16,
        l_whence: libc::SEEK_SET as i16,
        l_start: 123,
        l_len: 5,
        l_pid: 0,
    };
    // SAFETY: F_SETLK with a valid flock struct on an open file.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &lock) };
    assert_eq!(
        rc,
        0,
        "lock {}: {}",
        shm.to_string_lossy(),
        std::io::Error::last_os_error()
    );
    file
}

#[tokio::test]
async fn a_read_waiting_on_a_locked_history_does_not_hold_up_other_calls() {
    let dir = TestDir::new("locked-history");
    let state_dir = dir.join("state");
    let mut s = RawServer::builder("locked-history", json!({"workflows": [wf("ok", &["exit", "0"])]}))
        .state_dir(&state_dir)
        .start()
        .await;
    let locks = hold_read_locks(&state_dir.join("history.db"));
    // More lookups than the server has async workers: each reads the history.
    let mut reads = Vec::new();
    for _ in 0..4 {
        reads.push(
            s.call("get_status", json!({"execution_id": uuid::Uuid::new_v4().to_string()}))
                .await,
        );
    }
    s.send(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"})).await;
    loop {
        let msg: Value = s.recv().await.expect("the server answers");
        assert!(
            !reads.iter().any(|id| msg["id"] == *id),
            "a lookup was answered while the history was locked (so it was not waiting off the async workers, \
             and the ping waited behind it): {msg}"
        );
        if msg["id"] == 1 {
            break;
        }
    }
    drop(locks);
    // Once the history is free again, each lookup gets its answer.
    while !reads.is_empty() {
        let msg: Value = s.recv().await.expect("the server answers");
        if let Some(at) = reads.iter().position(|id| msg["id"] == *id) {
            reads.swap_remove(at);
            let text = msg["result"]["content"][0]["text"].as_str().unwrap_or_default();
            assert!(text.contains("no execution with id"), "{msg}");
        }
    }
}

#[tokio::test]
async fn a_locked_history_is_reported_as_busy_not_as_an_unknown_execution() {
    let dir = TestDir::new("busy-history");
    let state_dir = dir.join("state");
    let mut s = RawServer::builder("busy-history", json!({"workflows": [wf("ok", &["exit", "0"])]}))
        .state_dir(&state_dir)
        .start()
        .await;
    let db = state_dir.join("history.db");
    let locks = hold_read_locks(&db);
    // SQLite gives up after its retries; the lookup then says why it could not answer.
    let id = uuid::Uuid::new_v4().to_string();
    let asked = s.call("get_status", json!({"execution_id": id})).await;
    let r = s.response(asked).await;
    drop(locks);
    assert_eq!(r["result"]["isError"], true, "{r}");
    let text = r["result"]["content"][0]["text"].as_str().unwrap();
    assert!(!text.contains("no execution with id"), "{text}");
    assert!(
        text.contains(&db.display().to_string()) && text.contains("busy") && text.contains("try again"),
        "{text}"
    );
}

/// A listing that cannot read the history says so — never "0 of 0" for a history that holds executions.
#[tokio::test]
async fn a_locked_history_fails_a_listing_instead_of_listing_nothing() {
    let dir = TestDir::new("busy-listing");
    let state_dir = dir.join("state");
    let mut s = RawServer::builder("busy-listing", json!({"workflows": [wf("ok", &["exit", "0"])]}))
        .state_dir(&state_dir)
        .start()
        .await;
    let ran = s
        .call_ok("execute_workflow", json!({"workflow": "ok", "params": {}}))
        .await;
    s.wait_final(ran["execution_id"].as_str().unwrap()).await;
    let db = state_dir.join("history.db");
    let busy = |text: &str| text.contains(&db.display().to_string()) && text.contains("busy");
    let locks = hold_read_locks(&db);
    let asked = s.call("list_executions", json!({})).await;
    // resources/list too: not a page with the catalog alone.
    s.send(json!({"jsonrpc": "2.0", "id": 1, "method": "resources/list"}))
        .await;
    // Both wait on the locked history; either may be answered first.
    let [r, listed] = <[Value; 2]>::try_from(s.responses(&[asked, 1]).await).unwrap();
    drop(locks);
    assert_eq!(r["result"]["isError"], true, "{r}");
    let text = r["result"]["content"][0]["text"].as_str().unwrap();
    assert!(busy(text) && text.contains("try again"), "{text}");
    assert!(
        busy(listed["error"]["message"].as_str().unwrap_or_default()),
        "{listed}"
    );
}
