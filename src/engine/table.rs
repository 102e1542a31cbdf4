//! The executions table: every execution by id in creation order, the queue of those waiting for a slot, the
//! slots held (globally and per workflow), idempotency keys, and retention. Plain data: the engine holds it
//! under one `std::sync::Mutex`, never across a wait, an await or a spawn.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use uuid::Uuid;

use super::execution::{Execution, ExecutionState};
use crate::catalog::WorkflowDef;

/// Filters for listing executions.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub workflow: Option<String>,
    pub state: Option<ExecutionState>,
    pub limit: usize,
}

/// An execution's place in a listing, newest first (see `Engine::page`): its creation time in milliseconds
/// since the Unix epoch, then the order the history wrote it in (0 without a history), and its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageKey {
    pub created_at: i64,
    pub seq: i64,
    pub id: Uuid,
}

/// What became of an execution offered to the table.
#[derive(Debug)]
pub enum Admission {
    /// It holds a slot: launch it.
    Launch,
    /// It waits in the queue.
    Queued,
    /// Its idempotency key started this execution already (the one offered is not added).
    Existing(Arc<Execution>),
    /// Refused: no slot is free and this many executions wait already (the cap).
    QueueFull(usize),
    /// Refused: the server is shutting down.
    Closed,
}

#[derive(Default)]
pub struct Table {
    by_id: HashMap<Uuid, Arc<Execution>>,
    /// Creation order, oldest first.
    order: Vec<Uuid>,
    queue: VecDeque<Arc<Execution>>,
    /// Executions holding a concurrency slot (launching or running).
    slotted: HashSet<Uuid>,
    running_by_workflow: HashMap<String, usize>,
    idempotency: HashMap<(String, String), Uuid>,
    /// Set at shutdown: nothing is admitted any more.
    closed: bool,
}

impl Table {
    pub fn get(&self, id: &Uuid) -> Option<Arc<Execution>> {
        self.by_id.get(id).cloned()
    }

    /// The execution an idempotency key of this workflow started, if it is still retained.
    pub fn by_idempotency_key(&self, workflow: &str, key: &str) -> Option<Arc<Execution>> {
        let id = self.idempotency.get(&(workflow.to_owned(), key.to_owned()))?;
        self.by_id.get(id).cloned()
    }

    /// Why a new execution of `def` would be refused now, if it would (see [`Table::admit`]).
    pub fn refusal(&self, def: &WorkflowDef, max_concurrent: usize, max_queued: usize) -> Option<Admission> {
        if self.closed {
            return Some(Admission::Closed);
        }
        (self.queue.len() >= max_queued && !self.has_slot(def, max_concurrent))
            .then(|| Admission::QueueFull(self.queue.len()))
    }

    /// Adds a new execution, unless its idempotency key started one already (looked up again here: the caller
    /// prepared it without the lock), or it would have to wait behind `max_queued` others, or the table is
    /// closed.
    pub fn admit(&mut self, exec: Arc<Execution>, max_concurrent: usize, max_queued: usize) -> Admission {
        if let Some(key) = &exec.idempotency_key
            && let Some(existing) = self.by_idempotency_key(&exec.workflow.name, key)
        {
            return Admission::Existing(existing);
        }
        if let Some(refused) = self.refusal(&exec.workflow, max_concurrent, max_queued) {
            return refused;
        }
        self.by_id.insert(exec.id, exec.clone());
        self.order.push(exec.id);
        if let Some(key) = &exec.idempotency_key {
            self.idempotency
                .insert((exec.workflow.name.clone(), key.clone()), exec.id);
        }
        if self.has_slot(&exec.workflow, max_concurrent) {
            self.take_slot(&exec);
            Admission::Launch
        } else {
            self.queue.push_back(exec);
            Admission::Queued
        }
    }

    fn has_slot(&self, def: &WorkflowDef, max: usize) -> bool {
        let per = self.running_by_workflow.get(&def.name).copied().unwrap_or(0);
        self.slotted.len() < max && def.max_concurrent.is_none_or(|m| per < m)
    }

    fn take_slot(&mut self, exec: &Execution) {
        self.slotted.insert(exec.id);
        *self.running_by_workflow.entry(exec.workflow.name.clone()).or_default() += 1;
    }

    /// Adds an execution that already runs (followed again after a restart): it takes a slot even past the
    /// limits, since it is running anyway.
    pub fn attach(&mut self, exec: Arc<Execution>) {
        self.by_id.insert(exec.id, exec.clone());
        self.order.push(exec.id);
        if let Some(key) = &exec.idempotency_key {
            self.idempotency
                .insert((exec.workflow.name.clone(), key.clone()), exec.id);
        }
        self.take_slot(&exec);
    }

    /// Gives back the slot an execution held (if it held one).
    pub fn release_slot(&mut self, exec: &Execution) {
        if self.slotted.remove(&exec.id)
            && let Some(n) = self.running_by_workflow.get_mut(&exec.workflow.name)
        {
            *n = n.saturating_sub(1);
        }
    }

    /// Takes queued executions that now fit, in queue order (one blocked by its workflow's limit does not hold
    /// up the others), giving each a slot.
    pub fn pop_launchable(&mut self, max: usize) -> Vec<Arc<Execution>> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.queue.len() && self.slotted.len() < max {
            if self.has_slot(&self.queue[i].workflow, max) {
                let e = self.queue.remove(i).expect("index in range");
                self.take_slot(&e);
                out.push(e);
            } else {
                i += 1;
            }
        }
        out
    }

    /// Takes an execution off the queue; `None` when it is not queued.
    pub fn dequeue(&mut self, id: &Uuid) -> Option<Arc<Execution>> {
        let pos = self.queue.iter().position(|e| e.id == *id)?;
        self.queue.remove(pos)
    }

    /// Admits nothing from now on and takes every queued execution off the queue.
    pub fn close(&mut self) -> Vec<Arc<Execution>> {
        self.closed = true;
        self.queue.drain(..).collect()
    }

    /// 1-based place in the queue.
    pub fn queue_position(&self, id: &Uuid) -> Option<usize> {
        self.queue.iter().position(|e| e.id == *id).map(|p| p + 1)
    }

    /// Executions not final yet.
    pub fn unfinished(&self) -> Vec<Arc<Execution>> {
        self.by_id
            .values()
            .filter(|e| !e.state().is_terminal())
            .cloned()
            .collect()
    }

    /// Executions matching `filter` (its `limit` ignored), newest first.
    pub fn matching(&self, filter: &ListFilter) -> Vec<Arc<Execution>> {
        self.order
            .iter()
            .rev()
            .filter_map(|id| self.by_id.get(id))
            .filter(|e| filter.workflow.as_ref().is_none_or(|w| &e.workflow.name == w))
            .filter(|e| filter.state.is_none_or(|s| e.state() == s))
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Forgets finished executions beyond the `keep` newest, and those finished longer than `max_age` before
    /// `now`. Unfinished executions are always kept.
    pub fn prune(&mut self, keep: usize, max_age: Duration, now: SystemTime) {
        let finished: Vec<(Uuid, Option<SystemTime>)> = self
            .order
            .iter()
            .filter_map(|id| {
                let life = self.by_id.get(id)?.life();
                life.state.is_terminal().then_some((*id, life.finished_at))
            })
            .collect();
        let excess = finished.len().saturating_sub(keep);
        let drop: HashSet<Uuid> = finished
            .iter()
            .enumerate()
            .filter(|(i, (_, at))| {
                *i < excess || at.is_some_and(|t| now.duration_since(t).unwrap_or_default() > max_age)
            })
            .map(|(_, (id, _))| *id)
            .collect();
        if drop.is_empty() {
            return;
        }
        self.order.retain(|id| !drop.contains(id));
        self.by_id.retain(|id, _| !drop.contains(id));
        self.idempotency.retain(|_, id| !drop.contains(id));
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::Map;

    use super::*;
    use crate::engine::execution::StopReason;
    use crate::logs::{ExecutionLog, LogLimits, MemoryBudget};
    use crate::proc::ChildEnv;
    use crate::runtime::Launch;

    fn def(name: &str, max_concurrent: Option<usize>) -> Arc<WorkflowDef> {
        Arc::new(WorkflowDef {
            name: name.to_owned(),
            title: None,
            description: String::new(),
            command: vec!["true".into()],
            params: Vec::new(),
            cwd: PathBuf::from("/"),
            env: Vec::new(),
            timeout_ms: None,
            max_concurrent,
            source: crate::catalog::Source::Manifest,
            placement: Default::default(),
            outlive_session: false,
        })
    }

    fn exec(def: &Arc<WorkflowDef>, key: Option<&str>) -> Arc<Execution> {
        let launch = Launch {
            argv: vec!["true".into()],
            env: ChildEnv::default(),
            cwd: PathBuf::from("/"),
            marker: String::new(),
            placement: Default::default(),
            timeout: None,
        };
        let logs = ExecutionLog::new(
            LogLimits {
                max_bytes: 1 << 20,
                max_line_bytes: 1024,
            },
            MemoryBudget::new(1 << 30),
        );
        Execution::new(
            Uuid::new_v4(),
            def.clone(),
            Map::new(),
            launch,
            key.map(str::to_owned),
            logs,
        )
    }

    /// Admits with room for 100 in the queue: true when it got a slot, false when it is queued.
    fn admit(t: &mut Table, e: Arc<Execution>, max_concurrent: usize) -> bool {
        match t.admit(e, max_concurrent, 100) {
            Admission::Launch => true,
            Admission::Queued => false,
            other => panic!("refused: {other:?}"),
        }
    }

    fn finish(e: &Execution) {
        e.end_unstarted(StopReason::Cancel, "test".into(), |_, _| {});
    }

    /// Whoever sees an execution final finds it recorded: while its end is being recorded, readers (a waiter
    /// woken by its last line, a `get_status`) still see it unfinished. (They saw it final before its record,
    /// and so before the retention its end applies.)
    #[test]
    fn an_execution_is_final_to_its_readers_only_once_recorded() {
        let e = exec(&def("a", None), None);
        let mut seen_while_recording = None;
        e.end_unstarted(StopReason::Cancel, "test".into(), |e, last| {
            seen_while_recording = Some((e.state(), last.state));
        });
        assert_eq!(
            seen_while_recording,
            Some((ExecutionState::Queued, ExecutionState::Cancelled)),
            "recorded as cancelled while still queued to readers"
        );
        assert_eq!(e.state(), ExecutionState::Cancelled);
        assert!(e.life().finished_at.is_some());
    }

    #[test]
    fn slots_are_global_and_per_workflow_and_the_queue_is_fifo_without_blocking_others() {
        let (a, b) = (def("a", Some(1)), def("b", None));
        let mut t = Table::default();
        let a1 = exec(&a, None);
        assert!(admit(&mut t, a1.clone(), 3));
        let a2 = exec(&a, None);
        assert!(!admit(&mut t, a2.clone(), 3), "a is at its own limit");
        let b1 = exec(&b, None);
        assert!(
            admit(&mut t, b1.clone(), 3),
            "a workflow at its limit does not block others"
        );
        let b2 = exec(&b, None);
        assert!(admit(&mut t, b2.clone(), 3));
        let b3 = exec(&b, None);
        assert!(!admit(&mut t, b3.clone(), 3), "the global limit");
        assert_eq!((t.queue_position(&a2.id), t.queue_position(&b3.id)), (Some(1), Some(2)));
        assert!(t.pop_launchable(3).is_empty(), "nothing fits yet");
        t.release_slot(&b1);
        let next: Vec<Uuid> = t.pop_launchable(3).iter().map(|e| e.id).collect();
        assert_eq!(next, [b3.id], "a2 still waits for a's slot; b3 behind it goes");
        t.release_slot(&a1);
        let next: Vec<Uuid> = t.pop_launchable(3).iter().map(|e| e.id).collect();
        assert_eq!(next, [a2.id]);
        t.release_slot(&a1);
        assert!(t.pop_launchable(3).is_empty(), "releasing twice frees nothing");
    }

    #[test]
    fn a_queued_execution_can_be_taken_off_the_queue() {
        let a = def("a", Some(1));
        let mut t = Table::default();
        admit(&mut t, exec(&a, None), 8);
        let queued = exec(&a, None);
        admit(&mut t, queued.clone(), 8);
        assert_eq!(t.dequeue(&queued.id).map(|e| e.id), Some(queued.id));
        assert!(t.dequeue(&queued.id).is_none());
        assert_eq!(t.queue_position(&queued.id), None);
        assert_eq!(t.len(), 2, "it stays known");
    }

    #[test]
    fn idempotency_keys_are_per_workflow_and_forgotten_with_the_execution() {
        let (a, b) = (def("a", None), def("b", None));
        let mut t = Table::default();
        let first = exec(&a, Some("k"));
        admit(&mut t, first.clone(), 8);
        assert_eq!(t.by_idempotency_key("a", "k").map(|e| e.id), Some(first.id));
        assert!(t.by_idempotency_key("b", "k").is_none());
        admit(&mut t, exec(&b, Some("k")), 8);
        finish(&first);
        t.prune(0, Duration::from_secs(3600), SystemTime::now());
        assert!(t.by_idempotency_key("a", "k").is_none());
    }

    #[test]
    fn retention_forgets_the_oldest_finished_and_the_too_old_but_never_a_running_one() {
        let a = def("a", None);
        let mut t = Table::default();
        let all: Vec<_> = (0..5).map(|_| exec(&a, None)).collect();
        for e in &all {
            admit(&mut t, e.clone(), 8);
        }
        for e in &all[..4] {
            finish(e);
        }
        t.prune(2, Duration::from_secs(3600), SystemTime::now());
        let kept: Vec<Uuid> = t.matching(&ListFilter::default()).iter().map(|e| e.id).collect();
        assert_eq!(
            kept,
            [all[4].id, all[3].id, all[2].id],
            "newest first; the running one is kept"
        );
        let later = SystemTime::now() + Duration::from_secs(7200);
        t.prune(100, Duration::from_secs(3600), later);
        let kept: Vec<Uuid> = t.matching(&ListFilter::default()).iter().map(|e| e.id).collect();
        assert_eq!(kept, [all[4].id], "finished more than an hour ago: forgotten");
    }

    #[test]
    fn past_the_queue_cap_a_new_execution_is_refused_unless_it_gets_a_slot() {
        let (a, b) = (def("a", Some(1)), def("b", None));
        let mut t = Table::default();
        assert!(matches!(t.admit(exec(&a, None), 2, 2), Admission::Launch));
        assert!(matches!(t.admit(exec(&a, None), 2, 2), Admission::Queued));
        assert!(matches!(t.admit(exec(&a, None), 2, 2), Admission::Queued));
        assert!(matches!(t.admit(exec(&a, None), 2, 2), Admission::QueueFull(2)));
        assert!(matches!(t.refusal(&a, 2, 2), Some(Admission::QueueFull(2))));
        assert!(
            matches!(t.admit(exec(&b, None), 2, 2), Admission::Launch),
            "a free slot needs no place in the queue"
        );
        assert!(matches!(t.admit(exec(&b, None), 2, 2), Admission::QueueFull(2)));
        assert_eq!(t.len(), 4, "what was refused is not kept");
        assert_eq!(t.close().len(), 2);
        assert!(matches!(t.admit(exec(&b, None), 8, 8), Admission::Closed));
    }

    #[test]
    fn an_idempotency_key_admitted_meanwhile_returns_that_execution() {
        let a = def("a", None);
        let mut t = Table::default();
        let first = exec(&a, Some("k"));
        assert!(admit(&mut t, first.clone(), 8));
        match t.admit(exec(&a, Some("k")), 8, 100) {
            Admission::Existing(e) => assert_eq!(e.id, first.id),
            other => panic!("{other:?}"),
        }
        assert_eq!(t.len(), 1);
    }
}
