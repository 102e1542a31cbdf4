//! The owner of executions behind the engine's public face: the table (under one lock), the launcher, the
//! records, and each execution's way through them — prepared and recorded, started on the spawner thread, given
//! drain threads, a supervisor thread and a timeout, stopped, ended (its slot freed for the queue, its final state
//! settled), and everything stopped at shutdown.
//!
//! The table lock (`std::sync::Mutex`) is held for map and queue updates only, never across a wait, an await or
//! a spawn; anything that may block runs on `spawn_blocking` or on the engine's own threads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::config::EngineConfig;
use super::detach::{Detacher, Handover};
use super::drain::{DrainHandles, DrainSync, spawn_drain};
use super::execution::{Execution, StopReason};
use super::launch::{Job, Spawner};
use super::records::Records;
use super::supervisor::{supervise, wait_until};
use super::table::Table;
use super::view::StoredExecution;
use crate::catalog::{Invocation, WorkflowDef};
use crate::logs::{DiskLimits, ExecutionLog, LogDir, MemoryBudget, Stream};
use crate::runtime::{Launch, Placement, Runtime, Started, Tree};
use crate::store::{NotInserted, Store};

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs blocking work off the async workers.
pub(super) async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Option<R> {
    tokio::task::spawn_blocking(f).await.ok()
}

/// Why [`Executor::prepare`] built no new execution.
pub(super) enum NotPrepared {
    /// Its idempotency key started this one already.
    Existing(Arc<StoredExecution>),
    /// Its workflow's limit is reached by these unfinished executions.
    AtLimit(Vec<Uuid>),
}

pub(super) struct Executor {
    config: EngineConfig,
    tokio_handle: tokio::runtime::Handle,
    spawner: Spawner,
    budget: Arc<MemoryBudget>,
    table: Mutex<Table>,
    runtime: Arc<dyn Runtime>,
    records: Records,
    shutting_down: AtomicBool,
    shutdown: CancellationToken,
    /// Cancelled once a shutdown has done its work (or was dropped before it could).
    shut_down: CancellationToken,
    /// Starts the supervisors of executions that outlive their session (none: such executions are refused).
    detacher: std::sync::OnceLock<Arc<dyn Detacher>>,
}

impl Executor {
    /// Starts the spawner thread.
    pub(super) fn new(
        config: EngineConfig,
        tokio_handle: tokio::runtime::Handle,
        runtime: Arc<dyn Runtime>,
        history: Option<Arc<Store>>,
    ) -> std::io::Result<Arc<Self>> {
        Ok(Arc::new(Executor {
            spawner: Spawner::start()?,
            budget: MemoryBudget::new(config.log_bytes_total),
            records: Records::new(history, &config),
            config,
            tokio_handle,
            table: Mutex::new(Table::default()),
            runtime,
            shutting_down: AtomicBool::new(false),
            shutdown: CancellationToken::new(),
            shut_down: CancellationToken::new(),
            detacher: std::sync::OnceLock::new(),
        }))
    }

    pub(super) fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub(super) fn tokio_handle(&self) -> &tokio::runtime::Handle {
        &self.tokio_handle
    }

    pub(super) fn records(&self) -> &Records {
        &self.records
    }

    pub(super) fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.runtime
    }

    pub(super) fn detacher(&self) -> Option<&Arc<dyn Detacher>> {
        self.detacher.get()
    }

    /// Sets how supervisors of executions that outlive their session start (once; a second call is ignored).
    pub(super) fn detach_with(&self, detacher: Arc<dyn Detacher>) {
        let _ = self.detacher.set(detacher);
    }

    pub(super) fn budget(&self) -> &Arc<MemoryBudget> {
        &self.budget
    }

    /// The executions table, locked: for map and queue updates only.
    pub(super) fn table(&self) -> MutexGuard<'_, Table> {
        lock(&self.table)
    }

    /// Cancelled when the server starts shutting down.
    pub(super) fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    pub(super) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Builds an execution (its log with files when there is a history) and records it — unless `at_most`
    /// executions of its workflow are unfinished in the history already (any instance's).
    pub(super) fn prepare(
        &self,
        def: Arc<WorkflowDef>,
        invocation: Invocation,
        idempotency_key: Option<String>,
        at_most: Option<usize>,
    ) -> Result<Arc<Execution>, NotPrepared> {
        let id = Uuid::new_v4();
        let mut argv = def.command.clone();
        argv.extend(invocation.args);
        let mut env = self.config.base_env.clone();
        env.extend(&def.env);
        env.extend(&invocation.env);
        // Last, so neither the config nor a param can change it: it finds escaped descendants.
        env.mark(&id.to_string());
        let launch = Launch {
            argv,
            env,
            cwd: def.cwd.clone(),
            marker: id.to_string(),
            placement: def.placement.clone(),
            timeout: def
                .timeout_ms
                .map(Duration::from_millis)
                .or(self.config.default_timeout),
        };
        let history = self.records.history();
        let disk = history.map(|h| DiskLimits {
            dir: LogDir::open(&h.log_path(&id)),
            max_bytes: self.config.log_disk_bytes,
        });
        let logs = ExecutionLog::with_disk(self.config.log_limits, self.budget.clone(), disk);
        let exec = Execution::new(id, def.clone(), invocation.values, launch, idempotency_key, logs);
        if let Some(history) = history
            && let Err(not) = history.insert_within(&self.records.record_of(&exec), at_most)
        {
            history.state_dir().remove_execution(&id);
            return Err(match not {
                NotInserted::Existing(existing) => NotPrepared::Existing(Arc::new(StoredExecution {
                    logs: LogDir::open(&history.log_path(&existing.id)),
                    record: *existing,
                })),
                NotInserted::AtLimit(running) => NotPrepared::AtLimit(running),
            });
        }
        Ok(exec)
    }

    /// Builds an execution handed over by the server that recorded it (see [`super::detach`]): its workflow as
    /// far as running it needs, its log with files. Blocking (nothing is written until it starts).
    pub(super) fn adopted(&self, h: Handover) -> Arc<Execution> {
        let def = Arc::new(WorkflowDef {
            name: h.workflow,
            title: None,
            description: String::new(),
            command: h.argv.clone(),
            params: Vec::new(),
            cwd: h.cwd.clone(),
            env: Vec::new(),
            timeout_ms: h.timeout.map(|t| t.as_millis() as u64),
            max_concurrent: None,
            source: crate::catalog::Source::Manifest,
            placement: Placement::Local,
            outlive_session: true,
        });
        let launch = Launch {
            argv: h.argv,
            env: h.env,
            cwd: h.cwd,
            marker: h.id.to_string(),
            placement: Placement::Local,
            timeout: h.timeout,
        };
        let disk = self.records.history().map(|history| DiskLimits {
            dir: LogDir::open(&history.log_path(&h.id)),
            max_bytes: self.config.log_disk_bytes,
        });
        let logs = ExecutionLog::with_disk(self.config.log_limits, self.budget.clone(), disk);
        Execution::new(h.id, def, h.params, launch, h.idempotency_key, logs)
            .restored(crate::clock::from_unix_ms(h.created_at), None)
    }

    /// Forgets a prepared execution the table did not take: its record (when the history took it) and its files
    /// in the state directory.
    pub(super) async fn discard(&self, exec: Arc<Execution>) {
        let Some(history) = self.records.history().cloned() else {
            return;
        };
        blocking(move || {
            history.remove(&exec.id);
            history.state_dir().remove_execution(&exec.id);
        })
        .await;
    }

    /// Hands an execution to the spawner thread. `started` is called once it is running or failed to start.
    pub(super) fn launch(self: &Arc<Self>, exec: Arc<Execution>, started: Option<Box<dyn FnOnce() + Send>>) {
        let executor = self.clone();
        let job: Job = Box::new(move || {
            executor.start(exec);
            if let Some(started) = started {
                started();
            }
        });
        if !self.spawner.submit(job) {
            tracing::error!("the spawner thread is gone; an execution cannot start");
        }
    }
    /// [`Executor::launch`], returning once it is running or failed to start.
    pub(super) async fn launched(self: &Arc<Self>, exec: Arc<Execution>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.launch(
            exec,
            Some(Box::new(move || {
                let _ = tx.send(());
            })),
        );
        let _ = rx.await;
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
                exec.failed_to_start(msg, |e, last| self.records.record_final(e, last));
                self.records.changed();
                return;
            }
        };
        exec.started(started.pid, started.job.clone(), started.pending, started.tree.clone());
        self.records.record_started(&exec, started.pid);
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
        let executor = self.clone();
        let supervised = exec.clone();
        let (waiter, supervised_tree) = (started.waiter, tree.clone());
        let spawned = std::thread::Builder::new()
            .name("wf-supervisor".into())
            .stack_size(256 * 1024)
            .spawn(move || executor.supervise_and_end(supervised, waiter, supervised_tree, sync));
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
            let executor = self.clone();
            let grace = self.config.grace;
            self.tokio_handle.spawn(async move {
                let never = CancellationToken::new();
                if !executor.wait_live(&exec, timeout, &never).await && !executor.shutdown.is_cancelled() {
                    executor.stop_live(&exec, StopReason::Timeout, grace).await;
                }
            });
        }
    }

    /// The supervisor thread: supervises, then ends the execution.
    fn supervise_and_end(
        self: Arc<Self>,
        exec: Arc<Execution>,
        waiter: Box<dyn crate::runtime::Waiter>,
        tree: Arc<dyn Tree>,
        sync: Arc<DrainSync>,
    ) {
        let cfg = &self.config;
        supervise(&exec, waiter, &*tree, &sync, &self.records, cfg.grace, cfg.drain_grace);
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
    fn settle(self: &Arc<Self>, exec: &Arc<Execution>) {
        let state = exec.settle(|e, last| self.records.record_final(e, last));
        self.records.changed();
        tracing::info!(execution = %exec.id, workflow = %exec.workflow.name, state = state.as_str(), "execution finished");
        let cfg = &self.config;
        self.table()
            .prune(cfg.retain_executions, cfg.retain_age, SystemTime::now());
    }

    /// Frees the execution's slot and launches what now fits; returns one receiver per launch, told once that
    /// execution is running or failed to start. (Not to be waited on from the spawner thread itself.)
    fn release(self: &Arc<Self>, exec: &Arc<Execution>) -> Vec<mpsc::Receiver<()>> {
        let next = {
            let mut t = self.table();
            t.release_slot(exec);
            if self.is_shutting_down() {
                Vec::new()
            } else {
                t.pop_launchable(self.config.max_concurrent)
            }
        };
        next.into_iter()
            .map(|e| {
                let (tx, rx) = mpsc::channel();
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

    /// Waits until the execution is final, `timeout` passes, `cancel` fires, or the server shuts down. Returns
    /// whether it is final.
    pub(super) async fn wait_live(&self, exec: &Execution, timeout: Duration, cancel: &CancellationToken) -> bool {
        let mut rx = exec.logs_tx.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if exec.state().is_terminal() {
                return true;
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return exec.state().is_terminal() },
                _ = tokio::time::sleep_until(deadline) => return exec.state().is_terminal(),
                _ = cancel.cancelled() => return exec.state().is_terminal(),
                _ = self.shutdown.cancelled() => return exec.state().is_terminal(),
            }
        }
    }

    /// Stops an execution run here: a queued one is taken off the queue; a running one gets SIGTERM on its whole
    /// tree, `grace` to exit, then SIGKILL. Returns once it is final (every process of its tree gone).
    pub(super) async fn stop_live(self: &Arc<Self>, exec: &Arc<Execution>, reason: StopReason, grace: Duration) {
        let dequeued = self.table().dequeue(&exec.id);
        if let Some(e) = dequeued {
            let executor = self.clone();
            blocking(move || {
                e.end_unstarted(reason, e.stop_message(reason), |e, last| {
                    executor.records.record_final(e, last);
                });
                executor.records.changed();
            })
            .await;
            return;
        }
        let mut rx = exec.logs_tx.subscribe();
        if !exec.request_stop(reason, exec.stop_message(reason)) {
            return;
        }
        // An execution still being spawned gets its tree (or settles) in a moment.
        let (tree, exited) = loop {
            let life = exec.life();
            if life.state.is_terminal() {
                return;
            }
            if let Some(tree) = life.tree {
                break (tree.0, life.exited);
            }
            if rx.changed().await.is_err() {
                return;
            }
        };
        if !exited {
            let t = tree.clone();
            blocking(move || t.stop(grace)).await;
            let never = CancellationToken::new();
            if self.wait_live(exec, grace, &never).await {
                return;
            }
            blocking(move || tree.kill()).await;
        }
        // The supervisor settles the state once the tree is gone and the pipes are drained.
        while !exec.state().is_terminal() {
            if rx.changed().await.is_err() {
                break;
            }
        }
    }

    /// Stops everything for a server exit: no new executions, queued ones cancelled, every running tree gets
    /// SIGTERM then (after at most `grace`) SIGKILL. Returns once every tree is gone or `grace` + 1 s passed.
    /// A second call (a signal and the end of input both stop the server) waits for the first one's work, which
    /// goes on even if the first caller is dropped.
    pub(super) async fn shutdown(self: &Arc<Self>, grace: Duration) {
        if self.shutting_down.swap(true, Ordering::SeqCst) {
            let bound = grace + Duration::from_secs(3);
            let _ = tokio::time::timeout(bound, self.shut_down.cancelled()).await;
            return;
        }
        self.shutdown.cancel();
        // Cancels `shut_down` when the work below ends, or when it is dropped without running.
        let done = self.shut_down.clone().drop_guard();
        let (queued, running) = {
            let mut t = self.table();
            (t.close(), t.unfinished())
        };
        let mut trees: Vec<Arc<dyn Tree>> = Vec::new();
        for e in &running {
            if e.launch.placement.outlives_session() {
                // Its job goes on; a server on the same state directory follows it again.
                tracing::info!(execution = %e.id, runtime = e.launch.placement.kind(), "leaving a job running (outlive_session)");
                continue;
            }
            e.request_stop(StopReason::Shutdown, e.stop_message(StopReason::Shutdown));
            trees.extend(e.tree());
        }
        let executor = self.clone();
        blocking(move || {
            let _done = done;
            executor.records.end_unstarted_all(&queued, StopReason::Shutdown);
            for t in &trees {
                t.stop(grace);
            }
            let all_gone = || trees.iter().all(|t| t.gone());
            wait_until(all_gone, Instant::now() + grace);
            for t in &trees {
                t.kill();
            }
            wait_until(all_gone, Instant::now() + Duration::from_secs(1));
            executor.runtime.finish();
            if let Some(history) = executor.records.history() {
                // Their final records: the supervisors settle each one once its output is drained.
                let settled = || running.iter().all(|e| e.state().is_terminal());
                wait_until(settled, Instant::now() + Duration::from_millis(500));
                // Once for everything ended here.
                executor.records.prune();
                history.retire();
            }
        })
        .await;
    }
}
