//! An execution as a reader finds it: run by this process (live: in memory, changing as it runs), or known from
//! the history (stored: finished before this process started, or run by another server process — a record read
//! at one moment, and log files that may still grow).

use std::sync::Arc;

use uuid::Uuid;

use super::execution::{Execution, ExecutionState};
use super::status::{Evidence, ExecutionStatus, evidence, status_of_record};
use crate::logs::{LogDir, Snapshot};
use crate::store::ExecutionRecord;

/// A stored execution: its record and its log files.
#[derive(Debug)]
pub struct StoredExecution {
    pub record: ExecutionRecord,
    pub logs: LogDir,
}

#[derive(Clone, Debug)]
pub enum ExecutionView {
    Live(Arc<Execution>),
    Stored(Arc<StoredExecution>),
}

impl ExecutionView {
    pub fn id(&self) -> Uuid {
        match self {
            ExecutionView::Live(e) => e.id,
            ExecutionView::Stored(s) => s.record.id,
        }
    }

    pub fn state(&self) -> ExecutionState {
        match self {
            ExecutionView::Live(e) => e.state(),
            ExecutionView::Stored(s) => s.record.state,
        }
    }

    /// The number of the signal that killed it (its status names it).
    pub fn signal(&self) -> Option<i32> {
        match self {
            ExecutionView::Live(e) => e.life().signal,
            ExecutionView::Stored(s) => s.record.signal,
        }
    }

    /// Its lines now.
    pub fn snapshot(&self) -> Snapshot {
        match self {
            ExecutionView::Live(e) => e.logs_buffer.snapshot(),
            ExecutionView::Stored(s) => Snapshot::from_disk(&s.logs),
        }
    }

    /// The status without a queue position (see `Engine::status`).
    pub fn status(&self) -> ExecutionStatus {
        match self {
            ExecutionView::Live(e) => e.status(None),
            ExecutionView::Stored(s) => {
                let mut status = status_of_record(&s.record);
                let snap = self.snapshot();
                // The record's counters lag a running execution's files by up to a second.
                if let Some(last) = snap.next_seq.checked_sub(1)
                    && status.output.last_seq.is_none_or(|l| l < last)
                {
                    status.output.last_seq = Some(last);
                }
                status
            }
        }
    }

    pub fn evidence(&self) -> Option<Evidence> {
        match self {
            ExecutionView::Live(e) => e.evidence(),
            ExecutionView::Stored(_) => evidence(self.state(), &self.snapshot()),
        }
    }
}
