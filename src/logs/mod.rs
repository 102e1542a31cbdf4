//! The log store and its queries: every line of every execution, with loss accounting.

pub mod compact;
pub mod query;
pub mod render;
pub mod store;

pub use query::{
    BudgetHit, CompactLines, EventSelector, LineSink, LogLine, LogPage, LogQuery, Omitted, StreamSelector, last_lines,
};
pub use store::{LogLimits, LogStats, LogStore, MemoryBudget, Snapshot, Stream, StreamCounters};
