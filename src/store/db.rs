//! The history database: SQLite in WAL mode (readers never wait for the writer, several processes share it),
//! schema migrations kept beside this file and applied in order under an immediate transaction (the schema
//! version is `PRAGMA user_version`), and an application id that tells our file from another program's. A file
//! that is corrupt or someone else's is moved aside — never deleted — and a fresh one is created. The file is
//! private (0600, created before SQLite opens it so its `-wal` and `-shm` files get the same mode), and one
//! process at a time opens it (an `flock` on its folder): two servers starting together on a corrupt file move
//! it aside once, and both use the fresh one.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How long a statement waits for a database another process holds locked before it is an error.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

/// "wfmc": marks the file as workflow-mcp's.
const APPLICATION_ID: i64 = 0x7766_6D63;

/// Every migration, in order; migration N brings the schema to version N.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_history.sql"),
    include_str!("migrations/0002_jobs.sql"),
    include_str!("migrations/0003_list_by_state.sql"),
    include_str!("migrations/0004_instance_start.sql"),
    include_str!("migrations/0005_instance_role.sql"),
];

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    // The cause is said once, in the sentence; it is not also a source a chain printer would repeat.
    #[error("cannot open the history database {path}: {error}")]
    Open { path: PathBuf, error: rusqlite::Error },
    #[error("cannot create the history database {path}: {error}")]
    File { path: PathBuf, error: std::io::Error },
    #[error(
        "the history database {path} has schema version {found}, newer than this program knows ({known}); use a newer workflow-mcp or another --state-dir"
    )]
    TooNew { path: PathBuf, found: i64, known: usize },
}

impl DbError {
    /// SQLite's code for the failure, if SQLite failed.
    pub fn sqlite_code(&self) -> Option<rusqlite::ErrorCode> {
        match self {
            DbError::Open { error, .. } => error.sqlite_error_code(),
            _ => None,
        }
    }
}

/// Why a file was not usable as our database.
enum Unusable {
    Corrupt(String),
    Foreign(String),
}

/// Opens a connection with the settings every connection uses.
pub fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL: readers and the writer do not block each other; NORMAL: no fsync per commit (a crash of the machine
    // may lose the last commits, never consistency).
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

fn check(conn: &Connection) -> Result<(), Unusable> {
    let corrupt = |e: rusqlite::Error| Unusable::Corrupt(e.to_string());
    let verdict: String = conn
        .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
        .map_err(corrupt)?;
    if verdict != "ok" {
        return Err(Unusable::Corrupt(verdict));
    }
    let app_id: i64 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(corrupt)?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(corrupt)?;
    match app_id {
        APPLICATION_ID => Ok(()),
        0 if tables == 0 => Ok(()),
        other => Err(Unusable::Foreign(format!(
            "it belongs to another program (application id {other:#x}, {tables} schema objects)"
        ))),
    }
}

/// Brings the schema to the newest version (every process may try; the first one in does it).
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), DbError> {
    let open_err = |source| DbError::Open {
        path: path.to_owned(),
        error: source,
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(open_err)?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(open_err)?;
    if version > MIGRATIONS.len() as i64 {
        return Err(DbError::TooNew {
            path: path.to_owned(),
            found: version,
            known: MIGRATIONS.len(),
        });
    }
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql).map_err(open_err)?;
        tx.pragma_update(None, "user_version", n as i64 + 1).map_err(open_err)?;
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)
        .map_err(open_err)?;
    tx.commit().map_err(open_err)
}

/// Moves a database and its WAL files aside; returns where it went.
fn move_aside(path: &Path) -> std::io::Result<PathBuf> {
    let stamp = crate::clock::unix_ms(SystemTime::now());
    let aside = path.with_file_name(format!(
        "{}.unusable-{stamp}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("history.db")
    ));
    std::fs::rename(path, &aside)?;
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let mut side_aside = aside.as_os_str().to_owned();
        side_aside.push(suffix);
        let _ = std::fs::rename(side, side_aside);
    }
    Ok(aside)
}

/// Creates the database file private (0600) when it is missing, and makes an existing one (and its WAL files)
/// private: SQLite creates `-wal` and `-shm` with the mode of the database.
fn create_private(path: &Path) -> std::io::Result<()> {
    let file = OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
    if file.metadata()?.permissions().mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        for suffix in ["-wal", "-shm"] {
            let mut side = path.as_os_str().to_owned();
            side.push(suffix);
            let _ = std::fs::set_permissions(side, std::fs::Permissions::from_mode(0o600));
        }
    }
    Ok(())
}

/// Waits for the lock on the database's folder: held while a process checks, moves aside, creates or migrates
/// the database.
fn lock_folder(path: &Path) -> std::io::Result<File> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let folder = File::open(dir)?;
    loop {
        // std's file lock is `flock` on Linux; it does not retry a wait a signal interrupted.
        match folder.lock() {
            Ok(()) => return Ok(folder),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Opens (creating or migrating) the database at `path`. A corrupt or foreign file is moved aside and replaced;
/// the warning returned names both paths.
pub fn open(path: &Path) -> Result<(Connection, Option<String>), DbError> {
    let open_err = |source| DbError::Open {
        path: path.to_owned(),
        error: source,
    };
    let file_err = |source| DbError::File {
        path: path.to_owned(),
        error: source,
    };
    // Released when this returns: later writes are SQLite's to order.
    let _one_at_a_time = lock_folder(path).map_err(file_err)?;
    create_private(path).map_err(file_err)?;
    let mut warning = None;
    let mut conn = match connect(path) {
        Ok(conn) => match check(&conn) {
            Ok(()) => conn,
            Err(why) => {
                drop(conn);
                warning = Some(set_aside(path, why)?);
                create_private(path).map_err(file_err)?;
                connect(path).map_err(open_err)?
            }
        },
        Err(e) if is_corruption(&e) => {
            warning = Some(set_aside(path, Unusable::Corrupt(e.to_string()))?);
            create_private(path).map_err(file_err)?;
            connect(path).map_err(open_err)?
        }
        Err(e) => return Err(open_err(e)),
    };
    migrate(&mut conn, path)?;
    Ok((conn, warning))
}

fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
    )
}

fn set_aside(path: &Path, why: Unusable) -> Result<String, DbError> {
    let reason = match why {
        Unusable::Corrupt(e) => format!("it is corrupt ({e})"),
        Unusable::Foreign(e) => e,
    };
    let aside = move_aside(path).map_err(|source| DbError::File {
        path: path.to_owned(),
        error: source,
    })?;
    Ok(format!(
        "the history database {} could not be used: {reason}; moved it to {} and started a fresh one",
        path.display(),
        aside.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wfmcp-db-{}-{label}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Regression: the sentence named the cause and also declared it the source, so a chain printer (the CLI's
    /// `{:#}`) said it twice.
    #[test]
    fn an_unopenable_database_says_why_once() {
        let dir = std::env::temp_dir().join(format!("wfmcp-db-once-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("not-a-folder");
        std::fs::write(&file, b"").unwrap();
        let e = open(&file.join("history.db")).map(|_| ()).unwrap_err();
        let mut chain = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            chain.push_str(&format!(": {s}"));
            source = s.source();
        }
        let _ = std::fs::remove_dir_all(&dir);
        let cause = chain.rsplit(": ").next().unwrap().to_owned();
        assert_eq!(chain.matches(cause.as_str()).count(), 1, "{chain}");
    }

    #[test]
    fn a_new_database_gets_the_schema_and_reopens_as_it_is() {
        let dir = temp("new");
        let path = dir.join("history.db");
        let (conn, warning) = open(&path).unwrap();
        assert!(warning.is_none());
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        conn.execute("INSERT INTO instances (id, pid, started_at) VALUES ('a', 1, 2)", [])
            .unwrap();
        drop(conn);
        let (conn, warning) = open(&path).unwrap();
        assert!(warning.is_none());
        let n: i64 = conn
            .query_row("SELECT count(*) FROM instances", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1, "reopening keeps the data");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn an_instance_registered_before_roles_reads_as_a_server() {
        let dir = temp("roles");
        let path = dir.join("history.db");
        let conn = Connection::open(&path).unwrap();
        for sql in &MIGRATIONS[..4] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 4).unwrap();
        conn.pragma_update(None, "application_id", APPLICATION_ID).unwrap();
        conn.execute("INSERT INTO instances (id, pid, started_at) VALUES ('a', 1, 2)", [])
            .unwrap();
        drop(conn);
        let (conn, _) = open(&path).unwrap();
        let role: crate::model::Role = conn
            .query_row("SELECT role FROM instances WHERE id = 'a'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(role, crate::model::Role::Server);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_corrupt_or_foreign_file_is_moved_aside_never_deleted() {
        let dir = temp("aside");
        let path = dir.join("history.db");
        std::fs::write(&path, b"this is not a database, but somebody's notes").unwrap();
        let (_, warning) = open(&path).unwrap();
        let warning = warning.expect("a warning");
        assert!(
            warning.contains(&path.display().to_string()) && warning.contains("moved it to"),
            "{warning}"
        );
        let aside: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".unusable-"))
            .collect();
        assert_eq!(aside.len(), 1);
        assert_eq!(
            std::fs::read(aside[0].path()).unwrap(),
            b"this is not a database, but somebody's notes"
        );

        let foreign = dir.join("other.db");
        let conn = Connection::open(&foreign).unwrap();
        conn.execute_batch("CREATE TABLE notes (x TEXT); INSERT INTO notes VALUES ('keep me');")
            .unwrap();
        drop(conn);
        let (_, warning) = open(&foreign).unwrap();
        assert!(warning.expect("a warning").contains("another program"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
