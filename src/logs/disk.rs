//! Log files: an execution's log on disk, two files per memory segment. For a segment whose first line has seq S
//! (20 digits, zero-padded):
//! - `S.log`: the lines exactly as read, each followed by `\n` — the file is the log (`cat`, `grep` and `tail -f`
//!   work on it), and a line is found in it by counting newlines, so there is no per-line index on disk;
//! - `S.meta`: what the text does not say, as 8-byte records in line order (see [`Record`]): where the stream
//!   changes, the lines that carry flags (a partial piece, no final newline, an event, an escape to render),
//!   when each chunk was read, and, once the segment is sealed, how many lines it holds. A log needs a few
//!   records per chunk read, not one per line.
//!
//! `origin` holds the log's origin (ms since the Unix epoch, u64 little-endian). Files are only appended to,
//! without an fsync per write (the page cache keeps what a killed process wrote; the files are synced when the
//! execution ends). A segment's records are written before the lines they describe, so a reader that reads the
//! text first and the records second has a record for every line it read (records past the text are ignored),
//! and a log cut short by a crash reads up to its last complete line. Whole segments are deleted from the middle
//! of a log that passes its disk cap.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::scan::{count_newlines, newline_positions};
use super::segment::{Segment, Stream};

const ORIGIN_FILE: &str = "origin";

/// Where a log keeps its files, and how much disk it may use.
#[derive(Clone, Debug)]
pub struct DiskLimits {
    pub dir: LogDir,
    /// Past this, whole middle segments are deleted (the head and the newest lines stay).
    pub max_bytes: u64,
}

/// The folder holding one execution's log files.
#[derive(Clone, Debug)]
pub struct LogDir {
    path: PathBuf,
}

/// One segment's files, as found on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskSegment {
    pub first_seq: u64,
    /// Complete lines (its line count once sealed, else the newlines its text holds).
    pub lines: u64,
    /// Bytes the segment's two files take.
    pub disk_bytes: u64,
    base: PathBuf,
}

fn name(first_seq: u64) -> String {
    format!("{first_seq:020}")
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |m| m.len())
}

/// One `.meta` record: `(kind << 28 | index of a line in the segment, value)`, both u32 little-endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Record {
    /// Lines from `line` on come from this stream (a segment starts on stdout).
    Stream { line: u32, stderr: bool },
    /// Line `line` carries these flags (besides its stream).
    Flags { line: u32, flags: u8 },
    /// Lines from `line` on were read at `ms` since the log's origin.
    Stamp { line: u32, ms: u32 },
    /// The segment is complete and holds `lines` lines; nothing follows.
    Sealed { lines: u32 },
}

const RECORD_BYTES: usize = 8;
const LINE_BITS: u32 = 28;
const LINE_MASK: u32 = (1 << LINE_BITS) - 1;

impl Record {
    fn encode(self, out: &mut Vec<u8>) {
        let (kind, line, value) = match self {
            Record::Stream { line, stderr } => (1, line, u32::from(stderr)),
            Record::Flags { line, flags } => (2, line, u32::from(flags)),
            Record::Stamp { line, ms } => (3, line, ms),
            Record::Sealed { lines } => (4, lines, lines),
        };
        debug_assert!(line <= LINE_MASK);
        out.extend_from_slice(&(kind << LINE_BITS | line).to_le_bytes());
        out.extend_from_slice(&value.to_le_bytes());
    }

    /// A record read back; `None` for a kind this version does not know (skipped).
    fn decode(bytes: &[u8]) -> Option<Record> {
        let word = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let (head, value) = (word(0), word(4));
        let line = head & LINE_MASK;
        match head >> LINE_BITS {
            1 => Some(Record::Stream {
                line,
                stderr: value & 1 != 0,
            }),
            2 => Some(Record::Flags {
                line,
                flags: value as u8,
            }),
            3 => Some(Record::Stamp { line, ms: value }),
            4 => Some(Record::Sealed { lines: value }),
            _ => None,
        }
    }
}

/// The line count a sealed segment's `.meta` file ends with, read from its last record alone.
fn sealed_lines(meta: &Path, meta_len: u64) -> Option<u64> {
    use std::os::unix::fs::FileExt;
    let whole = meta_len / RECORD_BYTES as u64;
    if whole == 0 {
        return None;
    }
    let mut last = [0u8; RECORD_BYTES];
    File::open(meta)
        .and_then(|f| f.read_exact_at(&mut last, (whole - 1) * RECORD_BYTES as u64))
        .ok()?;
    match Record::decode(&last)? {
        Record::Sealed { lines } => Some(u64::from(lines)),
        _ => None,
    }
}

/// Marks the lines of `run` as stderr when `stderr` says so (`flags` grows to `n` lines the first time).
fn mark_stderr(flags: &mut Vec<u8>, n: u32, run: std::ops::Range<u32>, stderr: bool) {
    if stderr && !run.is_empty() {
        flags.resize(n as usize, 0);
        for f in &mut flags[run.start as usize..run.end as usize] {
            *f |= super::segment::flags::STDERR;
        }
    }
}

/// Builds a segment from its files' contents: the first `lines` lines of `data` (all of its complete lines when
/// `None`), with the streams, flags and times `meta` gives them.
fn segment_from_files(first_seq: u64, mut data: Vec<u8>, meta: &[u8], lines: Option<u64>) -> Segment {
    let mut ends = Vec::with_capacity(data.len() / 16);
    newline_positions(&data, 0, &mut ends);
    if let Some(lines) = lines {
        ends.truncate(lines as usize);
    }
    data.truncate(ends.last().map_or(0, |&end| end as usize + 1));
    let n = ends.len() as u32;
    let mut line_flags: Vec<u8> = Vec::new();
    let mut stamps = Vec::new();
    // The stream of the lines from `run_start` on, marked when the next run starts (or at the end).
    let (mut run_start, mut stderr) = (0u32, false);
    for record in meta.chunks_exact(RECORD_BYTES).filter_map(Record::decode) {
        match record {
            Record::Stream { line, stderr: next } if line < n => {
                mark_stderr(&mut line_flags, n, run_start..line, stderr);
                (run_start, stderr) = (line, next);
            }
            Record::Flags { line, flags } if line < n => {
                line_flags.resize(n as usize, 0);
                line_flags[line as usize] |= flags & !super::segment::flags::STDERR;
            }
            Record::Stamp { line, ms } if line < n => stamps.push((line, ms)),
            _ => {}
        }
    }
    mark_stderr(&mut line_flags, n, run_start..n, stderr);
    Segment::from_parts(first_seq, data, &ends, &line_flags, stamps)
}

impl LogDir {
    /// Creates the folder (and its parents, all private: 0700) and records the log's origin.
    pub fn create(path: &Path, origin: SystemTime) -> io::Result<LogDir> {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(path)?;
        let ms = crate::clock::unix_ms(origin) as u64;
        private_file(&path.join(ORIGIN_FILE), false)?.write_all(&ms.to_le_bytes())?;
        Ok(LogDir { path: path.to_owned() })
    }

    /// An existing log folder (its files are read as they are found).
    pub fn open(path: &Path) -> LogDir {
        LogDir { path: path.to_owned() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// When the log started (times in `.meta` files count from it); the Unix epoch if it is unknown.
    pub fn origin(&self) -> SystemTime {
        let mut buf = [0u8; 8];
        let ms = File::open(self.path.join(ORIGIN_FILE))
            .and_then(|mut f| f.read_exact(&mut buf))
            .map_or(0, |()| u64::from_le_bytes(buf));
        crate::clock::from_unix_ms(ms as i64)
    }

    /// The segments on disk, oldest first. A sealed segment's line count is read from its last record; the
    /// newlines of the others (the one being written, or the last one of a log cut short) are counted.
    pub fn segments(&self) -> Vec<DiskSegment> {
        let Ok(dir) = fs::read_dir(&self.path) else {
            return Vec::new();
        };
        let mut found: Vec<DiskSegment> = dir
            .flatten()
            .filter_map(|e| {
                let file = e.file_name();
                let stem = file.to_str()?.strip_suffix(".log")?;
                let first_seq: u64 = stem.parse().ok()?;
                let base = self.path.join(stem);
                let data_len = file_len(&base.with_extension("log"));
                let meta_len = file_len(&base.with_extension("meta"));
                let lines = sealed_lines(&base.with_extension("meta"), meta_len).unwrap_or_else(|| {
                    let data = fs::read(base.with_extension("log")).unwrap_or_default();
                    count_newlines(&data) as u64
                });
                Some(DiskSegment {
                    first_seq,
                    lines,
                    disk_bytes: data_len + meta_len,
                    base,
                })
            })
            .collect();
        found.sort_by_key(|s| s.first_seq);
        found
    }

    /// Deletes a segment's files.
    pub fn remove(&self, first_seq: u64) {
        let base = self.path.join(name(first_seq));
        for ext in ["log", "meta"] {
            let _ = fs::remove_file(base.with_extension(ext));
        }
    }
}

impl DiskSegment {
    /// A segment whose files are known to hold `lines` lines.
    pub fn at(dir: &LogDir, first_seq: u64, lines: u64) -> DiskSegment {
        DiskSegment {
            first_seq,
            lines,
            disk_bytes: 0,
            base: dir.path.join(name(first_seq)),
        }
    }

    /// Reads the segment's lines into memory (the text first, then its records: see the module's note).
    pub fn load(&self) -> io::Result<Segment> {
        let data = fs::read(self.base.with_extension("log"))?;
        let meta = match fs::read(self.base.with_extension("meta")) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            other => other?,
        };
        Ok(segment_from_files(self.first_seq, data, &meta, Some(self.lines)))
    }

    /// Cuts the files of a log's last segment, left by a process that stopped writing it, to its complete lines
    /// and seals it, so the next segment starts after them; a segment without a complete line is deleted.
    pub fn close_after_crash(&self) -> io::Result<()> {
        if self.lines == 0 {
            for ext in ["log", "meta"] {
                match fs::remove_file(self.base.with_extension(ext)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            return Ok(());
        }
        let data = fs::read(self.base.with_extension("log"))?;
        let complete = segment_from_files(self.first_seq, data, &[], Some(self.lines))
            .data
            .len();
        OpenOptions::new()
            .write(true)
            .open(self.base.with_extension("log"))?
            .set_len(complete as u64)?;
        if sealed_lines(
            &self.base.with_extension("meta"),
            file_len(&self.base.with_extension("meta")),
        )
        .is_none()
        {
            let mut meta = append_file(&self.base.with_extension("meta"))?;
            // A record cut short by the crash would shift every later one: drop it first.
            let len = meta.metadata()?.len();
            meta.set_len(len - len % RECORD_BYTES as u64)?;
            let mut buf = Vec::with_capacity(RECORD_BYTES);
            Record::Sealed {
                lines: self.lines as u32,
            }
            .encode(&mut buf);
            meta.write_all(&buf)?;
        }
        Ok(())
    }
}

/// Appends one segment's lines to its files.
#[derive(Debug)]
pub struct SegmentWriter {
    pub first_seq: u64,
    data: File,
    meta: File,
    /// Bytes written to both files.
    pub bytes: u64,
    /// Lines written so far.
    lines: u32,
    /// The stream of the last line written (a segment starts on stdout).
    stderr: bool,
    /// The records of one append (kept to reuse its allocation).
    buf: Vec<u8>,
}

/// Opens a log file to append to (or, `truncate`, to write anew), creating it private (0600).
fn private_file(path: &Path, append: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    if append {
        options.append(true);
    } else {
        options.write(true).truncate(true);
    }
    options.create(true).mode(0o600).open(path)
}

fn append_file(path: &Path) -> io::Result<File> {
    private_file(path, true)
}

impl SegmentWriter {
    pub fn create(dir: &LogDir, first_seq: u64) -> io::Result<SegmentWriter> {
        let base = dir.path.join(name(first_seq));
        // Records first: a reader lists segments by their `.log` file, whose `.meta` is then there.
        let meta = append_file(&base.with_extension("meta"))?;
        let data = append_file(&base.with_extension("log"))?;
        Ok(SegmentWriter {
            first_seq,
            data,
            meta,
            bytes: 0,
            lines: 0,
            stderr: false,
            buf: Vec::new(),
        })
    }

    /// Appends `lines` lines read from one stream (`data`, each line followed by `\n`), the flags of each when
    /// any has some (`line_flags`, empty otherwise), and the chunk's read time when it is a new one.
    pub fn append(
        &mut self,
        data: &[u8],
        lines: usize,
        stream: Stream,
        line_flags: &[u8],
        stamp_ms: Option<u32>,
    ) -> io::Result<()> {
        let first = self.lines;
        let buf = &mut self.buf;
        buf.clear();
        let stderr = stream == Stream::Stderr;
        if stderr != self.stderr {
            Record::Stream { line: first, stderr }.encode(buf);
        }
        for (i, &f) in line_flags.iter().enumerate() {
            let flags = f & !super::segment::flags::STDERR;
            if flags != 0 {
                Record::Flags {
                    line: first + i as u32,
                    flags,
                }
                .encode(buf);
            }
        }
        if let Some(ms) = stamp_ms {
            Record::Stamp { line: first, ms }.encode(buf);
        }
        if !buf.is_empty() {
            self.meta.write_all(buf)?;
        }
        self.data.write_all(data)?;
        self.stderr = stderr;
        self.lines += lines as u32;
        self.bytes += (buf.len() + data.len()) as u64;
        Ok(())
    }

    /// Records that the segment is complete (its line count, so a reader need not count newlines).
    pub fn seal(&mut self) -> io::Result<()> {
        let mut buf = Vec::with_capacity(RECORD_BYTES);
        Record::Sealed { lines: self.lines }.encode(&mut buf);
        self.meta.write_all(&buf)?;
        self.bytes += buf.len() as u64;
        Ok(())
    }

    /// Makes what was written durable (at the end of an execution).
    pub fn sync(&self) -> io::Result<()> {
        self.data.sync_data()?;
        self.meta.sync_data()
    }
}
