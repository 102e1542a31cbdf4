//! Where an execution runs, behind one seam. The engine hands a runtime a prepared [`Launch`] and gets back a
//! [`Started`]: the two output streams to drain, a [`Tree`] handle to stop (its own way, within a grace) and
//! inspect everything the execution started, and a [`Waiter`] for how it ended (reporting, meanwhile, where a
//! remote job stands); failures are [`RuntimeError`]s. Local processes are [`local`]; a Slurm job is [`slurm`] (its
//! output files followed into pipes, the job as the tree, the runtime's one poller and the job's final record as
//! the waiter). [`Runtimes`] picks one by the kind of the workflow's [`Placement`], or of a job's record.
//!
//! Everything here may block (process scans, signals, waits): the engine calls it from its own threads or from
//! `spawn_blocking`, never on an async worker.

pub mod error;
pub mod local;
pub mod placement;
pub mod slurm;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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
    pub timeout: Option<Duration>,
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
    /// The kind of runtime that runs it (its placement's [`Placement::kind`], e.g. "slurm"): the one that follows
    /// it again.
    pub system: String,
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

    /// Problems a person can act on before anything runs (for `workflow-mcp check`): what this runtime needs of
    /// `launch` (its program and folder, or its engine reachable and configured), each a sentence with the fix.
    fn check(&self, launch: &Launch) -> Vec<String> {
        let _ = launch;
        Vec::new()
    }

    /// How `check` names where a workflow of `placement` runs (e.g. "Slurm"); `None` for this machine.
    fn label(&self, placement: &Placement) -> Option<&'static str> {
        let _ = placement;
        None
    }
}

/// Everything an execution started: stopping and inspecting it, from any thread (they may block).
pub trait Tree: Send + Sync {
    /// Asks the tree to end within `grace`, its runtime's own way (TERM to every process here, `scancel
    /// --signal=TERM` on Slurm); returns at once. What is still there after `grace` gets [`Tree::kill`].
    fn stop(&self, grace: Duration);
    /// Ends the whole tree now.
    fn kill(&self);
    /// Whether no process of the tree is left.
    fn gone(&self) -> bool;
    /// After the leader exited: kills what it left behind; returns whether anything was found. By default
    /// nothing is (an engine that ends a job's every process with it).
    fn kill_leftovers(&self) -> bool {
        false
    }
    /// Kills processes that hold the output streams open without being found in the tree (output read from
    /// pipes they could inherit); by default there are none.
    fn release_outputs(&self) {}
    /// The tree is gone for good: stop watching it.
    fn forget(&self) {}
}

/// Waits for the execution to end.
pub trait Waiter: Send {
    /// Blocks until the execution ends; `changed` hears where a remote job stands whenever that changes.
    fn wait(self: Box<Self>, changed: &mut dyn FnMut(JobState)) -> Ended;
}

/// Every runtime of a server, by kind (an open set): a launch goes to the runtime its placement's kind names, a
/// job a gone server started to the runtime of the kind it was recorded with.
#[derive(Default)]
pub struct Runtimes {
    by_kind: BTreeMap<&'static str, Arc<dyn Runtime>>,
}

impl Runtimes {
    /// Adds `runtime` for the placements of `kind` (see [`Placement::kind`]).
    pub fn with(mut self, kind: &'static str, runtime: impl Runtime + 'static) -> Self {
        self.by_kind.insert(kind, Arc::new(runtime));
        self
    }

    fn of(&self, kind: &str) -> Option<&dyn Runtime> {
        self.by_kind.get(kind).map(|r| &**r)
    }
}

impl Runtime for Runtimes {
    fn start(&self, launch: &Launch) -> Result<Started, RuntimeError> {
        let kind = launch.placement.kind();
        match self.of(kind) {
            Some(runtime) => runtime.start(launch),
            None => Err(RuntimeError::CannotStart(format!(
                "this server runs no {kind} workflows (internal error)"
            ))),
        }
    }

    fn finish(&self) {
        for runtime in self.by_kind.values() {
            runtime.finish();
        }
    }

    fn reattach(&self, launch: &Launch, job: &RemoteJob, offsets: [u64; 2]) -> Result<Started, RuntimeError> {
        match self.of(&job.system) {
            Some(runtime) => runtime.reattach(launch, job, offsets),
            None => Err(RuntimeError::CannotFollow(format!(
                "a {} job cannot be followed again by this runtime",
                job.system
            ))),
        }
    }

    fn check(&self, launch: &Launch) -> Vec<String> {
        self.of(launch.placement.kind())
            .map_or_else(Vec::new, |runtime| runtime.check(launch))
    }

    fn label(&self, placement: &Placement) -> Option<&'static str> {
        self.of(placement.kind()).and_then(|runtime| runtime.label(placement))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A runtime that only says which of its kind was asked.
    struct Named(&'static str, Arc<Mutex<Vec<String>>>);

    impl Runtime for Named {
        fn start(&self, _: &Launch) -> Result<Started, RuntimeError> {
            self.1.lock().unwrap().push(format!("{} start", self.0));
            Err(RuntimeError::CannotStart(self.0.into()))
        }

        fn reattach(&self, _: &Launch, job: &RemoteJob, _: [u64; 2]) -> Result<Started, RuntimeError> {
            self.1.lock().unwrap().push(format!("{} reattach {}", self.0, job.id));
            Err(RuntimeError::CannotFollow(self.0.into()))
        }
    }

    fn launch(placement: Placement) -> Launch {
        Launch {
            argv: vec!["true".into()],
            env: Default::default(),
            cwd: "/".into(),
            marker: "m".into(),
            placement,
            timeout: None,
        }
    }

    #[test]
    fn a_reattach_goes_to_the_runtime_of_the_jobs_recorded_kind() {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let runtimes = Runtimes::default()
            .with("local", Named("local", asked.clone()))
            .with("slurm", Named("slurm", asked.clone()));
        let job = |system: &str| RemoteJob {
            system: system.into(),
            id: "7".into(),
            dir: None,
        };
        // The launch names where the workflow runs now; the job's record says which runtime started it.
        let _ = runtimes.reattach(&launch(Placement::Local), &job("slurm"), [0, 0]);
        let _ = runtimes.start(&launch(Placement::Slurm(Default::default())));
        let _ = runtimes.start(&launch(Placement::Local));
        assert_eq!(
            *asked.lock().unwrap(),
            ["slurm reattach 7", "slurm start", "local start"]
        );
        let e = runtimes
            .reattach(&launch(Placement::Local), &job("ray"), [0, 0])
            .err()
            .unwrap();
        assert!(matches!(e, RuntimeError::CannotFollow(_)), "{e:?}");
        assert_eq!(e.to_string(), "a ray job cannot be followed again by this runtime");
    }

    #[test]
    fn a_placements_kind_is_its_config_type() {
        for placement in [Placement::Local, Placement::Slurm(Default::default())] {
            let json = serde_json::to_value(&placement).unwrap();
            assert_eq!(json["type"], placement.kind());
        }
        assert_eq!(local::KIND, "local");
        assert!(!Placement::Local.outlives_session());
        let outliving = SlurmOptions {
            outlive_session: true,
            ..Default::default()
        };
        assert!(Placement::Slurm(Box::new(outliving)).outlives_session());
    }
}
