//! The snapshot a query reads: a log's segments at one instant, in memory or on disk and loaded when a query
//! reaches them (and dropped when it moves on), with the range no longer available.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use super::disk::{DiskSegment, LogDir};
use super::segment::Segment;

/// The seq range `[from, to)` evicted from memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    pub from: u64,
    pub to: u64,
}

/// What keeps the last segment read back from disk for the next reader: the log it left memory from.
pub trait ReadCache: Send + Sync {
    /// The last segment read back, if it is the one starting at `first_seq` with `lines` lines.
    fn recent_read(&self, first_seq: u64, lines: u64) -> Option<Arc<Segment>>;
    /// Keeps `seg`, just read back by a query, in place of the last one (while its slot is on disk only).
    fn keep_read(&self, seg: &Arc<Segment>);
}

/// A segment as a snapshot holds it: in memory (shared, never copied), or on disk and read back each time a query
/// reaches it. A snapshot never keeps what it read: a scan holds one segment at a time, so a grep over a log of
/// any size takes the memory of a segment, and the log's cache of the last one read is the only copy kept.
#[derive(Debug)]
pub enum SegmentRef {
    Memory(Arc<Segment>),
    Disk {
        segment: DiskSegment,
        /// The log the segment left memory from: it keeps the last segment read back, so a reader paging
        /// through reads each file once.
        owner: Option<Weak<dyn ReadCache>>,
    },
}

impl SegmentRef {
    pub fn on_disk(segment: DiskSegment) -> Self {
        SegmentRef::Disk { segment, owner: None }
    }

    pub(super) fn read_for(segment: DiskSegment, owner: Weak<dyn ReadCache>) -> Self {
        SegmentRef::Disk {
            segment,
            owner: Some(owner),
        }
    }

    pub fn first_seq(&self) -> u64 {
        match self {
            SegmentRef::Memory(s) => s.first_seq,
            SegmentRef::Disk { segment, .. } => segment.first_seq,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            SegmentRef::Memory(s) => s.len(),
            SegmentRef::Disk { segment, .. } => segment.lines as usize,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One past the last seq held here.
    pub fn end_seq(&self) -> u64 {
        self.first_seq() + self.len() as u64
    }

    /// The lines: shared from memory, or read from disk now (from the log's last read if it is this one; a
    /// segment that cannot be read gives lines that say so). Dropping the result frees what was read.
    pub fn load(&self) -> Arc<Segment> {
        let (segment, owner) = match self {
            SegmentRef::Memory(s) => return s.clone(),
            SegmentRef::Disk { segment, owner } => (segment, owner.as_ref().and_then(Weak::upgrade)),
        };
        if let Some(seg) = owner
            .as_ref()
            .and_then(|s| s.recent_read(segment.first_seq, segment.lines))
        {
            return seg;
        }
        let seg = match segment.load() {
            Ok(seg) if seg.len() as u64 >= segment.lines => Arc::new(seg),
            Ok(_) => {
                let why = "the file holds fewer lines than were written to it";
                return Arc::new(Segment::unreadable(segment.first_seq, segment.lines, why));
            }
            Err(e) => return Arc::new(Segment::unreadable(segment.first_seq, segment.lines, &e.to_string())),
        };
        if let Some(log) = owner {
            log.keep_read(&seg);
        }
        seg
    }
}

/// The retained lines at one instant.
#[derive(Debug)]
pub struct Snapshot {
    pub segments: Vec<SegmentRef>,
    pub next_seq: u64,
    /// The range no longer available (evicted from memory without a copy on disk, or deleted from disk).
    pub gap: Option<Gap>,
    pub origin: SystemTime,
}

impl Snapshot {
    /// The oldest retained seq (equal to `next_seq` when nothing is retained).
    pub fn oldest_seq(&self) -> u64 {
        self.segments
            .iter()
            .find(|s| !s.is_empty())
            .map_or(self.next_seq, |s| s.first_seq())
    }

    /// Index of the segment holding `seq`, or of the first segment after it (for a seq in the gap).
    pub fn segment_index_for(&self, seq: u64) -> usize {
        self.segments.partition_point(|s| s.end_seq() <= seq)
    }

    pub fn timestamp(&self, ts_ms: u32) -> SystemTime {
        self.origin + Duration::from_millis(u64::from(ts_ms))
    }

    /// A log read from its files alone (an execution this process does not run: finished before it started,
    /// or run by another server).
    pub fn from_disk(dir: &LogDir) -> Snapshot {
        let found = dir.segments();
        let next_seq = found.last().map_or(0, |s| s.first_seq + s.lines);
        // Segments are deleted from the middle only: the first hole is the gap.
        let gap = found
            .windows(2)
            .find(|w| w[0].first_seq + w[0].lines < w[1].first_seq)
            .map(|w| Gap {
                from: w[0].first_seq + w[0].lines,
                to: w[1].first_seq,
            });
        Snapshot {
            segments: found.into_iter().map(SegmentRef::on_disk).collect(),
            next_seq,
            gap,
            origin: dir.origin(),
        }
    }
}
