//! Segments: runs of consecutive lines in one byte arena with a 4-byte index entry per line (end offset and
//! flags) and one timestamp per chunk read.

pub use crate::model::Stream;

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

pub(super) const END_BITS: u32 = 26;
pub(super) const END_MASK: u32 = (1 << END_BITS) - 1;
/// The largest segment an index entry can address; the max line length stays well below it.
pub const MAX_SEGMENT_BYTES: usize = END_MASK as usize;
pub(super) const DEFAULT_SEGMENT_BYTES: usize = 1 << 20;

/// One line of the index: where the line ends in its segment, and its flags. (Lines read in one chunk share a
/// timestamp, kept once per chunk in [`Segment::stamps`].)
#[derive(Clone, Copy, Debug)]
pub(super) struct Entry {
    /// Bits 0..26: end offset (exclusive, before the `\n`) in the segment; bits 26..32: flags.
    pub(super) meta: u32,
}

impl Entry {
    pub(super) fn new(end: usize, flags: u8) -> Self {
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
    pub(super) first_seq: u64,
    pub(super) data: Vec<u8>,
    pub(super) entries: Vec<Entry>,
    /// (index of the first line of a chunk, its read time in ms since the log's origin, saturating at ~49 days),
    /// one per appended chunk with a new time.
    pub(super) stamps: Vec<(u32, u32)>,
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
    /// When the line was read, in milliseconds since the log's origin (looked up only when asked: a grep over
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
    pub(super) fn new(first_seq: u64, capacity: usize) -> Self {
        Segment {
            first_seq,
            data: Vec::with_capacity(capacity),
            entries: Vec::with_capacity(capacity / 32),
            stamps: Vec::new(),
        }
    }

    /// Empties a segment for reuse as the one starting at `first_seq`, keeping its buffers (grown to `capacity`
    /// bytes of text, and room for a few more lines than it held).
    pub(super) fn reset(&mut self, first_seq: u64, capacity: usize) {
        let lines = self.entries.len();
        self.first_seq = first_seq;
        self.data.clear();
        self.data.reserve(capacity);
        self.entries.clear();
        self.entries.reserve(lines + lines / 8);
        self.stamps.clear();
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

    /// A segment read back from disk: `data` holds its lines, line `i` ending at `ends[i]` with flags
    /// `line_flags[i]` (`line_flags` is empty when no line has any).
    pub(super) fn from_parts(
        first_seq: u64,
        data: Vec<u8>,
        ends: &[u32],
        line_flags: &[u8],
        stamps: Vec<(u32, u32)>,
    ) -> Self {
        let entries = if line_flags.is_empty() {
            ends.iter().map(|&end| Entry { meta: end }).collect()
        } else {
            ends.iter()
                .zip(line_flags)
                .map(|(&end, &f)| Entry::new(end as usize, f))
                .collect()
        };
        Segment {
            first_seq,
            data,
            entries,
            stamps,
        }
    }

    /// Stands in for a segment that could not be read back: each of its lines says why.
    pub(super) fn unreadable(first_seq: u64, lines: u64, why: &str) -> Self {
        let text = format!("[line not readable from disk: {why}]");
        let mut seg = Segment::new(first_seq, (text.len() + 1) * lines as usize);
        for _ in 0..lines {
            seg.data.extend_from_slice(text.as_bytes());
            seg.entries.push(Entry::new(seg.data.len(), 0));
            seg.data.push(b'\n');
        }
        seg
    }

    /// Records that lines from local index `first` on were read at `ts_ms`.
    pub(super) fn stamp(&mut self, first: usize, ts_ms: u32) {
        if self.stamps.last().is_none_or(|s| s.1 != ts_ms) {
            self.stamps.push((first as u32, ts_ms));
        }
    }

    fn start_of(&self, i: usize) -> usize {
        if i == 0 { 0 } else { self.entries[i - 1].end() + 1 }
    }

    pub(super) fn memory(&self) -> usize {
        self.data.capacity()
            + self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.stamps.capacity() * std::mem::size_of::<(u32, u32)>()
    }

    /// Bytes of line text (without the separators).
    pub(super) fn text_bytes(&self) -> usize {
        self.data.len() - self.entries.len()
    }
}
