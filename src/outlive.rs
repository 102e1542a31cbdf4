//! Executions that outlive their session, on this machine: the supervisor process that runs one, and the
//! [`Supervisors`] that start them for a server.
//!
//! A supervisor is this binary run again with [`SUPERVISE_ARG`] — `/proc/self/exe`, so the very file the server
//! runs even once a newer build replaced it on disk — in a session of its own, so nothing sent to the server's
//! group, terminal or session reaches it. It reads a [`Handover`] on its stdin, opens the state directory's history
//! as an instance of its own, takes the execution over from the server that recorded it, and runs it with an
//! engine of its own: the same drain threads, log files, progress, timeout, stop requests and watchdog as any
//! execution. It reports `started` on its stdout once the workflow runs (or its failure to start is recorded),
//! lets go of the server's pipes, and exits once the execution is final. SIGTERM stops the execution (TERM,
//! grace, KILL) and records it; if the supervisor itself is killed, its watchdog kills the workflow's tree and
//! the execution becomes `lost` for whoever reads it next.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::engine::{DetachError, Detacher, Engine, Handover};
use crate::proc::reaper::become_subreaper;
use crate::proc::watchdog::Watchdog;
use crate::runtime::{LocalRuntime, Runtimes};
use crate::store::{Role, Store};

/// The argument that makes the binary run as a supervisor ([`run`]).
pub const SUPERVISE_ARG: &str = "__supervise";

/// What a supervisor prints on its stdout once the workflow runs (or its failure to start is recorded).
const STARTED: &str = "started";

/// How long a server waits for a supervisor to report: it opens a database and starts a process, normally in
/// milliseconds; one stuck past this (a history locked by another process, say) is given up on.
const REPORT_WITHIN: Duration = Duration::from_secs(30);

/// The last bytes of a supervisor's stderr kept to say why it failed.
const STDERR_KEPT: usize = 4096;

/// Starts supervisors as this binary run again.
pub struct Supervisors {
    program: PathBuf,
}

impl Supervisors {
    /// Supervisors run `program` (this binary: `/proc/self/exe`).
    pub fn new(program: &Path) -> Supervisors {
        Supervisors {
            program: program.to_owned(),
        }
    }
}

impl Detacher for Supervisors {
    fn detach(&self, handover: &Handover) -> Result<(), DetachError> {
        let input = serde_json::to_vec(handover).map_err(|e| DetachError::CannotStart(e.into()))?;
        let mut child = Command::new(&self.program)
            .arg(SUPERVISE_ARG)
            .env_clear()
            .envs(std::env::var_os("WORKFLOW_MCP_LOG").map(|v| ("WORKFLOW_MCP_LOG", v)))
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(DetachError::CannotStart)?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            unreachable!("all three were asked for as pipes");
        };
        // Its stderr is read on a thread of its own: a supervisor that says much before reporting never blocks on it.
        let said = std::thread::spawn(move || last_bytes(stderr, STDERR_KEPT));
        let (report_tx, report) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = report_tx.send(line);
        });
        let written = stdin.write_all(&input);
        drop(stdin);
        let line = report.recv_timeout(REPORT_WITHIN);
        if written.is_ok() && line.as_deref().is_ok_and(|l| l.trim_end() == STARTED) {
            // Reaped when it ends (or by init, once this server is gone).
            std::thread::spawn(move || child.wait());
            return Ok(());
        }
        if line.is_err() {
            let _ = child.kill();
        }
        let status = child.wait();
        let why = String::from_utf8_lossy(&said.join().unwrap_or_default())
            .trim()
            .to_owned();
        let why = match (why.is_empty(), status, line) {
            (false, _, _) => why,
            (true, _, Err(_)) => format!("it did not report within {} s", REPORT_WITHIN.as_secs()),
            (true, Ok(status), _) => format!("it ended ({status})"),
            (true, Err(e), _) => e.to_string(),
        };
        Err(DetachError::SupervisorFailed(why))
    }
}

/// Reads `from` to its end, keeping the last `keep` bytes.
fn last_bytes(mut from: impl Read, keep: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > keep {
            kept.drain(..kept.len() - keep);
        }
    }
    kept
}

/// Why a supervisor could not run its execution (said on its stderr, which the server reads).
#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error("cannot read the handover on stdin")]
    Read(#[source] std::io::Error),
    #[error("the handover on stdin is not valid (a server of another version?)")]
    Decode(#[source] serde_json::Error),
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    /// (Not a source: its own words end with a server's way out, which does not apply here.)
    #[error("{}; fix it (permissions, space) and start the workflow again", .0.cause())]
    Store(crate::store::StoreError),
    #[error("cannot start the engine")]
    Engine(#[source] std::io::Error),
    #[error(transparent)]
    Adopt(#[from] crate::engine::AdoptError),
}

/// The supervisor process: runs the execution handed over on stdin to its end, then exits (see the module's
/// documentation).
pub fn run() -> Result<(), SuperviseError> {
    // SAFETY: plain syscalls at the start of a fresh process, before any thread exists.
    unsafe {
        // Its own session: signals sent to the server's group, terminal or session do not reach it.
        libc::setsid();
        for sig in [libc::SIGINT, libc::SIGHUP, libc::SIGPIPE] {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input).map_err(SuperviseError::Read)?;
    let handover: Handover = serde_json::from_slice(&input).map_err(SuperviseError::Decode)?;
    // Descendants that leave the workflow's group re-parent to it, to be reaped and found.
    become_subreaper();
    let watchdog = match Watchdog::start(Path::new("/proc/self/exe")) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the watchdog; the workflow may outlive a crash of its supervisor");
            None
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SuperviseError::Runtime)?;
    rt.block_on(async move {
        let (store, warnings) = Store::open_as(&handover.state_dir, Role::Supervisor).map_err(SuperviseError::Store)?;
        for w in warnings {
            tracing::warn!("{w}");
        }
        let grace = handover.config.grace;
        let runtimes = Runtimes::default().with(crate::runtime::local::KIND, LocalRuntime::new(watchdog));
        let engine = Engine::new(
            handover.config.clone(),
            tokio::runtime::Handle::current(),
            Arc::new(runtimes),
            Some(Arc::new(store)),
        )
        .map_err(SuperviseError::Engine)?;
        let id = handover.id;
        let view = engine.adopt(handover).await?;
        report_started();
        tracing::info!(execution = %id, "supervising an execution that outlives its session");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let sigterm = async {
            match term.as_mut() {
                Some(t) => drop(t.recv().await),
                None => std::future::pending().await,
            }
        };
        let never = tokio_util::sync::CancellationToken::new();
        tokio::select! {
            _ = async { while !engine.wait_final(&view, Duration::from_secs(86_400), &never).await {} } => {}
            _ = sigterm => {}
        }
        // Nothing runs once it is final; on SIGTERM this stops it (TERM, grace, KILL) and records it.
        engine.shutdown(grace).await;
        Ok(())
    })
}

/// Tells the server the workflow runs, then lets go of the server's pipes (stdout and stderr become /dev/null), so
/// nothing of the supervisor keeps a client's pipe open once the server is gone.
fn report_started() {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{STARTED}");
    let _ = out.flush();
    drop(out);
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        // SAFETY: dup2 onto the standard descriptors, with a descriptor that stays open for the call.
        unsafe {
            libc::dup2(null.as_raw_fd(), 1);
            libc::dup2(null.as_raw_fd(), 2);
        }
    }
}
