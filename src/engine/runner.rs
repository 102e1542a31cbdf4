//! The engine's public face: start (or queue) an execution, look executions up, list them, wait for one, stop
//! one, and shut everything down. The parts behind it, one file each:
//! - [`super::table`]: the executions table (queue, slots, idempotency, retention), plain data under one lock;
//! - [`super::launch`]: the spawner thread, which starts every execution through the runtime;
//! - [`super::supervisor`]: one thread per execution, which waits for its exit and settles its final state;
//! - [`super::drain`]: two threads per execution, which move its output into its log store.
//!
//! Async tasks (tool calls, timeouts) only wait on an execution's `logs_tx`; anything that may block — a signal
//! to a process tree, a `/proc` scan, reaping — runs on `spawn_blocking` or on the engine's own threads, never on
//! an async worker. The table lock (`std::sync::Mutex`) is held for map and queue updates only, never across a
//! wait, an await or a spawn.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::execution::{Execution, StopReason};
use super::launch::Job;
use super::status::ExecutionStatus;
use super::supervisor::wait_until;
use super::table::{ListFilter, Table};
use crate::catalog::{Invocation, WorkflowDef};
use crate::logs::{LogLimits, LogStore, MemoryBudget};
use crate::proc::ChildEnv;
use crate::proc::reaper::{is_subreaper, reap_orphans};
use crate::runtime::{Launch, Runtime, Tree};

/// How the engine behaves.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub max_concurrent: usize,
    pub default_timeout: Option<Duration>,
    /// Between SIGTERM and SIGKILL when an execution is stopped.
    pub grace: Duration,
    pub log_limits: LogLimits,
    pub log_bytes_total: usize,
    pub retain_executions: usize,
    pub retain_age: Duration,
    /// The environment every execution starts from (the workflow's own variables and params come on top).
    pub base_env: ChildEnv,
    /// How long the drain threads may keep reading after the workflow exited and its group was killed.
    pub drain_grace: Duration,
}

/// Why the engine refused a request.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the server is shutting down; no new executions start")]
    ShuttingDown,
}

/// Runs workflows and keeps their executions. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pub(super) shared: Arc<Shared>,
}

pub(super) struct Shared {
    pub(super) config: EngineConfig,
    pub(super) async_runtime: tokio::runtime::Handle,
    pub(super) spawner: Mutex<mpsc::Sender<Job>>,
    pub(super) budget: Arc<MemoryBudget>,
    pub(super) table: Mutex<Table>,
    pub(super) runtime: Arc<dyn Runtime>,
    pub(super) shutting_down: AtomicBool,
    pub(super) shutdown: CancellationToken,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs blocking work off the async workers.
async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Option<R> {
    tokio::task::spawn_blocking(f).await.ok()
}

pub(super) fn stop_message(reason: StopReason, exec: &Execution) -> String {
    match reason {
        StopReason::Cancel => "cancelled by request".to_owned(),
        StopReason::Timeout => {
            let ms = exec
                .workflow
                .timeout_ms
                .map_or_else(|| "its".to_owned(), |ms| format!("{ms} ms"));
            format!("timed out (timeout {ms})")
        }
        StopReason::Shutdown => "stopped because the server shut down".to_owned(),
    }
}

impl Engine {
    /// Starts the spawner thread. `async_runtime` runs the timeout tasks; `runtime` is where executions run.
    pub fn new(
        config: EngineConfig,
        async_runtime: tokio::runtime::Handle,
        runtime: Arc<dyn Runtime>,
    ) -> std::io::Result<Self> {
        let spawner = super::launch::start_spawner()?;
        if is_subreaper() {
            async_runtime.spawn(reap_orphans_on_sigchld());
        }
        Ok(Engine {
            shared: Arc::new(Shared {
                budget: MemoryBudget::new(config.log_bytes_total),
                config,
                async_runtime,
                spawner: Mutex::new(spawner),
                table: Mutex::new(Table::default()),
                runtime,
                shutting_down: AtomicBool::new(false),
                shutdown: CancellationToken::new(),
            }),
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.shared.config
    }

    /// Cancelled when the server starts shutting down; long waits end on it.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shared.shutdown.clone()
    }

    /// Starts (or queues) an execution of `def` and returns once it is running, failed to start, or queued.
    /// A repeated `idempotency_key` for the same workflow returns the execution it started before.
    pub async fn execute(
        &self,
        def: Arc<WorkflowDef>,
        invocation: Invocation,
        idempotency_key: Option<String>,
    ) -> Result<Arc<Execution>, EngineError> {
        let shared = &self.shared;
        if shared.shutting_down.load(Ordering::SeqCst) {
            return Err(EngineError::ShuttingDown);
        }
        let (exec, launch) = {
            let mut t = lock(&shared.table);
            if let Some(key) = &idempotency_key
                && let Some(existing) = t.by_idempotency_key(&def.name, key)
            {
                return Ok(existing);
            }
            let id = Uuid::new_v4();
            let mut argv = def.command.clone();
            argv.extend(invocation.args);
            let mut env = shared.config.base_env.clone();
            env.extend(&def.env);
            env.extend(&invocation.env);
            // Last, so neither the config nor a param can change it: it finds escaped descendants.
            env.mark(&id.to_string());
            let launch = Launch {
                argv,
                env,
                cwd: def.cwd.clone(),
                marker: id.to_string(),
            };
            let logs = LogStore::new(shared.config.log_limits, shared.budget.clone());
            let exec = Execution::new(id, def.clone(), invocation.values, launch, idempotency_key, logs);
            let launch = t.admit(exec.clone(), shared.config.max_concurrent);
            t.prune(
                shared.config.retain_executions,
                shared.config.retain_age,
                SystemTime::now(),
            );
            (exec, launch)
        };
        if launch {
            let (tx, rx) = tokio::sync::oneshot::channel();
            shared.launch(
                exec.clone(),
                Some(Box::new(move || {
                    let _ = tx.send(());
                })),
            );
            let _ = rx.await;
        }
        Ok(exec)
    }

    pub fn get(&self, id: &Uuid) -> Option<Arc<Execution>> {
        lock(&self.shared.table).get(id)
    }

    /// The status of an execution, with its queue position when queued.
    pub fn status(&self, exec: &Execution) -> ExecutionStatus {
        let position = lock(&self.shared.table).queue_position(&exec.id);
        exec.status(position)
    }

    /// Executions matching `filter`, newest first, and how many matched in all.
    pub fn list(&self, filter: &ListFilter) -> (Vec<ExecutionStatus>, usize) {
        let matching = {
            let mut t = lock(&self.shared.table);
            // The age rule also applies while nothing starts or finishes.
            let cfg = &self.shared.config;
            t.prune(cfg.retain_executions, cfg.retain_age, SystemTime::now());
            t.matching(filter)
        };
        let total = matching.len();
        let statuses = matching.iter().take(filter.limit).map(|e| self.status(e)).collect();
        (statuses, total)
    }

    /// How many executions are retained.
    pub fn retained(&self) -> usize {
        lock(&self.shared.table).len()
    }

    /// Waits until the execution is final, `timeout` passes, `cancel` fires, or the server shuts down.
    /// Returns whether it is final.
    pub async fn wait_final(&self, exec: &Execution, timeout: Duration, cancel: &CancellationToken) -> bool {
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
                _ = self.shared.shutdown.cancelled() => return exec.state().is_terminal(),
            }
        }
    }

    /// Stops an execution: a queued one is taken off the queue; a running one gets SIGTERM on its whole tree,
    /// `grace` to exit, then SIGKILL. Returns once it is final (every process of its tree gone).
    pub async fn stop(&self, exec: &Arc<Execution>, reason: StopReason, grace: Duration) {
        let dequeued = lock(&self.shared.table).dequeue(&exec.id);
        if let Some(e) = dequeued {
            e.end_unstarted(reason, stop_message(reason, &e));
            return;
        }
        let mut rx = exec.logs_tx.subscribe();
        if !exec.request_stop(reason, stop_message(reason, exec)) {
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
            blocking(move || t.signal(libc::SIGTERM)).await;
            let never = CancellationToken::new();
            if self.wait_final(exec, grace, &never).await {
                return;
            }
            blocking(move || tree.signal(libc::SIGKILL)).await;
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
    pub async fn shutdown(&self, grace: Duration) {
        let shared = &self.shared;
        shared.shutting_down.store(true, Ordering::SeqCst);
        shared.shutdown.cancel();
        let (queued, running) = {
            let mut t = lock(&shared.table);
            (t.drain_queue(), t.unfinished())
        };
        for e in queued {
            e.end_unstarted(StopReason::Shutdown, stop_message(StopReason::Shutdown, &e));
        }
        let mut trees: Vec<Arc<dyn Tree>> = Vec::new();
        for e in &running {
            e.request_stop(StopReason::Shutdown, stop_message(StopReason::Shutdown, e));
            trees.extend(e.tree());
        }
        let runtime = shared.runtime.clone();
        blocking(move || {
            for t in &trees {
                t.signal(libc::SIGTERM);
            }
            let all_gone = || trees.iter().all(|t| t.gone());
            wait_until(all_gone, Instant::now() + grace);
            for t in &trees {
                t.signal(libc::SIGKILL);
            }
            wait_until(all_gone, Instant::now() + Duration::from_secs(1));
            runtime.finish();
        })
        .await;
    }
}

/// Orphans re-parented to us that belong to no execution still have to be reaped (PID 1 may not reap):
/// after a child exits (SIGCHLD), at most once a second, one scan reaps them.
async fn reap_orphans_on_sigchld() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut sigchld) = signal(SignalKind::child()) else {
        return;
    };
    while sigchld.recv().await.is_some() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let _ = tokio::task::spawn_blocking(reap_orphans).await;
    }
}
