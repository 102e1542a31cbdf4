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

/// Reaps zombies re-parented to us that the engine did not spawn itself (only when we are a subreaper).
pub fn reap_orphans() {
    reap_orphan_zombies(&processes(), &own_children());
}

/// Reaps the zombies among `procs` that are our children but not ones the engine waits for itself.
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

/// One process, as /proc/PID/stat describes it.
#[derive(Clone, Copy, Debug)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    pub pgid: u32,
    pub zombie: bool,
}

/// Every process, read from /proc.
pub fn processes() -> Vec<ProcInfo> {
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
        let pgid = fields.next()?.parse().ok()?;
        Some(ProcInfo {
            pid,
            ppid,
            pgid,
            zombie: state == 'Z' || state == 'X',
        })
    })
    .collect()
}

/// The environment variable that marks every process of an execution (descendants inherit it), so the ones
/// that leave the process group can still be found.
pub const EXECUTION_MARKER: &str = "WORKFLOW_MCP_EXECUTION_ID";

fn carries_marker(pid: u32, marker: &str) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let wanted = format!("{EXECUTION_MARKER}={marker}");
    environ.split(|b| *b == 0).any(|entry| entry == wanted.as_bytes())
}

/// Every live process of an execution: its process group, the descendants of its leader, and processes
/// re-parented to us (we are a subreaper) that carry its marker, with their descendants. Escaped descendants
/// (`setsid`, double forks) are found this way whether or not their parents still live. The same pass over
/// /proc reaps orphaned zombies.
pub fn execution_members(leader: u32, marker: &str) -> Vec<u32> {
    let procs = processes();
    let me = std::process::id();
    let own = own_children();
    reap_orphan_zombies(&procs, &own);
    let mut children: std::collections::HashMap<u32, Vec<u32>> = std::collections::HashMap::new();
    for p in &procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut roots: Vec<u32> = procs
        .iter()
        .filter(|p| {
            p.pid == leader
                || p.pgid == leader
                || (p.ppid == me && !own.contains(&p.pid) && !p.zombie && carries_marker(p.pid, marker))
        })
        .map(|p| p.pid)
        .collect();
    drop(own);
    let mut members = HashSet::new();
    while let Some(pid) = roots.pop() {
        if pid == me || !members.insert(pid) {
            continue;
        }
        roots.extend(children.get(&pid).into_iter().flatten());
    }
    let zombies: HashSet<u32> = procs.iter().filter(|p| p.zombie).map(|p| p.pid).collect();
    members.retain(|pid| !zombies.contains(pid));
    members.into_iter().collect()
}

/// Sends `sig` to an execution's process group and to every member found outside it; returns the members
/// found.
pub fn signal_execution(leader: u32, marker: &str, sig: i32) -> Vec<u32> {
    let _ = signal_group(leader, sig);
    let members = execution_members(leader, marker);
    for pid in &members {
        let _ = signal_process(*pid, sig);
    }
    members
}

/// Every process (other than this one) whose environment carries one of these execution markers.
pub fn marked_processes(markers: &[String]) -> Vec<u32> {
    let me = std::process::id();
    processes()
        .into_iter()
        .filter(|p| p.pid != me && !p.zombie && markers.iter().any(|m| carries_marker(p.pid, m)))
        .map(|p| p.pid)
        .collect()
}

/// Processes (other than this one) holding any of these pipes open, found through /proc/*/fd.
pub fn pipe_holders(inodes: &[u64]) -> Vec<u32> {
    let me = std::process::id();
    let wanted: Vec<String> = inodes.iter().map(|i| format!("pipe:[{i}]")).collect();
    processes()
        .into_iter()
        .filter(|p| p.pid != me && !p.zombie)
        .filter(|p| {
            std::fs::read_dir(format!("/proc/{}/fd", p.pid)).is_ok_and(|fds| {
                fds.flatten().any(|fd| {
                    std::fs::read_link(fd.path())
                        .is_ok_and(|target| wanted.iter().any(|w| target.as_os_str() == w.as_str()))
                })
            })
        })
        .map(|p| p.pid)
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
