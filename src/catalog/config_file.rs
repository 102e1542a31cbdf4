//! The config file's format: the keys a user writes (`ConfigFile` and its entries) and their defaults. Its JSON
//! Schema is generated from these types into `schemas/`; `config` checks a parsed file into definitions.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::param::ParamType;
use super::tasks::TaskKind;
use crate::runtime::Placement;

/// The workflow-mcp config file: the workflows it serves, where to discover more, and the server's limits.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Folders (relative to this file) whose executables describe themselves when run with
    /// `--workflow-metadata`.
    #[serde(default)]
    pub discover: Vec<PathBuf>,
    /// Server environment variables passed through to every workflow, beyond the built-in allow-list
    /// (PATH, HOME, LANG, LC_*, TZ, TMPDIR, USER, LOGNAME, SHELL, TERM).
    #[serde(default)]
    pub inherit_env: Vec<String>,
    /// Commands wrapped as workflows.
    #[serde(default)]
    pub workflows: Vec<WorkflowEntry>,
    /// The project's own tasks to serve as workflows, read from this file's folder: `"npm"` (package.json
    /// scripts, as `npm:NAME`), `"make"` (.PHONY or `## documented` Makefile targets, as `make:NAME`), `"just"`
    /// (justfile recipes, as `just:NAME`), `"task"` (Taskfile.yml tasks, as `task:NAME`). Re-read by
    /// `list_workflows` with `refresh`.
    #[serde(default)]
    pub import: Vec<TaskKind>,
    /// Server-wide limits; every key has a default.
    #[serde(default)]
    pub limits: Limits,
    /// Whether executions outlive the session that started them, for every workflow whose entry does not say
    /// (discovered and imported ones included); see a workflow's `outlive_session`. Default false.
    #[serde(default)]
    pub outlive_session: bool,
    /// Where workflows run unless their entry says otherwise (discovered ones included): `{"type": "local"}`
    /// (the default) or `{"type": "slurm", ...}`.
    #[serde(default)]
    pub default_runtime: Option<Placement>,
    /// Where the history (a SQLite database and every execution's log files) is kept, relative to this file;
    /// default `$XDG_STATE_HOME/workflow-mcp` (else `~/.local/state/workflow-mcp`). `--state-dir` overrides it,
    /// `--ephemeral` keeps history in memory only.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
}

/// A command wrapped as a workflow.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowEntry {
    /// The name agents call it by: letters, digits, `_`, `-`, `.`; at most 64 characters.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The argv, run without a shell. A program path containing `/` is relative to this file's folder.
    pub command: Vec<String>,
    #[serde(default)]
    pub params: Vec<ParamEntry>,
    /// Working directory, relative to this file's folder (default: the folder itself).
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// Environment variables set for this workflow.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Kill the workflow (TERM, grace, KILL) after this many milliseconds; state `timed_out`.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// At most this many executions of this workflow run at once; more wait as `queued`.
    #[serde(default)]
    pub max_concurrent: Option<usize>,
    /// Where this workflow runs: `{"type": "local"}` or `{"type": "slurm", "partition": ..., ...}`; default:
    /// the config's `default_runtime`, else this machine.
    #[serde(default)]
    pub runtime: Option<Placement>,
    /// Its executions go on when the session that started them ends (the client restarts, the server exits or
    /// is killed): a local one is run by a supervisor process of its own, a Slurm job is left running; any
    /// server on the same state directory and the CLI follow and cancel them. Default: the config's
    /// `outlive_session`, else false (an execution ends with the server that started it).
    #[serde(default)]
    pub outlive_session: Option<bool>,
}

/// A typed parameter of a manifest workflow, with exactly one of `arg`, `flag`, `positional`, `env`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamEntry {
    /// The key agents pass the value under: 1-64 letters, digits, `_`, `-`, `.`.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ParamType,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub default: Option<Value>,
    #[serde(default, rename = "enum")]
    pub allowed: Option<Vec<Value>>,
    #[serde(default)]
    pub minimum: Option<f64>,
    #[serde(default)]
    pub maximum: Option<f64>,
    /// A regular expression a string value must match (searched, as in JSON Schema; anchor it with ^...$).
    #[serde(default)]
    pub pattern: Option<String>,
    /// Appends `ARG value`, e.g. `"--jobs"`.
    #[serde(default)]
    pub arg: Option<String>,
    /// Appends `FLAG` when the boolean is true, e.g. `"--release"`.
    #[serde(default)]
    pub flag: Option<String>,
    /// Appends the value as its own argument (after all options, in declaration order).
    #[serde(default)]
    pub positional: bool,
    /// Sets this environment variable to the value; not one that makes programs load or run other code
    /// (`LD_*`, `PATH`, `BASH_ENV`, `NODE_OPTIONS`, ...): the caller chooses the value.
    #[serde(default)]
    pub env: Option<String>,
}

/// Server-wide limits.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Executions running at once across all workflows; more wait as `queued`.
    pub max_concurrent: usize,
    /// Executions that may wait as `queued` for a slot; past it `execute_workflow` refuses a new one.
    pub max_queued: usize,
    /// Timeout for workflows that set none (milliseconds); null means no timeout.
    pub default_timeout_ms: Option<u64>,
    /// Default grace period between SIGTERM and SIGKILL on cancel and timeout (milliseconds).
    pub grace_ms: u64,
    /// A client whose answers are not read (no byte of a pending answer written) for this long is taken as
    /// gone: the session ends (milliseconds; a client busy for a few seconds is not gone).
    pub client_stall_ms: u64,
    /// Log memory (text plus index) one execution may hold before lines from its middle leave memory (with a
    /// history they stay readable from disk; ephemeral, they are dropped). Default 8 MiB with a history (the
    /// files, through the page cache, hold the rest), 256 MiB ephemeral.
    pub log_bytes_per_execution: Option<usize>,
    /// Log memory all executions together may hold.
    pub log_bytes_total: usize,
    /// A longer line is stored as several `partial` records.
    pub max_line_bytes: usize,
    /// Finished executions kept (oldest are forgotten first, with their log files).
    pub retain_executions: usize,
    /// Finished executions older than this are forgotten (seconds).
    pub retain_seconds: u64,
    /// With a history: one execution's log files may take this much disk; past it, whole segments from the
    /// middle are deleted (the head and the newest lines stay), counted as dropped.
    pub log_disk_bytes_per_execution: u64,
    /// With a history: finished executions' log files together; past it the oldest finished executions are
    /// forgotten.
    pub log_disk_bytes_total: u64,
    /// How long a discovered executable may take to answer `--workflow-metadata` (milliseconds).
    pub discovery_timeout_ms: u64,
}

impl Limits {
    /// The memory cap of one execution's log: the configured one, else 8 MiB with a history (its files hold the
    /// rest; memory keeps the head and the newest lines) or 256 MiB ephemeral.
    pub fn memory_per_execution(&self, durable: bool) -> usize {
        self.log_bytes_per_execution
            .unwrap_or(if durable { 8 << 20 } else { 256 << 20 })
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_concurrent: 32,
            max_queued: 1000,
            default_timeout_ms: None,
            grace_ms: 5000,
            client_stall_ms: 30_000,
            log_bytes_per_execution: None,
            log_bytes_total: 2 << 30,
            max_line_bytes: 64 << 10,
            retain_executions: 1000,
            retain_seconds: 7 * 24 * 3600,
            log_disk_bytes_per_execution: 1 << 30,
            log_disk_bytes_total: 10 << 30,
            discovery_timeout_ms: 3000,
        }
    }
}
