//! The memory budget shared by every execution's log, and the order in which logs give memory back.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Log memory shared by every execution of a server, with the registry used to reclaim it.
#[derive(Debug)]
pub struct MemoryBudget {
    used: AtomicUsize,
    limit: usize,
    registry: Mutex<Registry>,
}

/// A log that holds memory of the budget and can give some back.
pub(super) trait Reclaim: Send + Sync {
    /// Where it stands in the order logs give memory back in: finished before running; among finished the
    /// oldest first; among running the largest first.
    fn reclaim_key(&self) -> (bool, u64);
    /// Gives back whole middle segments while `budget` is over its limit.
    fn give_back(&self, budget: &MemoryBudget);
}

/// Every log that may hold memory of the budget. Entries of dropped logs are pruned on registration once the
/// list has doubled since the last prune, so it stays within twice the live logs at an amortized O(1) per entry.
#[derive(Debug, Default)]
struct Registry {
    logs: Vec<Weak<dyn Reclaim>>,
    /// Entries left by the last prune.
    live_at_prune: usize,
}

impl Registry {
    /// Below this many entries a registration never prunes.
    const MIN_PRUNE_LEN: usize = 32;

    fn register(&mut self, log: Weak<dyn Reclaim>) {
        if self.logs.len() >= (2 * self.live_at_prune).max(Self::MIN_PRUNE_LEN) {
            self.prune();
        }
        self.logs.push(log);
    }

    /// Drops the entries of dropped logs (each one also keeps its log's allocation).
    fn prune(&mut self) {
        self.logs.retain(|w| w.strong_count() > 0);
        self.live_at_prune = self.logs.len();
    }
}

impl MemoryBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(MemoryBudget {
            used: AtomicUsize::new(0),
            limit,
            registry: Mutex::new(Registry::default()),
        })
    }

    /// Registers a log for reclaim (the budget holds it weakly).
    pub(super) fn register(&self, log: Weak<dyn Reclaim>) {
        lock(&self.registry).register(log);
    }

    #[cfg(test)]
    pub(super) fn registered(&self) -> Vec<Weak<dyn Reclaim>> {
        lock(&self.registry).logs.clone()
    }

    pub(super) fn over(&self) -> bool {
        self.used.load(Ordering::Relaxed) > self.limit
    }

    pub(super) fn add(&self, n: usize) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn sub(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }

    /// Brings the total back under the limit: finished executions' middles go first (oldest first), then the
    /// largest running ones. A log only ever loses whole middle segments; its head and newest lines stay.
    pub(super) fn reclaim(&self) {
        let mut logs: Vec<Arc<dyn Reclaim>> = {
            let mut registry = lock(&self.registry);
            registry.prune();
            registry.logs.iter().filter_map(Weak::upgrade).collect()
        };
        reclaim_order(&mut logs, |s| s.reclaim_key());
        for log in logs {
            if !self.over() {
                break;
            }
            log.give_back(self);
        }
    }
}

/// Sorts logs into the order they give memory back in, reading each one's key once: other executions keep
/// appending while this runs, and keys that change mid-sort break its total order (the sort may then panic).
pub(super) fn reclaim_order<T>(logs: &mut [T], key: impl FnMut(&T) -> (bool, u64)) {
    logs.sort_by_cached_key(key);
}
