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
pub mod snapshot;
pub mod store;

pub use budget::MemoryBudget;
pub use disk::{DiskLimits, LogDir};
pub use page::{BudgetHit, CompactLines, LineSink, LogLine, LogPage, Omitted};
pub use query::{EventSelector, LogQuery, StreamSelector, last_lines};
pub use segment::Stream;
pub use snapshot::Snapshot;
pub use store::{LogLimits, LogStats, LogStore, StreamCounters};
