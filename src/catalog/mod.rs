//! What can run: the config file's manifest entries, typed parameters, and discovered self-describing executables.

pub mod config;
pub mod discovery;
pub mod info;
pub mod metadata;
pub mod param;
pub mod workflow;

pub use config::{Config, ConfigError, ConfigFile, Limits};
pub use info::WorkflowInfo;
pub use param::{Invocation, Param, ParamType};
pub use workflow::{Catalog, Source, WorkflowDef};
