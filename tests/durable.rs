//! Durable history: what survives a restart, two servers on one state directory, retention and disk caps, and
//! the faults (a server SIGKILLed mid-write, a full disk, a corrupt database, an unusable state directory).
//! Each test runs real server processes on a state directory of its own.

use std::path::Path;

use serde_json::{Value, json};

use crate::util::{
    Server, TestDir, Tmpfs, exited, records, refused_start, release_fifo, server_bin, state, wf, write_config,
};

fn kill9(pid: u32) {
    // SAFETY: SIGKILL to a server this test started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

/// Bytes under a folder.
fn du(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                du(&p)
            } else {
                e.metadata().map_or(0, |m| m.len())
            }
        })
        .sum()
}

#[tokio::test]
async fn a_restarted_server_lists_reads_and_follows_what_the_last_one_ran() {
    let dir = TestDir::new("restart");
    let state_dir = dir.join("state");
    let hold = dir.fifo("hold");
    let config = json!({"workflows": [
        wf("done", &["lines", "1000"]),
        wf("broken", &["out", "compiling", "err", "error: it broke", "exit", "3"]),
        wf("writer", &["out", "before the crash", "yes"]),
        wf("held", &["out", "waiting", "wait-fifo", hold.to_str().unwrap()]),
    ]});
    let a = Server::builder("restart-a", config.clone())
        .state_dir(&state_dir)
        .spawn()
        .await;
    let done = a.start_wf("done", json!({})).await;
    let broken = a.start_wf("broken", json!({})).await;
    a.wait_final(&done).await;
    a.wait_final(&broken).await;
    let held = a
        .ok(
            "execute_workflow",
            json!({"workflow": "held", "idempotency_key": "deploy-7"}),
        )
        .await["execution_id"]
        .as_str()
        .unwrap()
        .to_owned();
    a.wait_line(&held, "^waiting").await;
    let writer = a.start_wf("writer", json!({})).await;
    a.wait_line(&writer, "^y$").await;
    let writer_pid = a.ok("get_status", json!({"execution_id": writer})).await["pid"]
        .as_u64()
        .unwrap() as u32;
    // Killed while `yes` floods its log: the next server must find a consistent database and log.
    kill9(a.pid());
    assert!(
        exited(writer_pid).await,
        "the workflow {writer_pid} died with its server"
    );

    let b = Server::builder("restart-b", config).state_dir(&state_dir).spawn().await;
    let list = b.ok("list_executions", json!({})).await;
    assert_eq!(list["total"], 4, "{list}");
    let st = b.ok("get_status", json!({"execution_id": done})).await;
    assert_eq!((state(&st), st["exit_code"].as_i64()), ("succeeded", Some(0)));
    let lines = b.all_lines(&done, 10_000).await;
    assert_eq!(lines.len(), 1000, "every line survives the restart");
    assert!(
        lines
            .iter()
            .enumerate()
            .all(|(i, l)| l["seq"] == i && l["text"] == format!("out {i}"))
    );
    let st = b.ok("get_status", json!({"execution_id": broken})).await;
    assert_eq!(state(&st), "failed");
    assert_eq!(
        records(&st["evidence"]["lines"])[0]["text"],
        "error: it broke",
        "the evidence survives"
    );

    for id in [&held, &writer] {
        let st = b.ok("get_status", json!({"execution_id": id})).await;
        assert_eq!(state(&st), "lost", "its server died while it ran: {st}");
        assert!(st["error"].as_str().unwrap().contains("ended while it ran"), "{st}");
    }
    let first = b.ok("get_logs", json!({"execution_id": held})).await;
    assert_eq!(
        records(&first["lines"])[0]["text"],
        "waiting",
        "a lost execution's lines are kept"
    );
    // What `yes` wrote up to the kill reads back whole: every record is a complete "y".
    let page = b
        .ok(
            "get_logs",
            json!({"execution_id": writer, "tail": 5000, "max_lines": 5000, "max_bytes": 1048576}),
        )
        .await;
    assert_eq!(page["done"], true);
    // (Under load `yes` may have written fewer than 5000 lines: its first line is then in the page too.)
    assert!(
        records(&page["lines"])
            .iter()
            .all(|l| l["text"] == "y" || (l["seq"] == 0 && l["text"] == "before the crash")),
        "no torn record"
    );

    let again = b
        .ok(
            "execute_workflow",
            json!({"workflow": "held", "idempotency_key": "deploy-7"}),
        )
        .await;
    assert_eq!(
        again["execution_id"],
        held.as_str(),
        "an idempotency key survives the restart"
    );
}

/// Issue 15, item 8: recovery looked for processes once per record (a full /proc scan each, queued ones too).
/// Now queued records are marked lost without a look and the started ones' processes are found in one pass:
/// what its dead server and watchdog left running (the leader and a grandchild that escaped with setsid) is
/// still killed, and everything is lost.
#[tokio::test]
async fn recovery_kills_what_a_dead_server_left_running_and_marks_its_queue_lost() {
    let dir = TestDir::new("recover-queue");
    let state_dir = dir.join("state");
    let config = json!({"limits": {"max_concurrent": 1, "max_queued": 500},
                        "workflows": [wf("tree", &["setsid-grandchild", "hold"])]});
    let a = Server::builder("recover-queue-a", config.clone())
        .state_dir(&state_dir)
        .spawn()
        .await;
    let running = a.start_wf("tree", json!({})).await;
    let grandchild: u32 = a.wait_line(&running, "^grandchild ").await[11..].parse().unwrap();
    let leader = a.ok("get_status", json!({"execution_id": running})).await["pid"]
        .as_u64()
        .unwrap() as u32;
    for _ in 0..300 {
        assert_eq!(
            state(&a.ok("execute_workflow", json!({"workflow": "tree"})).await),
            "queued"
        );
    }
    // Its watchdog first, so nothing cleans up after the server: that is left to the next one.
    let watchdog = workflow_mcp::proc::scan::processes()
        .into_iter()
        .find(|p| p.ppid == a.pid() && p.pid != leader && !p.zombie)
        .expect("the watchdog process")
        .pid;
    kill9(watchdog);
    assert!(exited(watchdog).await);
    kill9(a.pid());
    assert!(exited(a.pid()).await);
    assert!(
        crate::util::alive(leader) && crate::util::alive(grandchild),
        "left running"
    );

    let b = Server::builder("recover-queue-b", config)
        .state_dir(&state_dir)
        .spawn()
        .await;
    assert!(exited(leader).await, "the leader is killed");
    assert!(exited(grandchild).await, "the escaped grandchild is killed");
    let lost = b.ok("list_executions", json!({"state": "lost", "limit": 1})).await;
    assert_eq!(lost["total"], 301, "{lost}");
    let st = b.ok("get_status", json!({"execution_id": running})).await;
    assert!(st["error"].as_str().unwrap().contains("ended while it ran"), "{st}");
}

#[tokio::test]
async fn two_servers_on_one_state_directory_follow_and_stop_each_others_executions() {
    let dir = TestDir::new("two");
    let state_dir = dir.join("state");
    let gate = dir.fifo("gate");
    let config = json!({"workflows": [
        wf("slow", &["out", "first", "wait-fifo", gate.to_str().unwrap(), "out", "second", "hold"]),
        wf("quick", &["out", "q"]),
    ]});
    let a = Server::builder("two-a", config.clone())
        .state_dir(&state_dir)
        .spawn()
        .await;
    let b = Server::builder("two-b", config).state_dir(&state_dir).spawn().await;
    let id = a.start_wf("slow", json!({})).await;
    a.wait_line(&id, "^first").await;

    let seen = b.ok("get_status", json!({"execution_id": id})).await;
    assert_eq!(state(&seen), "running", "B sees A's execution");
    assert!(
        b.ok("list_executions", json!({})).await["executions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["execution_id"] == id.as_str())
    );
    // B follows it: the next line reaches B through the log file.
    let gate2 = gate.clone();
    let release = tokio::task::spawn_blocking(move || release_fifo(&gate2));
    assert_eq!(b.wait_line(&id, "^second").await, "second");
    release.await.unwrap();

    let cancelled = b
        .ok("cancel_execution", json!({"execution_id": id, "grace_ms": 2000}))
        .await;
    assert_eq!(state(&cancelled), "cancelled", "B stops A's execution: {cancelled}");
    assert_eq!(
        state(&a.ok("get_status", json!({"execution_id": id})).await),
        "cancelled"
    );

    // Both write at once: no update is lost.
    let (mut ids_a, mut ids_b) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let (x, y) = tokio::join!(a.start_wf("quick", json!({})), b.start_wf("quick", json!({})));
        ids_a.push(x);
        ids_b.push(y);
    }
    for id in ids_a.iter().chain(&ids_b) {
        let (from_a, from_b) = (a.wait_final(id).await, b.wait_final(id).await);
        assert_eq!((state(&from_a), state(&from_b)), ("succeeded", "succeeded"));
    }
    let total = |l: Value| l["total"].as_u64().unwrap();
    assert_eq!(total(a.ok("list_executions", json!({})).await), 41);
    assert_eq!(total(b.ok("list_executions", json!({"workflow": "quick"})).await), 40);
}

/// A client that hears each progress notification (a wait sends its first once it is waiting).
#[derive(Clone)]
struct ProgressHeard(tokio::sync::mpsc::UnboundedSender<()>);

impl rmcp::ClientHandler for ProgressHeard {
    async fn on_progress(
        &self,
        _: rmcp::model::ProgressNotificationParam,
        _: rmcp::service::NotificationContext<rmcp::RoleClient>,
    ) {
        let _ = self.0.send(());
    }
}

/// A line one server's workflow writes wakes a follower in another server process through its log files (file
/// change notification), not a look at the history on a timer: the follower says so in its log.
#[tokio::test]
async fn a_follower_in_another_server_is_woken_by_a_file_change_not_a_look() {
    let dir = TestDir::new("woken");
    let state_dir = dir.join("state");
    let gate = dir.fifo("gate");
    let config = json!({"workflows": [
        wf("slow", &["out", "first", "wait-fifo", gate.to_str().unwrap(), "out", "second", "hold"]),
    ]});
    let a = Server::builder("woken-a", config.clone())
        .state_dir(&state_dir)
        .spawn()
        .await;
    let (heard, mut progress) = tokio::sync::mpsc::unbounded_channel();
    let b = Server::builder("woken-b", config)
        .state_dir(&state_dir)
        .handler(ProgressHeard(heard))
        .spawn()
        .await;
    let id = a.start_wf("slow", json!({})).await;
    a.wait_line(&id, "^first").await;
    while progress.try_recv().is_ok() {}
    let token = rmcp::model::ProgressToken(rmcp::model::NumberOrString::String("follow".into()));
    // B waits for the line after "first"; the workflow writes it once B says it is waiting.
    let wait = b.call_with(
        "get_logs",
        json!({"execution_id": id, "since_seq": 1, "wait_ms": 50000}),
        Some(rmcp::model::RequestMetaObject::with_progress_token(token)),
    );
    let release = async {
        progress.recv().await.expect("B reports its wait");
        tokio::task::spawn_blocking(move || release_fifo(&gate)).await.unwrap();
    };
    let (page, ()) = tokio::join!(wait, release);
    assert!(page.text.contains("1 second"), "{}", page.text);
    let woken = b
        .stderr()
        .lines()
        .any(|l| l.contains("a file change woke the follower of a stored execution") && l.contains(&id));
    assert!(woken, "B's follower was not woken by a file change:\n{}", b.stderr());
    a.ok("cancel_execution", json!({"execution_id": id})).await;
}

/// A stop another server asks for is acted on by the owner when the history is written, not at its next tick
/// (a queued execution has no process the asker could signal itself: only its owner can stop it). The owner's
/// tick may still come first now and then: of three stops, at least one is heard when written (with the tick
/// alone, none is).
#[tokio::test]
async fn an_owner_acts_on_a_stop_another_server_asks_for_when_it_is_written() {
    let dir = TestDir::new("asked");
    let state_dir = dir.join("state");
    let gate = dir.fifo("gate");
    let config = json!({"limits": {"max_concurrent": 1}, "workflows": [
        wf("held", &["wait-fifo", gate.to_str().unwrap()]),
        wf("quick", &["out", "q"]),
    ]});
    let a = Server::builder("asked-a", config.clone())
        .state_dir(&state_dir)
        .spawn()
        .await;
    let b = Server::builder("asked-b", config).state_dir(&state_dir).spawn().await;
    let held = a.start_wf("held", json!({})).await;
    let mut queued = Vec::new();
    for _ in 0..3 {
        queued.push(a.start_wf("quick", json!({})).await);
    }
    for id in &queued {
        assert_eq!(state(&b.ok("get_status", json!({"execution_id": id})).await), "queued");
        let cancelled = b
            .ok("cancel_execution", json!({"execution_id": id, "grace_ms": 2000}))
            .await;
        assert_eq!(state(&cancelled), "cancelled", "{cancelled}");
    }
    let log = a.stderr();
    let heard = log.lines().any(|l| {
        l.contains("stopping an execution another process asked to stop")
            && queued.iter().any(|id| l.contains(id.as_str()))
            && l.contains("when the history was written")
    });
    assert!(heard, "A did not act on B's stops when they were written:\n{log}");
    tokio::task::spawn_blocking(move || release_fifo(&gate)).await.unwrap();
    assert_eq!(state(&a.wait_final(&held).await), "succeeded");
}

#[tokio::test]
async fn retention_forgets_the_oldest_finished_with_their_files_and_never_a_running_one() {
    let dir = TestDir::new("retain");
    let state_dir = dir.join("state");
    let hold = dir.fifo("hold");
    let config = json!({"limits": {"retain_executions": 3}, "workflows": [
        wf("quick", &["out", "q"]),
        wf("held", &["wait-fifo", hold.to_str().unwrap()]),
    ]});
    let s = Server::builder("retain", config).state_dir(&state_dir).spawn().await;
    let running = s.start_wf("held", json!({})).await;
    let mut finished = Vec::new();
    for _ in 0..6 {
        let id = s.start_wf("quick", json!({})).await;
        s.wait_final(&id).await;
        finished.push(id);
    }
    let list = s.ok("list_executions", json!({})).await;
    let ids: Vec<&str> = list["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["execution_id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&running.as_str()),
        "a running execution is never forgotten"
    );
    assert_eq!(ids.len(), 4, "the running one and the 3 newest finished: {ids:?}");
    for id in &finished[..3] {
        assert!(!ids.contains(&id.as_str()));
        let left = state_dir.join("logs").join(id);
        assert!(
            !left.exists(),
            "its log files went with it: {:?}",
            std::fs::read_dir(&left).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
        );
    }
    assert!(list["retention"].as_str().unwrap().contains("3"), "{list}");
    release_fifo(&hold);
}

#[tokio::test]
async fn a_log_larger_than_memory_reads_the_same_from_its_server_and_from_another() {
    let dir = TestDir::new("spill");
    let state_dir = dir.join("state");
    // ~14 MB of text and index: past the 8 MiB a history keeps in memory, so the middle is read from its file.
    let config = json!({"workflows": [wf("big", &[
        "lines", "1000000",
        "err-lines", "3",
        "long-line", "140000",
        "out", "\u{1b}[31mred\u{1b}[0m",
        "no-newline", "the end",
    ])]});
    let pages = [
        json!({"since_seq": 0, "max_lines": 2}),
        json!({"since_seq": 500_000, "max_lines": 3, "timestamps": true}),
        // (The two streams are read by two threads: only the order within one is fixed.)
        json!({"tail": 5, "stream": "stdout", "max_lines": 5, "max_bytes": 1_048_576}),
        json!({"stream": "stderr", "max_lines": 10}),
        json!({"grep": "^err ", "max_lines": 10}),
    ];
    let read_all = async |s: &Server, id: &str| {
        let mut got = Vec::new();
        for p in &pages {
            let mut args = p.clone();
            args["execution_id"] = json!(id);
            got.push(s.ok("get_logs", args).await["lines"].clone());
        }
        got
    };
    let a = Server::builder("spill-a", config.clone())
        .state_dir(&state_dir)
        .spawn()
        .await;
    let id = a.start_wf("big", json!({})).await;
    let st = a.wait_final(&id).await;
    assert_eq!(state(&st), "succeeded");
    assert!(st["output"].get("dropped_lines").is_none(), "nothing is lost: {st}");
    let from_owner = read_all(&a, &id).await;
    a.client.cancel().await.ok();
    let b = Server::builder("spill-b", config).state_dir(&state_dir).spawn().await;
    let from_files = read_all(&b, &id).await;
    assert_eq!(
        from_files, from_owner,
        "another server reads the files as the one that wrote them"
    );

    let mid = records(&from_owner[1]);
    let mid: Vec<(u64, &str)> = mid
        .iter()
        .map(|r| (r["seq"].as_u64().unwrap(), r["text"].as_str().unwrap()))
        .collect();
    assert_eq!(
        mid,
        [
            (500_000, "out 500000"),
            (500_001, "out 500001"),
            (500_002, "out 500002")
        ]
    );
    assert!(records(&from_owner[1])[0]["ts"].is_string(), "read times are kept");
    let tail = records(&from_owner[2]);
    let shape: Vec<(&str, bool, usize)> = tail
        .iter()
        .map(|r| {
            (
                r["stream"].as_str().unwrap(),
                r["partial"] == true,
                r["text"].as_str().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            ("stdout", true, 65_536),
            ("stdout", true, 65_536),
            ("stdout", false, 140_000 - 2 * 65_536),
            ("stdout", false, 3),
            ("stdout", false, 7),
        ],
        "the pieces of a long line, and their lengths"
    );
    assert_eq!(tail[3]["text"], "red", "an escape is rendered away");
    assert_eq!(tail[4]["text"], "the end");
    for (page, what) in [(3, "the stderr lines"), (4, "a grep over the whole log")] {
        let errs: Vec<(Value, Value)> = records(&from_files[page])
            .iter()
            .map(|r| (r["stream"].clone(), r["text"].clone()))
            .collect();
        let want: Vec<(Value, Value)> = (0..3).map(|i| (json!("stderr"), json!(format!("err {i}")))).collect();
        assert_eq!(errs, want, "{what}");
    }
}

#[tokio::test]
async fn a_log_left_running_stays_under_its_disk_cap() {
    let dir = TestDir::new("disk-cap");
    let state_dir = dir.join("state");
    let cap = 4u64 << 20;
    let config = json!({
        "limits": {"log_disk_bytes_per_execution": cap, "log_bytes_per_execution": 1048576},
        "workflows": [wf("yes", &["yes"])]
    });
    let s = Server::builder("disk-cap", config).state_dir(&state_dir).spawn().await;
    let id = s.start_wf("yes", json!({})).await;
    // Until well past the cap: three times it in lines of 2 bytes.
    loop {
        let st = s.ok("get_status", json!({"execution_id": id})).await;
        if st["output"]["stdout"]["bytes"].as_u64().unwrap() > 3 * cap {
            assert!(
                st["output"]["dropped_lines"].as_u64().unwrap() > 0,
                "the middle is dropped and counted"
            );
            break;
        }
    }
    let used = du(&state_dir.join("logs").join(&id));
    // The cap, plus at most the segment being written.
    assert!(
        used <= cap + (2 << 20),
        "the log takes {used} bytes on disk for a cap of {cap}"
    );
    let page = s.ok("get_logs", json!({"execution_id": id, "max_lines": 5})).await;
    assert_eq!(records(&page["lines"])[0]["seq"], 0, "the head is kept");
    s.ok("cancel_execution", json!({"execution_id": id, "grace_ms": 0}))
        .await;
}

#[tokio::test]
async fn a_full_disk_keeps_the_execution_going_in_memory_and_says_so() {
    let dir = TestDir::new("enospc");
    let state_dir = dir.join("state");
    std::fs::create_dir_all(state_dir.join("logs")).unwrap();
    let logs = state_dir.join("logs");
    let _tmpfs = Tmpfs::mount(&logs, "1m");
    let s = Server::builder("enospc", json!({"workflows": [wf("big", &["lines", "300000"])]}))
        .state_dir(&state_dir)
        .spawn()
        .await;
    let id = s.start_wf("big", json!({})).await;
    let st = s.wait_final(&id).await;
    assert_eq!(state(&st), "succeeded", "the execution went on: {st}");
    let error = st["output"]["disk_error"]
        .as_str()
        .expect("the status says persistence failed");
    assert!(error.contains("No space left on device"), "{error}");
    let lines = s.all_lines(&id, 10_000).await;
    assert_eq!(lines.len(), 300_000, "every line is still served from memory");
}

#[tokio::test]
async fn a_corrupt_database_is_moved_aside_and_a_fresh_one_used() {
    let dir = TestDir::new("corrupt");
    let state_dir = dir.join("state");
    std::fs::create_dir_all(&state_dir).unwrap();
    std::fs::write(
        state_dir.join("history.db"),
        b"garbage that is not SQLite, kept for the owner",
    )
    .unwrap();
    let s = Server::builder("corrupt", json!({"workflows": [wf("quick", &["out", "q"])]}))
        .state_dir(&state_dir)
        .spawn()
        .await;
    let id = s.start_wf("quick", json!({})).await;
    assert_eq!(state(&s.wait_final(&id).await), "succeeded");
    let log = s.stderr();
    assert!(
        log.contains(&state_dir.join("history.db").display().to_string()) && log.contains("moved it to"),
        "the warning names both paths:\n{log}"
    );
    let aside: Vec<_> = std::fs::read_dir(&state_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".unusable-"))
        .collect();
    assert_eq!(aside.len(), 1, "moved aside, never deleted");
    assert_eq!(
        std::fs::read(aside[0].path()).unwrap(),
        b"garbage that is not SQLite, kept for the owner"
    );
}

#[tokio::test]
async fn an_unusable_state_directory_is_a_clear_error_at_start() {
    let (dir, config) = write_config("unusable", &json!({"workflows": []}));
    let file = dir.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let bad = file.join("state");
    let stderr = refused_start(&config, &bad).await;
    assert!(
        stderr.contains(&bad.display().to_string()) && stderr.contains("--ephemeral"),
        "the error names the path and the way out: {stderr}"
    );
}

#[tokio::test]
async fn the_history_commands_show_and_follow_what_servers_run() {
    let dir = TestDir::new("cli-history");
    let state_dir = dir.join("state");
    let gate = dir.fifo("gate");
    let config = json!({"workflows": [
        // One stream only: between stdout and stderr the order is the order the pipes were read in.
        wf("fails", &["err", "working", "err", "bad news", "exit", "3"]),
        wf("gated", &["out", "started", "wait-fifo", gate.to_str().unwrap(), "out", "finished", "exit", "5"]),
    ]});
    let s = Server::builder("cli-history", config)
        .state_dir(&state_dir)
        .spawn()
        .await;
    let failed = s.start_wf("fails", json!({})).await;
    s.wait_final(&failed).await;
    let cli = |args: &[&str]| {
        let mut cmd = std::process::Command::new(server_bin());
        cmd.args(args).arg("--state-dir").arg(&state_dir);
        cmd
    };
    let history = cli(&["history"]).output().unwrap();
    let text = String::from_utf8_lossy(&history.stdout);
    assert!(text.contains(&failed) && text.contains("failed"), "{text}");
    // An id that names nothing: one sentence on stderr, exit 1.
    let said = |args: &[&str], sentence: String| {
        let out = cli(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.lines().any(|l| l == sentence), "{sentence:?} in {err}");
    };
    let unknown = "0b5e6f0e-8c2a-4a3f-9d7e-1f2a3b4c5d6e";
    said(
        &["status", unknown],
        format!("workflow-mcp: no execution {unknown} in {}", state_dir.display()),
    );
    said(
        &["logs", "zzzz"],
        format!(
            "workflow-mcp: no execution zzzz in {}; `workflow-mcp history` lists them",
            state_dir.display()
        ),
    );
    let status = cli(&["status", &failed[..8]]).output().unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("exit code 3") && text.contains("! bad news"),
        "a prefix of the id is enough: {text}"
    );
    let logs = cli(&["logs", &failed, "--follow"]).output().unwrap();
    assert_eq!(
        logs.status.code(),
        Some(3),
        "--follow exits with the execution's exit code"
    );
    assert_eq!(String::from_utf8_lossy(&logs.stdout), "! working\n! bad news\n");

    let gated = s.start_wf("gated", json!({})).await;
    s.wait_line(&gated, "^started").await;
    let follower = tokio::process::Command::from(cli(&["logs", &gated, "--follow"]))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    release_fifo(&gate);
    let out = follower.wait_with_output_owned().await;
    assert_eq!(out.0, Some(5), "it waited for the end and took its exit code");
    assert_eq!(out.1, "started\nfinished\n");
}

trait WaitOwned {
    async fn wait_with_output_owned(self) -> (Option<i32>, String);
}

impl WaitOwned for tokio::process::Child {
    async fn wait_with_output_owned(self) -> (Option<i32>, String) {
        let out = tokio::time::timeout(std::time::Duration::from_secs(60), self.wait_with_output())
            .await
            .expect("logs --follow ended")
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// One rule for the exit code a cancelled execution stands for: 1, from `run` (cancelled by another client, not
/// by its own Ctrl-C, which exits 130) and from `logs --follow` alike.
#[tokio::test]
async fn a_cancelled_execution_exits_1_from_run_and_from_logs_follow() {
    let dir = TestDir::new("cli-cancelled");
    let state_dir = dir.join("state");
    let never = dir.fifo("never");
    let config = json!({"workflows": [
        wf("held", &["out", "started", "wait-fifo", never.to_str().unwrap()]),
    ]});
    let (_config_dir, config_path) = write_config("cli-cancelled-config", &config);
    let run = tokio::process::Command::new(server_bin())
        .args(["run", "held", "--config"])
        .arg(&config_path)
        .arg("--state-dir")
        .arg(&state_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let s = Server::builder("cli-cancelled", config)
        .state_dir(&state_dir)
        .spawn()
        .await;
    // The execution `run` started, once it is running (bounded: 60 s).
    let mut id = None;
    for _ in 0..600 {
        let listed = s.ok("list_executions", json!({"state": "running"})).await;
        if let Some(e) = listed["executions"].as_array().and_then(|a| a.first()) {
            id = Some(e["execution_id"].as_str().unwrap().to_owned());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let id = id.expect("run's execution is running");
    s.wait_line(&id, "^started").await;
    let follower = tokio::process::Command::new(server_bin())
        .args(["logs", &id, "--follow", "--state-dir"])
        .arg(&state_dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    s.ok("cancel_execution", json!({"execution_id": id})).await;
    let ran = tokio::time::timeout(std::time::Duration::from_secs(60), run.wait_with_output())
        .await
        .expect("run ended")
        .unwrap();
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert_eq!(state(&s.wait_final(&id).await), "cancelled");
    assert_eq!(ran.status.code(), Some(1), "run: {stderr}");
    assert!(stderr.contains("workflow-mcp: held cancelled"), "{stderr}");
    let followed = follower.wait_with_output_owned().await;
    assert_eq!(followed.0, Some(1), "logs --follow takes the same exit code");
}
