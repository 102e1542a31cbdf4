//! All integration tests, in one binary. Most drive the server in-process over an in-memory pipe; the ones about
//! the process (shutdown, signals, the watchdog, its environment, descriptors, the CLI) run the real binary.

mod architecture;
mod build;
mod catalog;
mod cli;
mod clients;
mod core;
mod docs;
mod durable;
mod faults;
mod harness;
mod history_db;
mod load;
mod logs;
mod outlive;
mod packaging;
mod project;
mod reads;
mod resources;
mod running;
mod schemas;
mod sessions;
mod shutdown;
mod slurm;
mod snapshots;
mod state_dir;
mod tasks;
mod util;
