//! Log files: an execution's log on disk, as segment files that mirror the memory segments. For a segment whose
//! first line has seq S (20 digits, zero-padded):
//! - `S.log`: the lines exactly as read, each followed by `\n`;
//! - `S.idx`: one 4-byte little-endian entry per line (end offset and flags, as in memory);
//! - `S.ts`: when lines were read, one 8-byte entry per chunk (index of its first line, ms since the log's
//!   origin, both u32 little-endian).
//!
//! `origin` holds the log's origin (ms since the Unix epoch, u64 little-endian). Files are only appended to, in
//! the order data, index, times, without an fsync per write (the page cache keeps what a killed process wrote;
//! the files are synced when the execution ends). A reader trusts an index entry only when the data it points to
//! is there, so a log cut short by a crash reads up to its last complete record. Whole segments are deleted
//! from the middle of a log that passes its disk cap.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::segment::Segment;

const ORIGIN_FILE: &str = "origin";

/// The folder holding one execution's log files.
#[derive(Clone, Debug)]
pub struct LogDir {
    path: PathBuf,
}

/// One segment's files, as found on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskSegment {
    pub first_seq: u64,
    /// Complete lines (index entries whose data is there).
    pub lines: u64,
    /// Bytes the segment's three files take.
    pub disk_bytes: u64,
    base: PathBuf,
}

fn name(first_seq: u64) -> String {
    format!("{first_seq:020}")
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |m| m.len())
}

/// The index entries whose data is complete: an entry's end offset (+1 for its `\n`) must be within the data.
fn complete_entries(idx: &[u8], data_len: u64) -> Vec<u32> {
    let mut entries: Vec<u32> = idx
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let complete = entries.partition_point(|&meta| u64::from(meta & super::segment::END_MASK) < data_len);
    entries.truncate(complete);
    entries
}

impl LogDir {
    /// Creates the folder (and its parents) and records the log's origin.
    pub fn create(path: &Path, origin: SystemTime) -> io::Result<LogDir> {
        fs::create_dir_all(path)?;
        let ms = origin.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        fs::write(path.join(ORIGIN_FILE), ms.to_le_bytes())?;
        Ok(LogDir { path: path.to_owned() })
    }

    /// An existing log folder (its files are read as they are found).
    pub fn open(path: &Path) -> LogDir {
        LogDir { path: path.to_owned() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// When the log started (times in `.ts` files count from it); the Unix epoch if it is unknown.
    pub fn origin(&self) -> SystemTime {
        let mut buf = [0u8; 8];
        let ms = File::open(self.path.join(ORIGIN_FILE))
            .and_then(|mut f| f.read_exact(&mut buf))
            .map_or(0, |()| u64::from_le_bytes(buf));
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    /// The segments on disk, oldest first.
    pub fn segments(&self) -> Vec<DiskSegment> {
        let Ok(dir) = fs::read_dir(&self.path) else {
            return Vec::new();
        };
        let mut found: Vec<DiskSegment> = dir
            .flatten()
            .filter_map(|e| {
                let file = e.file_name();
                let stem = file.to_str()?.strip_suffix(".idx")?;
                let first_seq: u64 = stem.parse().ok()?;
                let base = self.path.join(stem);
                let data_len = file_len(&base.with_extension("log"));
                let idx_len = file_len(&base.with_extension("idx"));
                // Only the last entries can be incomplete; reading them all is avoided for sealed segments by
                // checking the last whole entry only.
                let whole = idx_len / 4;
                let lines = if whole == 0 {
                    0
                } else {
                    let mut last = [0u8; 4];
                    let ok = File::open(base.with_extension("idx")).and_then(|mut f| {
                        use std::io::{Seek, SeekFrom};
                        f.seek(SeekFrom::Start((whole - 1) * 4))?;
                        f.read_exact(&mut last)
                    });
                    match ok {
                        Ok(()) if u64::from(u32::from_le_bytes(last) & super::segment::END_MASK) < data_len => whole,
                        _ => {
                            let idx = fs::read(base.with_extension("idx")).unwrap_or_default();
                            complete_entries(&idx, data_len).len() as u64
                        }
                    }
                };
                let disk_bytes = data_len + idx_len + file_len(&base.with_extension("ts"));
                Some(DiskSegment {
                    first_seq,
                    lines,
                    disk_bytes,
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
        for ext in ["idx", "log", "ts"] {
            let _ = fs::remove_file(base.with_extension(ext));
        }
    }

    /// Deletes the whole folder.
    pub fn remove_all(&self) -> io::Result<()> {
        match fs::remove_dir_all(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
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

    /// Reads the segment's complete lines into memory.
    pub fn load(&self) -> io::Result<Segment> {
        let data = fs::read(self.base.with_extension("log"))?;
        let idx = fs::read(self.base.with_extension("idx"))?;
        let mut entries = complete_entries(&idx, data.len() as u64);
        entries.truncate(self.lines as usize);
        let ts = fs::read(self.base.with_extension("ts")).unwrap_or_default();
        let stamps = ts
            .chunks_exact(8)
            .map(|c| {
                (
                    u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                    u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
                )
            })
            .collect();
        let end = entries
            .last()
            .map_or(0, |&m| (m & super::segment::END_MASK) as usize + 1);
        let mut data = data;
        data.truncate(end);
        Ok(Segment::from_parts(self.first_seq, data, entries, stamps))
    }
}

/// Appends one segment's lines to its files.
#[derive(Debug)]
pub struct SegmentWriter {
    pub first_seq: u64,
    data: File,
    idx: File,
    ts: File,
    /// Bytes written to the three files.
    pub bytes: u64,
    /// The index entries of one append, as written (kept to reuse its allocation).
    idx_buf: Vec<u8>,
}

fn append_file(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl SegmentWriter {
    pub fn create(dir: &LogDir, first_seq: u64) -> io::Result<SegmentWriter> {
        let base = dir.path.join(name(first_seq));
        // Index last: a reader lists segments by their index file, which then points only at written data.
        let data = append_file(&base.with_extension("log"))?;
        let ts = append_file(&base.with_extension("ts"))?;
        let idx = append_file(&base.with_extension("idx"))?;
        Ok(SegmentWriter {
            first_seq,
            data,
            idx,
            ts,
            bytes: 0,
            idx_buf: Vec::new(),
        })
    }

    /// Appends lines (`data`, each line followed by `\n`), their index entries and, when the chunk has a new
    /// read time, its stamp.
    pub fn append(
        &mut self,
        data: &[u8],
        entries: impl ExactSizeIterator<Item = u32>,
        stamp: Option<(u32, u32)>,
    ) -> io::Result<()> {
        self.data.write_all(data)?;
        if let Some((first, ms)) = stamp {
            let mut buf = [0u8; 8];
            buf[..4].copy_from_slice(&first.to_le_bytes());
            buf[4..].copy_from_slice(&ms.to_le_bytes());
            self.ts.write_all(&buf)?;
            self.bytes += 8;
        }
        let buf = &mut self.idx_buf;
        buf.resize(entries.len() * 4, 0);
        for (out, e) in buf.chunks_exact_mut(4).zip(entries) {
            out.copy_from_slice(&e.to_le_bytes());
        }
        self.idx.write_all(buf)?;
        self.bytes += (data.len() + buf.len()) as u64;
        Ok(())
    }

    /// Makes what was written durable (at the end of an execution).
    pub fn sync(&self) -> io::Result<()> {
        self.data.sync_data()?;
        self.ts.sync_data()?;
        self.idx.sync_data()
    }
}
