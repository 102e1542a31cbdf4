//! The drain threads: one std thread per pipe reads a chunk, splits it into lines and appends the whole chunk to
//! the execution's log under one short lock, then wakes followers once. A drain thread holds only its own
//! pre-cloned handles (`logs_buffer`, `logs_tx`, the progress tracker), never the executions map, so a pipe is
//! always read at full speed and a child never blocks on a full pipe.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime};

use tokio::sync::watch;

use super::progress::{EVENT_PREFIX, ProgressTracker, WorkflowEvent, parse_event};
use crate::logs::log::ExecutionLog;
use crate::logs::render::needs_render;
use crate::logs::scan::newline_positions;
use crate::logs::segment::{Stream, flags};

const READ_CHUNK: usize = 256 * 1024;
const PIPE_BYTES: usize = 1 << 20;
/// How often a drain thread blocked on a silent pipe checks whether it was told to give up.
const POLL_INTERVAL_MS: i32 = 100;

/// The handles a drain thread is given at spawn time.
#[derive(Clone)]
pub struct DrainHandles {
    pub logs_buffer: Arc<ExecutionLog>,
    pub logs_tx: Arc<watch::Sender<u64>>,
    pub progress: Arc<ProgressTracker>,
    pub sync: Arc<DrainSync>,
}

/// Lets the supervisor wait for both drain threads with a deadline, and tell them to give up on a pipe that a
/// descendant outside our reach keeps open.
#[derive(Debug, Default)]
pub struct DrainSync {
    open: Mutex<[bool; 2]>,
    cv: Condvar,
    abandon: AtomicBool,
}

impl DrainSync {
    pub fn new() -> Arc<Self> {
        Arc::new(DrainSync {
            open: Mutex::new([true, true]),
            ..Default::default()
        })
    }

    fn finished(&self, stream: Stream) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open[stream as usize] = false;
        self.cv.notify_all();
    }

    /// Waits until both streams reached EOF or `deadline` passes; returns the streams still open.
    pub fn wait_until(&self, deadline: Instant) -> Vec<Stream> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let still: Vec<Stream> = [Stream::Stdout, Stream::Stderr]
                .into_iter()
                .filter(|s| open[*s as usize])
                .collect();
            let now = Instant::now();
            if still.is_empty() || now >= deadline {
                return still;
            }
            open = self
                .cv
                .wait_timeout(open, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Tells the drain threads to stop reading (they exit within [`POLL_INTERVAL_MS`]).
    pub fn abandon(&self) {
        self.abandon.store(true, Ordering::Relaxed);
    }

    fn abandoned(&self) -> bool {
        self.abandon.load(Ordering::Relaxed)
    }
}

/// Starts the drain thread of one pipe.
pub fn spawn_drain(stream: Stream, pipe: File, handles: DrainHandles) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("drain-{}", stream.as_str()))
        .stack_size(256 * 1024)
        .spawn(move || {
            drain(stream, pipe, &handles);
            handles.sync.finished(stream);
            handles.logs_tx.send_modify(|g| *g = g.wrapping_add(1));
        })
}

/// Waits until `fd` is readable (or at EOF/error); `false` on timeout.
fn poll_readable(fd: i32, timeout_ms: i32) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    match rc {
        0 => Ok(false),
        n if n > 0 => Ok(true),
        _ => Err(io::Error::last_os_error()),
    }
}

/// The longest prefix of `bytes` no longer than `max` that does not end inside a UTF-8 sequence.
fn utf8_cut(bytes: &[u8], max: usize) -> usize {
    let mut cut = max.min(bytes.len());
    // Back off over continuation bytes (at most 3) so a multi-byte character stays whole.
    for _ in 0..3 {
        if cut == 0 || cut >= bytes.len() || bytes[cut] & 0xC0 != 0x80 {
            break;
        }
        cut -= 1;
    }
    let mid_character = cut < bytes.len() && bytes[cut] & 0xC0 == 0x80;
    if cut == 0 || mid_character {
        // Not UTF-8 here at all: cut where asked.
        max.min(bytes.len())
    } else {
        cut
    }
}

/// Flags of one line; parses it as an event when it is one.
#[inline]
fn line_flags(
    stream: Stream,
    line: &[u8],
    check_render: bool,
    events: &mut Vec<WorkflowEvent>,
    malformed: &mut u64,
) -> u8 {
    let mut f = 0;
    if check_render && needs_render(line) {
        f |= flags::NEEDS_RENDER;
    }
    if stream == Stream::Stderr
        && let Some(json) = line.strip_prefix(EVENT_PREFIX)
    {
        match parse_event(json) {
            Some(e) => {
                events.push(e);
                f |= flags::EVENT;
            }
            None => *malformed += 1,
        }
    }
    f
}

/// Flags of each line of a chunk, or an empty list when every line has none (the common stdout case).
fn chunk_flags(
    stream: Stream,
    buf: &[u8],
    ends: &[u32],
    flags_out: &mut Vec<u8>,
    events: &mut Vec<WorkflowEvent>,
    malformed: &mut u64,
) {
    flags_out.clear();
    let check_render = needs_render(&buf[..ends.last().map_or(0, |e| *e as usize)]);
    if stream == Stream::Stdout && !check_render {
        return;
    }
    let mut start = 0;
    for &end in ends {
        let line = &buf[start..end as usize];
        flags_out.push(line_flags(stream, line, check_render, events, malformed));
        start = end as usize + 1;
    }
    if flags_out.iter().all(|f| *f == 0) {
        flags_out.clear();
    }
}

/// Length of the longest line of a chunk (each line ends at its `ends` entry).
fn longest_line(ends: &[u32]) -> usize {
    let mut start = 0u32;
    let mut longest = 0u32;
    for &end in ends {
        longest = longest.max(end - start);
        start = end + 1;
    }
    longest as usize
}

/// The rare path: a chunk holding a line longer than the max line length. Such a line is stored as `partial`
/// pieces cut between UTF-8 characters (it is never parsed as an event).
#[expect(
    clippy::too_many_arguments,
    reason = "the drain loop's state, passed along for one rare case"
)]
fn append_splitting_long_lines(
    stream: Stream,
    chunk: &[u8],
    ends: &[u32],
    max_line: usize,
    bytes_read: u64,
    at: SystemTime,
    h: &DrainHandles,
    events: &mut Vec<WorkflowEvent>,
    malformed: &mut u64,
) {
    let mut data = Vec::with_capacity(chunk.len() + chunk.len() / max_line + 1);
    let mut new_ends = Vec::with_capacity(ends.len());
    let mut new_flags = Vec::with_capacity(ends.len());
    let mut start = 0;
    for &end in ends {
        let mut line = &chunk[start..end as usize];
        start = end as usize + 1;
        if line.len() <= max_line {
            new_flags.push(line_flags(stream, line, true, events, malformed));
        } else {
            if stream == Stream::Stderr && line.starts_with(EVENT_PREFIX) {
                *malformed += 1; // An event longer than the max line length is kept as plain pieces.
            }
            while line.len() > max_line {
                let cut = utf8_cut(line, max_line);
                let piece = &line[..cut];
                data.extend_from_slice(piece);
                new_ends.push(data.len() as u32);
                data.push(b'\n');
                new_flags.push(flags::PARTIAL | if needs_render(piece) { flags::NEEDS_RENDER } else { 0 });
                line = &line[cut..];
            }
            new_flags.push(if needs_render(line) { flags::NEEDS_RENDER } else { 0 });
        }
        data.extend_from_slice(line);
        new_ends.push(data.len() as u32);
        data.push(b'\n');
    }
    h.logs_buffer
        .append(stream, &data, &new_ends, &new_flags, bytes_read, at);
}

fn drain(stream: Stream, mut pipe: File, h: &DrainHandles) {
    let max_line = h.logs_buffer.limits().max_line_bytes;
    let mut buf = vec![0u8; max_line + READ_CHUNK];
    // Bytes of an unfinished line at the front of `buf`.
    let mut filled = 0usize;
    let mut ends: Vec<u32> = Vec::with_capacity(READ_CHUNK / 8);
    let mut line_flags_buf: Vec<u8> = Vec::with_capacity(READ_CHUNK / 8);
    let mut events = Vec::new();
    let fd = pipe.as_raw_fd();
    enlarge_pipe(fd);
    loop {
        if h.sync.abandoned() {
            break;
        }
        match poll_readable(fd, POLL_INTERVAL_MS) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(stream = stream.as_str(), error = %e, "polling a workflow pipe failed");
                break;
            }
        }
        let n = match pipe.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(stream = stream.as_str(), error = %e, "reading a workflow pipe failed");
                break;
            }
        };
        let at = SystemTime::now();
        let end = filled + n;
        let mut malformed = 0;
        ends.clear();
        newline_positions(&buf[filled..end], filled, &mut ends);
        if let Some(&last) = ends.last() {
            let complete = last as usize + 1;
            if longest_line(&ends) > max_line {
                append_splitting_long_lines(
                    stream,
                    &buf[..complete],
                    &ends,
                    max_line,
                    n as u64,
                    at,
                    h,
                    &mut events,
                    &mut malformed,
                );
            } else {
                chunk_flags(stream, &buf, &ends, &mut line_flags_buf, &mut events, &mut malformed);
                h.logs_buffer
                    .append(stream, &buf[..complete], &ends, &line_flags_buf, n as u64, at);
            }
            buf.copy_within(complete..end, 0);
            filled = end - complete;
        } else {
            h.logs_buffer.count_bytes(stream, n as u64, at);
            filled = end;
        }
        while filled > max_line {
            let cut = utf8_cut(&buf[..filled], max_line);
            let piece = &buf[..cut];
            let mut f = flags::PARTIAL;
            if needs_render(piece) {
                f |= flags::NEEDS_RENDER;
            }
            if stream == Stream::Stderr && piece.starts_with(EVENT_PREFIX) {
                malformed += 1; // An event longer than the max line length cannot be parsed.
            }
            h.logs_buffer.append_line(stream, piece, f, 0, at);
            buf.copy_within(cut..filled, 0);
            filled -= cut;
        }
        publish_events(h, &mut events, malformed, at);
        h.logs_tx.send_modify(|g| *g = g.wrapping_add(1));
    }
    if filled > 0 {
        let at = SystemTime::now();
        let mut malformed = 0;
        let f = line_flags(stream, &buf[..filled], true, &mut events, &mut malformed);
        h.logs_buffer
            .append_line(stream, &buf[..filled], f | flags::NO_NEWLINE, 0, at);
        publish_events(h, &mut events, malformed, at);
    }
}

/// Asks for a 1 MiB pipe buffer so a fast writer runs ahead instead of waiting for each 64 KiB read.
fn enlarge_pipe(fd: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: fcntl on a pipe fd we own; failure (an unprivileged limit) just keeps the default size.
    unsafe {
        libc::fcntl(fd, libc::F_SETPIPE_SZ, PIPE_BYTES as libc::c_int);
    }
}

fn publish_events(h: &DrainHandles, events: &mut Vec<WorkflowEvent>, malformed: u64, at: SystemTime) {
    if malformed > 0 {
        h.progress.record_malformed(malformed);
    }
    for e in events.drain(..) {
        h.progress.apply(e, at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_between_utf8_characters() {
        let s = "aé€😀".as_bytes(); // 1 + 2 + 3 + 4 bytes
        assert_eq!(utf8_cut(s, 1), 1);
        assert_eq!(utf8_cut(s, 2), 1);
        assert_eq!(utf8_cut(s, 3), 3);
        assert_eq!(utf8_cut(s, 4), 3);
        assert_eq!(utf8_cut(s, 5), 3);
        assert_eq!(utf8_cut(s, 6), 6);
        assert_eq!(utf8_cut(s, 9), 6);
        assert_eq!(utf8_cut(s, 10), 10);
        let garbage = [0x80u8; 8];
        assert_eq!(utf8_cut(&garbage, 4), 4, "not UTF-8 at all: cut where asked");
    }
}
