//! The launcher: one long-lived spawner thread runs every start job (an execution started through the runtime,
//! then given its drain threads, supervisor thread and timeout). Spawning on one thread keeps its latency off the
//! async workers and serializes it with orphan reaping (the child registry is held while spawning).

use std::sync::{Mutex, mpsc};

pub(super) type Job = Box<dyn FnOnce() + Send>;

/// The spawner thread's queue of jobs.
pub(super) struct Spawner(Mutex<mpsc::Sender<Job>>);

impl Spawner {
    /// Starts the spawner thread; it runs jobs until the spawner is dropped.
    pub(super) fn start() -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new().name("wf-spawner".into()).spawn(move || {
            for job in rx {
                job();
            }
        })?;
        Ok(Spawner(Mutex::new(tx)))
    }

    /// Queues a job; false when the spawner thread is gone.
    pub(super) fn submit(&self, job: Job) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).send(job).is_ok()
    }
}
