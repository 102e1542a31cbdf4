//! workflow-mcp: an MCP server over stdio that runs workflows as subprocesses and lets an agent follow them.
//!
//! # Layout (top to bottom)
//! - [`cli`], [`mcp`]: the two front ends — the command line for humans (`list`, `check`, `run`, argument
//!   parsing) and the MCP protocol (the rmcp server, tool inputs/outputs and schemas, the text for models,
//!   progress during waits, executions as tasks and as resources with subscriptions, the stdio transport).
//!   Neither uses the other.
//! - [`host`]: the owner of the running server — the app, the process-wide stop and the shutdown grace; sessions
//!   (stdio today) sit on top of it, and one ending never stops the engine.
//! - [`app`]: the wiring both share — the catalog and the engine on the local and Slurm runtimes, built from a
//!   config.
//! - [`outlive`]: executions that outlive their session on this machine — the supervisor process that runs one
//!   (this binary run again, with an engine of its own on the same state directory) and how a server starts it.
//! - [`format`]: durations, byte sizes and the progress line, and one summary of an execution (headline,
//!   outcome, title, standing, the exit code its end stands for), for both front ends.
//! - [`engine`]: executions — the table (queue, slots, retention), the spawner, drain and supervisor threads,
//!   stop and timeout, the lifecycle state machine, statuses, structured-event progress, and `Follow`, the one
//!   way every front end follows an execution (live wake-ups here, the history otherwise).
//! - [`runtime`]: where an execution runs, behind one seam (`Runtime` → `Started`: output streams, a `Tree` to
//!   stop, a `Waiter` for the exit; `Runtimes` by kind); [`runtime::local`] runs process groups on this machine, [`runtime::slurm`]
//!   Slurm batch jobs.
//! - [`catalog`]: what can run — the config file (manifest entries), typed parameters, discovered executables.
//! - [`logs`]: each execution's log, `ExecutionLog` (a segmented byte arena with a 4-byte index entry per line in
//!   memory; with a history, segment files that are the log and memory a cache), its queries and the compact line
//!   form readers get.
//! - [`store`]: the durable history — executions in SQLite under a state directory shared by every server
//!   process on it, each process an instance with a lock file and a role (server, supervisor, command).
//! - [`model`]: the vocabulary the history and the engine share — execution ids, states, stop reasons and
//!   instance roles with their SQL mapping, exit (code or signal number, its name rendered), the remote job, the
//!   output summary and the progress.
//! - [`proc`]: process primitives that know no workflow — spawning through the child registry, the child
//!   environment, signals, `/proc` scans, the watchdog.
//! - [`state_dir`]: the state directory's layout (history, instances' lock files, log folders, Slurm job folders)
//!   and the one deleter of an execution's files.
//! - [`clock`]: RFC 3339 timestamps and Unix milliseconds. [`schemas`]: the JSON Schemas generated into `schemas/`.
//!
//! # Which module may use which
//! Arrows point down only (checked by `tests/architecture.rs`):
//! `cli`, `mcp` → `host` → `app` → `engine` → `catalog` → `runtime` → `proc`, and `engine` → `logs`, `store`
//! (the catalog names where a workflow runs with the runtime's `Placement`), `store` → `proc` (an instance's
//! process, by pid and start time); `model` sits under `logs`, `runtime`, `store` and `engine` and uses only `proc`
//! (a signal's name); `outlive` uses `engine`, `proc`, `runtime` and `store` (only `main` uses it); `format` sits under the front ends
//! and uses only `engine`; `clock` is used by `logs`, `store`, `engine` and `mcp`; `state_dir` uses nothing and is
//! used by `store`, `engine`, `app` and `cli`; `schemas` (used by tests) reads
//! `catalog`, `engine` and `mcp`. `mcp` never touches processes, `engine` and `logs` never import `rmcp`, and
//! `catalog` runs nothing itself (discovery probes go through `proc`).
//!
//! The one design decision everything rests on: each execution's stdout and stderr are drained by two
//! dedicated std threads holding pre-cloned `logs_buffer` / `logs_tx` handles, so no executions-map lock is
//! taken per line, pipes never fill, and the async runtime never blocks on a child.

pub mod app;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod engine;
pub mod format;
pub mod host;
pub mod logs;
pub mod mcp;
pub mod model;
pub mod outlive;
pub mod proc;
pub mod runtime;
pub mod schemas;
pub mod state_dir;
pub mod store;
