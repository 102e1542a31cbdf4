//! The engine's public face: start (or queue) an execution, look executions up, list them, wait for one, stop
//! one, and shut everything down. The parts behind it, one file each, each using only the ones before it:
//! - [`super::table`]: the executions table (queue, slots, idempotency, retention), plain data under one lock;
//! - [`super::records`]: what the engine writes to the durable history, and the change signal;
//! - [`super::launch`]: the spawner thread, on which every execution starts through the runtime;
//! - [`super::supervisor`]: one thread per execution, which waits for its exit and clears out what it left;
//! - [`super::drain`]: two threads per execution, which move its output into its log;
//! - [`super::executor`]: the owner of all of them, which takes each execution from start to end;
//! - [`super::outliving`]: handing an execution that outlives its session to its supervisor, and adopting it there;
//! - [`super::listing`]: what listings read (a status, a listing, a page);
//! - [`super::shared_history`]: what other server processes on the history ask and leave behind.
//!
//! Async tasks (tool calls, timeouts) only wait on an execution's `logs_tx`; anything that may block — a signal
//! to a process tree, a `/proc` scan, reaping — runs on `spawn_blocking` or on the engine's own threads, never on
//! an async worker.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::config::{AdoptError, EngineConfig, EngineError, StopError};
use super::detach::Handover;
use super::execution::{ExecutionState, StopReason};
use super::executor::{Executor, NotPrepared, blocking};
use super::follow::{Follow, Reread, StoredChanges};
use super::listing;
use super::outliving::{self, HandedOver};
use super::shared_history::{Reattach, reattach, record_progress, signal_stored_tree};
use super::status::ExecutionStatus;
use super::table::{Admission, ListFilter, PageKey};
use super::view::{ExecutionView, StoredExecution};
use crate::catalog::{Invocation, WorkflowDef};
use crate::logs::LogDir;
use crate::proc::reaper::{is_subreaper, reap_orphans};
use crate::runtime::Runtime;
use crate::store::{ExecutionRecord, ReadError, Store};

/// Runs workflows and keeps their executions. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    executor: Arc<Executor>,
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
        if is_subreaper() {
            tokio_handle.spawn(reap_orphans_on_sigchld());
        }
        let executor = Executor::new(config, tokio_handle, runtime, history)?;
        if executor.records().history().is_some() {
            executor.tokio_handle().spawn(record_progress(executor.clone()));
        }
        Ok(Engine { executor })
    }

    /// The history, unless the server runs ephemeral.
    pub fn history(&self) -> Option<&Arc<Store>> {
        self.executor.records().history()
    }

    /// At startup: executions whose server is gone are followed again when they run on (a remote job, its
    /// workflow still known by `workflow_of`), else they become `lost` (and what is left of their processes is
    /// killed, once each is known to be theirs; only started ones are looked for, all in one pass over /proc);
    /// dead instances are forgotten, and retention applies (in the background). Returns the executions followed
    /// again and those lost. Blocking.
    pub fn recover(&self, workflow_of: impl Fn(&str) -> Option<Arc<WorkflowDef>>) -> (Vec<Uuid>, Vec<Uuid>) {
        let Some(history) = self.history() else {
            return (Vec::new(), Vec::new());
        };
        let (mut followed, mut lost) = (Vec::new(), Vec::new());
        for rec in history.orphaned() {
            match reattach(&self.executor, &rec, &workflow_of) {
                Reattach::Followed => followed.push(rec.id),
                Reattach::TakenOver => {}
                Reattach::Unfollowable(why) => {
                    tracing::warn!(execution = %rec.id, "{why}");
                    lost.push(rec);
                }
                Reattach::NotRemote => lost.push(rec),
            }
        }
        self.executor.records().lose_all(&lost);
        history.forget_dead_instances();
        // Retention can wait: after a crash it may delete thousands of log folders (0.4 s for 5000), which
        // would hold up the first answer. A shutdown's own pass waits for this one.
        let executor = self.executor.clone();
        self.executor
            .tokio_handle()
            .spawn_blocking(move || executor.records().prune());
        (followed, lost.iter().map(|r| r.id).collect())
    }

    pub fn config(&self) -> &EngineConfig {
        self.executor.config()
    }

    /// Wakes when an execution is added, starts or ends in this process (not for other server processes on the
    /// state directory, nor for executions forgotten by retention: whoever needs those looks again now and
    /// then). A watcher of the list of executions waits on it.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.executor.records().changes()
    }

    /// Cancelled when the server starts shutting down; long waits end on it.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.executor.shutdown_token().clone()
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
        let executor = &self.executor;
        if executor.is_shutting_down() {
            return Err(EngineError::ShuttingDown);
        }
        if def.outlive_session && !def.placement.outlives_session() {
            return self.execute_detached(def, invocation, idempotency_key).await;
        }
        let cfg = executor.config();
        {
            let t = executor.table();
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
        let name = def.name.clone();
        let prepared = {
            let executor = executor.clone();
            let key = idempotency_key.clone();
            // Recording the execution touches the disk: not on an async worker.
            tokio::task::spawn_blocking(move || executor.prepare(def, invocation, key, None)).await
        };
        let exec = match prepared {
            Ok(Ok(exec)) => exec,
            Ok(Err(NotPrepared::Existing(existing))) => return Ok(self.as_it_stands(existing).await),
            // (The table keeps this path's limits; none is asked of the history.)
            Ok(Err(NotPrepared::AtLimit(running))) => {
                return Err(EngineError::WorkflowAtLimit {
                    workflow: name,
                    max: 0,
                    running,
                });
            }
            Err(failed) => return Err(EngineError::from_join("recording the new execution", failed)),
        };
        let admission = {
            let mut t = executor.table();
            let admission = t.admit(exec.clone(), cfg.max_concurrent, cfg.max_queued);
            t.prune(cfg.retain_executions, cfg.retain_age, SystemTime::now());
            admission
        };
        let launch = match admission {
            Admission::Launch => true,
            Admission::Queued => false,
            // Another call with its key was admitted while this one was prepared.
            Admission::Existing(existing) => {
                executor.discard(exec).await;
                return Ok(ExecutionView::Live(existing));
            }
            refused => {
                executor.discard(exec).await;
                return Err(self.refused(refused));
            }
        };
        executor.records().changed();
        if launch {
            executor.launched(exec.clone()).await;
        }
        Ok(ExecutionView::Live(exec))
    }

    /// Starts an execution that outlives its session on a supervisor process of its own (see
    /// [`super::outliving`]): from then on this server's only as a stored execution.
    async fn execute_detached(
        &self,
        def: Arc<WorkflowDef>,
        invocation: Invocation,
        idempotency_key: Option<String>,
    ) -> Result<ExecutionView, EngineError> {
        match outliving::hand_over(&self.executor, def, invocation, idempotency_key).await? {
            HandedOver::Existing(stored) => Ok(self.as_it_stands(stored).await),
            HandedOver::Started(exec) => Ok(self
                .find(&exec.id)
                .await
                .ok()
                .flatten()
                .unwrap_or(ExecutionView::Live(exec))),
        }
    }

    /// Sets how supervisors of executions that outlive their session start (the binary run again, see
    /// [`super::detach`]). Without one, such executions are refused with a clear error.
    pub fn detach_with(&self, detacher: Arc<dyn super::detach::Detacher>) {
        self.executor.detach_with(detacher);
    }

    /// Runs an execution another process recorded and handed over (see [`super::detach`]): takes it over from
    /// its recorder, and returns once it is running or failed to start.
    pub async fn adopt(&self, handover: Handover) -> Result<ExecutionView, AdoptError> {
        outliving::adopt(&self.executor, handover)
            .await
            .map(ExecutionView::Live)
    }

    /// An execution found in the history (the one an idempotency key started), as it stands now.
    async fn as_it_stands(&self, stored: Arc<StoredExecution>) -> ExecutionView {
        let id = stored.record.id;
        self.find(&id)
            .await
            .ok()
            .flatten()
            .unwrap_or(ExecutionView::Stored(stored))
    }

    fn refused(&self, admission: Admission) -> EngineError {
        match admission {
            Admission::QueueFull(queued) => EngineError::QueueFull {
                queued,
                cap: self.executor.config().max_queued,
            },
            _ => EngineError::ShuttingDown,
        }
    }

    /// The execution with this id: run here, or known from the history (an unfinished one whose server is gone
    /// is marked lost on the way). The history is read on a blocking thread; `Ok(None)` when there is no such
    /// execution, an error when the history could not say (busy, corrupt, a bad record).
    pub async fn find(&self, id: &Uuid) -> Result<Option<ExecutionView>, ReadError> {
        if let Some(exec) = self.executor.table().get(id) {
            return Ok(Some(ExecutionView::Live(exec)));
        }
        if self.history().is_none() {
            return Ok(None);
        }
        let (engine, id) = (self.clone(), *id);
        blocking(move || engine.find_blocking(&id)).await.unwrap_or(Ok(None))
    }

    /// [`Engine::find`] on the calling thread, which may block (SQLite, lock files, `/proc`).
    pub fn find_blocking(&self, id: &Uuid) -> Result<Option<ExecutionView>, ReadError> {
        if let Some(exec) = self.executor.table().get(id) {
            return Ok(Some(ExecutionView::Live(exec)));
        }
        let Some(history) = self.history() else {
            return Ok(None);
        };
        let Some(mut record) = history.try_get(id)? else {
            return Ok(None);
        };
        if record.unfinished() && history.owner_gone(&record.owner) {
            self.executor.records().lose(&record);
            match history.try_get(id)? {
                Some(now) => record = now,
                None => return Ok(None),
            }
        }
        Ok(Some(ExecutionView::Stored(Arc::new(StoredExecution {
            logs: LogDir::open(&history.log_path(id)),
            record,
        }))))
    }

    /// The same execution, read again (a stored record may have changed since).
    pub async fn refresh(&self, view: &ExecutionView) -> ExecutionView {
        match view {
            ExecutionView::Live(_) => view.clone(),
            ExecutionView::Stored(_) => self
                .find(&view.id())
                .await
                .ok()
                .flatten()
                .unwrap_or_else(|| view.clone()),
        }
    }

    /// [`Engine::refresh`] on the calling thread, which may block.
    pub fn refresh_blocking(&self, view: &ExecutionView) -> ExecutionView {
        match view {
            ExecutionView::Live(_) => view.clone(),
            ExecutionView::Stored(_) => self
                .find_blocking(&view.id())
                .ok()
                .flatten()
                .unwrap_or_else(|| view.clone()),
        }
    }

    /// A watcher of many stored executions' changes: see [`StoredChanges`].
    pub fn stored_changes(&self) -> StoredChanges {
        StoredChanges::new(Reread::history_files(self))
    }

    /// Follows an execution: see [`Follow`].
    pub fn follow(&self, view: &ExecutionView) -> Follow<Engine> {
        Follow::new(self.clone(), view)
    }

    /// The status of an execution, with its queue position when queued here.
    pub fn status(&self, view: &ExecutionView) -> ExecutionStatus {
        listing::status(&self.executor, view)
    }

    /// Executions matching `filter`, newest first, and how many matched in all (with a history: every server
    /// process's, and those from before a restart, read on a blocking thread); an error when the history
    /// cannot be read (never an empty listing in its place).
    pub async fn list(&self, filter: &ListFilter) -> Result<(Vec<ExecutionStatus>, usize), ReadError> {
        if self.history().is_some() {
            let (engine, filter) = (self.clone(), filter.clone());
            return blocking(move || listing::list(&engine.executor, &filter))
                .await
                .unwrap_or_else(|| Ok(Default::default()));
        }
        listing::list(&self.executor, filter)
    }

    /// Up to `limit` executions after `after` in [`Engine::list`]'s order (newest first), each with its place;
    /// with a history, read on a blocking thread, and only those records, so walking every page reads each
    /// once.
    pub async fn page(
        &self,
        after: Option<PageKey>,
        limit: usize,
    ) -> Result<Vec<(PageKey, ExecutionStatus)>, ReadError> {
        if self.history().is_some() {
            let engine = self.clone();
            return blocking(move || listing::page(&engine.executor, after, limit))
                .await
                .unwrap_or_else(|| Ok(Vec::new()));
        }
        listing::page(&self.executor, after, limit)
    }

    /// The retention rule in words, e.g. "the last 1000 finished executions, for at most 7 days, with at most
    /// 10.00 GiB of log files".
    pub fn retention_rule(&self) -> String {
        self.config().retention_rule(self.history().is_some())
    }

    /// How many executions are retained (with a history: counted on a blocking thread).
    pub async fn retained(&self) -> Result<usize, ReadError> {
        match self.history().cloned() {
            Some(history) => blocking(move || history.count()).await.unwrap_or(Ok(0)),
            None => Ok(self.executor.table().len()),
        }
    }

    /// Waits until the execution is final, `timeout` passes, `cancel` fires, or the server shuts down.
    /// Returns whether it is final.
    pub async fn wait_final(&self, view: &ExecutionView, timeout: Duration, cancel: &CancellationToken) -> bool {
        let shutdown = self.executor.shutdown_token();
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

    /// Stops an execution: a queued one is taken off the queue; a running one gets SIGTERM on its whole tree,
    /// `grace` to exit, then SIGKILL. Returns once it is final (every process of its tree gone). An execution
    /// run by another server process is asked to stop through the history and signalled from here, once its
    /// processes are known to be its own.
    pub async fn stop(&self, view: &ExecutionView, reason: StopReason, grace: Duration) -> Result<(), StopError> {
        match view {
            ExecutionView::Live(exec) => {
                self.executor.stop_live(exec, reason, grace).await;
                Ok(())
            }
            ExecutionView::Stored(stored) => self.stop_stored(&stored.record, reason, grace).await,
        }
    }

    /// Stops an execution another server process runs: asks it through the history, and signals its tree from
    /// here once its processes are known to be its own.
    async fn stop_stored(&self, rec: &ExecutionRecord, reason: StopReason, grace: Duration) -> Result<(), StopError> {
        let Some(history) = self.history().cloned() else {
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
        Err(StopError::OwnerHasNotEnded {
            id,
            owner: rec.owner.clone(),
            pid: rec.pid,
        })
    }

    /// Stops everything for a server exit: no new executions, queued ones cancelled, every running tree gets
    /// SIGTERM then (after at most `grace`) SIGKILL. Returns once every tree is gone or `grace` + 1 s passed.
    /// A second call (a signal and the end of input both stop the server) waits for the first one's work, which
    /// goes on even if the first caller is dropped.
    pub async fn shutdown(&self, grace: Duration) {
        self.executor.shutdown(grace).await;
    }
}

/// The engine reads an execution again from its table or its history; one gone from the history meanwhile stays
/// as it was last read.
impl Reread for Engine {
    type Error = std::convert::Infallible;

    fn reread(&self, view: &ExecutionView) -> Result<ExecutionView, Self::Error> {
        Ok(self.refresh_blocking(view))
    }

    fn status(&self, view: &ExecutionView) -> ExecutionStatus {
        Engine::status(self, view)
    }

    fn history_files(&self) -> Vec<std::path::PathBuf> {
        self.history().map(|h| h.history_files().to_vec()).unwrap_or_default()
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
