//! The fault suite: every execution ends exactly once, with the true reason, and leaves nothing running.

use serde_json::{Value, json};

use crate::util::{RawServer, Server, TestDir, alive, exited, records, release_fifo, state, wf};

/// The pid printed by a fake workflow's `grandchild` actions.
async fn grandchild_pid(s: &Server, id: &str) -> u32 {
    s.wait_line(id, "^grandchild ")
        .await
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_workflow_running_past_its_timeout_is_timed_out() {
    let mut slow = wf("slow", &["out", "started", "hold"]);
    slow["timeout_ms"] = json!(300);
    let s = Server::start("timeout", json!({"workflows": [slow]})).await;
    let id = s.start_wf("slow", json!({})).await;
    let st = s.wait_final(&id).await;
    assert_eq!(state(&st), "timed_out");
    assert_eq!(st["signal"], "SIGTERM");
    assert_eq!(st["exit_code"], Value::Null);
    assert!(
        st["error"].as_str().unwrap().contains("timed out (timeout 300 ms)"),
        "{st}"
    );
    assert!(!alive(st["pid"].as_u64().unwrap() as u32));
}

#[tokio::test]
async fn the_server_default_timeout_applies_and_escalates_to_sigkill() {
    let s = Server::start(
        "default-timeout",
        json!({"limits": {"default_timeout_ms": 300, "grace_ms": 200},
               "workflows": [wf("stubborn", &["ignore-term", "out", "ready", "hold"])]}),
    )
    .await;
    let id = s.start_wf("stubborn", json!({})).await;
    let st = s.wait_final(&id).await;
    assert_eq!(state(&st), "timed_out");
    assert_eq!(
        st["signal"], "SIGKILL",
        "TERM was ignored, so KILL followed after the grace period"
    );
}

#[tokio::test]
async fn a_grandchild_holding_the_pipe_after_the_leader_exits_is_killed_and_the_execution_ends() {
    let s = Server::spawn(
        "lingering",
        json!({"workflows": [wf("bg", &["grandchild", "exit", "0"])]}),
    )
    .await;
    let id = s.start_wf("bg", json!({})).await;
    let grandchild = grandchild_pid(&s, &id).await;
    let st = s.wait_final(&id).await;
    assert_eq!(state(&st), "succeeded", "the leader's exit status decides");
    assert_eq!(st["exit_code"], 0);
    assert!(!alive(grandchild), "the straggler in the group was killed");
    assert!(st["output"].get("held_open").is_none(), "no stream was held open");
}

#[tokio::test]
async fn a_setsid_escaped_grandchild_holding_the_pipe_cannot_keep_the_execution_running() {
    let s = Server::spawn(
        "escaped",
        json!({"workflows": [wf("escape", &["setsid-grandchild", "exit", "0"]), wf("escape_noenv", &["setsid-grandchild-noenv", "exit", "7"])]}),
    )
    .await;
    let id = s.start_wf("escape", json!({})).await;
    let grandchild = grandchild_pid(&s, &id).await;
    let st = s.wait_final(&id).await;
    assert_eq!(state(&st), "succeeded");
    assert!(
        !alive(grandchild),
        "found by its execution marker although it left the group"
    );

    // One that also cleared its environment is found as the holder of the pipe.
    let id = s.start_wf("escape_noenv", json!({})).await;
    let grandchild = grandchild_pid(&s, &id).await;
    let st = s.wait_final(&id).await;
    assert_eq!(state(&st), "failed");
    assert_eq!(st["exit_code"], 7, "the execution ends with the leader's exit status");
    assert!(!alive(grandchild));
}

#[tokio::test]
async fn a_process_that_was_only_handed_the_output_is_not_killed_and_the_stream_is_reported_held_open() {
    use std::io::BufRead;
    let dir = TestDir::new("fd-keeper");
    let sock = dir.join("keeper.sock");
    // A daemon started before the workflow (as an ssh ControlMaster is), to which the workflow hands its stdout.
    let mut keeper = std::process::Command::new(crate::util::fake())
        .args(["keep-fds", sock.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufReader::new(keeper.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready, "listening\n");
    let s = Server::spawn(
        "fd-keeper",
        json!({"workflows": [wf("handoff", &["out", "hello", "send-stdout", sock.to_str().unwrap(), "exit", "0"])]}),
    )
    .await;
    let id = s.start_wf("handoff", json!({})).await;
    let st = s.wait_final(&id).await;
    let keeper_alive = alive(keeper.id()) && keeper.try_wait().unwrap().is_none();
    let _ = keeper.kill();
    let _ = keeper.wait();
    assert!(
        keeper_alive,
        "a process that is not the workflow's was not killed: {st}"
    );
    assert_eq!(state(&st), "succeeded", "the execution ended all the same");
    assert_eq!(st["output"]["held_open"], json!(["stdout"]), "{st}");
    let stderr = s.stderr();
    assert!(
        stderr.contains("not the workflow's") && stderr.contains(&keeper.id().to_string()),
        "the server says who holds the stream and that it was left alone: {stderr}"
    );
}

#[tokio::test]
async fn cancel_reaches_descendants_that_left_the_group() {
    let s = Server::spawn(
        "cancel-escaped",
        json!({"workflows": [wf("daemon", &["setsid-grandchild", "hold"])]}),
    )
    .await;
    let id = s.start_wf("daemon", json!({})).await;
    let grandchild = grandchild_pid(&s, &id).await;
    let st = s
        .ok("cancel_execution", json!({"execution_id": id, "grace_ms": 1000}))
        .await;
    assert_eq!(state(&st), "cancelled");
    assert!(!alive(grandchild), "the escaped descendant is gone when cancel returns");
}

#[tokio::test]
async fn queued_executions_respect_global_and_per_workflow_limits_and_can_be_cancelled() {
    let dir = TestDir::new("queue-gates");
    let gates: Vec<_> = (0..3).map(|i| dir.fifo(&format!("gate{i}"))).collect();
    let gated = |name: &str, gate: &std::path::Path| wf(name, &["wait-fifo", gate.to_str().unwrap(), "out", "done"]);
    let mut one_at_a_time = gated("solo", &gates[1]);
    one_at_a_time["max_concurrent"] = json!(1);
    let s = Server::start(
        "queue",
        json!({"limits": {"max_concurrent": 2}, "workflows": [gated("a", &gates[0]), one_at_a_time, wf("quick", &["out", "hi"])]}),
    )
    .await;
    let a = s.start_wf("a", json!({})).await;
    let solo1 = s.start_wf("solo", json!({})).await;
    let solo2 = s.ok("execute_workflow", json!({"workflow": "solo"})).await;
    let quick = s.ok("execute_workflow", json!({"workflow": "quick"})).await;
    assert_eq!(state(&solo2), "queued", "the global limit of 2 is reached");
    assert_eq!(solo2["queue_position"], 1);
    assert_eq!(solo2["pid"], Value::Null);
    assert_eq!(state(&quick), "queued");
    assert_eq!(quick["queue_position"], 2);
    let listed = s.ok("list_executions", json!({"state": "running"})).await;
    assert_eq!(listed["total"], 2);

    let solo2_id = solo2["execution_id"].as_str().unwrap().to_owned();
    let cancelled = s.ok("cancel_execution", json!({"execution_id": solo2_id})).await;
    assert_eq!(state(&cancelled), "cancelled", "a queued execution can be cancelled");
    assert_eq!(cancelled["started_at"], Value::Null, "and it never started");
    let quick_id = quick["execution_id"].as_str().unwrap().to_owned();
    assert_eq!(
        s.ok("get_status", json!({"execution_id": quick_id})).await["queue_position"],
        1
    );

    // A slot frees up: the queued one starts and finishes.
    let gate = gates[0].clone();
    tokio::task::spawn_blocking(move || release_fifo(&gate)).await.unwrap();
    assert_eq!(state(&s.wait_final(&a).await), "succeeded");
    assert_eq!(state(&s.wait_final(&quick_id).await), "succeeded");
    let gate = gates[1].clone();
    tokio::task::spawn_blocking(move || release_fifo(&gate)).await.unwrap();
    assert_eq!(state(&s.wait_final(&solo1).await), "succeeded");

    // Per-workflow limit: a second "solo" waits although global slots are free.
    let mut solo_gate = gated("solo2", &gates[2]);
    solo_gate["max_concurrent"] = json!(1);
    let s = Server::start("queue-per-workflow", json!({"workflows": [solo_gate]})).await;
    let first = s.start_wf("solo2", json!({})).await;
    let second = s.ok("execute_workflow", json!({"workflow": "solo2"})).await;
    assert_eq!(state(&second), "queued");
    let gate = gates[2].clone();
    tokio::task::spawn_blocking(move || release_fifo(&gate)).await.unwrap();
    assert_eq!(state(&s.wait_final(&first).await), "succeeded");
    let second_id = second["execution_id"].as_str().unwrap().to_owned();
    // The second waits on the same gate, which is now closed: cancel it while it runs.
    let st = s
        .ok("cancel_execution", json!({"execution_id": second_id, "grace_ms": 1000}))
        .await;
    assert_eq!(state(&st), "cancelled");
    assert!(st["started_at"].is_string(), "it started once the first finished");
}

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_existing_execution() {
    let s = Server::start(
        "idempotent",
        json!({"workflows": [wf("w", &["out", "x"]), wf("v", &["out", "y"])]}),
    )
    .await;
    let call = |workflow: &str, key: &str| {
        let s = &s;
        let args = json!({"workflow": workflow, "idempotency_key": key});
        async move {
            s.ok("execute_workflow", args).await["execution_id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let first = call("w", "deploy-42").await;
    assert_eq!(call("w", "deploy-42").await, first);
    assert_ne!(call("w", "deploy-43").await, first);
    assert_ne!(call("v", "deploy-42").await, first, "keys are per workflow");
    assert_eq!(s.ok("list_executions", json!({"workflow": "w"})).await["total"], 2);
}

/// Issue 15, item 8: the queue had no cap (6000 queued executions made the end of input take 13.6 s).
#[tokio::test]
async fn past_the_queue_cap_execute_workflow_refuses_and_says_how_many_wait() {
    let dir = TestDir::new("queue-cap");
    let gate = dir.fifo("gate");
    let s = Server::start(
        "queue-cap",
        json!({"limits": {"max_concurrent": 1, "max_queued": 2},
               "workflows": [wf("held", &["wait-fifo", gate.to_str().unwrap()])]}),
    )
    .await;
    let running = s.start_wf("held", json!({})).await;
    let mut queued = Vec::new();
    for _ in 0..2 {
        let st = s.ok("execute_workflow", json!({"workflow": "held"})).await;
        assert_eq!(state(&st), "queued");
        queued.push(st["execution_id"].as_str().unwrap().to_owned());
    }
    let refused = s.err("execute_workflow", json!({"workflow": "held"})).await;
    assert!(
        refused.contains("2 are queued and limits.max_queued is 2") && refused.contains("cancel_execution"),
        "{refused}"
    );
    let listed = s.ok("list_executions", json!({})).await;
    assert_eq!(listed["total"], 3, "nothing is kept of a refused call: {listed}");
    // A place in the queue frees: a new one waits again.
    s.ok("cancel_execution", json!({"execution_id": queued[0]})).await;
    let st = s.ok("execute_workflow", json!({"workflow": "held"})).await;
    assert_eq!(state(&st), "queued");
    s.ok("cancel_execution", json!({"execution_id": running, "grace_ms": 0}))
        .await;
}

/// Regression (issue 15, item 11): a queued successor was launched before its predecessor's end was stamped,
/// so with one slot the next execution started 1-3 ms before the previous one finished.
#[tokio::test]
async fn with_one_slot_each_execution_starts_after_the_previous_one_finished() {
    let s = Server::start(
        "one-slot-chain",
        json!({"limits": {"max_concurrent": 1}, "workflows": [wf("w", &["out", "x"])]}),
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(s.start_wf("w", json!({})).await);
    }
    let mut runs = Vec::new();
    for id in &ids {
        let st = s.wait_final(id).await;
        assert_eq!(state(&st), "succeeded", "{st}");
        let at = |field: &str| st[field].as_str().unwrap().to_owned();
        runs.push((at("started_at"), at("finished_at")));
    }
    // RFC 3339 in UTC with milliseconds: the strings order as the times do.
    runs.sort();
    for pair in runs.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "an execution started at {} before the one holding the slot finished at {}",
            pair[1].0,
            pair[0].1
        );
    }
}

/// Calls `execute_workflow` for `w` with `key` from 8 tasks at once; returns every answer's execution id.
async fn eight_calls_with_one_key(servers: &[std::sync::Arc<Server>], key: &str) -> Vec<String> {
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..8 {
        let s = servers[i % servers.len()].clone();
        let args = json!({"workflow": "w", "idempotency_key": key});
        calls.spawn(async move {
            s.ok("execute_workflow", args).await["execution_id"]
                .as_str()
                .unwrap()
                .to_owned()
        });
    }
    calls.join_all().await
}

/// Regression (issue 15, item 6): the key was looked up, the table unlocked while the execution was prepared,
/// and the execution added without looking again, so concurrent calls with one key each started their own.
#[tokio::test]
async fn concurrent_calls_with_one_idempotency_key_start_one_execution() {
    let config = json!({"workflows": [wf("w", &["out", "x"])]});
    for ephemeral in [true, false] {
        let s = if ephemeral {
            Server::builder("idempotent-race", config.clone())
                .ephemeral()
                .start()
                .await
        } else {
            Server::start("idempotent-race", config.clone()).await
        };
        let s = std::sync::Arc::new(s);
        for round in 0..3 {
            let ids = eight_calls_with_one_key(std::slice::from_ref(&s), &format!("key-{round}")).await;
            assert!(ids.iter().all(|id| *id == ids[0]), "ephemeral {ephemeral}: {ids:?}");
        }
        let listed = s.ok("list_executions", json!({"workflow": "w"})).await;
        assert_eq!(
            listed["total"], 3,
            "ephemeral {ephemeral}: one execution per key: {listed}"
        );
    }

    // Two server processes on one state directory: the history's unique key decides.
    let dir = TestDir::new("idempotent-race-shared");
    let state_dir = dir.join("state");
    let a = std::sync::Arc::new(
        Server::builder("idempotent-race-a", config.clone())
            .state_dir(&state_dir)
            .spawn()
            .await,
    );
    let b = std::sync::Arc::new(
        Server::builder("idempotent-race-b", config)
            .state_dir(&state_dir)
            .spawn()
            .await,
    );
    let ids = eight_calls_with_one_key(&[a.clone(), b.clone()], "shared").await;
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    for s in [&a, &b] {
        assert_eq!(s.ok("list_executions", json!({"workflow": "w"})).await["total"], 1);
    }
}

#[tokio::test]
async fn spawn_failures_are_failed_to_start_and_the_server_stays_healthy() {
    let dir = TestDir::new("spawn-failures");
    let not_exec = dir.join("not-executable.sh");
    std::fs::write(&not_exec, "#!/bin/sh\necho hi\n").unwrap();
    let bad_interpreter = dir.join("bad-interpreter.sh");
    std::fs::write(&bad_interpreter, "#!/no/such/interpreter\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bad_interpreter, std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = Server::start(
        "spawn-failures",
        json!({"workflows": [
            {"name": "missing", "command": ["no-such-command-anywhere"]},
            {"name": "noexec", "command": [not_exec]},
            {"name": "badcwd", "command": ["true"], "cwd": "/no/such/dir"},
            {"name": "interp", "command": [bad_interpreter]},
            wf("fine", &["out", "ok"])
        ]}),
    )
    .await;
    for (name, expected) in [
        ("missing", "command \"no-such-command-anywhere\" was not found in PATH"),
        ("noexec", "is not executable (permission denied)"),
        ("badcwd", "working directory /no/such/dir does not exist"),
        ("interp", "check the interpreter on its #! line"),
    ] {
        let st = s.ok("execute_workflow", json!({"workflow": name})).await;
        assert_eq!(state(&st), "failed_to_start", "{name}: {st}");
        assert!(
            st["error"].as_str().unwrap().contains(expected),
            "{name}: {}",
            st["error"]
        );
        assert!(st["finished_at"].is_string());
    }
    let st = s
        .ok("execute_workflow", json!({"workflow": "fine", "wait_ms": 60000}))
        .await;
    assert_eq!(state(&st), "succeeded", "the server stays healthy");
}

#[tokio::test]
async fn running_out_of_file_descriptors_is_failed_to_start_not_a_crash() {
    let config = json!({"workflows": [wf("w", &["out", "x"])]});
    // A server's descriptors when idle: the next free number is where a workflow's pipes would go.
    let mut probe = RawServer::start("emfile-probe", config.clone()).await;
    let highest = std::fs::read_dir(format!("/proc/{}/fd", probe.pid()))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .filter(|fd| *fd < 200)
        .max()
        .unwrap();
    probe.close_stdin();
    probe.wait_exit().await;
    // One free descriptor: enough to serve, too few for a workflow's two pipes.
    let mut s = RawServer::builder("emfile", config).fd_limit(highest + 2).start().await;
    let st = s
        .call_ok("execute_workflow", json!({"workflow": "w", "wait_ms": 60000}))
        .await;
    assert_eq!(state(&st), "failed_to_start", "{st}");
    assert!(
        st["error"].as_str().unwrap().contains("pen files"),
        "the OS error is reported: {}",
        st["error"]
    );
    let listed = s.call_ok("list_workflows", json!({})).await;
    assert_eq!(listed["workflows"][0]["name"], "w", "the server still answers");
    let again = s.call_ok("execute_workflow", json!({"workflow": "w"})).await;
    assert_eq!(state(&again), "failed_to_start", "and keeps answering the same way");
    s.close_stdin();
    s.wait_exit().await;
}

#[tokio::test]
async fn params_can_never_set_environment_variables_the_manifest_does_not_map() {
    let mut entry = wf(
        "env",
        &[
            "env",
            "LOG_LEVEL",
            "env",
            "PATH",
            "env",
            "WORKFLOW_MCP_EXECUTION_ID",
            "env",
            "LD_PRELOAD",
        ],
    );
    // A mapping to LD_PRELOAD, PATH, BASH_ENV... is refused when the config loads (tests/catalog.rs).
    entry["params"] = json!([
        {"name": "level", "type": "string", "env": "LOG_LEVEL"},
        {"name": "marker", "type": "string", "env": "WORKFLOW_MCP_EXECUTION_ID"}
    ]);
    let s = Server::start("env-injection", json!({"workflows": [entry]})).await;
    for name in ["LD_PRELOAD", "PATH", "BASH_ENV", "LD_LIBRARY_PATH"] {
        let err = s
            .err(
                "execute_workflow",
                json!({"workflow": "env", "params": {name: "/tmp/evil.so"}}),
            )
            .await;
        assert!(err.starts_with(&format!("unknown param \"{name}\"")), "{err}");
    }
    // Mapped explicitly by the manifest, it is allowed — except the execution marker, which is the engine's.
    let id = s.start_wf("env", json!({"level": "debug", "marker": "forged"})).await;
    let st = s.wait_final(&id).await;
    let page = s.ok("get_logs", json!({"execution_id": id, "stream": "stdout"})).await;
    let records = records(&page["lines"]);
    let lines: Vec<&str> = records.iter().map(|l| l["text"].as_str().unwrap()).collect();
    assert_eq!(lines[0], "LOG_LEVEL=debug");
    assert!(lines[1].starts_with("PATH=/"));
    assert_eq!(
        lines[2],
        format!("WORKFLOW_MCP_EXECUTION_ID={}", st["execution_id"].as_str().unwrap())
    );
    assert_eq!(lines[3], "LD_PRELOAD is unset");
}

#[tokio::test]
async fn huge_and_malformed_requests_never_take_the_server_down() {
    let mut s = RawServer::start("huge", json!({"workflows": [wf("w", &["out", "x"])]})).await;
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"name":"list_workflows","arguments":{{"x":"{}"}}}}}}"#,
        "a".repeat(5 << 20)
    );
    s.send_line(&huge).await;
    let r = s.recv().await.unwrap();
    assert_eq!(r["error"]["code"], -32600, "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("larger than"), "{r}");
    s.send_line(&format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)))
        .await;
    assert_eq!(s.recv().await.unwrap()["error"]["code"], -32700);
    let many: serde_json::Map<String, Value> = (0..1000).map(|i| (format!("p{i}"), json!(i))).collect();
    let id = s
        .call("execute_workflow", json!({"workflow": "w", "params": many}))
        .await;
    let r = s.response(id).await;
    assert_eq!(r["result"]["isError"], true);
    assert!(
        r["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("a call takes at most 128"),
        "{r}"
    );
    let id = s
        .call(
            "execute_workflow",
            json!({"workflow": "w", "params": {"x": "b".repeat(100_000)}}),
        )
        .await;
    assert_eq!(s.response(id).await["result"]["isError"], true);
    let st = s
        .call_ok("execute_workflow", json!({"workflow": "w", "wait_ms": 60000}))
        .await;
    assert_eq!(state(&st), "succeeded", "still serving");
    s.close_stdin();
    s.wait_exit().await;
}

#[tokio::test]
async fn a_thousand_short_executions_leave_no_zombie_and_no_leaked_descriptor() {
    let mut s = RawServer::start(
        "thousand",
        json!({"limits": {"retain_executions": 50}, "workflows": [wf("w", &["out", "x"])]}),
    )
    .await;
    // Descriptors, leaving out the server's own short-lived reads of /proc (its orphan reaper may be mid-scan).
    let fds = |pid: u32| {
        let mut targets: Vec<std::path::PathBuf> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .filter(|t| !t.starts_with("/proc/"))
            .collect();
        targets.sort();
        targets
    };
    s.call_ok("execute_workflow", json!({"workflow": "w", "wait_ms": 60000}))
        .await;
    let before = fds(s.pid());
    for _ in 0..1000 {
        let st = s
            .call_ok("execute_workflow", json!({"workflow": "w", "wait_ms": 60000}))
            .await;
        assert_eq!(state(&st), "succeeded");
    }
    // The last execution's retention pass may still hold a folder open on a supervisor thread: a leak never
    // goes back to where it started, a pass in progress does, so look again after each round trip (bounded).
    let mut after = fds(s.pid());
    for _ in 0..200 {
        if after.len() <= before.len() {
            break;
        }
        s.call_ok("list_workflows", json!({})).await;
        after = fds(s.pid());
    }
    assert!(
        after.len() <= before.len(),
        "descriptors are back where they started: before {before:?}, after {after:?}"
    );
    let me = s.pid();
    let zombies: Vec<u32> = workflow_mcp::proc::scan::processes()
        .into_iter()
        .filter(|p| p.ppid == me && p.zombie)
        .map(|p| p.pid)
        .collect();
    assert_eq!(zombies, Vec::<u32>::new(), "no zombie children");
    let listed = s.call_ok("list_executions", json!({"limit": 1000})).await;
    assert_eq!(
        listed["retained"], 50,
        "finished executions beyond the retention rule are forgotten"
    );
    assert!(listed["retention"].as_str().unwrap().contains("50"));
    s.close_stdin();
    s.wait_exit().await;
}

#[tokio::test]
async fn a_sigkilled_server_takes_its_workflows_with_it() {
    let s = Server::spawn(
        "sigkill",
        json!({"workflows": [wf("tree", &["grandchild", "setsid-grandchild", "hold"])]}),
    )
    .await;
    let id = s.start_wf("tree", json!({})).await;
    let all = s.grandchildren(&id, 2).await;
    let leader = s.ok("get_status", json!({"execution_id": id})).await["pid"]
        .as_u64()
        .unwrap() as u32;
    // The watchdog: the server's child that runs in its own session.
    let watchdog = workflow_mcp::proc::scan::processes()
        .into_iter()
        .find(|p| p.ppid == s.pid() && p.pid != leader && !p.zombie)
        .expect("the watchdog process")
        .pid;
    let cmdline = std::fs::read(format!("/proc/{watchdog}/cmdline")).unwrap();
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()).collect();
    assert_eq!(
        args.get(1).copied(),
        Some(&b"__watchdog"[..]),
        "the watchdog is a fresh exec of the binary, not a fork of the server: {:?}",
        String::from_utf8_lossy(&cmdline)
    );
    // SAFETY: SIGKILL to the server we started.
    unsafe { libc::kill(s.pid() as i32, libc::SIGKILL) };
    assert!(exited(watchdog).await, "the watchdog finished");
    assert!(!alive(leader), "the workflow died with the server");
    for pid in all {
        assert!(
            !alive(pid),
            "descendant {pid} died with the server, in the group or escaped"
        );
    }
}

#[tokio::test]
async fn a_client_that_stops_reading_makes_the_server_stop_everything() {
    let mut s = RawServer::start(
        "deaf-client",
        // The lines come before the grandchild's line on the same stream: once that line is read, so are they, and
        // the answers below are big enough to fill the pipe.
        // A client is taken as gone after 2 s without reading (30 s by default).
        json!({"limits": {"client_stall_ms": 2000},
               "workflows": [wf("tree", &["lines", "20000", "grandchild", "hold"])]}),
    )
    .await;
    let st = s.call_ok("execute_workflow", json!({"workflow": "tree"})).await;
    let exec = st["execution_id"].as_str().unwrap().to_owned();
    let leader = st["pid"].as_u64().unwrap() as u32;
    // From its seq on: a first scan over thousands of lines could miss the line arriving meanwhile.
    let r = s
        .call_ok(
            "get_logs",
            json!({"execution_id": exec, "since_seq": 20000, "grep": "^grandchild", "wait_ms": 60000}),
        )
        .await;
    let grandchild: u32 = records(&r["lines"])[0]["text"].as_str().unwrap()[11..].parse().unwrap();
    // From here on the client never reads: big answers fill the pipe and the server's writes stall.
    for _ in 0..20 {
        s.call(
            "get_logs",
            json!({"execution_id": exec, "max_lines": 10000, "max_bytes": 1048576}),
        )
        .await;
    }
    s.wait_exit().await;
    assert!(!alive(leader) && !alive(grandchild), "every workflow process is gone");
}
