//! The log store and its queries: every line of every execution, in memory and (with a state directory) in
//! log files, with loss accounting.

pub mod budget;
pub mod compact;
pub mod disk;
pub mod page;
pub mod query;
pub mod render;
pub mod scan;
pub mod segment;
mod slots;
pub mod store;

pub use budget::MemoryBudget;
pub use disk::LogDir;
pub use page::{BudgetHit, CompactLines, LineSink, LogLine, LogPage, Omitted};
pub use query::{EventSelector, LogQuery, StreamSelector, last_lines};
pub use segment::{Snapshot, Stream};
pub use store::{DiskLimits, LogLimits, LogStats, LogStore, StreamCounters};
