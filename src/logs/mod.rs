//! The log store and its queries: every line of every execution, with loss accounting.

pub mod query;
pub mod render;
pub mod store;

pub use query::{BudgetHit, EventSelector, LogLine, LogPage, LogQuery, Omitted, StreamSelector};
pub use store::{LogLimits, LogStats, LogStore, MemoryBudget, Snapshot, Stream, StreamCounters};
