//! `workflow-mcp cancel ID`: stops an execution whichever process on the state directory runs it (a server, the
//! supervisor of a detached execution), through the engine's stop of an execution another process runs — a stop
//! request in the history, then SIGTERM, the grace period and SIGKILL to its provable tree — and answers once it
//! is final.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::history::{FindError, find};
use crate::app::AppError;
use crate::catalog::Limits;
use crate::engine::{ExecutionView, ReadError, StopError, StopReason};
use crate::format::Summary;
use crate::store::{Store, error_chain};

/// Why an execution was not cancelled. Each says its whole chain in one sentence (so no `#[source]` to repeat).
#[derive(Debug, thiserror::Error)]
enum CancelError {
    #[error("{0}")]
    Find(FindError),
    #[error("execution {id} has already ended ({outcome}); there is nothing to cancel")]
    AlreadyEnded { id: Uuid, outcome: String },
    #[error("execution {0} is no longer in the history")]
    Forgotten(Uuid),
    #[error("{}", error_chain(.0))]
    Read(ReadError),
    #[error("{}", error_chain(.0))]
    Open(AppError),
    #[error("{0}")]
    Stop(StopError),
    #[error("{0} failed: {1}")]
    Panicked(&'static str, tokio::task::JoinError),
}

fn already_ended(view: &ExecutionView) -> Result<(), CancelError> {
    match view.state().is_terminal() {
        true => Err(CancelError::AlreadyEnded {
            id: view.id(),
            outcome: Summary(&view.status()).outcome(),
        }),
        false => Ok(()),
    }
}

/// `cancel ID` on the history `reader` reads: returns the exit code (0 once it is final, its final line printed;
/// 1, said on stderr, when there is no such execution, it has already ended, or the history cannot be read or
/// written).
pub async fn cancel(reader: Store, id: String, limits: Limits) -> u8 {
    match cancelled(reader, id, limits).await {
        Ok(headline) => {
            println!("{headline}");
            0
        }
        Err(why) => {
            eprintln!("workflow-mcp: {why}");
            1
        }
    }
}

/// Stops the execution `id` names; its final headline.
async fn cancelled(reader: Store, id: String, limits: Limits) -> Result<String, CancelError> {
    let dir: PathBuf = reader.root().to_owned();
    // Which execution, and whether anything is left to stop: the history alone says (nothing is written).
    let view = tokio::task::spawn_blocking(move || find(&reader, &id))
        .await
        .map_err(|e| CancelError::Panicked("looking the execution up", e))?
        .map_err(CancelError::Find)?;
    already_ended(&view)?;
    // Stopping writes (the stop request; an execution whose owner is gone is marked lost): this process
    // registers as a command for as long as it acts.
    let grace = Duration::from_millis(limits.grace_ms);
    let engine = tokio::task::spawn_blocking(move || crate::app::command_engine(&dir, &limits))
        .await
        .map_err(|e| CancelError::Panicked("opening the history", e))?
        .map_err(CancelError::Open)?;
    let history = engine.history().map(Arc::clone);
    let stopped = stop(&engine, view.id(), grace).await;
    if let Some(history) = history {
        let _ = tokio::task::spawn_blocking(move || history.retire()).await;
    }
    stopped
}

/// Stops the execution `id` through `engine`; its final headline.
async fn stop(engine: &crate::engine::Engine, id: Uuid, grace: Duration) -> Result<String, CancelError> {
    // Read again by the engine: it may have ended since, or its owner may be gone.
    let view = engine
        .find(&id)
        .await
        .map_err(CancelError::Read)?
        .ok_or(CancelError::Forgotten(id))?;
    already_ended(&view)?;
    engine
        .stop(&view, StopReason::Cancel, grace)
        .await
        .map_err(CancelError::Stop)?;
    let view = engine.refresh(&view).await;
    Ok(Summary(&engine.status(&view)).headline())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A history that cannot be read is said, never taken for an unknown execution.
    #[test]
    fn a_busy_history_fails_the_cancel_and_says_so() {
        let dir = std::env::temp_dir().join(format!("wfmcp-cli-{}-cancel-busy", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (store, _) = Store::open(&dir).unwrap();
        let reader = Store::open_reader(&dir).unwrap();
        let locks = crate::store::hold_read_locks(&dir.join("history.db"));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let id = "0b5e6f0e-8c2a-4a3f-9d7e-1f2a3b4c5d6e".to_owned();
        let said = rt
            .block_on(cancelled(reader, id, Limits::default()))
            .unwrap_err()
            .to_string();
        drop(locks);
        assert!(said.contains("busy") && said.contains("history.db"), "{said}");
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }
}
