//! The log of one execution (`ExecutionLog`): segments of lines in memory (a byte arena plus one 4-byte index
//! entry per line and one timestamp per chunk read), mirrored to segment files on disk when the log has a
//! [`LogDir`].
//!
//! Lines are kept exactly as the pipe delivered them, each followed by `\n`, so a chunk of complete lines is
//! appended with a single copy (and a single write per file) and grep can scan a whole segment at once. Only
//! the last segment is appended to; the others are immutable and shared (`Arc`), so a query clones a few `Arc`s
//! under the lock and reads without it. When a reader still holds the active segment, `Arc::make_mut` gives the
//! writer its own copy.
//!
//! Memory is bounded by a per-execution cap and a global [`MemoryBudget`]: the first segments (the head, where a
//! missing config or a bad flag shows up) are pinned, and whole segments leave memory from the middle. With
//! files, memory is a cache — a segment that leaves memory is still read from disk — and the disk has a cap of
//! its own, past which whole middle segments are deleted. Every line gone from both is counted, and its seq range
//! is reported to readers as omitted.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::SystemTime;

use super::budget::{MemoryBudget, Reclaim};
use super::disk::{DiskLimits, DiskSegment};
use super::segment::{DEFAULT_SEGMENT_BYTES, END_BITS, Entry, MAX_SEGMENT_BYTES, Segment, Stream, flags};
use super::slots::{Disk, Inner, Slot};
use super::snapshot::{ReadCache, SegmentRef, Snapshot};

pub use crate::model::StreamCounters;

/// A point-in-time summary of a log.
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
    /// Memory held by this log now (arena plus index).
    pub memory_bytes: usize,
    /// Bytes its files take on disk.
    pub disk_bytes: u64,
    /// Why lines stopped being written to disk, if they did (they stay in memory).
    pub disk_error: Option<String>,
}

/// Per-execution limits of the log.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub struct LogLimits {
    /// Memory (arena plus index) one execution may hold before its middle leaves memory.
    pub max_bytes: usize,
    /// A longer line is stored as several `partial` records.
    pub max_line_bytes: usize,
}

/// The log of one execution.
#[derive(Debug)]
pub struct ExecutionLog {
    origin: SystemTime,
    limits: LogLimits,
    segment_bytes: usize,
    budget: Arc<MemoryBudget>,
    inner: Mutex<Inner>,
    /// Itself, for the segments it hands out to readers (see its [`ReadCache`] impl).
    me: Weak<ExecutionLog>,
}

static FINISH_ORDER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a log lock leaves consistent data (appends are all-or-nothing per line).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ExecutionLog {
    /// A log in memory only.
    pub fn new(limits: LogLimits, budget: Arc<MemoryBudget>) -> Arc<Self> {
        Self::with_disk(limits, budget, None)
    }

    /// A log that also writes its lines to files in `disk.dir` (created now; if that fails, the log keeps
    /// lines in memory only and says why in its stats).
    pub fn with_disk(limits: LogLimits, budget: Arc<MemoryBudget>, disk: Option<DiskLimits>) -> Arc<Self> {
        Self::create(limits, budget, disk, SystemTime::now())
    }

    fn create(limits: LogLimits, budget: Arc<MemoryBudget>, disk: Option<DiskLimits>, origin: SystemTime) -> Arc<Self> {
        let max_line = limits.max_line_bytes.clamp(1, MAX_SEGMENT_BYTES - 1);
        let segment_bytes = (limits.max_bytes / if disk.is_some() { 8 } else { 16 })
            .clamp(64 * 1024, DEFAULT_SEGMENT_BYTES)
            .max(max_line + 1);
        let first = Segment::new(0, segment_bytes);
        let mem = first.memory();
        budget.add(mem);
        let disk = disk.map(|limits| Disk {
            limits,
            writer: None,
            bytes: 0,
            error: None,
            unborn: Some(origin),
        });
        let log = Arc::new_cyclic(|me| ExecutionLog {
            me: me.clone(),
            origin,
            limits: LogLimits {
                max_line_bytes: max_line,
                ..limits
            },
            segment_bytes,
            budget: budget.clone(),
            inner: Mutex::new(Inner {
                slots: VecDeque::from([Slot::resident(first)]),
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
                disk,
                recent: None,
            }),
        });
        budget.register(Arc::downgrade(&log) as Weak<dyn Reclaim>);
        log
    }

    /// Reopens the log files of an execution another (gone) process was writing, to go on after its last line
    /// with the same seqs: the lines already there are read from disk, new ones are appended as usual. Returns
    /// the log and, per stream, the bytes its files hold (each stored line with its newline; a partial piece
    /// or a last line without one has none) — where reading the execution's output should resume. A range
    /// deleted by the disk cap is counted as dropped (its bytes are not known any more).
    pub fn resume(limits: LogLimits, budget: Arc<MemoryBudget>, disk: DiskLimits) -> (Arc<Self>, [u64; 2]) {
        // The gone process may have left its last segment mid-line: cut it to its complete lines and seal it, so
        // the new segment starts after them. If that fails, new lines stay in memory only (and the status says so).
        let closed = match disk.dir.segments().last() {
            Some(last) => last.close_after_crash().map_err(|e| {
                format!(
                    "cannot close the log's last segment in {} after the previous server: {e}",
                    disk.dir.path().display()
                )
            }),
            None => Ok(()),
        };
        let snap = Snapshot::from_disk(&disk.dir);
        let mut streams = [StreamCounters::default(); 2];
        let mut truncated_lines = 0;
        for seg in &snap.segments {
            let seg = seg.load();
            for i in 0..seg.len() {
                let line = seg.line(i);
                let c = &mut streams[line.stream().index()];
                c.lines += 1;
                let newline = !line.has(flags::PARTIAL) && !line.has(flags::NO_NEWLINE);
                c.bytes += line.bytes.len() as u64 + u64::from(newline);
                truncated_lines += u64::from(line.has(flags::PARTIAL));
            }
        }
        let offsets = [streams[0].bytes, streams[1].bytes];
        let found = disk.dir.segments();
        let disk_bytes: u64 = found.iter().map(|s| s.disk_bytes).sum();
        let log = Self::create(limits, budget, None, snap.origin);
        {
            let mut inner = log.lock();
            let mut slots: VecDeque<Slot> = found
                .into_iter()
                .map(|s| Slot {
                    first_seq: s.first_seq,
                    lines: s.lines,
                    text_bytes: 0,
                    mem: None,
                    disk_bytes: Some(s.disk_bytes),
                })
                .collect();
            inner.pinned = usize::from(!slots.is_empty());
            inner.head_open = slots.is_empty();
            let active = inner.slots.pop_back().expect("a new log has its active segment");
            let mut seg = active.mem.expect("in memory");
            Arc::make_mut(&mut seg).first_seq = snap.next_seq;
            slots.push_back(Slot {
                first_seq: snap.next_seq,
                mem: Some(seg),
                ..active
            });
            inner.slots = slots;
            inner.next_seq = snap.next_seq;
            inner.gap = snap.gap;
            inner.dropped_lines = snap.gap.map_or(0, |g| g.to - g.from);
            inner.truncated_lines = truncated_lines;
            inner.streams = streams;
            inner.disk = Some(Disk {
                limits: disk,
                writer: None,
                bytes: disk_bytes,
                error: closed.err(),
                unborn: None,
            });
        }
        (log, offsets)
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
            let Inner { slots, disk, .. } = &mut *inner;
            let active = slots.back_mut().expect("a log always has an active segment");
            let mem = active.mem.as_mut().expect("the active segment is in memory");
            let before = mem.memory();
            // Clones the active segment (with no spare capacity) only if a reader still holds it.
            let seg = Arc::make_mut(mem);
            let (room, base) = (seg.data.capacity() - seg.data.len(), seg.data.len());
            // The longest prefix of the remaining lines that fits without reallocating.
            let fit = ends[i..].partition_point(|&end| end as usize + 1 - data_off <= room);
            if fit > 0 {
                let j = i + fit;
                let chunk_end = ends[j - 1] as usize + 1;
                if seg.is_empty() {
                    seg.first_seq = seq_before;
                    active.first_seq = seq_before;
                }
                let stamps_before = seg.stamps.len();
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
                active.lines = seg.entries.len() as u64;
                active.text_bytes = seg.text_bytes() as u64;
                if let Some(disk) = disk {
                    let stamp = (seg.stamps.len() > stamps_before).then(|| seg.stamps[seg.stamps.len() - 1].1);
                    let chunk_flags = if line_flags.is_empty() {
                        &[][..]
                    } else {
                        &line_flags[i..j]
                    };
                    disk.write(seg.first_seq, &seg.data[base..], fit, stream, chunk_flags, stamp);
                }
                inner.next_seq += fit as u64;
                data_off = chunk_end;
                i = j;
            }
            let after = inner.slots.back().expect("active").memory();
            inner.account(before, after, &self.budget);
            if fit == 0 {
                let need = ends[i] as usize + 1 - data_off;
                inner.seal_active(self.segment_bytes.max(need), self.limits.max_bytes, &self.budget);
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
        inner.trim_disk(&self.budget);
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

    /// Marks the log as belonging to a finished execution: it becomes the first to give memory back, and its
    /// files are made durable.
    pub fn mark_finished(&self) {
        let mut inner = self.lock();
        if !inner.finished {
            inner.finished = true;
            inner.finish_order = FINISH_ORDER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // Its files are complete: durable, and closed (a finished log holds no descriptor).
            let Inner { disk, slots, .. } = &mut *inner;
            if let Some(bytes) = disk.as_mut().and_then(|d| d.close_writer(true))
                && let Some(active) = slots.back_mut()
            {
                active.disk_bytes = Some(bytes);
            }
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let inner = self.lock();
        let dir = inner.disk.as_ref().map(|d| d.limits.dir.clone());
        let segments = inner
            .slots
            .iter()
            .map(|slot| {
                let read = inner.recent.as_ref().filter(|r| r.first_seq == slot.first_seq);
                (slot, slot.mem.as_ref().or(read))
            })
            .map(|(slot, mem)| match (mem, &dir) {
                (Some(seg), _) => SegmentRef::Memory(seg.clone()),
                (None, Some(dir)) => SegmentRef::read_for(
                    DiskSegment::at(dir, slot.first_seq, slot.lines),
                    self.me.clone() as Weak<dyn ReadCache>,
                ),
                (None, None) => unreachable!("a slot leaves memory only when it is on disk"),
            })
            .collect();
        Snapshot {
            segments,
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
            disk_bytes: inner.disk.as_ref().map_or(0, Disk::total),
            disk_error: inner.disk.as_ref().and_then(|d| d.error.clone()),
        }
    }
}

impl ReadCache for ExecutionLog {
    /// The last segment read back from disk, if it is the one starting at `first_seq` with `lines` lines.
    fn recent_read(&self, first_seq: u64, lines: u64) -> Option<Arc<Segment>> {
        let inner = self.lock();
        inner
            .recent
            .as_ref()
            .filter(|r| r.first_seq == first_seq && r.len() as u64 == lines)
            .cloned()
    }

    /// Keeps `seg`, just read back from disk by a query, as the log's recent read (in place of the last one)
    /// while its slot is still on disk only.
    fn keep_read(&self, seg: &Arc<Segment>) {
        let mut inner = self.lock();
        let evicted = inner
            .slots
            .iter()
            .any(|s| s.first_seq == seg.first_seq && s.mem.is_none() && s.lines == seg.len() as u64);
        if evicted {
            inner.forget_read(&self.budget);
            inner.account(0, seg.memory(), &self.budget);
            inner.recent = Some(seg.clone());
            let cap = self.limits.max_bytes;
            inner.evict_middle_while(&mut |inner| inner.mem > cap, &self.budget);
        }
    }
}

impl Reclaim for ExecutionLog {
    fn reclaim_key(&self) -> (bool, u64) {
        self.lock().reclaim_key()
    }

    fn give_back(&self, budget: &MemoryBudget) {
        self.lock().evict_while(|_| budget.over(), budget);
    }
}

impl Drop for ExecutionLog {
    fn drop(&mut self) {
        let mem = lock(&self.inner).mem;
        self.budget.sub(mem);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::logs::LogDir;
    use crate::logs::budget::reclaim_order;

    fn memory_log(max_bytes: usize) -> (Arc<ExecutionLog>, Arc<MemoryBudget>) {
        let budget = MemoryBudget::new(usize::MAX / 2);
        let log = ExecutionLog::new(
            LogLimits {
                max_bytes,
                max_line_bytes: 1024,
            },
            budget.clone(),
        );
        (log, budget)
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
        lines_with_stream(snap)
            .into_iter()
            .map(|(seq, text, _)| (seq, text))
            .collect()
    }

    #[test]
    fn lines_keep_their_seq_and_stream() {
        let (log, _) = memory_log(1 << 20);
        let (data, ends) = chunk(&["a", "", "ccc"]);
        log.append(Stream::Stdout, &data, &ends, &[], data.len() as u64, SystemTime::now());
        log.append_line(Stream::Stderr, b"tail", flags::NO_NEWLINE, 4, SystemTime::now());
        let snap = log.snapshot();
        assert_eq!(
            all_lines(&snap),
            vec![(0, "a".into()), (1, "".into()), (2, "ccc".into()), (3, "tail".into())]
        );
        let last_seg = snap.segments.last().unwrap().load();
        let last = last_seg.line(3);
        assert_eq!(last.stream(), Stream::Stderr);
        assert!(last.has(flags::NO_NEWLINE));
        let stats = log.stats();
        assert_eq!((stats.stdout.lines, stats.stdout.bytes), (3, 7));
        assert_eq!((stats.stderr.lines, stats.stderr.bytes), (1, 4));
    }

    #[test]
    fn eviction_keeps_head_and_tail_and_counts_what_it_dropped() {
        let (log, _) = memory_log(256 * 1024);
        let line = "x".repeat(99);
        let lines: Vec<&str> = vec![line.as_str(); 100];
        let (data, ends) = chunk(&lines);
        for _ in 0..200 {
            log.append(Stream::Stdout, &data, &ends, &[], data.len() as u64, SystemTime::now());
        }
        let stats = log.stats();
        let snap = log.snapshot();
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
        let (log, _) = memory_log(1 << 20);
        let t0 = log.origin();
        let (data, ends) = chunk(&["a", "b"]);
        log.append(Stream::Stdout, &data, &ends, &[], 4, t0 + Duration::from_millis(5));
        let (data, ends) = chunk(&["c"]);
        log.append(Stream::Stdout, &data, &ends, &[], 2, t0 + Duration::from_millis(5));
        log.append(Stream::Stderr, &data, &ends, &[], 2, t0 + Duration::from_millis(9));
        let snap = log.snapshot();
        let seg = snap.segments.last().unwrap().load();
        let stamps: Vec<u32> = (0..seg.len()).map(|i| seg.line(i).ts_ms()).collect();
        assert_eq!(stamps, [5, 5, 5, 9]);
        assert_eq!(seg.stamps.len(), 2, "one stamp per new time, not per line");
    }

    #[test]
    fn a_reader_holding_the_active_segment_does_not_see_later_appends() {
        let (log, _) = memory_log(1 << 20);
        let (data, ends) = chunk(&["one"]);
        log.append(Stream::Stdout, &data, &ends, &[], 4, SystemTime::now());
        let snap = log.snapshot();
        let (data, ends) = chunk(&["two"]);
        log.append(Stream::Stdout, &data, &ends, &[], 4, SystemTime::now());
        assert_eq!(all_lines(&snap), vec![(0, "one".into())]);
        assert_eq!(all_lines(&log.snapshot()), vec![(0, "one".into()), (1, "two".into())]);
    }

    #[test]
    fn the_global_budget_takes_from_finished_executions_first() {
        let budget = MemoryBudget::new(1024 * 1024);
        let limits = LogLimits {
            max_bytes: 1 << 20,
            max_line_bytes: 1024,
        };
        let old = ExecutionLog::new(limits, budget.clone());
        let line = "y".repeat(199);
        let lines: Vec<&str> = vec![line.as_str(); 1000];
        let (data, ends) = chunk(&lines);
        for _ in 0..4 {
            old.append(Stream::Stdout, &data, &ends, &[], 0, SystemTime::now());
        }
        old.mark_finished();
        let new = ExecutionLog::new(limits, budget.clone());
        for _ in 0..4 {
            new.append(Stream::Stdout, &data, &ends, &[], 0, SystemTime::now());
        }
        assert!(old.stats().dropped_lines > 0, "the finished log gave memory back");
        assert_eq!(new.stats().dropped_lines, 0, "the running log kept everything");
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
        // Running logs keep growing while the sort runs (their drain threads append), so every read of a
        // size may differ; the order must follow one reading per log, and must not panic in a drain thread.
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
        assert!(keys.is_sorted(), "logs are ordered by the keys read");
        let mut ids = order.clone();
        ids.sort_unstable();
        assert!(ids.into_iter().eq(0..sizes.len()), "every log is kept once");
    }

    #[test]
    fn registry_of_dropped_stores_stays_bounded_under_the_global_cap() {
        // Pruned only when the global cap is exceeded, the registry grew by one entry (each pinning its log's
        // `Arc` allocation) per execution ever started.
        let budget = MemoryBudget::new(usize::MAX / 2);
        let limits = LogLimits {
            max_bytes: 1 << 20,
            max_line_bytes: 1024,
        };
        let mut alive = Vec::new();
        let mut longest = 0;
        for i in 0..10_000 {
            let log = ExecutionLog::new(limits, budget.clone());
            if i % 1000 == 0 {
                alive.push(log);
            }
            longest = longest.max(budget.registered().len());
        }
        assert!(!budget.over(), "the cap was never exceeded, so reclaim never ran");
        assert!(longest <= 64, "the registry grew to {longest} entries");
        let live = budget.registered().iter().filter(|w| w.strong_count() > 0).count();
        assert_eq!(live, alive.len(), "live logs stay registered for reclaim");
    }

    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(label: &str) -> TempDir {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!("wfmcp-log-{}-{n}-{label}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn disk_log(dir: &std::path::Path, mem: usize, disk: u64) -> Arc<ExecutionLog> {
        ExecutionLog::with_disk(
            LogLimits {
                max_bytes: mem,
                max_line_bytes: 1024,
            },
            MemoryBudget::new(usize::MAX / 2),
            Some(DiskLimits {
                dir: LogDir::open(dir),
                max_bytes: disk,
            }),
        )
    }

    /// Takes over the log in `dir` as a new server does after the one writing it is gone.
    fn resume_log(dir: &std::path::Path) -> (Arc<ExecutionLog>, [u64; 2]) {
        ExecutionLog::resume(
            LogLimits {
                max_bytes: 1 << 20,
                max_line_bytes: 1024,
            },
            MemoryBudget::new(usize::MAX / 2),
            DiskLimits {
                dir: LogDir::open(dir),
                max_bytes: 1 << 30,
            },
        )
    }

    /// Appends lines "line N" for N in `range`, `per_chunk` at a time, alternating streams per chunk.
    fn fill(log: &ExecutionLog, range: std::ops::Range<u64>, per_chunk: u64) {
        let mut n = range.start;
        while n < range.end {
            let texts: Vec<String> = (n..(n + per_chunk).min(range.end))
                .map(|i| format!("line {i}"))
                .collect();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let (data, ends) = chunk(&refs);
            let stream = if (n / per_chunk).is_multiple_of(2) {
                Stream::Stdout
            } else {
                Stream::Stderr
            };
            log.append(stream, &data, &ends, &[], data.len() as u64, SystemTime::now());
            n += texts.len() as u64;
        }
    }

    fn lines_with_stream(snap: &Snapshot) -> Vec<(u64, String, Stream)> {
        snap.segments
            .iter()
            .flat_map(|s| {
                let seg = s.load();
                (0..seg.len())
                    .map(|i| seg.line(i))
                    .map(|l| (l.seq, String::from_utf8_lossy(l.bytes).into_owned(), l.stream()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Every line with all a reader can ask of it: seq, text, flags (stream included) and read time.
    fn lines_whole(snap: &Snapshot) -> Vec<(u64, String, u8, u32)> {
        snap.segments
            .iter()
            .flat_map(|s| {
                let seg = s.load();
                (0..seg.len())
                    .map(|i| seg.line(i))
                    .map(|l| (l.seq, String::from_utf8_lossy(l.bytes).into_owned(), l.flags, l.ts_ms()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn the_files_hold_what_memory_holds_and_serve_it_after_memory_lets_go() {
        let dir = TempDir::new("mirror");
        // 1 MiB of memory for ~3 MiB of lines: most of the middle leaves memory, nothing leaves disk.
        let log = disk_log(&dir.0, 1 << 20, 1 << 30);
        fill(&log, 0..299_996, 1000);
        // Lines with flags of every kind, on both streams, at a later time.
        let later = SystemTime::now() + Duration::from_secs(5);
        let (data, ends) = chunk(&["line 299996", "line 299997", "line 299998"]);
        let f = [flags::PARTIAL, 0, flags::EVENT | flags::NEEDS_RENDER];
        log.append(Stream::Stderr, &data, &ends, &f, data.len() as u64, later);
        log.append_line(Stream::Stdout, b"line 299999", flags::NO_NEWLINE, 11, later);
        log.mark_finished();
        let stats = log.stats();
        assert_eq!(
            (stats.dropped_lines, stats.disk_error.clone()),
            (0, None),
            "nothing is lost: {stats:?}"
        );
        let live = log.snapshot();
        assert!(live.gap.is_none());
        assert!(
            live.segments.iter().any(|s| matches!(s, SegmentRef::Disk { .. })),
            "the middle is served from disk"
        );
        let from_memory = lines_with_stream(&live);
        assert_eq!(from_memory.len(), 300_000);
        assert!(
            from_memory
                .iter()
                .enumerate()
                .all(|(i, (seq, text, _))| *seq == i as u64 && *text == format!("line {i}"))
        );
        let from_files = lines_with_stream(&Snapshot::from_disk(&LogDir::open(&dir.0)));
        assert_eq!(
            from_files, from_memory,
            "a reader of the files alone sees the same lines, seqs and streams"
        );
        let (whole_memory, whole_files) = (
            lines_whole(&live),
            lines_whole(&Snapshot::from_disk(&LogDir::open(&dir.0))),
        );
        assert_eq!(whole_files, whole_memory, "and the same flags and read times");
        let flagged: Vec<u8> = whole_files[299_996..].iter().map(|l| l.2).collect();
        assert_eq!(
            flagged,
            [
                flags::STDERR | flags::PARTIAL,
                flags::STDERR,
                flags::STDERR | flags::EVENT | flags::NEEDS_RENDER,
                flags::NO_NEWLINE
            ]
        );
        assert!(
            whole_files[299_999].3 >= whole_files[0].3 + 5000,
            "the later time is kept"
        );
        let on_disk: u64 = LogDir::open(&dir.0).segments().iter().map(|s| s.disk_bytes).sum();
        assert_eq!(stats.disk_bytes, on_disk);
    }

    #[test]
    fn buffers_reused_past_the_memory_cap_never_change_what_a_reader_holds() {
        let dir = TempDir::new("recycle");
        let cap = 1 << 20;
        let log = disk_log(&dir.0, cap, 1 << 30);
        fill(&log, 0..100_000, 1000);
        let held = log.snapshot();
        let before = lines_with_stream(&held);
        // Far past the cap: segments leave memory and new ones take their buffers, except the ones held.
        fill(&log, 100_000..400_000, 1000);
        assert_eq!(lines_with_stream(&held), before, "a reader's snapshot stays as it was");
        let stats = log.stats();
        assert!(
            stats.memory_bytes <= cap,
            "memory {} passed the cap",
            stats.memory_bytes
        );
        let all = lines_with_stream(&log.snapshot());
        assert_eq!(all.len(), 400_000);
        assert!(
            all.iter()
                .enumerate()
                .all(|(i, (seq, text, _))| *seq == i as u64 && *text == format!("line {i}")),
            "every line reads back in order, from memory or disk"
        );
    }

    #[test]
    fn the_last_segment_read_back_from_disk_serves_the_next_reader_within_the_cap() {
        let dir = TempDir::new("recent");
        let cap = 1 << 20;
        let log = disk_log(&dir.0, cap, 1 << 30);
        fill(&log, 0..300_000, 1000);
        log.mark_finished();
        let on_disk = |snap: &Snapshot| -> Vec<bool> {
            snap.segments
                .iter()
                .map(|s| matches!(s, SegmentRef::Disk { .. }))
                .collect()
        };
        let snap = log.snapshot();
        let before = on_disk(&snap);
        let (a, b) = {
            let mut disk = before.iter().enumerate().filter(|(_, d)| **d).map(|(i, _)| i);
            (disk.next().unwrap(), disk.next().unwrap())
        };
        assert_eq!(snap.segments[a].load().line(0).seq, snap.segments[a].first_seq());
        drop(snap);
        let after = on_disk(&log.snapshot());
        assert!(!after[a], "the segment read is served from memory next time");
        // To stay within the cap, segments of the middle left memory for it.
        assert!(log.stats().memory_bytes <= cap, "memory stays within the cap");

        log.snapshot().segments[b].load();
        let after = on_disk(&log.snapshot());
        assert_eq!((after[a], after[b]), (true, false), "only the last one read is kept");
        assert!(log.stats().memory_bytes <= cap);
        let lines = lines_with_stream(&log.snapshot());
        assert!(
            lines
                .iter()
                .enumerate()
                .all(|(i, l)| l.0 == i as u64 && l.1 == format!("line {i}"))
        );
    }

    #[test]
    fn past_the_disk_cap_the_head_and_newest_stay_and_the_middle_is_counted() {
        let dir = TempDir::new("cap");
        let log = disk_log(&dir.0, 1 << 20, 3 << 20);
        fill(&log, 0..1_000_000, 5000);
        let stats = log.stats();
        assert!(stats.dropped_lines > 0, "10 MB of lines do not fit a 3 MiB disk cap");
        assert!(
            stats.disk_bytes <= 3 << 20,
            "disk use stays under its cap: {}",
            stats.disk_bytes
        );
        let files = Snapshot::from_disk(&LogDir::open(&dir.0));
        let lines = lines_with_stream(&files);
        assert_eq!(lines[0].1, "line 0", "the head is kept");
        assert_eq!(lines.last().unwrap().1, "line 999999", "the newest line is kept");
        let gap = files.gap.expect("the deleted middle is a gap");
        assert_eq!(
            gap.to - gap.from,
            stats.dropped_lines,
            "the gap is exactly what was dropped"
        );
        assert_eq!(lines.len() as u64 + stats.dropped_lines, 1_000_000);
        assert_eq!(log.snapshot().gap, Some(gap), "memory and files agree on what is gone");
    }

    #[test]
    fn a_log_cut_short_by_a_crash_reads_up_to_its_last_complete_line_and_the_next_server_goes_on_after_it() {
        let dir = TempDir::new("crash");
        let log = disk_log(&dir.0, 1 << 20, 1 << 30);
        fill(&log, 0..10, 5);
        drop(log); // never finished: the segment is not sealed
        let base = dir.0.join(format!("{:020}", 0));
        // The end of the last line and half of a record never made it.
        let data = std::fs::read(base.with_extension("log")).unwrap();
        std::fs::write(base.with_extension("log"), &data[..data.len() - 3]).unwrap();
        let meta = std::fs::read(base.with_extension("meta")).unwrap();
        std::fs::write(base.with_extension("meta"), [&meta[..], &[1, 2]].concat()).unwrap();
        let lines = lines_with_stream(&Snapshot::from_disk(&LogDir::open(&dir.0)));
        assert_eq!(lines.len(), 9);
        assert_eq!((lines[4].1.as_str(), lines[4].2), ("line 4", Stream::Stdout));
        assert_eq!((lines[8].1.as_str(), lines[8].2), ("line 8", Stream::Stderr));

        let (log, offsets) = resume_log(&dir.0);
        assert_eq!(
            offsets,
            [5 * 7, 4 * 7],
            "reading resumes after the last complete line of each stream"
        );
        fill(&log, 9..12, 3);
        log.mark_finished();
        assert_eq!(log.stats().disk_error, None);
        let lines = lines_with_stream(&Snapshot::from_disk(&LogDir::open(&dir.0)));
        let texts: Vec<&str> = lines.iter().map(|l| l.1.as_str()).collect();
        let want: Vec<String> = (0..12).map(|i| format!("line {i}")).collect();
        assert_eq!(
            texts, want,
            "the cut line is gone, the new ones follow with the next seqs"
        );
        assert!(lines.iter().enumerate().all(|(i, l)| l.0 == i as u64));

        // A crash right after a new segment got its first bytes (and a record saying stderr): no complete line.
        let fresh = dir.0.join(format!("{:020}", 12));
        std::fs::write(fresh.with_extension("log"), b"lin").unwrap();
        let stderr_record = [(1u32 << 28).to_le_bytes(), 1u32.to_le_bytes()].concat();
        std::fs::write(fresh.with_extension("meta"), stderr_record).unwrap();
        let (log, _) = resume_log(&dir.0);
        fill(&log, 12..14, 2);
        log.mark_finished();
        let lines = lines_with_stream(&Snapshot::from_disk(&LogDir::open(&dir.0)));
        let last: Vec<(u64, &str, Stream)> = lines[12..].iter().map(|l| (l.0, l.1.as_str(), l.2)).collect();
        assert_eq!(
            last,
            [(12, "line 12", Stream::Stdout), (13, "line 13", Stream::Stdout)],
            "the empty segment's files were replaced, not appended to"
        );
    }

    #[test]
    fn a_failed_write_keeps_the_lines_in_memory_and_says_why() {
        let dir = TempDir::new("enospc");
        std::fs::create_dir_all(&dir.0).unwrap();
        // The first segment's data file is /dev/full: every write to it fails with ENOSPC.
        std::os::unix::fs::symlink("/dev/full", dir.0.join(format!("{:020}.log", 0))).unwrap();
        let log = disk_log(&dir.0, 1 << 20, 1 << 30);
        fill(&log, 0..1000, 100);
        let stats = log.stats();
        let error = stats.disk_error.expect("the failure is reported");
        assert!(error.contains("No space left on device"), "{error}");
        assert_eq!(stats.dropped_lines, 0);
        assert_eq!(
            lines_with_stream(&log.snapshot()).len(),
            1000,
            "every line is still in memory"
        );
    }
}
