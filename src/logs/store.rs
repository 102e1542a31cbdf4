//! The per-execution log store: a segmented byte arena plus one 4-byte index entry per line (and one timestamp
//! per chunk read).
//!
//! Lines are kept exactly as the pipe delivered them, each followed by `\n`, so a chunk of complete lines is
//! appended with a single copy and grep can scan a whole segment at once. Only the last segment is appended to;
//! the others are immutable and shared (`Arc`), so a query clones a few `Arc`s under the lock and reads without
//! it. When a reader still holds the active segment, `Arc::make_mut` gives the writer its own copy.
//!
//! Memory is bounded by a per-execution cap and a global [`MemoryBudget`]: the first segments (the head, where a
//! missing config or a bad flag shows up) are pinned, and whole segments are evicted from the middle. Every evicted
//! line and byte is counted, and the evicted seq range is reported to readers as omitted.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which pipe a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Per-line flags, packed into the top bits of an index entry.
pub mod flags {
    pub const STDERR: u8 = 1;
    /// A piece of a line longer than the max line length; the line continues in the next record.
    pub const PARTIAL: u8 = 1 << 1;
    /// The stream ended without a newline after this line.
    pub const NO_NEWLINE: u8 = 1 << 2;
    /// A well-formed `__WF_EVENT__:` line.
    pub const EVENT: u8 = 1 << 3;
    /// The line holds an escape or a carriage return, so rendering must look at it.
    pub const NEEDS_RENDER: u8 = 1 << 4;
}

const END_BITS: u32 = 26;
const END_MASK: u32 = (1 << END_BITS) - 1;
/// The largest segment an index entry can address; the max line length stays well below it.
pub const MAX_SEGMENT_BYTES: usize = END_MASK as usize;
const DEFAULT_SEGMENT_BYTES: usize = 1 << 20;

/// One line of the index: where the line ends in its segment, and its flags. (Lines read in one chunk share a
/// timestamp, kept once per chunk in [`Segment::stamps`].)
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Bits 0..26: end offset (exclusive, before the `\n`) in the segment; bits 26..32: flags.
    meta: u32,
}

impl Entry {
    fn new(end: usize, flags: u8) -> Self {
        debug_assert!(end <= END_MASK as usize);
        Entry {
            meta: end as u32 | (u32::from(flags) << END_BITS),
        }
    }

    fn end(self) -> usize {
        (self.meta & END_MASK) as usize
    }

    fn flags(self) -> u8 {
        (self.meta >> END_BITS) as u8
    }
}

/// A run of consecutive lines: their bytes (each followed by `\n`), their index entries, and when they were read.
#[derive(Clone, Debug)]
pub struct Segment {
    first_seq: u64,
    data: Vec<u8>,
    entries: Vec<Entry>,
    /// (index of the first line of a chunk, its read time in ms since the store's origin, saturating at ~49 days),
    /// one per appended chunk with a new time.
    stamps: Vec<(u32, u32)>,
}

/// A borrowed view of one stored line.
#[derive(Clone, Copy)]
pub struct LineRef<'a> {
    pub seq: u64,
    pub bytes: &'a [u8],
    pub flags: u8,
    segment: &'a Segment,
    index: usize,
}

impl std::fmt::Debug for LineRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineRef")
            .field("seq", &self.seq)
            .field("bytes", &String::from_utf8_lossy(self.bytes))
            .field("flags", &self.flags)
            .finish()
    }
}

impl LineRef<'_> {
    /// When the line was read, in milliseconds since the store's origin (looked up only when asked: a grep over
    /// millions of lines never needs it).
    pub fn ts_ms(&self) -> u32 {
        let stamps = &self.segment.stamps;
        let k = stamps.partition_point(|&(first, _)| first as usize <= self.index);
        stamps.get(k.wrapping_sub(1)).map_or(0, |s| s.1)
    }

    pub fn stream(&self) -> Stream {
        if self.flags & flags::STDERR != 0 {
            Stream::Stderr
        } else {
            Stream::Stdout
        }
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

impl Segment {
    fn new(first_seq: u64, capacity: usize) -> Self {
        Segment {
            first_seq,
            data: Vec::with_capacity(capacity),
            entries: Vec::with_capacity(capacity / 32),
            stamps: Vec::new(),
        }
    }

    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// One past the last seq held here.
    pub fn end_seq(&self) -> u64 {
        self.first_seq + self.entries.len() as u64
    }

    /// The line at local index `i`.
    pub fn line(&self, i: usize) -> LineRef<'_> {
        let entry = self.entries[i];
        LineRef {
            seq: self.first_seq + i as u64,
            bytes: &self.data[self.start_of(i)..entry.end()],
            flags: entry.flags(),
            segment: self,
            index: i,
        }
    }

    /// Records that lines from local index `first` on were read at `ts_ms`.
    fn stamp(&mut self, first: usize, ts_ms: u32) {
        if self.stamps.last().is_none_or(|s| s.1 != ts_ms) {
            self.stamps.push((first as u32, ts_ms));
        }
    }

    fn start_of(&self, i: usize) -> usize {
        if i == 0 { 0 } else { self.entries[i - 1].end() + 1 }
    }

    fn memory(&self) -> usize {
        self.data.capacity()
            + self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.stamps.capacity() * std::mem::size_of::<(u32, u32)>()
    }

    /// Bytes of line text (without the separators).
    fn text_bytes(&self) -> usize {
        self.data.len() - self.entries.len()
    }
}

/// Counters of one stream.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct StreamCounters {
    /// Records stored for this stream (a line split at the max line length counts once per piece).
    pub lines: u64,
    /// Every byte read from the pipe, newlines included.
    pub bytes: u64,
}

/// A point-in-time summary of a store.
#[derive(Clone, Debug)]
pub struct LogStats {
    pub stdout: StreamCounters,
    pub stderr: StreamCounters,
    /// The seq the next line will get: the number of records ever stored.
    pub next_seq: u64,
    pub dropped_lines: u64,
    pub dropped_bytes: u64,
    pub truncated_lines: u64,
    pub last_output_at: Option<SystemTime>,
    /// Memory held by this store now (arena plus index).
    pub memory_bytes: usize,
}

/// The seq range `[from, to)` evicted from memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    pub from: u64,
    pub to: u64,
}

/// The retained lines at one instant: sealed segments are shared, never copied.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub segments: Vec<Arc<Segment>>,
    pub next_seq: u64,
    pub gap: Option<Gap>,
    pub origin: SystemTime,
}

impl Snapshot {
    /// The oldest retained seq (equal to `next_seq` when nothing is retained).
    pub fn oldest_seq(&self) -> u64 {
        self.segments
            .iter()
            .find(|s| !s.is_empty())
            .map_or(self.next_seq, |s| s.first_seq)
    }

    /// Index of the segment holding `seq`, or of the first segment after it (for a seq in the gap).
    pub fn segment_index_for(&self, seq: u64) -> usize {
        self.segments.partition_point(|s| s.end_seq() <= seq)
    }

    pub fn timestamp(&self, ts_ms: u32) -> SystemTime {
        self.origin + Duration::from_millis(u64::from(ts_ms))
    }
}

/// Per-execution limits of the store.
#[derive(Clone, Copy, Debug)]
pub struct LogLimits {
    /// Memory (arena plus index) one execution may hold before its middle is evicted.
    pub max_bytes: usize,
    /// A longer line is stored as several `partial` records.
    pub max_line_bytes: usize,
}

/// Log memory shared by every execution of a server, with the registry used to reclaim it.
#[derive(Debug)]
pub struct MemoryBudget {
    used: AtomicUsize,
    limit: usize,
    registry: Mutex<Registry>,
}

/// Every store that may hold memory of the budget. Entries of dropped stores are pruned on registration once the
/// list has doubled since the last prune, so it stays within twice the live stores at an amortized O(1) per entry.
#[derive(Debug, Default)]
struct Registry {
    stores: Vec<Weak<LogStore>>,
    /// Entries left by the last prune.
    live_at_prune: usize,
}

impl Registry {
    /// Below this many entries a registration never prunes.
    const MIN_PRUNE_LEN: usize = 32;

    fn register(&mut self, store: Weak<LogStore>) {
        if self.stores.len() >= (2 * self.live_at_prune).max(Self::MIN_PRUNE_LEN) {
            self.prune();
        }
        self.stores.push(store);
    }

    /// Drops the entries of dropped stores (each one also keeps its store's allocation).
    fn prune(&mut self) {
        self.stores.retain(|w| w.strong_count() > 0);
        self.live_at_prune = self.stores.len();
    }
}

impl MemoryBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(MemoryBudget {
            used: AtomicUsize::new(0),
            limit,
            registry: Mutex::new(Registry::default()),
        })
    }

    #[cfg(test)]
    fn registered(&self) -> Vec<Weak<LogStore>> {
        lock(&self.registry).stores.clone()
    }

    fn over(&self) -> bool {
        self.used.load(Ordering::Relaxed) > self.limit
    }

    fn add(&self, n: usize) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }

    fn sub(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }

    /// Brings the total back under the limit: finished executions' middles go first (oldest first), then the
    /// largest running ones. A store only ever loses whole middle segments; its head and newest lines stay.
    fn reclaim(&self) {
        let mut stores: Vec<Arc<LogStore>> = {
            let mut registry = lock(&self.registry);
            registry.prune();
            registry.stores.iter().filter_map(Weak::upgrade).collect()
        };
        reclaim_order(&mut stores, |s| s.lock().reclaim_key());
        for store in stores {
            if !self.over() {
                break;
            }
            store.lock().evict_while(|_| self.over(), self);
        }
    }
}

/// Sorts stores into the order they give memory back in, reading each one's key once: other executions keep
/// appending while this runs, and keys that change mid-sort break its total order (the sort may then panic).
fn reclaim_order<T>(stores: &mut [T], key: impl FnMut(&T) -> (bool, u64)) {
    stores.sort_by_cached_key(key);
}

/// The log of one execution.
#[derive(Debug)]
pub struct LogStore {
    origin: SystemTime,
    limits: LogLimits,
    segment_bytes: usize,
    budget: Arc<MemoryBudget>,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Never empty; the last segment is the one appended to.
    segments: VecDeque<Arc<Segment>>,
    /// The first `pinned` segments are the head and are never evicted.
    pinned: usize,
    head_open: bool,
    head_budget: usize,
    mem: usize,
    next_seq: u64,
    gap: Option<Gap>,
    dropped_lines: u64,
    dropped_bytes: u64,
    truncated_lines: u64,
    streams: [StreamCounters; 2],
    last_output_at: Option<SystemTime>,
    finished: bool,
    finish_order: u64,
}

static FINISH_ORDER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a log lock leaves consistent data (appends are all-or-nothing per line).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LogStore {
    pub fn new(limits: LogLimits, budget: Arc<MemoryBudget>) -> Arc<Self> {
        let max_line = limits.max_line_bytes.clamp(1, MAX_SEGMENT_BYTES - 1);
        let segment_bytes = (limits.max_bytes / 16)
            .clamp(64 * 1024, DEFAULT_SEGMENT_BYTES)
            .max(max_line + 1);
        let first = Segment::new(0, segment_bytes);
        let mem = first.memory();
        budget.add(mem);
        let store = Arc::new(LogStore {
            origin: SystemTime::now(),
            limits: LogLimits {
                max_line_bytes: max_line,
                ..limits
            },
            segment_bytes,
            budget: budget.clone(),
            inner: Mutex::new(Inner {
                segments: VecDeque::from([Arc::new(first)]),
                pinned: 0,
                head_open: true,
                head_budget: limits.max_bytes / 8,
                mem,
                next_seq: 0,
                gap: None,
                dropped_lines: 0,
                dropped_bytes: 0,
                truncated_lines: 0,
                streams: [StreamCounters::default(); 2],
                last_output_at: None,
                finished: false,
                finish_order: 0,
            }),
        });
        lock(&budget.registry).register(Arc::downgrade(&store));
        store
    }

    pub fn limits(&self) -> LogLimits {
        self.limits
    }

    pub fn origin(&self) -> SystemTime {
        self.origin
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Appends a chunk of lines read from one stream.
    ///
    /// `data` holds the lines, each followed by `\n`; `ends` gives each line's end offset in `data` (exclusive,
    /// before its `\n`) and `line_flags` its flags (empty when no line has any). `bytes_read` is what the pipe
    /// delivered for this chunk (for the byte counters). Returns the seq the next line will get.
    pub fn append(
        &self,
        stream: Stream,
        data: &[u8],
        ends: &[u32],
        line_flags: &[u8],
        bytes_read: u64,
        at: SystemTime,
    ) -> u64 {
        debug_assert!(line_flags.is_empty() || line_flags.len() == ends.len());
        let ts_ms = u32::try_from(crate::clock::millis_between(self.origin, at)).unwrap_or(u32::MAX);
        let stream_flag = if stream == Stream::Stderr { flags::STDERR } else { 0 };
        let mut inner = self.lock();
        let mut i = 0;
        let mut data_off = 0usize;
        while i < ends.len() {
            let seq_before = inner.next_seq;
            let before = inner.segments.back().expect("active").memory();
            // Clones the active segment (with no spare capacity) only if a reader still holds it.
            let seg = Arc::make_mut(inner.segments.back_mut().expect("store always has an active segment"));
            let (room, base) = (seg.data.capacity() - seg.data.len(), seg.data.len());
            // The longest prefix of the remaining lines that fits without reallocating.
            let fit = ends[i..].partition_point(|&end| end as usize + 1 - data_off <= room);
            if fit > 0 {
                let j = i + fit;
                let chunk_end = ends[j - 1] as usize + 1;
                if seg.is_empty() {
                    seg.first_seq = seq_before;
                }
                seg.data.extend_from_slice(&data[data_off..chunk_end]);
                // Offsets in `data` become offsets in the segment (wrapping: the result always fits).
                let shift = (base as u32).wrapping_sub(data_off as u32);
                seg.stamp(seg.entries.len(), ts_ms);
                if line_flags.is_empty() {
                    let meta_flags = u32::from(stream_flag) << END_BITS;
                    seg.entries.extend(ends[i..j].iter().map(|&end| Entry {
                        meta: end.wrapping_add(shift) | meta_flags,
                    }));
                } else {
                    let lines = ends[i..j].iter().zip(&line_flags[i..j]);
                    seg.entries.extend(
                        lines.map(|(&end, &fl)| Entry::new(end.wrapping_add(shift) as usize, fl | stream_flag)),
                    );
                }
                inner.next_seq += fit as u64;
                data_off = chunk_end;
                i = j;
            }
            let after = inner.segments.back().expect("active").memory();
            inner.account(before, after, &self.budget);
            if fit == 0 {
                let need = ends[i] as usize + 1 - data_off;
                inner.seal_active(self.segment_bytes.max(need), &self.budget);
            }
        }
        let counters = &mut inner.streams[stream.index()];
        counters.lines += ends.len() as u64;
        counters.bytes += bytes_read;
        inner.truncated_lines += line_flags.iter().filter(|f| *f & flags::PARTIAL != 0).count() as u64;
        if !ends.is_empty() || bytes_read > 0 {
            inner.last_output_at = Some(at);
        }
        let cap = self.limits.max_bytes;
        if inner.mem > cap {
            inner.evict_while(|inner| inner.mem > cap, &self.budget);
        }
        let next = inner.next_seq;
        drop(inner);
        if self.budget.over() {
            self.budget.reclaim();
        }
        next
    }

    /// Appends one line that is not followed by `\n` in the caller's buffer (a partial piece or a final line).
    pub fn append_line(&self, stream: Stream, line: &[u8], line_flags: u8, bytes_read: u64, at: SystemTime) -> u64 {
        let mut data = Vec::with_capacity(line.len() + 1);
        data.extend_from_slice(line);
        data.push(b'\n');
        self.append(stream, &data, &[line.len() as u32], &[line_flags], bytes_read, at)
    }

    /// Counts bytes read that did not complete a line yet (they are stored once the line is complete).
    pub fn count_bytes(&self, stream: Stream, bytes_read: u64, at: SystemTime) {
        let mut inner = self.lock();
        inner.streams[stream.index()].bytes += bytes_read;
        inner.last_output_at = Some(at);
    }

    /// Marks the store as belonging to a finished execution: it becomes the first to give memory back.
    pub fn mark_finished(&self) {
        let mut inner = self.lock();
        if !inner.finished {
            inner.finished = true;
            inner.finish_order = FINISH_ORDER.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let inner = self.lock();
        Snapshot {
            segments: inner.segments.iter().cloned().collect(),
            next_seq: inner.next_seq,
            gap: inner.gap,
            origin: self.origin,
        }
    }

    pub fn stats(&self) -> LogStats {
        let inner = self.lock();
        LogStats {
            stdout: inner.streams[0],
            stderr: inner.streams[1],
            next_seq: inner.next_seq,
            dropped_lines: inner.dropped_lines,
            dropped_bytes: inner.dropped_bytes,
            truncated_lines: inner.truncated_lines,
            last_output_at: inner.last_output_at,
            memory_bytes: inner.mem,
        }
    }
}

impl Inner {
    /// Finished before running; among finished the oldest first; among running the largest first.
    fn reclaim_key(&self) -> (bool, u64) {
        let order = if self.finished {
            self.finish_order
        } else {
            u64::MAX - self.mem as u64
        };
        (!self.finished, order)
    }

    fn account(&mut self, before: usize, after: usize, budget: &MemoryBudget) {
        if after >= before {
            self.mem += after - before;
            budget.add(after - before);
        } else {
            self.mem -= before - after;
            budget.sub(before - after);
        }
    }

    /// Closes the active segment and opens a new one of `capacity` bytes.
    fn seal_active(&mut self, capacity: usize, budget: &MemoryBudget) {
        let last = self.segments.len() - 1;
        if let Some(seg) = Arc::get_mut(&mut self.segments[last]) {
            let before = seg.memory();
            seg.entries.shrink_to_fit();
            seg.stamps.shrink_to_fit();
            seg.data.shrink_to_fit();
            let after = seg.memory();
            self.account(before, after, budget);
        }
        if self.segments[last].is_empty() {
            // Nothing to keep (a reader held it, or a line did not fit an empty segment): replace it.
            let old = self.segments.pop_back().expect("active").memory();
            self.account(old, 0, budget);
        } else if self.head_open {
            let seg_mem = self.segments[last].memory();
            let head_mem: usize = self.segments.iter().take(self.pinned).map(|s| s.memory()).sum();
            // The first segment is always the head; more join it while they fit the head budget.
            if last == self.pinned && (self.pinned == 0 || head_mem + seg_mem <= self.head_budget) {
                self.pinned += 1;
            } else {
                self.head_open = false;
            }
        }
        let seg = Segment::new(self.next_seq, capacity);
        self.account(0, seg.memory(), budget);
        self.segments.push_back(Arc::new(seg));
    }

    /// Evicts whole middle segments (after the head, before the active one) while `more` says so.
    fn evict_while(&mut self, mut more: impl FnMut(&Inner) -> bool, budget: &MemoryBudget) {
        while more(self) && self.segments.len() > self.pinned + 1 {
            let seg = self.segments.remove(self.pinned).expect("middle segment exists");
            self.head_open = false;
            if seg.is_empty() {
                self.account(seg.memory(), 0, budget);
                continue;
            }
            self.dropped_lines += seg.len() as u64;
            self.dropped_bytes += seg.text_bytes() as u64;
            self.gap = Some(Gap {
                from: self.gap.map_or(seg.first_seq, |g| g.from),
                to: seg.end_seq(),
            });
            // Readers may still hold the segment; the memory is theirs until they drop it.
            self.account(seg.memory(), 0, budget);
        }
    }
}

impl Drop for LogStore {
    fn drop(&mut self) {
        let mem = lock(&self.inner).mem;
        self.budget.sub(mem);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(max_bytes: usize) -> (Arc<LogStore>, Arc<MemoryBudget>) {
        let budget = MemoryBudget::new(usize::MAX / 2);
        let store = LogStore::new(
            LogLimits {
                max_bytes,
                max_line_bytes: 1024,
            },
            budget.clone(),
        );
        (store, budget)
    }

    fn chunk(lines: &[&str]) -> (Vec<u8>, Vec<u32>) {
        let mut data = Vec::new();
        let mut ends = Vec::new();
        for l in lines {
            data.extend_from_slice(l.as_bytes());
            ends.push(data.len() as u32);
            data.push(b'\n');
        }
        (data, ends)
    }

    fn all_lines(snap: &Snapshot) -> Vec<(u64, String)> {
        snap.segments
            .iter()
            .flat_map(|s| (0..s.len()).map(move |i| s.line(i)))
            .map(|l| (l.seq, String::from_utf8_lossy(l.bytes).into_owned()))
            .collect()
    }

    #[test]
    fn lines_keep_their_seq_and_stream() {
        let (store, _) = store(1 << 20);
        let (data, ends) = chunk(&["a", "", "ccc"]);
        store.append(Stream::Stdout, &data, &ends, &[], data.len() as u64, SystemTime::now());
        store.append_line(Stream::Stderr, b"tail", flags::NO_NEWLINE, 4, SystemTime::now());
        let snap = store.snapshot();
        assert_eq!(
            all_lines(&snap),
            vec![(0, "a".into()), (1, "".into()), (2, "ccc".into()), (3, "tail".into())]
        );
        let last = snap.segments.last().unwrap().line(3);
        assert_eq!(last.stream(), Stream::Stderr);
        assert!(last.has(flags::NO_NEWLINE));
        let stats = store.stats();
        assert_eq!((stats.stdout.lines, stats.stdout.bytes), (3, 7));
        assert_eq!((stats.stderr.lines, stats.stderr.bytes), (1, 4));
    }

    #[test]
    fn eviction_keeps_head_and_tail_and_counts_what_it_dropped() {
        let (store, _) = store(256 * 1024);
        let line = "x".repeat(99);
        let lines: Vec<&str> = vec![line.as_str(); 100];
        let (data, ends) = chunk(&lines);
        for _ in 0..200 {
            store.append(Stream::Stdout, &data, &ends, &[], data.len() as u64, SystemTime::now());
        }
        let stats = store.stats();
        let snap = store.snapshot();
        let kept = all_lines(&snap);
        assert_eq!(stats.next_seq, 20_000);
        assert_eq!(kept.len() as u64 + stats.dropped_lines, 20_000);
        assert_eq!(stats.dropped_bytes, stats.dropped_lines * 99);
        assert_eq!(kept.first().unwrap().0, 0, "the head is kept");
        assert_eq!(kept.last().unwrap().0, 19_999, "the newest line is kept");
        let gap = snap.gap.expect("a gap was recorded");
        assert_eq!(gap.to - gap.from, stats.dropped_lines);
        assert!(kept.iter().all(|(seq, _)| *seq < gap.from || *seq >= gap.to));
        assert!(stats.memory_bytes <= 256 * 1024 + 128 * 1024);
    }

    #[test]
    fn each_line_keeps_the_time_its_chunk_was_read() {
        let (store, _) = store(1 << 20);
        let t0 = store.origin();
        let (data, ends) = chunk(&["a", "b"]);
        store.append(Stream::Stdout, &data, &ends, &[], 4, t0 + Duration::from_millis(5));
        let (data, ends) = chunk(&["c"]);
        store.append(Stream::Stdout, &data, &ends, &[], 2, t0 + Duration::from_millis(5));
        store.append(Stream::Stderr, &data, &ends, &[], 2, t0 + Duration::from_millis(9));
        let snap = store.snapshot();
        let seg = snap.segments.last().unwrap();
        let stamps: Vec<u32> = (0..seg.len()).map(|i| seg.line(i).ts_ms()).collect();
        assert_eq!(stamps, [5, 5, 5, 9]);
        assert_eq!(seg.stamps.len(), 2, "one stamp per new time, not per line");
    }

    #[test]
    fn a_reader_holding_the_active_segment_does_not_see_later_appends() {
        let (store, _) = store(1 << 20);
        let (data, ends) = chunk(&["one"]);
        store.append(Stream::Stdout, &data, &ends, &[], 4, SystemTime::now());
        let snap = store.snapshot();
        let (data, ends) = chunk(&["two"]);
        store.append(Stream::Stdout, &data, &ends, &[], 4, SystemTime::now());
        assert_eq!(all_lines(&snap), vec![(0, "one".into())]);
        assert_eq!(all_lines(&store.snapshot()), vec![(0, "one".into()), (1, "two".into())]);
    }

    #[test]
    fn the_global_budget_takes_from_finished_executions_first() {
        let budget = MemoryBudget::new(1024 * 1024);
        let limits = LogLimits {
            max_bytes: 1 << 20,
            max_line_bytes: 1024,
        };
        let old = LogStore::new(limits, budget.clone());
        let line = "y".repeat(199);
        let lines: Vec<&str> = vec![line.as_str(); 1000];
        let (data, ends) = chunk(&lines);
        for _ in 0..4 {
            old.append(Stream::Stdout, &data, &ends, &[], 0, SystemTime::now());
        }
        old.mark_finished();
        let new = LogStore::new(limits, budget.clone());
        for _ in 0..4 {
            new.append(Stream::Stdout, &data, &ends, &[], 0, SystemTime::now());
        }
        assert!(old.stats().dropped_lines > 0, "the finished store gave memory back");
        assert_eq!(new.stats().dropped_lines, 0, "the running store kept everything");
    }

    /// xorshift64: a deterministic stream of test values without a new dependency.
    fn next_random(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn reclaim_order_survives_sizes_changing_during_the_sort() {
        // Running stores keep growing while the sort runs (their drain threads append), so every read of a
        // size may differ; the order must follow one reading per store, and must not panic in a drain thread.
        let mut rng = 0x9E37_79B9_7F4A_7C15;
        let mut sizes: Vec<u64> = (0..500).map(|_| next_random(&mut rng) % (1 << 20)).collect();
        let mut keys_read: Vec<Vec<(bool, u64)>> = vec![Vec::new(); sizes.len()];
        let mut order: Vec<usize> = (0..sizes.len()).collect();
        reclaim_order(&mut order, |&id| {
            let key = if id % 4 == 0 {
                (false, id as u64) // finished: its finish order never changes
            } else {
                sizes[id] += next_random(&mut rng) % (1 << 16);
                (true, u64::MAX - sizes[id])
            };
            keys_read[id].push(key);
            key
        });
        assert!(keys_read.iter().all(|k| k.len() == 1), "each key is read once");
        let keys: Vec<(bool, u64)> = order.iter().map(|&id| keys_read[id][0]).collect();
        assert!(keys.is_sorted(), "stores are ordered by the keys read");
        let mut ids = order.clone();
        ids.sort_unstable();
        assert!(ids.into_iter().eq(0..sizes.len()), "every store is kept once");
    }

    #[test]
    fn registry_of_dropped_stores_stays_bounded_under_the_global_cap() {
        // Pruned only when the global cap is exceeded, the registry grew by one entry (each pinning its store's
        // `Arc` allocation) per execution ever started.
        let budget = MemoryBudget::new(usize::MAX / 2);
        let limits = LogLimits {
            max_bytes: 1 << 20,
            max_line_bytes: 1024,
        };
        let mut alive = Vec::new();
        let mut longest = 0;
        for i in 0..10_000 {
            let store = LogStore::new(limits, budget.clone());
            if i % 1000 == 0 {
                alive.push(store);
            }
            longest = longest.max(budget.registered().len());
        }
        assert!(!budget.over(), "the cap was never exceeded, so reclaim never ran");
        assert!(longest <= 64, "the registry grew to {longest} entries");
        let live = budget.registered().iter().filter(|w| w.strong_count() > 0).count();
        assert_eq!(live, alive.len(), "live stores stay registered for reclaim");
    }
}
