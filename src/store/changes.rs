//! The writes: a new record, changes to a record, stop requests, claims, lost executions.

use rusqlite::params;
use uuid::Uuid;

use super::error::error_chain;
use super::open::{Store, now_ms};
use super::record::{COLUMNS, ExecutionRecord, Json, UNFINISHED};
use super::writer::Op;
use crate::model::{ExecutionState, JobStatus, OutputSummary, Progress, StopReason, Stream};

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

/// Why a new execution was not recorded.
#[derive(Debug)]
pub enum NotInserted {
    /// Its idempotency key was used already (by any instance): the execution it started.
    Existing(Box<ExecutionRecord>),
    /// As many executions of its workflow as it allows are unfinished (by any instance): theirs ids.
    AtLimit(Vec<Uuid>),
}

impl Store {
    /// Records a new execution. When its idempotency key was used already (by any instance), nothing is
    /// written and the existing record is returned.
    pub fn insert(&self, rec: &ExecutionRecord) -> Result<(), Box<ExecutionRecord>> {
        match self.insert_within(rec, None) {
            Err(NotInserted::Existing(existing)) => Err(existing),
            _ => Ok(()),
        }
    }

    /// [`Store::insert`], unless `at_most` executions of its workflow are unfinished already, whichever
    /// instances run them: counted and written in one transaction, so two servers starting one at the same
    /// moment cannot both pass the limit.
    pub fn insert_within(&self, rec: &ExecutionRecord, at_most: Option<usize>) -> Result<(), NotInserted> {
        let r = rec.clone();
        let full = std::sync::Arc::new(std::sync::Mutex::new(None));
        let seen = full.clone();
        let result = self.write_sync(Box::new(move |c| {
            if let Some(at_most) = at_most {
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT id FROM executions WHERE workflow = ?1 AND state IN {} ORDER BY created_at",
                    *UNFINISHED
                ))?;
                let running = stmt
                    .query_map([&r.workflow], |row| row.get::<_, String>(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()?;
                // A repeated idempotency key is answered with its execution (below), at the limit or not.
                let key_used = match &r.idempotency_key {
                    Some(key) => c
                        .prepare_cached("SELECT 1 FROM executions WHERE workflow = ?1 AND idempotency_key = ?2")?
                        .exists(params![r.workflow, key])?,
                    None => false,
                };
                if running.len() >= at_most && !key_used {
                    *seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(running);
                    return Ok(());
                }
            }
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
        if let Some(running) = full.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Err(NotInserted::AtLimit(
                running.iter().filter_map(|id| Uuid::parse_str(id).ok()).collect(),
            ));
        }
        match result {
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
                match rec.idempotency_key.as_deref().and_then(|k| {
                    self.by_key(&rec.workflow, k)
                        .inspect_err(|e| tracing::warn!(error = %error_chain(e), "reading the history failed"))
                        .ok()
                        .flatten()
                }) {
                    Some(existing) => Err(NotInserted::Existing(Box::new(existing))),
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
}
