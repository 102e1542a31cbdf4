//! The store of one process: the state directory, this process's instance (and the lock file that says it is
//! alive), the writer thread every write goes through, and the reads.
//!
//! The state directory's layout is `crate::state_dir`'s (private: folders 0700, files 0600; a looser state
//! directory is tightened): the database, each execution's log folder, one lock file per live instance (a server,
//! a supervisor, a command acting on the history), locked (`flock`) for as long as it lives.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, mpsc};
use std::time::SystemTime;

use rusqlite::{Connection, params};
use uuid::Uuid;

use super::db::{self, DbError};
use super::error::StoreError;
use super::writer::{Op, Reply, writer_loop};
use crate::model::Role;
use crate::state_dir::StateDir;

/// The store of this process.
pub struct Store {
    pub(super) dir: StateDir,
    pub(super) instance: Uuid,
    /// What this process is (a reader: a command).
    pub(super) role: Role,
    /// Locked for as long as this process lives: others see it alive. (None for a reader.)
    _lock: Option<File>,
    pub(super) reader: Mutex<Connection>,
    writer: Mutex<mpsc::Sender<(Op, Option<Reply>)>>,
    /// One retention pass at a time: two deleting the same log folder at once can both fail half-way.
    pub(super) pruning: Mutex<()>,
}

/// How long a repeated read waits for a history another process holds locked (see [`Store::read_briefly`]).
const BRIEF_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

pub fn now_ms() -> i64 {
    crate::clock::unix_ms(SystemTime::now())
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Tries to take an exclusive `flock` (std's file lock on Linux) without waiting; `Ok(false)` when another open
/// file holds it.
pub(super) fn try_flock(file: &File) -> std::io::Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

fn not_a_folder(path: &Path) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::NotADirectory,
        format!("{} exists and is not a folder", path.display()),
    )
}

/// Creates one of our folders (0700), or makes an existing one others can read private; returns a warning
/// when it did.
fn private_dir(path: &Path) -> std::io::Result<Option<String>> {
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::metadata(path)?;
    if !meta.is_dir() {
        return Err(not_a_folder(path));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(None);
    }
    Ok(Some(
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)) {
            Ok(()) => format!(
                "{} was open to other users (mode {mode:04o}); made it private (0700)",
                path.display()
            ),
            Err(e) => format!(
                "{} is open to other users (mode {mode:04o}) and could not be made private: {e}",
                path.display()
            ),
        },
    ))
}

impl Store {
    /// Opens (creating what is missing) the state directory `root`, registers this process as a server instance,
    /// and starts the writer thread. Returns warnings to log (a database moved aside, a folder made private).
    pub fn open(root: &Path) -> Result<(Store, Vec<String>), StoreError> {
        Self::open_as(root, Role::Server)
    }

    /// [`Store::open`] for a process of another `role` (an execution's supervisor, a command).
    pub fn open_as(root: &Path, role: Role) -> Result<(Store, Vec<String>), StoreError> {
        let dir_err = |error| StoreError::Dir {
            path: root.to_owned(),
            error,
        };
        // The parents are not ours: they keep the user's umask.
        if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::AlreadyExists => not_a_folder(parent),
                    _ => e,
                })
                .map_err(dir_err)?;
        }
        let state = StateDir::new(root);
        let mut warnings = Vec::new();
        for dir in [root.to_owned(), state.logs(), state.instances()] {
            warnings.extend(private_dir(&dir).map_err(dir_err)?);
        }
        // A directory we can create in but not write to fails here, with its own path.
        let instance = Uuid::new_v4();
        let lock_path = state.instance_lock(&instance.to_string());
        let lock_file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(dir_err)?;
        // Taken at once: a lock file nobody holds is a dead instance's.
        try_flock(&lock_file).map_err(dir_err)?;
        let db_path = state.history_db();
        let registered = db::open(&db_path).and_then(|(writer_conn, warning)| {
            let reader = db::connect(&db_path).map_err(|source| DbError::Open {
                path: db_path.clone(),
                error: source,
            })?;
            let me = std::process::id();
            let me_start = crate::proc::scan::process(me).map(|p| p.start_time as i64);
            writer_conn
                .execute(
                    "INSERT INTO instances (id, pid, started_at, pid_start, role) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![instance.to_string(), me, now_ms(), me_start, role],
                )
                .map_err(|source| DbError::Open {
                    path: db_path.clone(),
                    error: source,
                })?;
            Ok((writer_conn, reader, warning))
        });
        let (writer_conn, reader, warning) = registered.map_err(|error| {
            let _ = std::fs::remove_file(&lock_path);
            StoreError::Db {
                path: root.to_owned(),
                error,
            }
        })?;
        warnings.extend(warning);
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("wf-history".into())
            .spawn(move || writer_loop(writer_conn, rx))
            .map_err(dir_err)?;
        let store = Store {
            dir: state,
            instance,
            role,
            _lock: Some(lock_file),
            reader: Mutex::new(reader),
            writer: Mutex::new(tx),
            pruning: Mutex::new(()),
        };
        Ok((store, warnings))
    }

    /// Opens an existing state directory to read it (the `history`, `status` and `logs` commands): no instance
    /// is registered and nothing is written.
    pub fn open_reader(root: &Path) -> Result<Store, StoreError> {
        let state = StateDir::new(root);
        let db_path = state.history_db();
        if !db_path.is_file() {
            return Err(StoreError::Dir {
                path: root.to_owned(),
                error: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "it holds no history (no server has used it yet)",
                ),
            });
        }
        let reader = db::connect(&db_path).map_err(|source| StoreError::Db {
            path: root.to_owned(),
            error: DbError::Open {
                path: db_path.clone(),
                error: source,
            },
        })?;
        // Writes go nowhere: the receiver is dropped at once.
        let (tx, _) = mpsc::channel();
        Ok(Store {
            dir: state,
            instance: Uuid::nil(),
            role: Role::Command,
            _lock: None,
            reader: Mutex::new(reader),
            writer: Mutex::new(tx),
            pruning: Mutex::new(()),
        })
    }

    pub fn root(&self) -> &Path {
        self.dir.root()
    }

    /// The state directory's layout.
    pub fn state_dir(&self) -> &StateDir {
        &self.dir
    }

    /// This process's instance id (the owner of the executions it runs).
    pub fn instance(&self) -> Uuid {
        self.instance
    }

    /// What this process registered as.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The files every write to the history changes: a reader watches them for another process's writes.
    pub fn history_files(&self) -> [PathBuf; 2] {
        [self.dir.history_db(), self.dir.history_wal()]
    }

    /// Where an execution's log files are.
    pub fn log_path(&self, id: &Uuid) -> PathBuf {
        self.dir.log(id)
    }

    pub(super) fn send(&self, op: Op, reply: Option<Reply>) {
        if lock(&self.writer).send((op, reply)).is_err() {
            tracing::error!("the history writer is gone; the history is not written");
        }
    }

    /// Runs a write on the writer thread and waits for it.
    pub(super) fn write_sync(&self, op: Op) -> rusqlite::Result<()> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(op, Some(tx));
        rx.recv()
            .unwrap_or_else(|_| Err(rusqlite::Error::ExecuteReturnedResults))
    }

    /// Waits until every write sent so far is committed.
    pub fn flush(&self) {
        let _ = self.write_sync(Box::new(|_| Ok(())));
    }

    pub(super) fn read<R>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Option<R> {
        f(&lock(&self.reader))
            .inspect_err(|e| tracing::warn!(error = %e, "reading the history failed"))
            .ok()
    }

    /// A read the engine repeats on its own (every tick): on a history another process holds locked it gives up
    /// after [`BRIEF_WAIT`] instead of holding the one reader connection, which every call shares, for the whole
    /// busy timeout — the next tick reads again.
    pub(super) fn read_briefly<R>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Option<R> {
        let conn = lock(&self.reader);
        let _ = conn.busy_timeout(BRIEF_WAIT);
        let read = f(&conn);
        let _ = conn.busy_timeout(super::db::BUSY_TIMEOUT);
        read.inspect_err(|e| tracing::debug!(error = %e, "a repeated read of the history failed; the next one retries"))
            .ok()
    }
}
