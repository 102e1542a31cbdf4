//! The store of one process: the state directory, this process's instance (and the lock file that says it is
//! alive), the writer thread every write goes through, and the reads.
//!
//! The state directory's layout is `crate::state_dir`'s (private: folders 0700, files 0600; a looser state
//! directory is tightened): the database, each execution's log folder, one lock file per live server process,
//! locked (`flock`) for as long as it lives.
//!
//! Another instance is gone only when this process holds its lock, or, its lock file missing, when its recorded
//! process (pid and start time) is gone; when its lock file cannot be read it is alive as far as anyone acts.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, mpsc};
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use super::db::{self, DbError};
use super::record::{COLUMNS, ExecutionRecord, Json, LISTED_COLUMNS, RecordError, UNFINISHED};
use crate::model::{ExecutionState, JobStatus, OutputSummary, Progress, StopReason, Stream};
use crate::state_dir::StateDir;

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

/// A change to an execution's record.
#[derive(Clone, Debug)]
pub enum Change {
    /// Started: running (a local process), or queued in a remote engine.
    Started {
        state: ExecutionState,
        pid: Option<u32>,
        pid_start: Option<u64>,
        started_at: Option<i64>,
        job: Option<JobStatus>,
    },
    /// Where a remote job stands changed.
    Job {
        state: ExecutionState,
        started_at: Option<i64>,
        job: JobStatus,
    },
    /// Counters and progress while it runs.
    Progress {
        output: OutputSummary,
        progress: Option<Progress>,
        log_bytes: u64,
    },
    Finished {
        state: ExecutionState,
        exit_code: Option<i32>,
        signal: Option<i32>,
        error: Option<String>,
        finished_at: i64,
        output: OutputSummary,
        progress: Option<Progress>,
        held_open: Vec<Stream>,
        log_bytes: u64,
    },
}

/// What retention keeps: finished executions beyond any of these are forgotten (records and log files), the
/// oldest first. Unfinished executions are always kept.
#[derive(Clone, Copy, Debug)]
pub struct PruneRules {
    pub keep: usize,
    pub max_age: Duration,
    /// Log files of finished executions, in all.
    pub max_log_bytes: u64,
}

type Op = Box<dyn FnOnce(&Connection) -> rusqlite::Result<()> + Send>;
type Reply = mpsc::SyncSender<rusqlite::Result<()>>;

/// What one instance can tell of another.
enum Owner {
    Alive,
    /// With its lock file, held by this process (None: the lock file is gone).
    Gone(Option<File>),
    Unknown,
}

/// The store of this process.
pub struct Store {
    dir: StateDir,
    instance: Uuid,
    /// Locked for as long as this process lives: others see it alive. (None for a reader.)
    _lock: Option<File>,
    reader: Mutex<Connection>,
    writer: Mutex<mpsc::Sender<(Op, Option<Reply>)>>,
    /// One retention pass at a time: two deleting the same log folder at once can both fail half-way.
    pruning: Mutex<()>,
}

pub fn now_ms() -> i64 {
    crate::clock::unix_ms(SystemTime::now())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Tries to take an exclusive `flock` (std's file lock on Linux) without waiting; `Ok(false)` when another open
/// file holds it.
fn try_flock(file: &File) -> std::io::Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Runs writes one after another, each batch of waiting writes in one transaction (each write in its own
/// savepoint, so one failure does not undo the others).
fn writer_loop(conn: Connection, rx: mpsc::Receiver<(Op, Option<Reply>)>) {
    let mut warned = false;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < 256
            && let Ok(more) = rx.try_recv()
        {
            batch.push(more);
        }
        let began = conn.execute_batch("BEGIN IMMEDIATE");
        // Answered after the commit: whoever waits for a write then reads what it wrote.
        let mut replies = Vec::new();
        for (op, reply) in batch {
            let result = began.as_ref().map_err(clone_err).and_then(|()| {
                conn.execute_batch("SAVEPOINT op")?;
                match op(&conn) {
                    Ok(()) => conn.execute_batch("RELEASE op"),
                    Err(e) => {
                        conn.execute_batch("ROLLBACK TO op; RELEASE op")?;
                        Err(e)
                    }
                }
            });
            if let Err(e) = &result
                && !warned
                && reply.is_none()
            {
                tracing::warn!(error = %e, "writing the history failed; executions go on, their records may lag");
                warned = true;
            }
            if let Some(reply) = reply {
                replies.push((reply, result));
            }
        }
        let committed = match began {
            Ok(()) => conn.execute_batch("COMMIT").inspect_err(|e| {
                tracing::warn!(error = %e, "committing the history failed");
                let _ = conn.execute_batch("ROLLBACK");
            }),
            Err(e) => Err(e),
        };
        for (reply, result) in replies {
            let _ = reply.send(result.and_then(|()| committed.as_ref().map(|_| ()).map_err(clone_err)));
        }
    }
}

fn clone_err(e: &rusqlite::Error) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
        Some(e.to_string()),
    )
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
    /// Opens (creating what is missing) the state directory `root`, registers this process as an instance, and
    /// starts the writer thread. Returns warnings to log (a database moved aside, a folder made private).
    pub fn open(root: &Path) -> Result<(Store, Vec<String>), StoreError> {
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
                    "INSERT INTO instances (id, pid, started_at, pid_start) VALUES (?1, ?2, ?3, ?4)",
                    params![instance.to_string(), me, now_ms(), me_start],
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
            _lock: None,
            reader: Mutex::new(reader),
            writer: Mutex::new(tx),
            pruning: Mutex::new(()),
        })
    }

    /// The ids that start with `prefix` (at most `limit`).
    pub fn ids_with_prefix(&self, prefix: &str, limit: usize) -> Vec<Uuid> {
        if !prefix.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Vec::new();
        }
        self.read(|c| {
            let mut stmt = c.prepare("SELECT id FROM executions WHERE id LIKE ?1 || '%' LIMIT ?2")?;
            stmt.query_map(params![prefix.to_ascii_lowercase(), limit as i64], |r| {
                r.get::<_, String>(0)
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .unwrap_or_default()
        .iter()
        .filter_map(|id| Uuid::parse_str(id).ok())
        .collect()
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

    /// Where an execution's log files are.
    pub fn log_path(&self, id: &Uuid) -> PathBuf {
        self.dir.log(id)
    }

    fn send(&self, op: Op, reply: Option<Reply>) {
        if lock(&self.writer).send((op, reply)).is_err() {
            tracing::error!("the history writer is gone; the history is not written");
        }
    }

    /// Runs a write on the writer thread and waits for it.
    fn write_sync(&self, op: Op) -> rusqlite::Result<()> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(op, Some(tx));
        rx.recv()
            .unwrap_or_else(|_| Err(rusqlite::Error::ExecuteReturnedResults))
    }

    /// Waits until every write sent so far is committed.
    pub fn flush(&self) {
        let _ = self.write_sync(Box::new(|_| Ok(())));
    }

    /// Records a new execution. When its idempotency key was used already (by any instance), nothing is
    /// written and the existing record is returned.
    pub fn insert(&self, rec: &ExecutionRecord) -> Result<(), Box<ExecutionRecord>> {
        let r = rec.clone();
        let result = self.write_sync(Box::new(move |c| {
            c.execute(
                &format!("INSERT INTO executions ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)"),
                params![
                    r.id.to_string(),
                    r.workflow,
                    Json(&r.params),
                    Json(&r.argv),
                    r.cwd,
                    r.idempotency_key,
                    r.state,
                    r.exit_code,
                    r.signal,
                    r.error,
                    r.created_at,
                    r.started_at,
                    r.finished_at,
                    r.pid,
                    r.pid_start.map(|v| v as i64),
                    r.owner,
                    r.stop_request,
                    r.output.as_ref().map(Json),
                    r.progress.as_ref().map(Json),
                    (!r.held_open.is_empty()).then_some(Json(&r.held_open)),
                    r.log_bytes as i64,
                    r.job.as_ref().map(Json),
                ],
            )
            .map(drop)
        }));
        match result {
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
                match rec
                    .idempotency_key
                    .as_deref()
                    .and_then(|k| self.by_key(&rec.workflow, k))
                {
                    Some(existing) => Err(Box::new(existing)),
                    None => {
                        tracing::warn!(error = %e, "recording an execution failed");
                        Ok(())
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, execution = %rec.id, "recording an execution failed; it runs unrecorded");
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    /// Applies a change to a record (in the background, in order with every other write of this process).
    pub fn update(&self, id: Uuid, change: Change) {
        self.send(Self::change_op(id, change), None);
    }

    /// Applies a change to a record and waits until it is committed (other processes see it at once).
    pub fn update_now(&self, id: Uuid, change: Change) {
        if let Err(e) = self.write_sync(Self::change_op(id, change)) {
            tracing::warn!(error = %e, execution = %id, "recording a change failed");
        }
    }

    /// Applies many changes in one transaction and waits until it is committed.
    pub fn update_all_now(&self, changes: Vec<(Uuid, Change)>) {
        let n = changes.len();
        let ops: Vec<Op> = changes
            .into_iter()
            .map(|(id, change)| Self::change_op(id, change))
            .collect();
        if let Err(e) = self.write_sync(Box::new(move |c| ops.into_iter().try_for_each(|op| op(c)))) {
            tracing::warn!(error = %e, executions = n, "recording changes failed");
        }
    }

    fn change_op(id: Uuid, change: Change) -> Op {
        let id = id.to_string();
        Box::new(move |c| {
            match change {
                    Change::Started {
                        state,
                        pid,
                        pid_start,
                        started_at,
                        job,
                    } => c.execute(
                        "UPDATE executions SET state = ?2, pid = ?3, pid_start = ?4, started_at = ?5, job = ?6 WHERE id = ?1",
                        params![id, state, pid, pid_start.map(|v| v as i64), started_at, job.map(Json)],
                    ),
                    Change::Job { state, started_at, job } => c.execute(
                        &format!("UPDATE executions SET state = ?2, started_at = coalesce(started_at, ?3), job = ?4 \
                         WHERE id = ?1 AND state IN {}", *UNFINISHED),
                        params![id, state, started_at, Json(job)],
                    ),
                    Change::Progress {
                        output,
                        progress,
                        log_bytes,
                    } => c.execute(
                        &format!("UPDATE executions SET output = ?2, progress = ?3, log_bytes = ?4 WHERE id = ?1 AND state IN {}", *UNFINISHED),
                        params![id, Json(output), progress.map(Json), log_bytes as i64],
                    ),
                    Change::Finished {
                        state,
                        exit_code,
                        signal,
                        error,
                        finished_at,
                        output,
                        progress,
                        held_open,
                        log_bytes,
                    } => c.execute(
                        "UPDATE executions SET state = ?2, exit_code = ?3, signal = ?4, error = ?5, finished_at = ?6, \
                         output = ?7, progress = ?8, held_open = ?9, log_bytes = ?10 WHERE id = ?1",
                        params![
                            id,
                            state,
                            exit_code,
                            signal,
                            error,
                            finished_at,
                            Json(output),
                            progress.map(Json),
                            (!held_open.is_empty()).then_some(Json(held_open)),
                            log_bytes as i64
                        ],
                    ),
                }
                .map(drop)
        })
    }

    /// This instance's running executions that another process asked to stop, with the reason.
    pub fn stop_requests(&self) -> Vec<(Uuid, StopReason)> {
        let owner = self.instance.to_string();
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT id, stop_request FROM executions WHERE owner = ?1 AND state IN {} \
                 AND stop_request IS NOT NULL",
                *UNFINISHED
            ))?;
            stmt.query_map([owner], |r| Ok((r.get::<_, String>(0)?, r.get::<_, StopReason>(1))))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(id, reason)| {
            let reason = reason
                .inspect_err(|e| tracing::warn!(execution = id, error = %e, "a stop request in the history is unreadable; ignored"))
                .ok()?;
            Some((Uuid::parse_str(&id).ok()?, reason))
        })
        .collect()
    }

    /// Asks whoever runs the execution to stop it; the first request wins.
    pub fn request_stop(&self, id: &Uuid, reason: StopReason) {
        let id = id.to_string();
        let _ = self.write_sync(Box::new(move |c| {
            c.execute(
                "UPDATE executions SET stop_request = ?2 WHERE id = ?1 AND stop_request IS NULL",
                params![id, reason],
            )
            .map(drop)
        }));
    }

    /// Takes over an execution whose owner is gone: true when this instance is its owner now (another one may
    /// have taken it first).
    pub fn claim(&self, id: &Uuid, from: &str) -> bool {
        let (id, from, to) = (id.to_string(), from.to_owned(), self.instance.to_string());
        let claimed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = claimed.clone();
        let written = self.write_sync(Box::new(move |c| {
            let n = c.execute(
                "UPDATE executions SET owner = ?3 WHERE id = ?1 AND owner = ?2",
                params![id, from, to],
            )?;
            flag.store(n == 1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }));
        written.is_ok() && claimed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Forgets a record written for an execution that was then refused (it never ran).
    pub fn remove(&self, id: &Uuid) {
        let id = id.to_string();
        let _ = self.write_sync(Box::new(move |c| {
            c.execute("DELETE FROM executions WHERE id = ?1", [id]).map(drop)
        }));
    }

    /// Marks executions whose owner is gone as lost, each with its error (unless it finished meanwhile), in one
    /// transaction.
    pub fn mark_lost(&self, lost: Vec<(Uuid, String)>) {
        let _ = self.write_sync(Box::new(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "UPDATE executions SET state = ?4, error = ?2, finished_at = ?3 WHERE id = ?1 AND state IN {}",
                *UNFINISHED
            ))?;
            let now = now_ms();
            for (id, error) in lost {
                stmt.execute(params![id.to_string(), error, now, ExecutionState::Lost])?;
            }
            Ok(())
        }));
    }

    fn read<R>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Option<R> {
        f(&lock(&self.reader))
            .inspect_err(|e| tracing::warn!(error = %e, "reading the history failed"))
            .ok()
    }

    /// Runs a query of records: each row decoded on its own, so one bad row spoils only itself.
    fn records(
        c: &Connection,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> rusqlite::Result<Vec<Result<ExecutionRecord, RecordError>>> {
        let mut stmt = c.prepare_cached(sql)?;
        let mut rows = stmt.query(params)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(ExecutionRecord::decode(row));
        }
        Ok(out)
    }

    /// The good records of a query; each bad one is logged with its error and left out (never shown as
    /// something it is not).
    fn good(records: Vec<Result<ExecutionRecord, RecordError>>) -> Vec<ExecutionRecord> {
        records
            .into_iter()
            .filter_map(|r| {
                r.inspect_err(|e| tracing::warn!(error = %error_chain(e), "skipping a bad row of the history"))
                    .ok()
            })
            .collect()
    }

    /// A failed read, named for what it means to the reader.
    fn read_error(&self, source: rusqlite::Error) -> ReadError {
        let path = self.dir.history_db();
        match source.sqlite_error_code() {
            Some(
                rusqlite::ErrorCode::DatabaseBusy
                | rusqlite::ErrorCode::DatabaseLocked
                | rusqlite::ErrorCode::FileLockingProtocolFailed,
            ) => ReadError::Busy { path, source },
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
                ReadError::Corrupt { path, source }
            }
            _ => ReadError::Db { path, source },
        }
    }

    /// The record of `id`: `Ok(None)` when there is none, an error when it cannot be read or does not decode.
    pub fn try_get(&self, id: &Uuid) -> Result<Option<ExecutionRecord>, ReadError> {
        let rows = Self::records(
            &lock(&self.reader),
            &format!("SELECT {COLUMNS} FROM executions WHERE id = ?1"),
            [id.to_string()],
        )
        .map_err(|e| self.read_error(e))?;
        Ok(rows.into_iter().next().transpose()?)
    }

    /// The record of `id`, or None (a read error is logged).
    pub fn get(&self, id: &Uuid) -> Option<ExecutionRecord> {
        self.try_get(id)
            .inspect_err(|e| tracing::warn!(execution = %id, error = %error_chain(e), "reading the history failed"))
            .ok()
            .flatten()
    }

    pub fn by_key(&self, workflow: &str, key: &str) -> Option<ExecutionRecord> {
        self.read(|c| {
            Self::records(
                c,
                &format!("SELECT {COLUMNS} FROM executions WHERE workflow = ?1 AND idempotency_key = ?2"),
                [workflow, key],
            )
        })
        .and_then(|rows| Self::good(rows).into_iter().next())
    }

    /// Records matching the filters, newest first, at most `limit`, and how many match in all — as a listing
    /// shows them: without `argv`, long string params cut (their whole lengths in `params_bytes`).
    pub fn list(&self, workflow: Option<&str>, state: Option<&str>, limit: usize) -> (Vec<ExecutionRecord>, usize) {
        // Only the filters given are in the query (not `?1 IS NULL OR ...`), so SQLite can use the index of
        // each: the count reads index entries, and the page walks an index newest first.
        let filters: Vec<(&str, &str)> = [("workflow", workflow), ("state", state)]
            .into_iter()
            .filter_map(|(column, value)| Some((column, value?)))
            .collect();
        let filter = if filters.is_empty() {
            String::new()
        } else {
            let terms: Vec<String> = filters.iter().map(|(column, _)| format!("{column} = ?")).collect();
            format!("WHERE {}", terms.join(" AND "))
        };
        let values: Vec<&str> = filters.iter().map(|(_, value)| *value).collect();
        self.read(|c| {
            let total: i64 = c
                .prepare_cached(&format!("SELECT count(*) FROM executions {filter}"))?
                .query_row(rusqlite::params_from_iter(&values), |r| r.get(0))?;
            let rows = Self::records(
                c,
                &format!(
                    "SELECT {} FROM executions {filter} ORDER BY created_at DESC, rowid DESC LIMIT {limit}",
                    *LISTED_COLUMNS
                ),
                rusqlite::params_from_iter(&values),
            )?;
            Ok((Self::good(rows), total as usize))
        })
        .unwrap_or_default()
    }

    /// How many records there are.
    pub fn count(&self) -> usize {
        self.read(|c| c.query_row("SELECT count(*) FROM executions", [], |r| r.get::<_, i64>(0)))
            .unwrap_or(0) as usize
    }

    fn lock_path(&self, instance: &str) -> PathBuf {
        self.dir.instance_lock(instance)
    }

    /// What can be told of the instance `owner`: gone (with its lock file held, when there is one, so nobody
    /// else acts on it at the same moment), alive, or unknown — which is acted on as alive.
    fn owner_state(&self, owner: &str) -> Owner {
        if owner == self.instance.to_string() {
            return Owner::Alive;
        }
        // Only an instance id names a lock file (a record is never trusted as a path).
        if Uuid::parse_str(owner).is_err() {
            return Owner::Unknown;
        }
        let path = self.lock_path(owner);
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return self.owner_by_record(owner),
            Err(e) => {
                tracing::debug!(instance = owner, error = %e, "cannot read an instance's lock file; taken as alive");
                return Owner::Unknown;
            }
        };
        match try_flock(&file) {
            Ok(true) => Owner::Gone(Some(file)),
            Ok(false) => Owner::Alive,
            Err(e) => {
                tracing::debug!(instance = owner, error = %e, "cannot lock an instance's lock file; taken as alive");
                Owner::Unknown
            }
        }
    }

    /// An instance whose lock file is missing (deleted by hand, or by its own clean exit): gone when its record
    /// is (a clean exit removes it) or names a process that no longer runs (pid and start time).
    fn owner_by_record(&self, owner: &str) -> Owner {
        let Some(row) = self.read(|c| {
            c.query_row("SELECT pid, pid_start FROM instances WHERE id = ?1", [owner], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?))
            })
            .optional()
        }) else {
            return Owner::Unknown;
        };
        let Some((pid, start)) = row else {
            return Owner::Gone(None);
        };
        let running = u32::try_from(pid)
            .ok()
            .and_then(crate::proc::scan::process)
            .filter(|p| !p.zombie);
        match (running, start) {
            (Some(p), Some(start)) if p.start_time as i64 == start => Owner::Alive,
            (Some(_), Some(_)) | (None, _) => Owner::Gone(None),
            // Recorded by a version that kept no start time: a process with its pid may be it.
            (Some(_), None) => Owner::Unknown,
        }
    }

    /// Whether the instance `owner` is known to be gone: only then are its executions lost. An instance that
    /// cannot be checked (its lock file unreadable, say) is not.
    pub fn owner_gone(&self, owner: &str) -> bool {
        matches!(self.owner_state(owner), Owner::Gone(_))
    }

    /// Unfinished executions whose owner is gone: they are lost.
    pub fn orphaned(&self) -> Vec<ExecutionRecord> {
        let unfinished = self
            .read(|c| {
                Self::records(
                    c,
                    &format!("SELECT {COLUMNS} FROM executions WHERE state IN {}", *UNFINISHED),
                    [],
                )
            })
            .map(Self::good)
            .unwrap_or_default();
        // Asked once per owner: thousands of records may share a few.
        let mut gone = std::collections::HashMap::new();
        unfinished
            .into_iter()
            .filter(|r| *gone.entry(r.owner.clone()).or_insert_with(|| self.owner_gone(&r.owner)))
            .collect()
    }

    /// Ends this instance on a clean exit: every write committed, its row and lock file removed.
    pub fn retire(&self) {
        let id = self.instance.to_string();
        let _ = self.write_sync(Box::new(move |c| {
            c.execute("DELETE FROM instances WHERE id = ?1", [id]).map(drop)
        }));
        let _ = std::fs::remove_file(self.lock_path(&self.instance.to_string()));
    }

    /// Forgets instances that are gone (their rows and lock files). A lock file is deleted only while this
    /// process holds it: one another process holds, or that cannot be read, is never touched.
    pub fn forget_dead_instances(&self) {
        let ids: Vec<String> = self
            .read(|c| {
                let mut stmt = c.prepare("SELECT id FROM instances")?;
                stmt.query_map([], |r| r.get(0))?.collect()
            })
            .unwrap_or_default();
        for id in ids {
            let Owner::Gone(held) = self.owner_state(&id) else {
                continue;
            };
            let row = id.clone();
            if self
                .write_sync(Box::new(move |c| {
                    c.execute("DELETE FROM instances WHERE id = ?1", [row]).map(drop)
                }))
                .is_ok()
                && held.is_some()
            {
                let _ = std::fs::remove_file(self.lock_path(&id));
            }
            drop(held);
        }
    }

    /// Applies retention; returns the ids forgotten (their log folders, and what is left of their job folders,
    /// are deleted too).
    pub fn prune(&self, rules: PruneRules) -> Vec<Uuid> {
        let _one = lock(&self.pruning);
        let oldest_kept = now_ms() - rules.max_age.as_millis() as i64;
        // One aggregate first: most of the time every rule holds and nothing more is read.
        let (finished, oldest, bytes): (i64, Option<i64>, i64) = self
            .read(|c| {
                c.query_row(
                    &format!(
                        "SELECT count(*), min(coalesce(finished_at, created_at)), coalesce(sum(log_bytes), 0) \
                         FROM executions WHERE state NOT IN {}",
                        *UNFINISHED
                    ),
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
            })
            .unwrap_or((0, None, 0));
        if finished as usize <= rules.keep
            && oldest.is_none_or(|t| t >= oldest_kept)
            && bytes as u64 <= rules.max_log_bytes
        {
            return Vec::new();
        }
        // Finished executions newest first, with their log bytes: keep while within every rule.
        let finished: Vec<(String, i64, i64)> = self
            .read(|c| {
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT id, coalesce(finished_at, created_at), log_bytes FROM executions \
                     WHERE state NOT IN {} ORDER BY coalesce(finished_at, created_at) DESC, rowid DESC",
                    *UNFINISHED
                ))?;
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect()
            })
            .unwrap_or_default();
        let mut bytes = 0u64;
        let forget: Vec<String> = finished
            .into_iter()
            .enumerate()
            .filter(|(i, (_, at, log_bytes))| {
                bytes += *log_bytes as u64;
                *i >= rules.keep || *at < oldest_kept || bytes > rules.max_log_bytes
            })
            .map(|(_, (id, _, _))| id)
            .collect();
        if forget.is_empty() {
            return Vec::new();
        }
        let ids: Vec<Uuid> = forget.iter().filter_map(|id| Uuid::parse_str(id).ok()).collect();
        let deleted = self.write_sync(Box::new(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "DELETE FROM executions WHERE id = ?1 AND state NOT IN {}",
                *UNFINISHED
            ))?;
            for id in forget {
                stmt.execute([id])?;
            }
            Ok(())
        }));
        if deleted.is_err() {
            return Vec::new();
        }
        for id in &ids {
            self.dir.remove_execution(id);
        }
        ids
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    #[test]
    fn a_listing_loads_long_params_cut_and_no_argv() {
        let dir = std::env::temp_dir().join(format!("wfmcp-store-{}-listed", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (store, _) = Store::open(&dir).unwrap();
        let long = "ü".repeat(100_000);
        let params = json!({"long": long, "short": "s", "n": 5, "x": 0.1, "on": true, "a.b-c": -3});
        let rec = ExecutionRecord {
            params: params.as_object().unwrap().clone(),
            argv: vec!["prog".into(), "a".repeat(100_000)],
            exit_code: Some(0),
            ..record(&store, ExecutionState::Succeeded)
        };
        store.insert(&rec).unwrap();
        let (listed, total) = store.list(None, None, 10);
        assert_eq!(total, 1);
        let listed = &listed[0];
        assert!(listed.argv.is_empty(), "a listing does not load argv");
        assert_eq!(
            listed.params["long"].as_str().unwrap(),
            "ü".repeat(crate::store::record::LISTED_PARAM_CHARS)
        );
        assert_eq!(listed.params_bytes, BTreeMap::from([("long".to_owned(), long.len())]));
        for key in ["short", "n", "x", "on", "a.b-c"] {
            assert_eq!(listed.params[key], params[key], "{key} is loaded as it is");
        }
        assert_eq!(store.get(&rec.id).unwrap(), rec, "a read of one record loads it whole");
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    fn record(store: &Store, state: ExecutionState) -> ExecutionRecord {
        ExecutionRecord {
            id: Uuid::new_v4(),
            workflow: "w".into(),
            params: Default::default(),
            argv: vec!["prog".into()],
            cwd: "/".into(),
            idempotency_key: None,
            state,
            exit_code: None,
            signal: None,
            error: None,
            created_at: now_ms(),
            started_at: None,
            finished_at: None,
            pid: None,
            pid_start: None,
            owner: store.instance().to_string(),
            stop_request: None,
            output: None,
            progress: None,
            held_open: Vec::new(),
            log_bytes: 0,
            job: None,
            params_bytes: BTreeMap::new(),
        }
    }

    #[test]
    fn a_row_with_an_unknown_state_is_an_error_not_lost() {
        let dir = std::env::temp_dir().join(format!("wfmcp-store-{}-bad-state", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (store, _) = Store::open(&dir).unwrap();
        let (bad, good) = (
            record(&store, ExecutionState::Running),
            record(&store, ExecutionState::Succeeded),
        );
        store.insert(&bad).unwrap();
        store.insert(&good).unwrap();
        // Another program (or a bit flip) wrote a word that is no state.
        let conn = crate::store::db::connect(&dir.join("history.db")).unwrap();
        conn.execute(
            "UPDATE executions SET state = 'bogus' WHERE id = ?1",
            [bad.id.to_string()],
        )
        .unwrap();
        let err = store.try_get(&bad.id).expect_err("a bad row is an error");
        let text = error_chain(&err);
        assert!(
            text.contains(&format!("execution {}", bad.id))
                && text.contains("column state")
                && text.contains("\"bogus\" is not an execution state"),
            "{text}"
        );
        assert!(store.get(&bad.id).is_none(), "never read as some other state");
        let (listed, total) = store.list(None, None, 10);
        assert_eq!(total, 2);
        let ids: Vec<Uuid> = listed.iter().map(|r| r.id).collect();
        assert_eq!(
            ids,
            vec![good.id],
            "a listing leaves the bad row out and shows the good one"
        );
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_row_with_unreadable_counters_is_an_error_not_empty_counters() {
        let dir = std::env::temp_dir().join(format!("wfmcp-store-{}-bad-output", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (store, _) = Store::open(&dir).unwrap();
        let bad = record(&store, ExecutionState::Succeeded);
        store.insert(&bad).unwrap();
        let conn = crate::store::db::connect(&dir.join("history.db")).unwrap();
        conn.execute(
            "UPDATE executions SET output = '{\"stdout\": 5' WHERE id = ?1",
            [bad.id.to_string()],
        )
        .unwrap();
        let text = error_chain(&store.try_get(&bad.id).expect_err("a bad row is an error"));
        assert!(text.contains("column output"), "{text}");
        assert!(store.get(&bad.id).is_none(), "never read as empty counters");
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A state directory whose database a previous version wrote (schema version 3, every JSON column as that
    /// version wrote it) opens, is migrated, and reads back as typed values.
    #[test]
    fn a_history_written_by_the_previous_version_reads_as_typed_values() {
        use crate::model::{Stream, StreamCounters};
        let dir = std::env::temp_dir().join(format!("wfmcp-store-{}-old", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let id = Uuid::new_v4();
        {
            let old = rusqlite::Connection::open(dir.join("history.db")).unwrap();
            for migration in [
                include_str!("migrations/0001_history.sql"),
                include_str!("migrations/0002_jobs.sql"),
                include_str!("migrations/0003_list_by_state.sql"),
            ] {
                old.execute_batch(migration).unwrap();
            }
            old.execute_batch("PRAGMA application_id = 2003201379; PRAGMA user_version = 3;")
                .unwrap();
            old.execute(
                "INSERT INTO executions (id, workflow, params, argv, cwd, idempotency_key, state, exit_code, signal, \
                 error, created_at, started_at, finished_at, pid, pid_start, owner, stop_request, output, progress, \
                 held_open, log_bytes, job) VALUES (?1, 'w', '{\"n\":5}', '[\"prog\",\"a\"]', '/', NULL, 'cancelled', \
                 NULL, 15, 'cancelled by request', 1000, 1001, 2000, 77, 123, 'gone', 'cancel', \
                 '{\"stdout\":{\"lines\":1,\"bytes\":2},\"stderr\":{\"lines\":2,\"bytes\":62},\"last_seq\":2,\
                 \"last_output_at\":\"2026-12-07T19:01:11.800Z\",\"held_open\":[\"stdout\"]}', \
                 '{\"phases_completed\":0,\"events\":0,\"malformed_events\":1}', '[\"stdout\"]', 64, \
                 '{\"system\":\"slurm\",\"id\":\"42\",\"state\":\"RUNNING\",\"node\":\"vm\",\"dir\":\"/x\"}')",
                [id.to_string()],
            )
            .unwrap();
        }
        let (store, _) = Store::open(&dir).unwrap();
        let rec = store.try_get(&id).unwrap().expect("the old row");
        assert_eq!(rec.state, ExecutionState::Cancelled);
        assert_eq!(rec.stop_request, Some(StopReason::Cancel));
        assert_eq!((rec.exit_code, rec.signal), (None, Some(15)));
        assert_eq!(rec.held_open, vec![Stream::Stdout]);
        let output = rec.output.expect("counters");
        assert_eq!(output.stderr, StreamCounters { lines: 2, bytes: 62 });
        assert_eq!(output.held_open, vec![Stream::Stdout]);
        assert_eq!(rec.progress.expect("progress").malformed_events, 1);
        let job = rec.job.expect("the job");
        assert_eq!(
            (job.system.as_str(), job.id.as_str(), job.node.as_deref()),
            ("slurm", "42", Some("vm"))
        );
        assert_eq!((rec.created_at, rec.finished_at), (1000, Some(2000)));
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }
}
