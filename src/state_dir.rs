//! The state directory's layout, in one place: where the history, the instances' lock files, each execution's
//! log folder and the Slurm job folders go, and the one way an execution's files are deleted.
//!
//! ```text
//! STATE/history.db        the history (SQLite, WAL: also history.db-wal, history.db-shm)
//! STATE/instances/I.lock  one per server process on the directory, held while it runs
//! STATE/logs/ID/          an execution's log files
//! STATE/slurm/ID/         a Slurm job's folder (script, output files) while its output is being read
//! ```

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use uuid::Uuid;

/// A state directory: the paths of what lives in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: &Path) -> Self {
        StateDir { root: root.to_owned() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The history database.
    pub fn history_db(&self) -> PathBuf {
        self.root.join("history.db")
    }

    /// The history's write-ahead log: every committed write appends to it (until a checkpoint moves it into the
    /// database; the last connection to close deletes it).
    pub fn history_wal(&self) -> PathBuf {
        self.root.join("history.db-wal")
    }

    /// The folder of the instances' lock files.
    pub fn instances(&self) -> PathBuf {
        self.root.join("instances")
    }

    /// The lock file of the instance `instance`.
    pub fn instance_lock(&self, instance: &str) -> PathBuf {
        self.instances().join(format!("{instance}.lock"))
    }

    /// The folder of every execution's log folder.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// An execution's log folder.
    pub fn log(&self, id: &Uuid) -> PathBuf {
        self.logs().join(id.to_string())
    }

    /// The Slurm spool: job folders of workflows that name no `spool_dir` of their own.
    pub fn slurm_spool(&self) -> PathBuf {
        self.root.join("slurm")
    }

    /// An execution's Slurm job folder in the spool.
    pub fn job_folder(&self, id: &Uuid) -> PathBuf {
        self.slurm_spool().join(id.to_string())
    }

    /// Deletes what the directory keeps of an execution: its log folder, and what is left of its job folder (one
    /// normally goes when its job ends; a server killed while the job ran leaves it) if it is ours — never
    /// through a symlink, never someone else's.
    pub fn remove_execution(&self, id: &Uuid) {
        let _ = remove_all(&self.log(id));
        let job = self.job_folder(id);
        // SAFETY: geteuid cannot fail.
        let me = unsafe { libc::geteuid() };
        if std::fs::symlink_metadata(&job).is_ok_and(|m| m.is_dir() && m.uid() == me)
            && let Err(e) = remove_all(&job)
        {
            tracing::warn!(folder = %job.display(), error = %e, "cannot remove a Slurm job folder");
        }
    }
}

/// Removes a folder and what it holds. Another server on the directory may be deleting it too: what one finds
/// gone, the other deleted; a second pass finishes what a race left.
fn remove_all(dir: &Path) -> std::io::Result<()> {
    let mut result = Ok(());
    for _ in 0..3 {
        result = match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        };
        if result.is_ok() {
            break;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_an_execution_takes_its_log_and_job_folders_and_nothing_not_ours() {
        let root = std::env::temp_dir().join(format!("wfmcp-state-dir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let state = StateDir::new(&root);
        let (id, linked, foreign) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        for dir in [state.log(&id), state.job_folder(&id), state.job_folder(&foreign)] {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("stdout"), "x").unwrap();
        }
        let elsewhere = root.join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("keep"), "x").unwrap();
        std::os::unix::fs::symlink(&elsewhere, state.job_folder(&linked)).unwrap();
        // Someone else's folder (when this runs as root; otherwise chown fails and the folder is ours).
        let chowned = std::os::unix::fs::chown(state.job_folder(&foreign), Some(65534), Some(65534)).is_ok();

        for each in [id, linked, foreign] {
            state.remove_execution(&each);
        }
        assert!(!state.log(&id).exists() && !state.job_folder(&id).exists());
        assert!(elsewhere.join("keep").exists(), "a symlinked job folder's target stays");
        assert_eq!(
            state.job_folder(&foreign).exists(),
            chowned,
            "someone else's job folder stays"
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
