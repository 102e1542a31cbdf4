//! The reads: one record, a listing, ids by prefix, stop requests.

use rusqlite::{Connection, params};
use uuid::Uuid;

use super::error::{ReadError, error_chain};
use super::open::{Store, lock};
use super::record::{COLUMNS, ExecutionRecord, LISTED_COLUMNS, ListKey, RecordError, UNFINISHED};
use crate::model::StopReason;

impl Store {
    /// The ids that start with `prefix` (at most `limit`).
    pub fn ids_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<Uuid>, ReadError> {
        if !prefix.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Ok(Vec::new());
        }
        let ids = self.try_read(|c| {
            let mut stmt = c.prepare("SELECT id FROM executions WHERE id LIKE ?1 || '%' LIMIT ?2")?;
            stmt.query_map(params![prefix.to_ascii_lowercase(), limit as i64], |r| {
                r.get::<_, String>(0)
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        Ok(ids.iter().filter_map(|id| Uuid::parse_str(id).ok()).collect())
    }

    /// This instance's running executions that another process asked to stop, with the reason.
    pub fn stop_requests(&self) -> Vec<(Uuid, StopReason)> {
        let owner = self.instance.to_string();
        self.read_briefly(|c| {
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

    /// Runs a query of records: each row decoded on its own, so one bad row spoils only itself.
    pub(super) fn records(
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
    pub(super) fn good(records: Vec<Result<ExecutionRecord, RecordError>>) -> Vec<ExecutionRecord> {
        records
            .into_iter()
            .filter_map(|r| {
                r.inspect_err(|e| tracing::warn!(error = %error_chain(e), "skipping a bad row of the history"))
                    .ok()
            })
            .collect()
    }

    /// A read whose failure the caller reports, named for what it means to the reader.
    fn try_read<R>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R, ReadError> {
        f(&lock(&self.reader)).map_err(|e| self.read_error(e))
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

    /// The record started with idempotency key `key` for `workflow`, if any.
    pub fn by_key(&self, workflow: &str, key: &str) -> Result<Option<ExecutionRecord>, ReadError> {
        self.try_read(|c| {
            Self::records(
                c,
                &format!("SELECT {COLUMNS} FROM executions WHERE workflow = ?1 AND idempotency_key = ?2"),
                [workflow, key],
            )
        })
        .map(|rows| Self::good(rows).into_iter().next())
    }

    /// Records matching the filters, newest first, at most `limit`, and how many match in all — as a listing
    /// shows them: without `argv`, long string params cut (their whole lengths in `params_bytes`).
    pub fn list(
        &self,
        workflow: Option<&str>,
        state: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<ExecutionRecord>, usize), ReadError> {
        self.list_where(workflow, state.map(|s| ("state = ?".to_owned(), Some(s))), limit)
    }

    /// [`Store::list`] of the unfinished records (queued or running).
    pub fn list_unfinished(
        &self,
        workflow: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<ExecutionRecord>, usize), ReadError> {
        self.list_where(workflow, Some((format!("state IN {}", *UNFINISHED), None)), limit)
    }

    /// [`Store::list`] with the state term given as SQL (and its value, if it takes one).
    fn list_where(
        &self,
        workflow: Option<&str>,
        state: Option<(String, Option<&str>)>,
        limit: usize,
    ) -> Result<(Vec<ExecutionRecord>, usize), ReadError> {
        // Only the filters given are in the query (not `?1 IS NULL OR ...`), so SQLite can use the index of
        // each: the count reads index entries, and the page walks an index newest first.
        let terms: Vec<(String, Option<&str>)> = [workflow.map(|w| ("workflow = ?".to_owned(), Some(w))), state]
            .into_iter()
            .flatten()
            .collect();
        let filter = if terms.is_empty() {
            String::new()
        } else {
            let terms: Vec<&str> = terms.iter().map(|(term, _)| term.as_str()).collect();
            format!("WHERE {}", terms.join(" AND "))
        };
        let values: Vec<&str> = terms.iter().filter_map(|(_, value)| *value).collect();
        self.try_read(|c| {
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
    }

    /// The `limit` records that come after `after` in listing order (newest first: by creation, then by the
    /// order they were written), each with its own place, as a listing loads them. Reads only those rows, so
    /// walking every page reads each record once.
    pub fn list_after(
        &self,
        after: Option<ListKey>,
        limit: usize,
    ) -> Result<Vec<(ListKey, ExecutionRecord)>, ReadError> {
        // The listed columns are 0..=22 (`params_bytes` last); the rowid follows them.
        const ROWID: usize = 23;
        let after_filter = if after.is_some() {
            "WHERE (created_at, rowid) < (?1, ?2)"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {}, rowid FROM executions {after_filter} ORDER BY created_at DESC, rowid DESC LIMIT {limit}",
            *LISTED_COLUMNS
        );
        self.try_read(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let mut rows = match after {
                Some(key) => stmt.query(params![key.created_at, key.rowid])?,
                None => stmt.query([])?,
            };
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let key = ListKey {
                    created_at: row.get(10)?,
                    rowid: row.get(ROWID)?,
                };
                out.push(ExecutionRecord::decode(row).map(|r| (key, r)));
            }
            Ok(out)
        })
        .map(|rows| {
            rows.into_iter()
                .filter_map(|r| {
                    r.inspect_err(|e| tracing::warn!(error = %error_chain(e), "skipping a bad row of the history"))
                        .ok()
                })
                .collect()
        })
    }

    /// How many records there are.
    pub fn count(&self) -> Result<usize, ReadError> {
        self.try_read(|c| c.query_row("SELECT count(*) FROM executions", [], |r| r.get::<_, i64>(0)))
            .map(|n| n as usize)
    }
}

/// Holds every WAL read mark of the database at `db` the way another process would (open-file-description
/// locks conflict with SQLite's record locks even inside this process), so a read of it waits — SQLite's own
/// retries, about 10 s — and then fails as busy. Released when the file is dropped.
#[cfg(test)]
pub(crate) fn hold_read_locks(db: &std::path::Path) -> std::fs::File {
    use std::os::fd::AsRawFd;
    // A record lock (fcntl), not flock(2).
    use libc::{F_OFD_SETLK, flock as RecordLock};
    let mut shm = db.as_os_str().to_owned();
    shm.push("-shm");
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&shm).unwrap();
    // SQLite's WAL index: bytes 123..128 are the five read marks a reader must lock shared.
    let lock = RecordLock {
        l_type: libc::F_WRLCK as i16,
        l_whence: libc::SEEK_SET as i16,
        l_start: 123,
        l_len: 5,
        l_pid: 0,
    };
    // SAFETY: F_OFD_SETLK with a valid flock struct (l_pid 0, as OFD locks require) on an open file.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), F_OFD_SETLK, &lock) };
    assert_eq!(
        rc,
        0,
        "lock {}: {}",
        shm.to_string_lossy(),
        std::io::Error::last_os_error()
    );
    file
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;
    use uuid::Uuid;

    use super::super::open::now_ms;
    use crate::model::{ExecutionState, StopReason};
    use crate::store::{ExecutionRecord, ReadError, Store, error_chain};

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
        let (listed, total) = store.list(None, None, 10).unwrap();
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
            state,
            ..ExecutionRecord::queued(
                Uuid::new_v4(),
                "w",
                vec!["prog".into()],
                &store.instance().to_string(),
                now_ms(),
            )
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
        let (listed, total) = store.list(None, None, 10).unwrap();
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
    /// A read that cannot be done is an error, never an empty answer ("0 of 0" for a history that holds
    /// executions).
    #[test]
    fn a_busy_history_is_an_error_not_an_empty_answer() {
        let dir = std::env::temp_dir().join(format!("wfmcp-store-{}-busy", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (store, _) = Store::open(&dir).unwrap();
        let rec = ExecutionRecord {
            idempotency_key: Some("k".into()),
            ..record(&store, ExecutionState::Succeeded)
        };
        store.insert(&rec).unwrap();
        assert_eq!(store.count().unwrap(), 1);
        // One reader each, so the four wait on the lock at once (a waiting read takes SQLite's ~10 s).
        let readers: Vec<Store> = (0..4).map(|_| Store::open_reader(&dir).unwrap()).collect();
        let locks = super::hold_read_locks(&dir.join("history.db"));
        let prefix = rec.id.to_string()[..8].to_owned();
        let errors: Vec<ReadError> = std::thread::scope(|s| {
            let r = &readers;
            let waits = [
                s.spawn(|| r[0].list(None, None, 10).map(drop)),
                s.spawn(|| r[1].count().map(drop)),
                s.spawn(|| r[2].by_key("w", "k").map(drop)),
                s.spawn(|| r[3].ids_with_prefix(&prefix, 2).map(drop)),
            ];
            waits
                .map(|w| w.join().unwrap().expect_err("a read of a busy history"))
                .into()
        });
        for e in errors {
            assert!(matches!(e, ReadError::Busy { .. }), "{}", error_chain(&e));
        }
        drop(locks);
        assert_eq!(store.list(None, None, 10).unwrap().1, 1, "read again once free");
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }
}
