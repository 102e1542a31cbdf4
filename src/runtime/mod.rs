//! Where an execution runs, behind one seam. The engine hands a runtime a prepared [`Launch`] and gets back a
//! [`Started`]: the two output streams to drain, a [`Tree`] handle to signal and inspect everything the
//! execution started, and a [`Waiter`] for the exit status. Local processes are [`local`]; a remote engine
//! (Slurm) plugs in here by giving the same three things (its output files followed into pipes, its job as the
//! tree, its accounting as the waiter).
//!
//! Everything here may block (process scans, signals, waits): the engine calls it from its own threads or from
//! `spawn_blocking`, never on an async worker.

pub mod local;

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::proc::ChildEnv;

pub use local::LocalRuntime;

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
}

/// How the leader ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exit {
    /// The exit code, when it exited normally.
    pub code: Option<i32>,
    /// The signal that killed it.
    pub signal: Option<i32>,
}

/// A started execution.
pub struct Started {
    /// The leader's process id (shown as `pid`).
    pub pid: u32,
    pub stdout: File,
    pub stderr: File,
    pub tree: Arc<dyn Tree>,
    pub waiter: Box<dyn Waiter>,
}

/// Starts executions.
pub trait Runtime: Send + Sync {
    /// Starts `launch`; an error is a sentence saying why it could not start and what to fix.
    fn start(&self, launch: &Launch) -> Result<Started, String>;

    /// Called once when the engine has stopped everything, before the process exits.
    fn finish(&self) {}
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

/// Waits for the leader's exit.
pub trait Waiter: Send {
    /// Blocks until the leader exits.
    fn wait(self: Box<Self>) -> io::Result<Exit>;
}
