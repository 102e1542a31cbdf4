//! File-change notification: one inotify instance for the whole process, shared by every waiter on files another
//! process writes (the default per-user limit is 128 instances, and dozens of processes may share a machine).
//! A [`Notice`] is one waiter: the folders it watches and a count of the changes seen in them. A folder is
//! watched while at least one notice needs it (watches are counted, and removed with the last). One std thread
//! reads the events and rings the notices; a notice is waited on from an async task or from a plain thread.

use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// What a watched folder reports: a file in it written, closed, created, moved in or deleted, and the folder
/// itself deleted or moved (the kernel adds `IN_IGNORED` when a watch ends, `IN_Q_OVERFLOW` when events were lost).
const EVENTS: u32 = libc::IN_MODIFY
    | libc::IN_CLOSE_WRITE
    | libc::IN_CREATE
    | libc::IN_MOVED_TO
    | libc::IN_DELETE
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR;

/// The events that make a file or folder appear under its name.
const APPEARED: u32 = libc::IN_CREATE | libc::IN_MOVED_TO;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Rings a notice: a count of the changes seen, and its waiters on both sides (threads and tasks).
#[derive(Default)]
struct Bell {
    rings: Mutex<u64>,
    threads: Condvar,
    tasks: tokio::sync::Notify,
}

impl Bell {
    fn ring(&self) {
        *lock(&self.rings) += 1;
        self.threads.notify_all();
        self.tasks.notify_waiters();
    }
}

/// One notice's interest in one watched folder.
struct Sub {
    id: u64,
    /// The files whose changes ring it (any file in the folder when empty; the folder's own end always does).
    names: Vec<OsString>,
    /// A folder of this name is awaited here: once it appears, it is watched in place of this one.
    awaiting: Option<OsString>,
    bell: Arc<Bell>,
}

/// A watched folder and the notices watching it.
struct Watched {
    path: PathBuf,
    subs: Vec<Sub>,
}

#[derive(Default)]
struct Watches {
    /// By watch descriptor (one per folder: the kernel gives the same one for the same folder).
    folders: HashMap<i32, Watched>,
    /// Each sub's watch descriptor.
    subs: HashMap<u64, i32>,
    next: u64,
}

/// The process's inotify instance and its watches.
struct Inotify {
    fd: OwnedFd,
    watches: Mutex<Watches>,
}

/// The instance, made on first use, with the thread that reads its events; its error (an errno) otherwise, given
/// to every caller.
fn inotify() -> io::Result<&'static Inotify> {
    static INOTIFY: OnceLock<Result<Inotify, i32>> = OnceLock::new();
    let made = INOTIFY.get_or_init(|| {
        // SAFETY: inotify_init1 returns a new descriptor we own, or -1.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO));
        }
        Ok(Inotify {
            // SAFETY: the descriptor was just opened and is owned by nothing else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            watches: Mutex::default(),
        })
    });
    let inotify = made.as_ref().map_err(|&e| io::Error::from_raw_os_error(e))?;
    static READER: OnceLock<Result<(), i32>> = OnceLock::new();
    READER
        .get_or_init(|| {
            std::thread::Builder::new()
                .name("wf-notify".into())
                .spawn(move || inotify.read_events())
                .map(drop)
                .map_err(|e| e.raw_os_error().unwrap_or(libc::EAGAIN))
        })
        .map_err(io::Error::from_raw_os_error)?;
    Ok(inotify)
}

impl Inotify {
    fn add_watch(&self, dir: &Path) -> io::Result<i32> {
        let path =
            CString::new(dir.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a valid descriptor and a NUL-terminated path that outlives the call.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), path.as_ptr(), EVENTS) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(wd)
    }

    /// Adds a sub on folder `dir`; its id.
    fn subscribe(&self, w: &mut Watches, dir: &Path, mut sub: Sub) -> io::Result<u64> {
        let wd = self.add_watch(dir)?;
        sub.id = w.next;
        w.next += 1;
        w.subs.insert(sub.id, wd);
        let id = sub.id;
        w.folders
            .entry(wd)
            .or_insert_with(|| Watched {
                path: dir.to_owned(),
                subs: Vec::new(),
            })
            .subs
            .push(sub);
        Ok(id)
    }

    /// Removes a sub, and the watch with its last sub.
    fn release(&self, w: &mut Watches, id: u64) {
        let Some(wd) = w.subs.remove(&id) else { return };
        let Some(folder) = w.folders.get_mut(&wd) else { return };
        let before = folder.subs.len();
        folder.subs.retain(|s| s.id != id);
        if folder.subs.is_empty() && before > 0 {
            w.folders.remove(&wd);
            // SAFETY: a valid descriptor; a watch the kernel already ended is an error we have nothing to do about.
            unsafe { libc::inotify_rm_watch(self.fd.as_raw_fd(), wd) };
        }
    }

    /// The reader thread: rings the notices each event concerns, forever (the instance lives as long as the
    /// process).
    fn read_events(&self) {
        // Room for hundreds of events (each 16 bytes and its name); u64s keep the events aligned.
        let mut buf = vec![0u64; 8192];
        loop {
            // SAFETY: the buffer is valid for writes of its whole length.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len() * 8) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::warn!(error = %e, "cannot read file-change events; followers fall back to reading again");
                return;
            }
            // SAFETY: the first `n` bytes were just written by read(2).
            let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n as usize) };
            for bell in self.route(bytes) {
                bell.ring();
            }
        }
    }

    /// The bells a batch of events rings (each once), and the awaited folders that appeared watched in place of
    /// their parents.
    fn route(&self, mut bytes: &[u8]) -> Vec<Arc<Bell>> {
        const HEAD: usize = std::mem::size_of::<libc::inotify_event>();
        let mut rung: Vec<Arc<Bell>> = Vec::new();
        // Each bell once, however many of its folders changed (hundreds of followers may ring at once).
        let mut seen = std::collections::HashSet::new();
        let mut ring = |bell: &Arc<Bell>| {
            if seen.insert(Arc::as_ptr(bell)) {
                rung.push(bell.clone());
            }
        };
        let mut w = lock(&self.watches);
        let mut appeared: Vec<(i32, u64, PathBuf)> = Vec::new();
        while bytes.len() >= HEAD {
            let field = |at: usize| u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap());
            let (wd, mask, len) = (field(0) as i32, field(4), field(12) as usize);
            let name = bytes.get(HEAD..HEAD + len).unwrap_or_default();
            let name = OsStr::from_bytes(&name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())]);
            bytes = bytes.get(HEAD + len..).unwrap_or_default();
            if mask & libc::IN_Q_OVERFLOW != 0 {
                // Events were lost: every notice may have missed one.
                w.folders.values().flat_map(|f| &f.subs).for_each(|s| ring(&s.bell));
                continue;
            }
            let Some(folder) = w.folders.get(&wd) else { continue };
            for sub in &folder.subs {
                if name.is_empty() || sub.names.is_empty() || sub.names.iter().any(|n| n == name) {
                    ring(&sub.bell);
                }
                if mask & APPEARED != 0 && sub.awaiting.as_deref() == Some(name) {
                    appeared.push((wd, sub.id, folder.path.join(name)));
                }
            }
            if mask & libc::IN_IGNORED != 0 {
                // The folder is gone (or unwatched): its subs watch nothing now.
                if let Some(gone) = w.folders.remove(&wd) {
                    for sub in gone.subs {
                        w.subs.remove(&sub.id);
                    }
                }
            }
        }
        for (wd, id, path) in appeared {
            self.move_to(&mut w, wd, id, &path);
        }
        rung
    }

    /// Watches the folder `path` that appeared for the sub `id` that awaited it in `wd`, in place of that. When it
    /// cannot be watched (gone again, or a limit), the sub keeps waiting in its parent.
    fn move_to(&self, w: &mut Watches, wd: i32, id: u64, path: &Path) {
        let Ok(new) = self.add_watch(path) else { return };
        let Some(folder) = w.folders.get_mut(&wd) else { return };
        let Some(at) = folder.subs.iter().position(|s| s.id == id) else {
            return;
        };
        let mut sub = folder.subs.remove(at);
        let emptied = folder.subs.is_empty();
        if emptied {
            w.folders.remove(&wd);
            if new != wd {
                // SAFETY: a valid descriptor.
                unsafe { libc::inotify_rm_watch(self.fd.as_raw_fd(), wd) };
            }
        }
        sub.names.clear();
        sub.awaiting = None;
        w.subs.insert(id, new);
        w.folders
            .entry(new)
            .or_insert_with(|| Watched {
                path: path.to_owned(),
                subs: Vec::new(),
            })
            .subs
            .push(sub);
    }
}

/// One waiter on file changes: the folders it watches, rung by a change in any of them. Dropping it releases
/// its watches.
pub struct Notice {
    bell: Arc<Bell>,
    /// The rings already seen by a wait.
    seen: u64,
    subs: Vec<u64>,
}

impl Default for Notice {
    fn default() -> Self {
        Notice::new()
    }
}

impl Notice {
    /// A notice watching nothing yet.
    pub fn new() -> Notice {
        Notice {
            bell: Arc::default(),
            seen: 0,
            subs: Vec::new(),
        }
    }

    fn sub(&self, names: Vec<OsString>, awaiting: Option<OsString>) -> Sub {
        Sub {
            id: 0,
            names,
            awaiting,
            bell: self.bell.clone(),
        }
    }

    /// Watches the folder `dir` for changes to the files `names` in it (to any file when empty). An error when
    /// this process cannot use inotify, or `dir` cannot be watched (missing, a limit, a filesystem that refuses).
    pub fn watch(&mut self, dir: &Path, names: &[&OsStr]) -> io::Result<()> {
        let inotify = inotify()?;
        let names = names.iter().map(|&n| n.to_owned()).collect();
        let sub = self.sub(names, None);
        let id = inotify.subscribe(&mut lock(&inotify.watches), dir, sub)?;
        self.subs.push(id);
        Ok(())
    }

    /// Watches the folder `dir` for a change to any file in it. While `dir` does not exist, its parent is watched
    /// for it to appear, and then `dir` in its place (the notice rings when it appears).
    pub fn watch_folder(&mut self, dir: &Path) -> io::Result<()> {
        let inotify = inotify()?;
        let mut w = lock(&inotify.watches);
        let missing = match inotify.subscribe(&mut w, dir, self.sub(Vec::new(), None)) {
            Ok(id) => {
                self.subs.push(id);
                return Ok(());
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => e,
            Err(e) => return Err(e),
        };
        let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
            return Err(missing);
        };
        let waiting = inotify.subscribe(&mut w, parent, self.sub(vec![name.to_owned()], Some(name.to_owned())))?;
        // It may have appeared between the two: then it is watched itself (and the notice rung, for what was
        // written before).
        match inotify.subscribe(&mut w, dir, self.sub(Vec::new(), None)) {
            Ok(id) => {
                inotify.release(&mut w, waiting);
                self.subs.push(id);
                self.bell.ring();
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => self.subs.push(waiting),
            Err(e) => {
                inotify.release(&mut w, waiting);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Returns once a watched folder changed since the last wait returned (or since the notice was made).
    pub async fn changed(&mut self) {
        loop {
            let notified = self.bell.tasks.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the count is read: a ring after the read wakes it.
            notified.as_mut().enable();
            let rings = *lock(&self.bell.rings);
            if rings > self.seen {
                self.seen = rings;
                return;
            }
            notified.await;
        }
    }

    /// [`Notice::changed`] on a plain thread, for at most `timeout`: whether a change was seen.
    pub fn changed_blocking(&mut self, timeout: Duration) -> bool {
        let rings = lock(&self.bell.rings);
        let seen = self.seen;
        let (rings, _) = self
            .bell
            .threads
            .wait_timeout_while(rings, timeout, |r| *r <= seen)
            .unwrap_or_else(|e| e.into_inner());
        if *rings > seen {
            self.seen = *rings;
            return true;
        }
        false
    }
}

impl Drop for Notice {
    fn drop(&mut self) {
        if self.subs.is_empty() {
            return;
        }
        if let Ok(inotify) = inotify() {
            let mut w = lock(&inotify.watches);
            for id in self.subs.drain(..) {
                inotify.release(&mut w, id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    const HANG: Duration = Duration::from_secs(20);

    fn folder(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wfmcp-notify-{}-{label}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// How many watches this process's inotify instance holds on the folder `dir` (from the kernel's own
    /// account in `/proc/self/fdinfo`).
    fn kernel_watches(dir: &Path) -> usize {
        let ino = format!("ino:{:x} ", std::fs::metadata(dir).unwrap().ino());
        let fd = inotify().unwrap().fd.as_raw_fd();
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
        info.lines()
            .filter(|l| l.starts_with("inotify ") && l.contains(&ino))
            .count()
    }

    #[test]
    fn a_file_written_in_a_watched_folder_rings_its_waiter() {
        let dir = folder("write");
        std::fs::write(dir.join("log"), "a\n").unwrap();
        let mut notice = Notice::new();
        notice.watch(&dir, &[]).unwrap();
        let writer = {
            let dir = dir.clone();
            std::thread::spawn(move || {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new().append(true).open(dir.join("log")).unwrap();
                f.write_all(b"b\n").unwrap();
            })
        };
        assert!(notice.changed_blocking(HANG), "an append to a file in the folder rings");
        writer.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_the_named_files_ring() {
        let dir = folder("names");
        let mut notice = Notice::new();
        notice.watch(&dir, &[OsStr::new("wanted")]).unwrap();
        // A second notice on the whole folder: once it has seen `other`, so has the first.
        let mut all = Notice::new();
        all.watch(&dir, &[]).unwrap();
        std::fs::write(dir.join("other"), "x").unwrap();
        assert!(all.changed_blocking(HANG));
        assert!(
            !notice.changed_blocking(Duration::ZERO),
            "a file it did not name rang it"
        );
        std::fs::write(dir.join("wanted"), "x").unwrap();
        assert!(notice.changed_blocking(HANG), "the named file rings");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_folder_made_after_the_watch_started_is_followed() {
        let parent = folder("later");
        let dir = parent.join("log");
        let mut notice = Notice::new();
        notice.watch_folder(&dir).unwrap();
        std::fs::create_dir(&dir).unwrap();
        tokio::time::timeout(HANG, notice.changed())
            .await
            .expect("its creation rings");
        // The folder itself is watched now: a file written in it rings.
        std::fs::write(dir.join("00.log"), "line\n").unwrap();
        tokio::time::timeout(HANG, notice.changed())
            .await
            .expect("a write in it rings");
        assert_eq!(kernel_watches(&dir), 1);
        assert_eq!(kernel_watches(&parent), 0, "the parent is no longer watched for it");
        drop(notice);
        let _ = std::fs::remove_dir_all(&parent);
    }

    #[test]
    fn a_folder_is_watched_once_and_released_with_its_last_waiter() {
        let dir = folder("count");
        let (mut a, mut b) = (Notice::new(), Notice::new());
        a.watch(&dir, &[]).unwrap();
        b.watch_folder(&dir).unwrap();
        assert_eq!(kernel_watches(&dir), 1, "one watch for both");
        drop(a);
        assert_eq!(kernel_watches(&dir), 1, "still watched for the other");
        drop(b);
        assert_eq!(kernel_watches(&dir), 0, "released with the last");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_folder_that_cannot_be_watched_is_an_error() {
        let dir = folder("file");
        std::fs::write(dir.join("plain"), "x").unwrap();
        let err = Notice::new().watch_folder(&dir.join("plain")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTDIR));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
