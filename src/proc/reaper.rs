//! Orphans: becoming a child subreaper, and reaping orphaned zombies re-parented to us (never the children in
//! the spawn registry, which their spawners wait for). Reaping happens only when its owner calls
//! [`reap_orphans`]; the `/proc` queries never reap.

use std::collections::HashSet;
use std::sync::OnceLock;

use super::scan::{ProcInfo, processes};
use super::spawn::own_children;

static SUBREAPER: OnceLock<bool> = OnceLock::new();

/// Makes this process the reaper of its orphaned descendants (Linux), so a workflow's grandchildren stay
/// findable after their parent exits and their zombies are reaped here even where PID 1 does not reap.
/// Idempotent; returns whether this process is a subreaper.
pub fn become_subreaper() -> bool {
    *SUBREAPER.get_or_init(|| {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer argument only.
            unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 }
        }
        #[cfg(not(target_os = "linux"))]
        {
            false
        }
    })
}

/// Whether [`become_subreaper`] made this process a subreaper.
pub fn is_subreaper() -> bool {
    SUBREAPER.get() == Some(&true)
}

/// Reaps zombies re-parented to us that were not spawned through this module (only when we are a subreaper).
pub fn reap_orphans() {
    reap_orphan_zombies(&processes(), &own_children());
}

/// Reaps the zombies among `procs` that are our children but not ones their spawner waits for itself.
fn reap_orphan_zombies(procs: &[ProcInfo], own: &HashSet<u32>) {
    if !is_subreaper() {
        return;
    }
    let me = std::process::id();
    for p in procs
        .iter()
        .filter(|p| p.ppid == me && p.zombie && !own.contains(&p.pid))
    {
        let mut status = 0;
        // SAFETY: waitpid on a specific zombie child of ours; WNOHANG never blocks.
        unsafe { libc::waitpid(p.pid as i32, &mut status, libc::WNOHANG) };
    }
}
