//! Retention: finished executions beyond the rules are forgotten, records and log files.

use std::time::Duration;

use uuid::Uuid;

use super::open::{Store, lock, now_ms};
use super::record::UNFINISHED;
use crate::model::Role;

/// What retention keeps: finished executions beyond any of these are forgotten (records and log files), the
/// oldest first. Unfinished executions are always kept.
#[derive(Clone, Copy, Debug)]
pub struct PruneRules {
    pub keep: usize,
    pub max_age: Duration,
    /// Log files of finished executions, in all.
    pub max_log_bytes: u64,
}

impl Store {
    /// Applies retention; returns the ids forgotten (their log folders, and what is left of their job folders,
    /// are deleted too). A command never does: the rules are a server's config, which a command may not have.
    pub fn prune(&self, rules: PruneRules) -> Vec<Uuid> {
        if self.role == Role::Command {
            return Vec::new();
        }
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
