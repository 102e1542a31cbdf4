//! The local runtime: each execution is a process group on this machine, spawned with `posix_spawn` (argv
//! only, stdin at end-of-file, the given environment, its own group), with every process of its tree found
//! through `/proc` and its marker, and registered with the watchdog while it lives.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use super::{Ended, Exit, JobState, Launch, Runtime, RuntimeError, Started, Tree, Waiter};
use crate::proc::reaper::reap_orphans;
use crate::proc::scan::{pipe_holders, process, process_alive, signal_tree, tree_gone};
use crate::proc::signal::{group_exists, signal_process};
use crate::proc::spawn::{describe_spawn_error, own_children, resolve_program, spawn_registered};
use crate::proc::watchdog::Watchdog;

/// The placement kind (the config's `"type": "local"`, the default) this runtime runs.
pub const KIND: &str = "local";

/// Runs executions as local process groups.
#[derive(Default)]
pub struct LocalRuntime {
    watchdog: Option<Arc<Watchdog>>,
}

impl LocalRuntime {
    /// `watchdog`, when given, kills every running tree if this process dies.
    pub fn new(watchdog: Option<Watchdog>) -> Self {
        LocalRuntime {
            watchdog: watchdog.map(Arc::new),
        }
    }
}

impl Runtime for LocalRuntime {
    fn start(&self, launch: &Launch) -> Result<Started, RuntimeError> {
        if !launch.cwd.is_dir() {
            return Err(RuntimeError::CannotStart(format!(
                "working directory {} does not exist or is not a folder; fix \"cwd\" in the config",
                launch.cwd.display()
            )));
        }
        let program = resolve_program(&launch.argv[0], launch.env.path(), &launch.cwd)
            .map_err(|e| RuntimeError::CannotStart(e.to_string()))?;
        // No pre_exec hook: std then uses posix_spawn (vfork-like), which does not copy our page tables.
        let mut cmd = Command::new(&program);
        cmd.arg0(&launch.argv[0])
            .args(&launch.argv[1..])
            .env_clear()
            .envs(launch.env.vars().iter().map(|(k, v)| (k, v)))
            .current_dir(&launch.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child =
            spawn_registered(&mut cmd).map_err(|e| RuntimeError::CannotStart(describe_spawn_error(&e, &program)))?;
        let pid = child.id();
        // Read while the leader cannot have been reaped (we hold it unwaited): it tells its tree from older processes.
        let leader_start = process(pid).map(|p| p.start_time);
        if let Some(w) = &self.watchdog {
            w.watch(pid, &launch.marker);
        }
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            unreachable!("both streams were asked for as pipes");
        };
        let (stdout, stderr) = (File::from(OwnedFd::from(stdout)), File::from(OwnedFd::from(stderr)));
        let pipe_inodes = [&stdout, &stderr]
            .iter()
            .filter_map(|p| p.metadata().ok().map(|m| m.ino()))
            .collect();
        Ok(Started {
            pid: Some(pid),
            job: None,
            pending: false,
            stdout,
            stderr,
            tree: Arc::new(LocalTree {
                pgid: pid,
                leader_start,
                marker: launch.marker.clone(),
                pipe_inodes,
                watchdog: self.watchdog.clone(),
            }),
            waiter: Box::new(LocalWaiter { child }),
        })
    }

    // A missing folder is the config's own warning; here: the program, found as a start would find it.
    fn check(&self, launch: &Launch) -> Vec<String> {
        if !launch.cwd.is_dir() {
            return Vec::new();
        }
        match resolve_program(&launch.argv[0], launch.env.path(), &launch.cwd) {
            Ok(_) => Vec::new(),
            Err(e) => vec![e.to_string()],
        }
    }

    fn finish(&self) {
        if let Some(w) = &self.watchdog {
            w.finish();
        }
    }
}

/// A process group, its escaped descendants (found by marker) and the pipes it writes to.
struct LocalTree {
    pgid: u32,
    /// The leader's start time (clock ticks after boot), when it could be read.
    leader_start: Option<u64>,
    marker: String,
    pipe_inodes: Vec<u64>,
    watchdog: Option<Arc<Watchdog>>,
}

impl Tree for LocalTree {
    // The engine sends KILL once the grace is over.
    fn stop(&self, _grace: Duration) {
        signal_tree(self.pgid, &self.marker, libc::SIGTERM);
    }

    fn kill(&self) {
        signal_tree(self.pgid, &self.marker, libc::SIGKILL);
    }

    fn gone(&self) -> bool {
        // A zombie re-parented to us keeps the group alive until it is reaped.
        reap_orphans();
        tree_gone(self.pgid, &self.marker)
    }

    fn kill_leftovers(&self) -> bool {
        let found = signal_tree(self.pgid, &self.marker, libc::SIGKILL);
        !found.is_empty() || group_exists(self.pgid)
    }

    fn release_outputs(&self) {
        let holders = pipe_holders(&self.pipe_inodes, self.pgid, self.leader_start, &self.marker);
        for p in &holders.others {
            tracing::warn!(
                pid = p.pid,
                "a process that is not the workflow's (it started before it) holds its output open; it is left alone"
            );
        }
        let mut killed = Vec::new();
        for p in &holders.tree {
            // Still the process the scan found (its pid not reused since).
            if process(p.pid).is_some_and(|now| now.start_time == p.start_time) {
                tracing::warn!(
                    pid = p.pid,
                    "killing a process of the workflow that holds its output open"
                );
                let _ = signal_process(p.pid, libc::SIGKILL);
                killed.push(p.pid);
            }
        }
        // A signal is delivered asynchronously: wait (briefly) until they are gone, as the caller expects.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while killed.iter().any(|&p| process_alive(p)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn forget(&self) {
        if let Some(w) = &self.watchdog {
            w.unwatch(self.pgid);
        }
    }
}

struct LocalWaiter {
    child: Child,
}

impl Waiter for LocalWaiter {
    fn wait(mut self: Box<Self>, _: &mut dyn FnMut(JobState)) -> Ended {
        let status = loop {
            match self.child.wait() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        own_children().remove(&self.child.id());
        match status {
            Ok(status) => Ended::Exited(Exit {
                code: status.code(),
                signal: status.signal(),
            }),
            Err(e) => Ended::Lost(format!(
                "waiting for the process failed: {e}; its exit status is unknown"
            )),
        }
    }
}
