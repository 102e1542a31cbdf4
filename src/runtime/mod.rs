//! Where an execution runs, behind one seam. The engine hands a runtime a prepared [`Launch`] and gets back a
//! [`Started`]: the two output streams to drain, a [`Tree`] handle to signal and inspect everything the
//! execution started, and a [`Waiter`] for how it ended (reporting, meanwhile, where a remote job stands).
//! Local processes are [`local`]; a Slurm job is [`slurm`] (its output files followed into pipes, the job as the
//! tree, `scontrol` as the waiter). [`Runtimes`] picks one by the workflow's [`Placement`].
//!
//! Everything here may block (process scans, signals, waits): the engine calls it from its own threads or from
//! `spawn_blocking`, never on an async worker.

pub mod error;
pub mod local;
pub mod placement;
pub mod slurm;

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use crate::proc::ChildEnv;

pub use error::RuntimeError;
pub use local::LocalRuntime;
pub use placement::{Placement, SlurmOptions};
pub use slurm::{SlurmRuntime, Spool};

/// A prepared invocation: what to run, where, with which environment.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The program (as written in the workflow's command) and its arguments; never a shell string.
    pub argv: Vec<String>,
    /// The complete environment, already marked with `marker`.
    pub env: ChildEnv,
    pub cwd: PathBuf,
    /// Tags every process of the execution's tree (see [`crate::proc::TREE_MARKER`]).
    pub marker: String,
    /// Where it runs.
    pub placement: Placement,
    /// Its timeout, if it has one (a remote engine may use it as a backstop; the engine's own timer stops it).
    pub timeout: Option<std::time::Duration>,
}

pub use crate::model::Exit;

/// How an execution ended, as its runtime saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    Exited(Exit),
    /// It never got to run its program (a missing folder or program found by a remote job's script).
    FailedToStart(String),
    /// Its runtime lost track of it (a remote job that vanished).
    Lost(String),
}

/// Where a remote job stands while it has not ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobState {
    /// Waiting in the remote engine's queue (not running yet).
    pub pending: bool,
    /// The engine's own word for it (e.g. PENDING, RUNNING) and its reason (e.g. Resources, Priority).
    pub state: String,
    pub reason: Option<String>,
    /// Where it runs.
    pub node: Option<String>,
}

/// A job in a remote engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteJob {
    /// The engine, e.g. "slurm".
    pub system: &'static str,
    pub id: String,
    /// The job's folder (its script and output files).
    pub dir: Option<PathBuf>,
}

/// A started execution.
pub struct Started {
    /// The leader's process id (shown as `pid`), for a local process.
    pub pid: Option<u32>,
    /// The job, for a remote engine.
    pub job: Option<RemoteJob>,
    /// Not running yet: waiting in a remote engine's queue.
    pub pending: bool,
    pub stdout: File,
    pub stderr: File,
    pub tree: Arc<dyn Tree>,
    pub waiter: Box<dyn Waiter>,
}

/// Starts executions.
pub trait Runtime: Send + Sync {
    /// Starts `launch`; an error says why it could not start and what to fix.
    fn start(&self, launch: &Launch) -> Result<Started, RuntimeError>;

    /// Called once when the engine has stopped everything, before the process exits.
    fn finish(&self) {}

    /// Follows again an execution a gone process started (a remote job that outlived its server), reading its
    /// output from `offsets` (bytes per stream already in its log). An error says why it cannot be followed.
    fn reattach(&self, launch: &Launch, job: &RemoteJob, offsets: [u64; 2]) -> Result<Started, RuntimeError> {
        let _ = (launch, offsets);
        Err(RuntimeError::CannotFollow(format!(
            "a {} job cannot be followed again by this runtime",
            job.system
        )))
    }
}

/// Everything an execution started: signals and inspections, from any thread (they may block).
pub trait Tree: Send + Sync {
    /// Sends `sig` to every process of the tree.
    fn signal(&self, sig: i32);
    /// Whether no process of the tree is left.
    fn gone(&self) -> bool;
    /// After the leader exited: kills what it left behind; returns whether anything was found.
    fn kill_leftovers(&self) -> bool;
    /// Kills processes that hold the output streams open without being found in the tree.
    fn release_outputs(&self);
    /// The tree is gone for good: stop watching it.
    fn forget(&self);
}

/// Waits for the execution to end.
pub trait Waiter: Send {
    /// Blocks until the execution ends; `changed` hears where a remote job stands whenever that changes.
    fn wait(self: Box<Self>, changed: &mut dyn FnMut(JobState)) -> Ended;
}

/// Every runtime of a server; each launch goes to the one its placement names.
pub struct Runtimes {
    local: LocalRuntime,
    slurm: SlurmRuntime,
}

impl Runtimes {
    pub fn new(local: LocalRuntime, slurm: SlurmRuntime) -> Self {
        Runtimes { local, slurm }
    }
}

impl Runtime for Runtimes {
    fn start(&self, launch: &Launch) -> Result<Started, RuntimeError> {
        match &launch.placement {
            Placement::Local => self.local.start(launch),
            Placement::Slurm(_) => self.slurm.start(launch),
        }
    }

    fn finish(&self) {
        self.local.finish();
        self.slurm.finish();
    }

    fn reattach(&self, launch: &Launch, job: &RemoteJob, offsets: [u64; 2]) -> Result<Started, RuntimeError> {
        match (&launch.placement, &job.dir) {
            (Placement::Slurm(options), Some(dir)) => {
                self.slurm.reattach(&job.id, &launch.marker, dir, options, offsets)
            }
            _ => Err(RuntimeError::CannotFollow(format!(
                "the workflow no longer runs on {}, so job {} cannot be followed",
                job.system, job.id
            ))),
        }
    }
}
