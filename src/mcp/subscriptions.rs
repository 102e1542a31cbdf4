//! Subscriptions to execution resources, for the clients that ask: `resources/subscribe` on sessions that
//! negotiated a version with it (up to 2025-11-25), `subscriptions/listen` on 2026-07-28. A subscribed
//! execution gets `notifications/resources/updated` when its state changes or it prints (at most
//! [`UPDATE_EVERY`] apart per resource); the list gets `notifications/resources/list_changed` when executions
//! start, end or are forgotten (at most [`LIST_EVERY`] apart). A session that never subscribes gets none of
//! this, and everything a session watches stops when the session ends.
//!
//! One small task per subscribed resource, and one for the list, each waiting on what can change it: a live
//! execution's `logs_tx`, the engine's changes, and for what another server process on the state directory
//! runs (no signal reaches us), a look now and then.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::RoleServer;
use rmcp::model::{RequestId, ResourceUpdatedNotificationParam};
use rmcp::service::{Peer, SubscriptionSink};
use tokio_util::sync::CancellationToken;

use super::transport::Streams;
use crate::engine::{Engine, ExecutionState, ExecutionView, ListFilter};

/// At most one `resources/updated` per resource this often (a few per second).
pub const UPDATE_EVERY: Duration = Duration::from_millis(250);
/// At most one `resources/list_changed` this often.
pub const LIST_EVERY: Duration = Duration::from_secs(1);
/// How often an execution run by another server process is looked at.
const STORED_LOOK: Duration = Duration::from_millis(500);
/// How often the list is looked at for changes no signal tells of (other server processes, retention).
const LIST_LOOK: Duration = Duration::from_secs(2);
/// The newest executions whose states the list watcher compares (the first page of `resources/list`).
const LIST_WATCHED: usize = 50;

/// Where a session's notifications go: the session itself (`resources/subscribe`), or one
/// `subscriptions/listen` stream (whose sink tags them with its id and keeps to what it accepted).
#[derive(Clone)]
pub enum Notifier {
    Session(Peer<RoleServer>),
    Listen(SubscriptionSink),
}

impl Notifier {
    /// Sends `resources/updated`; false when it cannot be sent (the session or the stream is gone).
    async fn updated(&self, uri: &str) -> bool {
        let sent = match self {
            Notifier::Session(peer) => peer
                .notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
                .await
                .map_err(|e| e.to_string()),
            Notifier::Listen(sink) => sink.notify_resource_updated(uri).await.map_err(|e| e.to_string()),
        };
        sent.inspect_err(|e| tracing::debug!(uri, error = %e, "a resource update could not be sent"))
            .is_ok()
    }

    /// Sends `resources/list_changed`; false when it cannot be sent.
    async fn list_changed(&self) -> bool {
        let sent = match self {
            Notifier::Session(peer) => peer.notify_resource_list_changed().await.map_err(|e| e.to_string()),
            Notifier::Listen(sink) => sink.notify_resource_list_changed().await.map_err(|e| e.to_string()),
        };
        sent.inspect_err(|e| tracing::debug!(error = %e, "a list change could not be sent"))
            .is_ok()
    }
}

/// What a session watches. Held by the session's server; every watcher stops when `ended` fires.
pub struct Session {
    ended: CancellationToken,
    /// Told when a `subscriptions/listen` request has become a stream (the stdio transport).
    streams: Option<Streams>,
    /// `resources/subscribe` subscriptions (2025-11-25 and before): URI → its watcher's stop.
    subscribed: Mutex<Subscribed>,
}

#[derive(Default)]
struct Subscribed {
    resources: HashMap<String, CancellationToken>,
    /// The list watcher, while at least one resource is subscribed.
    list: Option<CancellationToken>,
}

impl Session {
    /// A session that ends when `ended` is cancelled.
    pub fn new(ended: CancellationToken, streams: Option<Streams>) -> Arc<Session> {
        Arc::new(Session {
            ended,
            streams,
            subscribed: Mutex::default(),
        })
    }

    /// Cancelled when the session ends.
    pub fn ended(&self) -> &CancellationToken {
        &self.ended
    }

    /// Stops everything the session watches.
    pub fn end(&self) {
        self.ended.cancel();
    }

    /// Held for map updates only, never across an await.
    fn lock(&self) -> std::sync::MutexGuard<'_, Subscribed> {
        self.subscribed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `resources/subscribe`: watches `view` for `uri` (once, however often it is asked), and the list while
    /// anything is subscribed.
    pub fn subscribe(&self, engine: &Engine, uri: String, view: ExecutionView, peer: Peer<RoleServer>) {
        let mut subscribed = self.lock();
        if subscribed.resources.contains_key(&uri) {
            return;
        }
        let notifier = Notifier::Session(peer);
        if subscribed.list.is_none() {
            let stop = self.ended.child_token();
            tokio::spawn(watch_list(engine.clone(), notifier.clone(), stop.clone()));
            subscribed.list = Some(stop);
        }
        let stop = self.ended.child_token();
        tokio::spawn(watch_execution(
            engine.clone(),
            view,
            uri.clone(),
            notifier,
            stop.clone(),
        ));
        subscribed.resources.insert(uri, stop);
    }

    /// `resources/unsubscribe`: stops watching `uri` (and the list once nothing is subscribed).
    pub fn unsubscribe(&self, uri: &str) {
        let mut subscribed = self.lock();
        if let Some(stop) = subscribed.resources.remove(uri) {
            stop.cancel();
        }
        if subscribed.resources.is_empty()
            && let Some(stop) = subscribed.list.take()
        {
            stop.cancel();
        }
    }

    /// One acknowledged `subscriptions/listen` stream (request `id`): watches the accepted executions and, if
    /// accepted, the list, until `cancelled` fires or the session ends.
    pub async fn listen(
        &self,
        engine: &Engine,
        executions: Vec<(String, ExecutionView)>,
        list: bool,
        (id, sink): (RequestId, SubscriptionSink),
        cancelled: impl Future<Output = ()>,
    ) {
        if let Some(streams) = &self.streams {
            streams.started(&id);
        }
        let stop = self.ended.child_token();
        let notifier = Notifier::Listen(sink);
        for (uri, view) in executions {
            tokio::spawn(watch_execution(
                engine.clone(),
                view,
                uri,
                notifier.clone(),
                stop.clone(),
            ));
        }
        if list {
            tokio::spawn(watch_list(engine.clone(), notifier, stop.clone()));
        }
        tokio::select! {
            _ = cancelled => {}
            _ = stop.cancelled() => {}
        }
        stop.cancel();
    }
}

/// What a subscriber of an execution's resources is told about: its state, its newest line, its place in the
/// queue.
#[derive(PartialEq)]
struct Seen {
    state: ExecutionState,
    last_seq: Option<u64>,
    queue_position: Option<usize>,
}

fn seen(engine: &Engine, view: &ExecutionView) -> Seen {
    let status = engine.status(&engine.refresh(view));
    Seen {
        state: status.state,
        last_seq: status.output.last_seq,
        queue_position: status.queue_position,
    }
}

/// Tells `notifier` about every change of the execution behind `uri`, at most [`UPDATE_EVERY`] apart, until
/// it is final (nothing changes after that) or `stop` fires.
async fn watch_execution(
    engine: Engine,
    view: ExecutionView,
    uri: String,
    notifier: Notifier,
    stop: CancellationToken,
) {
    let mut changes = match &view {
        ExecutionView::Live(e) => Some(e.logs_tx.subscribe()),
        ExecutionView::Stored(_) => None,
    };
    let mut last = seen(&engine, &view);
    while !last.state.is_terminal() {
        let changed = async {
            match changes.as_mut() {
                Some(rx) => drop(rx.changed().await),
                None => tokio::time::sleep(STORED_LOOK).await,
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = changed => {}
        }
        let now = seen(&engine, &view);
        if now == last {
            continue;
        }
        last = now;
        if !notifier.updated(&uri).await {
            return;
        }
        // Changes in the meantime are told after the pause: the watch remembers them, and so does the state.
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(UPDATE_EVERY) => {}
        }
    }
}

/// The newest executions and their states, and how many there are: when this changes, so does the list of
/// resources (an execution added, forgotten, or a title's state).
fn list_seen(engine: &Engine) -> (Vec<(String, ExecutionState)>, usize) {
    let (statuses, total) = engine.list(&ListFilter {
        workflow: None,
        state: None,
        limit: LIST_WATCHED,
    });
    (statuses.into_iter().map(|s| (s.execution_id, s.state)).collect(), total)
}

/// Tells `notifier` when the list of executions changes, at most [`LIST_EVERY`] apart, until `stop` fires.
async fn watch_list(engine: Engine, notifier: Notifier, stop: CancellationToken) {
    let mut changes = engine.changes();
    let mut last = list_seen(&engine);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = changes.changed() => {}
            _ = tokio::time::sleep(LIST_LOOK) => {}
        }
        let now = list_seen(&engine);
        if now == last {
            continue;
        }
        last = now;
        if !notifier.list_changed().await {
            return;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(LIST_EVERY) => {}
        }
    }
}
