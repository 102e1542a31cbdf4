//! Workflows on a real Slurm cluster (`bash scripts/slurm-cluster.sh start`; `.ci/run` starts it): the same
//! tools, logs, cancel and exit codes as local runs. Without Slurm on the machine each test says it was skipped
//! and why — unless WORKFLOW_MCP_REQUIRE_SLURM is set (CI sets it), then a missing cluster fails them.

use serde_json::{Value, json};

use crate::util::{
    Server, TestDir, alive, exited, fake, line_texts, records, release_fifo, server_bin, state, write_config,
};

/// The node is shared: one Slurm test at a time, so one test's jobs never wait behind another's.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Whether the cluster answers; prints why a test is skipped when it does not.
fn cluster(test: &str) -> bool {
    let up = std::process::Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l == "idle" || l == "mixed" || l == "allocated")
        });
    if !up {
        assert!(
            std::env::var_os("WORKFLOW_MCP_REQUIRE_SLURM").is_none(),
            "{test}: no Slurm cluster answers (sinfo), and WORKFLOW_MCP_REQUIRE_SLURM is set; start one with \
             `bash scripts/slurm-cluster.sh start`"
        );
        eprintln!(
            "{test}: SKIPPED: no Slurm cluster answers here (start one with `bash scripts/slurm-cluster.sh start`)"
        );
    }
    up
}

/// A Slurm workflow running the fake workflow with these actions (`extra` merged into the entry).
fn job(name: &str, actions: &[&str], extra: Value) -> Value {
    let mut command = vec![fake().to_owned()];
    command.extend(actions.iter().map(|a| a.to_string()));
    let mut entry = json!({"name": name, "command": command, "runtime": {"type": "slurm", "partition": "debug"}});
    if let (Some(e), Some(x)) = (entry.as_object_mut(), extra.as_object()) {
        for (k, v) in x {
            e.insert(k.clone(), v.clone());
        }
    }
    entry
}

/// Waits (polling get_status, each call a round trip) until the status satisfies `done`.
async fn until(s: &Server, id: &str, mut done: impl FnMut(&Value) -> bool) -> Value {
    loop {
        let st = s.ok("get_status", json!({"execution_id": id, "wait_ms": 200})).await;
        if done(&st) {
            return st;
        }
        assert!(
            !st["state"].as_str().unwrap().ends_with("ed") || st["state"] == "queued",
            "{st}"
        );
    }
}

fn squeue_has(job: &str) -> bool {
    std::process::Command::new("squeue")
        .args(["-h", "-j", job, "-o", "%i"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == job)
}

#[tokio::test]
async fn a_job_gets_its_exact_argv_environment_and_exit_status() {
    let _one = ONE_AT_A_TIME.lock().await;
    if !cluster("a_job_gets_its_exact_argv_environment_and_exit_status") {
        return;
    }
    let s = Server::start(
        "slurm-exact",
        json!({"workflows": [
            job("args", &["print-args", "two words", "it's", "$(id) `id` $HOME", "*"], json!({})),
            job("env", &["env", "LIST", "env", "MULTI", "env", "HOME", "exit", "3"], json!({"env": {"LIST": "a,b,c", "MULTI": "line1\nline2"}})),
            job("selfkill", &["err", "about to die", "signal", "15"], json!({})),
            job("badcwd", &["out", "x"], json!({"cwd": "/nonexistent-folder"})),
            job("noprog", &[], json!({"command": ["no-such-program-xyz"]})),
        ]}),
    )
    .await;
    let st = s
        .ok("execute_workflow", json!({"workflow": "args", "wait_ms": 50000}))
        .await;
    let st = if state(&st) == "succeeded" {
        st
    } else {
        s.wait_final(st["execution_id"].as_str().unwrap()).await
    };
    assert_eq!(state(&st), "succeeded", "{st}");
    assert_eq!(st["job"]["system"], "slurm");
    assert!(st["job"]["id"].as_str().unwrap().parse::<u64>().is_ok(), "{st}");
    assert!(st.get("pid").is_none(), "a job has no local pid: {st}");
    let logs = s.ok("get_logs", json!({"execution_id": st["execution_id"]})).await;
    assert_eq!(
        line_texts(&logs["lines"]),
        ["arg: two words", "arg: it's", "arg: $(id) `id` $HOME", "arg: *"],
        "every argument arrives exactly, never through a shell"
    );

    let id = s.start_wf("env", json!({})).await;
    let st = s.wait_final(&id).await;
    assert_eq!(
        (state(&st), st["exit_code"].as_i64()),
        ("failed", Some(3)),
        "the job's exit code: {st}"
    );
    let lines = line_texts(&s.ok("get_logs", json!({"execution_id": id})).await["lines"]);
    assert_eq!(lines[0], "LIST=a,b,c", "commas survive");
    assert_eq!(&lines[1..3], ["MULTI=line1", "line2"], "newlines survive");
    assert!(
        lines[3].starts_with("HOME=/"),
        "the clean environment's own variables are there: {lines:?}"
    );

    let id = s.start_wf("selfkill", json!({})).await;
    let st = s.wait_final(&id).await;
    assert_eq!((state(&st), st["signal"].as_str()), ("failed", Some("SIGTERM")), "{st}");
    assert!(st.get("exit_code").is_none());
    assert_eq!(line_texts(&st["evidence"]["lines"]), ["about to die"]);

    let id = s.start_wf("badcwd", json!({})).await;
    let st = s.wait_final(&id).await;
    assert_eq!(state(&st), "failed_to_start", "{st}");
    assert!(st["error"].as_str().unwrap().contains("/nonexistent-folder"), "{st}");
    let id = s.start_wf("noprog", json!({})).await;
    let st = s.wait_final(&id).await;
    assert_eq!(state(&st), "failed_to_start", "{st}");
    assert!(st["error"].as_str().unwrap().contains("no-such-program-xyz"), "{st}");
}

#[tokio::test]
async fn a_refused_submission_is_failed_to_start_with_sbatchs_words_and_check_reports_it() {
    let _one = ONE_AT_A_TIME.lock().await;
    if !cluster("a_refused_submission_is_failed_to_start_with_sbatchs_words_and_check_reports_it") {
        return;
    }
    let config = json!({"workflows": [
        {"name": "nowhere", "command": ["true"], "runtime": {"type": "slurm", "partition": "no-such-partition"}}
    ]});
    let s = Server::start("slurm-refused", config.clone()).await;
    let st = s.ok("execute_workflow", json!({"workflow": "nowhere"})).await;
    assert_eq!(state(&st), "failed_to_start");
    assert!(
        st["error"].as_str().unwrap().contains("invalid partition"),
        "sbatch's message: {st}"
    );
    let (_dir, path) = write_config("slurm-check", &config);
    let out = std::process::Command::new(server_bin())
        .env("XDG_STATE_HOME", crate::util::test_state_home())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(text.contains("no partition \"no-such-partition\""), "{text}");
}

#[tokio::test]
async fn a_job_waits_as_queued_with_slurms_reason_then_runs_and_streams_its_lines_live() {
    let _one = ONE_AT_A_TIME.lock().await;
    if !cluster("a_job_waits_as_queued_with_slurms_reason_then_runs_and_streams_its_lines_live") {
        return;
    }
    let dir = TestDir::new("slurm-queue");
    let gates: Vec<_> = (0..4).map(|i| dir.fifo(&format!("gate{i}"))).collect();
    let next = dir.fifo("next");
    // The node has 4 CPUs: four 1-CPU jobs fill it.
    let mut workflows: Vec<Value> = (0..4)
        .map(|i| {
            job(
                &format!("filler{i}"),
                &["out", "holding", "wait-fifo", gates[i].to_str().unwrap()],
                json!({}),
            )
        })
        .collect();
    workflows.push(job(
        "waiter",
        &[
            "out",
            "first line",
            "wait-fifo",
            next.to_str().unwrap(),
            "out",
            "second line",
        ],
        json!({}),
    ));
    let s = Server::start("slurm-queue", json!({"workflows": workflows})).await;
    let mut fillers = Vec::new();
    for i in 0..4 {
        let id = s.start_wf(&format!("filler{i}"), json!({})).await;
        s.wait_line(&id, "^holding").await;
        fillers.push(id);
    }
    let waiter = s.start_wf("waiter", json!({})).await;
    let st = until(&s, &waiter, |st| st["job"]["reason"].is_string()).await;
    assert_eq!(state(&st), "queued", "pending in Slurm's queue is queued: {st}");
    assert_eq!(st["job"]["state"], "PENDING");
    let reason = st["job"]["reason"].as_str().unwrap();
    assert!(
        ["Resources", "Priority"].contains(&reason),
        "Slurm's reason for the wait: {st}"
    );
    release_fifo(&gates[0]);
    // It runs once a CPU frees, and its first line arrives while it still runs.
    assert_eq!(s.wait_line(&waiter, "^first line").await, "first line");
    // The job's state is read every 250 ms: it says running at most that long after its first line.
    let st = until(&s, &waiter, |st| st["state"] == "running").await;
    assert!(st["started_at"].is_string());
    release_fifo(&next);
    let st = s.wait_final(&waiter).await;
    assert_eq!(state(&st), "succeeded");
    assert_eq!(
        line_texts(&s.ok("get_logs", json!({"execution_id": waiter})).await["lines"]),
        ["first line", "second line"]
    );
    for g in &gates[1..] {
        release_fifo(g);
    }
    for id in &fillers {
        assert_eq!(state(&s.wait_final(id).await), "succeeded");
    }
}

#[tokio::test]
async fn cancel_and_timeout_end_the_jobs_whole_tree_and_say_so() {
    let _one = ONE_AT_A_TIME.lock().await;
    if !cluster("cancel_and_timeout_end_the_jobs_whole_tree_and_say_so") {
        return;
    }
    let s = Server::start(
        "slurm-stop",
        json!({"workflows": [
            // Traps TERM and exits 0: still cancelled, since we asked for it.
            job("trapper", &["out", "ready", "exit-0-on-term", "hold"], json!({})),
            job("stubborn", &["out", "ready", "ignore-term", "hold"], json!({})),
            job("forker", &["setsid-grandchild", "out", "ready", "hold"], json!({})),
            job("slow", &["out", "ready", "hold"], json!({"timeout_ms": 3000})),
        ]}),
    )
    .await;
    let id = s.start_wf("trapper", json!({})).await;
    s.wait_line(&id, "^ready").await;
    let st = s
        .ok("cancel_execution", json!({"execution_id": id, "grace_ms": 5000}))
        .await;
    assert_eq!(
        state(&st),
        "cancelled",
        "a job that exits 0 on our TERM is still cancelled: {st}"
    );
    assert!(!squeue_has(st["job"]["id"].as_str().unwrap()));

    let id = s.start_wf("stubborn", json!({})).await;
    s.wait_line(&id, "^ready").await;
    let st = s
        .ok("cancel_execution", json!({"execution_id": id, "grace_ms": 500}))
        .await;
    assert_eq!(
        state(&st),
        "cancelled",
        "a TERM-ignoring job is killed after the grace: {st}"
    );

    let id = s.start_wf("forker", json!({})).await;
    let grandchild: u32 = s.wait_line(&id, "^grandchild ").await[11..].parse().unwrap();
    s.wait_line(&id, "^ready").await;
    assert!(alive(grandchild));
    let st = s
        .ok("cancel_execution", json!({"execution_id": id, "grace_ms": 1000}))
        .await;
    assert_eq!(state(&st), "cancelled");
    // proctrack/cgroup: nothing of the job survives, a double-forked child included.
    assert!(
        exited(grandchild).await,
        "the double-forked child {grandchild} survived the cancel"
    );

    let id = s.start_wf("slow", json!({})).await;
    let st = s.wait_final(&id).await;
    assert_eq!(state(&st), "timed_out", "our own timer drives the timeout: {st}");
    assert!(st["error"].as_str().unwrap().contains("timed out"));
}

#[tokio::test]
async fn a_servers_exit_cancels_its_jobs() {
    let _one = ONE_AT_A_TIME.lock().await;
    if !cluster("a_servers_exit_cancels_its_jobs") {
        return;
    }
    let mut s = crate::util::RawServer::start(
        "slurm-exit",
        json!({"workflows": [job("long", &["out", "ready", "hold"], json!({}))]}),
    )
    .await;
    let st = s.call_ok("execute_workflow", json!({"workflow": "long"})).await;
    let job_id = st["job"]["id"].as_str().unwrap().to_owned();
    assert!(squeue_has(&job_id));
    s.close_stdin();
    s.wait_exit().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while squeue_has(&job_id) {
        assert!(std::time::Instant::now() < deadline, "job {job_id} outlived the server");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_job_that_outlives_its_server_is_followed_again_by_the_next_one() {
    let _one = ONE_AT_A_TIME.lock().await;
    if !cluster("a_job_that_outlives_its_server_is_followed_again_by_the_next_one") {
        return;
    }
    let dir = TestDir::new("slurm-outlive");
    let state_dir = dir.join("state");
    let gate = dir.fifo("gate");
    let config = json!({"workflows": [{
        "name": "survivor",
        "command": [fake(), "out", "before", "err", "a warning", "wait-fifo", gate.to_str().unwrap(), "out", "after", "exit", "7"],
        "runtime": {"type": "slurm", "partition": "debug", "outlive_session": true}
    }]});
    let mut a = crate::util::RawServer::builder("slurm-outlive-a", config.clone())
        .state_dir(&state_dir)
        .start()
        .await;
    let st = a.call_ok("execute_workflow", json!({"workflow": "survivor"})).await;
    let id = st["execution_id"].as_str().unwrap().to_owned();
    let job_id = st["job"]["id"].as_str().unwrap().to_owned();
    let before_seq = loop {
        let page = a
            .call_ok(
                "get_logs",
                json!({"execution_id": id, "grep": "^before", "wait_ms": 50000}),
            )
            .await;
        if let Some(line) = records(&page["lines"]).first() {
            break line["seq"].clone();
        }
    };
    a.close_stdin();
    a.wait_exit().await;
    assert!(squeue_has(&job_id), "the job outlives the server that submitted it");

    let b = Server::builder("slurm-outlive-b", config)
        .state_dir(&state_dir)
        .spawn()
        .await;
    let st = b.ok("get_status", json!({"execution_id": id})).await;
    assert!(
        ["running", "queued"].contains(&state(&st)),
        "followed again, not lost: {st}"
    );
    release_fifo(&gate);
    let st = b.wait_final(&id).await;
    assert_eq!((state(&st), st["exit_code"].as_i64()), ("failed", Some(7)), "{st}");
    let page = b.ok("get_logs", json!({"execution_id": id, "stream": "stdout"})).await;
    let lines = records(&page["lines"]);
    assert_eq!(
        lines.iter().map(|l| l["text"].as_str().unwrap()).collect::<Vec<_>>(),
        ["before", "after"],
        "every line once: what the first server read, then the rest"
    );
    assert_eq!(lines[0]["seq"], before_seq, "seqs are the same across the restart");
    let all = records(&b.ok("get_logs", json!({"execution_id": id})).await["lines"]);
    assert_eq!(all.len(), 3, "nothing read twice: {all:?}");
}

/// Every path under `root` with its mode bits (`lstat`: a symlink is reported as one).
fn modes_under(root: &std::path::Path) -> Vec<(std::path::PathBuf, u32, bool)> {
    use std::os::unix::fs::PermissionsExt;
    let mut all = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let meta = entry.path().symlink_metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            }
            all.push((entry.path(), meta.permissions().mode() & 0o7777, meta.is_dir()));
        }
    }
    all
}

/// This process's umask (from /proc, without changing it).
fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
}

#[tokio::test]
async fn an_ephemeral_servers_spool_is_private_unpredictable_and_gone_with_the_server() {
    let _one = ONE_AT_A_TIME.lock().await;
    if !cluster("an_ephemeral_servers_spool_is_private_unpredictable_and_gone_with_the_server") {
        return;
    }
    let dir = TestDir::new("slurm-ephemeral-spool");
    let tmp = dir.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let gate = dir.fifo("gate");
    let own = dir.join("own-file");
    let s = Server::builder(
        "slurm-ephemeral-spool",
        json!({"workflows": [job("w", &["touch", own.to_str().unwrap(), "out", "ready", "err", "warning", "wait-fifo", gate.to_str().unwrap()], json!({"env": {"SECRET": "hunter2"}}))]}),
    )
    .ephemeral()
    .env(&[("TMPDIR", tmp.to_str().unwrap())])
    .spawn()
    .await;
    let pid = s.pid();
    let id = s.start_wf("w", json!({})).await;
    s.wait_line(&id, "^ready").await;
    s.wait_line(&id, "^warning").await;
    // While the job runs: one spool, named unpredictably, and nothing in it anyone else may read.
    let spools: Vec<_> = std::fs::read_dir(&tmp).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(spools.len(), 1, "{spools:?}");
    let name = spools[0].file_name().unwrap().to_string_lossy().into_owned();
    assert_ne!(
        name,
        format!("workflow-mcp-slurm-{pid}"),
        "a spool named after the pid can be created by someone else first"
    );
    let under = modes_under(&tmp);
    assert!(
        under.len() >= 4,
        "the spool, the job folder and its output files: {under:?}"
    );
    for (path, mode, is_dir) in &under {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{} is {mode:o}, not {want:o}", path.display());
    }
    release_fifo(&gate);
    let st = s.wait_final(&id).await;
    assert_eq!(state(&st), "succeeded", "{st}");
    use std::os::unix::fs::PermissionsExt;
    let own_mode = std::fs::metadata(&own).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        own_mode,
        0o666 & !umask(),
        "the workflow's own files keep the user's umask"
    );
    // The job's folder goes with the job: its output is in the execution's log now.
    assert_eq!(
        std::fs::read_dir(&spools[0]).unwrap().count(),
        0,
        "{:?}",
        modes_under(&tmp)
    );
    drop(s);
    assert!(exited(pid).await, "the server did not exit");
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "the ephemeral spool outlived its server: {:?}",
        modes_under(&tmp)
    );
}

#[tokio::test]
async fn a_spool_someone_else_could_write_to_is_refused_with_the_fix() {
    let _one = ONE_AT_A_TIME.lock().await;
    if !cluster("a_spool_someone_else_could_write_to_is_refused_with_the_fix") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = TestDir::new("slurm-foreign-spool");
    let foreign = dir.join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o700)).unwrap();
    let c = std::ffi::CString::new(foreign.to_str().unwrap()).unwrap();
    // SAFETY: chown of a path we created, to nobody (uid/gid 65534).
    assert_eq!(unsafe { libc::chown(c.as_ptr(), 65534, 65534) }, 0, "chown needs root");
    let open = dir.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let sticky = dir.join("sticky");
    std::fs::create_dir(&sticky).unwrap();
    std::fs::set_permissions(&sticky, std::fs::Permissions::from_mode(0o1777)).unwrap();
    // The state directory's own spool, pre-created loose.
    let state_dir = dir.join("state");
    std::fs::create_dir_all(state_dir.join("slurm")).unwrap();
    std::fs::set_permissions(state_dir.join("slurm"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let spool = |p: &std::path::Path| json!({"runtime": {"type": "slurm", "partition": "debug", "spool_dir": p}});
    let s = Server::builder(
        "slurm-foreign-spool",
        json!({"workflows": [
            job("foreign", &["out", "ran"], spool(&foreign)),
            job("open", &["out", "ran"], spool(&open)),
            job("sticky", &["out", "ran"], spool(&sticky)),
            job("default", &["out", "ran"], json!({})),
        ]}),
    )
    .state_dir(&state_dir)
    .spawn()
    .await;
    for (wf, path, why) in [
        ("foreign", foreign.clone(), "owned by uid 65534"),
        ("open", open.clone(), "writable by others"),
        ("default", state_dir.join("slurm"), "writable by others"),
    ] {
        let st = s.ok("execute_workflow", json!({"workflow": wf})).await;
        let st = if state(&st) == "failed_to_start" {
            st
        } else {
            s.wait_final(st["execution_id"].as_str().unwrap()).await
        };
        assert_eq!(state(&st), "failed_to_start", "{wf}: {st}");
        let error = st["error"].as_str().unwrap();
        assert!(
            error.contains(path.to_str().unwrap()),
            "{wf}: names the folder: {error}"
        );
        assert!(error.contains(why), "{wf}: says what is wrong: {error}");
        assert!(error.contains("0700"), "{wf}: says the fix: {error}");
        assert_eq!(
            std::fs::read_dir(&path).map(|d| d.count()).unwrap_or(0),
            0,
            "{wf}: nothing was written into it"
        );
    }
    // A sticky shared folder of ours is fine: nobody else can swap what we put in it.
    let id = s.start_wf("sticky", json!({})).await;
    assert_eq!(state(&s.wait_final(&id).await), "succeeded");
}

#[tokio::test]
async fn relative_state_and_spool_folders_work_from_any_folder() {
    let _one = ONE_AT_A_TIME.lock().await;
    if !cluster("relative_state_and_spool_folders_work_from_any_folder") {
        return;
    }
    let config = json!({"workflows": [
        job("default-spool", &["out", "from the default spool"], json!({})),
        job("own-spool", &["out", "from a relative spool"], json!({"runtime": {"type": "slurm", "partition": "debug", "spool_dir": "spool"}})),
    ]});
    let (dir, path) = write_config("slurm-relative", &config);
    let work = dir.join("work");
    std::fs::create_dir(&work).unwrap();
    for (wf, line) in [
        ("default-spool", "from the default spool"),
        ("own-spool", "from a relative spool"),
    ] {
        let out = std::process::Command::new(server_bin())
            .current_dir(&work)
            .args(["run", "--config"])
            .arg(&path)
            .args(["--state-dir", "state", wf])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(line),
            "{wf}: {:?}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        work.join("state/history.db").is_file(),
        "the state directory is where --state-dir said"
    );
    assert!(
        dir.join("spool").is_dir(),
        "a relative spool_dir is in the config's folder"
    );
    // Both spools are private, and each job's folder went with its job.
    for spool in [work.join("state/slurm"), dir.join("spool")] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&spool).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700, "{}", spool.display());
        assert_eq!(modes_under(&spool), [], "{}", spool.display());
    }
}

#[tokio::test]
async fn retention_forgets_a_job_folder_a_crash_left_behind() {
    // No cluster needed: what retention forgets, the Slurm runtime forgets too.
    let dir = TestDir::new("slurm-retention");
    let state_dir = dir.join("state");
    let s = Server::builder(
        "slurm-retention",
        json!({"limits": {"retain_executions": 1}, "workflows": [crate::util::wf("quick", &["out", "x"])]}),
    )
    .state_dir(&state_dir)
    .spawn()
    .await;
    let first = s.start_wf("quick", json!({})).await;
    s.wait_final(&first).await;
    let log = state_dir.join("logs").join(&first);
    assert!(log.is_dir(), "the execution wrote its log folder: {}", log.display());
    // As a server killed while its job ran would leave it.
    let left = state_dir.join("slurm").join(&first);
    std::fs::create_dir_all(&left).unwrap();
    std::fs::write(left.join("stdout"), "output").unwrap();
    for _ in 0..2 {
        let id = s.start_wf("quick", json!({})).await;
        s.wait_final(&id).await;
    }
    assert!(
        !left.exists(),
        "the job folder of a forgotten execution stays: {}",
        left.display()
    );
    assert!(
        !log.exists(),
        "the log folder of a forgotten execution stays: {}",
        log.display()
    );
}

/// `scontrol`'s word for a job: its state, "gone" once Slurm no longer knows it, None while the controller does
/// not answer.
fn job_state(job: &str) -> Option<String> {
    let out = std::process::Command::new("scontrol")
        .args(["show", "job", "-o", job])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if text.contains("Invalid job id") {
        return Some("gone".into());
    }
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("JobState="))
        .map(str::to_owned)
}

/// The Slurm controller stopped; started again (and `job` cancelled) when dropped, whatever the test did, so the
/// cluster is left running.
struct ControllerAway {
    job: String,
}

impl ControllerAway {
    async fn stop(job: &str) -> ControllerAway {
        let away = ControllerAway { job: job.to_owned() };
        let pid: u32 = std::fs::read_to_string("/run/slurmctld.pid")
            .expect("slurmctld's pid file")
            .trim()
            .parse()
            .unwrap();
        // SAFETY: kill of the pid slurmctld wrote for itself.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
        assert!(exited(pid).await, "slurmctld did not stop");
        away
    }

    fn restart(&self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/slurm-cluster.sh");
        let out = std::process::Command::new("bash")
            .args([script, "start"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for ControllerAway {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/slurm-cluster.sh");
            let _ = std::process::Command::new("bash").args([script, "start"]).status();
        }
        let _ = std::process::Command::new("scancel").arg(&self.job).status();
    }
}

#[tokio::test]
async fn a_job_lost_while_the_controller_was_away_is_cancelled_once_it_answers() {
    let _one = ONE_AT_A_TIME.lock().await;
    if !cluster("a_job_lost_while_the_controller_was_away_is_cancelled_once_it_answers") {
        return;
    }
    let dir = TestDir::new("slurm-unreachable");
    let s = Server::builder(
        "slurm-unreachable",
        json!({"workflows": [job("long", &["out", "ready", "hold"], json!({}))]}),
    )
    .state_dir(&dir.join("state"))
    .env(
        // Lost after 1 s without an answer instead of 5 minutes (scontrol itself takes ~18 s to give up).
        &[("WORKFLOW_MCP_SLURM_UNREACHABLE_MS", "1000")],
    )
    .spawn()
    .await;
    let id = s.start_wf("long", json!({})).await;
    s.wait_line(&id, "^ready").await;
    let st = s.ok("get_status", json!({"execution_id": id})).await;
    let job_id = st["job"]["id"].as_str().unwrap().to_owned();
    let away = ControllerAway::stop(&job_id).await;
    let st = s.wait_final(&id).await;
    assert_eq!(state(&st), "lost", "{st}");
    assert!(st["error"].as_str().unwrap().contains("did not answer"), "{st}");
    away.restart();
    // Once the controller answers again, the job we gave up on is cancelled: nothing runs unsupervised.
    await_cancelled(&job_id, "after the controller came back", || s.stderr()).await;
    drop(away);
}

#[tokio::test]
async fn a_job_given_up_by_a_server_that_exited_is_cancelled_by_the_next_one() {
    let _one = ONE_AT_A_TIME.lock().await;
    if !cluster("a_job_given_up_by_a_server_that_exited_is_cancelled_by_the_next_one") {
        return;
    }
    let dir = TestDir::new("slurm-unreachable-next");
    let state_dir = dir.join("state");
    let config = json!({"workflows": [job("long", &["out", "ready", "hold"], json!({}))]});
    let quick = [("WORKFLOW_MCP_SLURM_UNREACHABLE_MS", "1000")];
    let a = Server::builder("slurm-unreachable-a", config.clone())
        .state_dir(&state_dir)
        .env(&quick)
        .spawn()
        .await;
    let id = a.start_wf("long", json!({})).await;
    a.wait_line(&id, "^ready").await;
    let st = a.ok("get_status", json!({"execution_id": id})).await;
    let job_id = st["job"]["id"].as_str().unwrap().to_owned();
    let away = ControllerAway::stop(&job_id).await;
    assert_eq!(state(&a.wait_final(&id).await), "lost");
    let pid = a.pid();
    drop(a);
    assert!(exited(pid).await, "the first server did not exit");
    away.restart();
    assert_eq!(
        job_state(&job_id).as_deref(),
        Some("RUNNING"),
        "nobody cancelled it yet"
    );
    // The next server on the state directory finishes what the first one could not.
    let b = Server::builder("slurm-unreachable-b", config)
        .state_dir(&state_dir)
        .env(&quick)
        .spawn()
        .await;
    await_cancelled(&job_id, "with the next server running", || b.stderr()).await;
    let folder = state_dir.join("slurm").join(&id);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while folder.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the job folder stays after the cancel"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(away);
}

/// Waits (at most 120 s; Slurm tells no one, so its state is looked at every 200 ms) until the job has ended,
/// and checks it was cancelled rather than left to run to its end.
async fn await_cancelled(job_id: &str, while_what: &str, log: impl Fn() -> String) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let now = job_state(job_id);
        if now
            .as_deref()
            .is_some_and(|s| ["gone", "CANCELLED", "COMPLETED", "FAILED"].contains(&s))
        {
            assert_ne!(
                now.as_deref(),
                Some("COMPLETED"),
                "the job was cancelled, not left to end"
            );
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "job {job_id} still {now:?} {while_what}\n{}",
            log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn one_poller_follows_several_jobs_at_once_each_to_its_own_end() {
    let _one = ONE_AT_A_TIME.lock().await;
    if !cluster("one_poller_follows_several_jobs_at_once_each_to_its_own_end") {
        return;
    }
    let dir = TestDir::new("slurm-poller");
    let gates: Vec<_> = (0..3).map(|i| dir.fifo(&format!("gate{i}"))).collect();
    let workflows: Vec<Value> = (0..3)
        .map(|i| {
            let code = (i + 1).to_string();
            job(
                &format!("job{i}"),
                &["out", "running", "wait-fifo", gates[i].to_str().unwrap(), "exit", &code],
                json!({}),
            )
        })
        .collect();
    let s = Server::start("slurm-poller", json!({"workflows": workflows})).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(s.start_wf(&format!("job{i}"), json!({})).await);
    }
    // All three run at once, each seen running (one squeue per tick answers for every job).
    for id in &ids {
        s.wait_line(id, "^running").await;
        let st = until(&s, id, |st| st["state"] == "running").await;
        assert!(st["job"]["node"].is_string(), "where it runs: {st}");
    }
    // Released last to first: each ends on its own, with its own exit code, while the others still run.
    for i in (0..3).rev() {
        release_fifo(&gates[i]);
        let st = s.wait_final(&ids[i]).await;
        assert_eq!(
            (state(&st), st["exit_code"].as_i64()),
            ("failed", Some(i as i64 + 1)),
            "{st}"
        );
        for other in &ids[..i] {
            let st = s.ok("get_status", json!({"execution_id": other})).await;
            assert_eq!(state(&st), "running", "the other jobs go on: {st}");
        }
    }
}
