//! Execution logs at scale: eviction with loss accounting, caps, long lines, followers, rendering.

use serde_json::{Value, json};

use crate::util::{RawServer, Server, TestDir, parse_records, records, release_fifo, texts, wf};

#[tokio::test]
async fn eviction_keeps_head_and_tail_and_reports_exactly_what_was_dropped() {
    let s = Server::builder(
        "evict",
        json!({"limits": {"log_bytes_per_execution": 1048576}, "workflows": [wf("big", &["lines", "200000"])]}),
    )
    .ephemeral()
    .start()
    .await;
    let id = s.start_wf("big", json!({})).await;
    let st = s.wait_final(&id).await;
    let dropped = st["output"]["dropped_lines"].as_u64().unwrap();
    assert!(dropped > 0, "a 1 MiB cap cannot hold 200000 lines");
    assert_eq!(
        st["output"]["stdout"]["lines"], 200_000,
        "every line was read and counted"
    );

    let kept = s.all_lines(&id, 10_000).await;
    assert_eq!(kept.len() as u64 + dropped, 200_000, "kept + dropped = produced");
    assert_eq!(kept[0]["text"], "out 0", "the head is kept");
    assert_eq!(kept.last().unwrap()["text"], "out 199999", "the newest line is kept");
    let seqs: Vec<u64> = kept.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    let gap_at = seqs.windows(2).position(|w| w[1] != w[0] + 1).expect("one gap");
    let (gap_from, gap_to) = (seqs[gap_at] + 1, seqs[gap_at + 1]);
    assert_eq!(gap_to - gap_from, dropped, "the gap is exactly the dropped lines");
    for l in &kept {
        let seq = l["seq"].as_u64().unwrap();
        assert_eq!(l["text"], format!("out {seq}"), "no line changed its seq");
    }

    let first = s.ok("get_logs", json!({"execution_id": id, "max_lines": 10000})).await;
    assert!(first["omitted"].is_null(), "the first page ends before the gap");
    let across = s
        .ok(
            "get_logs",
            json!({"execution_id": id, "since_seq": gap_from - 1, "max_lines": 3}),
        )
        .await;
    assert_eq!(
        across["omitted"],
        json!({"from_seq": gap_from, "to_seq": gap_to, "lines": dropped})
    );
    assert_eq!(
        records(&across["lines"])
            .iter()
            .map(|l| l["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [gap_from - 1, gap_to, gap_to + 1]
    );
    let notes: Vec<Value> = parse_records(across["lines"].as_str().unwrap())
        .into_iter()
        .filter_map(|r| r.get("note").cloned())
        .collect();
    assert_eq!(
        notes,
        [json!(format!(
            "seq {gap_from}-{} omitted: {dropped} lines evicted from memory",
            gap_to - 1
        ))],
        "the omitted range is noted where it falls"
    );
    let raw = across["lines"].as_str().unwrap();
    let note_at = raw.find("# seq").unwrap();
    assert!(
        raw[..note_at].starts_with(&format!("{} ", gap_from - 1)) && raw[note_at..].contains(&format!("\n{gap_to} ")),
        "between the last line before the gap and the first after it: {raw}"
    );
    let inside = s
        .ok(
            "get_logs",
            json!({"execution_id": id, "since_seq": gap_from + 5, "max_lines": 1}),
        )
        .await;
    assert_eq!(
        inside["omitted"]["from_seq"],
        gap_from + 5,
        "a query into the evicted range says what is missing"
    );
    assert_eq!(records(&inside["lines"])[0]["seq"], gap_to);
    let r = s
        .call(
            "get_logs",
            json!({"execution_id": id, "since_seq": gap_from + 5, "max_lines": 1}),
        )
        .await;
    assert!(r.text.contains("lines evicted from memory"), "{}", r.text);
}

#[tokio::test]
async fn a_cap_reached_by_one_execution_does_not_evict_another() {
    let s = Server::builder(
        "caps",
        json!({"limits": {"log_bytes_per_execution": 1048576},
               "workflows": [wf("small", &["lines", "1000"]), wf("big", &["lines", "300000"])]}),
    )
    .ephemeral()
    .start()
    .await;
    let small = s.start_wf("small", json!({})).await;
    s.wait_final(&small).await;
    let big = s.start_wf("big", json!({})).await;
    let st = s.wait_final(&big).await;
    assert!(st["output"]["dropped_lines"].as_u64().unwrap() > 0);
    let st = s.ok("get_status", json!({"execution_id": small})).await;
    assert!(
        st["output"].get("dropped_lines").is_none(),
        "the other execution keeps every line"
    );
    assert_eq!(s.all_lines(&small, 10_000).await.len(), 1000);
}

#[tokio::test]
async fn the_global_cap_takes_memory_from_finished_executions_first() {
    let cap = 3 * 1048576;
    let s = Server::builder(
        "global",
        json!({"limits": {"log_bytes_per_execution": cap, "log_bytes_total": cap},
               "workflows": [wf("done", &["lines", "100000"]), wf("live", &["lines", "100000"])]}),
    )
    .ephemeral()
    .start()
    .await;
    let done = s.start_wf("done", json!({})).await;
    s.wait_final(&done).await;
    let live = s.start_wf("live", json!({})).await;
    let st = s.wait_final(&live).await;
    assert!(
        st["output"].get("dropped_lines").is_none(),
        "the newer execution kept everything"
    );
    let st = s.ok("get_status", json!({"execution_id": done})).await;
    assert!(
        st["output"]["dropped_lines"].as_u64().unwrap() > 0,
        "the finished one gave memory back"
    );
}

#[tokio::test]
async fn long_lines_are_split_into_partial_records_between_utf8_characters() {
    let euro = "€".repeat(1000); // 3000 bytes, each character 3 bytes
    let hex: String = euro.bytes().chain(*b"\n").map(|b| format!("{b:02x}")).collect();
    let s = Server::builder(
        "long",
        json!({"limits": {"max_line_bytes": 1024}, "workflows": [wf("long", &["raw-out", &hex, "out", "next"])]}),
    )
    .ephemeral()
    .start()
    .await;
    let id = s.start_wf("long", json!({})).await;
    let st = s.wait_final(&id).await;
    let lines = s.all_lines(&id, 100).await;
    let parts: Vec<&str> = lines.iter().map(|l| l["text"].as_str().unwrap()).collect();
    assert_eq!(parts.len(), 4);
    assert_eq!(
        parts[..3].concat(),
        euro,
        "the pieces add up to the line, no character split"
    );
    assert!(parts.iter().all(|p| !p.contains('\u{fffd}')));
    assert!(parts[..3].iter().all(|p| p.len() <= 1024));
    let partial: Vec<bool> = lines.iter().map(|l| l["partial"] == true).collect();
    assert_eq!(
        partial,
        [true, true, false, false],
        "every piece but the last is partial"
    );
    assert_eq!(st["output"]["truncated_lines"], 2);
    assert_eq!(parts[3], "next");
}

#[tokio::test]
async fn a_slow_follower_gets_every_line_exactly_once() {
    let dir = TestDir::new("follower-gate");
    let gate = dir.fifo("gate");
    let s = Server::builder(
        "follower",
        json!({"workflows": [wf("two_bursts", &["lines", "20000", "wait-fifo", gate.to_str().unwrap(), "lines", "20000"])]}),
    )
    .ephemeral()
    .start()
    .await;
    let id = s.start_wf("two_bursts", json!({})).await;
    let release = tokio::task::spawn_blocking(move || release_fifo(&gate));
    let mut seen = Vec::new();
    let mut since = 0;
    loop {
        let page = s
            .ok(
                "get_logs",
                json!({"execution_id": id, "since_seq": since, "max_lines": 97, "wait_ms": 60000}),
            )
            .await;
        seen.extend(texts(&records(&page["lines"])));
        since = page["next_seq"].as_u64().unwrap();
        if page["done"] == true {
            break;
        }
    }
    release.await.unwrap();
    assert_eq!(seen.len(), 40_000, "every line arrives exactly once");
    let expected: Vec<String> = (0..20_000).chain(0..20_000).map(|i| format!("out {i}")).collect();
    assert_eq!(seen, expected, "in order");
}

#[tokio::test]
async fn carriage_returns_show_what_a_terminal_would_show() {
    let hex: String = b"progress 10%\rprogress 55%\rprogress 100%\r\n\x1b[32mok\x1b[0m\n"
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let s = Server::builder("cr", json!({"workflows": [wf("bar", &["raw-out", &hex])]}))
        .ephemeral()
        .start()
        .await;
    let id = s.start_wf("bar", json!({})).await;
    s.wait_final(&id).await;
    assert_eq!(texts(&s.all_lines(&id, 10).await), ["progress 100%", "ok"]);
    let raw = s.ok("get_logs", json!({"execution_id": id, "raw": true})).await;
    assert_eq!(
        texts(&records(&raw["lines"])),
        ["progress 10%\rprogress 55%\rprogress 100%\r", "\u{1b}[32mok\u{1b}[0m"]
    );
}

#[tokio::test]
async fn a_cancelled_waiting_call_does_not_hold_up_shutdown() {
    let mut s = RawServer::start("cancel-wait", json!({"workflows": [wf("quiet", &["hold"])]})).await;
    let id = s.call("execute_workflow", json!({"workflow": "quiet"})).await;
    let r = s.response(id).await;
    let exec = r["result"]["structuredContent"]["execution_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let waiting = s
        .call("get_logs", json!({"execution_id": exec, "wait_ms": 60000}))
        .await;
    let marker = s.call("list_workflows", json!({})).await;
    s.response(marker).await;
    s.send(json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": waiting}}))
        .await;
    s.close_stdin();
    // Without the cancellation the server would answer the wait after 60 s; the guard in wait_exit is 30 s.
    let took = s.wait_exit().await;
    eprintln!("server exited {took:?} after the cancelled wait");
}
