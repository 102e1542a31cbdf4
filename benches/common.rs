//! Helpers both benchmark binaries use (`#[path]`-included by each; not a bench target itself).

use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};

use crate::util::Server;

pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// A `/proc/PID/status` field in kB (`VmHWM:`, `VmRSS:`); 0 if it cannot be read.
pub fn proc_status_kb(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub fn mb(bytes: f64) -> String {
    format!("{:.1} MB", bytes / 1e6)
}

/// Bytes of `seq 1 n` output: every number's digits plus a newline.
pub fn text_bytes(n: u64) -> u64 {
    let mut total = 0;
    let mut lo = 1;
    let mut digits = 1;
    while lo <= n {
        let hi = (lo * 10 - 1).min(n);
        total += (hi - lo + 1) * (digits + 1);
        lo *= 10;
        digits += 1;
    }
    total
}

/// Seconds `seq 1 n | cat > /dev/null` takes: the raw pipe throughput every ingest figure is compared with.
pub fn baseline_pipe(n: u64) -> f64 {
    let start = Instant::now();
    let status = Command::new("sh")
        .args(["-c", &format!("seq 1 {n} | cat > /dev/null")])
        .status()
        .unwrap();
    assert!(status.success());
    start.elapsed().as_secs_f64()
}

/// Runs the `count` workflow (`seq 1 N`) with n lines until its status is final; returns (seconds, final status).
pub async fn timed_count(s: &Server, n: u64) -> (f64, Value) {
    let start = Instant::now();
    let st = s
        .ok(
            "execute_workflow",
            json!({"workflow": "count", "params": {"n": n}, "wait_ms": 60000}),
        )
        .await;
    let id = st["execution_id"].as_str().unwrap().to_owned();
    let st = s.wait_final(&id).await;
    assert_eq!(st["state"], "succeeded");
    assert_eq!(st["output"]["stdout"]["lines"], n, "every line was drained and indexed");
    (start.elapsed().as_secs_f64(), st)
}
