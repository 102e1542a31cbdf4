//! Process primitives that know nothing of workflows, MCP or logs: spawning through the registry that keeps
//! the orphan reaper away from live children, the child environment, signals to a process or a whole tree,
//! `/proc` scanning, file-change notification (one inotify instance per process), and the watchdog that kills
//! registered trees if this process dies. The local runtime, the engine's followers and catalog discovery use
//! it; it uses nothing else of this crate.

pub mod env;
pub mod notify;
pub mod reaper;
pub mod scan;
pub mod signal;
pub mod spawn;
pub mod watchdog;

pub use env::ChildEnv;
pub use scan::TREE_MARKER;
pub use watchdog::Watchdog;
