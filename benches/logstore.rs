//! `cargo bench --bench logstore`: execution logs at scale, each figure next to a baseline timed in the same run.
//!
//! - ingest: a workflow printing N lines (`seq 1 N`, default 10,000,000) drained and indexed by the real server
//!   (execute over MCP until the status shows every line and a final state) vs `seq 1 N | cat > /dev/null`;
//!   the server's peak RSS next to the text size.
//! - queries: a 200-line page at a mid-log `since_seq`, a `tail` of 200, and grep over the whole log, timed
//!   server-side (in-process engine and store), plus the same calls over MCP for reference.
//! - concurrency: 200 executions of 50,000 lines at once vs the same 200 children writing to /dev/null.
//! - memory: a `yes` workflow left running with a 64 MiB per-execution cap: the server's RSS over time.
//! - long line: 1 GiB without a newline: peak RSS.
//!
//! Environment: BENCH_LINES (default 10000000), BENCH_RUNS (5), BENCH_YES_SECS (10), BENCH_ONLY (a scenario).

#[expect(dead_code, reason = "the bench uses part of the test helpers")]
#[path = "../tests/util.rs"]
mod util;

#[path = "common.rs"]
mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{baseline_pipe, env_num, mb, median, proc_status_kb, text_bytes, timed_count};
use serde_json::{Value, json};
use util::Server;
use workflow_mcp::app::engine_config;
use workflow_mcp::catalog::{Invocation, Limits, Source, WorkflowDef};
use workflow_mcp::engine::{Engine, ExecutionView};
use workflow_mcp::logs::LogQuery;
use workflow_mcp::proc::ChildEnv;
use workflow_mcp::runtime::LocalRuntime;

fn count_config(extra_limits: Value) -> Value {
    let mut limits = json!({"max_concurrent": 256});
    limits
        .as_object_mut()
        .unwrap()
        .extend(extra_limits.as_object().unwrap().clone());
    json!({
        "limits": limits,
        "workflows": [
            {"name": "count", "command": ["seq", "1"], "params": [{"name": "n", "type": "integer", "positional": true}]},
            {"name": "yes", "command": ["yes"]},
            {"name": "zeros", "command": ["head", "-c", "1073741824", "/dev/zero"]}
        ]
    })
}

async fn start_server(label: &str, config: Value) -> Server {
    Server::builder(label, config)
        .env(&[("WORKFLOW_MCP_LOG", "warn")])
        .spawn()
        .await
}

async fn ingest(n: u64, runs: u64) {
    println!("## ingest: seq 1 {n} ({} of text)", mb(text_bytes(n) as f64));
    let (mut base, mut ours) = (Vec::new(), Vec::new());
    let mut peak_kb = 0;
    for run in 0..runs {
        let b = baseline_pipe(n);
        let s = start_server("bench-ingest", count_config(json!({}))).await;
        let (t, _) = timed_count(&s, n).await;
        let hwm = proc_status_kb(s.pid(), "VmHWM:");
        peak_kb = peak_kb.max(hwm);
        println!(
            "run {run}: baseline {b:.3} s, workflow-mcp {t:.3} s (ratio {:.2}), server peak RSS {}",
            t / b,
            mb(hwm as f64 * 1024.0)
        );
        base.push(b);
        ours.push(t);
        s.client.cancel().await.ok();
    }
    let (b, t) = (median(&base), median(&ours));
    println!(
        "ingest median: baseline {b:.3} s, workflow-mcp {t:.3} s -> ratio {:.2} ({:.0}% of raw pipe throughput; target ratio <= 2.0)",
        t / b,
        100.0 * b / t
    );
    let text = text_bytes(n) as f64;
    println!(
        "memory: server peak RSS {} for {} of text ({:.2}x the text; budget 1.5x text + 16 B/line = {})",
        mb(peak_kb as f64 * 1024.0),
        mb(text),
        peak_kb as f64 * 1024.0 / text,
        mb(1.5 * text + 16.0 * n as f64)
    );
}

fn seq_workflow(n: u64) -> (Arc<WorkflowDef>, Invocation) {
    let def = Arc::new(WorkflowDef {
        name: "count".into(),
        title: None,
        description: String::new(),
        command: vec!["seq".into(), "1".into()],
        params: vec![],
        cwd: std::env::temp_dir(),
        env: vec![],
        timeout_ms: None,
        max_concurrent: None,
        source: Source::Manifest,
        placement: Default::default(),
        outlive_session: false,
    });
    let inv = Invocation {
        args: vec![n.to_string()],
        ..Invocation::default()
    };
    (def, inv)
}

fn time_query(q: &LogQuery, store: &workflow_mcp::logs::ExecutionLog, iters: u32) -> (f64, usize) {
    let start = Instant::now();
    let mut lines = 0;
    for _ in 0..iters {
        lines = q.run(&store.snapshot()).lines.len();
    }
    (start.elapsed().as_secs_f64() / f64::from(iters), lines)
}

async fn queries(n: u64) {
    println!("## queries on a {n}-line log (server-side: snapshot + query, in-process)");
    let engine = Engine::new(
        engine_config(&Limits::default(), ChildEnv::inherited(&[]), false),
        tokio::runtime::Handle::current(),
        Arc::new(LocalRuntime::default()),
        None,
    )
    .unwrap();
    let (def, inv) = seq_workflow(n);
    let view = engine.execute(def, inv, None).await.unwrap();
    let never = tokio_util::sync::CancellationToken::new();
    while !engine.wait_final(&view, Duration::from_secs(60), &never).await {}
    let ExecutionView::Live(exec) = view else {
        unreachable!("started here")
    };
    let store = &exec.logs_buffer;
    assert_eq!(store.stats().next_seq, n);
    let page = LogQuery {
        since_seq: Some(n / 2),
        max_lines: 200,
        ..LogQuery::default()
    };
    let (t, lines) = time_query(&page, store, 1000);
    println!("page of {lines} lines at since_seq {}: {:.1} us", n / 2, t * 1e6);
    let tail = LogQuery {
        tail: Some(200),
        max_lines: 200,
        ..LogQuery::default()
    };
    let (t, lines) = time_query(&tail, store, 1000);
    println!("tail of {lines} lines: {:.1} us", t * 1e6);
    let text = text_bytes(n) as f64;
    for pattern in ["^x$", "99999$"] {
        let grep = LogQuery {
            grep: Some(regex::bytes::Regex::new(pattern).unwrap()),
            max_lines: 10_000,
            max_bytes: 1 << 20,
            ..LogQuery::default()
        };
        // Scan everything: page through with next_seq until the end.
        let start = Instant::now();
        let mut q = grep.clone();
        let mut found = 0;
        loop {
            let p = q.run(&store.snapshot());
            found += p.lines.len();
            if !p.has_more {
                break;
            }
            q.since_seq = Some(p.next_seq);
        }
        let t = start.elapsed().as_secs_f64();
        println!(
            "grep /{pattern}/ over all {n} lines ({found} matches): {:.3} s = {:.0} MB/s (target >= 200 MB/s)",
            t,
            text / t / 1e6
        );
    }
}

async fn queries_over_mcp(n: u64) {
    println!("## the same queries over MCP (round trip through the real server, for reference)");
    let s = start_server("bench-mcp-queries", count_config(json!({}))).await;
    let (_, st) = timed_count(&s, n).await;
    let id = st["execution_id"].as_str().unwrap();
    for (name, args) in [
        (
            "page at mid-log",
            json!({"execution_id": id, "since_seq": n / 2, "max_lines": 200}),
        ),
        ("tail 200", json!({"execution_id": id, "tail": 200})),
    ] {
        let start = Instant::now();
        for _ in 0..50 {
            s.ok("get_logs", args.clone()).await;
        }
        println!(
            "{name}: {:.2} ms per call",
            start.elapsed().as_secs_f64() * 1000.0 / 50.0
        );
    }
    s.client.cancel().await.ok();
}

async fn concurrency(executions: u64, lines: u64) {
    println!("## concurrency: {executions} executions of {lines} lines at once");
    let start = Instant::now();
    let children: Vec<_> = (0..executions)
        .map(|_| {
            Command::new("seq")
                .args(["1", &lines.to_string()])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let base = start.elapsed().as_secs_f64();
    let s = start_server("bench-concurrency", count_config(json!({}))).await;
    let start = Instant::now();
    let mut ids = Vec::new();
    for _ in 0..executions {
        let st = s
            .ok("execute_workflow", json!({"workflow": "count", "params": {"n": lines}}))
            .await;
        ids.push(st["execution_id"].as_str().unwrap().to_owned());
    }
    let started = start.elapsed().as_secs_f64();
    let mut total = 0;
    for id in &ids {
        let st = s.wait_final(id).await;
        assert_eq!(st["state"], "succeeded");
        total += st["output"]["stdout"]["lines"].as_u64().unwrap();
    }
    let ours = start.elapsed().as_secs_f64();
    assert_eq!(total, executions * lines, "every line arrived");
    println!(
        "all {total} lines arrived: workflow-mcp {ours:.3} s ({started:.3} s to start all {executions} over MCP, one call at a time) vs {base:.3} s for the same children writing to /dev/null (ratio {:.2})",
        ours / base
    );
    s.client.cancel().await.ok();
}

async fn memory_flat(secs: u64) {
    println!("## memory: `yes` running {secs} s with log_bytes_per_execution = 64 MiB");
    let s = start_server("bench-yes", count_config(json!({"log_bytes_per_execution": 64 << 20}))).await;
    let st = s.ok("execute_workflow", json!({"workflow": "yes"})).await;
    let id = st["execution_id"].as_str().unwrap().to_owned();
    let mut samples = Vec::new();
    for second in 1..=secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
        samples.push(format!(
            "{second}s {}",
            mb(proc_status_kb(s.pid(), "VmRSS:") as f64 * 1024.0)
        ));
    }
    let st = s.ok("get_status", json!({"execution_id": id})).await;
    println!("server RSS: {}", samples.join(", "));
    println!(
        "lines read {}, evicted {} ({}), kept head and tail",
        st["output"]["stdout"]["lines"],
        st["output"]["dropped_lines"],
        mb(st["output"]["dropped_bytes"].as_f64().unwrap())
    );
    s.ok("cancel_execution", json!({"execution_id": id, "grace_ms": 100}))
        .await;
    s.client.cancel().await.ok();
}

async fn long_line() {
    println!("## long line: 1 GiB without a newline");
    let s = start_server("bench-longline", count_config(json!({}))).await;
    let start = Instant::now();
    let st = s
        .ok("execute_workflow", json!({"workflow": "zeros", "wait_ms": 60000}))
        .await;
    let id = st["execution_id"].as_str().unwrap().to_owned();
    let st = s.wait_final(&id).await;
    println!(
        "{:.2} s; {} records of at most 64 KiB ({} split pieces), {} evicted; server peak RSS {}",
        start.elapsed().as_secs_f64(),
        st["output"]["stdout"]["lines"],
        st["output"]["truncated_lines"],
        st["output"]["dropped_lines"],
        mb(proc_status_kb(s.pid(), "VmHWM:") as f64 * 1024.0)
    );
    s.client.cancel().await.ok();
}

fn main() {
    // `cargo bench` passes --bench; any other argument filters nothing here.
    let n = env_num("BENCH_LINES", 10_000_000);
    let runs = env_num("BENCH_RUNS", 5);
    let yes_secs = env_num("BENCH_YES_SECS", 10);
    let only = std::env::var("BENCH_ONLY").ok();
    let want = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if want("ingest") {
            ingest(n, runs).await;
        }
        if want("queries") {
            queries(n).await;
            queries_over_mcp(n).await;
        }
        if want("concurrency") {
            concurrency(200, 50_000).await;
        }
        if want("memory") {
            memory_flat(yes_secs).await;
        }
        if want("longline") {
            long_line().await;
        }
    });
}
