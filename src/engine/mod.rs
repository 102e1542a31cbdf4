//! Executions: spawning, the drain threads, waiting, cancel and timeout, the state machine and the queue.

pub mod drain;
pub mod execution;
pub mod process;
pub mod progress;
pub mod runner;
pub mod spawn;
pub mod watchdog;

pub use execution::{Execution, ExecutionState, ExecutionStatus, OutputSummary, StopReason};
pub use progress::{Progress, WorkflowEvent};
pub use runner::{Engine, EngineConfig, EngineError, ListFilter};
pub use watchdog::Watchdog;
