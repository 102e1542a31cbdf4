//! The supervisor thread of an execution: it blocks until the leader exits, clears out what the leader left
//! behind (its group and escaped descendants, as a CI runner does at the end of a job), gives the output
//! streams a short deadline, then settles the final state from the exit status (never from pipe EOF), frees the
//! slot and starts queued executions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::drain::DrainSync;
use super::execution::Execution;
use super::runner::{Shared, lock};
use crate::runtime::{Ended, Tree, Waiter};

/// Polls `done` every 10 ms until it holds or `deadline` passes; returns whether it holds. Blocking.
pub(super) fn wait_until(mut done: impl FnMut() -> bool, deadline: Instant) -> bool {
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Shared {
    pub(super) fn supervise(
        self: Arc<Self>,
        exec: Arc<Execution>,
        waiter: Box<dyn Waiter>,
        tree: Arc<dyn Tree>,
        sync: Arc<DrainSync>,
    ) {
        let on_change = &mut |state| {
            exec.job_state(state);
            self.record_job(&exec);
        };
        match waiter.wait(on_change) {
            Ended::Exited(exit) => exec.exited(Some(exit)),
            Ended::FailedToStart(why) => exec.ended_as(super::execution::ExecutionState::FailedToStart, why),
            Ended::Lost(why) => {
                tracing::error!(execution = %exec.id, "{why}");
                exec.ended_as(super::execution::ExecutionState::Lost, why);
            }
        }
        // Another server process may have asked for the stop (through the history) and signalled the tree.
        if exec.stop_reason().is_none()
            && let Some(history) = &self.history
            && let Some(reason) = history.get(&exec.id).and_then(|r| r.stop_request)
        {
            exec.request_stop(reason, super::runner::stop_message(reason, &exec));
        }
        // During a stop the tree gets the rest of its grace period before what is left is killed.
        if exec.stop_reason().is_some() {
            wait_until(|| tree.gone(), Instant::now() + self.config.grace);
        }
        let leftovers = tree.kill_leftovers();
        let mut open = sync.wait_until(Instant::now() + Duration::from_millis(300));
        if !open.is_empty() {
            // Something we could not attribute (an escaped process that cleared its environment) holds a stream.
            tree.release_outputs();
            open = sync.wait_until(Instant::now() + self.config.drain_grace);
        }
        if !open.is_empty() {
            sync.abandon();
            let names: Vec<&str> = open.iter().map(|s| s.as_str()).collect();
            tracing::warn!(
                execution = %exec.id,
                streams = ?names,
                "a process outside our reach keeps the workflow's output open; stopped reading it"
            );
            exec.held_open(open);
        }
        // Nothing was left behind (the common case) when the one scan found no one.
        if !leftovers || wait_until(|| tree.gone(), Instant::now() + Duration::from_secs(2)) {
            tree.forget();
        } else {
            tracing::warn!(execution = %exec.id, "processes of the workflow survived SIGKILL");
        }
        // The queued executions that take its slot start before it is seen as finished: whoever sees it end
        // sees its successors running, never a moment with a free slot and a waiting queue. Its end time is
        // taken first, so no successor's start comes before it.
        exec.ending();
        let started = self.release(&exec);
        for s in started {
            let _ = s.recv();
        }
        self.settle(&exec);
    }

    /// Decides the final state, applies retention and wakes waiters.
    pub(super) fn settle(self: &Arc<Self>, exec: &Arc<Execution>) {
        let state = exec.settle(|e| self.record_final(e));
        tracing::info!(execution = %exec.id, workflow = %exec.workflow.name, state = state.as_str(), "execution finished");
        let cfg = &self.config;
        lock(&self.table).prune(cfg.retain_executions, cfg.retain_age, std::time::SystemTime::now());
    }

    /// Frees the execution's slot and launches what now fits; returns one receiver per launch, told once that
    /// execution is running or failed to start. (Not to be waited on from the spawner thread itself.)
    pub(super) fn release(self: &Arc<Self>, exec: &Arc<Execution>) -> Vec<std::sync::mpsc::Receiver<()>> {
        let next = {
            let mut t = lock(&self.table);
            t.release_slot(exec);
            if self.shutting_down.load(std::sync::atomic::Ordering::SeqCst) {
                Vec::new()
            } else {
                t.pop_launchable(self.config.max_concurrent)
            }
        };
        next.into_iter()
            .map(|e| {
                let (tx, rx) = std::sync::mpsc::channel();
                self.launch(
                    e,
                    Some(Box::new(move || {
                        let _ = tx.send(());
                    })),
                );
                rx
            })
            .collect()
    }
}
