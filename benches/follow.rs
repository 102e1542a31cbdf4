//! `cargo bench --bench follow`: how soon a line a workflow writes reaches a client waiting in `get_logs`
//! (`since_seq` and `wait_ms`, the long-poll) of ANOTHER server process on the same state directory — for it the
//! execution is stored: followed through its log files and the history, woken by file-change notification — next
//! to the same wait on the server that runs it (the in-process baseline: woken by the drain thread), in the same
//! run, both clients following at once. Both servers are the real binary over stdio. Each line carries the time
//! the workflow wrote it (CLOCK_REALTIME ns; the fake workflow's `stamped` action); its latency is the time the
//! client has the answer minus that. The first lines (BENCH_FOLLOW_WARMUP) are left out: the clients may not
//! be waiting yet. Then the same workflow with `outlive_session` (run by a supervisor process of its own, so
//! stored for both servers), followed from both.
//!
//! Environment: BENCH_FOLLOW_LINES (500), BENCH_FOLLOW_PAUSE_MS (10, between two lines), BENCH_FOLLOW_WARMUP (5).

#[expect(dead_code, reason = "the bench uses part of the test helpers")]
#[path = "../tests/util.rs"]
mod util;

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use util::{Server, TestDir, records, release_fifo, wf};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos()
}

/// Follows `id` on `s` with long-polls from the first line to the `n`th; each line's latency in ms, by seq.
async fn follow(s: &Server, id: &str, n: u64) -> Vec<f64> {
    let mut latencies = Vec::new();
    let mut since = 0u64;
    while (latencies.len() as u64) < n {
        let page = s
            .ok(
                "get_logs",
                json!({"execution_id": id, "since_seq": since, "wait_ms": 30000, "max_lines": 1000}),
            )
            .await;
        let now = now_ns();
        for line in records(&page["lines"]) {
            let text = line["text"].as_str().unwrap();
            let written: u128 = text.rsplit(' ').next().unwrap().parse().unwrap();
            latencies.push(now.saturating_sub(written) as f64 / 1e6);
        }
        since = page["next_seq"].as_u64().unwrap();
        assert!(
            !page["done"].as_bool().unwrap() || latencies.len() as u64 >= n,
            "the execution ended after {} of {n} lines",
            latencies.len()
        );
    }
    latencies
}

/// The `q` quantile (0..1) of `v`.
fn quantile(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let n = env_num("BENCH_FOLLOW_LINES", 500);
    let pause = env_num("BENCH_FOLLOW_PAUSE_MS", 10);
    let warmup = env_num("BENCH_FOLLOW_WARMUP", 5).min(n.saturating_sub(1)) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = TestDir::new("follow-bench");
        let state_dir = dir.join("state");
        let gate = dir.fifo("gate");
        let stamped = wf(
            "stamped",
            &[
                "wait-fifo",
                gate.to_str().unwrap(),
                "stamped",
                &n.to_string(),
                &pause.to_string(),
            ],
        );
        let mut detached = stamped.clone();
        detached["name"] = json!("detached");
        detached["outlive_session"] = json!(true);
        let config = json!({"workflows": [stamped, detached]});
        let owner = Server::builder("follow-owner", config.clone())
            .state_dir(&state_dir)
            .spawn()
            .await;
        let other = Server::builder("follow-other", config)
            .state_dir(&state_dir)
            .spawn()
            .await;
        let mut rows = Vec::new();
        for workflow in ["stamped", "detached"] {
            let id = owner.start_wf(workflow, json!({})).await;
            // The other server reads it from the history once its start is written there.
            while other.call("get_status", json!({"execution_id": id})).await.structured["state"] != "running" {
                tokio::task::yield_now().await;
            }
            let gate = gate.clone();
            let release = tokio::task::spawn_blocking(move || release_fifo(&gate));
            let (starter, another) = tokio::join!(follow(&owner, &id, n), follow(&other, &id, n));
            release.await.unwrap();
            rows.push((workflow, starter, another));
        }
        println!(
            "cross-process follow latency: {} lines {pause} ms apart (first {warmup} left out)",
            n as usize - warmup
        );
        println!("| execution | waiting in | p50 | p99 | max |");
        println!("|---|---|---|---|---|");
        let row = |what: &str, name: &str, v: &[f64]| {
            let v = &v[warmup..];
            println!(
                "| {what} | {name} | {:.2} ms | {:.2} ms | {:.2} ms |",
                quantile(v, 0.5),
                quantile(v, 0.99),
                quantile(v, 1.0)
            );
            (quantile(v, 0.5), quantile(v, 0.99))
        };
        let (_, live, stored) = &rows[0];
        let stored = row("run by a server", "another server process (stored)", stored);
        let live = row("run by a server", "that server (live, baseline)", live);
        let (_, starter, another) = &rows[1];
        row(
            "detached (its supervisor runs it)",
            "the server that started it",
            starter,
        );
        let detached = row("detached (its supervisor runs it)", "another server process", another);
        println!(
            "ratio to the live baseline: stored p50 {:.2}x, p99 {:.2}x; detached p50 {:.2}x, p99 {:.2}x \
             (target p50 <= 20 ms, p99 <= 100 ms)",
            stored.0 / live.0,
            stored.1 / live.1,
            detached.0 / live.0,
            detached.1 / live.1
        );
    });
}
