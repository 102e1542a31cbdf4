//! An execution as a reader finds it: run by this process (live: in memory, changing as it runs), or known from
//! the history (stored: finished before this process started, or run by another server process — a record read
//! at one moment, and log files that may still grow).

use std::sync::Arc;

use uuid::Uuid;

use super::execution::{Execution, ExecutionState};
use super::status::{Evidence, ExecutionStatus, evidence, status_of_record};
use crate::logs::{Gap, LogDir, Snapshot};
use crate::store::ExecutionRecord;

/// A stored execution: its record and its log files.
#[derive(Debug)]
pub struct StoredExecution {
    pub record: ExecutionRecord,
    pub logs: LogDir,
}

impl StoredExecution {
    fn unwritten(&self) -> Option<&str> {
        self.record.output.as_ref()?.disk_error.as_deref()
    }
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
            ExecutionView::Stored(s) => {
                let mut snap = Snapshot::from_disk(&s.logs);
                // Lines its runner counted after the disk failed never reached a file: they end the log as a gap
                // (omitted, counted), not silently.
                if let Some(counted) = s
                    .unwritten()
                    .and_then(|_| s.record.output.as_ref()?.last_seq.map(|l| l + 1))
                    && counted > snap.next_seq
                    && snap.gap.is_none()
                {
                    snap.gap = Some(Gap {
                        from: snap.next_seq,
                        to: counted,
                    });
                    snap.next_seq = counted;
                }
                snap
            }
        }
    }

    /// Why lines of an execution another process ran are missing from its files (the disk error its runner met),
    /// if they are: a reader here can read only the files.
    pub fn unwritten(&self) -> Option<&str> {
        match self {
            ExecutionView::Live(_) => None,
            ExecutionView::Stored(s) => s.unwritten(),
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
