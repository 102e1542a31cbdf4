//! Slurm's commands (`sbatch`, `scontrol`, `scancel`, `sinfo`), run here or on a login host over `ssh`, with a
//! bounded time and output; the job script handed to `sbatch` on its stdin.

use std::fs::File;
use std::io::{self, Seek, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::proc::spawn::{CaptureError, Captured, helper_command, resolve_program, run_captured};
use crate::runtime::RuntimeError;
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

    pub(super) fn resolve(&self, program: &str) -> Result<PathBuf, CommandError> {
        let program = if self.login_host.is_some() { "ssh" } else { program };
        let env = Self::env();
        let path = env.iter().find(|(k, _)| k == "PATH").map_or("", |(_, v)| v.as_str());
        resolve_program(program, path, Path::new("/")).map_err(|_| match &self.login_host {
            Some(_) => CommandError::NoSsh,
            None => CommandError::NotFound {
                program: program.to_owned(),
                path: path.to_owned(),
            },
        })
    }

    /// Runs a Slurm command with these arguments; a failure says which kind (its stderr when it ran and failed).
    pub(super) fn run(&self, program: &str, args: &[&str]) -> Result<Captured, CommandError> {
        self.run_with_input(program, args, None)
    }

    /// As [`Commands::run`], with `input` as the command's stdin.
    pub(super) fn run_with_input(
        &self,
        program: &str,
        args: &[&str],
        input: Option<File>,
    ) -> Result<Captured, CommandError> {
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
        let program = program.to_owned();
        let out = run_captured(&mut cmd, COMMAND_TIMEOUT, 1 << 20, 64 << 10).map_err(|e| match e {
            CaptureError::Spawn(error) => CommandError::Spawn {
                program: program.clone(),
                error,
            },
            CaptureError::Timeout(_) => CommandError::Timeout {
                program: program.clone(),
                secs: COMMAND_TIMEOUT.as_secs(),
            },
        })?;
        if out.status.success() {
            return Ok(out);
        }
        Err(failure(program, &out.stderr, out.status))
    }
}

/// What a Slurm command that ran and failed said, classified here, once: callers match the kind, never the words.
fn failure(program: String, stderr: &[u8], status: std::process::ExitStatus) -> CommandError {
    let stderr = String::from_utf8_lossy(stderr).trim().to_owned();
    if stderr.contains("Invalid job id") {
        return CommandError::InvalidJobId { program, stderr };
    }
    let stderr = if stderr.is_empty() {
        format!("it ended with {status}")
    } else {
        stderr
    };
    CommandError::Failed { program, stderr }
}

/// Why a Slurm command gave no answer to use.
#[derive(Debug, thiserror::Error)]
pub(super) enum CommandError {
    #[error("ssh was not found in PATH; it is needed to reach \"login_host\"")]
    NoSsh,
    #[error(
        "{program} was not found in PATH ({path}): install Slurm's client commands here, or set \"login_host\" to \
         run them on a login node"
    )]
    NotFound { program: String, path: String },
    // The OS error is part of the sentence people read, so it is not also a source.
    #[error("cannot run {program}: {error}")]
    Spawn { program: String, error: io::Error },
    #[error("{program} did not answer within {secs} s (is the Slurm controller reachable?)")]
    Timeout { program: String, secs: u64 },
    /// It ran and said the job id is unknown to it (a job Slurm has forgotten, or never had).
    #[error("{program} failed: {stderr}")]
    InvalidJobId { program: String, stderr: String },
    /// It ran and failed otherwise.
    #[error("{program} failed: {stderr}")]
    Failed { program: String, stderr: String },
}

impl CommandError {
    /// Slurm could not be asked (rather than asked and answering no).
    pub(super) fn unreachable(&self) -> bool {
        matches!(
            self,
            CommandError::NoSsh
                | CommandError::NotFound { .. }
                | CommandError::Spawn { .. }
                | CommandError::Timeout { .. }
        )
    }
}

impl From<CommandError> for RuntimeError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::InvalidJobId { .. } => RuntimeError::JobUnknown(e.to_string()),
            e if e.unreachable() => RuntimeError::Unreachable(e.to_string()),
            e => RuntimeError::Refused(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forgotten_job_is_told_by_its_kind_with_slurms_words() {
        use std::os::unix::process::ExitStatusExt;
        let failed = std::process::ExitStatus::from_raw(1 << 8);
        let e = failure(
            "scontrol".into(),
            b"slurm_load_jobs error: Invalid job id specified\n",
            failed,
        );
        assert!(matches!(e, CommandError::InvalidJobId { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "scontrol failed: slurm_load_jobs error: Invalid job id specified"
        );
        assert!(matches!(RuntimeError::from(e), RuntimeError::JobUnknown(_)));
        let e = failure(
            "sbatch".into(),
            b"sbatch: error: invalid partition specified: nope",
            failed,
        );
        assert_eq!(
            e.to_string(),
            "sbatch failed: sbatch: error: invalid partition specified: nope"
        );
        assert!(matches!(RuntimeError::from(e), RuntimeError::Refused(_)));
        let e = failure("scancel".into(), b"", failed);
        assert_eq!(e.to_string(), "scancel failed: it ended with exit status: 1");
        let e = CommandError::Timeout {
            program: "sbatch".into(),
            secs: 30,
        };
        assert!(matches!(RuntimeError::from(e), RuntimeError::Unreachable(_)));
    }

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
