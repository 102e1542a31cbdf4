//! What the model reads: the compact line form with every mark, results without padding, the evidence of a
//! failure in the same answer, results that fit the clients, and waits that report progress.

use std::sync::{Arc, Mutex};

use rmcp::model::{NumberOrString, ProgressNotificationParam, ProgressToken, RequestMetaObject};
use rmcp::service::NotificationContext;
use rmcp::{ClientHandler, RoleClient};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::util::{RawServer, Server, TestDir, parse_records, records, release_fifo, texts, wf};

/// How many JSON values a document holds.
fn json_values(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(json_values).sum(),
        Value::Object(m) => m.values().map(json_values).sum(),
        _ => 0,
    }
}

#[tokio::test]
async fn the_compact_form_marks_stderr_partial_grep_context_cut_and_timestamps() {
    // Within one stream lines keep their order; across the two pipes the order is the order they were read,
    // so each workflow here writes to one stream.
    let s = Server::start(
        "compact",
        json!({"limits": {"max_line_bytes": 1024}, "workflows": [
            wf("out", &["out", "plain", "long-line", "2500", "out", "after", "out", "error: \"bad\"", "out", "tail"]),
            wf("err", &["err", "e1", "err", "e2", "err", "e3"]),
        ]}),
    )
    .await;
    let id = s.start_wf("out", json!({})).await;
    s.wait_final(&id).await;

    let page = s.ok("get_logs", json!({"execution_id": id})).await;
    let compact = page["lines"].as_str().unwrap();
    let alphabet =
        |from: usize, len: usize| -> String { (from..from + len).map(|k| (b'a' + (k % 26) as u8) as char).collect() };
    let expected = format!(
        "0 plain\n1~ {}\n2~ {}\n3 {}\n4 after\n5 error: \"bad\"\n6 tail\n",
        alphabet(0, 1024),
        alphabet(1024, 1024),
        alphabet(2048, 452)
    );
    assert_eq!(
        compact, expected,
        "one record per line: seq, marks (~ partial), a space, the text"
    );
    assert!(
        page.get("truncated").is_none() && page.get("omitted").is_none(),
        "{page}"
    );

    let g = s
        .ok("get_logs", json!({"execution_id": id, "grep": "^error", "context": 1}))
        .await;
    assert_eq!(
        g["lines"], "4- after\n5 error: \"bad\"\n6- tail\n",
        "context lines are marked -"
    );

    let err = s.start_wf("err", json!({})).await;
    s.wait_final(&err).await;
    let e = s.ok("get_logs", json!({"execution_id": err})).await;
    assert_eq!(e["lines"], "0! e1\n1! e2\n2! e3\n", "stderr lines are marked !");
    let g = s
        .ok("get_logs", json!({"execution_id": err, "grep": "e2", "context": 1}))
        .await;
    assert_eq!(g["lines"], "0!- e1\n1! e2\n2!- e3\n", "marks combine in their order");

    let cut = s
        .ok(
            "get_logs",
            json!({"execution_id": id, "since_seq": 1, "max_bytes": 100}),
        )
        .await;
    assert_eq!(
        cut["lines"],
        format!("1~+ {}\n", alphabet(0, 94)),
        "a record larger than max_bytes is cut to fit, marked +"
    );
    assert_eq!(cut["next_seq"], 2, "paging advances past a cut line");
    assert!(cut["hint"].as_str().unwrap().contains("line 1 was cut"), "{cut}");

    let stamped = s
        .ok(
            "get_logs",
            json!({"execution_id": id, "max_lines": 2, "timestamps": true}),
        )
        .await;
    let r = parse_records(stamped["lines"].as_str().unwrap());
    assert!(r[0]["ts"].is_string() && r[1]["ts"].is_string(), "{stamped}");
    assert_eq!(
        (r[0]["text"].clone(), r[1]["partial"].clone()),
        (json!("plain"), json!(true))
    );

    let reply = s.call("get_logs", json!({"execution_id": id})).await;
    assert!(
        reply.text.contains(compact),
        "the text content carries the same records:\n{}",
        reply.text
    );
    assert!(
        reply.text.lines().last().unwrap().starts_with("next: done"),
        "{}",
        reply.text
    );
}

#[tokio::test]
async fn a_page_costs_about_what_its_lines_cost() {
    let s = Server::start(
        "page-cost",
        json!({"workflows": [wf("lines80", &["wide", "1000", "79", "78"])]}),
    )
    .await;
    let id = s.start_wf("lines80", json!({})).await;
    s.wait_final(&id).await;
    let page = s.call("get_logs", json!({"execution_id": id})).await;
    assert_eq!(
        records(&page.structured["lines"]).len(),
        200,
        "200 lines of 80 bytes fit the default page"
    );
    let structured = serde_json::to_string(&page.structured).unwrap().len();
    assert!(
        structured <= 20_000,
        "a 200-line page of 80-byte lines is {structured} bytes"
    );
    let ratio = structured as f64 / page.text.len() as f64;
    assert!(
        ratio <= 1.3,
        "structured {structured} vs text {} bytes",
        page.text.len()
    );

    let small = s.ok("get_logs", json!({"execution_id": id, "max_lines": 10})).await;
    assert_eq!(
        json_values(&small),
        json_values(&page.structured),
        "the JSON values of a page do not grow with its lines"
    );
}

#[tokio::test]
async fn a_failed_execution_carries_its_evidence_in_the_same_call() {
    let dir = TestDir::new("evidence");
    let s = Server::start(
        "evidence",
        json!({"workflows": [
            wf("build", &["lines", "100000", "err", "error[E0308]: mismatched types", "err", "  --> src/main.rs:3:5",
                          "out", "last stdout line", "exit", "2"]),
            wf("crash", &["err", "about to crash", "signal", "11"]),
            wf("quiet", &["out", "only stdout here", "exit", "1"]),
            wf("ok", &["err", "a warning", "exit", "0"]),
            {"name": "stuck", "command": [crate::util::fake(), "err", "stuck waiting for the lock", "wait-fifo",
                dir.join("never").to_str().unwrap()], "timeout_ms": 300},
            {"name": "missing", "command": ["/nonexistent/build-tool"]},
        ]}),
    )
    .await;
    dir.fifo("never");

    let r = s
        .call("execute_workflow", json!({"workflow": "build", "wait_ms": 50000}))
        .await;
    let st = &r.structured;
    assert_eq!(st["state"], "failed");
    assert_eq!(st["exit_code"], 2);
    assert_eq!(st["evidence"]["about"], "last 2 stderr lines");
    assert_eq!(
        texts(&records(&st["evidence"]["lines"])),
        ["error[E0308]: mismatched types", "  --> src/main.rs:3:5"]
    );
    assert!(
        records(&st["evidence"]["lines"])
            .iter()
            .all(|l| l["stream"] == "stderr")
    );
    let structured = serde_json::to_string(st).unwrap().len();
    assert!(
        structured < 2048,
        "what happened and why in under 2 KB, got {structured}: {st}"
    );
    assert!(r.text.len() < 2048, "{}", r.text);
    assert!(r.text.contains("evidence (last 2 stderr lines):\n"), "{}", r.text);
    assert!(r.text.contains("! error[E0308]: mismatched types\n"), "{}", r.text);
    assert!(st["hint"].as_str().unwrap().contains("evidence"), "{st}");

    let id = st["execution_id"].as_str().unwrap();
    let again = s.ok("get_status", json!({"execution_id": id})).await;
    assert_eq!(
        again["evidence"], st["evidence"],
        "get_status carries the same evidence"
    );
    let cancelled = s.ok("cancel_execution", json!({"execution_id": id})).await;
    assert_eq!(
        cancelled["evidence"], st["evidence"],
        "and so does cancel_execution on a finished one"
    );

    let crash = s
        .ok("execute_workflow", json!({"workflow": "crash", "wait_ms": 50000}))
        .await;
    assert_eq!(
        (crash["state"].clone(), crash["signal"].clone()),
        (json!("failed"), json!("SIGSEGV"))
    );
    assert!(
        crash.get("exit_code").is_none(),
        "no exit code for a signal death: {crash}"
    );
    assert_eq!(texts(&records(&crash["evidence"]["lines"])), ["about to crash"]);

    let quiet = s
        .ok("execute_workflow", json!({"workflow": "quiet", "wait_ms": 50000}))
        .await;
    assert_eq!(quiet["evidence"]["about"], "last line of output (stderr has none)");
    assert_eq!(texts(&records(&quiet["evidence"]["lines"])), ["only stdout here"]);

    let stuck = s
        .ok("execute_workflow", json!({"workflow": "stuck", "wait_ms": 50000}))
        .await;
    assert_eq!(stuck["state"], "timed_out");
    assert_eq!(
        texts(&records(&stuck["evidence"]["lines"])),
        ["stuck waiting for the lock"]
    );

    let ok = s
        .ok("execute_workflow", json!({"workflow": "ok", "wait_ms": 50000}))
        .await;
    assert_eq!(ok["state"], "succeeded");
    assert!(ok.get("evidence").is_none(), "a success needs no evidence: {ok}");
    for absent in ["signal", "error", "queue_position", "tail", "progress"] {
        assert!(
            ok.get(absent).is_none(),
            "{absent} does not apply and is left out: {ok}"
        );
    }

    let missing = s
        .ok("execute_workflow", json!({"workflow": "missing", "wait_ms": 50000}))
        .await;
    assert_eq!(missing["state"], "failed_to_start");
    assert!(
        missing["error"].as_str().unwrap().contains("/nonexistent/build-tool"),
        "{missing}"
    );
    assert!(
        missing["hint"].as_str().unwrap().starts_with("could not start"),
        "{missing}"
    );
}

#[tokio::test]
async fn default_results_stay_under_50000_characters() {
    let mut workflows = vec![
        wf("wide", &["wide", "300", "1000", "78"]),
        wf("controls", &["wide", "300", "1000", "01"]),
        json!({"name": "echo", "command": [crate::util::fake(), "out", "hi"],
               "params": [{"name": "blob", "type": "string", "arg": "--blob"}]}),
    ];
    for n in 0..200 {
        workflows.push(
            json!({"name": format!("w{n:03}"), "description": "d".repeat(300), "command": ["true"],
            "params": [{"name": "p", "type": "string", "description": "p".repeat(200), "positional": true}]}),
        );
    }
    let s = Server::start("fits", json!({"workflows": workflows})).await;
    for wf in ["wide", "controls"] {
        let id = s.start_wf(wf, json!({})).await;
        s.wait_final(&id).await;
        let page = s.call("get_logs", json!({"execution_id": id})).await;
        assert!(
            page.sent_len() < 50_000,
            "{wf}: a default page is {} characters",
            page.sent_len()
        );
        assert_eq!(page.structured["truncated"], "max_bytes");
        let status = s
            .call("get_status", json!({"execution_id": id, "tail_lines": 200}))
            .await;
        assert!(
            status.sent_len() < 50_000,
            "{wf}: status with tail is {} characters",
            status.sent_len()
        );
        assert!(!records(&status.structured["tail"]).is_empty());
    }
    for _ in 0..25 {
        s.ok(
            "execute_workflow",
            json!({"workflow": "echo", "params": {"blob": "b".repeat(60_000)}}),
        )
        .await;
    }
    let list = s.call("list_executions", json!({})).await;
    assert!(
        list.sent_len() < 50_000,
        "list_executions is {} characters",
        list.sent_len()
    );
    let listed = list.structured["executions"].as_array().unwrap().len();
    let blob = &list.structured["executions"][0]["params"]["blob"];
    assert!(
        blob.as_str().unwrap().ends_with("…[+59744 bytes]"),
        "a long param is echoed shortened, saying by how much: {blob}"
    );
    if listed < 20 {
        assert!(list.structured["hint"].is_string(), "a list cut by size says so");
    }
    let workflows = s.call("list_workflows", json!({})).await;
    assert!(
        workflows.sent_len() < 50_000,
        "list_workflows is {} characters",
        workflows.sent_len()
    );
    let more = workflows.structured["more"]
        .as_array()
        .expect("workflows that did not fit are named");
    let name = more.last().unwrap().as_str().unwrap();
    let one = s.ok("list_workflows", json!({"workflow": name})).await;
    assert_eq!(
        one["workflows"][0]["name"], name,
        "a left-out workflow can be asked for by name"
    );
    assert!(workflows.text.contains(name), "the text names it too");
}

/// A client that records the progress notifications it receives.
#[derive(Clone)]
struct ProgressRecorder {
    tx: mpsc::UnboundedSender<ProgressNotificationParam>,
}

impl ClientHandler for ProgressRecorder {
    async fn on_progress(&self, params: ProgressNotificationParam, _: NotificationContext<RoleClient>) {
        let _ = self.tx.send(params);
    }
}

#[tokio::test]
async fn a_long_wait_reports_progress_the_client_can_show() {
    let dir = TestDir::new("progress");
    let (a, b) = (dir.fifo("a"), dir.fifo("b"));
    let (a_path, b_path) = (a.to_str().unwrap(), b.to_str().unwrap());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let s = Server::builder(
        "progress",
        json!({"workflows": [wf("phased", &[
            "event", r#"{"type":"phase_started","phase":0,"name":"Analyze","total_phases":2}"#,
            "wait-fifo", a_path,
            "event", r#"{"type":"phase_completed","phase":0,"name":"Analyze"}"#,
            "event", r#"{"type":"phase_started","phase":1,"name":"Build"}"#,
            "wait-fifo", b_path,
            "event", r#"{"type":"phase_completed","phase":1,"name":"Build"}"#,
        ])]}),
    )
    .handler(ProgressRecorder { tx })
    .start()
    .await;
    let id = s.start_wf("phased", json!({})).await;
    s.wait_line(&id, "phase_started").await;

    // Notifications of the calls before (rmcp's client asks for progress on every request) are not this one's.
    while rx.try_recv().is_ok() {}
    let token = ProgressToken(NumberOrString::String(Arc::from("wait-1")));
    let call = s.call_with(
        "get_status",
        json!({"execution_id": id, "wait_ms": 50000}),
        Some(RequestMetaObject::with_progress_token(token.clone())),
    );
    let seen = Mutex::new(Vec::new());
    let drive = async {
        let mut released_a = false;
        while let Some(p) = rx.recv().await {
            let message = p.message.clone().unwrap_or_default();
            seen.lock().unwrap().push(p);
            if !released_a && message.contains("phase 1/2 \"Analyze\"") {
                release_fifo(&a);
                released_a = true;
            } else if message.contains("phase 2/2 \"Build\"") {
                release_fifo(&b);
                return;
            }
        }
    };
    let (reply, ()) = tokio::join!(call, drive);
    assert_eq!(reply.structured["state"], "succeeded", "{}", reply.text);
    let seen = seen.into_inner().unwrap();
    assert!(seen.len() >= 2, "{seen:?}");
    // (rmcp's client puts its own token on every request.)
    assert!(
        seen.iter().all(|p| p.progress_token == seen[0].progress_token),
        "every notification carries the request's token"
    );
    assert!(
        seen.iter().all(|p| p.total == Some(2.0)),
        "the phase total is given: {seen:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[1].progress > w[0].progress),
        "progress only grows: {:?}",
        seen.iter().map(|p| p.progress).collect::<Vec<_>>()
    );
    assert!(
        seen.last().unwrap().progress >= 1.0,
        "one phase was completed when Build ran"
    );
    assert!(seen[0].message.as_ref().unwrap().starts_with("running for"), "{seen:?}");
}

#[tokio::test]
async fn only_a_request_with_a_progress_token_gets_progress_notifications() {
    let dir = TestDir::new("token");
    let fifo = dir.fifo("hold");
    let mut s = RawServer::start(
        "token",
        json!({"workflows": [wf("hold", &["out", "started", "wait-fifo", fifo.to_str().unwrap()])]}),
    )
    .await;
    let st = s.call_ok("execute_workflow", json!({"workflow": "hold"})).await;
    let id = st["execution_id"].as_str().unwrap().to_owned();
    for with_token in [true, false] {
        let mut params = json!({"name": "get_status", "arguments": {"execution_id": id, "wait_ms": 50}});
        if with_token {
            params["_meta"] = json!({"progressToken": "tok"});
        }
        s.send(json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params}))
            .await;
        let mut progress = Vec::new();
        loop {
            let msg = s.recv().await.expect("a response");
            if msg["id"] == 7 {
                assert_eq!(msg["result"]["structuredContent"]["state"], "running", "{msg}");
                break;
            }
            assert_eq!(msg["method"], "notifications/progress", "{msg}");
            progress.push(msg);
        }
        if with_token {
            assert!(!progress.is_empty(), "a waiting call with a token is told it is alive");
            assert_eq!(progress[0]["params"]["progressToken"], "tok");
            assert!(
                progress[0]["params"]["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("running for")
            );
        } else {
            assert!(progress.is_empty(), "no notification without a token: {progress:?}");
        }
    }
    release_fifo(&fifo);
}
