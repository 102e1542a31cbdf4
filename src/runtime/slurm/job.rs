//! A submitted job as the engine follows it: the job as the tree (`scancel` stops it), the runtime's poller and
//! its final `scontrol` record as the waiter, and the jobs given up while Slurm did not answer, cancelled once it answers again.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::commands::{CommandError, Commands};
use super::output::{follow, pipe};
use super::poller::{Polled, Poller};
use super::scontrol::{JobRecord, is_final, parse_job, parse_sacct, sacct_args};
use super::script::START_ERROR_FILE;
use super::spool::remove_job_folder;
use crate::runtime::{Ended, Exit, JobState, RemoteJob, RuntimeError, Started, Tree, Waiter};

/// How often a job given up as unreachable is looked for again, to cancel it once Slurm answers.
pub(super) const CANCEL_RETRY: Duration = Duration::from_secs(5);

/// Written into a job's folder when the job is given up while Slurm does not answer (its id, then its login
/// host): a later server on the same spool cancels it if this one exits first.
const CANCEL_FILE: &str = "cancel";

/// A submitted job as the engine follows it: its output files into pipes, its state through `scontrol`.
pub(super) fn following(
    job_id: String,
    marker: &str,
    commands: Commands,
    dir: &Path,
    offsets: [u64; 2],
    unreachable_for: Duration,
    poller: &Poller,
) -> Result<Started, RuntimeError> {
    let (out, err, start_error) = (dir.join("stdout"), dir.join("stderr"), dir.join(START_ERROR_FILE));
    let (out_r, out_w) = pipe().map_err(|e| RuntimeError::CannotStart(format!("cannot create a pipe: {e}")))?;
    let (err_r, err_w) = pipe().map_err(|e| RuntimeError::CannotStart(format!("cannot create a pipe: {e}")))?;
    let finished = Arc::new(AtomicBool::new(false));
    let follower = {
        let finished = finished.clone();
        std::thread::Builder::new()
            .name("wf-slurm-follow".into())
            .spawn(move || follow([out, err], [out_w, err_w], offsets, &finished))
            .map_err(|e| RuntimeError::CannotStart(format!("cannot start a thread to follow the job's output: {e}")))?
    };
    let polled = poller
        .watch(&job_id, commands.clone())
        .map_err(|e| RuntimeError::CannotStart(format!("cannot start a thread to poll Slurm: {e}")))?;
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
            system: super::KIND.to_owned(),
            id: job_id,
            dir: Some(dir.to_owned()),
        }),
        pending: true,
        stdout: out_r,
        stderr: err_r,
        tree: shared.clone(),
        waiter: Box::new(SlurmWaiter {
            job: shared,
            polled,
            follower,
            start_error,
            unreachable_for,
        }),
    })
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

impl JobShared {
    /// Whether the job still waits in the queue. Read now, not from the last poll: a job that just started must
    /// get the signal, not a plain scancel (which waits out Slurm's KillWait on a job that ignores TERM).
    fn pending_now(&self) -> bool {
        match self.commands.run("scontrol", &["show", "job", "-o", &self.job_id]) {
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
        }
    }
}

impl Tree for JobShared {
    // The engine waits out the grace and kills what is left (Slurm's own KillWait is only a backstop).
    fn stop(&self, _grace: Duration) {
        if self.finished.load(Ordering::SeqCst) {
            return;
        }
        if self.pending_now() {
            // Nothing runs yet: take it out of the queue.
            self.scancel(&[]);
        } else {
            self.scancel(&["--full", "--signal=TERM"]);
        }
    }

    fn kill(&self) {
        if self.finished.load(Ordering::SeqCst) {
            return;
        }
        if self.pending_now() {
            self.scancel(&[]);
        } else {
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
        }
    }

    fn gone(&self) -> bool {
        self.finished.load(Ordering::SeqCst)
    }

    // kill_leftovers: none, Slurm's process tracking (proctrack/cgroup) ends every process of a job with it;
    // release_outputs: none, its output is read from files, not pipes.

    fn forget(&self) {
        // Its output is in the execution's log now. A job given up on still writes here until it is cancelled.
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
pub(super) fn resume_pending_cancels(spool: &Path, retry: Duration) {
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
                    Err(CommandError::InvalidJobId { .. }) => break,
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
    /// Where the job stands, from the runtime's poller.
    polled: mpsc::Receiver<Polled>,
    follower: std::thread::JoinHandle<()>,
    start_error: PathBuf,
    unreachable_for: Duration,
}

impl SlurmWaiter {
    /// A question about the job asked at `asked` went unanswered: once Slurm has not answered for too long, the
    /// job is given up (and cancelled once Slurm answers again).
    fn unanswered(&self, unreachable_since: &mut Option<Instant>, asked: Instant, why: &str) -> Option<Ended> {
        let job = &self.job;
        // Unreachable since the first question left unanswered (a Slurm command itself takes ~18 s to give up).
        let since = *unreachable_since.get_or_insert(asked);
        tracing::warn!(job = %job.job_id, error = %why, "cannot read the job's state");
        if since.elapsed() <= self.unreachable_for {
            return None;
        }
        job.given_up.store(true, Ordering::SeqCst);
        record_pending_cancel(job);
        cancel_when_slurm_answers(job.clone(), CANCEL_RETRY.min(self.unreachable_for));
        Some(Ended::Lost(format!(
            "Slurm did not answer for {} s about job {} (it is cancelled once Slurm answers again): {why}",
            since.elapsed().as_secs(),
            job.job_id
        )))
    }
}

/// How a job ended, from its final record.
fn ended(rec: &JobRecord) -> Ended {
    if rec.exit.1 != 0 {
        Ended::Exited(Exit {
            code: None,
            signal: Some(rec.exit.1),
        })
    } else {
        Ended::Exited(Exit {
            code: Some(rec.exit.0),
            signal: None,
        })
    }
}

/// How a job the controller has forgotten ended, when the cluster keeps accounting (`sacct`); `None` otherwise
/// (no accounting, as on a cluster without slurmdbd, or no record of its end): then it is lost.
fn ended_by_accounting(commands: &Commands, job_id: &str) -> Option<Ended> {
    decide_by_accounting(commands.run("sacct", &sacct_args(job_id)).map(|out| out.stdout), job_id)
}

/// The decision of [`ended_by_accounting`] from `sacct`'s answer.
fn decide_by_accounting(answer: Result<Vec<u8>, CommandError>, job_id: &str) -> Option<Ended> {
    match answer {
        Ok(stdout) => parse_sacct(&String::from_utf8_lossy(&stdout), job_id).map(|rec| ended(&rec)),
        Err(e) => {
            tracing::debug!(job = %job_id, error = %e, "accounting does not say how the job ended");
            None
        }
    }
}

impl Waiter for SlurmWaiter {
    fn wait(self: Box<Self>, changed: &mut dyn FnMut(JobState)) -> Ended {
        let job = &self.job;
        let mut unreachable_since: Option<Instant> = None;
        let ended = loop {
            let rec = match self.polled.recv() {
                Ok(Polled::Stands(rec)) => rec,
                // It left the queue: its final record, read once (the poller's squeue has no exit status).
                Ok(Polled::Left) => {
                    let asked = Instant::now();
                    match job.commands.run("scontrol", &["show", "job", "-o", &job.job_id]) {
                        Ok(out) => {
                            let text = String::from_utf8_lossy(&out.stdout);
                            let Some(rec) = text.lines().find_map(parse_job) else {
                                break ended_by_accounting(&job.commands, &job.job_id).unwrap_or_else(|| {
                                    Ended::Lost(format!("Slurm no longer knows job {}", job.job_id))
                                });
                            };
                            if is_final(&rec.state) {
                                break ended(&rec);
                            }
                            rec
                        }
                        Err(CommandError::InvalidJobId { .. }) => {
                            break ended_by_accounting(&job.commands, &job.job_id).unwrap_or_else(|| {
                                Ended::Lost(format!(
                                    "Slurm no longer knows job {} (its record expired, or the controller lost it)",
                                    job.job_id
                                ))
                            });
                        }
                        Err(e) => match self.unanswered(&mut unreachable_since, asked, &e.to_string()) {
                            Some(lost) => break lost,
                            None => continue,
                        },
                    }
                }
                Ok(Polled::Unreachable { asked, why }) => match self.unanswered(&mut unreachable_since, asked, &why) {
                    Some(lost) => break lost,
                    None => continue,
                },
                Err(_) => break Ended::Lost(format!("the poller of job {} stopped", job.job_id)),
            };
            unreachable_since = None;
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
    fn a_forgotten_job_is_lost_without_accounting_and_ended_with_it() {
        // This cluster's own answer: no slurmdbd, so no accounting; the job is lost, as it always was.
        let disabled = CommandError::Failed {
            program: "sacct".into(),
            stderr: "Slurm accounting storage is disabled".into(),
        };
        assert_eq!(decide_by_accounting(Err(disabled), "7"), None);
        let missing = CommandError::NotFound {
            program: "sacct".into(),
            path: "/usr/bin".into(),
        };
        assert_eq!(decide_by_accounting(Err(missing), "7"), None);
        assert_eq!(
            decide_by_accounting(Ok(Vec::new()), "7"),
            None,
            "accounting has no record of it"
        );
        assert_eq!(
            decide_by_accounting(Ok(b"7|FAILED|2:0\n".to_vec()), "7"),
            Some(Ended::Exited(Exit {
                code: Some(2),
                signal: None
            }))
        );
        assert_eq!(
            decide_by_accounting(Ok(b"7|CANCELLED by 0|0:9\n".to_vec()), "7"),
            Some(Ended::Exited(Exit {
                code: None,
                signal: Some(9)
            }))
        );
    }
}
