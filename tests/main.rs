//! All integration tests, in one binary: each drives the real `workflow-mcp` binary over stdio.

mod catalog;
mod cli;
mod core;
mod faults;
mod logs;
mod schemas;
mod shutdown;
mod util;
