//! Following an execution: the one place that says how a reader learns that an execution changed and reads it
//! again. Run by this process, it wakes the follower through its `logs_tx` (every chunk of output, every state
//! change); run by another server process, or finished before this one started, it is looked at in the history
//! every [`STORED_LOOK`] (no signal reaches us from another process). Every front end follows through here: waits
//! for an end, log long-polls, progress while waiting, task polls, subscriptions, `run` and `logs --follow`.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::execution::ExecutionState;
use super::status::ExecutionStatus;
use super::view::ExecutionView;

/// How often an execution this process does not run is read again from the history.
pub const STORED_LOOK: Duration = Duration::from_millis(200);

/// How a follower hears that an execution may have changed.
pub enum Wake {
    /// Run here: its `logs_tx`, subscribed before the first read, so a change during that read still wakes.
    Live(watch::Receiver<u64>),
    /// Known from the history: a look every [`STORED_LOOK`].
    Stored,
}

impl Wake {
    pub fn of(view: &ExecutionView) -> Wake {
        match view {
            ExecutionView::Live(e) => Wake::Live(e.logs_tx.subscribe()),
            ExecutionView::Stored(_) => Wake::Stored,
        }
    }

    /// Returns when the execution may have changed; false when a live one never will again.
    pub async fn changed(&mut self) -> bool {
        match self {
            Wake::Live(rx) => rx.changed().await.is_ok(),
            Wake::Stored => {
                tokio::time::sleep(STORED_LOOK).await;
                true
            }
        }
    }

    /// [`Wake::changed`] for a thread outside the async runtime (the `logs --follow` command).
    pub fn changed_blocking(&mut self) -> bool {
        match self {
            Wake::Live(rx) => loop {
                match rx.has_changed() {
                    Ok(true) => {
                        rx.borrow_and_update();
                        return true;
                    }
                    Ok(false) => std::thread::sleep(STORED_LOOK),
                    Err(_) => return false,
                }
            },
            Wake::Stored => {
                std::thread::sleep(STORED_LOOK);
                true
            }
        }
    }
}

/// Reads an execution again: the engine does, from its table or its history (and the read-only commands from
/// the history alone). `reread` may block (a stored execution's record is read from SQLite); an async follower
/// calls it off the async workers.
pub trait Reread: Clone {
    type Error;

    /// The same execution as it stands now.
    fn reread(&self, view: &ExecutionView) -> Result<ExecutionView, Self::Error>;

    /// Its status (with a queue position where the reader knows one).
    fn status(&self, view: &ExecutionView) -> ExecutionStatus;
}

/// What a follower of an execution sees change: its state, its newest line, its place in the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    pub state: ExecutionState,
    pub last_seq: Option<u64>,
    pub queue_position: Option<usize>,
}

impl Seen {
    pub fn of(status: &ExecutionStatus) -> Seen {
        Seen {
            state: status.state,
            last_seq: status.output.last_seq,
            queue_position: status.queue_position,
        }
    }
}

/// One execution followed: woken by [`Wake`], read again by `R` (blocking reads on a blocking thread).
pub struct Follow<R: Reread> {
    reader: R,
    view: ExecutionView,
    wake: Wake,
}

impl<R: Reread> Follow<R> {
    pub fn new(reader: R, view: &ExecutionView) -> Follow<R> {
        Follow {
            reader,
            wake: Wake::of(view),
            view: view.clone(),
        }
    }

    /// The execution as last read.
    pub fn view(&self) -> &ExecutionView {
        &self.view
    }

    /// Returns when the execution may have changed; false when it never will again.
    pub async fn changed(&mut self) -> bool {
        self.wake.changed().await
    }

    /// [`Follow::changed`] for a thread outside the async runtime.
    pub fn changed_blocking(&mut self) -> bool {
        self.wake.changed_blocking()
    }

    /// The execution now, on the calling thread (which may block on the history).
    pub fn now_blocking(&mut self) -> Result<&ExecutionView, R::Error> {
        if let ExecutionView::Stored(_) = self.view {
            self.view = self.reader.reread(&self.view)?;
        }
        Ok(&self.view)
    }
}

/// The async follower: blocking reads go to a blocking thread.
impl<R> Follow<R>
where
    R: Reread + Send + Sync + 'static,
    R::Error: Send + 'static,
{
    /// The execution now: a live one as it is, a stored one read again on a blocking thread.
    pub async fn now(&mut self) -> Result<&ExecutionView, R::Error> {
        if let ExecutionView::Stored(_) = self.view {
            let (reader, view) = (self.reader.clone(), self.view.clone());
            self.view = match tokio::task::spawn_blocking(move || reader.reread(&view)).await {
                Ok(read) => read?,
                // Only when the runtime is going away: read it here then.
                Err(_) => self.reader.reread(&self.view)?,
            };
        }
        Ok(&self.view)
    }

    /// Its status now: a stored one's comes from the history and its log files, read on a blocking thread.
    pub async fn status(&mut self) -> Result<ExecutionStatus, R::Error> {
        if let ExecutionView::Live(_) = self.view {
            return Ok(self.reader.status(&self.view));
        }
        let (reader, view) = (self.reader.clone(), self.view.clone());
        let read = tokio::task::spawn_blocking(move || {
            let now = reader.reread(&view)?;
            let status = reader.status(&now);
            Ok((now, status))
        })
        .await;
        let (now, status) = match read {
            Ok(read) => read?,
            Err(_) => {
                let now = self.reader.reread(&self.view)?;
                let status = self.reader.status(&now);
                (now, status)
            }
        };
        self.view = now;
        Ok(status)
    }

    /// Waits until the execution is final, `deadline` passes or `stop` completes; returns whether it is final.
    pub async fn until_final(&mut self, deadline: Instant, stop: impl Future<Output = ()>) -> Result<bool, R::Error> {
        let mut stop = std::pin::pin!(stop);
        loop {
            if self.now().await?.state().is_terminal() {
                return Ok(true);
            }
            tokio::select! {
                more = self.wake.changed() => if !more { break },
                _ = tokio::time::sleep_until(deadline) => break,
                _ = &mut stop => break,
            }
        }
        Ok(self.now().await?.state().is_terminal())
    }

    /// Waits for the next change a follower sees after `last` (which it updates), until `stop` fires: false
    /// when nothing more will change (the execution is final) or `stop` fired.
    pub async fn next_change(&mut self, last: &mut Seen, stop: &CancellationToken) -> Result<bool, R::Error> {
        while !last.state.is_terminal() {
            tokio::select! {
                _ = stop.cancelled() => return Ok(false),
                more = self.wake.changed() => if !more { return Ok(false) },
            }
            let now = Seen::of(&self.status().await?);
            if now != *last {
                *last = now;
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex, mpsc};

    use super::*;
    use crate::engine::view::StoredExecution;
    use crate::logs::LogDir;
    use crate::store::ExecutionRecord;

    fn stored(state: ExecutionState) -> ExecutionView {
        ExecutionView::Stored(Arc::new(StoredExecution {
            record: ExecutionRecord {
                state,
                ..ExecutionRecord::queued(uuid::Uuid::new_v4(), "w", vec!["w".into()], "another server", 0)
            },
            logs: LogDir::open(std::path::Path::new("/nonexistent/wfmcp-follow-test")),
        }))
    }

    /// A history whose reads block until the async side lets them go: read on the only async worker, a read
    /// would never be let go (a hang guard of 20 s, not a timing assertion).
    #[derive(Clone)]
    struct GatedHistory {
        release: Arc<Mutex<mpsc::Receiver<()>>>,
        blocked_a_worker: Arc<AtomicBool>,
    }

    impl Reread for GatedHistory {
        type Error = Infallible;

        fn reread(&self, view: &ExecutionView) -> Result<ExecutionView, Infallible> {
            let released = self.release.lock().unwrap().recv_timeout(Duration::from_secs(20));
            self.blocked_a_worker.fetch_or(released.is_err(), Ordering::SeqCst);
            let mut now = stored(ExecutionState::Succeeded);
            if let (ExecutionView::Stored(s), ExecutionView::Stored(was)) = (&mut now, view) {
                Arc::get_mut(s).unwrap().record.id = was.record.id;
            }
            Ok(now)
        }

        fn status(&self, view: &ExecutionView) -> ExecutionStatus {
            view.status()
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_stored_execution_is_read_again_off_the_async_workers() {
        let (release, gate) = mpsc::channel();
        let history = GatedHistory {
            release: Arc::new(Mutex::new(gate)),
            blocked_a_worker: Arc::new(AtomicBool::new(false)),
        };
        let view = stored(ExecutionState::Running);
        let mut follow = Follow::new(history.clone(), &view);
        // Runs only while the follower waits without holding the one worker.
        tokio::spawn(async move { release.send(()).unwrap() });
        let deadline = Instant::now() + Duration::from_secs(60);
        let Ok(done) = follow.until_final(deadline, std::future::pending()).await;
        assert!(done, "the record read again is final");
        assert_eq!(follow.view().id(), view.id());
        assert!(
            !history.blocked_a_worker.load(Ordering::SeqCst),
            "the history was read on the async worker"
        );
    }
}
