//! The engine's side of the durable history: the record of each execution (written when it is created, when it
//! starts, while it runs, and — committed before anyone sees it — when it ends), retention, and marking executions
//! whose server is gone as lost. Every start and end recorded here also wakes the watchers of the engine's
//! changes, with or without a history.

use std::sync::Arc;

use tokio::sync::watch;
use uuid::Uuid;

use super::config::EngineConfig;
use super::execution::{Execution, ExecutionState, Lifecycle, StopReason};
use crate::clock::unix_ms;
use crate::proc::scan::{RecordedTree, signal_recorded_trees};
use crate::store::{Change, ExecutionRecord, PruneRules, Role, Store};

/// The history (unless the server runs ephemeral), its retention rules, and the change signal.
pub(super) struct Records {
    history: Option<Arc<Store>>,
    rules: PruneRules,
    /// Bumped when an execution is added, starts or ends here (see `Engine::changes`).
    changes: watch::Sender<u64>,
}

impl Records {
    pub(super) fn new(history: Option<Arc<Store>>, config: &EngineConfig) -> Self {
        Records {
            history,
            rules: PruneRules {
                keep: config.retain_executions,
                max_age: config.retain_age,
                max_log_bytes: config.retain_log_bytes,
            },
            changes: watch::channel(0).0,
        }
    }

    /// The history, unless the server runs ephemeral.
    pub(super) fn history(&self) -> Option<&Arc<Store>> {
        self.history.as_ref()
    }

    /// Wakes the watchers of the engine's changes.
    pub(super) fn changed(&self) {
        self.changes.send_modify(|g| *g = g.wrapping_add(1));
    }

    pub(super) fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

impl Records {
    /// The record of a new execution.
    pub(super) fn record_of(&self, exec: &Execution) -> ExecutionRecord {
        let owner = self
            .history
            .as_ref()
            .map(|h| h.instance().to_string())
            .unwrap_or_default();
        ExecutionRecord {
            params: exec.params.clone(),
            cwd: exec.launch.cwd.display().to_string(),
            idempotency_key: exec.idempotency_key.clone(),
            ..ExecutionRecord::queued(
                exec.id,
                &exec.workflow.name,
                exec.launch.argv.clone(),
                &owner,
                unix_ms(exec.created_at),
            )
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

    /// Records an execution's final state, then applies retention. (Its caller publishes the state, then tells
    /// the watchers of changes: woken before, one would find it still running.)
    pub(super) fn record_final(&self, exec: &Execution, last: &Lifecycle) {
        let Some(history) = &self.history else {
            return;
        };
        // Committed before anyone sees it final: the history and this process never disagree on an end.
        history.update_now(exec.id, final_change(exec, last));
        self.prune();
    }

    /// Ends queued executions that never started (at shutdown): each decided final, all their records in one
    /// transaction, and only then is each final for anyone reading it. The caller applies retention once after.
    /// (One write and one retention pass each made 6000 of them take 13.6 s.)
    pub(super) fn end_unstarted_all(&self, queued: &[Arc<Execution>], reason: StopReason) {
        let ended: Vec<(&Arc<Execution>, Lifecycle)> = queued
            .iter()
            .filter_map(|e| Some((e, e.decide_unstarted_end(reason, e.stop_message(reason))?)))
            .collect();
        if let Some(history) = &self.history
            && !ended.is_empty()
        {
            history.update_all_now(ended.iter().map(|(e, last)| (e.id, final_change(e, last))).collect());
        }
        for (e, last) in ended {
            e.publish_final(last);
        }
        self.changed();
    }

    /// Applies the history's retention.
    pub(super) fn prune(&self) {
        let Some(history) = &self.history else {
            return;
        };
        // The history deletes their files with them: log folders, and job folders a crash left behind.
        history.prune(self.rules);
    }

    /// Marks an execution whose server is gone as lost, after killing what is left of its processes (see
    /// [`Records::lose_all`]).
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
        // Asked once per owner: a crashed server's whole queue shares one.
        let mut owners = std::collections::HashMap::new();
        let lost = recs
            .iter()
            .map(|rec| {
                let role = *owners
                    .entry(rec.owner.as_str())
                    .or_insert_with(|| self.history.as_ref().map_or(Role::Server, |h| h.owner_role(&rec.owner)));
                let error = format!(
                    "the {} that ran it (instance {}) ended while it {}; its output up to that moment is kept",
                    role.as_str(),
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
fn final_change(exec: &Execution, life: &Lifecycle) -> Change {
    let status = exec.status(None);
    Change::Finished {
        state: life.state,
        exit_code: life.exit_code,
        signal: life.signal,
        error: life.error.clone(),
        finished_at: life.finished_at.map_or_else(crate::store::now_ms, unix_ms),
        output: status.output,
        progress: status.progress,
        held_open: life.held_open.clone(),
        log_bytes: exec.logs_buffer.stats().disk_bytes,
    }
}
