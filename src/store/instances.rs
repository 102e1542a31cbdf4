//! The instances sharing a state directory: which of them are alive, the executions of those gone, and this
//! instance's own end.
//!
//! Another instance is gone only when this process holds its lock, or, its lock file missing, when its recorded
//! process (pid and start time) is gone; when its lock file cannot be read it is alive as far as anyone acts.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use rusqlite::OptionalExtension;
use uuid::Uuid;

use super::open::{Store, try_flock};
use super::record::{COLUMNS, ExecutionRecord, UNFINISHED};
use crate::model::Role;

/// An instance as the history records it: what it is and which process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub role: Role,
    pub pid: u32,
}

/// What one instance can tell of another.
enum Owner {
    Alive,
    /// With its lock file, held by this process (None: the lock file is gone).
    Gone(Option<File>),
    Unknown,
}

impl Store {
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

    /// The instance `id` as registered; None once its row is gone (it exited cleanly, or was forgotten) or when
    /// it cannot be read.
    pub fn instance_record(&self, id: &str) -> Option<Instance> {
        let row = self.read(|c| {
            c.query_row("SELECT pid, role FROM instances WHERE id = ?1", [id], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Role>(1)?))
            })
            .optional()
        })??;
        Some(Instance {
            id: id.to_owned(),
            role: row.1,
            pid: u32::try_from(row.0).ok()?,
        })
    }

    /// What the instance `owner` registered as; a server when that is no longer known (its row is gone).
    pub fn owner_role(&self, owner: &str) -> Role {
        self.instance_record(owner).map_or(Role::Server, |i| i.role)
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
}

#[cfg(test)]
mod tests {
    use crate::store::{Instance, Role, Store};

    #[test]
    fn an_instance_is_listed_with_the_role_it_opened_as() {
        let dir = std::env::temp_dir().join(format!("wfmcp-store-{}-roles", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (server, _) = Store::open(&dir).unwrap();
        let (supervisor, _) = Store::open_as(&dir, Role::Supervisor).unwrap();
        let reader = Store::open_reader(&dir).unwrap();
        for (store, role) in [(&server, Role::Server), (&supervisor, Role::Supervisor)] {
            let id = store.instance().to_string();
            assert_eq!(
                reader.instance_record(&id),
                Some(Instance {
                    id,
                    role,
                    pid: std::process::id()
                })
            );
        }
        supervisor.retire();
        assert_eq!(
            reader.instance_record(&supervisor.instance().to_string()),
            None,
            "a clean exit removes its row"
        );
        drop((server, supervisor, reader));
        let _ = std::fs::remove_dir_all(dir);
    }
}
