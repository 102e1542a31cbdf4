//! The human-facing commands (`list`, `check`, `run`) and the wiring shared with `serve`.

pub mod args;
pub mod inspect;
pub mod run;
pub mod setup;
