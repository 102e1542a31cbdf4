//! The watchdog: a small process forked at startup that kills every workflow process group still registered
//! when the server dies, however it dies (SIGKILL included). It reads `+PGID` / `-PGID` lines from a pipe whose
//! only write end the server holds; end-of-file on that pipe means the server is gone.
//!
//! This covers what a parent-death signal cannot: a parent-death signal reaches only the direct child, while the
//! watchdog kills the whole group (grandchildren included). It also lets children be started with `posix_spawn`
//! (no `pre_exec` hook), which does not copy the server's page tables the way `fork` does.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Mutex;

/// The server's end of the watchdog pipe.
#[derive(Debug)]
pub struct Watchdog {
    pipe: Mutex<Option<File>>,
    pid: libc::pid_t,
}

impl Watchdog {
    /// Forks the watchdog process.
    ///
    /// # Safety
    /// Must be called while the process has a single thread (before any runtime or thread is started): the
    /// forked child goes on running Rust code.
    pub unsafe fn start() -> io::Result<Watchdog> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two fds; O_CLOEXEC keeps them out of every workflow.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both fds were just created and are owned here.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: the caller guarantees a single-threaded process, so the child may run arbitrary code.
        match unsafe { libc::fork() } {
            -1 => Err(io::Error::last_os_error()),
            0 => {
                drop(write);
                watch(File::from(read));
            }
            pid => {
                drop(read);
                Ok(Watchdog {
                    pipe: Mutex::new(Some(File::from(write))),
                    pid,
                })
            }
        }
    }

    fn send(&self, line: String) {
        let mut pipe = self.pipe.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = pipe.as_mut()
            && let Err(e) = p.write_all(line.as_bytes())
        {
            tracing::warn!(error = %e, "the watchdog is gone; workflows may outlive a crash of the server");
        }
    }

    /// Ends the watchdog on a clean exit (every group was already stopped) and reaps it, so it is not left
    /// behind as a zombie.
    pub fn finish(&self) {
        let pipe = self.pipe.lock().unwrap_or_else(|e| e.into_inner()).take();
        if pipe.is_some() {
            drop(pipe);
            let mut status = 0;
            // SAFETY: waiting for our own child, which exits as soon as it sees the pipe close.
            unsafe { libc::waitpid(self.pid, &mut status, 0) };
        }
    }

    /// Registers an execution to kill if the server dies: its process group, and every process carrying its
    /// marker (see [`super::process::EXECUTION_MARKER`]).
    pub fn watch(&self, pgid: u32, marker: &str) {
        self.send(format!("+{pgid} {marker}\n"));
    }

    /// Forgets a process group (once it is gone, before its id can be reused).
    pub fn unwatch(&self, pgid: u32) {
        self.send(format!("-{pgid}\n"));
    }
}

/// The watchdog process: detaches from the server's stdio and process group, then waits for the pipe to close.
fn watch(pipe: File) -> ! {
    // SAFETY: plain syscalls in a single-threaded child.
    unsafe {
        // Its own session: signals sent to the server's group or terminal do not reach it.
        libc::setsid();
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE] {
            libc::signal(sig, libc::SIG_IGN);
        }
        // Holding the server's stdin/stdout/stderr would keep the client from seeing them close.
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            if null > 2 {
                libc::close(null);
            }
        }
    }
    let mut executions: HashMap<i32, String> = HashMap::new();
    for line in BufReader::new(pipe).lines() {
        let Ok(line) = line else { break };
        let (op, rest) = line.split_at(1.min(line.len()));
        let mut words = rest.split(' ');
        let Some(Ok(pgid)) = words.next().map(str::parse::<i32>) else {
            continue;
        };
        match op {
            "+" => {
                executions.insert(pgid, words.next().unwrap_or_default().to_owned());
            }
            "-" => {
                executions.remove(&pgid);
            }
            _ => {}
        }
    }
    // The server is gone: nothing it started may live on, in its group or escaped from it.
    let groups: Vec<u32> = executions.keys().filter(|g| **g > 1).map(|g| *g as u32).collect();
    let markers: Vec<String> = executions.into_values().filter(|m| !m.is_empty()).collect();
    let members = |groups: &[u32]| -> Vec<u32> {
        let mut pids = super::process::marked_processes(&markers);
        let procs = super::process::processes();
        pids.extend(
            procs
                .iter()
                .filter(|p| !p.zombie && groups.contains(&p.pgid))
                .map(|p| p.pid),
        );
        pids
    };
    for g in &groups {
        let _ = super::process::signal_group(*g, libc::SIGKILL);
    }
    // A signal is delivered asynchronously: exit only once they are gone (or after 2 s), so the watchdog's own
    // exit means "nothing is left".
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let left = members(&groups);
        if left.is_empty() || std::time::Instant::now() >= deadline {
            break;
        }
        for pid in left {
            let _ = super::process::signal_process(pid, libc::SIGKILL);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // SAFETY: leaving the forked child without running the parent's destructors or atexit handlers.
    unsafe { libc::_exit(0) }
}
