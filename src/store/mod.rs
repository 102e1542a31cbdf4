//! Durable history: every execution's record in a SQLite database under a state directory, beside the log
//! files of each execution (written by each execution's log, `logs::ExecutionLog`; the layout is
//! `crate::state_dir`'s). Several server processes may share one state directory: each registers as an
//! instance holding a lock file for as long as it lives, so any of them can tell whether the owner of a
//! running execution is still alive. All writes of a process go through one writer thread;
//! reads use their own connection (WAL: they never wait for the writer).
//!
//! The store knows records, not executions: the engine maps one to the other.

mod changes;
pub mod db;
mod error;
mod instances;
mod open;
mod reads;
pub mod record;
mod retention;
mod writer;

pub use changes::{Change, NotInserted};
pub use error::{ReadError, StoreError, error_chain};
pub use instances::Instance;
pub use open::{Store, now_ms};
#[cfg(test)]
pub(crate) use reads::hold_read_locks;
pub use record::{ExecutionRecord, ListKey, RecordError};
pub use retention::PruneRules;
// The role an instance registers as, for the front ends (which name the store, not the model).
pub use crate::model::Role;

use std::path::PathBuf;

/// `$XDG_STATE_HOME/workflow-mcp`, else `~/.local/state/workflow-mcp`.
pub fn default_state_dir() -> Option<PathBuf> {
    let from = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from);
    from("XDG_STATE_HOME")
        .filter(|p| p.is_absolute())
        .or_else(|| from("HOME").map(|h| h.join(".local/state")))
        .map(|base| base.join("workflow-mcp"))
}
