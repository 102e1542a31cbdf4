//! Process-level operations the engine needs and std does not offer: signalling a process group, telling
//! whether a group still has members, naming signals, becoming a child subreaper, and reaping orphans that were
//! re-parented to us.

use std::collections::HashSet;
use std::io;
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Sends `sig` to every process of group `pgid`. A group that no longer exists is not an error.
pub fn signal_group(pgid: u32, sig: i32) -> io::Result<()> {
    send(pgid, sig, true)
}

/// Sends `sig` to one process. A process that no longer exists is not an error.
pub fn signal_process(pid: u32, sig: i32) -> io::Result<()> {
    send(pid, sig, false)
}

fn send(id: u32, sig: i32, group: bool) -> io::Result<()> {
    let id = i32::try_from(id).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    if id <= 1 {
        // Never 0 (our own group), 1 (init) or -1 (every process we may signal).
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: kill(2) has no memory-safety preconditions.
    let rc = unsafe { libc::kill(if group { -id } else { id }, sig) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        Ok(())
    } else {
        Err(err)
    }
}

/// Whether any process (zombies included) is still in group `pgid`.
pub fn group_exists(pgid: u32) -> bool {
    let Ok(pgid) = i32::try_from(pgid) else {
        return false;
    };
    // SAFETY: signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(-pgid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// "SIGKILL" for 9, "signal 64" for one without a name.
pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGCONT => "SIGCONT",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGTSTP => "SIGTSTP",
        libc::SIGTTIN => "SIGTTIN",
        libc::SIGTTOU => "SIGTTOU",
        libc::SIGURG => "SIGURG",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGVTALRM => "SIGVTALRM",
        libc::SIGPROF => "SIGPROF",
        libc::SIGWINCH => "SIGWINCH",
        libc::SIGIO => "SIGIO",
        libc::SIGSYS => "SIGSYS",
        _ => return format!("signal {sig}"),
    };
    name.to_owned()
}

/// The pids the engine spawned and still waits for itself. The orphan reaper never touches them, and spawning
/// holds the lock so a child cannot exit and be reaped before it is registered.
pub fn own_children() -> MutexGuard<'static, HashSet<u32>> {
    static CHILDREN: OnceLock<Mutex<HashSet<u32>>> = OnceLock::new();
    CHILDREN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

static SUBREAPER: OnceLock<bool> = OnceLock::new();

/// Makes this process the reaper of its orphaned descendants (Linux), so a workflow's grandchildren stay
/// findable after their parent exits and their zombies are reaped here even where PID 1 does not reap.
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

/// Reaps zombies re-parented to us that the engine did not spawn itself (only when we are a subreaper).
pub fn reap_orphans() {
    if SUBREAPER.get() != Some(&true) {
        return;
    }
    let own = own_children();
    let me = std::process::id();
    for (pid, ppid, state) in list_processes() {
        if ppid == me && state == 'Z' && !own.contains(&pid) {
            let mut status = 0;
            // SAFETY: waitpid on a specific zombie child of ours; WNOHANG never blocks.
            unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) };
        }
    }
}

/// Every process as (pid, ppid, state), read from /proc.
pub fn list_processes() -> Vec<(u32, u32, char)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may hold spaces and parentheses; the fields after the last ')' are fixed.
        let rest = &stat[stat.rfind(')')? + 2..];
        let mut fields = rest.split(' ');
        let state = fields.next()?.chars().next()?;
        let ppid = fields.next()?.parse().ok()?;
        Some((pid, ppid, state))
    })
    .collect()
}

/// Whether `pid` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 2..].chars().next())
            .is_some_and(|s| s != 'Z' && s != 'X'),
        Err(_) => false,
    }
}
