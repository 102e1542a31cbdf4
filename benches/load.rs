//! `cargo bench --bench load`: how the server answers while greps scan a big log.
//!
//! A workflow writes `seq 1 N` (default 40,000,000 lines, 349 MB) and finishes, a `sleep` workflow runs, then
//! `ping` round trips are timed over stdio (the real binary, raw JSON-RPC): first idle, then while 8 greps that
//! match nothing are kept in flight (each answer, stopped at the scan budget, is continued at its `next_seq`,
//! starting over at the end). The figure is the ping p50/p99 under load next to idle; the grep calls' own
//! durations, the scan rate and the server's peak RSS come with it.
//!
//! Environment: BENCH_LINES (default 40000000), BENCH_PINGS (default 300 per phase), BENCH_GREPS (8).

#[expect(dead_code, reason = "the bench uses part of the test helpers")]
#[path = "../tests/util.rs"]
mod util;

#[expect(dead_code, reason = "the bench uses part of the shared helpers")]
#[path = "common.rs"]
mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{env_num, mb, proc_status_kb};
use serde_json::json;
use util::{RawServer, structured};

/// Time between one ping's answer and the next ping (a client polling, not a flood).
const PING_GAP: Duration = Duration::from_millis(10);

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(s: f64) -> String {
    format!("{:.2} ms", s * 1e3)
}

/// Round trips of `pings` pings, one at a time; while `greps` > 0, that many greps over `big` are kept in flight.
/// Returns the sorted ping times, the grep calls' durations (queueing for a scan slot included) and the lines
/// they scanned.
async fn pings_while_grepping(
    s: &mut RawServer,
    big: &str,
    total: u64,
    pings: usize,
    greps: usize,
) -> (Vec<f64>, Vec<f64>, u64) {
    let grep = |since: u64| json!({"execution_id": big, "grep": "no line says this", "since_seq": since});
    // Grep call id -> (sent at, since_seq).
    let mut in_flight: HashMap<u64, (Instant, u64)> = HashMap::new();
    for k in 0..greps {
        // Spread over the log, so the greps do not read the same segments at the same time.
        let since = total / greps as u64 * k as u64;
        let id = s.call("get_logs", grep(since)).await;
        in_flight.insert(id, (Instant::now(), since));
    }
    let (mut rtts, mut grep_times, mut scanned) = (Vec::new(), Vec::new(), 0u64);
    let mut ping_id = 1_000_000u64;
    let mut ping_sent: Option<Instant> = None;
    let mut next_ping = tokio::time::Instant::now();
    while rtts.len() < pings {
        if ping_sent.is_none() && tokio::time::Instant::now() >= next_ping {
            ping_id += 1;
            s.send(json!({"jsonrpc": "2.0", "id": ping_id, "method": "ping"})).await;
            ping_sent = Some(Instant::now());
        }
        let msg = if ping_sent.is_none() {
            tokio::select! {
                m = s.recv() => m,
                _ = tokio::time::sleep_until(next_ping) => continue,
            }
        } else {
            s.recv().await
        };
        let msg = msg.unwrap_or_else(|| panic!("the server ended\n{}", s.stderr()));
        let Some(id) = msg["id"].as_u64() else { continue };
        if id == ping_id {
            rtts.push(ping_sent.take().unwrap().elapsed().as_secs_f64());
            next_ping = tokio::time::Instant::now() + PING_GAP;
        } else if let Some((at, since)) = in_flight.remove(&id) {
            grep_times.push(at.elapsed().as_secs_f64());
            let page = structured(&msg);
            let next = page["next_seq"].as_u64().expect("a grep answer");
            scanned += next - since;
            let since = if page["has_more"] == true { next } else { 0 };
            let id = s.call("get_logs", grep(since)).await;
            in_flight.insert(id, (Instant::now(), since));
        }
    }
    // The greps still running are answered before the next phase.
    while !in_flight.is_empty() {
        let msg = s.recv().await.expect("the server is up");
        if let Some(id) = msg["id"].as_u64() {
            in_flight.remove(&id);
        }
    }
    rtts.sort_by(f64::total_cmp);
    grep_times.sort_by(f64::total_cmp);
    (rtts, grep_times, scanned)
}

fn main() {
    let lines = env_num("BENCH_LINES", 40_000_000);
    let pings = env_num("BENCH_PINGS", 300) as usize;
    let greps = env_num("BENCH_GREPS", 8) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut s = RawServer::start(
            "bench-load",
            json!({"workflows": [
                {"name": "big", "command": ["seq", "1", lines.to_string()]},
                {"name": "sleeper", "command": ["sleep", "1000"]},
            ]}),
        )
        .await;
        let big = s.call_ok("execute_workflow", json!({"workflow": "big"})).await["execution_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let st = s.wait_final(&big).await;
        assert_eq!(st["state"], "succeeded");
        let bytes = st["output"]["stdout"]["bytes"].as_u64().unwrap();
        let sleeper = s.call_ok("execute_workflow", json!({"workflow": "sleeper"})).await["execution_id"]
            .as_str()
            .unwrap()
            .to_owned();
        println!(
            "## ping latency while {greps} greps scan a finished log of {lines} lines ({})",
            mb(bytes as f64)
        );
        let (idle, _, _) = pings_while_grepping(&mut s, &big, lines, pings, 0).await;
        let start = Instant::now();
        let (busy, grep_times, scanned) = pings_while_grepping(&mut s, &big, lines, pings, greps).await;
        let busy_secs = start.elapsed().as_secs_f64();
        println!("| ping | p50 | p99 | max |");
        println!("|---|---|---|---|");
        for (name, v) in [("idle", &idle), (&format!("{greps} greps in flight"), &busy)] {
            println!(
                "| {name} | {} | {} | {} |",
                ms(percentile(v, 0.5)),
                ms(percentile(v, 0.99)),
                ms(*v.last().unwrap())
            );
        }
        println!(
            "ratio under load / idle: p50 {:.1}x, p99 {:.1}x",
            percentile(&busy, 0.5) / percentile(&idle, 0.5),
            percentile(&busy, 0.99) / percentile(&idle, 0.99)
        );
        println!(
            "grep calls answered: {} (each at its scan budget), call time p50 {} p99 {} (waiting for a scan slot \
             included); {:.1} M lines scanned in {:.1} s: {:.1} M lines/s",
            grep_times.len(),
            ms(percentile(&grep_times, 0.5)),
            ms(percentile(&grep_times, 0.99)),
            scanned as f64 / 1e6,
            busy_secs,
            scanned as f64 / busy_secs / 1e6
        );
        let st = s.call_ok("get_status", json!({"execution_id": sleeper})).await;
        assert_eq!(st["state"], "running", "the running workflow survived");
        println!(
            "server peak RSS: {} (8 MiB log cap per execution); the sleep workflow still running",
            mb(proc_status_kb(s.pid(), "VmHWM:") as f64 * 1024.0)
        );
        s.call_ok("cancel_execution", json!({"execution_id": sleeper, "grace_ms": 0}))
            .await;
    });
}
