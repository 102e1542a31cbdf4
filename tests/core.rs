//! The core: tools over a real MCP client against the real binary, running the fake workflow.

use serde_json::{Value, json};

use crate::util::{Server, alive, records, texts, wf};

#[tokio::test]
async fn ten_thousand_interleaved_lines_arrive_once_in_order_with_their_stream() {
    let s = Server::start(
        "interleave",
        json!({"workflows": [wf("talk", &["interleave", "10000"])]}),
    )
    .await;
    let id = s.start_wf("talk", json!({})).await;
    let status = s.wait_final(&id).await;
    assert_eq!(status["state"], "succeeded");
    assert_eq!(status["output"]["stdout"]["lines"], 5000);
    assert_eq!(status["output"]["stderr"]["lines"], 5000);
    let lines = s.all_lines(&id, 777).await;
    assert_eq!(lines.len(), 10_000, "every line arrives exactly once");
    let seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (0..10_000).collect::<Vec<_>>(), "seqs are dense and ascending");
    let mut expect_out = (0..10_000).step_by(2);
    let mut expect_err = (1..10_000).step_by(2);
    for l in &lines {
        let text = l["text"].as_str().unwrap();
        match l["stream"].as_str().unwrap() {
            "stdout" => assert_eq!(text, format!("o {}", expect_out.next().unwrap())),
            "stderr" => assert_eq!(text, format!("e {}", expect_err.next().unwrap())),
            other => panic!("unknown stream {other}"),
        }
    }
    assert!(expect_out.next().is_none() && expect_err.next().is_none());
}

#[tokio::test]
async fn paging_with_next_seq_is_repeatable() {
    let s = Server::start("paging", json!({"workflows": [wf("many", &["lines", "1000"])]})).await;
    let id = s.start_wf("many", json!({})).await;
    s.wait_final(&id).await;
    let args = json!({"execution_id": id, "since_seq": 300, "max_lines": 100});
    let a = s.ok("get_logs", args.clone()).await;
    let b = s.ok("get_logs", args).await;
    assert_eq!(a["lines"], b["lines"], "the same call gives the same answer");
    assert_eq!(a["first_seq"], 300);
    assert_eq!(a["last_seq"], 399);
    assert_eq!(a["next_seq"], 400);
    assert_eq!(a["has_more"], true);
    assert_eq!(a["truncated"], "max_lines");
    let next = s
        .ok(
            "get_logs",
            json!({"execution_id": id, "since_seq": 400, "max_lines": 100}),
        )
        .await;
    assert_eq!(
        records(&next["lines"])[0]["text"],
        "out 400",
        "continuing from next_seq skips and repeats nothing"
    );
    let last = s.ok("get_logs", json!({"execution_id": id, "since_seq": 990})).await;
    assert_eq!(records(&last["lines"]).len(), 10);
    assert_eq!(last["has_more"], false);
    assert_eq!(last["done"], true);
}

#[tokio::test]
async fn stderr_flood_with_no_reader_does_not_deadlock() {
    let five_mb = (5 * 1024 * 1024).to_string();
    let s = Server::start(
        "flood",
        json!({"workflows": [wf("flood", &["flood-err", &five_mb, "out", "finished"])]}),
    )
    .await;
    let id = s.start_wf("flood", json!({})).await;
    let status = s.wait_final(&id).await;
    assert_eq!(status["state"], "succeeded");
    assert_eq!(status["output"]["stderr"]["bytes"], 5 * 1024 * 1024);
    assert_eq!(status["output"]["stdout"]["lines"], 1);
}

#[tokio::test]
async fn exit_code_and_signal_are_reported_separately() {
    let s = Server::start(
        "exit",
        json!({"workflows": [wf("three", &["exit", "3"]), wf("killed", &["signal", "9"]), wf("ok", &["out", "x"])]}),
    )
    .await;
    let id = s.start_wf("three", json!({})).await;
    let st = s.wait_final(&id).await;
    assert_eq!(
        (st["state"].clone(), st["exit_code"].clone(), st["signal"].clone()),
        (json!("failed"), json!(3), Value::Null)
    );
    let id = s.start_wf("killed", json!({})).await;
    let st = s.wait_final(&id).await;
    assert_eq!(
        (st["state"].clone(), st["exit_code"].clone(), st["signal"].clone()),
        (json!("failed"), Value::Null, json!("SIGKILL")),
        "a signal death is never reported as an exit code"
    );
    let id = s.start_wf("ok", json!({})).await;
    let st = s.wait_final(&id).await;
    assert_eq!(
        (st["state"].clone(), st["exit_code"].clone()),
        (json!("succeeded"), json!(0))
    );
    assert!(st["duration_ms"].is_u64() && st["finished_at"].is_string() && st["pid"].is_u64());
}

#[tokio::test]
async fn child_stdin_is_at_eof() {
    let s = Server::start("stdin", json!({"workflows": [wf("stdin", &["check-stdin"])]})).await;
    let id = s.start_wf("stdin", json!({})).await;
    s.wait_final(&id).await;
    let lines = s.all_lines(&id, 100).await;
    assert_eq!(texts(&lines), ["stdin: eof"]);
}

#[tokio::test]
async fn cancel_kills_grandchildren() {
    let s = Server::spawn("cancel", json!({"workflows": [wf("tree", &["grandchild", "hold"])]})).await;
    let id = s.start_wf("tree", json!({})).await;
    let line = s.wait_line(&id, "^grandchild").await;
    let grandchild: u32 = line.split(' ').nth(1).unwrap().parse().unwrap();
    let leader = s.ok("get_status", json!({"execution_id": id})).await["pid"]
        .as_u64()
        .unwrap() as u32;
    assert!(alive(grandchild) && alive(leader));
    let ppid = |pid: u32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        stat[stat.rfind(')').unwrap() + 2..]
            .split(' ')
            .nth(1)
            .unwrap()
            .parse::<u32>()
            .unwrap()
    };
    assert_eq!(ppid(leader), s.pid(), "the server spawned the workflow itself");
    assert_eq!(ppid(grandchild), leader);
    let st = s
        .ok("cancel_execution", json!({"execution_id": id, "grace_ms": 2000}))
        .await;
    assert_eq!(st["state"], "cancelled");
    assert_eq!(st["signal"], "SIGTERM");
    assert!(!alive(leader), "the leader is gone when cancel returns");
    assert!(!alive(grandchild), "the grandchild is gone when cancel returns");
    let again = s.ok("cancel_execution", json!({"execution_id": id})).await;
    assert_eq!(
        again["state"], "cancelled",
        "cancelling a finished execution returns it unchanged"
    );
}

#[tokio::test]
async fn cancel_escalates_to_sigkill_when_term_is_ignored() {
    let s = Server::start(
        "stubborn",
        json!({"workflows": [wf("stubborn", &["ignore-term", "out", "ready", "hold"])]}),
    )
    .await;
    let id = s.start_wf("stubborn", json!({})).await;
    s.wait_line(&id, "^ready$").await;
    let st = s
        .ok("cancel_execution", json!({"execution_id": id, "grace_ms": 200}))
        .await;
    assert_eq!(st["state"], "cancelled");
    assert_eq!(st["signal"], "SIGKILL");
    assert!(!alive(st["pid"].as_u64().unwrap() as u32));
}

#[tokio::test]
async fn unknown_workflow_and_unknown_execution_are_tool_errors() {
    let s = Server::start(
        "unknown",
        json!({"workflows": [wf("build", &["out", "x"]), wf("test", &["out", "y"])]}),
    )
    .await;
    let e = s.err("execute_workflow", json!({"workflow": "buidl"})).await;
    assert_eq!(
        e,
        "unknown workflow \"buidl\" (did you mean \"build\"?); known workflows: build, test"
    );
    let e = s.err("get_status", json!({"execution_id": "not-an-id"})).await;
    assert!(
        e.contains("\"not-an-id\" is not an execution id") && e.contains("list_executions"),
        "{e}"
    );
    let e = s
        .err(
            "get_logs",
            json!({"execution_id": "0b5e6f0e-8c2a-4a3f-9d7e-1f2a3b4c5d6e"}),
        )
        .await;
    assert!(
        e.starts_with("no execution with id 0b5e6f0e-8c2a-4a3f-9d7e-1f2a3b4c5d6e"),
        "{e}"
    );
    let e = s
        .err(
            "cancel_execution",
            json!({"execution_id": "0b5e6f0e-8c2a-4a3f-9d7e-1f2a3b4c5d6e"}),
        )
        .await;
    assert!(e.contains("no execution with id"), "{e}");
}

#[tokio::test]
async fn each_kind_of_invalid_input_is_a_tool_error_naming_it() {
    let mut entry = wf("p", &["print-args"]);
    entry["params"] = json!([
        {"name": "repeat", "type": "integer", "minimum": 1, "maximum": 10, "arg": "--repeat", "required": true},
        {"name": "mode", "type": "string", "enum": ["fast", "slow"], "arg": "--mode"},
        {"name": "tag", "type": "string", "pattern": "^[a-z]+$", "arg": "--tag"},
        {"name": "ratio", "type": "number", "minimum": 0, "arg": "--ratio"},
        {"name": "dry", "type": "boolean", "flag": "--dry"}
    ]);
    let s = Server::start("invalid", json!({"workflows": [entry]})).await;
    let call = |params: Value| {
        let s = &s;
        async move {
            s.err("execute_workflow", json!({"workflow": "p", "params": params}))
                .await
        }
    };
    assert_eq!(
        call(json!({"repeat": "many"})).await,
        "param \"repeat\" must be an integer between 1 and 10, got \"many\""
    );
    assert_eq!(
        call(json!({"repeat": 11})).await,
        "param \"repeat\" must be an integer between 1 and 10, got 11"
    );
    assert_eq!(
        call(json!({})).await,
        "missing required param \"repeat\" (an integer between 1 and 10); workflow \"p\" needs it"
    );
    assert_eq!(
        call(json!({"repeat": 1, "mode": "medium"})).await,
        "param \"mode\" must be one of \"fast\", \"slow\", got \"medium\""
    );
    assert_eq!(
        call(json!({"repeat": 1, "tag": "ABC"})).await,
        "param \"tag\" must be a string matching /^[a-z]+$/, got \"ABC\""
    );
    assert_eq!(
        call(json!({"repeat": 1, "ratio": -1})).await,
        "param \"ratio\" must be a number >= 0, got -1"
    );
    assert_eq!(
        call(json!({"repeat": 1, "dry": "yes"})).await,
        "param \"dry\" must be true or false, got \"yes\""
    );
    assert_eq!(
        call(json!({"repeat": 1, "colour": "red"})).await,
        "unknown param \"colour\" for workflow \"p\"; known params: repeat, mode, tag, ratio, dry"
    );
    let e = s.err("execute_workflow", json!({"workflow": "p", "params": [1]})).await;
    assert!(e.starts_with("\"params\" must be a JSON object"), "{e}");
    let e = s
        .err("get_logs", json!({"execution_id": "x", "max_lines": "lots"}))
        .await;
    assert!(e.contains("\"max_lines\"") && e.contains("invalid type"), "{e}");
    let e = s
        .err("get_status", json!({"execution_id": "x", "tail_lines": 500}))
        .await;
    assert_eq!(e, "\"tail_lines\" must be between 0 and 200, got 500");
    let e = s.err("get_logs", json!({"execution_id": "x", "bogus": 1})).await;
    assert!(e.contains("unknown field `bogus`"), "{e}");
}

#[tokio::test]
async fn a_negative_positional_is_refused_and_never_reaches_the_program_as_an_option() {
    let mut entry = wf("head", &["print-args"]);
    entry["params"] = json!([{"name": "count", "type": "integer", "positional": true}]);
    let s = Server::start("negative-positional", json!({"workflows": [entry]})).await;
    let e = s
        .err("execute_workflow", json!({"workflow": "head", "params": {"count": -5}}))
        .await;
    assert!(
        e.contains("param \"count\"") && e.contains("must not start with '-'"),
        "{e}"
    );
    let listed = s.ok("list_executions", json!({})).await;
    assert_eq!(listed["executions"], json!([]), "nothing ran: {listed}");
    let id = s.start_wf("head", json!({"count": 5})).await;
    s.wait_final(&id).await;
    assert_eq!(texts(&s.all_lines(&id, 10).await), ["arg: 5"]);
}

#[tokio::test]
async fn params_reach_the_command_as_options_flags_positionals_and_env() {
    let mut entry = wf("p", &["env", "LEVEL", "print-args"]);
    entry["params"] = json!([
        {"name": "filter", "type": "string", "positional": true},
        {"name": "release", "type": "boolean", "flag": "--release", "default": false},
        {"name": "jobs", "type": "integer", "arg": "--jobs"},
        {"name": "ratio", "type": "number", "arg": "--ratio"},
        {"name": "level", "type": "string", "env": "LEVEL", "default": "info"}
    ]);
    let s = Server::start("params", json!({"workflows": [entry]})).await;
    let id = s
        .start_wf(
            "p",
            json!({"filter": "net", "release": true, "jobs": 4, "ratio": 5.0, "level": "debug"}),
        )
        .await;
    let st = s.wait_final(&id).await;
    assert_eq!(
        st["params"],
        json!({"filter": "net", "release": true, "jobs": 4, "ratio": 5, "level": "debug"})
    );
    let lines = texts(&s.all_lines(&id, 100).await);
    assert_eq!(
        lines,
        [
            "LEVEL=debug",
            "arg: --release",
            "arg: --jobs",
            "arg: 4",
            "arg: --ratio",
            "arg: 5",
            "arg: net"
        ]
    );
    let id = s.start_wf("p", json!({})).await;
    s.wait_final(&id).await;
    assert_eq!(
        texts(&s.all_lines(&id, 100).await),
        ["LEVEL=info"],
        "defaults apply; absent optionals are left out"
    );
}

#[tokio::test]
async fn workflows_get_a_clean_environment() {
    let mut entry = wf(
        "env",
        &[
            "env",
            "SECRET_TOKEN",
            "env",
            "PASSED",
            "env",
            "NO_COLOR",
            "env",
            "OWN",
            "env",
            "PATH",
        ],
    );
    entry["env"] = json!({"OWN": "mine"});
    let s = Server::builder("env", json!({"inherit_env": ["PASSED"], "workflows": [entry]}))
        .env(&[("SECRET_TOKEN", "hunter2"), ("PASSED", "yes")])
        .spawn()
        .await;
    let id = s.start_wf("env", json!({})).await;
    s.wait_final(&id).await;
    let lines = texts(&s.all_lines(&id, 100).await);
    assert_eq!(
        lines[0], "SECRET_TOKEN is unset",
        "a server-only variable does not reach the workflow"
    );
    assert_eq!(lines[1], "PASSED=yes");
    assert_eq!(lines[2], "NO_COLOR=1");
    assert_eq!(lines[3], "OWN=mine");
    assert!(lines[4].starts_with("PATH="));
}

#[tokio::test]
async fn invalid_utf8_and_a_final_line_without_newline_are_kept() {
    let s = Server::start(
        "bytes",
        json!({"workflows": [wf("bytes", &["raw-out", "6f6bff0a1b5b33316d7265641b5b306d0a", "no-newline", "last"])]}),
    )
    .await;
    let id = s.start_wf("bytes", json!({})).await;
    s.wait_final(&id).await;
    let lines = s.all_lines(&id, 100).await;
    assert_eq!(texts(&lines), ["ok\u{fffd}", "red", "last"]);
    let raw = s
        .ok(
            "get_logs",
            json!({"execution_id": id, "since_seq": 1, "max_lines": 1, "raw": true}),
        )
        .await;
    assert_eq!(
        records(&raw["lines"])[0]["text"],
        "\u{1b}[31mred\u{1b}[0m",
        "raw keeps the escapes"
    );
}

#[tokio::test]
async fn budgets_are_never_exceeded_and_truncation_is_stated() {
    let s = Server::start(
        "budget",
        json!({"workflows": [wf("many", &["lines", "1000"]), wf("long", &["long-line", "5000", "out", "after"])]}),
    )
    .await;
    let id = s.start_wf("many", json!({})).await;
    s.wait_final(&id).await;
    let page = s.ok("get_logs", json!({"execution_id": id, "max_bytes": 100})).await;
    let sent = serde_json::to_string(&page["lines"]).unwrap().len() - 2;
    assert!(sent <= 100, "max_bytes counts the lines as sent: {sent}");
    assert_eq!(page["truncated"], "max_bytes");
    assert_eq!(page["has_more"], true);
    assert_eq!(page["next_seq"], page["last_seq"].as_u64().unwrap() + 1);
    let r = s.call("get_logs", json!({"execution_id": id, "max_bytes": 100})).await;
    assert!(
        r.text.lines().next().unwrap().contains("more (max_bytes reached)"),
        "{}",
        r.text
    );
    let default = s.ok("get_logs", json!({"execution_id": id})).await;
    assert_eq!(records(&default["lines"]).len(), 200, "200 lines by default");

    let id = s.start_wf("long", json!({})).await;
    s.wait_final(&id).await;
    let page = s.ok("get_logs", json!({"execution_id": id, "max_bytes": 1000})).await;
    // The record "0+ TEXT" and its escaped newline fit the 1000 bytes.
    assert_eq!(records(&page["lines"])[0]["text"].as_str().unwrap().len(), 995);
    assert_eq!(
        records(&page["lines"])[0]["cut"],
        true,
        "a line larger than the budget is cut and says so"
    );
    assert_eq!(page["next_seq"], 1, "paging still advances");
}

#[tokio::test]
async fn grep_tail_and_stream_selection() {
    // Order across the two pipes is not defined (two readers), so each check stays within one stream.
    let s = Server::start(
        "grep",
        json!({"workflows": [
            wf("mix", &["lines", "100", "out", "warning: disk", "out", "error: boom", "out", "done"]),
            wf("both", &["out", "to stdout", "err", "to stderr 1", "err", "to stderr 2"])
        ]}),
    )
    .await;
    let id = s.start_wf("mix", json!({})).await;
    s.wait_final(&id).await;
    let g = s
        .ok(
            "get_logs",
            json!({"execution_id": id, "grep": "^(error|warning)", "context": 1}),
        )
        .await;
    assert_eq!(
        texts(&records(&g["lines"])),
        ["out 99", "warning: disk", "error: boom", "done"]
    );
    assert_eq!(
        records(&g["lines"])[1]["matched"],
        Value::Null,
        "a match carries no mark"
    );
    assert_eq!(records(&g["lines"])[0]["matched"], false, "a context line is marked -");
    let t = s.ok("get_logs", json!({"execution_id": id, "tail": 2})).await;
    assert_eq!(texts(&records(&t["lines"])), ["error: boom", "done"]);
    let st = s.ok("get_status", json!({"execution_id": id, "tail_lines": 3})).await;
    assert_eq!(texts(&records(&st["tail"])), ["warning: disk", "error: boom", "done"]);
    let bad = s.err("get_logs", json!({"execution_id": id, "grep": "("})).await;
    assert!(bad.starts_with("\"grep\" is not a valid regular expression"), "{bad}");

    let id = s.start_wf("both", json!({})).await;
    s.wait_final(&id).await;
    let e = s.ok("get_logs", json!({"execution_id": id, "stream": "stderr"})).await;
    assert_eq!(texts(&records(&e["lines"])), ["to stderr 1", "to stderr 2"]);
    let o = s.ok("get_logs", json!({"execution_id": id, "stream": "stdout"})).await;
    assert_eq!(texts(&records(&o["lines"])), ["to stdout"]);
    let r = s
        .call("get_logs", json!({"execution_id": id, "stream": "stderr"}))
        .await;
    let first_err = records(&e["lines"])[0]["seq"].as_u64().unwrap();
    assert!(
        r.text.contains(&format!("\n{first_err}! to stderr 1\n")),
        "stderr lines are marked in the text: {}",
        r.text
    );
}

#[tokio::test]
async fn execute_with_wait_returns_the_final_status() {
    let s = Server::start("wait", json!({"workflows": [wf("quick", &["out", "hi", "exit", "0"])]})).await;
    let st = s
        .ok("execute_workflow", json!({"workflow": "quick", "wait_ms": 60000}))
        .await;
    assert_eq!(st["state"], "succeeded");
    assert_eq!(st["output"]["stdout"]["lines"], 1);
    let listed = s.ok("list_executions", json!({})).await;
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["executions"][0]["execution_id"], st["execution_id"]);
    let w = s.ok("list_workflows", json!({})).await;
    assert_eq!(w["workflows"][0]["name"], "quick");
    assert_eq!(w["workflows"][0]["source"], "manifest");
}

#[tokio::test]
async fn follow_with_wait_ms_sees_lines_as_they_come() {
    let dir = crate::util::TestDir::new("follow-fifo");
    let gate = dir.fifo("gate");
    let gate_s = gate.to_str().unwrap().to_owned();
    let s = Server::start(
        "follow",
        json!({"workflows": [wf("slow", &["out", "first", "wait-fifo", &gate_s, "out", "second"])]}),
    )
    .await;
    let id = s.start_wf("slow", json!({})).await;
    let p1 = s.ok("get_logs", json!({"execution_id": id, "wait_ms": 60000})).await;
    assert_eq!(texts(&records(&p1["lines"])), ["first"]);
    assert_eq!(p1["done"], false);
    let next = p1["next_seq"].as_u64().unwrap();
    let follow = s.call(
        "get_logs",
        json!({"execution_id": id, "since_seq": next, "wait_ms": 60000}),
    );
    let release = async {
        tokio::task::spawn_blocking(move || crate::util::release_fifo(&gate))
            .await
            .unwrap();
    };
    let (p2, _) = tokio::join!(follow, release);
    assert_eq!(texts(&records(&p2.structured["lines"])), ["second"]);
}
