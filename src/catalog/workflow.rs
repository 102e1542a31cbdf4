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
}
