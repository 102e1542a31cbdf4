//! `workflow-mcp cancel ID`: stops an execution whichever process on the state directory runs it (a server, the
//! supervisor of a detached execution), through the engine's stop of an execution another process runs — a stop
//! request in the history, then SIGTERM, the grace period and SIGKILL to its provable tree — and answers once it
//! is final.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::history::find;
use crate::catalog::Limits;
use crate::engine::{ExecutionView, StopReason};
use crate::format::Summary;
use crate::store::Store;

/// Why there is nothing to stop.
#[derive(Debug, thiserror::Error)]
#[error("execution {id} has already ended ({outcome}); there is nothing to cancel")]
struct AlreadyEnded {
    id: uuid::Uuid,
    outcome: String,
}

fn already_ended(view: &ExecutionView) -> Option<AlreadyEnded> {
    view.state().is_terminal().then(|| AlreadyEnded {
        id: view.id(),
        outcome: Summary(&view.status()).outcome(),
    })
}

/// `cancel ID` on the history `reader` reads: returns the exit code (0 once it is final; 1, said on stderr, when
/// there is no such execution, it has already ended, or the history cannot be read or written).
pub async fn cancel(reader: Store, id: String, limits: Limits) -> u8 {
    let dir: PathBuf = reader.root().to_owned();
    // Which execution, and whether anything is left to stop: the history alone says (nothing is written).
    let found = tokio::task::spawn_blocking(move || find(&reader, &id).map_err(|e| e.to_string())).await;
    let view = match found {
        Ok(Ok(view)) => view,
        Ok(Err(e)) => return said(&e),
        Err(e) => return said(&format!("looking the execution up failed: {e}")),
    };
    if let Some(ended) = already_ended(&view) {
        return said(&ended.to_string());
    }
    // Stopping writes (the stop request; an execution whose owner is gone is marked lost): this process
    // registers as a command for as long as it acts.
    let built =
        tokio::task::spawn_blocking(move || crate::app::command_engine(&dir, &limits).map(|e| (e, limits))).await;
    let (engine, limits) = match built {
        Ok(Ok(built)) => built,
        Ok(Err(e)) => return said(&crate::store::error_chain(&e)),
        Err(e) => return said(&format!("opening the history failed: {e}")),
    };
    let history = engine.history().map(Arc::clone);
    let code = stop(&engine, view.id(), Duration::from_millis(limits.grace_ms)).await;
    if let Some(history) = history {
        let _ = tokio::task::spawn_blocking(move || history.retire()).await;
    }
    code
}

/// Stops the execution `id` through `engine` and prints its final state.
async fn stop(engine: &crate::engine::Engine, id: uuid::Uuid, grace: Duration) -> u8 {
    // Read again by the engine: it may have ended since, or its owner may be gone.
    let view = match engine.find(&id).await {
        Ok(Some(view)) => view,
        Ok(None) => return said(&format!("execution {id} is no longer in the history")),
        Err(e) => return said(&crate::store::error_chain(&e)),
    };
    if let Some(ended) = already_ended(&view) {
        return said(&ended.to_string());
    }
    if let Err(e) = engine.stop(&view, StopReason::Cancel, grace).await {
        return said(&e.to_string());
    }
    let view = engine.refresh(&view).await;
    println!("{}", Summary(&engine.status(&view)).headline());
    0
}

/// Says why the command failed (one sentence on stderr) and returns its exit code.
fn said(why: &str) -> u8 {
    eprintln!("workflow-mcp: {why}");
    1
}
