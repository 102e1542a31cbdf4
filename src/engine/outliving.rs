//! Starting executions that outlive their session (see [`super::detach`]): a server records one and hands it to
//! its supervisor; the supervisor takes it over and runs it.

use std::sync::Arc;

use super::config::{AdoptError, EngineError};
use super::detach::Handover;
use super::execution::Execution;
use super::executor::{Executor, NotPrepared, blocking};
use super::table::Admission;
use super::view::StoredExecution;
use crate::catalog::{Invocation, WorkflowDef};

/// What came of handing a new execution over.
pub(super) enum HandedOver {
    /// Its supervisor runs it, or it is `failed_to_start` (recorded, with why).
    Started(Arc<Execution>),
    /// Its idempotency key started this one already.
    Existing(Arc<StoredExecution>),
}

/// Records a new execution here and hands it to a supervisor process of its own; returns once the supervisor has
/// started it, or it is recorded `failed_to_start` saying why the supervisor could not. (Not queued: a server's
/// slots end with it; the supervisor starts it at once. Its workflow's `max_concurrent` is counted in the
/// history, across processes.)
pub(super) async fn hand_over(
    executor: &Arc<Executor>,
    def: Arc<WorkflowDef>,
    invocation: Invocation,
    idempotency_key: Option<String>,
) -> Result<HandedOver, EngineError> {
    let workflow = def.name.clone();
    let Some(history) = executor.records().history().cloned() else {
        return Err(EngineError::OutliveNeedsHistory { workflow });
    };
    let Some(detacher) = executor.detacher().cloned() else {
        return Err(EngineError::CannotDetach { workflow });
    };
    let at_most = def.max_concurrent;
    let prepared = {
        let executor = executor.clone();
        tokio::task::spawn_blocking(move || executor.prepare(def, invocation, idempotency_key, at_most)).await
    };
    let exec = match prepared {
        Ok(Ok(exec)) => exec,
        Ok(Err(NotPrepared::AtLimit(running))) => {
            return Err(EngineError::WorkflowAtLimit {
                workflow,
                max: at_most.unwrap_or_default(),
                running,
            });
        }
        Ok(Err(NotPrepared::Existing(existing))) => return Ok(HandedOver::Existing(existing)),
        Err(failed) => return Err(EngineError::from_join("recording the new execution", failed)),
    };
    let handover = Handover::of(
        &exec,
        history.root().to_owned(),
        history.instance().to_string(),
        executor.config(),
    );
    let (executor, failed) = (executor.clone(), exec.clone());
    blocking(move || {
        if let Err(why) = detacher.detach(&handover) {
            tracing::warn!(execution = %failed.id, workflow = %failed.workflow.name, "{why}");
            failed.failed_to_start(why.to_string(), |e, last| executor.records().record_final(e, last));
            executor.records().changed();
        }
    })
    .await
    .ok_or(EngineError::ShuttingDown)?;
    Ok(HandedOver::Started(exec))
}

/// Runs an execution another process recorded and handed over: takes it over from its recorder, and returns once
/// it is running or failed to start.
pub(super) async fn adopt(executor: &Arc<Executor>, handover: Handover) -> Result<Arc<Execution>, AdoptError> {
    let Some(history) = executor.records().history().cloned() else {
        return Err(AdoptError::NoHistory);
    };
    let (id, from) = (handover.id, handover.recorded_by.clone());
    if blocking(move || history.claim(&id, &from)).await != Some(true) {
        return Err(AdoptError::NotTheirs {
            id,
            recorded_by: handover.recorded_by,
        });
    }
    let exec = {
        let executor = executor.clone();
        blocking(move || executor.adopted(handover))
            .await
            .ok_or(AdoptError::ShuttingDown)?
    };
    if !matches!(executor.table().admit(exec.clone(), usize::MAX, 0), Admission::Launch) {
        return Err(AdoptError::ShuttingDown);
    }
    executor.launched(exec.clone()).await;
    Ok(exec)
}
