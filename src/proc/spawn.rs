//! Starting processes: finding the program, the registry of children so the orphan reaper leaves them alone,
//! sentences for spawn errors, and running a short-lived helper command with a timeout and bounded output.

use std::collections::HashSet;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::signal::signal_group;

/// The pids spawned here that their spawner still waits for itself. The orphan reaper never touches them, and
/// spawning holds the lock so a child cannot exit and be reaped before it is registered.
pub fn own_children() -> MutexGuard<'static, HashSet<u32>> {
    static CHILDREN: OnceLock<Mutex<HashSet<u32>>> = OnceLock::new();
    CHILDREN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Spawns `cmd` and registers the child as one the engine waits for itself. The registry stays locked while
/// spawning, so the orphan reaper cannot reap a child that exits at once before it is registered.
pub fn spawn_registered(cmd: &mut Command) -> io::Result<Child> {
    let mut own = own_children();
    cmd.spawn().inspect(|child| {
        own.insert(child.id());
    })
}

/// Why a workflow's program cannot be run; each sentence says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The metadata error is part of the sentence (not a source: it is the whole reason, said once).
    #[error("program {} does not exist ({error})", .path.display())]
    Missing { path: std::path::PathBuf, error: io::Error },
    #[error("program {} is not a file", .0.display())]
    NotAFile(std::path::PathBuf),
    #[error("{} is not executable (permission denied); check its mode (chmod +x)", .0.display())]
    NotExecutable(std::path::PathBuf),
    #[error(
        "command \"{program}\" was not found in PATH ({path}); use an absolute path or add its folder to PATH \
         (\"env\" or \"inherit_env\" in the config)"
    )]
    NotInPath { program: String, path: String },
}

/// The program to run: a path containing `/` as it is (relative to `cwd`), a bare name looked up in the
/// workflow's own `PATH` (not the server's).
pub fn resolve_program(program: &str, path: &str, cwd: &std::path::Path) -> Result<std::path::PathBuf, ResolveError> {
    use std::os::unix::fs::PermissionsExt;
    let executable =
        |p: &std::path::Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if program.contains('/') {
        let p = cwd.join(program);
        return match std::fs::metadata(&p) {
            Err(error) => Err(ResolveError::Missing { path: p, error }),
            Ok(m) if !m.is_file() => Err(ResolveError::NotAFile(p)),
            Ok(_) if !executable(&p) => Err(ResolveError::NotExecutable(p)),
            Ok(_) => Ok(p),
        };
    }
    path.split(':')
        .map(|dir| {
            if dir.is_empty() {
                cwd.join(program)
            } else {
                std::path::Path::new(dir).join(program)
            }
        })
        .find(|p| executable(p))
        .ok_or_else(|| ResolveError::NotInPath {
            program: program.to_owned(),
            path: path.to_owned(),
        })
}

/// A sentence for a spawn error that says what to fix (the program itself was found: see [`resolve_program`]).
pub fn describe_spawn_error(e: &std::io::Error, program: &std::path::Path) -> String {
    let program = program.display();
    match e.raw_os_error() {
        Some(libc::ENOENT) => {
            format!("cannot run {program}: {e}; if it is a script, check the interpreter on its #! line")
        }
        Some(libc::EACCES) => format!("{program} is not executable (permission denied); check its mode (chmod +x)"),
        Some(libc::ENOEXEC) => format!("{program} is not a runnable executable (a script needs a #! line)"),
        Some(libc::EAGAIN | libc::EMFILE | libc::ENFILE | libc::ENOMEM) => {
            format!("the system refused a new process for {program}: {e}; try again when fewer executions run")
        }
        _ => format!("failed to start {program}: {e}"),
    }
}

/// What a helper command printed and how it ended.
#[derive(Debug)]
pub struct Captured {
    /// As observed: after an overflow the helper was killed, and this says so.
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    /// The output went past the cap (and was cut there).
    pub stdout_overflow: bool,
    pub stderr: Vec<u8>,
}

/// Why a helper command gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The OS error is the whole reason, said once in the sentence (not also a source a chain would repeat).
    #[error("cannot run it: {0}")]
    Spawn(io::Error),
    #[error("it did not answer within {} ms (killed)", .0.as_millis())]
    Timeout(Duration),
}

/// Runs `cmd` (already given its stdio pipes and process group) until it exits, reading at most `stdout_cap`
/// bytes of stdout and `stderr_cap` of stderr; after `timeout` its whole group is killed. Nothing it leaves
/// behind in its group survives.
pub fn run_captured(
    cmd: &mut Command,
    timeout: Duration,
    stdout_cap: usize,
    stderr_cap: usize,
) -> Result<Captured, CaptureError> {
    let mut child = spawn_registered(cmd).map_err(CaptureError::Spawn)?;
    let pid = child.id();
    let deadline = Instant::now() + timeout;
    let mut pipes = [
        child
            .stdout
            .take()
            .map(|p| (p.as_raw_fd(), Box::new(p) as Box<dyn Read>)),
        child
            .stderr
            .take()
            .map(|p| (p.as_raw_fd(), Box::new(p) as Box<dyn Read>)),
    ];
    let caps = [stdout_cap, stderr_cap];
    let mut out: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    let mut buf = vec![0u8; 64 * 1024];
    // Whatever happened, nothing of the helper's group survives, and its status is the one observed.
    let finish = |child: &mut Child, stdout_overflow: bool, out: [Vec<u8>; 2], timed_out: bool| {
        let _ = signal_group(pid, libc::SIGKILL);
        let status = loop {
            match child.wait() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        own_children().remove(&pid);
        let status = status.map_err(CaptureError::Spawn)?;
        if timed_out {
            return Err(CaptureError::Timeout(timeout));
        }
        let [stdout, stderr] = out;
        Ok(Captured {
            status,
            stdout,
            stdout_overflow,
            stderr,
        })
    };
    while pipes.iter().any(Option::is_some) {
        let now = Instant::now();
        if now >= deadline {
            return finish(&mut child, false, out, true);
        }
        let mut fds: Vec<libc::pollfd> = pipes
            .iter()
            .map(|p| libc::pollfd {
                fd: p.as_ref().map_or(-1, |(fd, _)| *fd),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let wait_ms = (deadline - now).as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `fds` is a valid array of pollfd for the duration of the call (negative fds are ignored).
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms.max(1)) };
        if rc < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break;
        }
        for (i, pfd) in fds.iter().enumerate() {
            if pfd.revents == 0 {
                continue;
            }
            let Some((_, pipe)) = pipes[i].as_mut() else { continue };
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => pipes[i] = None,
                Ok(n) => {
                    let room = caps[i].saturating_sub(out[i].len());
                    out[i].extend_from_slice(&buf[..n.min(room)]);
                    if n > room && i == 0 {
                        return finish(&mut child, true, out, false);
                    }
                }
            }
        }
    }
    // Both pipes are closed; the process should be exiting.
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return finish(&mut child, false, out, false),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => return finish(&mut child, false, out, true),
            Err(e) => {
                let _ = finish(&mut child, false, Default::default(), false);
                return Err(CaptureError::Spawn(e));
            }
        }
    }
}

/// Where a helper runs: its folder and environment (used by discovery).
pub fn helper_command(program: &Path, args: &[&str], cwd: &Path, env: &[(String, String)]) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(cwd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0);
    cmd
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    fn yes() -> Command {
        let env = [("PATH".to_owned(), "/usr/bin:/bin".to_owned())];
        helper_command(Path::new("/usr/bin/yes"), &[], Path::new("/"), &env)
    }

    /// Regression: the sentence said the OS error and named it as its source too, so a chain printer (the CLI's
    /// `{:#}`) said it twice.
    #[test]
    fn a_helper_that_cannot_run_says_the_os_error_once() {
        let mut cmd = helper_command(Path::new("/nonexistent/helper"), &[], Path::new("/"), &[]);
        let e = run_captured(&mut cmd, Duration::from_secs(5), 64, 64).unwrap_err();
        let mut chain = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            chain.push_str(&format!(": {s}"));
            source = s.source();
        }
        assert_eq!(chain.matches("No such file or directory").count(), 1, "{chain}");
    }

    #[test]
    fn an_overflowing_helper_is_killed_waited_for_and_reported_as_it_ended() {
        let captured = run_captured(&mut yes(), Duration::from_secs(30), 4096, 4096).unwrap();
        assert!(captured.stdout_overflow);
        assert_eq!(captured.stdout.len(), 4096);
        assert_eq!(
            captured.status.signal(),
            Some(libc::SIGKILL),
            "the status is the one observed (killed), not a made-up success: {:?}",
            captured.status
        );
    }

    #[test]
    fn a_helper_that_exits_reports_its_status_and_output() {
        let env = [("PATH".to_owned(), "/usr/bin:/bin".to_owned())];
        let mut cmd = helper_command(
            Path::new("/bin/sh"),
            &["-c", "echo out; echo err >&2; exit 3"],
            Path::new("/"),
            &env,
        );
        let c = run_captured(&mut cmd, Duration::from_secs(30), 4096, 4096).unwrap();
        assert_eq!(
            (c.status.code(), c.stdout.as_slice(), c.stderr.as_slice()),
            (Some(3), &b"out\n"[..], &b"err\n"[..])
        );
        assert!(!c.stdout_overflow);
    }
}
