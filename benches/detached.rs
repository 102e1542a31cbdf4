//! `cargo bench --bench detached`: executions that outlive their session (`outlive_session: true`, run by a
//! supervisor process of their own), each figure next to a baseline timed in the same run.
//!
//! - ingest: `seq 1 N` through a detached execution, from `execute_workflow` to the final status counting all N
//!   lines (read by the server that started it, as a stored execution), vs the same workflow attached (run by the
//!   server, with a state directory) vs `seq 1 N | cat > /dev/null`.
//! - start: `execute_workflow` answered `running`, for BENCH_STARTS detached starts vs as many attached ones, on
//!   one server: p50 and p99.
//! - rss: VmRSS of the processes that own one idle detached execution (its supervisor and the supervisor's
//!   watchdog) vs the idle server that started it.
//!
//! The real binary over stdio (the bench profile's, i.e. release). Environment: BENCH_LINES (default 10000000),
//! BENCH_RUNS (5), BENCH_STARTS (50), BENCH_ONLY (ingest,start,rss), BENCH_STATE_DIR (where state directories go;
//! default the target's tmp dir).

#[expect(dead_code, reason = "the bench uses part of the test helpers")]
#[path = "../tests/util.rs"]
mod util;

#[path = "common.rs"]
mod common;

use std::path::PathBuf;
use std::time::Instant;

use common::{baseline_pipe, env_num, mb, median, proc_status_kb, text_bytes, timed_count};
use serde_json::{Value, json};
use util::Server;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(secs: f64) -> String {
    format!("{:.2} ms", secs * 1e3)
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT MET" }
}

/// `count` (`seq 1 N`) and `idle` (`sleep`), attached or outliving their session.
fn config(detached: bool) -> Value {
    json!({
        "limits": {"max_concurrent": 256},
        "outlive_session": detached,
        "workflows": [
            {"name": "count", "command": ["seq", "1"], "params": [{"name": "n", "type": "integer", "positional": true}]},
            {"name": "idle", "command": ["sleep", "3600"]}
        ]
    })
}

const QUIET: &[(&str, &str)] = &[("WORKFLOW_MCP_LOG", "warn")];

/// Where this run's state directories go (removed at the end of the run).
fn root() -> PathBuf {
    let base = std::env::var_os("BENCH_STATE_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    base.join(format!("detached-bench-{}", std::process::id()))
}

/// A fresh state directory for one scenario.
fn state_dir(name: &str) -> PathBuf {
    let p = root().join(name);
    let _ = std::fs::remove_dir_all(&p);
    p
}

async fn server(name: &str, detached: bool) -> Server {
    Server::builder("bench-detached", config(detached))
        .env(QUIET)
        .state_dir(&state_dir(name))
        .spawn()
        .await
}

async fn ingest(n: u64, runs: u64, rows: &mut Vec<String>) {
    println!("## ingest: seq 1 {n} ({} of text)", mb(text_bytes(n) as f64));
    let (mut base, mut att, mut det) = (Vec::new(), Vec::new(), Vec::new());
    // The execution's own duration (spawn to exit, as its runner recorded it), without the start and the report.
    let (mut att_own, mut det_own) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let b = baseline_pipe(n);
        let mut line = format!("run {run}: pipe {b:.3} s");
        // Alternate which goes first, so neither always runs on a warmer machine.
        for detached in [run % 2 == 0, run % 2 != 0] {
            let s = server(&format!("ingest-{run}-{detached}"), detached).await;
            let (t, st) = timed_count(&s, n).await;
            let own = st["duration_ms"].as_f64().unwrap_or(0.0) / 1e3;
            let kind = if detached { "detached" } else { "attached" };
            line += &format!(", {kind} {t:.3} s (its own duration {own:.3} s)");
            if detached { &mut det } else { &mut att }.push(t);
            if detached { &mut det_own } else { &mut att_own }.push(own);
            s.client.cancel().await.ok();
        }
        println!("{line}");
        base.push(b);
    }
    let (b, a, d) = (median(&base), median(&att), median(&det));
    let (ao, dow) = (median(&att_own), median(&det_own));
    println!(
        "median: pipe {b:.3} s, attached {a:.3} s (own {ao:.3} s), detached {d:.3} s (own {dow:.3} s: {:.2} of pipe)",
        b / dow
    );
    rows.push(format!(
        "| ingest `seq 1 {n}`, execute to all lines counted (median of {runs}) | detached {d:.3} s: {:.2} of pipe \
         throughput, {:.2} of attached; its own duration {dow:.3} s | pipe {b:.3} s, attached {a:.3} s ({:.2} of pipe; \
         own {ao:.3} s) | >= 0.8 of pipe | {} |",
        b / d,
        a / d,
        b / a,
        met(b / d >= 0.8)
    ));
}

/// Times `starts` `execute_workflow` calls of `idle`, each answered `running`, each with the ones before it still
/// running; returns the times in order and the ids.
async fn time_starts(s: &Server, starts: u64) -> (Vec<f64>, Vec<String>) {
    let (mut times, mut ids) = (Vec::new(), Vec::new());
    for _ in 0..starts {
        let t = Instant::now();
        let st = s.ok("execute_workflow", json!({"workflow": "idle"})).await;
        times.push(t.elapsed().as_secs_f64());
        assert_eq!(st["state"], "running", "{st}");
        ids.push(st["execution_id"].as_str().unwrap().to_owned());
    }
    (times, ids)
}

async fn start(starts: u64, rows: &mut Vec<String>) {
    println!("## start: {starts} executions to `running`, detached vs attached");
    let mut figures = Vec::new();
    for detached in [false, true] {
        let s = server(&format!("start-{detached}"), detached).await;
        let (in_order, ids) = time_starts(&s, starts).await;
        let sorted = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v
        };
        let times = sorted(&in_order);
        let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
        // Whether a start costs more with more executions running: the first tenth against the last.
        let tenth = (in_order.len() / 10).max(1);
        let (first, last) = (sorted(&in_order[..tenth]), sorted(&in_order[in_order.len() - tenth..]));
        println!(
            "{}: p50 {} p99 {} max {}; p50 of the first {tenth} {}, of the last {tenth} {}",
            if detached { "detached" } else { "attached" },
            ms(p50),
            ms(p99),
            ms(*times.last().unwrap()),
            ms(percentile(&first, 0.5)),
            ms(percentile(&last, 0.5))
        );
        figures.push((p50, p99));
        for id in ids {
            s.ok("cancel_execution", json!({"execution_id": id, "grace_ms": 0}))
                .await;
        }
        s.client.cancel().await.ok();
    }
    let ((ap50, ap99), (dp50, dp99)) = (figures[0], figures[1]);
    rows.push(format!(
        "| start to `running` ({starts} starts, one at a time) | detached p50 {} p99 {} | attached p50 {} p99 {} | \
         <= 20 ms | {} |",
        ms(dp50),
        ms(dp99),
        ms(ap50),
        ms(ap99),
        met(dp99 <= 0.020)
    ));
}

/// The pids whose parent is `parent` and whose command line has the argument `arg`.
fn children_with_arg(parent: u32, arg: &str) -> Vec<u32> {
    workflow_mcp::proc::scan::processes()
        .into_iter()
        .filter(|p| p.ppid == parent)
        .filter(|p| {
            std::fs::read(format!("/proc/{}/cmdline", p.pid))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
        })
        .map(|p| p.pid)
        .collect()
}

fn rss(pid: u32) -> f64 {
    proc_status_kb(pid, "VmRSS:") as f64 * 1024.0
}

/// Proportional set size: the pages shared with other processes (the binary's, libc's) divided among them.
fn pss(pid: u32) -> f64 {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    rollup
        .lines()
        .find(|l| l.starts_with("Pss:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        * 1024.0
}

async fn idle_rss(rows: &mut Vec<String>) {
    println!("## rss: the owners of one idle detached execution");
    let s = server("rss", true).await;
    let st = s.ok("execute_workflow", json!({"workflow": "idle"})).await;
    let id = st["execution_id"].as_str().unwrap().to_owned();
    let leader = st["pid"].as_u64().expect("a running execution has a pid") as u32;
    let supervisor = workflow_mcp::proc::scan::process(leader).expect("the leader runs").ppid;
    let watchdogs = children_with_arg(supervisor, "__watchdog");
    // Settled: the supervisor's first progress tick and history writes are behind it.
    let _ = s.ok("get_status", json!({"execution_id": id, "wait_ms": 2000})).await;
    let (sup, dog) = (rss(supervisor), watchdogs.iter().map(|p| rss(*p)).sum::<f64>());
    let anon = |pid: u32| proc_status_kb(pid, "RssAnon:") as f64 * 1024.0;
    let (sup_anon, dog_anon) = (anon(supervisor), watchdogs.iter().map(|p| anon(*p)).sum::<f64>());
    let (sup_pss, dog_pss) = (pss(supervisor), watchdogs.iter().map(|p| pss(*p)).sum::<f64>());
    println!("PSS: supervisor {}, watchdog {}", mb(sup_pss), mb(dog_pss));
    let threads = proc_status_kb(supervisor, "Threads:");
    let server_rss = rss(s.pid());
    println!(
        "supervisor {supervisor}: {} (anonymous {}, {threads} threads, peak {}); watchdog {watchdogs:?}: {} \
         (anonymous {}); the server: {} (anonymous {})",
        mb(sup),
        mb(sup_anon),
        mb(proc_status_kb(supervisor, "VmHWM:") as f64 * 1024.0),
        mb(dog),
        mb(dog_anon),
        mb(server_rss),
        mb(anon(s.pid()))
    );
    rows.push(format!(
        "| RSS of one idle detached execution's owners | supervisor {} + its watchdog {} = {} (anonymous {} + {}; \
         PSS {} + {}) | the idle server that started it {} | <= 5 MB (for \
         one process) | {} |",
        mb(sup),
        mb(dog),
        mb(sup + dog),
        mb(sup_anon),
        mb(dog_anon),
        mb(sup_pss),
        mb(dog_pss),
        mb(server_rss),
        met(sup + dog <= 5e6)
    ));
    s.ok("cancel_execution", json!({"execution_id": id, "grace_ms": 0}))
        .await;
    s.client.cancel().await.ok();
}

fn main() {
    let n = env_num("BENCH_LINES", 10_000_000);
    let runs = env_num("BENCH_RUNS", 5);
    let starts = env_num("BENCH_STARTS", 50);
    let only = std::env::var("BENCH_ONLY").ok();
    let want = |name: &str| only.as_deref().is_none_or(|o| o.split(',').any(|o| o == name));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    rt.block_on(async {
        if want("ingest") {
            ingest(n, runs, &mut rows).await;
        }
        if want("start") {
            start(starts, &mut rows).await;
        }
        if want("rss") {
            idle_rss(&mut rows).await;
        }
    });
    let _ = std::fs::remove_dir_all(root());
    println!("\n## summary\n");
    println!("| scenario | result | baseline in the same run | target | |");
    println!("|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}
