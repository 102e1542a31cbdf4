//! The Slurm runtime: an execution is a batch job. A generated script sets exactly the workflow's environment,
//! checks its folder and program (Slurm falls back to /tmp silently when `--chdir` fails, and a missing program
//! is only an exit code), then `exec`s the exact argv — never a shell string. `sbatch --parsable` reads it on
//! its stdin (it is never a file anyone could swap); the job's output files, in a private job folder of a spool
//! the server and the compute nodes both see, are followed into pipes, so the engine drains them into the log
//! store exactly as a local process's pipes; `scontrol show job` says where it stands (PENDING and why, RUNNING
//! where) and how it ended (`ExitCode=E:S`); `scancel` stops it: TERM to the batch shell and its steps
//! (`--full`), then KILL (`--batch`), then plain `scancel` as the last resort. The same commands run on a login
//! host over `ssh` when the workflow names one. A job folder goes when its output is in the log store.

use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::placement::SlurmOptions;
use super::{Ended, Exit, JobState, Launch, RemoteJob, Runtime, Started, Tree, Waiter};
use crate::proc::spawn::{CaptureError, Captured, helper_command, resolve_program, run_captured};

/// How long one Slurm command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a job's state is read.
const POLL: Duration = Duration::from_millis(250);
/// How often the output files are read for new lines.
const FOLLOW: Duration = Duration::from_millis(100);
/// How long Slurm may not answer before a job counts as lost (`WORKFLOW_MCP_SLURM_UNREACHABLE_MS` shortens it
/// for tests).
const UNREACHABLE_FOR: Duration = Duration::from_secs(300);
/// How often a job given up as unreachable is looked for again, to cancel it once Slurm answers.
const CANCEL_RETRY: Duration = Duration::from_secs(5);
/// Written by the job script when it cannot start the program (its folder or the program is missing).
const START_ERROR_FILE: &str = "start-error";
/// Written into a job's folder when the job is given up while Slurm does not answer (its id, then its login
/// host): a later server on the same spool cancels it if this one exits first.
const CANCEL_FILE: &str = "cancel";

/// Where job folders go when a workflow names no `spool_dir`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spool {
    /// This folder (`slurm/` in the state directory).
    Dir(PathBuf),
    /// A private temporary folder, made on first use and removed when the server exits (`--ephemeral`).
    Temporary,
}

/// Runs workflows as Slurm jobs.
pub struct SlurmRuntime {
    default_spool: Spool,
    /// The temporary spool, once made.
    temporary: Mutex<Option<PathBuf>>,
    unreachable_for: Duration,
}

impl SlurmRuntime {
    pub fn new(default_spool: Spool) -> Self {
        let unreachable_for = std::env::var("WORKFLOW_MCP_SLURM_UNREACHABLE_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map_or(UNREACHABLE_FOR, Duration::from_millis);
        if let Spool::Dir(dir) = &default_spool
            && check_spool(dir).is_ok()
        {
            resume_pending_cancels(dir, CANCEL_RETRY.min(unreachable_for));
        }
        SlurmRuntime {
            default_spool,
            temporary: Mutex::new(None),
            unreachable_for,
        }
    }

    /// The spool a job of these options goes to, made if missing and refused when someone else could write to
    /// it.
    fn spool(&self, options: &SlurmOptions) -> Result<PathBuf, String> {
        let dir = match (&options.spool_dir, &self.default_spool) {
            (Some(dir), _) | (None, Spool::Dir(dir)) => dir.clone(),
            (None, Spool::Temporary) => {
                let mut temporary = self.temporary.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(dir) = &*temporary {
                    return Ok(dir.clone());
                }
                let dir = make_temporary_spool()?;
                *temporary = Some(dir.clone());
                return Ok(dir);
            }
        };
        if let Err(e) = fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir) {
            return Err(format!(
                "cannot create the Slurm spool folder {}: {e}; set \"spool_dir\" to a folder of your own",
                dir.display()
            ));
        }
        check_spool(&dir)?;
        Ok(dir)
    }

    /// Forgets what is left of an execution's job folder in the default spool (retention forgot it; its job
    /// folder normally went when the job ended).
    pub fn discard(&self, marker: &str) {
        let spool = match &self.default_spool {
            Spool::Dir(dir) => Some(dir.clone()),
            Spool::Temporary => self.temporary.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        };
        if let Some(spool) = spool {
            remove_job_folder(&spool.join(marker));
        }
    }

    /// Problems a person can act on before anything is submitted: Slurm's commands missing, the controller
    /// unreachable, an unknown partition.
    pub fn check(options: &SlurmOptions) -> Vec<String> {
        let commands = Commands::new(options);
        let mut problems = Vec::new();
        match commands.run("sinfo", &["-h", "-o", "%P"]) {
            Err(e) => problems.push(e),
            Ok(out) => {
                let partitions: Vec<String> = String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .map(|p| p.trim().trim_end_matches('*').to_owned())
                    .filter(|p| !p.is_empty())
                    .collect();
                if let Some(p) = &options.partition
                    && !partitions.contains(p)
                {
                    problems.push(format!(
                        "Slurm has no partition \"{p}\" (it has: {}); fix \"partition\"",
                        partitions.join(", ")
                    ));
                }
            }
        }
        if let Err(e) = commands.resolve("sbatch") {
            problems.push(e);
        }
        if let Some(dir) = &options.spool_dir
            && dir.exists()
            && let Err(e) = check_spool(dir)
        {
            problems.push(e);
        }
        problems
    }
}

/// Refuses a spool someone else could put files in or swap ours in: one not owned by this user, or writable by
/// others without the sticky bit (which keeps them from renaming or removing what is ours).
fn check_spool(dir: &Path) -> Result<(), String> {
    let meta = fs::metadata(dir).map_err(|e| format!("cannot use the Slurm spool folder {}: {e}", dir.display()))?;
    let me = current_uid();
    let fix = "set \"spool_dir\" to a folder of your own with mode 0700 (or sticky, like 1777)";
    if !meta.is_dir() {
        return Err(format!("the Slurm spool {} is not a folder; {fix}", dir.display()));
    }
    if meta.uid() != me {
        return Err(format!(
            "the Slurm spool folder {} is owned by uid {}, not by this user (uid {me}), who could swap the job's \
             files; {fix}",
            dir.display(),
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Err(format!(
            "the Slurm spool folder {} is writable by others (mode {mode:04o}) without the sticky bit, so they could \
             swap the job's files; make it private (chmod 0700 {}) or {fix}",
            dir.display(),
            dir.display()
        ));
    }
    Ok(())
}

fn current_uid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// A new private folder with an unpredictable name in the temporary folder, as `mkdtemp` makes it (0700,
/// created exclusively: a folder someone made first is never used).
fn make_temporary_spool() -> Result<PathBuf, String> {
    let tmp = std::path::absolute(std::env::temp_dir()).unwrap_or_else(|_| std::env::temp_dir());
    let template = tmp.join("workflow-mcp-slurm-XXXXXX");
    let template = std::ffi::CString::new(template.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("the temporary folder {} has a NUL in its name", tmp.display()))?;
    let mut bytes = template.into_bytes_with_nul();
    // SAFETY: mkdtemp rewrites the XXXXXX of a NUL-terminated buffer it may write to.
    if unsafe { libc::mkdtemp(bytes.as_mut_ptr().cast()) }.is_null() {
        return Err(format!(
            "cannot create a temporary Slurm spool folder in {}: {}; set TMPDIR, or \"spool_dir\" for the workflow",
            tmp.display(),
            io::Error::last_os_error()
        ));
    }
    bytes.pop();
    Ok(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
}

/// A job's own folder (0700), new: one that exists already — a folder or a symlink someone else put there — is
/// refused, never used.
fn create_job_folder(spool: &Path, marker: &str) -> Result<PathBuf, String> {
    let dir = spool.join(marker);
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(format!(
                "the job folder {} exists already, but a job folder is always new: something else made it; \
                 remove it, and check who can write to {}",
                dir.display(),
                spool.display()
            ));
        }
        Err(e) => return Err(format!("cannot create the job folder {}: {e}", dir.display())),
    }
    // The umask may have taken more than group and others' bits.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("cannot make the job folder {} private: {e}", dir.display()))?;
    Ok(dir)
}

/// Creates an empty private file (0600) that must not exist yet: Slurm then writes the job's output into it and
/// keeps its mode (slurmd would otherwise create it with the job's umask, readable by all).
fn create_private_file(path: &Path) -> Result<(), String> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map(drop)
        .map_err(|e| format!("cannot create the job's output file {}: {e}", path.display()))
}

/// Removes a job folder of ours (never through a symlink, never someone else's).
fn remove_job_folder(dir: &Path) {
    let ours = fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir() && m.uid() == current_uid());
    if ours && let Err(e) = fs::remove_dir_all(dir) {
        tracing::warn!(folder = %dir.display(), error = %e, "cannot remove a Slurm job folder");
    }
}

/// The job script in an anonymous in-memory file, for `sbatch` to read on its stdin.
fn script_file(script: &str) -> io::Result<File> {
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
struct Commands {
    login_host: Option<String>,
}

impl Commands {
    fn new(options: &SlurmOptions) -> Self {
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

    fn resolve(&self, program: &str) -> Result<PathBuf, String> {
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
    fn run(&self, program: &str, args: &[&str]) -> Result<Captured, String> {
        self.run_with_input(program, args, None)
    }

    /// As [`Commands::run`], with `input` as the command's stdin.
    fn run_with_input(&self, program: &str, args: &[&str], input: Option<File>) -> Result<Captured, String> {
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

/// The job script: the exact environment, the folder and program checked, then `exec` of the exact argv.
fn job_script(launch: &Launch, start_error: &Path) -> String {
    let mut s = String::from("#!/bin/sh\n");
    s.push_str(&format!(
        "# workflow-mcp execution {}: runs the workflow's argv exactly, with exactly its environment.\n",
        launch.marker
    ));
    // Only Slurm's own variables survive from the job's environment; the workflow's come next.
    s.push_str(
        "for name in $(env | sed -n 's/^\\([A-Za-z_][A-Za-z0-9_]*\\)=.*/\\1/p'); do\n  case \"$name\" in \
         SLURM_*|SLURMD_*) ;; *) unset \"$name\" 2>/dev/null ;; esac\ndone\n",
    );
    for (k, v) in launch.env.vars() {
        s.push_str(&format!("export {}\n", sh_quote(&format!("{k}={v}"))));
    }
    // The start error is the server's file: private, whatever the workflow's umask.
    let fail = |msg: &str| {
        format!(
            "{{ umask 077; printf '%s\\n' {} > {}; exit 127; }}",
            sh_quote(msg),
            sh_quote(&start_error.display().to_string())
        )
    };
    let cwd = launch.cwd.display().to_string();
    s.push_str(&format!(
        "cd -- {} 2>/dev/null || {}\n",
        sh_quote(&cwd),
        fail(&format!(
            "working directory {cwd} does not exist or is not a folder on the node that ran the job; fix \"cwd\" \
             in the config"
        ))
    ));
    let program = &launch.argv[0];
    if program.contains('/') {
        s.push_str(&format!(
            "[ -f {p} ] && [ -x {p} ] || {}\n",
            fail(&format!(
                "program {program} does not exist or is not executable on the node that ran the job"
            )),
            p = sh_quote(program)
        ));
    } else {
        s.push_str(&format!(
            "command -v -- {} >/dev/null 2>&1 || {}\n",
            sh_quote(program),
            fail(&format!(
                "command \"{program}\" was not found in PATH ({}) on the node that ran the job",
                launch.env.path()
            ))
        ));
    }
    let argv: Vec<String> = launch.argv.iter().map(|a| sh_quote(a)).collect();
    s.push_str(&format!("exec {}\n", argv.join(" ")));
    s
}

/// `--time` for a job: the configured one, else the timeout rounded up to minutes plus one (a backstop).
fn time_limit(options: &SlurmOptions, timeout: Option<Duration>) -> Option<String> {
    options
        .time_limit
        .clone()
        .or_else(|| timeout.map(|t| (t.as_secs().div_ceil(60) + 1).to_string()))
}

/// A pipe as two files; std creates it close-on-exec, so it stays out of every child.
fn pipe() -> io::Result<(File, File)> {
    let (read, write) = io::pipe()?;
    Ok((OwnedFd::from(read).into(), OwnedFd::from(write).into()))
}

impl Runtime for SlurmRuntime {
    fn start(&self, launch: &Launch) -> Result<Started, String> {
        let super::Placement::Slurm(options) = &launch.placement else {
            return Err("internal error: a local workflow was sent to the Slurm runtime".into());
        };
        let commands = Commands::new(options);
        let dir = create_job_folder(&self.spool(options)?, &launch.marker)?;
        let submitted = self.submit(launch, options, &commands, &dir);
        let job_id = match submitted {
            Ok(id) => id,
            Err(e) => {
                remove_job_folder(&dir);
                return Err(e);
            }
        };
        following(job_id, &launch.marker, commands, &dir, [0, 0], self.unreachable_for)
    }

    fn finish(&self) {
        let temporary = self.temporary.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(dir) = temporary
            && let Err(e) = fs::remove_dir_all(&dir)
        {
            tracing::warn!(folder = %dir.display(), error = %e, "cannot remove the temporary Slurm spool");
        }
    }
}

impl SlurmRuntime {
    /// Submits the job whose folder is `dir`; returns its id.
    fn submit(
        &self,
        launch: &Launch,
        options: &SlurmOptions,
        commands: &Commands,
        dir: &Path,
    ) -> Result<String, String> {
        let (out, err, start_error) = (dir.join("stdout"), dir.join("stderr"), dir.join(START_ERROR_FILE));
        create_private_file(&out)?;
        create_private_file(&err)?;
        let script = script_file(&job_script(launch, &start_error))
            .map_err(|e| format!("cannot hold the job script in memory: {e}"))?;
        let short: String = launch.marker.chars().take(8).collect();
        let mut args = vec![
            "--parsable".to_owned(),
            format!("--job-name=wfmcp-{short}"),
            format!("--comment=workflow-mcp:{}", launch.marker),
            format!("--output={}", out.display()),
            format!("--error={}", err.display()),
            format!("--chdir={}", dir.display()),
        ];
        let flag = |name: &str, v: &Option<String>| v.as_ref().map(|v| format!("--{name}={v}"));
        args.extend(flag("partition", &options.partition));
        args.extend(options.cpus.map(|c| format!("--cpus-per-task={c}")));
        args.extend(flag("mem", &options.memory));
        args.extend(flag("gres", &options.gres));
        args.extend(flag("time", &time_limit(options, launch.timeout)));
        args.extend(flag("account", &options.account));
        args.extend(flag("qos", &options.qos));
        args.extend(options.sbatch_args.iter().cloned());
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        // The script on stdin: Slurm keeps its own copy, and no file of ours can be swapped before it reads it.
        let submitted = commands
            .run_with_input("sbatch", &arg_refs, Some(script))
            .map_err(|e| format!("the job was not submitted: {e}"))?;
        let job_id = String::from_utf8_lossy(&submitted.stdout)
            .trim()
            .split(';')
            .next()
            .unwrap_or("")
            .to_owned();
        if job_id.is_empty() || !job_id.chars().all(|c| c.is_ascii_digit() || c == '_') {
            return Err(format!(
                "sbatch answered without a job id: {:?}",
                String::from_utf8_lossy(&submitted.stdout).trim()
            ));
        }
        Ok(job_id)
    }

    /// Follows again a job a gone server submitted (`outlive_session`, or a server that died), from where its
    /// output was read up to (`offsets`: bytes per stream). An error says why it cannot be followed.
    pub fn reattach(
        &self,
        job_id: &str,
        marker: &str,
        dir: &Path,
        options: &SlurmOptions,
        offsets: [u64; 2],
    ) -> Result<Started, String> {
        let ours = fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir() && m.uid() == current_uid());
        if !ours {
            return Err(format!(
                "its job folder {} is gone, or not a folder of this user",
                dir.display()
            ));
        }
        let commands = Commands::new(options);
        let out = commands.run("scontrol", &["show", "job", "-o", job_id])?;
        if !String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| parse_job(l).is_some())
        {
            remove_job_folder(dir);
            return Err(format!("Slurm no longer knows job {job_id}"));
        }
        following(job_id.to_owned(), marker, commands, dir, offsets, self.unreachable_for)
    }
}

/// A submitted job as the engine follows it: its output files into pipes, its state through `scontrol`.
fn following(
    job_id: String,
    marker: &str,
    commands: Commands,
    dir: &Path,
    offsets: [u64; 2],
    unreachable_for: Duration,
) -> Result<Started, String> {
    let (out, err, start_error) = (dir.join("stdout"), dir.join("stderr"), dir.join(START_ERROR_FILE));
    let (out_r, out_w) = pipe().map_err(|e| format!("cannot create a pipe: {e}"))?;
    let (err_r, err_w) = pipe().map_err(|e| format!("cannot create a pipe: {e}"))?;
    let finished = Arc::new(AtomicBool::new(false));
    let follower = {
        let finished = finished.clone();
        std::thread::Builder::new()
            .name("wf-slurm-follow".into())
            .spawn(move || follow([out, err], [out_w, err_w], offsets, &finished))
            .map_err(|e| format!("cannot start a thread to follow the job's output: {e}"))?
    };
    let shared = Arc::new(JobShared {
        job_id: job_id.clone(),
        marker: marker.to_owned(),
        commands,
        dir: dir.to_owned(),
        last: Mutex::new(None),
        finished,
        given_up: AtomicBool::new(false),
    });
    Ok(Started {
        pid: None,
        job: Some(RemoteJob {
            system: "slurm",
            id: job_id,
            dir: Some(dir.to_owned()),
        }),
        pending: true,
        stdout: out_r,
        stderr: err_r,
        tree: shared.clone(),
        waiter: Box::new(SlurmWaiter {
            job: shared,
            follower,
            start_error,
            unreachable_for,
        }),
    })
}

/// Copies what the job's output files gain into the pipes the engine drains, until the job has ended and both
/// files stop growing.
fn follow(files: [PathBuf; 2], pipes: [File; 2], offsets: [u64; 2], finished: &AtomicBool) {
    let mut pipes = pipes.map(Some);
    let mut opened: [Option<File>; 2] = [None, None];
    let mut buf = vec![0u8; 256 * 1024];
    let mut quiet_rounds_after_end = 0;
    loop {
        let ended = finished.load(Ordering::SeqCst);
        let mut moved = false;
        for i in 0..2 {
            if opened[i].is_none() {
                opened[i] = File::open(&files[i]).ok().and_then(|mut f| {
                    use std::io::Seek;
                    f.seek(io::SeekFrom::Start(offsets[i])).ok()?;
                    Some(f)
                });
            }
            let (Some(file), Some(pipe)) = (opened[i].as_mut(), pipes[i].as_mut()) else {
                continue;
            };
            loop {
                match file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        moved = true;
                        if pipe.write_all(&buf[..n]).is_err() {
                            // Nobody drains it any more (the engine gave up on it): stop copying this stream.
                            pipes[i] = None;
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
        if ended {
            // A shared filesystem may show the last writes a moment late: two quiet rounds after the end.
            quiet_rounds_after_end = if moved { 0 } else { quiet_rounds_after_end + 1 };
            if quiet_rounds_after_end >= 2 {
                return;
            }
        }
        if !moved {
            std::thread::sleep(FOLLOW);
        }
    }
}

/// What the tree and the waiter of one job share.
struct JobShared {
    job_id: String,
    /// The execution's id, also in the job's comment (`workflow-mcp:ID`): how a job is known to be ours.
    marker: String,
    commands: Commands,
    /// The job's folder (its output files).
    dir: PathBuf,
    /// Where the job stood when last read.
    last: Mutex<Option<JobState>>,
    /// The job has ended (its final state was read), or it was given up.
    finished: Arc<AtomicBool>,
    /// Given up while Slurm did not answer: it may still run, and is cancelled once Slurm answers again.
    given_up: AtomicBool,
}

impl JobShared {
    fn scancel(&self, args: &[&str]) {
        let mut all: Vec<&str> = args.to_vec();
        all.push(&self.job_id);
        if let Err(e) = self.commands.run("scancel", &all) {
            tracing::warn!(job = %self.job_id, error = %e, "scancel failed");
        }
    }
}

impl Tree for JobShared {
    fn signal(&self, sig: i32) {
        if self.finished.load(Ordering::SeqCst) {
            return;
        }
        // Read now, not from the last poll: a job that just started must get the signal, not a plain scancel
        // (which waits out Slurm's KillWait on a job that ignores TERM).
        let pending = match self.commands.run("scontrol", &["show", "job", "-o", &self.job_id]) {
            Ok(out) => String::from_utf8_lossy(&out.stdout)
                .lines()
                .find_map(parse_job)
                .is_some_and(|r| r.state == "PENDING"),
            Err(_) => self
                .last
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .is_none_or(|s| s.pending),
        };
        if pending {
            // Nothing runs yet: take it out of the queue.
            self.scancel(&[]);
        } else if sig == libc::SIGKILL {
            // KILL to the batch shell ends the job at once; a plain scancel would wait out Slurm's KillWait.
            self.scancel(&["--batch", "--signal=KILL"]);
            let deadline = Instant::now() + Duration::from_secs(3);
            while !self.finished.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if !self.finished.load(Ordering::SeqCst) {
                // The last resort, for a job the batch shell's KILL did not end.
                self.scancel(&[]);
            }
        } else {
            let signal = format!(
                "--signal={}",
                crate::proc::signal::signal_name(sig).trim_start_matches("SIG")
            );
            self.scancel(&["--full", &signal]);
        }
    }

    fn gone(&self) -> bool {
        self.finished.load(Ordering::SeqCst)
    }

    fn kill_leftovers(&self) -> bool {
        // Slurm's process tracking (proctrack/cgroup) ends every process of a job with it.
        false
    }

    fn release_outputs(&self) {}

    fn forget(&self) {
        // Its output is in the log store now. A job given up on still writes here until it is cancelled.
        if !self.given_up.load(Ordering::SeqCst) {
            remove_job_folder(&self.dir);
        }
    }
}

/// Records that a job given up is to be cancelled (see [`CANCEL_FILE`]).
fn record_pending_cancel(job: &JobShared) {
    let text = format!("{}\n{}\n", job.job_id, job.commands.login_host.as_deref().unwrap_or(""));
    let path = job.dir.join(CANCEL_FILE);
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    if let Err(e) = written {
        tracing::warn!(file = %path.display(), error = %e, "cannot record a job to cancel");
    }
}

/// Cancels the jobs a gone server gave up on in this spool, once Slurm answers (see [`CANCEL_FILE`]).
fn resume_pending_cancels(spool: &Path, retry: Duration) {
    let Ok(entries) = fs::read_dir(spool) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let Ok(text) = fs::read_to_string(dir.join(CANCEL_FILE)) else {
            continue;
        };
        let mut lines = text.lines();
        let (Some(job_id), login_host) = (lines.next(), lines.next().filter(|h| !h.is_empty())) else {
            continue;
        };
        if job_id.is_empty() || !job_id.chars().all(|c| c.is_ascii_digit() || c == '_') {
            continue;
        }
        tracing::info!(job = %job_id, "a job a gone server gave up on is cancelled once Slurm answers");
        let job = Arc::new(JobShared {
            job_id: job_id.to_owned(),
            marker: entry.file_name().to_string_lossy().into_owned(),
            commands: Commands {
                login_host: login_host.map(str::to_owned),
            },
            dir,
            last: Mutex::new(None),
            finished: Arc::new(AtomicBool::new(true)),
            given_up: AtomicBool::new(true),
        });
        cancel_when_slurm_answers(job, retry);
    }
}

/// Cancels, once Slurm answers again, a job given up while it did not: nothing of ours runs unwatched. Only a
/// job whose comment names this execution is cancelled; its folder goes once the job does.
fn cancel_when_slurm_answers(job: Arc<JobShared>, retry: Duration) {
    let spawned = std::thread::Builder::new()
        .name("wf-slurm-cancel".into())
        .spawn(move || {
            loop {
                std::thread::sleep(retry);
                match job.commands.run("scontrol", &["show", "job", "-o", &job.job_id]) {
                    Ok(out) => {
                        let text = String::from_utf8_lossy(&out.stdout);
                        match text.lines().find_map(parse_job) {
                            Some(rec) if !is_final(&rec.state) => {
                                if rec.comment.as_deref() != Some(&format!("workflow-mcp:{}", job.marker)) {
                                    tracing::warn!(job = %job.job_id, "a job given up on is no longer ours; left alone");
                                    return;
                                }
                                match job.commands.run("scancel", &[&job.job_id]) {
                                    Ok(_) => {
                                        tracing::warn!(job = %job.job_id, "cancelled a job given up while Slurm did not answer");
                                        break;
                                    }
                                    Err(e) => tracing::warn!(job = %job.job_id, error = %e, "scancel failed; trying again"),
                                }
                            }
                            _ => break,
                        }
                    }
                    Err(e) if e.contains("Invalid job id") => break,
                    Err(_) => {}
                }
            }
            remove_job_folder(&job.dir);
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start a thread to cancel a job given up on");
    }
}

struct SlurmWaiter {
    job: Arc<JobShared>,
    follower: std::thread::JoinHandle<()>,
    start_error: PathBuf,
    unreachable_for: Duration,
}

/// The fields of `scontrol show job -o` that matter here.
#[derive(Debug, PartialEq, Eq)]
pub struct JobRecord {
    pub state: String,
    pub reason: Option<String>,
    pub exit: (i32, i32),
    pub node: Option<String>,
    pub comment: Option<String>,
}

/// Parses one line of `scontrol show job -o`.
pub fn parse_job(line: &str) -> Option<JobRecord> {
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .map(str::to_owned)
    };
    let state = field("JobState")?;
    let exit = field("ExitCode")
        .and_then(|e| {
            let (code, sig) = e.split_once(':')?;
            Some((code.parse().ok()?, sig.parse().ok()?))
        })
        .unwrap_or((0, 0));
    let none = |v: Option<String>| v.filter(|v| v != "None" && v != "(null)" && !v.is_empty());
    Some(JobRecord {
        state,
        reason: none(field("Reason")),
        exit,
        node: none(field("NodeList")),
        comment: none(field("Comment")),
    })
}

/// States a job does not leave.
fn is_final(state: &str) -> bool {
    !matches!(
        state,
        "PENDING"
            | "CONFIGURING"
            | "RUNNING"
            | "COMPLETING"
            | "SUSPENDED"
            | "REQUEUED"
            | "RESIZING"
            | "SIGNALING"
            | "STAGE_OUT"
            | "STOPPED"
            | "REQUEUE_HOLD"
            | "REQUEUE_FED"
            | "RESV_DEL_HOLD"
            | "SPECIAL_EXIT"
    )
}

impl Waiter for SlurmWaiter {
    fn wait(self: Box<Self>, changed: &mut dyn FnMut(JobState)) -> Ended {
        let job = &self.job;
        let mut unreachable_since: Option<Instant> = None;
        let ended = loop {
            // Unreachable since the first question left unanswered (scontrol itself takes ~18 s to give up).
            let asked = Instant::now();
            match job.commands.run("scontrol", &["show", "job", "-o", &job.job_id]) {
                Ok(out) => {
                    unreachable_since = None;
                    let text = String::from_utf8_lossy(&out.stdout);
                    let Some(rec) = text.lines().find_map(parse_job) else {
                        break Ended::Lost(format!("Slurm no longer knows job {}", job.job_id));
                    };
                    if is_final(&rec.state) {
                        break if rec.exit.1 != 0 {
                            Ended::Exited(Exit {
                                code: None,
                                signal: Some(rec.exit.1),
                            })
                        } else {
                            Ended::Exited(Exit {
                                code: Some(rec.exit.0),
                                signal: None,
                            })
                        };
                    }
                    let now = JobState {
                        pending: rec.state == "PENDING",
                        state: rec.state,
                        reason: rec.reason,
                        node: rec.node,
                    };
                    let mut last = job.last.lock().unwrap_or_else(|e| e.into_inner());
                    if last.as_ref() != Some(&now) {
                        *last = Some(now.clone());
                        drop(last);
                        changed(now);
                    }
                }
                Err(e) if e.contains("Invalid job id") => {
                    break Ended::Lost(format!(
                        "Slurm no longer knows job {} (its record expired, or the controller lost it)",
                        job.job_id
                    ));
                }
                Err(e) => {
                    let since = *unreachable_since.get_or_insert(asked);
                    tracing::warn!(job = %job.job_id, error = %e, "cannot read the job's state");
                    if since.elapsed() > self.unreachable_for {
                        job.given_up.store(true, Ordering::SeqCst);
                        record_pending_cancel(job);
                        cancel_when_slurm_answers(job.clone(), CANCEL_RETRY.min(self.unreachable_for));
                        break Ended::Lost(format!(
                            "Slurm did not answer for {} s about job {} (it is cancelled once Slurm answers again): {e}",
                            since.elapsed().as_secs(),
                            job.job_id
                        ));
                    }
                }
            }
            std::thread::sleep(POLL);
        };
        job.finished.store(true, Ordering::SeqCst);
        let _ = self.follower.join();
        if let Ok(why) = fs::read_to_string(&self.start_error) {
            return Ended::FailedToStart(why.trim().to_owned());
        }
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scontrol_lines_give_state_reason_exit_and_node() {
        let line = "JobId=7 JobName=x JobState=FAILED Reason=NonZeroExitCode Dependency=(null) ExitCode=3:0 \
                    NodeList=vm BatchHost=vm";
        assert_eq!(
            parse_job(line),
            Some(JobRecord {
                state: "FAILED".into(),
                reason: Some("NonZeroExitCode".into()),
                exit: (3, 0),
                node: Some("vm".into()),
                comment: None,
            })
        );
        let pending = parse_job("JobId=8 JobState=PENDING Reason=Resources ExitCode=0:0 NodeList=(null)").unwrap();
        assert_eq!((pending.reason.as_deref(), pending.node), (Some("Resources"), None));
        assert_eq!(
            parse_job("JobId=9 JobState=CANCELLED Reason=None ExitCode=0:15")
                .unwrap()
                .exit,
            (0, 15)
        );
        assert!(parse_job("slurm_load_jobs error: Invalid job id specified").is_none());
    }

    #[test]
    fn a_job_folder_that_exists_or_is_a_symlink_is_refused() {
        let spool = std::env::temp_dir().join(format!("wfmcp-job-folder-{}", std::process::id()));
        let _ = fs::remove_dir_all(&spool);
        fs::create_dir(&spool).unwrap();
        let elsewhere = spool.join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        fs::create_dir(spool.join("taken")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, spool.join("swapped")).unwrap();
        for name in ["taken", "swapped"] {
            let e = create_job_folder(&spool, name).unwrap_err();
            assert!(e.contains("exists already") && e.contains(name), "{e}");
        }
        let dir = create_job_folder(&spool, "new").unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o7777, 0o700);
        create_private_file(&dir.join("stdout")).unwrap();
        assert_eq!(fs::metadata(dir.join("stdout")).unwrap().mode() & 0o7777, 0o600);
        std::os::unix::fs::symlink(elsewhere.join("x"), dir.join("stderr")).unwrap();
        assert!(
            create_private_file(&dir.join("stderr")).is_err(),
            "an output file is never a symlink"
        );
        assert_eq!(
            fs::read_dir(&elsewhere).unwrap().count(),
            0,
            "nothing was written through a symlink"
        );
        fs::remove_dir_all(&spool).unwrap();
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
