//! The fake workflow the integration tests run as a real child process. It performs the actions given on its
//! command line, in order, e.g. `fake-workflow out hello err oops exit 3`.
//!
//! Actions:
//!   out TEXT | err TEXT        a line on stdout / stderr
//!   lines N | err-lines N      N numbered lines ("out 0".."out N-1" / "err 0"..) on stdout / stderr
//!   interleave N               N lines alternating stdout ("o I") and stderr ("e I"), flushed each
//!   stamped N MS               N stdout lines "stamp K NS", flushed each, MS ms apart; NS is when the line was
//!                              written (CLOCK_REALTIME, ns since the Unix epoch), for latency benchmarks
//!   flood-err BYTES            BYTES of 99-char lines on stderr, as fast as possible
//!   yes                        "y" lines on stdout until killed
//!   long-line N                one stdout line of N bytes ('a'..'z' repeated)
//!   wide N WIDTH HEX           N stdout lines of WIDTH bytes, each the byte HEX (e.g. 78 for 'x', 01 for ^A)
//!   raw-out HEX                these bytes on stdout, as they are (e.g. 6f6bff0a)
//!   no-newline TEXT            TEXT on stdout with no newline after it
//!   event JSON                 "__WF_EVENT__:JSON" on stderr
//!   exit CODE                  exit now with CODE
//!   signal NUM                 kill itself with signal NUM
//!   check-stdin                prints "stdin: eof", "stdin: data" or "stdin: error ..." on stdout
//!   env NAME                   prints "NAME=value" or "NAME is unset" on stdout
//!   touch PATH                 creates PATH (a "reached this point" marker for tests)
//!   pid-file PATH              writes its pid to PATH (atomically)
//!   wait-fifo PATH             blocks until the test opens the FIFO at PATH for writing (and closes it)
//!   ignore-term                ignores SIGTERM from now on
//!   exit-0-on-term             exits 0 when SIGTERM arrives (a job that cleans up and ends well on a cancel)
//!   grandchild                 starts a copy of itself that holds stdout/stderr open forever (same process
//!                              group) and prints "grandchild PID" on stdout
//!   setsid-grandchild          the same, but the copy leaves the process group with setsid()
//!   setsid-grandchild-noenv    the same, and the copy also starts with an empty environment
//!   hold                       sleeps forever
//!   keep-fds PATH              (a daemon, not a workflow) listens on a Unix socket at PATH, prints "listening",
//!                              then keeps every descriptor sent to it (SCM_RIGHTS) and answers each with a byte
//!   send-stdout PATH           sends its stdout to the keep-fds daemon at PATH and waits for the answer
//!   print-args                 prints every remaining argument as "arg: X" and stops reading actions
//!   --workflow-metadata        (discovery) prints the JSON in $FAKE_METADATA, or a built-in one

use std::io::{Read, Write};

fn write_atomically(path: &str, contents: &str) {
    let tmp = format!("{path}.tmp");
    std::fs::write(&tmp, contents).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename temp file");
}

/// Starts a copy of this program that holds stdout/stderr open forever; returns its pid.
fn spawn_copy(setsid: bool, clear_env: bool) -> u32 {
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = std::process::Command::new(exe);
    if setsid {
        cmd.arg("setsid-self");
    }
    if clear_env {
        cmd.env_clear();
    }
    cmd.arg("hold");
    // stdout and stderr are inherited: the copy holds the workflow's pipes open.
    cmd.stdin(std::process::Stdio::null());
    cmd.spawn().expect("spawn grandchild").id()
}

/// Room for one descriptor's control message, aligned as `cmsghdr` needs.
type ControlBuffer = [u64; 8];

/// Sends descriptor `fd` over `sock` with one data byte.
fn send_fd(sock: &std::os::unix::net::UnixStream, fd: std::os::fd::RawFd) {
    use std::os::fd::AsRawFd;
    let mut byte = [b'f'];
    let mut control: ControlBuffer = [0; 8];
    // SAFETY: the message points at live buffers; CMSG_* compute offsets within `control`, which has room for
    // one descriptor.
    unsafe {
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(size_of::<libc::c_int>() as u32) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::c_int>() as u32) as usize;
        std::ptr::copy_nonoverlapping(
            (&fd as *const libc::c_int).cast::<u8>(),
            libc::CMSG_DATA(cmsg),
            size_of::<libc::c_int>(),
        );
        assert_eq!(libc::sendmsg(sock.as_raw_fd(), &msg, 0), 1, "sendmsg");
    }
}

/// Receives the descriptors of one message sent by [`send_fd`].
fn receive_fds(sock: &std::os::unix::net::UnixStream) -> Vec<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let mut byte = [0u8];
    let mut control: ControlBuffer = [0; 8];
    let mut fds = Vec::new();
    // SAFETY: as in send_fd; each descriptor read from the message is new and owned here alone.
    unsafe {
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of::<ControlBuffer>();
        if libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) <= 0 {
            return fds;
        }
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let mut fd: libc::c_int = -1;
                std::ptr::copy_nonoverlapping(
                    libc::CMSG_DATA(cmsg),
                    (&mut fd as *mut libc::c_int).cast::<u8>(),
                    size_of::<libc::c_int>(),
                );
                fds.push(std::os::fd::OwnedFd::from_raw_fd(fd));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    fds
}

/// Writes `n` lines `PREFIX K`, K from 0, through a 64 KiB buffer.
fn numbered_lines(to: &mut impl Write, prefix: &str, n: u64) {
    let mut w = std::io::BufWriter::with_capacity(64 * 1024, to);
    for k in 0..n {
        writeln!(w, "{prefix} {k}").unwrap();
    }
    w.flush().unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let mut out = stdout.lock();
    let mut err = stderr.lock();
    let mut i = 0;
    let next = |i: &mut usize| -> String {
        *i += 1;
        args.get(*i - 1).cloned().expect("missing action argument")
    };
    while i < args.len() {
        let action = next(&mut i);
        match action.as_str() {
            "out" => {
                let t = next(&mut i);
                writeln!(out, "{t}").unwrap();
                out.flush().unwrap();
            }
            "err" => {
                let t = next(&mut i);
                writeln!(err, "{t}").unwrap();
                err.flush().unwrap();
            }
            "lines" => numbered_lines(&mut out, "out", next(&mut i).parse().unwrap()),
            "stamped" => {
                let n: u64 = next(&mut i).parse().unwrap();
                let pause = std::time::Duration::from_millis(next(&mut i).parse().unwrap());
                for k in 0..n {
                    std::thread::sleep(pause);
                    let ns = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_nanos();
                    writeln!(out, "stamp {k} {ns}").unwrap();
                    out.flush().unwrap();
                }
            }
            "err-lines" => numbered_lines(&mut err, "err", next(&mut i).parse().unwrap()),
            "interleave" => {
                let n: u64 = next(&mut i).parse().unwrap();
                for k in 0..n {
                    if k % 2 == 0 {
                        writeln!(out, "o {k}").unwrap();
                        out.flush().unwrap();
                    } else {
                        writeln!(err, "e {k}").unwrap();
                        err.flush().unwrap();
                    }
                }
            }
            "flood-err" => {
                let mut left: usize = next(&mut i).parse().unwrap();
                let line = format!("{}\n", "x".repeat(99));
                let mut block = Vec::with_capacity(64 * 1024);
                while block.len() + line.len() <= 64 * 1024 {
                    block.extend_from_slice(line.as_bytes());
                }
                while left > 0 {
                    let n = left.min(block.len());
                    err.write_all(&block[..n]).unwrap();
                    left -= n;
                }
                err.flush().unwrap();
            }
            "yes" => loop {
                if out.write_all(b"y\n").is_err() {
                    std::process::exit(1);
                }
            },
            "long-line" => {
                let n: usize = next(&mut i).parse().unwrap();
                let line: Vec<u8> = (0..n).map(|k| b'a' + (k % 26) as u8).collect();
                out.write_all(&line).unwrap();
                out.write_all(b"\n").unwrap();
                out.flush().unwrap();
            }
            "wide" => {
                let n: usize = next(&mut i).parse().unwrap();
                let width: usize = next(&mut i).parse().unwrap();
                let byte = u8::from_str_radix(&next(&mut i), 16).unwrap();
                let mut line = vec![byte; width];
                line.push(b'\n');
                let mut w = std::io::BufWriter::with_capacity(64 * 1024, &mut out);
                for _ in 0..n {
                    w.write_all(&line).unwrap();
                }
                w.flush().unwrap();
            }
            "raw-out" => {
                let hex = next(&mut i);
                let bytes: Vec<u8> = (0..hex.len())
                    .step_by(2)
                    .map(|k| u8::from_str_radix(&hex[k..k + 2], 16).unwrap())
                    .collect();
                out.write_all(&bytes).unwrap();
                out.flush().unwrap();
            }
            "no-newline" => {
                let t = next(&mut i);
                write!(out, "{t}").unwrap();
                out.flush().unwrap();
            }
            "event" => {
                let json = next(&mut i);
                writeln!(err, "__WF_EVENT__:{json}").unwrap();
                err.flush().unwrap();
            }
            "exit" => {
                let code: i32 = next(&mut i).parse().unwrap();
                out.flush().unwrap();
                std::process::exit(code);
            }
            "signal" => {
                let sig: i32 = next(&mut i).parse().unwrap();
                out.flush().unwrap();
                // SAFETY: plain syscalls.
                unsafe {
                    libc::signal(sig, libc::SIG_DFL);
                    libc::kill(libc::getpid(), sig);
                }
                loop {
                    std::thread::park();
                }
            }
            "check-stdin" => {
                let mut buf = [0u8; 16];
                match std::io::stdin().read(&mut buf) {
                    Ok(0) => writeln!(out, "stdin: eof").unwrap(),
                    Ok(_) => writeln!(out, "stdin: data").unwrap(),
                    Err(e) => writeln!(out, "stdin: error {e}").unwrap(),
                }
                out.flush().unwrap();
            }
            "env" => {
                let name = next(&mut i);
                match std::env::var(&name) {
                    Ok(v) => writeln!(out, "{name}={v}").unwrap(),
                    Err(_) => writeln!(out, "{name} is unset").unwrap(),
                }
                out.flush().unwrap();
            }
            "touch" => {
                let p = next(&mut i);
                std::fs::write(&p, b"").unwrap();
            }
            "pid-file" => {
                let p = next(&mut i);
                write_atomically(&p, &std::process::id().to_string());
            }
            "wait-fifo" => {
                // Opening a FIFO for reading blocks until the test opens it for writing.
                let p = next(&mut i);
                let mut f = std::fs::File::open(&p).expect("open fifo");
                let mut sink = Vec::new();
                let _ = f.read_to_end(&mut sink);
            }
            "exit-0-on-term" => {
                extern "C" fn exit_zero(_: libc::c_int) {
                    // SAFETY: _exit is async-signal-safe.
                    unsafe { libc::_exit(0) }
                }
                // SAFETY: installs a handler that only calls _exit.
                unsafe {
                    libc::signal(
                        libc::SIGTERM,
                        exit_zero as extern "C" fn(libc::c_int) as libc::sighandler_t,
                    );
                }
            }
            "ignore-term" => {
                // SAFETY: installs SIG_IGN for SIGTERM.
                unsafe {
                    libc::signal(libc::SIGTERM, libc::SIG_IGN);
                }
            }
            "setsid-self" => {
                // SAFETY: plain syscall.
                unsafe {
                    libc::setsid();
                }
            }
            "grandchild" => {
                let pid = spawn_copy(false, false);
                writeln!(out, "grandchild {pid}").unwrap();
                out.flush().unwrap();
            }
            "setsid-grandchild" => {
                let pid = spawn_copy(true, false);
                writeln!(out, "grandchild {pid}").unwrap();
                out.flush().unwrap();
            }
            "setsid-grandchild-noenv" => {
                let pid = spawn_copy(true, true);
                writeln!(out, "grandchild {pid}").unwrap();
                out.flush().unwrap();
            }
            "hold" => loop {
                std::thread::park();
            },
            "keep-fds" => {
                let path = next(&mut i);
                let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind the socket");
                writeln!(out, "listening").unwrap();
                out.flush().unwrap();
                let mut kept = Vec::new();
                for conn in listener.incoming() {
                    let mut conn = conn.expect("accept");
                    kept.extend(receive_fds(&conn));
                    let _ = conn.write_all(b"k");
                }
            }
            "send-stdout" => {
                let path = next(&mut i);
                let mut sock = std::os::unix::net::UnixStream::connect(&path).expect("connect to the keeper");
                send_fd(&sock, libc::STDOUT_FILENO);
                let mut answer = [0u8];
                sock.read_exact(&mut answer).expect("the keeper answers");
            }
            "print-args" => {
                for a in &args[i..] {
                    writeln!(out, "arg: {a}").unwrap();
                }
                out.flush().unwrap();
                break;
            }
            "--workflow-metadata" => {
                let json = std::env::var("FAKE_METADATA").unwrap_or_else(|_| {
                    r#"{"id":"fake","name":"Fake","description":"a fake workflow","fields":[]}"#.to_owned()
                });
                writeln!(out, "{json}").unwrap();
            }
            other => {
                writeln!(err, "fake-workflow: unknown action {other:?}").unwrap();
                std::process::exit(99);
            }
        }
    }
}
