//! The engine against a runtime written for the test: what the engine does between its threads, the runtime and
//! the async workers, without real processes.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use super::*;
use crate::catalog::{Invocation, Source, WorkflowDef};
use crate::logs::LogLimits;
use crate::proc::ChildEnv;
use crate::runtime::{Ended, Exit, JobState, Launch, Runtime, RuntimeError, Started, Tree, Waiter};

fn pipe() -> (File, File) {
    let (read, write) = std::io::pipe().unwrap();
    (OwnedFd::from(read).into(), OwnedFd::from(write).into())
}

/// A tree whose `signal` blocks until the test's async side lets it go, then ends the "process".
struct BlockingTree {
    release: Mutex<mpsc::Receiver<()>>,
    timed_out: AtomicBool,
    exit: Mutex<Option<mpsc::Sender<Exit>>>,
    writers: Mutex<Vec<File>>,
}

impl Tree for BlockingTree {
    fn stop(&self, _: Duration) {
        self.end(libc::SIGTERM);
    }
    fn kill(&self) {
        self.end(libc::SIGKILL);
    }
    fn gone(&self) -> bool {
        self.exit.lock().unwrap().is_none()
    }
}

impl BlockingTree {
    fn end(&self, sig: i32) {
        // A hang guard, not a timing assertion: released at once unless the async workers are blocked.
        let released = self.release.lock().unwrap().recv_timeout(Duration::from_secs(20));
        self.timed_out.fetch_or(released.is_err(), Ordering::SeqCst);
        self.writers.lock().unwrap().clear();
        if let Some(tx) = self.exit.lock().unwrap().take() {
            let _ = tx.send(Exit {
                code: None,
                signal: Some(sig),
            });
        }
    }
}

struct ChannelWaiter(mpsc::Receiver<Exit>);

impl Waiter for ChannelWaiter {
    fn wait(self: Box<Self>, _: &mut dyn FnMut(JobState)) -> Ended {
        self.0.recv().map_or_else(|e| Ended::Lost(e.to_string()), Ended::Exited)
    }
}

struct BlockingRuntime {
    tree: Mutex<Option<Arc<BlockingTree>>>,
    waiter: Mutex<Option<ChannelWaiter>>,
}

impl Runtime for BlockingRuntime {
    fn start(&self, _: &Launch) -> Result<Started, RuntimeError> {
        let ((out_r, out_w), (err_r, err_w)) = (pipe(), pipe());
        let tree = self.tree.lock().unwrap().take().expect("one start");
        tree.writers.lock().unwrap().extend([out_w, err_w]);
        Ok(Started {
            pid: Some(4242),
            job: None,
            pending: false,
            stdout: out_r,
            stderr: err_r,
            tree,
            waiter: Box::new(self.waiter.lock().unwrap().take().expect("one start")),
        })
    }
}

/// The engine's config in these tests, keeping `retain_executions` finished executions.
fn config(retain_executions: usize) -> EngineConfig {
    EngineConfig {
        max_concurrent: 4,
        max_queued: 10,
        default_timeout: None,
        grace: Duration::from_secs(5),
        log_limits: LogLimits {
            max_bytes: 1 << 20,
            max_line_bytes: 1024,
        },
        log_bytes_total: 1 << 24,
        retain_executions,
        retain_age: Duration::from_secs(3600),
        retain_log_bytes: 1 << 30,
        log_disk_bytes: 1 << 30,
        base_env: ChildEnv::default(),
        drain_grace: Duration::from_secs(2),
    }
}

fn def() -> Arc<WorkflowDef> {
    Arc::new(WorkflowDef {
        name: "w".into(),
        title: None,
        description: String::new(),
        command: vec!["w".into()],
        params: Vec::new(),
        cwd: PathBuf::from("/"),
        env: Vec::new(),
        timeout_ms: None,
        max_concurrent: None,
        source: Source::Manifest,
        placement: Default::default(),
        outlive_session: false,
    })
}

#[test]
fn a_stop_never_blocks_the_async_workers_while_it_signals() {
    // One async worker: if a stop signalled on it, the task that lets the signal go could never run.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (release_tx, release_rx) = mpsc::channel();
    let (exit_tx, exit_rx) = mpsc::channel();
    let tree = Arc::new(BlockingTree {
        release: Mutex::new(release_rx),
        timed_out: AtomicBool::new(false),
        exit: Mutex::new(Some(exit_tx)),
        writers: Mutex::new(Vec::new()),
    });
    let runtime = Arc::new(BlockingRuntime {
        tree: Mutex::new(Some(tree.clone())),
        waiter: Mutex::new(Some(ChannelWaiter(exit_rx))),
    });
    let state = rt.block_on(async {
        let engine = Engine::new(config(10), tokio::runtime::Handle::current(), runtime, None).unwrap();
        let exec = engine.execute(def(), Invocation::default(), None).await.unwrap();
        assert_eq!(exec.state(), ExecutionState::Running);
        let stopping = {
            let (engine, view) = (engine.clone(), exec.clone());
            tokio::spawn(async move { engine.stop(&view, StopReason::Cancel, Duration::from_secs(5)).await })
        };
        // This task runs only if the stop left the worker free while it signals.
        tokio::spawn(async move {
            let _ = release_tx.send(());
        });
        stopping.await.unwrap().unwrap();
        exec.state()
    });
    assert!(
        !tree.timed_out.load(Ordering::SeqCst),
        "the signal ran on the only async worker and blocked it"
    );
    assert_eq!(state, ExecutionState::Cancelled);
}

/// Regression: a panic in the blocking work of `execute` (recording the new execution) was answered as "the
/// server is shutting down".
#[tokio::test]
async fn a_panicked_task_is_reported_as_an_internal_error_not_a_shutdown() {
    let failed = tokio::task::spawn_blocking(|| panic!("a bug")).await.unwrap_err();
    let e = EngineError::from_join("recording the new execution", failed);
    assert_eq!(
        e.to_string(),
        "internal error: recording the new execution panicked; the server's log (stderr) says where"
    );
}

/// The sentence a stop of another server's execution ends with when that server has not ended it (the wording
/// the typed error took over from the string it replaced).
#[test]
fn a_stop_the_owner_has_not_carried_out_names_the_owner_and_its_pid() {
    let id = uuid::Uuid::nil();
    let owner = "i-1".to_owned();
    let known = StopError::OwnerHasNotEnded {
        id,
        owner: owner.clone(),
        pid: Some(42),
    };
    assert_eq!(
        known.to_string(),
        format!(
            "execution {id} is run by another server process (instance i-1, pid 42) that has not ended it yet; its \
             stop was requested — get_status shows when it ends"
        )
    );
    let unknown = StopError::OwnerHasNotEnded { id, owner, pid: None };
    assert!(unknown.to_string().contains("(instance i-1, pid unknown)"), "{unknown}");
}

/// A listing only reads: retention (which may delete gigabytes of log folders) runs on the engine's own tick,
/// never inside a read.
#[tokio::test]
async fn a_listing_never_applies_retention() {
    let dir = std::env::temp_dir().join(format!("wfmcp-engine-{}-list-prune", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (store, _) = crate::store::Store::open(&dir).unwrap();
    let store = Arc::new(store);
    let now = crate::clock::unix_ms(std::time::SystemTime::now());
    let rec = crate::store::ExecutionRecord {
        state: ExecutionState::Succeeded,
        exit_code: Some(0),
        started_at: Some(now),
        finished_at: Some(now),
        ..crate::store::ExecutionRecord::queued(
            uuid::Uuid::new_v4(),
            "w",
            vec!["w".into()],
            &store.instance().to_string(),
            now,
        )
    };
    store.insert(&rec).unwrap();
    let runtime = Arc::new(BlockingRuntime {
        tree: Mutex::new(None),
        waiter: Mutex::new(None),
    });
    let engine = Engine::new(
        // Every finished execution is past the rule: a retention pass would forget it.
        config(0),
        tokio::runtime::Handle::current(),
        runtime,
        Some(store.clone()),
    )
    .unwrap();
    let (listed, total) = engine
        .list(&ListFilter {
            limit: 10,
            ..ListFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (listed.len(), total),
        (1, 1),
        "the listing forgot what it was asked to list"
    );
    assert_eq!(store.count().unwrap(), 1);
    store.retire();
    let _ = std::fs::remove_dir_all(dir);
}
