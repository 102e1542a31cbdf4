//! The human-facing commands (`list`, `check`, `run`, the history's, `cancel`) and the command line.

pub mod args;
pub mod cancel;
pub mod history;
pub mod inspect;
pub mod run;
pub mod setup;
pub mod terminal;
