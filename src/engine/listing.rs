//! What listings of executions read: a status (with its queue place), a listing by filter, a page after a key,
//! from the durable history when there is one (live executions' statuses from the table, those of a gone owner
//! marked lost), else from the table in memory. Everything here may block: [`super::Engine`] calls it on a
//! blocking thread when there is a history.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::execution::{Execution, ExecutionState};
use super::executor::Executor;
use super::status::{ExecutionStatus, status_of_record};
use super::table::{ListFilter, PageKey};
use super::view::ExecutionView;
use crate::store::{ExecutionRecord, ListKey, ReadError, Store};

/// The status of an execution, with its queue position when queued here.
pub(super) fn status(executor: &Executor, view: &ExecutionView) -> ExecutionStatus {
    match view {
        ExecutionView::Live(exec) => {
            let position = executor.table().queue_position(&exec.id);
            exec.status(position)
        }
        ExecutionView::Stored(_) => view.status(),
    }
}

/// [`super::Engine::list`] on the calling thread, which may block.
pub(super) fn list(executor: &Executor, filter: &ListFilter) -> Result<(Vec<ExecutionStatus>, usize), ReadError> {
    if let Some(history) = executor.records().history() {
        let state = filter.state.map(ExecutionState::as_str);
        let (records, total) = history.list(filter.workflow.as_deref(), state, filter.limit)?;
        return Ok((statuses_of(executor, history, &records), total));
    }
    let matching = {
        let mut t = executor.table();
        // The age rule also applies while nothing starts or finishes.
        let cfg = executor.config();
        t.prune(cfg.retain_executions, cfg.retain_age, SystemTime::now());
        t.matching(filter)
    };
    let total = matching.len();
    let statuses = matching
        .into_iter()
        .take(filter.limit)
        .map(|e| status(executor, &ExecutionView::Live(e)))
        .collect();
    Ok((statuses, total))
}

/// The statuses of listed records: a live one's from the table, one whose owner is gone marked lost.
fn statuses_of(executor: &Executor, history: &Store, records: &[ExecutionRecord]) -> Vec<ExecutionStatus> {
    let table = executor.table();
    let live: Vec<Option<Arc<Execution>>> = records.iter().map(|r| table.get(&r.id)).collect();
    drop(table);
    records
        .iter()
        .zip(live)
        .map(|(rec, live)| match live {
            Some(exec) => status(executor, &ExecutionView::Live(exec)),
            None if rec.unfinished() && history.owner_gone(&rec.owner) => {
                executor.records().lose(rec);
                history
                    .get(&rec.id)
                    .map_or_else(|| status_of_record(rec), |r| status_of_record(&r))
            }
            None => status_of_record(rec),
        })
        .collect()
}

/// [`super::Engine::page`] on the calling thread, which may block.
pub(super) fn page(
    executor: &Executor,
    after: Option<PageKey>,
    limit: usize,
) -> Result<Vec<(PageKey, ExecutionStatus)>, ReadError> {
    if let Some(history) = executor.records().history() {
        let after = after.map(|k| ListKey {
            created_at: k.created_at,
            rowid: k.seq,
        });
        let (keys, records): (Vec<ListKey>, Vec<ExecutionRecord>) =
            history.list_after(after, limit)?.into_iter().unzip();
        let statuses = statuses_of(executor, history, &records);
        return Ok(keys
            .into_iter()
            .zip(&records)
            .zip(statuses)
            .map(|((key, rec), status)| {
                let key = PageKey {
                    created_at: key.created_at,
                    seq: key.rowid,
                    id: rec.id,
                };
                (key, status)
            })
            .collect());
    }
    // Ephemeral: the table in memory, in its own order; after the execution the key names, or, when that
    // one was forgotten meanwhile, after the executions created before it.
    let matching = {
        let mut t = executor.table();
        // As in a listing: the age rule also applies while nothing starts or finishes.
        let cfg = executor.config();
        t.prune(cfg.retain_executions, cfg.retain_age, SystemTime::now());
        t.matching(&ListFilter::default())
    };
    let created = |e: &Execution| {
        e.created_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    };
    let start = match after {
        None => 0,
        Some(key) => matching.iter().position(|e| e.id == key.id).map_or_else(
            || {
                matching
                    .iter()
                    .position(|e| created(e) < key.created_at)
                    .unwrap_or(matching.len())
            },
            |p| p + 1,
        ),
    };
    Ok(matching
        .into_iter()
        .skip(start)
        .take(limit)
        .map(|e| {
            let key = PageKey {
                created_at: created(&e),
                seq: 0,
                id: e.id,
            };
            (key, status(executor, &ExecutionView::Live(e)))
        })
        .collect())
}
