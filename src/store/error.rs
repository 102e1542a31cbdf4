//! Why the store cannot be used, or a record cannot be read: each message names the file and the way out.

use std::path::PathBuf;

use super::db::DbError;
use super::record::RecordError;

/// Why the state directory cannot be used. Each message names the directory, the error, and the way out.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot use the state directory {path}: {error}; choose another with --state-dir DIR (or \"state_dir\" in \
         the config), or run with --ephemeral to keep history in memory only"
    )]
    Dir { path: PathBuf, error: std::io::Error },
    #[error(
        "cannot use the state directory {path}: {error}{}; choose another with --state-dir DIR (or \"state_dir\" \
         in the config), or run with --ephemeral to keep history in memory only",
        os_error_of(.error)
    )]
    Db { path: PathBuf, error: DbError },
}

impl StoreError {
    /// What went wrong, without the way out a server's start gives (for processes that cannot choose another
    /// directory, such as an execution's supervisor).
    pub fn cause(&self) -> String {
        match self {
            StoreError::Dir { path, error } => format!("cannot use the state directory {}: {error}", path.display()),
            StoreError::Db { path, error } => {
                format!(
                    "cannot use the state directory {}: {error}{}",
                    path.display(),
                    os_error_of(error)
                )
            }
        }
    }
}

/// The OS error behind a database error SQLite names in its own words ("database or disk is full").
fn os_error_of(error: &DbError) -> String {
    match error.sqlite_code() {
        Some(rusqlite::ErrorCode::DiskFull) => format!(" ({})", std::io::Error::from_raw_os_error(libc::ENOSPC)),
        _ => String::new(),
    }
}

/// Why a record could not be read. Each message names the database and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(
        "the history database {} is busy (another process holds it locked); try again in a moment",
        .path.display()
    )]
    Busy {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "the history database {} is corrupt; restart the server: it moves the file aside and starts a fresh one",
        .path.display()
    )]
    Corrupt {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("reading the history database {} failed", .path.display())]
    Db {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// An error with its sources, in one line (for a log line or a message).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
