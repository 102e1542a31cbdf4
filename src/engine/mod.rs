//! Executions: the table, starting them through a runtime, the drain threads, supervision, stop and timeout,
//! the state machine, and the progress their structured events add up to.

mod config;
pub mod detach;
pub mod drain;
pub mod execution;
mod executor;
pub mod follow;
mod launch;
mod listing;
mod outliving;
pub mod progress;
mod records;
pub mod runner;
mod shared_history;
pub mod status;
mod supervisor;
pub mod table;
pub mod view;

pub use config::{AdoptError, EngineConfig, EngineError, StopError};
pub use detach::{DetachError, Detacher, Handover};
pub use execution::{Execution, ExecutionState, Lifecycle, StopReason};
pub use follow::{Follow, Reread, STORED_BACKSTOP, Seen, StoredChanges};
pub use progress::{Progress, WorkflowEvent};
pub use runner::Engine;
pub use status::{Evidence, ExecutionStatus, OutputSummary};
pub use table::{ListFilter, PageKey};
pub use view::{ExecutionView, StoredExecution};
// What a front end reports when a lookup could not read the history.
pub use crate::store::{ReadError, error_chain};

#[cfg(test)]
mod tests;
