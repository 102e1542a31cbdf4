//! Following an execution: the one place that says how a reader learns that an execution changed and reads it
//! again. Run by this process, it wakes the follower through its `logs_tx` (every chunk of output, every state
//! change); run by another process, or finished before this one started, it wakes on a change to its log folder
//! or to the history (file-change notification, `proc::notify`), with a look every [`STORED_BACKSTOP`] all the
//! same, or every [`STORED_LOOK`] where files cannot be watched. Every front end follows through here: waits for
//! an end, log long-polls, progress while waiting, task polls, subscriptions, `run` and `logs --follow`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::execution::ExecutionState;
use super::status::ExecutionStatus;
use super::view::ExecutionView;
use crate::proc::notify::Notice;

/// How often an execution this process does not run is read again where its files cannot be watched.
pub const STORED_LOOK: Duration = Duration::from_millis(200);

/// How often it is read again while its files are watched: some changes leave no file behind (an owner killed
/// leaves its record `running` until a reader sees the owner gone).
pub const STORED_BACKSTOP: Duration = Duration::from_secs(1);

/// The least time between two wakes by file changes: a flood of output reads a stored execution again at most
/// this often, not once per write.
const STORED_GAP: Duration = Duration::from_millis(5);

/// How a follower hears that an execution may have changed.
pub enum Wake {
    /// Run here: its `logs_tx`, subscribed before the first read, so a change during that read still wakes.
    Live(watch::Receiver<u64>),
    /// Known from the history: its files watched from before the first read, a look now and then.
    Stored(StoredWake),
}

impl Wake {
    /// How to follow `view`; `history` are the files a write to the history changes.
    pub fn of(view: &ExecutionView, history: &[PathBuf]) -> Wake {
        match view {
            ExecutionView::Live(e) => Wake::Live(e.logs_tx.subscribe()),
            ExecutionView::Stored(s) => Wake::Stored(StoredWake::new(s.logs.path(), history, STORED_BACKSTOP)),
        }
    }

    /// Returns when the execution may have changed; false when a live one never will again.
    pub async fn changed(&mut self) -> bool {
        match self {
            Wake::Live(rx) => rx.changed().await.is_ok(),
            Wake::Stored(s) => {
                s.changed().await;
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
            Wake::Stored(s) => {
                s.changed_blocking();
                true
            }
        }
    }
}

/// Says once per process that files cannot be watched, and what that costs.
fn cannot_watch(dir: &Path, error: &std::io::Error) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        tracing::warn!(
            directory = %dir.display(),
            error = %error,
            "cannot watch files for changes; executions other processes run are read again every {} ms instead",
            STORED_LOOK.as_millis()
        );
    });
}

/// Watches `files` in `notice`, each folder once; the folder that cannot be watched, and why.
fn watch_files(notice: &mut Notice, files: &[PathBuf]) -> Result<(), (PathBuf, std::io::Error)> {
    let mut folders: Vec<(&Path, Vec<&std::ffi::OsStr>)> = Vec::new();
    for file in files {
        let (Some(dir), Some(name)) = (file.parent(), file.file_name()) else {
            continue;
        };
        match folders.iter_mut().find(|(d, _)| *d == dir) {
            Some((_, names)) => names.push(name),
            None => folders.push((dir, vec![name])),
        }
    }
    for (dir, names) in folders {
        notice.watch(dir, &names).map_err(|e| (dir.to_owned(), e))?;
    }
    Ok(())
}

/// A notice rung by every write to the history (`files`, see [`Reread::history_files`]); none where they cannot
/// be watched (said once).
pub(super) fn history_notice(files: &[PathBuf]) -> Option<Notice> {
    let mut notice = Notice::new();
    match watch_files(&mut notice, files) {
        Ok(()) => Some(notice),
        Err((dir, e)) => {
            cannot_watch(&dir, &e);
            None
        }
    }
}

/// The wake of an execution known from the history: a change to its log folder (lines written, its folder
/// made) or to the history (its state, its progress), or the backstop's look.
pub struct StoredWake {
    /// None where the files cannot be watched: then a look every [`STORED_LOOK`].
    notice: Option<Notice>,
    backstop: Duration,
    log: PathBuf,
    /// When a file change last woke it.
    woke: Option<std::time::Instant>,
    /// Whether a file change woke it yet (said once, at debug level).
    told: bool,
}

impl StoredWake {
    /// Watches the log folder `log` (or, until it exists, its creation) and the `history` files, from now on.
    pub fn new(log: &Path, history: &[PathBuf], backstop: Duration) -> StoredWake {
        let mut notice = Notice::new();
        let watched = notice
            .watch_folder(log)
            .map_err(|e| (log.to_owned(), e))
            .and_then(|()| watch_files(&mut notice, history));
        let notice = match watched {
            Ok(()) => Some(notice),
            Err((dir, e)) => {
                cannot_watch(&dir, &e);
                None
            }
        };
        StoredWake {
            notice,
            backstop,
            log: log.to_owned(),
            woke: None,
            told: false,
        }
    }

    /// What comes after a file change woke it: said once; a wake too soon after the last waits out the gap.
    fn rung(&mut self) -> Option<Duration> {
        if !self.told {
            self.told = true;
            tracing::debug!(log = %self.log.display(), "a file change woke the follower of a stored execution");
        }
        let now = std::time::Instant::now();
        let wait = self.woke.map(|w| (w + STORED_GAP).saturating_duration_since(now));
        self.woke = Some(now + wait.unwrap_or_default());
        wait.filter(|w| !w.is_zero())
    }

    async fn changed(&mut self) {
        let Some(notice) = &mut self.notice else {
            tokio::time::sleep(STORED_LOOK).await;
            return;
        };
        tokio::select! {
            () = notice.changed() => {
                if let Some(gap) = self.rung() {
                    tokio::time::sleep(gap).await;
                }
            }
            () = tokio::time::sleep(self.backstop) => {}
        }
    }

    fn changed_blocking(&mut self) {
        let Some(notice) = &mut self.notice else {
            std::thread::sleep(STORED_LOOK);
            return;
        };
        if notice.changed_blocking(self.backstop)
            && let Some(gap) = self.rung()
        {
            std::thread::sleep(gap);
        }
    }
}

/// Wakes one watcher of many stored executions (a session's resource subscriptions, its list): a change to any
/// of their log folders, or a write to the history.
pub struct StoredChanges {
    history: Vec<PathBuf>,
    /// None until something is watched, or where files cannot be watched.
    notice: Option<Notice>,
    /// The log folders watched now.
    watched: Option<Vec<PathBuf>>,
}

impl StoredChanges {
    /// Watches nothing yet; `history` are the files a write to the history changes.
    pub fn new(history: Vec<PathBuf>) -> StoredChanges {
        StoredChanges {
            history,
            notice: None,
            watched: None,
        }
    }

    /// Watches the log folders of `views` (the stored ones) and the history from now on, in place of what it
    /// watched before; the new watches start before the old ones end, so no change between is missed.
    pub fn watch<'a>(&mut self, views: impl Iterator<Item = &'a ExecutionView>) {
        let mut logs: Vec<PathBuf> = views
            .filter_map(|v| match v {
                ExecutionView::Stored(s) => Some(s.logs.path().to_owned()),
                ExecutionView::Live(_) => None,
            })
            .collect();
        logs.sort();
        logs.dedup();
        if self.watched.as_ref() == Some(&logs) {
            return;
        }
        let mut notice = Notice::new();
        let watched = logs
            .iter()
            .try_for_each(|log| notice.watch_folder(log).map_err(|e| (log.clone(), e)))
            .and_then(|()| watch_files(&mut notice, &self.history));
        self.notice = match watched {
            Ok(()) => Some(notice),
            Err((dir, e)) => {
                cannot_watch(&dir, &e);
                None
            }
        };
        self.watched = Some(logs);
    }

    /// Whether changes are heard (else only a look sees them).
    pub fn hears(&self) -> bool {
        self.notice.is_some()
    }

    /// Returns when a watched file changed; never when nothing is heard.
    pub async fn changed(&mut self) {
        match &mut self.notice {
            Some(notice) => notice.changed().await,
            None => std::future::pending().await,
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

    /// The files a write to the history changes (none without a history): a stored execution's follower
    /// watches them.
    fn history_files(&self) -> Vec<PathBuf>;
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
            wake: Wake::of(view, &reader.history_files()),
            reader,
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

        fn history_files(&self) -> Vec<PathBuf> {
            Vec::new()
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

    /// A folder of its own under the temporary directory.
    fn folder(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wfmcp-follow-{}-{label}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Far longer than any test waits: a follower that returns woke on a file change, not on its look.
    const NEVER: Duration = Duration::from_secs(3600);
    const HANG: Duration = Duration::from_secs(20);

    #[tokio::test]
    async fn a_stored_follower_wakes_on_a_new_line_without_waiting_for_its_look() {
        let root = folder("line");
        let log = root.join("logs").join("id");
        std::fs::create_dir_all(&log).unwrap();
        std::fs::write(log.join("0.log"), "first\n").unwrap();
        let mut wake = StoredWake::new(&log, &[], NEVER);
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(log.join("0.log"))
                .unwrap();
            f.write_all(b"second\n").unwrap();
        });
        tokio::time::timeout(HANG, wake.changed())
            .await
            .expect("a line written by another process wakes its follower");
        writer.join().unwrap();
        let _ = std::fs::remove_dir_all(&root);
    }

    #[tokio::test]
    async fn a_stored_follower_wakes_when_its_log_folder_is_made_and_then_on_its_lines() {
        let root = folder("made");
        let logs = root.join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let log = logs.join("id");
        let mut wake = StoredWake::new(&log, &[], NEVER);
        std::fs::create_dir(&log).unwrap();
        tokio::time::timeout(HANG, wake.changed())
            .await
            .expect("its folder made wakes it");
        std::fs::write(log.join("0.log"), "first\n").unwrap();
        tokio::time::timeout(HANG, wake.changed())
            .await
            .expect("a line in it wakes it");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_stored_follower_on_a_plain_thread_wakes_on_a_history_write() {
        let root = folder("history");
        let log = root.join("logs").join("id");
        std::fs::create_dir_all(&log).unwrap();
        let history = [root.join("history.db"), root.join("history.db-wal")];
        let mut wake = StoredWake::new(&log, &history, NEVER);
        let writer = std::thread::spawn(move || std::fs::write(root.join("history.db-wal"), "commit").unwrap());
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            wake.changed_blocking();
            let _ = done.send(());
        });
        finished
            .recv_timeout(HANG)
            .expect("a write to the history wakes a follower on a plain thread");
        writer.join().unwrap();
    }

    #[tokio::test]
    async fn a_log_folder_that_cannot_be_watched_is_still_followed_by_looking() {
        let root = folder("unwatchable");
        // Not a folder: inotify refuses it (ENOTDIR), as a filesystem without inotify would.
        let log = root.join("plain");
        std::fs::write(&log, "x").unwrap();
        let mut wake = StoredWake::new(&log, &[], NEVER);
        assert!(wake.notice.is_none(), "falls back to the look");
        tokio::time::timeout(HANG, wake.changed())
            .await
            .expect("the look still wakes it");
        let _ = std::fs::remove_dir_all(&root);
    }
}
