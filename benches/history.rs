//! `cargo bench --bench history`: the durable history (SQLite records and log segment files) at scale, each
//! figure next to a baseline timed in the same run (the machines here are noisy, so targets are ratios where
//! they can be).
//!
//! - ingest: `seq 1 N` over MCP with a state directory vs `--ephemeral` vs `seq 1 N | cat > /dev/null`; each
//!   server's peak RSS; the disk the log takes vs the bytes read.
//! - startup: spawn to the answer of the first `tools/list` (raw JSON-RPC) on a state directory holding 10,000
//!   executions vs an empty one (new, and existing) vs `--ephemeral`.
//! - list: `list_executions` over those 10,000, server-side (in-process engine) and over MCP.
//! - page: a 200-line page from the middle (and the tail) of the on-disk N-line log, server-side from the files
//!   alone (`Snapshot::from_disk`), and over MCP through the server that ran it and through another one; a grep
//!   over the whole log read from its files vs the same lines in memory.
//!
//! - resources: `resources/list` walked to its last page over those 10,000 executions, keyset pages
//!   (`Engine::page`) vs the offset pages they replaced, timed in the same run.
//! - queue: a server with BENCH_QUEUED (6000) executions queued behind one running (limits.max_queued raised):
//!   from closing its stdin (or SIGTERM) to its exit, and from spawning the next server on the state directory
//!   to its `initialize` answer — after a clean exit, and after the first was SIGKILLed (its records left
//!   `queued` for the next one to recover) — each vs the same with nothing queued.
//!
//! Environment: BENCH_LINES (default 10000000), BENCH_RUNS (5), BENCH_EXECUTIONS (10000), BENCH_STARTUPS (10),
//! BENCH_QUEUED (6000), BENCH_ONLY (scenarios, comma-separated), BENCH_STATE_DIR (where state directories go; default the target's tmp dir).

#[expect(dead_code, reason = "the bench uses part of the test helpers")]
#[path = "../tests/util.rs"]
mod util;

#[path = "common.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{baseline_pipe, env_num, mb, median, proc_status_kb, text_bytes, timed_count};
use serde_json::{Map, Value, json};
use util::Server;
use uuid::Uuid;
use workflow_mcp::app::{App, HistoryPlace};
use workflow_mcp::engine::{ExecutionState, ListFilter, OutputSummary};
use workflow_mcp::logs::{CompactLines, LogDir, LogQuery, Snapshot, StreamCounters};
use workflow_mcp::store::{Change, ExecutionRecord, PruneRules, Store};

fn range(v: &[f64]) -> (f64, f64) {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(0.0, f64::max);
    (min, max)
}

/// CPU seconds a process has used so far, all threads: (user, system).
fn cpu_secs(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let field = |i: usize| {
        after
            .split_whitespace()
            .nth(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (field(11) / hz, field(12) / hz)
}

fn ms(secs: f64) -> String {
    format!("{:.2} ms", secs * 1e3)
}

fn us(secs: f64) -> String {
    format!("{:.0} us", secs * 1e6)
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT MET" }
}

/// One line of the summary table.
struct Row {
    what: String,
    result: String,
    baseline: String,
    target: String,
    verdict: &'static str,
}

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
}

impl Report {
    fn row(&mut self, what: impl Into<String>, result: String, baseline: String, target: &str, ok: Option<bool>) {
        self.rows.push(Row {
            what: what.into(),
            result,
            baseline,
            target: target.to_owned(),
            verdict: ok.map_or("", met),
        });
    }

    fn print(&self) {
        println!("\n## summary\n");
        println!("| scenario | result | baseline in the same run | target | |");
        println!("|---|---|---|---|---|");
        for r in &self.rows {
            println!(
                "| {} | {} | {} | {} | {} |",
                r.what, r.result, r.baseline, r.target, r.verdict
            );
        }
    }
}

/// Where this run's state directories go, and what filesystem that is.
struct Place {
    root: PathBuf,
}

impl Place {
    fn new() -> Place {
        let base = std::env::var_os("BENCH_STATE_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
        let root = base.join(format!("history-bench-{}", std::process::id()));
        std::fs::create_dir_all(&root).expect("create the bench's state root");
        let fs = Command::new("findmnt")
            .args(["-no", "FSTYPE,SOURCE", "-T"])
            .arg(&root)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "filesystem unknown".to_owned());
        println!("state directories under {} ({fs})", root.display());
        Place { root }
    }

    fn dir(&self, name: &str) -> PathBuf {
        let p = self.root.join(name);
        let _ = std::fs::remove_dir_all(&p);
        p
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn count_config() -> Value {
    json!({
        "limits": {"max_concurrent": 256},
        "workflows": [
            {"name": "count", "command": ["seq", "1"], "params": [{"name": "n", "type": "integer", "positional": true}]}
        ]
    })
}

const QUIET: &[(&str, &str)] = &[("WORKFLOW_MCP_LOG", "warn")];

/// What an execution's log files take: the sizes of its `.log` and `.meta` files, how many segments, and `du`.
struct LogFiles {
    data: u64,
    meta: u64,
    segments: u64,
    du: u64,
}

fn log_files(dir: &Path) -> LogFiles {
    let mut f = LogFiles {
        data: 0,
        meta: 0,
        segments: 0,
        du: 0,
    };
    for e in std::fs::read_dir(dir).expect("the log folder exists").flatten() {
        let len = e.metadata().map_or(0, |m| m.len());
        match e.path().extension().and_then(|x| x.to_str()) {
            Some("log") => {
                f.data += len;
                f.segments += 1;
            }
            Some("meta") => f.meta += len,
            _ => {}
        }
    }
    let du = Command::new("du")
        .args(["-s", "--block-size=1"])
        .arg(dir)
        .output()
        .unwrap();
    f.du = String::from_utf8_lossy(&du.stdout)
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    f
}

async fn ingest(n: u64, runs: u64, place: &Place, report: &mut Report) {
    println!("## ingest: seq 1 {n} ({} of text) over MCP", mb(text_bytes(n) as f64));
    let (mut base, mut eph, mut dur) = (Vec::new(), Vec::new(), Vec::new());
    let (mut eph_hwm, mut dur_hwm) = (Vec::new(), Vec::new());
    let mut files = None;
    let mut read = 0;
    for run in 0..runs {
        let b = baseline_pipe(n);
        let mut line = format!("run {run}: pipe {b:.3} s");
        // Alternate which server goes first, so neither always runs on a warmer machine.
        for durable in [run % 2 == 0, run % 2 != 0] {
            let state = place.dir(&format!("ingest-{run}"));
            let s = Server::builder("bench-ingest", count_config()).env(QUIET);
            let s = if durable { s.state_dir(&state) } else { s.ephemeral() };
            let s = s.spawn().await;
            let cpu_before = cpu_secs(s.pid());
            let (t, st) = timed_count(&s, n).await;
            let cpu = cpu_secs(s.pid());
            let hwm = proc_status_kb(s.pid(), "VmHWM:") as f64 * 1024.0;
            let kind = if durable { "persistent" } else { "ephemeral" };
            line += &format!(
                ", {kind} {t:.3} s (server CPU user {:.2} + sys {:.2} s, peak RSS {})",
                cpu.0 - cpu_before.0,
                cpu.1 - cpu_before.1,
                mb(hwm)
            );
            if durable {
                dur.push(t);
                dur_hwm.push(hwm);
                let id = st["execution_id"].as_str().unwrap();
                read = st["output"]["stdout"]["bytes"].as_u64().unwrap()
                    + st["output"]["stderr"]["bytes"].as_u64().unwrap();
                files = Some(log_files(&state.join("logs").join(id)));
            } else {
                eph.push(t);
                eph_hwm.push(hwm);
            }
            s.client.cancel().await.ok();
            let _ = std::fs::remove_dir_all(&state);
        }
        println!("{line}");
        base.push(b);
    }
    let (b, e, d) = (median(&base), median(&eph), median(&dur));
    let text = text_bytes(n) as f64;
    println!(
        "median: pipe {b:.3} s, ephemeral {e:.3} s, persistent {d:.3} s ({:.0} MB/s); persistent runs {:.3}-{:.3} s",
        text / d / 1e6,
        range(&dur).0,
        range(&dur).1
    );
    report.row(
        format!("ingest `seq 1 {n}` persistent vs raw pipe (median of {runs})"),
        format!("{d:.3} s: {:.2} of pipe throughput", b / d),
        format!("`seq | cat > /dev/null` {b:.3} s"),
        ">= 0.8",
        Some(b / d >= 0.8),
    );
    report.row(
        "ingest persistent vs ephemeral",
        format!("{:.2} of ephemeral throughput", e / d),
        format!("`--ephemeral` {e:.3} s"),
        ">= 0.9",
        Some(e / d >= 0.9),
    );
    let (eh, dh) = (median(&eph_hwm), median(&dur_hwm));
    report.row(
        "server peak RSS (VmHWM), median",
        format!("persistent {} ({:.2}x text)", mb(dh), dh / text),
        format!("ephemeral {}", mb(eh)),
        "persistent <= ephemeral",
        Some(dh <= eh),
    );
    let f = files.expect("at least one persistent run");
    let sum = f.data + f.meta;
    println!(
        "log files: {} segments, .log {} B, .meta {} B (sum {} B), du {} B, for {read} B read",
        f.segments, f.data, f.meta, sum, f.du
    );
    report.row(
        "log on disk: data vs bytes read",
        format!("{:.3}x ({})", f.data as f64 / read as f64, mb(f.data as f64)),
        format!("{} read", mb(read as f64)),
        "<= 1.1x",
        Some(f.data as f64 <= 1.1 * read as f64),
    );
    report.row(
        "log on disk: index per line",
        format!("{:.4} B/line (.meta)", f.meta as f64 / n as f64),
        String::new(),
        "small",
        None,
    );
    report.row(
        "log on disk: both files / du",
        format!(
            "{} = {:.2}x read / du {} = {:.2}x",
            mb(sum as f64),
            sum as f64 / read as f64,
            mb(f.du as f64),
            f.du as f64 / read as f64
        ),
        String::new(),
        "",
        None,
    );
}

/// Workflows of the synthetic history.
const WORKFLOWS: usize = 10;

fn history_config() -> Value {
    let workflows: Vec<Value> = (0..WORKFLOWS)
        .map(|w| json!({"name": format!("build-{w}"), "command": ["true"]}))
        .collect();
    // Retention must keep them all, or startup forgets all but the default 1000 (or the oldest past 10 GiB of
    // logs, at 100,000).
    json!({
        "limits": {"retain_executions": 1_000_000, "log_disk_bytes_total": 1u64 << 40},
        "workflows": workflows
    })
}

/// The final state of synthetic execution `i`: 10 % failed, 2 % cancelled, 0.1 % timed out, the rest succeeded.
fn state_of(i: usize) -> ExecutionState {
    if i % 1000 == 7 {
        ExecutionState::TimedOut
    } else if i % 10 == 3 {
        ExecutionState::Failed
    } else if i % 50 == 1 {
        ExecutionState::Cancelled
    } else {
        ExecutionState::Succeeded
    }
}

/// A state directory holding `count` finished executions, written through the store's own API (insert,
/// started, finished) as the engine writes them. Returns the seconds it took.
fn build_history(dir: &Path, count: usize) -> f64 {
    let start = Instant::now();
    let (store, _) = Store::open(dir).expect("open the state dir");
    let owner = store.instance().to_string();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    for i in 0..count {
        let workflow = format!("build-{}", i % WORKFLOWS);
        let mut params = Map::new();
        params.insert("target".into(), json!(format!("x86_64-unknown-linux-gnu-{}", i % 7)));
        params.insert("jobs".into(), json!(4));
        let created_at = now - (count - i) as i64 * 1000;
        let id = Uuid::new_v4();
        store
            .insert(&ExecutionRecord {
                params,
                cwd: "/home/dev/project".into(),
                ..ExecutionRecord::queued(
                    id,
                    &workflow,
                    vec![
                        "/usr/bin/make".into(),
                        "-j4".into(),
                        format!("TARGET=x86_64-unknown-linux-gnu-{}", i % 7),
                    ],
                    &owner,
                    created_at,
                )
            })
            .expect("a new record");
        store.update(
            id,
            Change::Started {
                state: ExecutionState::Running,
                pid: Some(10_000 + i as u32),
                pid_start: Some(1_000_000 + i as u64),
                started_at: Some(created_at + 3),
                job: None,
            },
        );
        let state = state_of(i);
        let lines = 200 + (i as u64 * 37) % 5000;
        let output = OutputSummary {
            stdout: StreamCounters {
                lines,
                bytes: lines * 60,
            },
            stderr: StreamCounters {
                lines: lines / 20,
                bytes: lines * 4,
            },
            last_seq: Some(lines + lines / 20 - 1),
            last_output_at: Some(workflow_mcp::clock::rfc3339(
                UNIX_EPOCH + Duration::from_millis((created_at + 900) as u64),
            )),
            ..OutputSummary::default()
        };
        let failed = state == ExecutionState::Failed;
        store.update(
            id,
            Change::Finished {
                state,
                exit_code: if failed { Some(2) } else { Some(0) }.filter(|_| state != ExecutionState::TimedOut),
                signal: (state == ExecutionState::TimedOut || state == ExecutionState::Cancelled).then_some(15),
                error: None,
                finished_at: created_at + 950,
                output,
                progress: None,
                held_open: Vec::new(),
                log_bytes: lines * 68 + lines * 4,
            },
        );
    }
    store.flush();
    assert_eq!(store.count().unwrap(), count);
    store.retire();
    start.elapsed().as_secs_f64()
}

/// Spawns the server and speaks raw JSON-RPC: initialize, notifications/initialized, tools/list. Returns the
/// seconds from the spawn to the tools/list answer, and from closing its stdin to its exit.
fn time_startup(config: &Path, state_dir: Option<&Path>) -> (f64, f64) {
    let start = Instant::now();
    let mut cmd = Command::new(util::server_bin());
    cmd.arg("--config").arg(config);
    match state_dir {
        Some(d) => cmd.arg("--state-dir").arg(d),
        None => cmd.arg("--ephemeral"),
    };
    let mut child = cmd
        .env("WORKFLOW_MCP_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn workflow-mcp");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut recv = |id: u64| -> Value {
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read the server's stdout");
        let msg: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"));
        assert_eq!(msg["id"], id, "{msg}");
        msg
    };
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}});
    writeln!(stdin, "{init}").unwrap();
    recv(0);
    writeln!(
        stdin,
        "{}",
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
    )
    .unwrap();
    writeln!(stdin, "{}", json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).unwrap();
    let tools = recv(1);
    let elapsed = start.elapsed().as_secs_f64();
    assert!(!tools["result"]["tools"].as_array().unwrap().is_empty());
    let closing = Instant::now();
    drop(stdin);
    assert!(child.wait().unwrap().success());
    (elapsed, closing.elapsed().as_secs_f64())
}

async fn startup(history: &Path, count: usize, runs: u64, place: &Place, report: &mut Report) {
    println!("## startup: spawn to the first tools/list answer (median of {runs})");
    let (_dir, config) = util::write_config("bench-startup", &history_config());
    let existing_empty = place.dir("startup-empty");
    time_startup(&config, Some(&existing_empty));
    let full = format!("{count} executions");
    let cases = ["ephemeral", "new state dir", "empty state dir", full.as_str()];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut exits: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for run in 0..runs {
        let fresh = place.dir("startup-new");
        let dirs = [
            None,
            Some(fresh.as_path()),
            Some(existing_empty.as_path()),
            Some(history),
        ];
        // Rotate the order, so no case always runs first.
        for k in 0..cases.len() {
            let c = (k + run as usize) % cases.len();
            let (t, exit) = time_startup(&config, dirs[c]);
            times[c].push(t);
            exits[c].push(exit);
        }
    }
    for (c, name) in cases.iter().enumerate() {
        let (lo, hi) = range(&times[c]);
        println!(
            "{name}: median {} (runs {}-{}); exit after stdin closes: median {}",
            ms(median(&times[c])),
            ms(lo),
            ms(hi),
            ms(median(&exits[c]))
        );
    }
    let t = median(&times[3]);
    report.row(
        format!("startup to first tools/list, {count} executions in history"),
        ms(t),
        format!(
            "ephemeral {}, new state dir {}, empty state dir {}",
            ms(median(&times[0])),
            ms(median(&times[1])),
            ms(median(&times[2]))
        ),
        "<= 200 ms",
        Some(t <= 0.2),
    );
}

fn time_n<R>(iters: u32, mut f: impl FnMut() -> R) -> (f64, R) {
    let start = Instant::now();
    let mut r = f();
    for _ in 1..iters {
        r = f();
    }
    (start.elapsed().as_secs_f64() / f64::from(iters), r)
}

async fn list(history: &Path, count: usize, report: &mut Report) {
    println!("## list_executions over {count} executions");
    let (_dir, config_path) = util::write_config("bench-list", &history_config());
    let config = workflow_mcp::catalog::config::load(&config_path).unwrap();
    let app = App::build(&config, None, &HistoryPlace::Dir(history.to_owned())).expect("build the app");
    let engine = &app.engine;
    let store = engine.history().expect("a history").clone();
    let cases: [(&str, ListFilter, Value); 4] = [
        (
            "no filter",
            ListFilter {
                limit: 20,
                ..ListFilter::default()
            },
            json!({"limit": 20}),
        ),
        (
            "workflow filter (10 %)",
            ListFilter {
                workflow: Some("build-3".into()),
                limit: 20,
                ..ListFilter::default()
            },
            json!({"limit": 20, "workflow": "build-3"}),
        ),
        (
            "state filter: failed (10 %)",
            ListFilter {
                state: Some(ExecutionState::Failed),
                limit: 20,
                ..ListFilter::default()
            },
            json!({"limit": 20, "state": "failed"}),
        ),
        (
            "state filter: timed_out (0.1 %)",
            ListFilter {
                state: Some(ExecutionState::TimedOut),
                limit: 20,
                ..ListFilter::default()
            },
            json!({"limit": 20, "state": "timed_out"}),
        ),
    ];
    // Where the time goes: the retention check every list runs first, then the store's query.
    let rules = PruneRules {
        keep: config.limits.retain_executions,
        max_age: Duration::from_secs(config.limits.retain_seconds),
        max_log_bytes: config.limits.log_disk_bytes_total,
    };
    let (prune, forgotten) = time_n(100, || store.prune(rules));
    assert!(forgotten.is_empty());
    println!("retention check alone (Store::prune, nothing to forget): {}", us(prune));
    let (count_all, n) = time_n(100, || store.count().unwrap());
    assert_eq!(n, count);
    println!("count(*) alone (Store::count, used for `retained`): {}", us(count_all));
    let mut server_side = Vec::new();
    for (name, filter, _) in &cases {
        let state = filter.state.map(ExecutionState::as_str);
        let (q, (rows, _)) = time_n(100, || {
            store.list(filter.workflow.as_deref(), state, filter.limit).unwrap()
        });
        let start = Instant::now();
        let mut listed = engine.list(filter).await.unwrap();
        for _ in 1..100 {
            listed = engine.list(filter).await.unwrap();
        }
        let (t, (statuses, total)) = (start.elapsed().as_secs_f64() / 100.0, listed);
        assert_eq!(statuses.len(), rows.len());
        println!(
            "{name}: engine.list {} ({} of {total}); of which Store::list {}",
            us(t),
            statuses.len(),
            us(q)
        );
        server_side.push(t);
    }
    store.retire();
    drop(app);
    let worst = server_side.iter().copied().fold(0.0, f64::max);
    report.row(
        format!("list_executions limit 20 over {count}, server-side (4 filters)"),
        cases
            .iter()
            .zip(&server_side)
            .map(|((name, ..), t)| format!("{name} {}", ms(*t)))
            .collect::<Vec<_>>()
            .join(", "),
        format!("Store::prune {}", ms(prune)),
        "<= 20 ms",
        Some(worst <= 0.02),
    );

    let s = Server::builder("bench-list-mcp", history_config())
        .state_dir(history)
        .env(QUIET)
        .spawn()
        .await;
    let mut over_mcp = Vec::new();
    for (name, _, args) in &cases {
        let start = Instant::now();
        let mut out = Value::Null;
        for _ in 0..20 {
            out = s.ok("list_executions", args.clone()).await;
        }
        let t = start.elapsed().as_secs_f64() / 20.0;
        println!(
            "over MCP, {name}: {} per call ({} executions of {})",
            ms(t),
            out["executions"].as_array().map_or(0, Vec::len),
            out["total"]
        );
        over_mcp.push(format!("{name} {}", ms(t)));
    }
    s.client.cancel().await.ok();
    report.row(
        "list_executions over MCP (reference)",
        over_mcp.join(", "),
        String::new(),
        "",
        None,
    );
}

/// A 10M-line log on disk (a persistent run of `count`), with the server that ran it still up.
async fn persistent_log(n: u64, place: &Place) -> (Server, PathBuf, String) {
    let state = place.dir("page");
    let s = Server::builder("bench-page", count_config())
        .state_dir(&state)
        .env(QUIET)
        .spawn()
        .await;
    let (_, st) = timed_count(&s, n).await;
    let id = st["execution_id"].as_str().unwrap().to_owned();
    (s, state, id)
}

async fn mcp_pages(s: &Server, id: &str, n: u64) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for (name, args) in [
        (
            "mid-log page",
            json!({"execution_id": id, "since_seq": n / 2, "max_lines": 200}),
        ),
        ("tail 200", json!({"execution_id": id, "tail": 200})),
    ] {
        let start = Instant::now();
        for _ in 0..50 {
            s.ok("get_logs", args.clone()).await;
        }
        out.push((name.to_owned(), start.elapsed().as_secs_f64() / 50.0));
    }
    out
}

async fn page(n: u64, place: &Place, report: &mut Report) {
    println!("## a 200-line page of the on-disk {n}-line log");
    let (owner, state, id) = persistent_log(n, place).await;
    let dir = LogDir::open(&state.join("logs").join(&id));
    let iters = 200;
    let mid = LogQuery {
        since_seq: Some(n / 2),
        max_lines: 200,
        ..LogQuery::default()
    };
    let tail = LogQuery {
        tail: Some(200),
        max_lines: 200,
        ..LogQuery::default()
    };
    let (listing, snap) = time_n(iters, || Snapshot::from_disk(&dir));
    println!(
        "Snapshot::from_disk alone: {} ({} segment files, next_seq {})",
        us(listing),
        snap.segments.len(),
        snap.next_seq
    );
    assert_eq!(snap.next_seq, n);
    let mut server_side = Vec::new();
    for (name, q) in [("mid-log page", &mid), ("tail 200", &tail)] {
        let (whole, page) = time_n(iters, || {
            q.run_into(&Snapshot::from_disk(&dir), CompactLines::default())
        });
        assert_eq!(page.lines.text.lines().count(), 200, "{name}");
        // The same query on a snapshot whose segment is already loaded: the query alone.
        let warm = Snapshot::from_disk(&dir);
        q.run_into(&warm, CompactLines::default());
        let (query, _) = time_n(iters * 10, || q.run_into(&warm, CompactLines::default()));
        println!(
            "{name}: from_disk + query {} (of which the query on a loaded segment {}; the rest lists the files and reads one segment)",
            us(whole),
            us(query)
        );
        server_side.push((name, whole));
    }
    let worst = server_side.iter().map(|(_, t)| *t).fold(0.0, f64::max);
    report.row(
        format!("200-line page of the on-disk {n}-line log, server-side (from_disk + query)"),
        server_side
            .iter()
            .map(|(name, t)| format!("{name} {}", ms(*t)))
            .collect::<Vec<_>>()
            .join(", "),
        format!("from_disk alone {}", ms(listing)),
        "<= 2 ms",
        Some(worst <= 0.002),
    );

    // A grep over the whole log read from its files (every segment read back and its index rebuilt), next to the
    // same grep over the same lines held in memory.
    let grep = LogQuery {
        grep: Some(regex::bytes::Regex::new("99999$").unwrap()),
        max_lines: 10_000,
        max_bytes: 1 << 20,
        ..LogQuery::default()
    };
    let grep_all = |snap: &Snapshot| {
        let mut q = grep.clone();
        let mut found = 0;
        loop {
            let p = q.run_into(snap, CompactLines::default());
            found += p.lines.text.lines().count();
            if !p.has_more {
                return found;
            }
            q.since_seq = Some(p.next_seq);
        }
    };
    let (from_files, found) = time_n(3, || grep_all(&Snapshot::from_disk(&dir)));
    let loaded = Snapshot::from_disk(&dir);
    grep_all(&loaded);
    let (in_memory, _) = time_n(3, || grep_all(&loaded));
    let text = text_bytes(n) as f64;
    println!(
        "grep /99999$/ over the whole log ({found} matches): from its files {:.3} s = {:.0} MB/s, loaded in memory {:.3} s = {:.0} MB/s",
        from_files,
        text / from_files / 1e6,
        in_memory,
        text / in_memory / 1e6
    );
    report.row(
        format!("grep over the whole on-disk {n}-line log, read from its files"),
        format!(
            "{:.0} MB/s ({:.2} of in memory)",
            text / from_files / 1e6,
            in_memory / from_files
        ),
        format!("the same lines in memory {:.0} MB/s", text / in_memory / 1e6),
        "",
        None,
    );

    let live = mcp_pages(&owner, &id, n).await;
    owner.client.cancel().await.ok();
    // Another server on the same state directory reads the log from its files alone.
    let other = Server::builder("bench-page-other", count_config())
        .state_dir(&state)
        .env(QUIET)
        .spawn()
        .await;
    let stored = mcp_pages(&other, &id, n).await;
    other.client.cancel().await.ok();
    let fmt = |v: &[(String, f64)]| {
        v.iter()
            .map(|(name, t)| format!("{name} {}", ms(*t)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("over MCP, the server that ran it: {}", fmt(&live));
    println!("over MCP, another server on the state dir: {}", fmt(&stored));
    report.row(
        "the same over MCP get_logs (reference)",
        format!("server that ran it: {}; another server: {}", fmt(&live), fmt(&stored)),
        String::new(),
        "",
        None,
    );
}

/// A server spoken to with raw JSON-RPC lines.
struct RawChild {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    stdout: BufReader<std::process::ChildStdout>,
}

impl RawChild {
    /// Spawns the server on `state_dir`; returns it and the seconds from the spawn to its `initialize` answer.
    fn start(config: &Path, state_dir: &Path) -> (RawChild, f64) {
        let start = Instant::now();
        let mut child = Command::new(util::server_bin())
            .arg("--config")
            .arg(config)
            .arg("--state-dir")
            .arg(state_dir)
            .env("WORKFLOW_MCP_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn workflow-mcp");
        let mut s = RawChild {
            stdin: child.stdin.take(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            child,
        };
        s.send(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}}));
        assert_eq!(s.recv()["id"], 0);
        let took = start.elapsed().as_secs_f64();
        s.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        (s, took)
    }

    fn send(&mut self, msg: &Value) {
        writeln!(self.stdin.as_mut().unwrap(), "{msg}").unwrap();
    }

    fn recv(&mut self) -> Value {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read the server's stdout");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"))
    }

    /// Starts `n` executions of `held`, in batches, reading the answers between them (any order).
    fn execute(&mut self, n: usize) {
        let mut id = 100;
        let mut left = n;
        while left > 0 {
            let batch = left.min(100);
            for _ in 0..batch {
                id += 1;
                self.send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                    "params": {"name": "execute_workflow", "arguments": {"workflow": "held"}}}));
            }
            for _ in 0..batch {
                let r = self.recv();
                assert!(r["result"]["isError"] != true, "{r}");
            }
            left -= batch;
        }
    }

    /// Stops it (None: closes its stdin; else sends the signal); returns the seconds until it exited.
    fn stop(mut self, signal: Option<i32>) -> f64 {
        let start = Instant::now();
        match signal {
            None => self.stdin = None,
            // SAFETY: signalling our own child.
            Some(sig) => unsafe {
                libc::kill(self.child.id() as i32, sig);
            },
        }
        let status = self.child.wait().unwrap();
        assert!(signal == Some(libc::SIGKILL) || status.success(), "{status}");
        start.elapsed().as_secs_f64()
    }
}

/// One queue case: `queued` executions behind one running, stopped with `signal` (None: end of input); returns
/// (seconds to exit, seconds for the next server to answer `initialize`).
fn queue_case(config: &Path, place: &Place, queued: usize, signal: Option<i32>) -> (f64, f64) {
    let dir = place.dir("queue");
    let (mut s, _) = RawChild::start(config, &dir);
    s.execute(queued + 1);
    let exit = s.stop(signal);
    let (next, init) = RawChild::start(config, &dir);
    next.stop(None);
    (exit, init)
}

async fn queue(queued: usize, runs: u64, place: &Place, report: &mut Report) {
    println!("## queue: {queued} executions queued behind one running (median of {runs})");
    let (_dir, config) = util::write_config(
        "bench-queue",
        &json!({"limits": {"max_concurrent": 1, "max_queued": queued + 10},
                "workflows": [util::wf("held", &["hold"])]}),
    );
    let cases: [(&str, Option<i32>); 3] = [
        ("end of input", None),
        ("SIGTERM", Some(libc::SIGTERM)),
        ("SIGKILL", Some(libc::SIGKILL)),
    ];
    for (name, signal) in cases {
        let (mut exits, mut inits, mut base_exits, mut base_inits) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            let (e, i) = queue_case(&config, place, queued, signal);
            exits.push(e);
            inits.push(i);
            let (e, i) = queue_case(&config, place, 0, signal);
            base_exits.push(e);
            base_inits.push(i);
        }
        let (exit, init) = (median(&exits), median(&inits));
        let (base_exit, base_init) = (median(&base_exits), median(&base_inits));
        println!(
            "{name}: exit {} (nothing queued: {}); next server to initialize {} (nothing queued: {})",
            ms(exit),
            ms(base_exit),
            ms(init),
            ms(base_init)
        );
        if signal != Some(libc::SIGKILL) {
            report.row(
                format!("{name} to exit, {queued} queued"),
                ms(exit),
                format!("nothing queued {}", ms(base_exit)),
                "<= 2 s",
                Some(exit <= 2.0),
            );
        }
        report.row(
            format!("next server to initialize after {name}, {queued} were queued"),
            ms(init),
            format!("nothing queued {}", ms(base_init)),
            "<= 200 ms",
            Some(init <= 0.2),
        );
    }
}

/// `resources/list` walked to its last page (50 executions a page) over `count` executions, server-side: the
/// keyset pages `Engine::page` reads (each page reads its 51 records) next to the offset pages it replaced
/// (each page re-read every record before it and one page more), timed in the same run. Returns nothing; adds
/// a row.
async fn resource_pages(history: &Path, count: usize, runs: u64, report: &mut Report) {
    const PAGE: usize = 50;
    println!("## resources/list, every page over {count} executions");
    let (_dir, config_path) = util::write_config("bench-resource-pages", &history_config());
    let config = workflow_mcp::catalog::config::load(&config_path).unwrap();
    let app = App::build(&config, None, &HistoryPlace::Dir(history.to_owned())).expect("build the app");
    let engine = &app.engine;
    let keyset = || async {
        let mut ids = Vec::new();
        let mut after = None;
        loop {
            let mut listed = engine.page(after, PAGE + 1).await.unwrap();
            let more = listed.len() > PAGE;
            listed.truncate(PAGE);
            after = listed.last().map(|(k, _)| *k);
            ids.extend(listed.into_iter().map(|(_, s)| s.execution_id));
            if !more {
                return ids;
            }
        }
    };
    // What resources/list did before keyset paging: read up to `offset + 2 * PAGE`, start after the last id shown.
    let offset_pages = || async {
        let mut ids: Vec<String> = Vec::new();
        loop {
            let (statuses, _) = engine
                .list(&ListFilter {
                    limit: ids.len() + 2 * PAGE,
                    ..ListFilter::default()
                })
                .await
                .unwrap();
            let start = match ids.last() {
                None => 0,
                Some(last) => statuses
                    .iter()
                    .position(|s| &s.execution_id == last)
                    .map_or(ids.len().min(statuses.len()), |p| p + 1),
            };
            let more = statuses.len() > start + PAGE;
            ids.extend(statuses.into_iter().skip(start).take(PAGE).map(|s| s.execution_id));
            if !more {
                return ids;
            }
        }
    };
    let (mut new, mut old) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let start = Instant::now();
        let a = keyset().await;
        new.push(start.elapsed().as_secs_f64());
        let start = Instant::now();
        let b = offset_pages().await;
        old.push(start.elapsed().as_secs_f64());
        assert_eq!(a.len(), count, "every execution listed");
        assert_eq!(a, b, "the same executions in the same order");
    }
    let (new, old) = (median(&new), median(&old));
    println!(
        "keyset: {} for {} pages; offset (before): {}; ratio {:.1}x",
        ms(new),
        count.div_ceil(PAGE),
        ms(old),
        old / new
    );
    drop(app);
    report.row(
        format!(
            "resources/list, all {} pages over {count}, server-side (median of {runs})",
            count.div_ceil(PAGE)
        ),
        format!("keyset {} ({:.1}x faster)", ms(new), old / new),
        format!("offset pages (before) {}", ms(old)),
        "",
        None,
    );
}

fn main() {
    // `cargo bench` passes --bench; any other argument filters nothing here.
    let n = env_num("BENCH_LINES", 10_000_000);
    let runs = env_num("BENCH_RUNS", 5);
    let count = env_num("BENCH_EXECUTIONS", 10_000) as usize;
    let startups = env_num("BENCH_STARTUPS", 10);
    let queued = env_num("BENCH_QUEUED", 6000) as usize;
    let only = std::env::var("BENCH_ONLY").ok();
    let want = |name: &str| only.as_deref().is_none_or(|o| o.split(',').any(|o| o == name));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let place = Place::new();
    let mut report = Report::default();
    rt.block_on(async {
        if want("ingest") {
            ingest(n, runs, &place, &mut report).await;
        }
        if want("page") {
            page(n, &place, &mut report).await;
        }
        if want("queue") {
            queue(queued, runs.min(3), &place, &mut report).await;
        }
        if want("startup") || want("list") || want("resources") {
            let history = place.dir("history-10k");
            let built = build_history(&history, count);
            let db = std::fs::metadata(history.join("history.db")).map_or(0, |m| m.len());
            println!(
                "## a state dir with {count} finished executions, written with Store::insert + update in {built:.2} s (history.db {})",
                mb(db as f64)
            );
            if want("startup") {
                startup(&history, count, startups, &place, &mut report).await;
            }
            if want("list") {
                list(&history, count, &mut report).await;
            }
            if want("resources") {
                resource_pages(&history, count, runs.min(5), &mut report).await;
            }
        }
    });
    report.print();
}
