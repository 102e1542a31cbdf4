//! Each execution's log and its queries: every line of every execution, in memory and (with a state directory)
//! in log files, with loss accounting.
//!
//! The files, from the bottom up. Each uses only files listed above it (`tests/architecture.rs` checks it):
//! - `scan`: newline search over a chunk.
//! - `render`: stored bytes into text for readers (lossy UTF-8, escapes stripped).
//! - `segment`: a run of lines in one byte arena with a 4-byte index entry per line.
//! - `compact`: the `SEQ[MARKS] TEXT` line form readers get.
//! - `disk`: a log's folder and segment files.
//! - `snapshot`: the segments a query reads at one instant, in memory or read back from disk.
//! - `budget`: the memory budget every execution's log shares, and who gives memory back first.
//! - `slots`: the state behind a log's lock, and what leaves memory or disk past a cap.
//! - `log`: `ExecutionLog`, the log of one execution.
//! - `page`: what a query serves (lines, the page, its budgets).
//! - `query`: cursor paging, tail, stream and event selection, grep.
//!
//! This file only declares and re-exports.

pub mod budget;
pub mod compact;
pub mod disk;
pub mod log;
pub mod page;
pub mod query;
pub mod render;
pub mod scan;
pub mod segment;
mod slots;
pub mod snapshot;

pub use budget::MemoryBudget;
pub use disk::{DiskLimits, LogDir};
pub use log::{ExecutionLog, LogLimits, LogStats, StreamCounters};
pub use page::{BudgetHit, CompactLines, LineSink, LogLine, LogPage, Omitted};
pub use query::{EventSelector, LogQuery, StreamSelector, last_lines};
pub use segment::Stream;
pub use snapshot::{Gap, Snapshot};
