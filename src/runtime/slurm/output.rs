//! Following a job's output files into the pipes the engine drains.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often the output files are read for new lines.
const FOLLOW: Duration = Duration::from_millis(100);

/// A pipe as two files; std creates it close-on-exec, so it stays out of every child.
pub(super) fn pipe() -> io::Result<(File, File)> {
    let (read, write) = io::pipe()?;
    Ok((OwnedFd::from(read).into(), OwnedFd::from(write).into()))
}

/// Copies what the job's output files gain into the pipes the engine drains, until the job has ended and both
/// files stop growing.
pub(super) fn follow(files: [PathBuf; 2], pipes: [File; 2], offsets: [u64; 2], finished: &AtomicBool) {
    let mut pipes = pipes.map(Some);
    let mut opened: [Option<File>; 2] = [None, None];
    let mut buf = vec![0u8; 256 * 1024];
    let mut quiet_rounds_after_end = 0;
    loop {
        let ended = finished.load(Ordering::SeqCst);
        let mut moved = false;
        for i in 0..2 {
            if opened[i].is_none() {
                opened[i] = File::open(&files[i]).ok().and_then(|mut f| {
                    use std::io::Seek;
                    f.seek(io::SeekFrom::Start(offsets[i])).ok()?;
                    Some(f)
                });
            }
            let (Some(file), Some(pipe)) = (opened[i].as_mut(), pipes[i].as_mut()) else {
                continue;
            };
            loop {
                match file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        moved = true;
                        if pipe.write_all(&buf[..n]).is_err() {
                            // Nobody drains it any more (the engine gave up on it): stop copying this stream.
                            pipes[i] = None;
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
        if ended {
            // A shared filesystem may show the last writes a moment late: two quiet rounds after the end.
            quiet_rounds_after_end = if moved { 0 } else { quiet_rounds_after_end + 1 };
            if quiet_rounds_after_end >= 2 {
                return;
            }
        }
        if !moved {
            std::thread::sleep(FOLLOW);
        }
    }
}
