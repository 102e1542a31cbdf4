//! A workflow definition: the one internal form both manifest entries and discovered executables become.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::param::Param;
use crate::runtime::Placement;

/// Where a workflow came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// An entry of the config file.
    Manifest,
    /// A self-describing executable found in a `discover` folder.
    Discovered,
}

/// Everything needed to start a workflow.
#[derive(Clone, Debug)]
pub struct WorkflowDef {
    pub name: String,
    /// Display title (a discovered workflow's metadata `name`).
    pub title: Option<String>,
    pub description: String,
    /// The argv before the params' arguments.
    pub command: Vec<String>,
    pub params: Vec<Param>,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    pub timeout_ms: Option<u64>,
    pub max_concurrent: Option<usize>,
    pub source: Source,
    /// Where it runs (this machine, or a Slurm job).
    pub placement: Placement,
    /// Its executions go on when the session that started them ends, whatever ends it (see
    /// [`WorkflowDef::outliving`]).
    pub outlive_session: bool,
}

impl WorkflowDef {
    /// Says whether its executions outlive the session that starts them: `outlive` (the workflow's or the
    /// config's `outlive_session`) or the Slurm runtime's own `outlive_session` (the spelling it had first), kept
    /// in step so the runtime leaves such a job running too.
    pub fn outliving(mut self, outlive: bool) -> Self {
        self.outlive_session = outlive || self.placement.outlives_session();
        if self.outlive_session {
            self.placement.keep_running();
        }
        self
    }
}
