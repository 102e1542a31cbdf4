//! The state behind an execution log's lock: its segments (slots) in memory, on disk or both, its files, its
//! counters, and what leaves memory or disk when a cap is passed (see [`super::log`] for the design).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::SystemTime;

use super::budget::MemoryBudget;
use super::disk::{DiskLimits, LogDir, SegmentWriter};
use super::segment::{Segment, Stream};
use super::snapshot::Gap;
use crate::model::StreamCounters;

/// A retained segment: in memory, on disk, or both.
#[derive(Debug)]
pub(super) struct Slot {
    pub(super) first_seq: u64,
    pub(super) lines: u64,
    pub(super) text_bytes: u64,
    pub(super) mem: Option<Arc<Segment>>,
    /// Its files' size, once they hold all of its lines.
    pub(super) disk_bytes: Option<u64>,
}

impl Slot {
    pub(super) fn resident(seg: Segment) -> Slot {
        Slot {
            first_seq: seg.first_seq,
            lines: 0,
            text_bytes: 0,
            mem: Some(Arc::new(seg)),
            disk_bytes: None,
        }
    }

    pub(super) fn memory(&self) -> usize {
        self.mem.as_ref().map_or(0, |s| s.memory())
    }
}

/// The log's files.
#[derive(Debug)]
pub(super) struct Disk {
    pub(super) limits: DiskLimits,
    /// The active segment's files.
    pub(super) writer: Option<SegmentWriter>,
    /// Bytes of every retained segment's files.
    pub(super) bytes: u64,
    /// Set when a write failed: from then on lines are kept in memory only.
    pub(super) error: Option<String>,
    /// The log's origin, until its folder is created with the first line: an execution that never runs (a
    /// queue ended at shutdown) leaves no folder to delete.
    pub(super) unborn: Option<SystemTime>,
}

#[derive(Debug)]
pub(super) struct Inner {
    /// Never empty; the last slot is the active segment (always in memory), the one appended to.
    pub(super) slots: VecDeque<Slot>,
    /// The first `pinned` slots are the head and never leave memory or disk.
    pub(super) pinned: usize,
    pub(super) head_open: bool,
    pub(super) head_budget: usize,
    pub(super) mem: usize,
    pub(super) next_seq: u64,
    pub(super) gap: Option<Gap>,
    pub(super) dropped_lines: u64,
    pub(super) dropped_bytes: u64,
    pub(super) truncated_lines: u64,
    pub(super) streams: [StreamCounters; 2],
    pub(super) last_output_at: Option<SystemTime>,
    pub(super) finished: bool,
    pub(super) finish_order: u64,
    pub(super) disk: Option<Disk>,
    /// The last segment read back from disk (counted in `mem`): a reader paging through a log that left
    /// memory reads each file once, not once per page.
    pub(super) recent: Option<Arc<Segment>>,
}

impl Disk {
    /// Writes what was just appended to the active segment (the one starting at `first_seq`): `lines` lines of
    /// `stream` (`data`, and each one's flags when any has some), read at a new time if `stamp_ms` says so. A
    /// failure is kept, and writing stops.
    pub(super) fn write(
        &mut self,
        first_seq: u64,
        data: &[u8],
        lines: usize,
        stream: Stream,
        line_flags: &[u8],
        stamp_ms: Option<u32>,
    ) {
        if self.error.is_some() {
            return;
        }
        if let Some(origin) = self.unborn.take()
            && let Err(e) = LogDir::create(self.limits.dir.path(), origin)
        {
            self.error = Some(format!("cannot create {}: {e}", self.limits.dir.path().display()));
            return;
        }
        let result = (|| {
            if self.writer.as_ref().is_none_or(|w| w.first_seq != first_seq) {
                self.close_writer(false);
                self.writer = Some(SegmentWriter::create(&self.limits.dir, first_seq)?);
            }
            let w = self.writer.as_mut().expect("just set");
            w.append(data, lines, stream, line_flags, stamp_ms)
        })();
        if let Err(e) = result {
            self.error = Some(format!("writing {} failed: {e}", self.limits.dir.path().display()));
            self.writer = None;
        }
    }

    /// Seals the active segment's files (and syncs them if asked) and closes them; returns their size.
    pub(super) fn close_writer(&mut self, sync: bool) -> Option<u64> {
        let mut w = self.writer.take()?;
        // Failing to seal loses nothing (a reader counts the segment's newlines instead), and the next write
        // reports a full disk anyway.
        let _ = w.seal();
        if sync {
            let _ = w.sync();
        }
        self.bytes += w.bytes;
        Some(w.bytes)
    }

    /// Bytes of every retained segment's files, the active one's included.
    pub(super) fn total(&self) -> u64 {
        self.bytes + self.writer.as_ref().map_or(0, |w| w.bytes)
    }

    /// Whether every line of the segment starting at `first_seq` is on disk.
    fn holds(&self, first_seq: u64) -> bool {
        self.error.is_none() || self.writer.as_ref().is_some_and(|w| w.first_seq > first_seq)
    }
}

impl Inner {
    /// Finished before running; among finished the oldest first; among running the largest first.
    pub(super) fn reclaim_key(&self) -> (bool, u64) {
        let order = if self.finished {
            self.finish_order
        } else {
            u64::MAX - self.mem as u64
        };
        (!self.finished, order)
    }

    pub(super) fn account(&mut self, before: usize, after: usize, budget: &MemoryBudget) {
        if after >= before {
            self.mem += after - before;
            budget.add(after - before);
        } else {
            self.mem -= before - after;
            budget.sub(before - after);
        }
    }

    /// Closes the active segment and opens a new one of `capacity` bytes. When memory is at `cap`, the new one
    /// takes the buffers of the oldest middle segment on disk (which leaves memory now rather than after the
    /// append): writing into pages already in use costs less than having the kernel hand out fresh ones.
    pub(super) fn seal_active(&mut self, capacity: usize, cap: usize, budget: &MemoryBudget) {
        let last = self.slots.len() - 1;
        if let Some(seg) = self.slots[last].mem.as_mut().and_then(Arc::get_mut) {
            let before = seg.memory();
            seg.entries.shrink_to_fit();
            seg.stamps.shrink_to_fit();
            seg.data.shrink_to_fit();
            let after = seg.memory();
            self.account(before, after, budget);
        }
        if self.slots[last].lines == 0 {
            // Nothing to keep (a reader held it, or a line did not fit an empty segment): replace it.
            let old = self.slots.pop_back().expect("active").memory();
            self.account(old, 0, budget);
        } else {
            if let Some(bytes) = self.disk.as_mut().and_then(|d| d.close_writer(false)) {
                self.slots[last].disk_bytes = Some(bytes);
            }
            if self.head_open {
                let seg_mem = self.slots[last].memory();
                let head_mem: usize = self.slots.iter().take(self.pinned).map(Slot::memory).sum();
                // The first segment is always the head; more join it while they fit the head budget.
                if last == self.pinned && (self.pinned == 0 || head_mem + seg_mem <= self.head_budget) {
                    self.pinned += 1;
                } else {
                    self.head_open = false;
                }
            }
        }
        let seg = match self.recycle(capacity, cap, budget) {
            Some(mut seg) => {
                seg.reset(self.next_seq, capacity);
                seg
            }
            None => Segment::new(self.next_seq, capacity),
        };
        self.account(0, seg.memory(), budget);
        self.slots.push_back(Slot::resident(seg));
    }

    /// Takes the oldest middle segment out of memory for its buffers, if a new segment of `capacity` bytes would
    /// pass `cap` and that segment's lines are on disk. Returns the segment unless a reader still holds it.
    fn recycle(&mut self, capacity: usize, cap: usize, budget: &MemoryBudget) -> Option<Segment> {
        if self.mem + capacity <= cap {
            return None;
        }
        let i = self.first_resident_middle()?;
        let on_disk =
            self.slots[i].disk_bytes.is_some() && self.disk.as_ref().is_some_and(|d| d.holds(self.slots[i].first_seq));
        if !on_disk {
            return None;
        }
        let seg = self.slots[i].mem.take()?;
        self.head_open = false;
        self.account(seg.memory(), 0, budget);
        Arc::into_inner(seg)
    }

    /// The first middle slot (after the head, before the active one) still in memory.
    fn first_resident_middle(&self) -> Option<usize> {
        (self.pinned..self.slots.len().saturating_sub(1)).find(|&i| self.slots[i].mem.is_some())
    }

    /// Removes middle slots `pinned..=last` entirely: their lines are gone, counted and reported as a gap.
    fn drop_middle(&mut self, last: usize, budget: &MemoryBudget) {
        for _ in self.pinned..=last {
            let slot = self.slots.remove(self.pinned).expect("middle slot exists");
            self.head_open = false;
            if self.recent.as_ref().is_some_and(|r| r.first_seq == slot.first_seq) {
                self.forget_read(budget);
            }
            if let (Some(disk), Some(bytes)) = (&mut self.disk, slot.disk_bytes) {
                disk.limits.dir.remove(slot.first_seq);
                disk.bytes -= bytes;
            }
            // Readers may still hold the segment; the memory is theirs until they drop it.
            self.account(slot.memory(), 0, budget);
            if slot.lines == 0 {
                continue;
            }
            self.dropped_lines += slot.lines;
            self.dropped_bytes += slot.text_bytes;
            self.gap = Some(Gap {
                from: self.gap.map_or(slot.first_seq, |g| g.from),
                to: slot.first_seq + slot.lines,
            });
        }
    }

    /// Takes whole middle segments out of memory while `more` says so, and then the last segment read back
    /// from disk if that is not enough.
    pub(super) fn evict_while(&mut self, mut more: impl FnMut(&Inner) -> bool, budget: &MemoryBudget) {
        self.evict_middle_while(&mut more, budget);
        if more(self) {
            self.forget_read(budget);
        }
    }

    /// Lets go of the last segment read back from disk.
    pub(super) fn forget_read(&mut self, budget: &MemoryBudget) {
        if let Some(old) = self.recent.take() {
            self.account(old.memory(), 0, budget);
        }
    }

    /// Takes whole middle segments out of memory while `more` says so: one on disk stays readable there; one
    /// that is not (no files, or writing failed) is dropped, with every disk-only slot before it so the missing
    /// range stays one.
    pub(super) fn evict_middle_while(&mut self, more: &mut impl FnMut(&Inner) -> bool, budget: &MemoryBudget) {
        while more(self)
            && let Some(i) = self.first_resident_middle()
        {
            let on_disk = self.slots[i].disk_bytes.is_some()
                && self.disk.as_ref().is_some_and(|d| d.holds(self.slots[i].first_seq));
            if on_disk {
                self.head_open = false;
                let mem = self.slots[i].memory();
                self.slots[i].mem = None;
                self.account(mem, 0, budget);
            } else {
                self.drop_middle(i, budget);
            }
        }
    }

    /// Deletes whole middle segments from disk while the files pass their cap.
    pub(super) fn trim_disk(&mut self, budget: &MemoryBudget) {
        while let Some(disk) = &self.disk
            && disk.total() > disk.limits.max_bytes
            && self.slots.len() > self.pinned + 1
        {
            self.drop_middle(self.pinned, budget);
        }
    }
}
