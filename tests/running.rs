//! What runs on a state directory, who owns it, and stopping it from the command line: `workflow-mcp history
//! --running` and `workflow-mcp cancel ID`, against real server processes.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::util::{Server, TestDir, alive, exited, server_bin, wf};

/// The binary run with `args` on `state_dir`, off the test's async workers: (exit code, stdout, stderr).
async fn cli(state_dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let (state_dir, args): (PathBuf, Vec<String>) =
        (state_dir.to_owned(), args.iter().map(|a| a.to_string()).collect());
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(server_bin())
            .args(&args)
            .arg("--state-dir")
            .arg(&state_dir)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn history_running_names_the_process_that_owns_each_execution() {
    let dir = TestDir::new("running-owners");
    let state_dir = dir.join("state");
    let never = dir.fifo("never");
    let config = json!({"workflows": [
        wf("held", &["out", "started", "wait-fifo", never.to_str().unwrap()]),
        wf("quick", &["out", "done"]),
    ]});
    let s = Server::builder("running-owners", config)
        .state_dir(&state_dir)
        .spawn()
        .await;
    let quick = s.start_wf("quick", json!({})).await;
    s.wait_final(&quick).await;
    let held = s.start_wf("held", json!({})).await;
    s.wait_line(&held, "^started").await;

    let (code, text, err) = cli(&state_dir, &["history", "--running"]).await;
    assert_eq!(code, Some(0), "{err}");
    let row = text
        .lines()
        .find(|l| l.starts_with(&held))
        .unwrap_or_else(|| panic!("the running execution is listed: {text}"));
    assert!(
        row.contains("held") && row.contains("running") && row.contains(&format!("server pid {}", s.pid())),
        "{row}"
    );
    assert!(!text.contains(&quick), "a finished execution is not running: {text}");

    let (code, json_text, err) = cli(&state_dir, &["history", "--running", "--json"]).await;
    assert_eq!(code, Some(0), "{err}");
    let listed: Value = serde_json::from_str(&json_text).unwrap();
    assert_eq!(listed["total"], 1, "{listed}");
    let only = &listed["executions"][0];
    assert_eq!(only["execution_id"], held.as_str());
    assert_eq!(only["owner"]["role"], "server");
    assert_eq!(only["owner"]["pid"], s.pid());
}

#[tokio::test]
async fn cancel_on_the_command_line_stops_what_a_server_runs() {
    let dir = TestDir::new("running-cancel");
    let state_dir = dir.join("state");
    let config = json!({"workflows": [
        wf("tree", &["grandchild", "hold"]),
        wf("quick", &["out", "done"]),
    ]});
    let s = Server::builder("running-cancel", config)
        .state_dir(&state_dir)
        .spawn()
        .await;
    let id = s.start_wf("tree", json!({})).await;
    let line = s.wait_line(&id, "^grandchild").await;
    let grandchild: u32 = line.split(' ').nth(1).unwrap().parse().unwrap();
    let leader = s.ok("get_status", json!({"execution_id": id})).await["pid"]
        .as_u64()
        .unwrap() as u32;
    assert!(alive(leader) && alive(grandchild));

    let (code, out, err) = cli(&state_dir, &["cancel", &id[..8]]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with(&format!("execution {id} (workflow \"tree\"): cancelled")),
        "it answers with the final state: {out}"
    );
    // Answered once final: nothing of its tree is left.
    assert!(!alive(leader) && !alive(grandchild), "the whole tree is gone");
    assert!(exited(grandchild).await);
    let status = s.ok("get_status", json!({"execution_id": id})).await;
    assert_eq!(status["state"], "cancelled", "{status}");

    // Nothing to cancel: one sentence each, exit 1.
    let (code, _, err) = cli(&state_dir, &["cancel", &id]).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "workflow-mcp: execution {id} has already ended (tree cancelled"
        )),
        "{err}"
    );
    let quick = s.start_wf("quick", json!({})).await;
    s.wait_final(&quick).await;
    let (code, _, err) = cli(&state_dir, &["cancel", &quick]).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("execution {quick} has already ended (quick succeeded"))
            && err.contains("there is nothing to cancel"),
        "{err}"
    );
    let unknown = "0b5e6f0e-8c2a-4a3f-9d7e-1f2a3b4c5d6e";
    let (code, _, err) = cli(&state_dir, &["cancel", unknown]).await;
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(
        err.trim_end(),
        format!("workflow-mcp: no execution {unknown} in {}", state_dir.display())
    );
}

/// A queued execution another process owns is cancelled from the command line without ever starting.
#[tokio::test]
async fn cancel_on_the_command_line_takes_a_queued_execution_off_the_queue() {
    let dir = TestDir::new("running-queued");
    let state_dir = dir.join("state");
    let never = dir.fifo("never");
    let config = json!({"limits": {"max_concurrent": 1}, "workflows": [
        wf("held", &["out", "started", "wait-fifo", never.to_str().unwrap()]),
    ]});
    let s = Server::builder("running-queued", config)
        .state_dir(&state_dir)
        .spawn()
        .await;
    let first = s.start_wf("held", json!({})).await;
    s.wait_line(&first, "^started").await;
    let waiting = s.start_wf("held", json!({})).await;
    let (code, text, err) = cli(&state_dir, &["history", "--running"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        text.lines().any(|l| l.starts_with(&waiting)
            && l.contains("queued")
            && l.ends_with(&format!("server pid {}", s.pid()))),
        "{text}"
    );

    let (code, out, err) = cli(&state_dir, &["cancel", &waiting]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with(&format!("execution {waiting} (workflow \"held\"): cancelled")),
        "{out}"
    );
    let st = s.ok("get_status", json!({"execution_id": waiting})).await;
    assert_eq!(st["state"], "cancelled", "{st}");
    assert!(
        st["started_at"].is_null() && st["pid"].is_null(),
        "it never started: {st}"
    );
    let st = s.ok("get_status", json!({"execution_id": first})).await;
    assert_eq!(st["state"], "running", "the other one goes on: {st}");
}

/// A workflow entry of the fake workflow with `actions`, outliving its session.
fn outliving(name: &str, actions: &[&str]) -> Value {
    let mut w = wf(name, actions);
    w["outlive_session"] = json!(true);
    w
}

/// What runs the leader `pid`: its parent.
fn parent(pid: u32) -> u32 {
    workflow_mcp::proc::scan::process(pid).expect("the leader runs").ppid
}

#[tokio::test]
async fn detached_executions_are_listed_with_their_supervisor_and_cancelled_from_the_command_line() {
    let dir = TestDir::new("running-detached");
    let state_dir = dir.join("state");
    let config = json!({"workflows": [
        outliving("keep", &["grandchild", "setsid-grandchild", "hold"]),
    ]});
    let s = Server::builder("running-detached", config)
        .state_dir(&state_dir)
        .spawn()
        .await;
    let kept = s.start_wf("keep", json!({})).await;
    let dropped = s.start_wf("keep", json!({})).await;
    let mut trees = Vec::new();
    for id in [&kept, &dropped] {
        let mut tree = s.grandchildren(id, 2).await;
        let leader = s.ok("get_status", json!({"execution_id": id})).await["pid"]
            .as_u64()
            .unwrap() as u32;
        tree.push(leader);
        trees.push((parent(leader), tree));
    }
    let (kept_supervisor, kept_tree) = trees[0].clone();
    let (dropped_supervisor, dropped_tree) = trees[1].clone();
    // Nobody's server: the executions are their supervisors' alone.
    drop(s);
    // SAFETY: SIGKILL to a supervisor this test's server started.
    unsafe { libc::kill(dropped_supervisor as i32, libc::SIGKILL) };
    for pid in dropped_tree {
        assert!(exited(pid).await, "a killed supervisor takes its tree");
    }
    assert!(exited(dropped_supervisor).await);

    let (code, text, err) = cli(&state_dir, &["history", "--running"]).await;
    assert_eq!(code, Some(0), "{err}");
    let row = |id: &str| {
        text.lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id} is listed: {text}"))
            .to_owned()
    };
    assert!(
        row(&kept).contains("running") && row(&kept).ends_with(&format!("detached (supervisor pid {kept_supervisor})")),
        "{text}"
    );
    assert!(
        row(&dropped).contains("lost")
            && row(&dropped).ends_with(&format!("gone (was supervisor pid {dropped_supervisor})")),
        "{text}"
    );

    let (code, out, err) = cli(&state_dir, &["cancel", &kept]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with(&format!("execution {kept} (workflow \"keep\"): cancelled")),
        "{out}"
    );
    for pid in kept_tree {
        assert!(!alive(pid), "{pid} of its tree is gone once cancel answers");
    }
    assert!(exited(kept_supervisor).await, "its supervisor ends with it");
    let (code, _, err) = cli(&state_dir, &["cancel", &dropped]).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("execution {dropped} has already ended (keep lost"))
            && err.contains("the supervisor that ran it"),
        "an execution whose owner is gone is lost, not cancellable: {err}"
    );
    // A server starting on the history marks it lost in so many words.
    let s = Server::builder("running-detached-after", json!({"workflows": []}))
        .state_dir(&state_dir)
        .spawn()
        .await;
    let st = s.ok("get_status", json!({"execution_id": dropped})).await;
    assert_eq!(st["state"], "lost", "{st}");
    assert!(
        st["error"]
            .as_str()
            .unwrap()
            .starts_with("the supervisor that ran it (instance "),
        "{st}"
    );
}
