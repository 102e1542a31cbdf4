//! The Slurm runtime itself: where job folders go, submitting a job, following one again, and `check`.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::commands::{Commands, script_file};
use super::job::{CANCEL_RETRY, following, resume_pending_cancels};
use super::poller::Poller;
use super::scontrol::parse_job;
use super::script::{START_ERROR_FILE, job_script, time_limit};
use super::spool::{
    Spool, check_spool, create_job_folder, create_private_file, current_uid, make_temporary_spool, remove_job_folder,
};
use crate::runtime::placement::SlurmOptions;
use crate::runtime::{Launch, Placement, RemoteJob, Runtime, RuntimeError, Started};

/// How long Slurm may not answer before a job counts as lost (`WORKFLOW_MCP_SLURM_UNREACHABLE_MS` shortens it
/// for tests).
const UNREACHABLE_FOR: Duration = Duration::from_secs(300);

/// The placement kind (the config's `"type": "slurm"`) this runtime runs.
pub const KIND: &str = "slurm";

/// Runs workflows as Slurm jobs.
pub struct SlurmRuntime {
    default_spool: Spool,
    /// The temporary spool, once made.
    temporary: Mutex<Option<PathBuf>>,
    unreachable_for: Duration,
    /// Asks where every job of this runtime stands, once per tick.
    poller: Poller,
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
            poller: Poller::default(),
        }
    }

    /// The spool a job of these options goes to, made if missing and refused when someone else could write to
    /// it.
    fn spool(&self, options: &SlurmOptions) -> Result<PathBuf, RuntimeError> {
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
            return Err(RuntimeError::CannotStart(format!(
                "cannot create the Slurm spool folder {}: {e}; set \"spool_dir\" to a folder of your own",
                dir.display()
            )));
        }
        check_spool(&dir)?;
        Ok(dir)
    }

    /// Problems a person can act on before anything is submitted: Slurm's commands missing, the controller
    /// unreachable, an unknown partition.
    fn check_options(options: &SlurmOptions) -> Vec<String> {
        let commands = Commands::new(options);
        let mut problems = Vec::new();
        match commands.run("sinfo", &["-h", "-o", "%P"]) {
            Err(e) => problems.push(e.to_string()),
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
            problems.push(e.to_string());
        }
        if let Some(dir) = &options.spool_dir
            && dir.exists()
            && let Err(e) = check_spool(dir)
        {
            problems.push(e.to_string());
        }
        problems
    }
}

impl Runtime for SlurmRuntime {
    fn start(&self, launch: &Launch) -> Result<Started, RuntimeError> {
        let Placement::Slurm(options) = &launch.placement else {
            return Err(RuntimeError::CannotStart(
                "internal error: a local workflow was sent to the Slurm runtime".into(),
            ));
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
        following(
            job_id,
            &launch.marker,
            commands,
            &dir,
            [0, 0],
            self.unreachable_for,
            &self.poller,
        )
    }

    fn reattach(&self, launch: &Launch, job: &RemoteJob, offsets: [u64; 2]) -> Result<Started, RuntimeError> {
        match (&launch.placement, &job.dir) {
            (Placement::Slurm(options), Some(dir)) => self.reattach_job(&job.id, &launch.marker, dir, options, offsets),
            _ => Err(RuntimeError::CannotFollow(format!(
                "the workflow no longer runs on {}, so job {} cannot be followed",
                job.system, job.id
            ))),
        }
    }

    // The program and folder are checked on the node, by the job; here: can jobs be submitted at all.
    fn check(&self, launch: &Launch) -> Vec<String> {
        match &launch.placement {
            Placement::Slurm(options) => Self::check_options(options),
            Placement::Local => Vec::new(),
        }
    }

    fn label(&self, _: &Placement) -> Option<&'static str> {
        Some("Slurm")
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
    ) -> Result<String, RuntimeError> {
        let (out, err, start_error) = (dir.join("stdout"), dir.join("stderr"), dir.join(START_ERROR_FILE));
        create_private_file(&out)?;
        create_private_file(&err)?;
        let script = script_file(&job_script(launch, &start_error))
            .map_err(|e| RuntimeError::CannotStart(format!("cannot hold the job script in memory: {e}")))?;
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
            .map_err(|e| {
                let why = format!("the job was not submitted: {e}");
                if e.unreachable() {
                    RuntimeError::Unreachable(why)
                } else {
                    RuntimeError::Refused(why)
                }
            })?;
        let job_id = String::from_utf8_lossy(&submitted.stdout)
            .trim()
            .split(';')
            .next()
            .unwrap_or("")
            .to_owned();
        if job_id.is_empty() || !job_id.chars().all(|c| c.is_ascii_digit() || c == '_') {
            return Err(RuntimeError::Refused(format!(
                "sbatch answered without a job id: {:?}",
                String::from_utf8_lossy(&submitted.stdout).trim()
            )));
        }
        Ok(job_id)
    }

    /// Follows again a job a gone server submitted (`outlive_session`, or a server that died), from where its
    /// output was read up to (`offsets`: bytes per stream). An error says why it cannot be followed.
    fn reattach_job(
        &self,
        job_id: &str,
        marker: &str,
        dir: &Path,
        options: &SlurmOptions,
        offsets: [u64; 2],
    ) -> Result<Started, RuntimeError> {
        let ours = fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir() && m.uid() == current_uid());
        if !ours {
            return Err(RuntimeError::CannotFollow(format!(
                "its job folder {} is gone, or not a folder of this user",
                dir.display()
            )));
        }
        let commands = Commands::new(options);
        let out = commands.run("scontrol", &["show", "job", "-o", job_id])?;
        if !String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| parse_job(l).is_some())
        {
            remove_job_folder(dir);
            return Err(RuntimeError::JobUnknown(format!("Slurm no longer knows job {job_id}")));
        }
        following(
            job_id.to_owned(),
            marker,
            commands,
            dir,
            offsets,
            self.unreachable_for,
            &self.poller,
        )
    }
}
