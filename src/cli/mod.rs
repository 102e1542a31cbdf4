//! The human-facing commands (`list`, `check`, `run`) and the command line.

pub mod args;
pub mod history;
pub mod inspect;
pub mod run;
pub mod setup;
pub mod terminal;
