//! All integration tests, in one binary: each drives the real `workflow-mcp` binary over stdio.

mod architecture;
mod catalog;
mod cli;
mod core;
mod faults;
mod logs;
mod reads;
mod schemas;
mod shutdown;
mod snapshots;
mod util;
