//! The engine's public face: start (or queue) an execution, look executions up, list them, wait for one, stop
//! one, and shut everything down. The parts behind it, one file each:
//! - [`super::table`]: the executions table (queue, slots, idempotency, retention), plain data under one lock;
//! - [`super::launch`]: the spawner thread, which starts every execution through the runtime;
//! - [`super::supervisor`]: one thread per execution, which waits for its exit and settles its final state;
//! - [`super::drain`]: two threads per execution, which move its output into its log.
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

use super::execution::{Execution, ExecutionState, StopReason};
use super::follow::{Follow, Reread};
use super::launch::Job;
use super::status::{ExecutionStatus, status_of_record};
use super::supervisor::wait_until;
use super::table::{Admission, ListFilter, Table};
use super::view::{ExecutionView, StoredExecution};
use crate::catalog::{Invocation, WorkflowDef};
use crate::logs::{DiskLimits, ExecutionLog, LogDir, LogLimits, MemoryBudget};
use crate::proc::ChildEnv;
use crate::proc::reaper::{is_subreaper, reap_orphans};
use crate::runtime::{Launch, Runtime, Tree};
use crate::store::Store;

/// How the engine behaves.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub max_concurrent: usize,
    /// Executions that may wait for a slot; past it a new one is refused.
    pub max_queued: usize,
    pub default_timeout: Option<Duration>,
    /// Between SIGTERM and SIGKILL when an execution is stopped.
    pub grace: Duration,
    pub log_limits: LogLimits,
    pub log_bytes_total: usize,
    pub retain_executions: usize,
    pub retain_age: Duration,
    /// With a history: the log files of finished executions, in all, before the oldest are forgotten.
    pub retain_log_bytes: u64,
    /// With a history: one execution's log files, before whole middle segments are deleted.
    pub log_disk_bytes: u64,
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
    #[error(
        "too many executions are waiting: {queued} are queued and limits.max_queued is {cap}; wait for some to \
         finish or cancel some with cancel_execution, or raise limits.max_queued in the config"
    )]
    QueueFull { queued: usize, cap: usize },
}

/// Runs workflows and keeps their executions. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pub(super) shared: Arc<Shared>,
}

pub(super) struct Shared {
    pub(super) config: EngineConfig,
    pub(super) tokio_handle: tokio::runtime::Handle,
    pub(super) spawner: Mutex<mpsc::Sender<Job>>,
    pub(super) budget: Arc<MemoryBudget>,
    pub(super) table: Mutex<Table>,
    pub(super) runtime: Arc<dyn Runtime>,
    pub(super) shutting_down: AtomicBool,
    pub(super) shutdown: CancellationToken,
    /// Cancelled once a shutdown has done its work (or was dropped before it could).
    pub(super) shut_down: CancellationToken,
    /// The durable history, unless the server runs ephemeral.
    pub(super) history: Option<Arc<Store>>,
    /// When `list` last applied retention (ms since the Unix epoch): it reads every finished record, so a
    /// listing applies it at most once a minute (starts and ends apply it anyway).
    pub(super) listed_prune_at: std::sync::atomic::AtomicI64,
    /// Bumped when an execution is added, starts or ends here (see [`Engine::changes`]).
    pub(super) changes: tokio::sync::watch::Sender<u64>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs blocking work off the async workers.
pub(super) async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Option<R> {
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
    /// Starts the spawner thread. `tokio_handle` runs the timeout tasks; `runtime` is where executions run;
    /// `history`, when given, keeps every execution and its log on disk.
    pub fn new(
        config: EngineConfig,
        tokio_handle: tokio::runtime::Handle,
        runtime: Arc<dyn Runtime>,
        history: Option<Arc<Store>>,
    ) -> std::io::Result<Self> {
        let spawner = super::launch::start_spawner()?;
        if is_subreaper() {
            tokio_handle.spawn(reap_orphans_on_sigchld());
        }
        let engine = Engine {
            shared: Arc::new(Shared {
                budget: MemoryBudget::new(config.log_bytes_total),
                config,
                tokio_handle,
                spawner: Mutex::new(spawner),
                table: Mutex::new(Table::default()),
                runtime,
                shutting_down: AtomicBool::new(false),
                shutdown: CancellationToken::new(),
                shut_down: CancellationToken::new(),
                history,
                listed_prune_at: std::sync::atomic::AtomicI64::new(0),
                changes: tokio::sync::watch::channel(0).0,
            }),
        };
        if engine.shared.history.is_some() {
            engine
                .shared
                .tokio_handle
                .spawn(super::history::record_progress(engine.clone()));
        }
        Ok(engine)
    }

    /// The history, unless the server runs ephemeral.
    pub fn history(&self) -> Option<&Arc<Store>> {
        self.shared.history.as_ref()
    }

    /// At startup: executions whose server is gone are followed again when they run on (a remote job, its
    /// workflow still known by `workflow_of`), else they become `lost` (and what is left of their processes is
    /// killed, once each is known to be theirs; only started ones are looked for, all in one pass over /proc);
    /// dead instances are forgotten, and retention applies (in the background). Returns the executions followed
    /// again and those lost. Blocking.
    pub fn recover(&self, workflow_of: impl Fn(&str) -> Option<Arc<WorkflowDef>>) -> (Vec<Uuid>, Vec<Uuid>) {
        let Some(history) = &self.shared.history else {
            return (Vec::new(), Vec::new());
        };
        let (mut followed, mut lost) = (Vec::new(), Vec::new());
        for rec in history.orphaned() {
            match self.shared.reattach(&rec, &workflow_of) {
                Some(Ok(())) => followed.push(rec.id),
                // Another server took it over first.
                Some(Err(None)) => {}
                Some(Err(Some(why))) => {
                    tracing::warn!(execution = %rec.id, "{why}");
                    lost.push(rec);
                }
                None => lost.push(rec),
            }
        }
        self.shared.lose_all(&lost);
        history.forget_dead_instances();
        // Retention can wait: after a crash it may delete thousands of log folders (0.4 s for 5000), which
        // would hold up the first answer. A shutdown's own pass waits for this one.
        let shared = self.shared.clone();
        self.shared.tokio_handle.spawn_blocking(move || shared.prune());
        (followed, lost.iter().map(|r| r.id).collect())
    }

    pub fn config(&self) -> &EngineConfig {
        &self.shared.config
    }

    /// Wakes when an execution is added, starts or ends in this process (not for other server processes on the
    /// state directory, nor for executions forgotten by retention: whoever needs those looks again now and
    /// then). A watcher of the list of executions waits on it.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    /// Cancelled when the server starts shutting down; long waits end on it.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shared.shutdown.clone()
    }

    /// Starts (or queues) an execution of `def` and returns once it is running, failed to start, or queued.
    /// A repeated `idempotency_key` for the same workflow returns the execution it started before (with a
    /// history: by any server process, before or after a restart).
    pub async fn execute(
        &self,
        def: Arc<WorkflowDef>,
        invocation: Invocation,
        idempotency_key: Option<String>,
    ) -> Result<ExecutionView, EngineError> {
        let shared = &self.shared;
        if shared.shutting_down.load(Ordering::SeqCst) {
            return Err(EngineError::ShuttingDown);
        }
        let cfg = &shared.config;
        {
            let t = lock(&shared.table);
            if let Some(key) = &idempotency_key
                && let Some(existing) = t.by_idempotency_key(&def.name, key)
            {
                return Ok(ExecutionView::Live(existing));
            }
            // Refused before anything is written; `admit` decides again once it is prepared.
            if let Some(refused) = t.refusal(&def, cfg.max_concurrent, cfg.max_queued) {
                return Err(self.refused(refused));
            }
        }
        let prepared = {
            let shared = shared.clone();
            let key = idempotency_key.clone();
            // Recording the execution touches the disk: not on an async worker.
            blocking(move || shared.prepare(def, invocation, key)).await
        };
        let exec = match prepared {
            Some(Ok(exec)) => exec,
            Some(Err(existing)) => {
                let id = existing.record.id;
                return Ok(self.find(&id).unwrap_or(ExecutionView::Stored(existing)));
            }
            None => return Err(EngineError::ShuttingDown),
        };
        let admission = {
            let mut t = lock(&shared.table);
            let admission = t.admit(exec.clone(), cfg.max_concurrent, cfg.max_queued);
            t.prune(cfg.retain_executions, cfg.retain_age, SystemTime::now());
            admission
        };
        let launch = match admission {
            Admission::Launch => true,
            Admission::Queued => false,
            // Another call with its key was admitted while this one was prepared.
            Admission::Existing(existing) => {
                self.discard(exec).await;
                return Ok(ExecutionView::Live(existing));
            }
            refused => {
                self.discard(exec).await;
                return Err(self.refused(refused));
            }
        };
        shared.changed();
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
        Ok(ExecutionView::Live(exec))
    }

    fn refused(&self, admission: Admission) -> EngineError {
        match admission {
            Admission::QueueFull(queued) => EngineError::QueueFull {
                queued,
                cap: self.shared.config.max_queued,
            },
            _ => EngineError::ShuttingDown,
        }
    }

    /// Forgets a prepared execution the table did not take: its record (when the history took it) and its files
    /// in the state directory.
    async fn discard(&self, exec: Arc<Execution>) {
        let Some(history) = self.shared.history.clone() else {
            return;
        };
        blocking(move || {
            history.remove(&exec.id);
            history.state_dir().remove_execution(&exec.id);
        })
        .await;
    }

    /// The execution with this id: run here, or known from the history (an unfinished one whose server is gone
    /// is marked lost on the way).
    pub fn find(&self, id: &Uuid) -> Option<ExecutionView> {
        if let Some(exec) = lock(&self.shared.table).get(id) {
            return Some(ExecutionView::Live(exec));
        }
        let history = self.shared.history.as_ref()?;
        let mut record = history.get(id)?;
        if record.unfinished() && history.owner_gone(&record.owner) {
            self.shared.lose(&record);
            record = history.get(id)?;
        }
        Some(ExecutionView::Stored(Arc::new(StoredExecution {
            logs: LogDir::open(&history.log_path(id)),
            record,
        })))
    }

    /// The same execution, read again (a stored record may have changed since).
    pub fn refresh(&self, view: &ExecutionView) -> ExecutionView {
        match view {
            ExecutionView::Live(_) => view.clone(),
            ExecutionView::Stored(_) => self.find(&view.id()).unwrap_or_else(|| view.clone()),
        }
    }
}

impl Shared {
    /// Wakes the watchers of [`Engine::changes`].
    pub(super) fn changed(&self) {
        self.changes.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// Builds an execution (its log with files when there is a history) and records it. `Err` is the
    /// execution an idempotency key already started, found in the history.
    fn prepare(
        &self,
        def: Arc<WorkflowDef>,
        invocation: Invocation,
        idempotency_key: Option<String>,
    ) -> Result<Arc<Execution>, Arc<StoredExecution>> {
        {
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
            let disk = self.history.as_ref().map(|h| DiskLimits {
                dir: LogDir::open(&h.log_path(&id)),
                max_bytes: self.config.log_disk_bytes,
            });
            let logs = ExecutionLog::with_disk(self.config.log_limits, self.budget.clone(), disk);
            let exec = Execution::new(id, def.clone(), invocation.values, launch, idempotency_key, logs);
            if let Some(history) = &self.history
                && let Err(existing) = history.insert(&self.record_of(&exec))
            {
                history.state_dir().remove_execution(&id);
                return Err(Arc::new(StoredExecution {
                    logs: LogDir::open(&history.log_path(&existing.id)),
                    record: *existing,
                }));
            }
            Ok(exec)
        }
    }
}

/// The engine reads an execution again from its table or its history; one gone from the history meanwhile stays
/// as it was last read.
impl Reread for Engine {
    type Error = std::convert::Infallible;

    fn reread(&self, view: &ExecutionView) -> Result<ExecutionView, Self::Error> {
        Ok(self.refresh(view))
    }

    fn status(&self, view: &ExecutionView) -> ExecutionStatus {
        Engine::status(self, view)
    }
}

impl Engine {
    /// The status of an execution, with its queue position when queued here.
    pub fn status(&self, view: &ExecutionView) -> ExecutionStatus {
        match view {
            ExecutionView::Live(exec) => {
                let position = lock(&self.shared.table).queue_position(&exec.id);
                exec.status(position)
            }
            ExecutionView::Stored(_) => view.status(),
        }
    }

    /// Executions matching `filter`, newest first, and how many matched in all (with a history: every server
    /// process's, and those from before a restart).
    pub fn list(&self, filter: &ListFilter) -> (Vec<ExecutionStatus>, usize) {
        let shared = &self.shared;
        if let Some(history) = &shared.history {
            let now = crate::store::history::now_ms();
            let last = shared.listed_prune_at.load(std::sync::atomic::Ordering::Relaxed);
            if now - last >= 60_000
                && shared
                    .listed_prune_at
                    .compare_exchange(
                        last,
                        now,
                        std::sync::atomic::Ordering::Relaxed,
                        std::sync::atomic::Ordering::Relaxed,
                    )
                    .is_ok()
            {
                shared.prune();
            }
            let state = filter.state.map(ExecutionState::as_str);
            let (records, total) = history.list(filter.workflow.as_deref(), state, filter.limit);
            let table = lock(&shared.table);
            let live: Vec<Option<Arc<Execution>>> = records.iter().map(|r| table.get(&r.id)).collect();
            drop(table);
            let statuses = records
                .iter()
                .zip(live)
                .map(|(rec, live)| match live {
                    Some(exec) => self.status(&ExecutionView::Live(exec)),
                    None if rec.unfinished() && history.owner_gone(&rec.owner) => {
                        shared.lose(rec);
                        history
                            .get(&rec.id)
                            .map_or_else(|| status_of_record(rec), |r| status_of_record(&r))
                    }
                    None => status_of_record(rec),
                })
                .collect();
            return (statuses, total);
        }
        let matching = {
            let mut t = lock(&shared.table);
            // The age rule also applies while nothing starts or finishes.
            let cfg = &shared.config;
            t.prune(cfg.retain_executions, cfg.retain_age, SystemTime::now());
            t.matching(filter)
        };
        let total = matching.len();
        let statuses = matching
            .into_iter()
            .take(filter.limit)
            .map(|e| self.status(&ExecutionView::Live(e)))
            .collect();
        (statuses, total)
    }

    /// The retention rule in words, e.g. "the last 1000 finished executions, for at most 7 days, with at most
    /// 10.00 GiB of log files".
    pub fn retention_rule(&self) -> String {
        let cfg = &self.shared.config;
        let secs = cfg.retain_age.as_secs();
        let age = match secs {
            s if s % 86_400 == 0 => format!("{} days", s / 86_400),
            s if s % 3600 == 0 => format!("{} hours", s / 3600),
            s => format!("{s} s"),
        };
        let mut rule = format!(
            "the last {} finished executions, for at most {age}",
            cfg.retain_executions
        );
        if self.shared.history.is_some() {
            rule.push_str(&format!(
                ", with at most {:.1} GiB of log files (kept on disk, across restarts)",
                cfg.retain_log_bytes as f64 / f64::from(1u32 << 30)
            ));
        } else {
            rule.push_str(" (in memory only: gone when the server exits)");
        }
        rule
    }

    /// How many executions are retained.
    pub fn retained(&self) -> usize {
        match &self.shared.history {
            Some(history) => history.count(),
            None => lock(&self.shared.table).len(),
        }
    }

    /// Follows an execution: see [`Follow`].
    pub fn follow(&self, view: &ExecutionView) -> Follow<Engine> {
        Follow::new(self.clone(), view)
    }

    /// Waits until the execution is final, `timeout` passes, `cancel` fires, or the server shuts down.
    /// Returns whether it is final.
    pub async fn wait_final(&self, view: &ExecutionView, timeout: Duration, cancel: &CancellationToken) -> bool {
        let shutdown = &self.shared.shutdown;
        let stop = async {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = shutdown.cancelled() => {}
            }
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let Ok(done) = self.follow(view).until_final(deadline, stop).await;
        done
    }

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
                _ = self.shared.shutdown.cancelled() => return exec.state().is_terminal(),
            }
        }
    }

    /// Stops an execution: a queued one is taken off the queue; a running one gets SIGTERM on its whole tree,
    /// `grace` to exit, then SIGKILL. Returns once it is final (every process of its tree gone). An execution
    /// run by another server process is asked to stop through the history and signalled from here, once its
    /// processes are known to be its own.
    pub async fn stop(&self, view: &ExecutionView, reason: StopReason, grace: Duration) -> Result<(), String> {
        match view {
            ExecutionView::Live(exec) => {
                self.stop_live(exec, reason, grace).await;
                Ok(())
            }
            ExecutionView::Stored(stored) => self.stop_stored(&stored.record, reason, grace).await,
        }
    }

    pub(super) async fn stop_live(&self, exec: &Arc<Execution>, reason: StopReason, grace: Duration) {
        let dequeued = lock(&self.shared.table).dequeue(&exec.id);
        if let Some(e) = dequeued {
            let shared = self.shared.clone();
            blocking(move || e.end_unstarted(reason, stop_message(reason, &e), |e| shared.record_final(e))).await;
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
    pub async fn shutdown(&self, grace: Duration) {
        let shared = &self.shared;
        if shared.shutting_down.swap(true, Ordering::SeqCst) {
            let bound = grace + Duration::from_secs(3);
            let _ = tokio::time::timeout(bound, shared.shut_down.cancelled()).await;
            return;
        }
        shared.shutdown.cancel();
        // Cancels `shut_down` when the work below ends, or when it is dropped without running.
        let done = shared.shut_down.clone().drop_guard();
        let (queued, running) = {
            let mut t = lock(&shared.table);
            (t.close(), t.unfinished())
        };
        let mut trees: Vec<Arc<dyn Tree>> = Vec::new();
        for e in &running {
            if e.launch.placement.outlives_session() {
                // Its job goes on; a server on the same state directory follows it again.
                tracing::info!(execution = %e.id, runtime = e.launch.placement.kind(), "leaving a job running (outlive_session)");
                continue;
            }
            e.request_stop(StopReason::Shutdown, stop_message(StopReason::Shutdown, e));
            trees.extend(e.tree());
        }
        let shared = shared.clone();
        blocking(move || {
            let _done = done;
            shared.end_unstarted_all(&queued, StopReason::Shutdown);
            for t in &trees {
                t.stop(grace);
            }
            let all_gone = || trees.iter().all(|t| t.gone());
            wait_until(all_gone, Instant::now() + grace);
            for t in &trees {
                t.kill();
            }
            wait_until(all_gone, Instant::now() + Duration::from_secs(1));
            shared.runtime.finish();
            if let Some(history) = &shared.history {
                // Their final records: the supervisors settle each one once its output is drained.
                let settled = || running.iter().all(|e| e.state().is_terminal());
                wait_until(settled, Instant::now() + Duration::from_millis(500));
                // Once for everything ended here.
                shared.prune();
                history.retire();
            }
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
