//! What can run: the config file's manifest entries, typed parameters, and (later) discovered executables.

pub mod config;
pub mod param;
pub mod workflow;

pub use config::{Config, ConfigError, ConfigFile, Limits};
pub use param::{Invocation, Param, ParamType};
pub use workflow::{Catalog, Source, WorkflowDef};
