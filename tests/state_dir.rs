//! The state directory as other users and other servers see it: private modes, a live server never judged dead
//! from a lock file it cannot read, two servers starting at once on a corrupt database, a full disk at start,
//! and the size of what one call may store. Each test runs real server processes on a real SQLite file.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::util::{RawServer, Server, TestDir, Tmpfs, alive, refused_start, state, wf, write_config};

/// Every path under `dir` (itself included) whose mode is not 0700 for a directory or 0600 for a file.
fn not_private(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut wrong = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(path) = todo.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue; // Gone meanwhile (a segment rotated away, a -shm file removed at exit).
        };
        let mode = meta.permissions().mode() & 0o7777;
        if meta.is_dir() {
            if mode != 0o700 {
                wrong.push((path.clone(), mode));
            }
            todo.extend(std::fs::read_dir(&path).unwrap().flatten().map(|e| e.path()));
        } else if mode != 0o600 {
            wrong.push((path, mode));
        }
    }
    wrong
}

#[tokio::test]
async fn the_state_directory_is_private_and_a_workflow_keeps_the_users_umask() {
    let dir = TestDir::new("private");
    let state_dir = dir.join("state");
    // A state directory left readable by everyone (an older version made it so) is tightened.
    std::fs::create_dir_all(&state_dir).unwrap();
    std::fs::set_permissions(&state_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let made = dir.join("made-by-the-workflow");
    let config = json!({"workflows": [
        wf("touch", &["touch", made.to_str().unwrap(), "lines", "100"]),
        wf("held", &["out", "started", "hold"]),
    ]});
    let mut s = RawServer::builder("private", config)
        .state_dir(&state_dir)
        .umask(0o022)
        .start()
        .await;
    let done = s.call_ok("execute_workflow", json!({"workflow": "touch"})).await["execution_id"]
        .as_str()
        .unwrap()
        .to_owned();
    loop {
        let st = s
            .call_ok("get_status", json!({"execution_id": done, "wait_ms": 30000}))
            .await;
        if state(&st) != "running" && state(&st) != "queued" {
            assert_eq!(state(&st), "succeeded", "{st}");
            break;
        }
    }
    let held = s.call_ok("execute_workflow", json!({"workflow": "held"})).await["execution_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let page = s
        .call_ok(
            "get_logs",
            json!({"execution_id": held, "grep": "^started", "wait_ms": 30000}),
        )
        .await;
    assert!(page["lines"].as_str().unwrap().contains("started"), "{page}");

    // While it runs: the database and its WAL files, the lock file, both executions' log files.
    assert!(state_dir.join("history.db-wal").exists() && state_dir.join("logs").join(&held).exists());
    let wrong = not_private(&state_dir);
    let wrong: Vec<String> = wrong.iter().map(|(p, m)| format!("{} {m:o}", p.display())).collect();
    assert!(wrong.is_empty(), "not private: {wrong:#?}");
    let stderr = s.stderr();
    assert!(
        stderr.contains(&format!("{}", state_dir.display())) && stderr.contains("0755"),
        "the tightening is logged: {stderr}"
    );
    // The workflow's own files keep the user's umask (022): the server's own modes are not inherited.
    let mode = std::fs::metadata(&made).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "a workflow's file gets 0666 & !umask, got {mode:o}");
    s.call_ok("cancel_execution", json!({"execution_id": held, "grace_ms": 0}))
        .await;
}

fn held_config() -> Value {
    json!({"workflows": [wf("held", &["out", "started", "hold"])]})
}

async fn start_held(a: &Server) -> (String, u32) {
    let id = a.start_wf("held", json!({})).await;
    a.wait_line(&id, "^started").await;
    let pid = a.ok("get_status", json!({"execution_id": id})).await["pid"]
        .as_u64()
        .unwrap() as u32;
    (id, pid)
}

#[tokio::test]
async fn a_live_server_whose_lock_file_was_deleted_is_not_judged_dead() {
    let dir = TestDir::new("lock-gone");
    let state_dir = dir.join("state");
    let a = Server::builder("lock-gone-a", held_config())
        .state_dir(&state_dir)
        .spawn()
        .await;
    let (id, pid) = start_held(&a).await;
    for lock in std::fs::read_dir(state_dir.join("instances")).unwrap().flatten() {
        std::fs::remove_file(lock.path()).unwrap();
    }

    // The second server recovers at start, then reads the execution and lists it.
    let b = Server::builder("lock-gone-b", held_config())
        .state_dir(&state_dir)
        .spawn()
        .await;
    let seen = b.ok("get_status", json!({"execution_id": id})).await;
    assert_eq!(state(&seen), "running", "{seen}\n{}", b.stderr());
    let listed = b.ok("list_executions", json!({})).await;
    assert_eq!(listed["executions"][0]["state"], "running", "{listed}");
    assert!(alive(pid), "the first server's workflow was killed\n{}", b.stderr());
    assert_eq!(state(&a.ok("get_status", json!({"execution_id": id})).await), "running");
    a.ok("cancel_execution", json!({"execution_id": id, "grace_ms": 0}))
        .await;
}

#[tokio::test]
async fn a_server_that_cannot_open_lock_files_judges_no_one_dead() {
    let dir = TestDir::new("lock-unreadable");
    let state_dir = dir.join("state");
    let a = Server::builder("lock-unreadable-a", held_config())
        .state_dir(&state_dir)
        .spawn()
        .await;
    let (id, pid) = start_held(&a).await;
    let locks = || -> Vec<PathBuf> {
        std::fs::read_dir(state_dir.join("instances"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect()
    };
    let a_lock = locks();
    assert_eq!(a_lock.len(), 1);

    // So few descriptors that opening another server's lock file fails (EMFILE).
    let mut b = RawServer::builder("lock-unreadable-b", held_config())
        .state_dir(&state_dir)
        .fd_limit(17)
        .start()
        .await;
    let seen = b.call_ok("get_status", json!({"execution_id": id})).await;
    assert_eq!(state(&seen), "running", "{seen}\n{}", b.stderr());
    let listed = b.call_ok("list_executions", json!({})).await;
    assert_eq!(listed["executions"][0]["state"], "running", "{listed}");
    assert!(alive(pid), "the first server's workflow was killed\n{}", b.stderr());
    assert!(a_lock[0].exists(), "the live server's lock file was deleted");
    assert_eq!(state(&a.ok("get_status", json!({"execution_id": id})).await), "running");
    a.ok("cancel_execution", json!({"execution_id": id, "grace_ms": 0}))
        .await;
}

#[tokio::test]
async fn two_servers_starting_together_on_a_corrupt_database_both_start() {
    let garbage = b"garbage that is not SQLite, kept for the owner".repeat(100);
    let config = json!({"workflows": [wf("quick", &["out", "q"])]});
    // A race: a few rounds, each on a fresh corrupt file.
    for round in 0..4 {
        let dir = TestDir::new("corrupt-race");
        let state_dir = dir.join("state");
        std::fs::create_dir_all(&state_dir).unwrap();
        std::fs::write(state_dir.join("history.db"), &garbage).unwrap();
        let (a, b) = tokio::join!(
            Server::builder("corrupt-race-a", config.clone())
                .state_dir(&state_dir)
                .spawn(),
            Server::builder("corrupt-race-b", config.clone())
                .state_dir(&state_dir)
                .spawn(),
        );
        for s in [&a, &b] {
            let id = s.start_wf("quick", json!({})).await;
            assert_eq!(state(&s.wait_final(&id).await), "succeeded", "round {round}");
        }
        let total = |l: Value| l["total"].as_u64().unwrap();
        assert_eq!(
            total(a.ok("list_executions", json!({})).await),
            2,
            "round {round}: both use one fresh database"
        );
        let aside: Vec<_> = std::fs::read_dir(&state_dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(|c: char| c.is_ascii_digit()))
            .filter(|e| e.file_name().to_string_lossy().contains(".unusable-"))
            .collect();
        assert_eq!(aside.len(), 1, "round {round}: the corrupt file is moved aside once");
        assert_eq!(std::fs::read(aside[0].path()).unwrap(), garbage, "round {round}");
    }
}

#[tokio::test]
async fn a_full_disk_at_start_names_the_state_directory_the_error_and_the_way_out() {
    let dir = TestDir::new("full-at-start");
    let mount_point = dir.join("full");
    std::fs::create_dir_all(&mount_point).unwrap();
    let _tmpfs = Tmpfs::mount(&mount_point, "64k");
    // Fill it up.
    let _ = std::fs::write(mount_point.join("filler"), vec![0u8; 128 << 10]);
    let (_config_dir, config) = write_config("full-at-start", &json!({"workflows": []}));
    let state_dir = mount_point.join("state");
    let stderr = refused_start(&config, &state_dir).await;
    assert!(
        stderr.contains(&format!("state directory {}", state_dir.display()))
            && stderr.contains("No space left on device")
            && stderr.contains("--ephemeral")
            && stderr.contains("--state-dir"),
        "the error names the state directory, the OS error and the way out: {stderr}"
    );
}

#[tokio::test]
async fn params_beyond_the_size_cap_are_a_tool_error() {
    let mut entry = wf("echo", &["print-args"]);
    entry["params"] = json!([
        {"name": "a", "type": "string", "positional": true},
        {"name": "b", "type": "string", "positional": true},
        {"name": "c", "type": "string", "positional": true},
    ]);
    let s = Server::start("params-cap", json!({"workflows": [entry]})).await;
    // Each value is under the per-value cap; together they are over the per-call one.
    let big = "x".repeat(30 << 10);
    let err = s
        .err(
            "execute_workflow",
            json!({"workflow": "echo", "params": {"a": big, "b": big, "c": big}}),
        )
        .await;
    assert!(
        err.contains("65536") && err.contains(&(3 * big.len()).to_string()),
        "the error names the size and the cap: {err}"
    );
    let id = s.start_wf("echo", json!({"a": big, "b": big})).await;
    assert_eq!(state(&s.wait_final(&id).await), "succeeded");
}

#[tokio::test]
async fn a_listing_echoes_long_params_as_a_status_does() {
    let dir = TestDir::new("listed-params");
    let state_dir = dir.join("state");
    let mut entry = wf("echo", &["print-args"]);
    entry["params"] = json!([
        {"name": "text", "type": "string", "positional": true},
        {"name": "n", "type": "integer", "arg": "--n"},
        {"name": "ratio", "type": "number", "arg": "--ratio"},
        {"name": "short", "type": "string", "arg": "--short"},
    ]);
    let config = json!({"workflows": [entry]});
    let a = Server::builder("listed-params-a", config.clone())
        .state_dir(&state_dir)
        .spawn()
        .await;
    let text = "é".repeat(20_000) + "end";
    let id = a
        .start_wf("echo", json!({"text": text, "n": 7, "ratio": 0.1, "short": "s"}))
        .await;
    assert_eq!(state(&a.wait_final(&id).await), "succeeded");
    // Another server knows it from the history only.
    let b = Server::builder("listed-params-b", config)
        .state_dir(&state_dir)
        .spawn()
        .await;
    let status = b.ok("get_status", json!({"execution_id": id})).await;
    let listed = b.ok("list_executions", json!({})).await;
    assert_eq!(listed["executions"][0]["params"], status["params"], "{listed}");
    assert_eq!(status["params"]["n"], 7);
    assert_eq!(status["params"]["ratio"], 0.1);
    assert_eq!(status["params"]["short"], "s");
    assert_eq!(
        status["params"]["text"],
        format!("{}…[+{} bytes]", "é".repeat(128), text.len() - 256)
    );
}
