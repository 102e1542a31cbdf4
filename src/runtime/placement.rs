//! Where a workflow runs, as the config file says it: on this machine (the default) or as a Slurm job, with
//! the options people use.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where a workflow runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Placement {
    /// A process group on this machine.
    #[default]
    Local,
    /// A Slurm batch job (`sbatch`), here or through `login_host`.
    Slurm(Box<SlurmOptions>),
}

/// A Slurm job's options. Everything else about the workflow (params, argv, environment, folder, timeout)
/// stays as for a local run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlurmOptions {
    /// `--partition`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// `--cpus-per-task`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    /// `--mem`, e.g. "4G".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// `--gres`, e.g. "gpu:1".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gres: Option<String>,
    /// `--time` in Slurm's syntax (e.g. "90", "2:00:00"): a backstop only — the workflow's own timeout is
    /// enforced by the server, to the millisecond (Slurm's limit is in whole minutes and enforced late). Without
    /// it, a workflow with a timeout gets that timeout rounded up, plus a minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit: Option<String>,
    /// `--account`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// `--qos`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<String>,
    /// More `sbatch` arguments, each one argument (e.g. ["--constraint=a100", "--exclusive"]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sbatch_args: Vec<String>,
    /// Run `sbatch`, `scontrol` and `scancel` on this host over `ssh` (e.g. "me@login.cluster"), with the same
    /// arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_host: Option<String>,
    /// Where each job's private folder (its output files, removed once they are in the log) goes: a folder the
    /// server and the compute nodes both see (a shared filesystem, as on any cluster), owned by this user and not
    /// writable by others (unless sticky, like /tmp); relative to the config's folder. Default: `slurm/` in the
    /// state directory (or a private temporary folder, removed at exit, when ephemeral).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spool_dir: Option<PathBuf>,
    /// Let the job run on when the server exits (by default it is cancelled, as local runs are killed); a
    /// restarted server on the same state directory follows it again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub outlive_session: bool,
}

impl Placement {
    /// The kind of runtime that runs it (the config's `type`): how [`super::Runtimes`] picks one, and what a job's
    /// record keeps so the right runtime follows it again.
    pub fn kind(&self) -> &'static str {
        match self {
            Placement::Local => super::local::KIND,
            Placement::Slurm(_) => super::slurm::KIND,
        }
    }

    /// Whether its runtime leaves it running when the server that started it exits, for another server to follow
    /// again (a remote job). A local process cannot be: one that outlives its session is run by a supervisor
    /// process of its own instead.
    pub fn outlives_session(&self) -> bool {
        match self {
            Placement::Local => false,
            Placement::Slurm(options) => options.outlive_session,
        }
    }

    /// Leaves its remote job running when the server exits (nothing for a local process).
    pub fn keep_running(&mut self) {
        match self {
            Placement::Local => {}
            Placement::Slurm(options) => options.outlive_session = true,
        }
    }
}
