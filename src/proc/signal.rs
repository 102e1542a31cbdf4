//! Signals: to one process or a whole group (never to 0, 1 or -1), whether a group still has members, and
//! their names.

use std::io;

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
    signalled(rc.into())
}

/// The result of a signalling call: a process already gone (ESRCH) is not an error.
fn signalled(rc: libc::c_long) -> io::Result<()> {
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

/// A process held by a pidfd: a signal through it reaches the process it was opened on, never another that got
/// its pid since.
#[derive(Debug)]
pub struct PidFd(std::os::fd::OwnedFd);

impl PidFd {
    /// Opens a pidfd on `pid` (an error when no such process exists).
    pub fn open(pid: u32) -> io::Result<PidFd> {
        let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: pidfd_open(2) returns a new descriptor we own, or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the descriptor was just opened and is owned by nothing else.
        Ok(PidFd(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as i32) }))
    }

    /// Sends `sig`; a process that has exited meanwhile is not an error.
    pub fn signal(&self, sig: i32) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: pidfd_send_signal(2) on a pidfd we own, with no siginfo.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        signalled(rc)
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

/// The number of a signal named as [`signal_name`] names it ("SIGKILL" → 9).
pub fn signal_number(name: &str) -> Option<i32> {
    (1..65).find(|&n| signal_name(n) == name)
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    #[test]
    fn a_pidfd_signals_its_process_and_a_gone_one_is_not_an_error() {
        let mut child = std::process::Command::new("sleep").arg("1000").spawn().unwrap();
        let pidfd = PidFd::open(child.id()).unwrap();
        pidfd.signal(libc::SIGKILL).unwrap();
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
        // Reaped: its pid may belong to another process one day, the pidfd never does.
        pidfd.signal(libc::SIGKILL).unwrap();
    }
}
