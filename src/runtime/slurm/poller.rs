//! One poller thread per Slurm runtime: every tick, one `squeue` call (per login host) says where each of the
//! runtime's jobs stands, instead of one blocking `scontrol` per job; each job's waiter hears its own answer over a
//! channel and reads the final record itself, once, when the job has left the queue.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::commands::Commands;
use super::scontrol::{JobRecord, is_final};

/// How often the jobs' states are read.
const POLL: Duration = Duration::from_millis(250);

/// What one tick says of a job.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Polled {
    /// Still queued or running, standing thus.
    Stands(JobRecord),
    /// In a final state, or no longer listed: its waiter reads how it ended.
    Left,
    /// Slurm did not answer the question asked at `asked` (the sentence says why).
    Unreachable { asked: Instant, why: String },
}

/// A job being polled, and where its answers go.
struct Watch {
    job_id: String,
    commands: Commands,
    tx: mpsc::Sender<Polled>,
}

#[derive(Default)]
struct Watched {
    jobs: Vec<Watch>,
    /// The thread runs (it is started on the first job).
    running: bool,
}

/// The runtime's poller.
#[derive(Default)]
pub(super) struct Poller {
    watched: Arc<(Mutex<Watched>, Condvar)>,
}

impl Poller {
    /// Polls `job_id` from the next tick on until the receiver is dropped.
    pub(super) fn watch(&self, job_id: &str, commands: Commands) -> std::io::Result<mpsc::Receiver<Polled>> {
        let (tx, rx) = mpsc::channel();
        let (lock, wake) = &*self.watched;
        let mut watched = lock.lock().unwrap_or_else(|e| e.into_inner());
        if !watched.running {
            let shared = self.watched.clone();
            std::thread::Builder::new()
                .name("wf-slurm-poll".into())
                .spawn(move || poll(&shared))?;
            watched.running = true;
        }
        watched.jobs.push(Watch {
            job_id: job_id.to_owned(),
            commands,
            tx,
        });
        wake.notify_all();
        Ok(rx)
    }
}

/// The poller thread: sleeps while no job is watched; else asks once per tick and login host.
fn poll(watched: &(Mutex<Watched>, Condvar)) {
    let (lock, wake) = watched;
    loop {
        {
            let mut w = lock.lock().unwrap_or_else(|e| e.into_inner());
            while w.jobs.is_empty() {
                w = wake.wait(w).unwrap_or_else(|e| e.into_inner());
            }
        }
        std::thread::sleep(POLL);
        // Asked without the lock held: a new job is never kept waiting behind a slow controller.
        let hosts: Vec<(Option<String>, Commands, Vec<String>)> = {
            let w = lock.lock().unwrap_or_else(|e| e.into_inner());
            let mut by_host: HashMap<Option<String>, (Commands, Vec<String>)> = HashMap::new();
            for job in &w.jobs {
                by_host
                    .entry(job.commands.login_host.clone())
                    .or_insert_with(|| (job.commands.clone(), Vec::new()))
                    .1
                    .push(job.job_id.clone());
            }
            by_host.into_iter().map(|(h, (c, ids))| (h, c, ids)).collect()
        };
        let mut answers: HashMap<(Option<String>, String), Polled> = HashMap::new();
        for (host, commands, ids) in hosts {
            let list = ids.join(",");
            let at = Instant::now();
            let asked = commands.run("squeue", &["-h", "-t", "all", "-j", &list, "-o", "%i|%T|%r|%N"]);
            let mut listed = match asked {
                Ok(out) => parse_squeue(&String::from_utf8_lossy(&out.stdout)),
                Err(e) => {
                    for id in ids {
                        answers.insert(
                            (host.clone(), id),
                            Polled::Unreachable {
                                asked: at,
                                why: e.to_string(),
                            },
                        );
                    }
                    continue;
                }
            };
            for id in ids {
                let answer = match listed.remove(&id) {
                    Some(rec) if !is_final(&rec.state) => Polled::Stands(rec),
                    _ => Polled::Left,
                };
                answers.insert((host.clone(), id), answer);
            }
        }
        let mut w = lock.lock().unwrap_or_else(|e| e.into_inner());
        // A job whose waiter is gone (its receiver dropped) is no longer asked about.
        w.jobs.retain(|job| {
            let key = (job.commands.login_host.clone(), job.job_id.clone());
            match answers.remove(&key) {
                Some(answer) => job.tx.send(answer).is_ok(),
                None => true, // Watched since the question left: asked next tick.
            }
        });
    }
}

/// The jobs `squeue -h -o "%i|%T|%r|%N"` lists, by id.
fn parse_squeue(text: &str) -> HashMap<String, JobRecord> {
    let none = |v: &str| (!matches!(v, "" | "None" | "(null)")).then(|| v.to_owned());
    text.lines()
        .filter_map(|line| {
            let mut f = line.trim().split('|');
            let (id, state, reason, node) = (f.next()?, f.next()?, f.next()?, f.next().unwrap_or(""));
            let rec = JobRecord {
                state: state.to_owned(),
                reason: none(reason),
                exit: (0, 0),
                node: none(node),
                comment: None,
            };
            Some((id.to_owned(), rec))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_squeue_answer_says_where_each_job_stands() {
        let listed = parse_squeue("5|PENDING|Resources|\n6|RUNNING|None|vm\n7|COMPLETED|None|vm\n");
        assert_eq!(listed.len(), 3);
        let pending = &listed["5"];
        assert_eq!(
            (
                pending.state.as_str(),
                pending.reason.as_deref(),
                pending.node.as_deref()
            ),
            ("PENDING", Some("Resources"), None)
        );
        let running = &listed["6"];
        assert_eq!((running.reason.as_deref(), running.node.as_deref()), (None, Some("vm")));
        assert!(is_final(&listed["7"].state));
        assert!(parse_squeue("").is_empty());
    }
}
