//! Why a runtime could not do what it was asked: a variant a caller can act on, each carrying the sentence people
//! read (what went wrong and what to fix), so the words are decided once, where the failure is seen.

/// Why a runtime could not start or follow an execution.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// It cannot start as configured: its folder or program, its spool, its job folder, a resource of ours.
    #[error("{0}")]
    CannotStart(String),
    /// The engine was asked and refused the job (in its own words), or answered without a job.
    #[error("{0}")]
    Refused(String),
    /// The engine could not be asked: its commands are missing, cannot be run, or did not answer.
    #[error("{0}")]
    Unreachable(String),
    /// The engine does not know the job (any more).
    #[error("{0}")]
    JobUnknown(String),
    /// The execution cannot be followed again by this runtime (its folder is gone, or its workflow runs elsewhere
    /// now).
    #[error("{0}")]
    CannotFollow(String),
}
