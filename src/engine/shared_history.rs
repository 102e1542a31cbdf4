//! The history's other servers: stop requests and progress exchanged through it while executions run, signalling
//! the tree of an execution another server process runs, and following again one whose server is gone.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::execution::{Execution, ExecutionState};
use super::executor::{Executor, blocking};
use super::follow::history_notice;
use crate::catalog::WorkflowDef;
use crate::clock::from_unix_ms;
use crate::logs::{DiskLimits, ExecutionLog, LogDir};
use crate::proc::notify::Notice;
use crate::proc::scan::{is_same_process, signal_tree};
use crate::proc::signal::PidFd;
use crate::runtime::{Launch, RemoteJob};
use crate::store::{Change, ExecutionRecord};

/// Signals the tree of an execution known from history, once its leader is known to be its own (pid, start
/// time and marker); false when it is not. The leader is held by a pidfd opened before the check, so the
/// process checked is the process signalled even if its pid is reused in between.
pub(super) fn signal_stored_tree(pid: u32, start: u64, marker: &str, sig: i32) -> bool {
    let leader = match PidFd::open(pid) {
        Ok(leader) => Some(leader),
        // A kernel without pidfds (before 5.3): the check and the signal by pid alone.
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => None,
        Err(_) => return false,
    };
    if !is_same_process(pid, start, marker) {
        return false;
    }
    // The group first, while the checked leader keeps its id from being reused.
    signal_tree(pid, marker, sig);
    if let Some(leader) = leader {
        let _ = leader.signal(sig);
    }
    true
}

/// How often the tick applies retention (starts, ends and startup apply it too).
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Returns when `notice` rings (never without one).
async fn rung(notice: &mut Option<Notice>) {
    match notice {
        Some(notice) => notice.changed().await,
        None => std::future::pending().await,
    }
}

/// What woke [`record_progress`].
enum Woke {
    Written,
    Changed,
    Tick,
}

/// Writes the counters and progress of running executions to the history once a second, when they changed,
/// acts on the stops other processes ask for as soon as they write them to the history (and at each tick, where
/// the history cannot be watched), and applies retention once a minute — on a blocking thread, never inside a
/// read: a pass may delete many log folders.
pub(super) async fn record_progress(executor: Arc<Executor>) {
    let mut last: std::collections::HashMap<Uuid, (u64, u64)> = std::collections::HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut pruned_at = tokio::time::Instant::now();
    let mut written = executor
        .records()
        .history()
        .and_then(|h| history_notice(&h.history_files()));
    let mut changes = executor.records().changes();
    loop {
        // Writes to the history are listened for only while this process runs an execution that whoever asks for
        // its stop cannot signal itself: a queued one, or a remote job. A local process is signalled by the asker
        // (its owner learns the reason when it ends), so listening for it would wake every process on the state
        // directory — every detached execution's supervisor — at every write anyone makes.
        let listen = executor.table().unfinished().iter().any(|e| e.life().pid.is_none());
        let woke = tokio::select! {
            // A write heard is told as such even when the tick is due too.
            biased;
            () = rung(&mut written), if listen => Woke::Written,
            Ok(()) = changes.changed() => Woke::Changed,
            _ = tick.tick() => Woke::Tick,
            _ = executor.shutdown_token().cancelled() => return,
        };
        let ticked = match woke {
            // What runs here changed: whether to listen is decided again.
            Woke::Changed => continue,
            Woke::Written => false,
            Woke::Tick => true,
        };
        let Some(history) = executor.records().history() else {
            return;
        };
        // Stops another process asked for (it also signals them itself, when it can see them).
        let asked = {
            let history = history.clone();
            blocking(move || history.stop_requests()).await.unwrap_or_default()
        };
        for (id, reason) in asked {
            let exec = executor.table().get(&id);
            if let Some(exec) = exec
                && exec.stop_reason().is_none()
            {
                tracing::debug!(
                    execution = %id,
                    heard = if ticked { "at the tick" } else { "when the history was written" },
                    "stopping an execution another process asked to stop"
                );
                let (executor, grace) = (executor.clone(), executor.config().grace);
                tokio::spawn(async move { executor.stop_live(&exec, reason, grace).await });
            }
        }
        if !ticked {
            continue;
        }
        if pruned_at.elapsed() >= PRUNE_EVERY {
            pruned_at = tokio::time::Instant::now();
            let executor = executor.clone();
            drop(tokio::task::spawn_blocking(move || executor.records().prune()));
        }
        let running: Vec<Arc<Execution>> = executor
            .table()
            .unfinished()
            .into_iter()
            .filter(|e| e.state() == ExecutionState::Running)
            .collect();
        last.retain(|id, _| running.iter().any(|e| e.id == *id));
        for exec in running {
            let stats = exec.logs_buffer.stats();
            let events = exec.progress.snapshot().map_or(0, |p| p.events + p.malformed_events);
            let key = (stats.stdout.bytes + stats.stderr.bytes, events);
            if last.get(&exec.id) == Some(&key) {
                continue;
            }
            last.insert(exec.id, key);
            let status = exec.status(None);
            history.update(
                exec.id,
                Change::Progress {
                    output: status.output,
                    progress: status.progress,
                    log_bytes: stats.disk_bytes,
                },
            );
        }
    }
}

/// What came of trying to follow again an execution whose server is gone.
pub(super) enum Reattach {
    /// Followed again from here.
    Followed,
    /// Another server took it over first.
    TakenOver,
    /// Nothing to follow: not a remote job, or its workflow no longer runs on that runtime.
    NotRemote,
    /// A remote job that cannot be followed (why, in words).
    Unfollowable(String),
}

/// Takes over and follows again an execution whose server is gone, when it runs on a remote engine that still
/// knows it and its workflow still runs there.
pub(super) fn reattach(
    executor: &Arc<Executor>,
    rec: &ExecutionRecord,
    workflow_of: &dyn Fn(&str) -> Option<Arc<WorkflowDef>>,
) -> Reattach {
    let (Some(history), Some(job)) = (executor.records().history(), rec.job.as_ref()) else {
        return Reattach::NotRemote;
    };
    // Only by the kind of runtime it was started on: a workflow moved elsewhere leaves it to be lost.
    let Some(def) = workflow_of(&rec.workflow).filter(|d| d.placement.kind() == job.system) else {
        return Reattach::NotRemote;
    };
    if !history.claim(&rec.id, &rec.owner) {
        return Reattach::TakenOver;
    }
    let launch = Launch {
        argv: rec.argv.clone(),
        env: Default::default(),
        cwd: rec.cwd.clone().into(),
        marker: rec.id.to_string(),
        placement: def.placement.clone(),
        timeout: def
            .timeout_ms
            .map(Duration::from_millis)
            .or(executor.config().default_timeout),
    };
    let disk = DiskLimits {
        dir: LogDir::open(&history.log_path(&rec.id)),
        max_bytes: executor.config().log_disk_bytes,
    };
    let (logs, offsets) = ExecutionLog::resume(executor.config().log_limits, executor.budget().clone(), disk);
    let remote = RemoteJob {
        system: job.system.clone(),
        id: job.id.clone(),
        dir: job.dir.clone().map(Into::into),
    };
    let started = match executor.runtime().reattach(&launch, &remote, offsets) {
        Ok(started) => started,
        Err(why) => return Reattach::Unfollowable(format!("cannot follow job {} again: {why}", job.id)),
    };
    let exec = Execution::new(
        rec.id,
        def,
        rec.params.clone(),
        launch,
        rec.idempotency_key.clone(),
        logs,
    )
    .restored(from_unix_ms(rec.created_at), rec.started_at.map(from_unix_ms));
    executor.table().attach(exec.clone());
    exec.started(None, started.job.clone(), started.pending, started.tree.clone());
    executor.records().record_started(&exec, None);
    tracing::info!(execution = %exec.id, job = %job.id, runtime = %job.system, "following a job again after its server ended");
    executor.follow(exec, started);
    Reattach::Followed
}
