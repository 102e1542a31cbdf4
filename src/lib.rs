//! workflow-mcp: an MCP server over stdio that runs workflows as subprocesses and lets an agent follow them.
//!
//! # Layout
//! - [`catalog`]: what can run — the config file (manifest entries), typed parameters, discovered executables.
//! - [`engine`]: executions — spawning, the drain threads, waiting, cancel/timeout, the state machine, the queue.
//! - [`logs`]: the log store (a segmented byte arena with a fixed-size index entry per line) and its queries.
//! - [`mcp`]: the protocol layer — the rmcp server, tool inputs and outputs, the stdio transport.
//! - [`cli`]: the human-facing commands (`list`, `check`, `run`) on top of the catalog and the engine.
//! - [`schemas`]: the JSON Schemas generated from the Rust types into `schemas/`.
//! - [`clock`]: RFC 3339 timestamps without a date-time dependency.
//!
//! The one design decision everything rests on: each execution's stdout and stderr are drained by two
//! dedicated std threads holding pre-cloned `logs_buffer` / `logs_tx` handles, so no executions-map lock is
//! taken per line, pipes never fill, and the tokio runtime never blocks on a child.

pub mod app;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod engine;
pub mod format;
pub mod logs;
pub mod mcp;
pub mod proc;
pub mod runtime;
pub mod schemas;
