//! What can run: the config file's manifest entries, typed parameters, and discovered self-describing executables.
//!
//! The files, from the bottom up. Each uses only files listed above it, so every dependency inside the catalog
//! points one way, up this list; `tests/catalog.rs` checks the order.
//! - `names`: the rules for workflow, param and environment variable names.
//! - `unsafe_env`: the environment variables a param may not be mapped to, and why.
//! - `glob`: a discovered field's glob as a regex valid in Rust and in JavaScript (ECMAScript `u` mode).
//! - `param`: typed params: checking an agent's values, mapping them onto argv and env, their JSON Schema.
//! - `workflow`: the definition both sources become (`WorkflowDef`, `Source`).
//! - `info`: a workflow as clients see it (`WorkflowInfo`: name, description, params as JSON Schema).
//! - `locate`: finding the config file when none is given (the project's, up to the repository root; the user's).
//! - `tasks`: a project's own tasks (package.json, Makefile, justfile, Taskfile.yml) read as workflows.
//! - `trust`: which found configs (and the task files they import) the user has allowed to run.
//! - `config_file`: the config file's format (the keys a user writes) and its defaults.
//! - `config`: the config file, loaded and checked into manifest definitions.
//! - `metadata`: what a self-describing executable prints, turned into a definition.
//! - `discovery`: probing the `discover` folders for self-describing executables.
//! - `registry`: the runtime `Catalog`: manifest entries plus the latest scan, lookup by name, suggestions.
//!
//! This file only declares and re-exports.

pub mod config;
pub mod config_file;
pub mod discovery;
pub mod glob;
pub mod info;
pub mod locate;
pub mod metadata;
pub mod names;
pub mod param;
pub mod registry;
pub mod tasks;
pub mod trust;
pub mod unsafe_env;
pub mod workflow;

pub use config::{Config, ConfigError, ConfigFile, Limits};
pub use info::WorkflowInfo;
pub use param::{Invocation, Param, ParamType};
pub use registry::Catalog;
pub use workflow::{Source, WorkflowDef};
