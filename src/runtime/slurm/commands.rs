//! Slurm's commands (`sbatch`, `scontrol`, `scancel`, `sinfo`), run here or on a login host over `ssh`, with a
//! bounded time and output; the job script handed to `sbatch` on its stdin.

use std::fs::File;
use std::io::{self, Seek, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::proc::spawn::{CaptureError, Captured, helper_command, resolve_program, run_captured};
use crate::runtime::placement::SlurmOptions;

/// How long one Slurm command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The job script in an anonymous in-memory file, for `sbatch` to read on its stdin.
pub(super) fn script_file(script: &str) -> io::Result<File> {
    // SAFETY: memfd_create with a NUL-terminated name; the fd is owned by the File.
    let fd = unsafe { libc::memfd_create(c"workflow-mcp-job".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd was just created and is owned here.
    let mut file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.write_all(script.as_bytes())?;
    file.seek(io::SeekFrom::Start(0))?;
    Ok(file)
}

/// Quotes a string for a POSIX shell: as one word, exactly.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Slurm's commands, run here or on the login host.
#[derive(Clone, Debug)]
pub(super) struct Commands {
    pub(super) login_host: Option<String>,
}

impl Commands {
    pub(super) fn new(options: &SlurmOptions) -> Self {
        Commands {
            login_host: options.login_host.clone(),
        }
    }

    /// The environment Slurm's commands run with: this process's PATH and identity, and Slurm's own settings.
    fn env() -> Vec<(String, String)> {
        let keep = ["PATH", "HOME", "USER", "LOGNAME", "LANG", "SLURM_CONF", "MUNGE_SOCKET"];
        let mut env: Vec<(String, String)> = std::env::vars().filter(|(k, _)| keep.contains(&k.as_str())).collect();
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.push(("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()));
        }
        env
    }

    pub(super) fn resolve(&self, program: &str) -> Result<PathBuf, String> {
        let program = if self.login_host.is_some() { "ssh" } else { program };
        let env = Self::env();
        let path = env.iter().find(|(k, _)| k == "PATH").map_or("", |(_, v)| v.as_str());
        resolve_program(program, path, Path::new("/")).map_err(|_| match &self.login_host {
            Some(_) => "ssh was not found in PATH; it is needed to reach \"login_host\"".to_owned(),
            None => format!(
                "{program} was not found in PATH ({path}): install Slurm's client commands here, or set \
                 \"login_host\" to run them on a login node"
            ),
        })
    }

    /// Runs a Slurm command with these arguments; an error is a sentence (its stderr when it ran and failed).
    pub(super) fn run(&self, program: &str, args: &[&str]) -> Result<Captured, String> {
        self.run_with_input(program, args, None)
    }

    /// As [`Commands::run`], with `input` as the command's stdin.
    pub(super) fn run_with_input(&self, program: &str, args: &[&str], input: Option<File>) -> Result<Captured, String> {
        let exe = self.resolve(program)?;
        let argv: Vec<String> = match &self.login_host {
            None => args.iter().map(|a| a.to_string()).collect(),
            Some(host) => {
                let remote: Vec<String> = std::iter::once(program)
                    .chain(args.iter().copied())
                    .map(sh_quote)
                    .collect();
                vec!["-o".into(), "BatchMode=yes".into(), host.clone(), remote.join(" ")]
            }
        };
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let mut cmd = helper_command(&exe, &argv, Path::new("/"), &Self::env());
        if let Some(input) = input {
            cmd.stdin(input);
        }
        let out = run_captured(&mut cmd, COMMAND_TIMEOUT, 1 << 20, 64 << 10).map_err(|e| match e {
            CaptureError::Spawn(e) => format!("cannot run {program}: {e}"),
            CaptureError::Timeout(_) => format!(
                "{program} did not answer within {} s (is the Slurm controller reachable?)",
                COMMAND_TIMEOUT.as_secs()
            ),
        })?;
        if out.status.success() {
            Ok(out)
        } else {
            let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            let err = if err.is_empty() {
                format!("it ended with {}", out.status)
            } else {
                err
            };
            Err(format!("{program} failed: {err}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_every_argument_exact() {
        for s in ["plain", "two words", "it's", "$(id) `id` $HOME", "a\nb,c", "'", ""] {
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("printf '%s' {}", sh_quote(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), s);
        }
    }
}
