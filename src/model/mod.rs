//! The vocabulary the history and the engine share: execution ids, states and stop reasons, instance roles (with
//! the words the history stores them as), how a leader ended, the remote job, the output summary and the
//! progress. It knows no execution, process or database beyond these values' SQL mapping.

pub mod instance;
pub mod job;
pub mod output;
pub mod progress;
pub mod state;

pub use instance::Role;
pub use job::{Exit, JobStatus};
pub use output::{OutputSummary, Stream, StreamCounters};
pub use progress::Progress;
pub use state::{ExecutionState, StopReason};

/// An execution's id: a UUID v4, unguessable.
pub type ExecutionId = uuid::Uuid;
