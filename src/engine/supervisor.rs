//! The supervisor thread's work for one execution: it blocks until the leader exits, clears out what the leader
//! left behind (its group and escaped descendants, as a CI runner does at the end of a job) and gives the output
//! streams a short deadline. Its caller then settles the final state from the exit status (never from pipe EOF),
//! frees the slot and starts queued executions.

use std::time::{Duration, Instant};

use super::drain::DrainSync;
use super::execution::{Execution, ExecutionState};
use super::records::Records;
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

/// Blocks until the leader exits, clears out what it left behind, gives the output streams their deadline and
/// records what it learnt on `exec`; the caller then ends it (frees its slot, settles its state).
pub(super) fn supervise(
    exec: &Execution,
    waiter: Box<dyn Waiter>,
    tree: &dyn Tree,
    sync: &DrainSync,
    records: &Records,
    grace: Duration,
    drain_grace: Duration,
) {
    let on_change = &mut |state| {
        exec.job_state(state);
        records.record_job(exec);
    };
    match waiter.wait(on_change) {
        Ended::Exited(exit) => exec.exited(Some(exit)),
        Ended::FailedToStart(why) => exec.ended_as(ExecutionState::FailedToStart, why),
        Ended::Lost(why) => {
            tracing::error!(execution = %exec.id, "{why}");
            exec.ended_as(ExecutionState::Lost, why);
        }
    }
    // Another server process may have asked for the stop (through the history) and signalled the tree.
    if exec.stop_reason().is_none()
        && let Some(history) = records.history()
        && let Some(reason) = history.get(&exec.id).and_then(|r| r.stop_request)
    {
        exec.request_stop(reason, exec.stop_message(reason));
    }
    // During a stop the tree gets the rest of its grace period before what is left is killed.
    if exec.stop_reason().is_some() {
        wait_until(|| tree.gone(), Instant::now() + grace);
    }
    let leftovers = tree.kill_leftovers();
    let mut open = sync.wait_until(Instant::now() + Duration::from_millis(300));
    if !open.is_empty() {
        // Something we could not attribute (an escaped process that cleared its environment) holds a stream.
        tree.release_outputs();
        open = sync.wait_until(Instant::now() + drain_grace);
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
}
