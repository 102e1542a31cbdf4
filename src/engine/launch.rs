//! Starting executions: one long-lived spawner thread starts every execution through the runtime, then gives
//! it two drain threads, a supervisor thread and (if it has one) a timeout task. Spawning on one thread keeps
//! its latency off the async workers and serializes it with orphan reaping (the child registry is held while
//! spawning).

use std::sync::{Arc, mpsc};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::drain::{DrainHandles, DrainSync, spawn_drain};
use super::execution::{Execution, StopReason};
use super::runner::{Engine, Shared, lock};
use crate::logs::Stream;
use crate::runtime::Started;

pub(super) type Job = Box<dyn FnOnce() + Send>;

/// Starts the spawner thread; it runs jobs until every sender is gone.
pub(super) fn start_spawner() -> std::io::Result<mpsc::Sender<Job>> {
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new().name("wf-spawner".into()).spawn(move || {
        for job in rx {
            job();
        }
    })?;
    Ok(tx)
}

impl Shared {
    /// Hands an execution to the spawner thread. `started` is called once it is running or failed to start.
    pub(super) fn launch(self: &Arc<Self>, exec: Arc<Execution>, started: Option<Box<dyn FnOnce() + Send>>) {
        let shared = self.clone();
        let job: Job = Box::new(move || {
            shared.start(exec);
            if let Some(started) = started {
                started();
            }
        });
        if lock(&self.spawner).send(job).is_err() {
            tracing::error!("the spawner thread is gone; an execution cannot start");
        }
    }

    /// Starts the execution through the runtime (on the spawner thread), with its drain and supervisor threads.
    fn start(self: &Arc<Self>, exec: Arc<Execution>) {
        if exec.stop_reason().is_some() {
            // Stopped between taking a slot and starting. (On the spawner thread: the launches it frees are not
            // waited for here.)
            exec.ending();
            self.release(&exec);
            self.settle(&exec);
            return;
        }
        let started = match self.runtime.start(&exec.launch) {
            Ok(s) => s,
            Err(e) => {
                let msg = e.to_string();
                tracing::warn!(execution = %exec.id, workflow = %exec.workflow.name, "{msg}");
                exec.ending();
                self.release(&exec);
                exec.failed_to_start(msg, |e| self.record_final(e));
                return;
            }
        };
        exec.started(started.pid, started.job.clone(), started.pending, started.tree.clone());
        self.record_started(&exec, started.pid);
        self.follow(exec, started);
    }

    /// Gives a started execution its drain threads, its supervisor thread and (if it has one) its timeout.
    pub(super) fn follow(self: &Arc<Self>, exec: Arc<Execution>, started: Started) {
        let tree = started.tree.clone();
        let sync = DrainSync::new();
        let handles = DrainHandles {
            logs_buffer: exec.logs_buffer.clone(),
            logs_tx: exec.logs_tx.clone(),
            progress: exec.progress.clone(),
            sync: sync.clone(),
        };
        for (stream, pipe) in [(Stream::Stdout, started.stdout), (Stream::Stderr, started.stderr)] {
            if let Err(e) = spawn_drain(stream, pipe, handles.clone()) {
                // Without a reader the child could block forever on a full pipe: stop it.
                tracing::error!(execution = %exec.id, error = %e, "cannot start a drain thread; killing the workflow");
                tree.kill();
            }
        }
        let shared = self.clone();
        let supervised = exec.clone();
        let (waiter, supervised_tree) = (started.waiter, tree.clone());
        let spawned = std::thread::Builder::new()
            .name("wf-supervisor".into())
            .stack_size(256 * 1024)
            .spawn(move || shared.supervise(supervised, waiter, supervised_tree, sync));
        if let Err(e) = spawned {
            tracing::error!(execution = %exec.id, error = %e, "cannot start a supervisor thread; killing the workflow");
            tree.kill();
            return;
        }
        if let Some(timeout) = exec
            .workflow
            .timeout_ms
            .map(Duration::from_millis)
            .or(self.config.default_timeout)
        {
            let engine = Engine { shared: self.clone() };
            let grace = self.config.grace;
            self.tokio_handle.spawn(async move {
                let never = CancellationToken::new();
                if !engine.wait_live(&exec, timeout, &never).await && !engine.shared.shutdown.is_cancelled() {
                    engine.stop_live(&exec, StopReason::Timeout, grace).await;
                }
            });
        }
    }
}
