//! The watchdog: a small process started at startup that kills every registered process tree when this
//! process dies, however it dies (SIGKILL included). It is this same binary, run again with a hidden
//! subcommand (see [`WATCHDOG_ARG`]) — a fresh exec, so nothing about the parent's threads or startup order can
//! break it. It reads `+PGID MARKER` / `-PGID` lines on its stdin, a pipe whose only write end the parent holds;
//! end-of-file means the parent is gone.
//!
//! This covers what a parent-death signal cannot: that reaches only the direct child, while the watchdog kills
//! the whole group and every process carrying a registered marker. It also lets children be started with
//! `posix_spawn` (no `pre_exec` hook), which does not copy the parent's page tables the way `fork` does.

use std::collections::HashMap;
use std::io::{self, BufRead, PipeWriter, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

/// The argument that makes the binary run as the watchdog ([`run`]).
pub const WATCHDOG_ARG: &str = "__watchdog";

/// The parent's end of the watchdog pipe.
#[derive(Debug)]
pub struct Watchdog {
    pipe: Mutex<Option<PipeWriter>>,
    child: Mutex<Child>,
}

impl Watchdog {
    /// Starts `program WATCHDOG_ARG` (this binary: `/proc/self/exe`) as the watchdog, in its own process
    /// group, its stdin the read end of the pipe.
    pub fn start(program: &Path) -> io::Result<Watchdog> {
        // std creates the pipe close-on-exec, which keeps it out of every other child (the read end becomes the
        // watchdog's stdin, which dup2 makes inheritable for it alone).
        let (read, write) = io::pipe()?;
        use std::os::unix::process::CommandExt;
        let child = Command::new(program)
            .arg(WATCHDOG_ARG)
            .env_clear()
            .stdin(Stdio::from(read))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        Ok(Watchdog {
            pipe: Mutex::new(Some(write)),
            child: Mutex::new(child),
        })
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
            // It exits as soon as it sees the pipe close.
            let _ = self.child.lock().unwrap_or_else(|e| e.into_inner()).wait();
        }
    }

    /// Registers an execution to kill if the server dies: its process group, and every process carrying its
    /// marker (see [`super::TREE_MARKER`]).
    pub fn watch(&self, pgid: u32, marker: &str) {
        self.send(format!("+{pgid} {marker}\n"));
    }

    /// Forgets a process group (once it is gone, before its id can be reused).
    pub fn unwatch(&self, pgid: u32) {
        self.send(format!("-{pgid}\n"));
    }
}

/// The watchdog process (`BINARY __watchdog`): leaves the parent's session, then reads registrations on stdin
/// until the parent is gone, and kills what is still registered.
pub fn run() -> ! {
    // SAFETY: plain syscalls at the start of a fresh process.
    unsafe {
        // Its own session: signals sent to the parent's group or terminal do not reach it.
        libc::setsid();
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE] {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
    let pipe = std::io::stdin().lock();
    let mut executions: HashMap<i32, String> = HashMap::new();
    for line in pipe.lines() {
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
        let mut pids = super::scan::marked_processes(&markers);
        let procs = super::scan::processes();
        pids.extend(
            procs
                .iter()
                .filter(|p| !p.zombie && groups.contains(&p.pgid))
                .map(|p| p.pid),
        );
        pids
    };
    for g in &groups {
        let _ = super::signal::signal_group(*g, libc::SIGKILL);
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
            let _ = super::signal::signal_process(pid, libc::SIGKILL);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::process::exit(0)
}
