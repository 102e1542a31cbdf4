//! What the engine writes to and reads from the durable history: the record of each execution (written when
//! it is created, when it starts, once a second while it runs, and — committed before anyone sees it — when it
//! ends), retention, executions whose server is gone, and stopping an execution another server process runs.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::execution::{Execution, ExecutionState, StopReason};
use super::runner::{Engine, Shared, blocking, lock};
use super::status::JobStatus;
use super::view::{ExecutionView, StoredExecution};
use crate::catalog::WorkflowDef;
use crate::clock::{from_unix_ms, unix_ms};
use crate::logs::{DiskLimits, ExecutionLog, LogDir};
use crate::proc::scan::{RecordedTree, is_same_process, signal_recorded_trees, signal_tree};
use crate::proc::signal::PidFd;
use crate::runtime::{Launch, RemoteJob};
use crate::store::{Change, ExecutionRecord, PruneRules};

/// Signals the tree of an execution known from history, once its leader is known to be its own (pid, start
/// time and marker); false when it is not. The leader is held by a pidfd opened before the check, so the
/// process checked is the process signalled even if its pid is reused in between.
fn signal_stored_tree(pid: u32, start: u64, marker: &str, sig: i32) -> bool {
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

impl Engine {
    pub(super) async fn stop_stored(
        &self,
        rec: &ExecutionRecord,
        reason: StopReason,
        grace: Duration,
    ) -> Result<(), String> {
        let Some(history) = self.shared.history.clone() else {
            return Ok(());
        };
        if !rec.unfinished() {
            return Ok(());
        }
        let view = ExecutionView::Stored(Arc::new(StoredExecution {
            logs: LogDir::open(&history.log_path(&rec.id)),
            record: rec.clone(),
        }));
        let (id, pid, start) = (rec.id, rec.pid, rec.pid_start);
        let signal = move |sig: i32| -> bool {
            match (pid, start) {
                (Some(pid), Some(start)) => signal_stored_tree(pid, start, &id.to_string(), sig),
                _ => false,
            }
        };
        {
            let history = history.clone();
            blocking(move || history.request_stop(&id, reason)).await;
        }
        if rec.state == ExecutionState::Running && blocking(move || signal(libc::SIGTERM)).await != Some(true) {
            // Not started yet, or not a process we can see: its owner acts on the request.
            tracing::info!(execution = %id, owner = %rec.owner, "asked the owning server to stop an execution");
        }
        let never = CancellationToken::new();
        if self.wait_final(&view, grace, &never).await {
            return Ok(());
        }
        blocking(move || signal(libc::SIGKILL)).await;
        if self.wait_final(&view, Duration::from_secs(10), &never).await {
            return Ok(());
        }
        Err(format!(
            "execution {id} is run by another server process (instance {}, pid {}) that has not ended it yet; its \
             stop was requested — get_status shows when it ends",
            rec.owner,
            rec.pid.map_or_else(|| "unknown".to_owned(), |p| p.to_string())
        ))
    }
}

impl Shared {
    /// The record of a new execution.
    pub(super) fn record_of(&self, exec: &Execution) -> ExecutionRecord {
        ExecutionRecord {
            id: exec.id,
            workflow: exec.workflow.name.clone(),
            params: exec.params.clone(),
            argv: exec.launch.argv.clone(),
            cwd: exec.launch.cwd.display().to_string(),
            idempotency_key: exec.idempotency_key.clone(),
            state: ExecutionState::Queued,
            exit_code: None,
            signal: None,
            error: None,
            created_at: unix_ms(exec.created_at),
            started_at: None,
            finished_at: None,
            pid: None,
            pid_start: None,
            owner: self
                .history
                .as_ref()
                .map(|h| h.instance().to_string())
                .unwrap_or_default(),
            stop_request: None,
            output: None,
            progress: None,
            held_open: Vec::new(),
            log_bytes: 0,
            job: None,
            params_bytes: Default::default(),
        }
    }

    /// Records that an execution started.
    pub(super) fn record_started(&self, exec: &Execution, pid: Option<u32>) {
        self.changed();
        if let Some(history) = &self.history {
            let life = exec.life();
            // Committed before the start is answered: another server reading the history sees it running.
            history.update_now(
                exec.id,
                Change::Started {
                    state: life.state,
                    pid,
                    pid_start: pid.and_then(crate::proc::scan::process).map(|p| p.start_time),
                    started_at: life.started_at.map(unix_ms),
                    job: exec.status(None).job,
                },
            );
        }
    }

    /// Records where a remote job stands now.
    pub(super) fn record_job(&self, exec: &Execution) {
        if let Some(history) = &self.history
            && let Some(job) = exec.status(None).job
        {
            let life = exec.life();
            history.update(
                exec.id,
                Change::Job {
                    state: life.state,
                    started_at: life.started_at.map(unix_ms),
                    job,
                },
            );
        }
    }

    /// Records an execution's final state, then applies retention.
    pub(super) fn record_final(&self, exec: &Execution) {
        self.changed();
        let Some(history) = &self.history else {
            return;
        };
        // Committed before anyone sees it final: the history and this process never disagree on an end.
        history.update_now(exec.id, final_change(exec));
        self.prune();
    }

    /// Ends queued executions that never started (at shutdown): each final here, all their records in one
    /// transaction, and only then is anyone waiting on them woken. The caller applies retention once after.
    /// (One write and one retention pass each made 6000 of them take 13.6 s.)
    pub(super) fn end_unstarted_all(&self, queued: &[Arc<Execution>], reason: StopReason) {
        let ended: Vec<&Arc<Execution>> = queued
            .iter()
            .filter(|e| e.end_unstarted_unwoken(reason, super::runner::stop_message(reason, e)))
            .collect();
        if let Some(history) = &self.history
            && !ended.is_empty()
        {
            history.update_all_now(ended.iter().map(|e| (e.id, final_change(e))).collect());
        }
        self.changed();
        for e in ended {
            e.notify();
        }
    }

    /// Applies the history's retention.
    pub(super) fn prune(&self) {
        let Some(history) = &self.history else {
            return;
        };
        // The history deletes their files with them: log folders, and job folders a crash left behind.
        history.prune(PruneRules {
            keep: self.config.retain_executions,
            max_age: self.config.retain_age,
            max_log_bytes: self.config.retain_log_bytes,
        });
    }

    /// Marks an execution whose server is gone as lost, after killing what is left of its processes (see
    /// [`Shared::lose_all`]).
    pub(super) fn lose(&self, rec: &ExecutionRecord) -> Uuid {
        self.lose_all(std::slice::from_ref(rec));
        rec.id
    }

    /// Marks executions whose server is gone as lost, after killing what is left of their processes — a leader
    /// only once its pid, start time and marker all match, so a reused pid is never signalled. Only one that
    /// started can have processes (one killed between its start and its record is the watchdog's): all of
    /// those are looked for in one pass over /proc, and all are marked in one transaction.
    pub(super) fn lose_all(&self, recs: &[ExecutionRecord]) {
        let started: Vec<RecordedTree> = recs
            .iter()
            .filter(|r| r.state != ExecutionState::Queued || r.pid.is_some())
            .map(|r| RecordedTree {
                leader: r.pid.zip(r.pid_start),
                marker: r.id.to_string(),
            })
            .collect();
        if !started.is_empty() {
            signal_recorded_trees(&started, libc::SIGKILL);
        }
        let lost = recs
            .iter()
            .map(|rec| {
                let error = format!(
                    "the server that ran it (instance {}) ended while it {}; its output up to that moment is kept",
                    rec.owner,
                    if rec.state == ExecutionState::Queued {
                        "waited"
                    } else {
                        "ran"
                    }
                );
                (rec.id, error)
            })
            .collect();
        if let Some(history) = &self.history {
            history.mark_lost(lost);
        }
    }
}

/// The record of an execution's end.
fn final_change(exec: &Execution) -> Change {
    let life = exec.life();
    let status = exec.status(None);
    Change::Finished {
        state: life.state,
        exit_code: life.exit_code,
        signal: life.signal,
        error: life.error.clone(),
        finished_at: life.finished_at.map_or_else(crate::store::history::now_ms, unix_ms),
        output: status.output,
        progress: status.progress,
        held_open: life.held_open.clone(),
        log_bytes: exec.logs_buffer.stats().disk_bytes,
    }
}

/// Writes the counters and progress of running executions to the history once a second, when they changed.
pub(super) async fn record_progress(engine: Engine) {
    let mut last: std::collections::HashMap<Uuid, (u64, u64)> = std::collections::HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = engine.shared.shutdown.cancelled() => return,
        }
        let Some(history) = &engine.shared.history else {
            return;
        };
        // Stops another server process asked for (it also signals them itself, when it can see them).
        for (id, reason) in history.stop_requests() {
            let exec = lock(&engine.shared.table).get(&id);
            if let Some(exec) = exec
                && exec.stop_reason().is_none()
            {
                let (engine, grace) = (engine.clone(), engine.shared.config.grace);
                tokio::spawn(async move { engine.stop_live(&exec, reason, grace).await });
            }
        }
        let running: Vec<Arc<Execution>> = lock(&engine.shared.table)
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

impl Shared {
    /// Takes over and follows again an execution whose server is gone, when it runs on a remote engine that
    /// still knows it and its workflow still runs there. `None`: nothing to follow (a local process, or no such
    /// workflow any more); `Err(None)`: another server took it over first; `Err(Some(why))`: it cannot be
    /// followed.
    pub(super) fn reattach(
        self: &Arc<Self>,
        rec: &ExecutionRecord,
        workflow_of: &dyn Fn(&str) -> Option<Arc<WorkflowDef>>,
    ) -> Option<Result<(), Option<String>>> {
        let history = self.history.as_ref()?;
        let job: &JobStatus = rec.job.as_ref()?;
        // Only by the kind of runtime it was started on: a workflow moved elsewhere leaves it to be lost.
        let def = workflow_of(&rec.workflow).filter(|d| d.placement.kind() == job.system)?;
        if !history.claim(&rec.id, &rec.owner) {
            return Some(Err(None));
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
                .or(self.config.default_timeout),
        };
        let disk = DiskLimits {
            dir: LogDir::open(&history.log_path(&rec.id)),
            max_bytes: self.config.log_disk_bytes,
        };
        let (logs, offsets) = ExecutionLog::resume(self.config.log_limits, self.budget.clone(), disk);
        let remote = RemoteJob {
            system: job.system.clone(),
            id: job.id.clone(),
            dir: job.dir.clone().map(Into::into),
        };
        let started = match self.runtime.reattach(&launch, &remote, offsets) {
            Ok(started) => started,
            Err(why) => return Some(Err(Some(format!("cannot follow job {} again: {why}", job.id)))),
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
        lock(&self.table).attach(exec.clone());
        exec.started(None, started.job.clone(), started.pending, started.tree.clone());
        self.record_started(&exec, None);
        tracing::info!(execution = %exec.id, job = %job.id, runtime = %job.system, "following a job again after its server ended");
        self.follow(exec, started);
        Some(Ok(()))
    }
}
