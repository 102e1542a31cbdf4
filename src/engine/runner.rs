//! The engine: the executions table, the concurrency queue, spawning (on one long-lived spawner thread), the
//! supervisor thread of each execution, stopping (TERM, grace, KILL), retention and shutdown.
//!
//! Threads, and what each may lock:
//! - the spawner thread forks every child, so the parent-death signal (which fires when the *thread* that forked
//!   exits) only fires when the server itself dies;
//! - two drain threads per execution hold pre-cloned log handles and never touch the table;
//! - one supervisor thread per execution blocks in `wait()`, then settles the final state;
//! - tokio tasks (tool calls, timeouts) only wait on `logs_tx` and never block.
//!
//! The table lock (`std::sync::Mutex`) is held for map and queue updates only, never across a wait, an await
//! or a spawn.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::drain::{DrainHandles, DrainSync, spawn_drain};
use super::execution::{Execution, ExecutionState, ExecutionStatus, StopReason};
use super::process;
use super::progress::ProgressTracker;
use super::spawn::{base_env, describe_spawn_error, resolve_program, spawn_registered};
use super::watchdog::Watchdog;
use crate::catalog::{Invocation, Limits, WorkflowDef};
use crate::logs::{LogLimits, LogStore, MemoryBudget, Stream};

/// How the engine behaves; built from the config file's `limits`.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub max_concurrent: usize,
    pub default_timeout: Option<Duration>,
    pub grace: Duration,
    pub log_limits: LogLimits,
    pub log_bytes_total: usize,
    pub retain_executions: usize,
    pub retain_age: Duration,
    pub inherit_env: Vec<String>,
    /// How long the drain threads may keep reading after the workflow exited and its group was killed.
    pub drain_grace: Duration,
}

impl EngineConfig {
    pub fn from_limits(limits: &Limits, inherit_env: &[String]) -> Self {
        EngineConfig {
            max_concurrent: limits.max_concurrent,
            default_timeout: limits.default_timeout_ms.map(Duration::from_millis),
            grace: Duration::from_millis(limits.grace_ms),
            log_limits: LogLimits {
                max_bytes: limits.log_bytes_per_execution,
                max_line_bytes: limits.max_line_bytes,
            },
            log_bytes_total: limits.log_bytes_total,
            retain_executions: limits.retain_executions,
            retain_age: Duration::from_secs(limits.retain_seconds),
            inherit_env: inherit_env.to_vec(),
            drain_grace: Duration::from_secs(2),
        }
    }
}

/// Why the engine refused a request.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the server is shutting down; no new executions start")]
    ShuttingDown,
}

type Job = Box<dyn FnOnce() + Send>;

/// Runs workflows and keeps their executions. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

struct Shared {
    config: EngineConfig,
    runtime: tokio::runtime::Handle,
    spawner: Mutex<mpsc::Sender<Job>>,
    budget: Arc<MemoryBudget>,
    table: Mutex<Table>,
    base_env: Vec<(String, String)>,
    shutting_down: AtomicBool,
    shutdown: CancellationToken,
    watchdog: Option<Watchdog>,
}

#[derive(Default)]
struct Table {
    by_id: HashMap<Uuid, Arc<Execution>>,
    /// Creation order, oldest first.
    order: Vec<Uuid>,
    queue: VecDeque<Arc<Execution>>,
    /// Executions holding a concurrency slot (launching or running).
    slotted: HashSet<Uuid>,
    running_by_workflow: HashMap<String, usize>,
    idempotency: HashMap<(String, String), Uuid>,
}

impl Table {
    fn has_slot(&self, def: &WorkflowDef, max: usize) -> bool {
        let per = self.running_by_workflow.get(&def.name).copied().unwrap_or(0);
        self.slotted.len() < max && def.max_concurrent.is_none_or(|m| per < m)
    }

    fn take_slot(&mut self, exec: &Execution) {
        self.slotted.insert(exec.id);
        *self.running_by_workflow.entry(exec.workflow.name.clone()).or_default() += 1;
    }

    fn release_slot(&mut self, exec: &Execution) {
        if self.slotted.remove(&exec.id)
            && let Some(n) = self.running_by_workflow.get_mut(&exec.workflow.name)
        {
            *n = n.saturating_sub(1);
        }
    }

    /// Takes queued executions that now fit, in queue order (one blocked by its workflow's limit does not hold
    /// up the others).
    fn pop_launchable(&mut self, max: usize) -> Vec<Arc<Execution>> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.queue.len() && self.slotted.len() < max {
            if self.has_slot(&self.queue[i].workflow, max) {
                let e = self.queue.remove(i).expect("index in range");
                self.take_slot(&e);
                out.push(e);
            } else {
                i += 1;
            }
        }
        out
    }

    /// Forgets finished executions beyond the retention count or age.
    fn prune(&mut self, keep: usize, max_age: Duration) {
        let now = SystemTime::now();
        let finished: Vec<(Uuid, Option<SystemTime>)> = self
            .order
            .iter()
            .filter_map(|id| {
                let e = self.by_id.get(id)?;
                let life = e.life();
                life.state.is_terminal().then_some((*id, life.finished_at))
            })
            .collect();
        let excess = finished.len().saturating_sub(keep);
        let drop: HashSet<Uuid> = finished
            .iter()
            .enumerate()
            .filter(|(i, (_, at))| {
                *i < excess || at.is_some_and(|t| now.duration_since(t).unwrap_or_default() > max_age)
            })
            .map(|(_, (id, _))| *id)
            .collect();
        if drop.is_empty() {
            return;
        }
        self.order.retain(|id| !drop.contains(id));
        self.by_id.retain(|id, _| !drop.contains(id));
        self.idempotency.retain(|_, id| !drop.contains(id));
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Filters for [`Engine::list`].
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub workflow: Option<String>,
    pub state: Option<ExecutionState>,
    pub limit: usize,
}

impl Engine {
    /// Starts the spawner thread. `runtime` runs the timeout tasks; `watchdog`, when given, kills every running
    /// workflow group if the server dies.
    pub fn new(
        config: EngineConfig,
        runtime: tokio::runtime::Handle,
        watchdog: Option<Watchdog>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new().name("wf-spawner".into()).spawn(move || {
            // Lives as long as the process: the parent-death signal of every child is tied to this thread.
            for job in rx {
                job();
            }
        })?;
        let base_env = base_env(&config.inherit_env);
        if process::is_subreaper() {
            runtime.spawn(reap_orphans_on_sigchld());
        }
        Ok(Engine {
            shared: Arc::new(Shared {
                budget: MemoryBudget::new(config.log_bytes_total),
                config,
                runtime,
                spawner: Mutex::new(tx),
                table: Mutex::new(Table::default()),
                base_env,
                shutting_down: AtomicBool::new(false),
                shutdown: CancellationToken::new(),
                watchdog,
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
                && let Some(existing) = t
                    .idempotency
                    .get(&(def.name.clone(), key.clone()))
                    .and_then(|id| t.by_id.get(id))
            {
                return Ok(existing.clone());
            }
            let mut argv = def.command.clone();
            argv.extend(invocation.args);
            let id = Uuid::new_v4();
            let mut env = shared.base_env.clone();
            env.extend(def.env.iter().cloned());
            env.extend(invocation.env);
            // Last, so neither the config nor a param can change it: it finds escaped descendants.
            env.retain(|(k, _)| k != process::EXECUTION_MARKER);
            env.push((process::EXECUTION_MARKER.to_owned(), id.to_string()));
            let exec = Execution::new(
                id,
                def.clone(),
                invocation.values,
                argv,
                env,
                idempotency_key.clone(),
                LogStore::new(shared.config.log_limits, shared.budget.clone()),
                ExecutionState::Queued,
                Arc::new(ProgressTracker::default()),
            );
            t.by_id.insert(exec.id, exec.clone());
            t.order.push(exec.id);
            if let Some(key) = idempotency_key {
                t.idempotency.insert((def.name.clone(), key), exec.id);
            }
            let launch = t.has_slot(&def, shared.config.max_concurrent);
            if launch {
                t.take_slot(&exec);
            } else {
                t.queue.push_back(exec.clone());
            }
            t.prune(shared.config.retain_executions, shared.config.retain_age);
            (exec, launch)
        };
        if launch {
            let (tx, rx) = tokio::sync::oneshot::channel();
            shared.launch(exec.clone(), Some(tx));
            let _ = rx.await;
        }
        Ok(exec)
    }

    pub fn get(&self, id: &Uuid) -> Option<Arc<Execution>> {
        lock(&self.shared.table).by_id.get(id).cloned()
    }

    /// The status of an execution, with its queue position when queued.
    pub fn status(&self, exec: &Execution) -> ExecutionStatus {
        let position = {
            let t = lock(&self.shared.table);
            t.queue.iter().position(|e| e.id == exec.id).map(|p| p + 1)
        };
        exec.status(position)
    }

    /// Executions matching `filter`, newest first, and how many matched in all.
    pub fn list(&self, filter: &ListFilter) -> (Vec<ExecutionStatus>, usize) {
        let execs: Vec<Arc<Execution>> = {
            let mut t = lock(&self.shared.table);
            // The age rule also applies while nothing starts or finishes.
            t.prune(self.shared.config.retain_executions, self.shared.config.retain_age);
            t.order.iter().rev().filter_map(|id| t.by_id.get(id).cloned()).collect()
        };
        let matching: Vec<Arc<Execution>> = execs
            .into_iter()
            .filter(|e| filter.workflow.as_ref().is_none_or(|w| &e.workflow.name == w))
            .filter(|e| filter.state.is_none_or(|s| e.state() == s))
            .collect();
        let total = matching.len();
        let statuses = matching.iter().take(filter.limit).map(|e| self.status(e)).collect();
        (statuses, total)
    }

    /// How many finished executions are retained, and the retention rule.
    pub fn retained(&self) -> usize {
        lock(&self.shared.table).by_id.len()
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

    /// Stops an execution: a queued one is taken off the queue; a running one gets SIGTERM on its whole group,
    /// `grace` to exit, then SIGKILL. Returns once it is final (every process of its group gone).
    pub async fn stop(&self, exec: &Arc<Execution>, reason: StopReason, grace: Duration) {
        let shared = &self.shared;
        let dequeued = {
            let mut t = lock(&shared.table);
            match t.queue.iter().position(|e| e.id == exec.id) {
                Some(pos) => t.queue.remove(pos),
                None => None,
            }
        };
        if dequeued.is_some() {
            end_unstarted(exec, reason);
            return;
        }
        let mut rx = exec.logs_tx.subscribe();
        {
            let mut l = exec.life();
            if l.state.is_terminal() {
                return;
            }
            if l.stop.is_none() {
                l.stop = Some(reason);
                l.error = Some(stop_message(reason, exec));
            }
        }
        exec.notify();
        // An execution still being spawned gets its pid (or settles) in a moment.
        let target = loop {
            let (pid, exited, terminal) = {
                let l = exec.life();
                (l.pid, l.exited, l.state.is_terminal())
            };
            if terminal {
                return;
            }
            if pid.is_some() {
                break (pid, exited);
            }
            if rx.changed().await.is_err() {
                return;
            }
        };
        if let (Some(pgid), false) = target {
            let marker = exec.id.to_string();
            process::signal_execution(pgid, &marker, libc::SIGTERM);
            let never = CancellationToken::new();
            if self.wait_final(exec, grace, &never).await {
                return;
            }
            process::signal_execution(pgid, &marker, libc::SIGKILL);
        }
        // The supervisor settles the state once the group is gone and the pipes are drained.
        while !exec.state().is_terminal() {
            if rx.changed().await.is_err() {
                break;
            }
        }
    }

    /// Stops everything for a server exit: no new executions, queued ones cancelled, every running group gets
    /// SIGTERM then (after at most `grace`) SIGKILL. Returns once every group is gone or `grace` + 1 s passed.
    pub async fn shutdown(&self, grace: Duration) {
        let shared = &self.shared;
        shared.shutting_down.store(true, Ordering::SeqCst);
        shared.shutdown.cancel();
        let (queued, running): (Vec<_>, Vec<_>) = {
            let mut t = lock(&shared.table);
            let queued: Vec<_> = t.queue.drain(..).collect();
            let running = t.by_id.values().filter(|e| !e.state().is_terminal()).cloned().collect();
            (queued, running)
        };
        for e in queued {
            end_unstarted(&e, StopReason::Shutdown);
        }
        let mut groups = Vec::new();
        for e in &running {
            let pid = {
                let mut l = e.life();
                l.stop.get_or_insert(StopReason::Shutdown);
                if l.error.is_none() {
                    l.error = Some(stop_message(StopReason::Shutdown, e));
                }
                l.pid
            };
            if let Some(pgid) = pid {
                let marker = e.id.to_string();
                process::signal_execution(pgid, &marker, libc::SIGTERM);
                groups.push((pgid, marker));
            }
        }
        let alive = |groups: &[(u32, String)]| groups.iter().any(|(g, m)| !execution_gone(*g, m));
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && alive(&groups) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for (g, m) in &groups {
            process::signal_execution(*g, m, libc::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline && alive(&groups) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if shared.watchdog.is_some() {
            let shared = shared.clone();
            // Reaping the watchdog blocks in waitpid for a moment: not on a tokio worker.
            let _ = tokio::task::spawn_blocking(move || shared.watchdog.as_ref().map(Watchdog::finish)).await;
        }
    }
}

fn stop_message(reason: StopReason, exec: &Execution) -> String {
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

/// Ends an execution taken off the queue before it started.
fn end_unstarted(exec: &Execution, reason: StopReason) {
    exec.update(|l| {
        l.stop = Some(reason);
        l.state = final_state(Some(reason), None);
        l.error = Some(stop_message(reason, exec));
        l.finished_at = Some(SystemTime::now());
    });
    exec.logs_buffer.mark_finished();
}

fn final_state(stop: Option<StopReason>, exit_code: Option<i32>) -> ExecutionState {
    match stop {
        Some(StopReason::Cancel | StopReason::Shutdown) => ExecutionState::Cancelled,
        Some(StopReason::Timeout) => ExecutionState::TimedOut,
        None if exit_code == Some(0) => ExecutionState::Succeeded,
        None => ExecutionState::Failed,
    }
}

impl Shared {
    /// Hands an execution to the spawner thread. `started` is told once it is running or failed to start.
    fn launch(self: &Arc<Self>, exec: Arc<Execution>, started: Option<tokio::sync::oneshot::Sender<()>>) {
        let shared = self.clone();
        let job: Job = Box::new(move || {
            shared.start(exec);
            if let Some(tx) = started {
                let _ = tx.send(());
            }
        });
        if lock(&self.spawner).send(job).is_err() {
            tracing::error!("the spawner thread is gone; an execution cannot start");
        }
    }

    /// Spawns the process of an execution (on the spawner thread) and its drain and supervisor threads.
    fn start(self: &Arc<Self>, exec: Arc<Execution>) {
        if exec.life().stop.is_some() {
            // Stopped between taking a slot and starting.
            self.settle(&exec);
            return;
        }
        let def = &exec.workflow;
        if !def.cwd.is_dir() {
            let msg = format!(
                "working directory {} does not exist or is not a folder; fix \"cwd\" in the config",
                def.cwd.display()
            );
            self.fail_to_start(&exec, msg);
            return;
        }
        let path = exec
            .env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map_or("", |(_, v)| v.as_str());
        let program = match resolve_program(&exec.argv[0], path, &def.cwd) {
            Ok(p) => p,
            Err(msg) => {
                self.fail_to_start(&exec, msg);
                return;
            }
        };
        // No pre_exec hook: std then uses posix_spawn (vfork-like), which does not copy our page tables.
        let mut cmd = Command::new(&program);
        cmd.arg0(&exec.argv[0])
            .args(&exec.argv[1..])
            .env_clear()
            .envs(exec.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&def.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let spawned = spawn_registered(&mut cmd);
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                let msg = describe_spawn_error(&e, &program);
                self.fail_to_start(&exec, msg);
                return;
            }
        };
        let pid = child.id();
        if let Some(w) = &self.watchdog {
            w.watch(pid, &exec.id.to_string());
        }
        exec.update(|l| {
            l.state = ExecutionState::Running;
            l.pid = Some(pid);
            l.started_at = Some(SystemTime::now());
        });
        let sync = DrainSync::new();
        let handles = DrainHandles {
            logs_buffer: exec.logs_buffer.clone(),
            logs_tx: exec.logs_tx.clone(),
            progress: exec.progress.clone(),
            sync: sync.clone(),
        };
        let pipes = [
            (Stream::Stdout, child.stdout.take().map(OwnedFd::from)),
            (Stream::Stderr, child.stderr.take().map(OwnedFd::from)),
        ];
        let mut pipe_inodes = Vec::new();
        for (stream, fd) in pipes {
            let Some(fd) = fd else { continue };
            let pipe = File::from(fd);
            if let Ok(meta) = pipe.metadata() {
                pipe_inodes.push(std::os::unix::fs::MetadataExt::ino(&meta));
            }
            if let Err(e) = spawn_drain(stream, pipe, handles.clone()) {
                // Without a reader the child could block forever on a full pipe: stop it.
                tracing::error!(execution = %exec.id, error = %e, "cannot start a drain thread; killing the workflow");
                let _ = process::signal_group(pid, libc::SIGKILL);
            }
        }
        let shared = self.clone();
        let supervised = exec.clone();
        let spawned = std::thread::Builder::new()
            .name("wf-supervisor".into())
            .stack_size(256 * 1024)
            .spawn(move || shared.supervise(supervised, child, sync, pipe_inodes));
        if let Err(e) = spawned {
            tracing::error!(execution = %exec.id, error = %e, "cannot start a supervisor thread; killing the workflow");
            let _ = process::signal_group(pid, libc::SIGKILL);
            return;
        }
        if let Some(timeout) = def
            .timeout_ms
            .map(Duration::from_millis)
            .or(self.config.default_timeout)
        {
            let engine = Engine { shared: self.clone() };
            let grace = self.config.grace;
            self.runtime.spawn(async move {
                let never = CancellationToken::new();
                if !engine.wait_final(&exec, timeout, &never).await && !engine.shared.shutdown.is_cancelled() {
                    engine.stop(&exec, StopReason::Timeout, grace).await;
                }
            });
        }
    }

    fn fail_to_start(self: &Arc<Self>, exec: &Arc<Execution>, msg: String) {
        tracing::warn!(execution = %exec.id, workflow = %exec.workflow.name, "{msg}");
        exec.update(|l| {
            l.state = ExecutionState::FailedToStart;
            l.error = Some(msg);
            l.finished_at = Some(SystemTime::now());
        });
        exec.logs_buffer.mark_finished();
        self.release(exec);
    }

    /// Waits for the leader, clears out what it left behind (its group and escaped descendants), gives the pipes
    /// a short deadline, then settles the state.
    fn supervise(self: Arc<Self>, exec: Arc<Execution>, mut child: Child, sync: Arc<DrainSync>, pipes: Vec<u64>) {
        let pid = child.id();
        let marker = exec.id.to_string();
        let status = loop {
            match child.wait() {
                Ok(s) => break Some(s),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::error!(execution = %exec.id, error = %e, "waiting for a workflow failed");
                    break None;
                }
            }
        };
        process::own_children().remove(&pid);
        exec.update(|l| {
            l.exit_code = status.and_then(|s| s.code());
            l.signal = status.and_then(|s| s.signal());
            l.exited = true;
            if status.is_none() && l.error.is_none() {
                l.error = Some("the exit status was lost".into());
            }
        });
        // What the workflow left behind — in its group, or escaped from it — is killed, as a CI runner does at
        // the end of a job. (During a stop it gets the rest of its grace period first.)
        if exec.life().stop.is_some() {
            wait_execution_gone(pid, &marker, Instant::now() + self.config.grace);
        }
        let stragglers = process::signal_execution(pid, &marker, libc::SIGKILL);
        let mut open = sync.wait_until(Instant::now() + Duration::from_millis(300));
        if !open.is_empty() {
            // Something we could not attribute (an escaped process that cleared its environment) holds a pipe.
            for holder in process::pipe_holders(&pipes) {
                tracing::warn!(execution = %exec.id, pid = holder, "killing a process that holds the workflow's output open");
                let _ = process::signal_process(holder, libc::SIGKILL);
            }
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
            exec.update(|l| l.held_open = open);
        }
        // Nothing was left behind (the common case) when the one scan found no one and the group is empty.
        let gone = (stragglers.is_empty() && !process::group_exists(pid))
            || wait_execution_gone(pid, &marker, Instant::now() + Duration::from_secs(2));
        if gone {
            if let Some(w) = &self.watchdog {
                w.unwatch(pid);
            }
        } else {
            tracing::warn!(execution = %exec.id, pgid = pid, "processes of the workflow survived SIGKILL");
        }
        self.settle(&exec);
    }

    /// Decides the final state, frees the slot and starts queued executions.
    fn settle(self: &Arc<Self>, exec: &Arc<Execution>) {
        exec.update(|l| {
            l.state = final_state(l.stop, l.exit_code);
            l.finished_at = Some(SystemTime::now());
        });
        exec.logs_buffer.mark_finished();
        tracing::info!(execution = %exec.id, workflow = %exec.workflow.name, state = exec.state().as_str(), "execution finished");
        self.release(exec);
    }

    fn release(self: &Arc<Self>, exec: &Arc<Execution>) {
        let next = {
            let mut t = lock(&self.table);
            t.release_slot(exec);
            t.prune(self.config.retain_executions, self.config.retain_age);
            if self.shutting_down.load(Ordering::SeqCst) {
                Vec::new()
            } else {
                t.pop_launchable(self.config.max_concurrent)
            }
        };
        for e in next {
            self.launch(e, None);
        }
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
        let _ = tokio::task::spawn_blocking(process::reap_orphans).await;
    }
}

/// Whether no process of the execution is left (the scan also reaps orphans re-parented to us).
fn execution_gone(leader: u32, marker: &str) -> bool {
    process::execution_members(leader, marker).is_empty() && !process::group_exists(leader)
}

/// Polls until no process of the execution is left, or `deadline`.
fn wait_execution_gone(leader: u32, marker: &str, deadline: Instant) -> bool {
    loop {
        if execution_gone(leader, marker) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
