//! What can run: the config file's manifest entries, typed parameters, and discovered self-describing executables.

pub mod config;
pub mod discovery;
pub mod metadata;
pub mod param;
pub mod workflow;

pub use config::{Config, ConfigError, ConfigFile, Limits};
pub use param::{Invocation, Param, ParamType};
pub use workflow::{Catalog, Source, WorkflowDef};
