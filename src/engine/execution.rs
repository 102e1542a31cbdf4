//! One execution: its identity, and its lifecycle as a state machine. The lifecycle changes only through the
//! transition methods here (started, exited, stop requested, settled, …), each of which wakes waiters.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use serde_json::{Map, Value};
use tokio::sync::watch;
use uuid::Uuid;

use super::progress::ProgressTracker;
use crate::catalog::WorkflowDef;
use crate::logs::{ExecutionLog, Stream};
pub use crate::model::{ExecutionState, StopReason};
use crate::runtime::{Exit, JobState, Launch, RemoteJob, Tree};

/// The handle to a running execution's process tree.
#[derive(Clone)]
pub struct TreeHandle(pub Arc<dyn Tree>);

impl std::fmt::Debug for TreeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TreeHandle")
    }
}

/// The mutable part of an execution, as a snapshot (see [`Execution::life`]).
#[derive(Clone, Debug)]
pub struct Lifecycle {
    pub state: ExecutionState,
    pub pid: Option<u32>,
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub error: Option<String>,
    pub stop: Option<StopReason>,
    /// Streams a descendant outside the process group kept open after the workflow exited.
    pub held_open: Vec<Stream>,
    /// The leader has exited (its status is recorded) but the execution is not final yet.
    pub exited: bool,
    /// Everything the execution started, while it runs.
    pub tree: Option<TreeHandle>,
    /// The job, when it runs on a remote engine, and where it stands there.
    pub job: Option<(RemoteJob, Option<JobState>)>,
    /// How it ended when that was not an exit: it never ran its program, or its runtime lost track of it.
    pub ended_as: Option<(ExecutionState, String)>,
    /// When it ended, stamped before its slot is given away (it becomes `finished_at` once settled), so a
    /// successor never starts before its predecessor finished.
    pub ended_at: Option<SystemTime>,
}

/// One run of a workflow.
#[derive(Debug)]
pub struct Execution {
    pub id: Uuid,
    pub workflow: Arc<WorkflowDef>,
    /// Every param with a value, as JSON.
    pub params: Map<String, Value>,
    /// What runs: argv, environment, folder and marker, prepared from the workflow and the params.
    pub launch: Launch,
    pub idempotency_key: Option<String>,
    pub created_at: SystemTime,
    /// The execution's log; the drain threads hold clones of this handle.
    pub logs_buffer: Arc<ExecutionLog>,
    /// Bumped on every new chunk of lines and every state change; followers wait on it.
    pub logs_tx: Arc<watch::Sender<u64>>,
    pub progress: Arc<ProgressTracker>,
    life: Mutex<Lifecycle>,
}

/// The state an execution ends in, from why it was stopped (if it was) and how its leader exited.
pub fn final_state(stop: Option<StopReason>, exit_code: Option<i32>) -> ExecutionState {
    match stop {
        Some(StopReason::Cancel | StopReason::Shutdown) => ExecutionState::Cancelled,
        Some(StopReason::Timeout) => ExecutionState::TimedOut,
        None if exit_code == Some(0) => ExecutionState::Succeeded,
        None => ExecutionState::Failed,
    }
}

/// The final state from the lifecycle: a stop asked for decides first, then how the runtime saw it end.
fn final_state_of(l: &Lifecycle) -> ExecutionState {
    match (&l.stop, &l.ended_as) {
        (None, Some((state, _))) => *state,
        _ => final_state(l.stop, l.exit_code),
    }
}

impl Execution {
    /// Why a stop ended it, in words (its error text).
    pub(super) fn stop_message(&self, reason: StopReason) -> String {
        match reason {
            StopReason::Cancel => "cancelled by request".to_owned(),
            StopReason::Timeout => {
                let ms = self
                    .workflow
                    .timeout_ms
                    .map_or_else(|| "its".to_owned(), |ms| format!("{ms} ms"));
                format!("timed out (timeout {ms})")
            }
            StopReason::Shutdown => "stopped because the server shut down".to_owned(),
        }
    }

    /// A new execution, queued.
    pub fn new(
        id: Uuid,
        workflow: Arc<WorkflowDef>,
        params: Map<String, Value>,
        launch: Launch,
        idempotency_key: Option<String>,
        logs_buffer: Arc<ExecutionLog>,
    ) -> Arc<Self> {
        let (logs_tx, _) = watch::channel(0u64);
        Arc::new(Execution {
            id,
            workflow,
            params,
            launch,
            idempotency_key,
            created_at: SystemTime::now(),
            logs_buffer,
            logs_tx: Arc::new(logs_tx),
            progress: Arc::new(ProgressTracker::default()),
            life: Mutex::new(Lifecycle {
                state: ExecutionState::Queued,
                pid: None,
                started_at: None,
                finished_at: None,
                exit_code: None,
                signal: None,
                error: None,
                stop: None,
                held_open: Vec::new(),
                exited: false,
                tree: None,
                job: None,
                ended_as: None,
                ended_at: None,
            }),
        })
    }

    /// An execution known from the history, taken over to be followed again: its creation and start times are
    /// the record's.
    pub fn restored(mut self: Arc<Self>, created_at: SystemTime, started_at: Option<SystemTime>) -> Arc<Self> {
        let this = Arc::get_mut(&mut self).expect("not shared yet");
        this.created_at = created_at;
        this.life.get_mut().unwrap_or_else(|e| e.into_inner()).started_at = started_at;
        self
    }

    /// Held only for field reads and writes, never across a wait or an await.
    fn lock(&self) -> MutexGuard<'_, Lifecycle> {
        self.life.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A snapshot of the lifecycle.
    pub fn life(&self) -> Lifecycle {
        self.lock().clone()
    }

    pub fn state(&self) -> ExecutionState {
        self.lock().state
    }

    /// The stop asked for, if any.
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.lock().stop
    }

    /// The process tree, while the execution runs.
    pub fn tree(&self) -> Option<Arc<dyn Tree>> {
        self.lock().tree.as_ref().map(|t| t.0.clone())
    }

    /// Wakes everyone waiting on this execution (state or log followers).
    pub fn notify(&self) {
        self.logs_tx.send_modify(|g| *g = g.wrapping_add(1));
    }

    fn transition<R>(&self, f: impl FnOnce(&mut Lifecycle) -> R) -> R {
        let r = f(&mut self.lock());
        self.notify();
        r
    }

    /// queued → running, or still queued in a remote engine (`pending`).
    pub fn started(&self, pid: Option<u32>, job: Option<RemoteJob>, pending: bool, tree: Arc<dyn Tree>) {
        self.transition(|l| {
            if !pending {
                l.state = ExecutionState::Running;
                l.started_at.get_or_insert_with(SystemTime::now);
            }
            l.pid = pid;
            l.job = job.map(|j| (j, None));
            l.tree = Some(TreeHandle(tree));
        });
    }

    /// Where its remote job stands: pending in the remote queue is `queued`, anything else `running`.
    pub fn job_state(&self, state: JobState) {
        self.transition(|l| {
            if l.state.is_terminal() {
                return;
            }
            if state.pending {
                l.state = ExecutionState::Queued;
            } else if l.state == ExecutionState::Queued {
                l.state = ExecutionState::Running;
                l.started_at = Some(SystemTime::now());
            }
            if let Some((_, last)) = &mut l.job {
                *last = Some(state);
            }
        });
    }

    /// It ended without an exit of its program: it never started it, or its runtime lost track of it.
    pub fn ended_as(&self, state: ExecutionState, error: String) {
        self.transition(|l| {
            l.exited = true;
            if l.error.is_none() {
                l.error = Some(error.clone());
            }
            l.ended_as = Some((state, error));
        });
    }

    /// queued → failed_to_start, with the reason. `record` is given the final lifecycle before anyone can see
    /// it (so whoever sees it final finds it recorded too).
    pub fn failed_to_start(&self, error: String, record: impl FnOnce(&Execution, &Lifecycle)) {
        self.finish(
            |l| {
                l.state = ExecutionState::FailedToStart;
                l.error = Some(error);
            },
            record,
        );
    }

    /// Makes it final: `f` decides the final lifecycle, `record` records it, and only then is it what anyone
    /// reading the execution sees, and those waiting are woken.
    fn finish(&self, f: impl FnOnce(&mut Lifecycle), record: impl FnOnce(&Execution, &Lifecycle)) -> ExecutionState {
        let last = self.decide_final(f);
        record(self, &last);
        self.publish_final(last)
    }

    /// The final lifecycle `f` decides, not yet visible (its log is closed: its size is part of the record).
    fn decide_final(&self, f: impl FnOnce(&mut Lifecycle)) -> Lifecycle {
        let mut last = self.life();
        f(&mut last);
        last.finished_at = Some(last.ended_at.unwrap_or_else(SystemTime::now));
        last.tree = None;
        self.logs_buffer.mark_finished();
        last
    }

    /// Makes a decided final lifecycle the execution's, and wakes whoever waits on it.
    pub fn publish_final(&self, last: Lifecycle) -> ExecutionState {
        let state = last.state;
        self.transition(|l| *l = last);
        state
    }

    /// Stamps the end time (the first stamp stays), before the slot goes to a successor.
    pub fn ending(&self) {
        self.lock().ended_at.get_or_insert_with(SystemTime::now);
    }

    /// Asks for a stop; the first reason given wins. Returns false when the execution is already final.
    pub fn request_stop(&self, reason: StopReason, message: String) -> bool {
        self.transition(|l| {
            if l.state.is_terminal() {
                return false;
            }
            if l.stop.is_none() {
                l.stop = Some(reason);
                l.error = Some(message);
            }
            true
        })
    }

    /// The leader exited (`None`: its status could not be read).
    pub fn exited(&self, exit: Option<Exit>) {
        self.transition(|l| {
            l.exit_code = exit.and_then(|e| e.code);
            l.signal = exit.and_then(|e| e.signal);
            l.exited = true;
            if exit.is_none() && l.error.is_none() {
                l.error = Some("the exit status was lost".into());
            }
        });
    }

    /// Output streams that stayed open after the leader exited and were given up on.
    pub fn held_open(&self, streams: Vec<Stream>) {
        self.transition(|l| l.held_open = streams);
    }

    /// running (or queued and stopped) → final: the state follows from the stop asked for and the exit code.
    /// (`record` as for [`Execution::failed_to_start`].)
    pub fn settle(&self, record: impl FnOnce(&Execution, &Lifecycle)) -> ExecutionState {
        self.finish(|l| l.state = final_state_of(l), record)
    }

    /// queued → cancelled (never started): the stop and its message, then final.
    pub fn end_unstarted(&self, reason: StopReason, message: String, record: impl FnOnce(&Execution, &Lifecycle)) {
        self.request_stop(reason, message);
        self.settle(record);
    }

    /// As [`Execution::end_unstarted`], but only decided: one of many ended together, recorded in one batch
    /// before the caller publishes each with [`Execution::publish_final`]. None when it was final already.
    pub fn decide_unstarted_end(&self, reason: StopReason, message: String) -> Option<Lifecycle> {
        if self.state().is_terminal() {
            return None;
        }
        Some(self.decide_final(|l| {
            if l.stop.is_none() {
                l.stop = Some(reason);
                l.error = Some(message);
            }
            l.state = final_state_of(l);
        }))
    }
}
