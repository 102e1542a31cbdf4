//! Subscriptions to execution resources, for the clients that ask: `resources/subscribe` on sessions that
//! negotiated a version with it (up to 2025-11-25), `subscriptions/listen` on 2026-07-28. A subscribed
//! execution gets `notifications/resources/updated` when its state changes or it prints (at most
//! [`UPDATE_EVERY`] apart per resource); the list gets `notifications/resources/list_changed` when executions
//! start, end or are forgotten (at most [`LIST_EVERY`] apart). A session that never subscribes gets none of
//! this, and everything a session watches stops when the session ends.
//!
//! A resource is subscribed once per session however its URI is spelled (an execution id parses in several
//! forms): subscriptions are keyed by the resource, and one session holds at most [`MAX_SUBSCRIPTIONS`]. Nothing
//! polls per subscription: a live execution's watcher is a small task asleep on its `logs_tx`, the list's on the
//! engine's changes and the history's writes (and a look now and then); what other server processes on the state
//! directory run is looked at by one task per session (or `subscriptions/listen` stream), all of it in one
//! blocking pass when their log files or the history change (and now and then), and only while such an execution
//! is watched and unfinished.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::RoleServer;
use rmcp::model::{RequestId, ResourceUpdatedNotificationParam};
use rmcp::service::{Peer, SubscriptionSink};
use tokio_util::sync::CancellationToken;

use super::resources::ResourceRef;
use super::transport::Streams;
use crate::engine::{Engine, ExecutionState, ExecutionView, ListFilter, STORED_BACKSTOP, Seen, StoredChanges};

/// At most one `resources/updated` per resource this often (a few per second).
pub const UPDATE_EVERY: Duration = Duration::from_millis(250);
/// At most one `resources/list_changed` this often.
pub const LIST_EVERY: Duration = Duration::from_secs(1);
/// How often the executions run by other server processes are looked at (all of a session's in one pass) where
/// their files cannot be watched (else a change to them brings the look forward, and one every
/// `STORED_BACKSTOP` sees what leaves no file behind).
const STORED_LOOK: Duration = Duration::from_millis(500);
/// The most resources one session may subscribe to (and one `subscriptions/listen` stream accept).
pub const MAX_SUBSCRIPTIONS: usize = 1000;
/// How often the list is looked at for changes nothing tells of (other server processes where the history cannot be
/// watched, retention).
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
    /// `resources/subscribe` subscriptions (2025-11-25 and before).
    subscribed: Mutex<Subscribed>,
}

#[derive(Default)]
struct Subscribed {
    /// Each subscribed resource (however its URI was spelled) → its watcher's stop.
    resources: HashMap<ResourceRef, CancellationToken>,
    /// The list watcher, while at least one resource is subscribed.
    list: Option<CancellationToken>,
    /// The session's watcher of executions other server processes run, once one was subscribed.
    stored: Option<StoredWatcher>,
}

/// Why a subscription was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error(
        "this session already watches {MAX_SUBSCRIPTIONS} resources, the most one session may; unsubscribe \
         (resources/unsubscribe) from some before subscribing to more"
    )]
    TooMany,
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

    /// Held for map updates only, never across an await.
    fn lock(&self) -> std::sync::MutexGuard<'_, Subscribed> {
        self.subscribed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `resource` is subscribed already (asking again changes nothing), or an error if the session has no
    /// room for it. A check before the caller looks the execution up; [`Session::subscribe`] checks again.
    pub fn admits(&self, resource: ResourceRef) -> Result<bool, SubscribeError> {
        let subscribed = self.lock();
        if subscribed.resources.contains_key(&resource) {
            return Ok(true);
        }
        if subscribed.resources.len() >= MAX_SUBSCRIPTIONS {
            return Err(SubscribeError::TooMany);
        }
        Ok(false)
    }

    /// `resources/subscribe`: watches `view` for `resource` (once, however often and however spelled it is asked;
    /// notifications name it by the `uri` it was first asked with), and the list while anything is subscribed.
    pub fn subscribe(
        &self,
        engine: &Engine,
        (resource, uri): (ResourceRef, String),
        view: ExecutionView,
        peer: Peer<RoleServer>,
    ) -> Result<(), SubscribeError> {
        let mut subscribed = self.lock();
        if subscribed.resources.contains_key(&resource) {
            return Ok(());
        }
        if subscribed.resources.len() >= MAX_SUBSCRIPTIONS {
            return Err(SubscribeError::TooMany);
        }
        let notifier = Notifier::Session(peer);
        if subscribed.list.is_none() {
            let stop = self.ended.child_token();
            tokio::spawn(watch_list(engine.clone(), notifier.clone(), stop.clone()));
            subscribed.list = Some(stop);
        }
        let stop = self.ended.child_token();
        match view {
            ExecutionView::Live(_) => {
                tokio::spawn(watch_execution(engine.clone(), view, uri, notifier, stop.clone()));
            }
            ExecutionView::Stored(_) => {
                let ended = &self.ended;
                subscribed
                    .stored
                    .get_or_insert_with(|| StoredWatcher::start(engine, notifier, ended.child_token()))
                    .watch(view, uri, stop.clone());
            }
        }
        subscribed.resources.insert(resource, stop);
        Ok(())
    }

    /// `resources/unsubscribe`: stops watching the resource `uri` names, however spelled (and the list once
    /// nothing is subscribed).
    pub fn unsubscribe(&self, uri: &str) {
        let mut subscribed = self.lock();
        if let Some(stop) = ResourceRef::parse(uri).and_then(|r| subscribed.resources.remove(&r)) {
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
        let mut stored = None;
        for (uri, view) in executions {
            match view {
                ExecutionView::Live(_) => {
                    tokio::spawn(watch_execution(
                        engine.clone(),
                        view,
                        uri,
                        notifier.clone(),
                        stop.clone(),
                    ));
                }
                ExecutionView::Stored(_) => stored
                    .get_or_insert_with(|| StoredWatcher::start(engine, notifier.clone(), stop.clone()))
                    .watch(view, uri, stop.clone()),
            }
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

/// What a subscriber of an execution's resources is told about, read on the calling thread (which may block on
/// the history).
fn seen(engine: &Engine, view: &ExecutionView) -> Seen {
    Seen::of(&engine.status(&engine.refresh_blocking(view)))
}

/// Tells `notifier` about every change of the live execution behind `uri`, at most [`UPDATE_EVERY`] apart, until
/// it is final (nothing changes after that) or `stop` fires. Asleep on its `logs_tx` meanwhile.
async fn watch_execution(
    engine: Engine,
    view: ExecutionView,
    uri: String,
    notifier: Notifier,
    stop: CancellationToken,
) {
    let ExecutionView::Live(_) = &view else {
        unreachable!("a stored execution is watched by a StoredWatcher");
    };
    let mut follow = engine.follow(&view);
    let Ok(mut last) = follow.status().await.map(|s| Seen::of(&s));
    loop {
        let Ok(true) = follow.next_change(&mut last, &stop).await else {
            return;
        };
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

/// One execution another server process runs, as a [`StoredWatcher`] follows it.
struct StoredEntry {
    view: ExecutionView,
    uri: String,
    /// Fires when it is unsubscribed.
    stop: CancellationToken,
    /// What was seen last (none before the first look).
    last: Option<Seen>,
}

/// Follows the executions other server processes run for one notifier: one task, asleep while nothing is
/// watched, otherwise looking at all of them in one blocking pass (their records are read from the history)
/// when their files or the history change, and every [`STORED_BACKSTOP`] (every [`STORED_LOOK`] where files
/// cannot be watched).
struct StoredWatcher {
    add: tokio::sync::mpsc::UnboundedSender<StoredEntry>,
}

impl StoredWatcher {
    fn start(engine: &Engine, notifier: Notifier, stop: CancellationToken) -> StoredWatcher {
        let (add, added) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(watch_stored(engine.clone(), notifier, added, stop));
        StoredWatcher { add }
    }

    fn watch(&self, view: ExecutionView, uri: String, stop: CancellationToken) {
        // The task ends only with the session (or stream) that owns it, and then nothing is to be watched.
        let _ = self.add.send(StoredEntry {
            view,
            uri,
            stop,
            last: None,
        });
    }
}

async fn watch_stored(
    engine: Engine,
    notifier: Notifier,
    mut added: tokio::sync::mpsc::UnboundedReceiver<StoredEntry>,
    stop: CancellationToken,
) {
    let mut entries: Vec<StoredEntry> = Vec::new();
    // Their log folders and the history, watched from before each one's first look.
    let mut heard = engine.stored_changes();
    let mut told = false;
    let every = |heard: &StoredChanges| if heard.hears() { STORED_BACKSTOP } else { STORED_LOOK };
    let mut looked = tokio::time::Instant::now();
    let mut next_look = looked + STORED_LOOK;
    loop {
        // New entries get their first look (the baseline) at once, and only they; all get one at `next_look`,
        // which a file change brings forward (to at most one look every UPDATE_EVERY).
        let new = entries.iter().any(|e| e.last.is_none());
        tokio::select! {
            _ = stop.cancelled() => return,
            entry = added.recv() => {
                let Some(entry) = entry else { return };
                entries.push(entry);
                while let Ok(entry) = added.try_recv() {
                    entries.push(entry);
                }
                heard.watch(entries.iter().map(|e| &e.view));
                continue;
            }
            () = heard.changed(), if !entries.is_empty() => {
                if !told {
                    told = true;
                    tracing::debug!("a file change woke the watcher of executions other processes run");
                }
                next_look = next_look.min(looked + UPDATE_EVERY);
                continue;
            }
            _ = tokio::time::sleep_until(next_look), if !entries.is_empty() => {}
            _ = std::future::ready(()), if new => {}
        }
        let all = tokio::time::Instant::now() >= next_look;
        if all {
            looked = tokio::time::Instant::now();
            next_look = looked + every(&heard);
        }
        let engine = engine.clone();
        let Ok((kept, changed)) = tokio::task::spawn_blocking(move || look_at(&engine, entries, all)).await else {
            return;
        };
        entries = kept;
        heard.watch(entries.iter().map(|e| &e.view));
        for uri in changed {
            if !notifier.updated(&uri).await {
                return;
            }
        }
    }
}

/// One look at the entries not looked at yet, or at all of them (each execution read once, whichever of its
/// resources are watched): returns the entries still to follow and the URIs whose resources changed. Blocking
/// (the history).
fn look_at(engine: &Engine, entries: Vec<StoredEntry>, all: bool) -> (Vec<StoredEntry>, Vec<String>) {
    let mut now_seen: HashMap<uuid::Uuid, Seen> = HashMap::new();
    let mut kept = Vec::with_capacity(entries.len());
    let mut changed = Vec::new();
    for mut e in entries.into_iter().filter(|e| !e.stop.is_cancelled()) {
        if !all && e.last.is_some() {
            kept.push(e);
            continue;
        }
        let now = *now_seen.entry(e.view.id()).or_insert_with(|| seen(engine, &e.view));
        if e.last.is_some_and(|last| last != now) {
            changed.push(e.uri.clone());
        }
        e.last = Some(now);
        if !now.state.is_terminal() {
            kept.push(e);
        }
    }
    (kept, changed)
}

/// The newest executions and their states, and how many there are: when this changes, so does the list of
/// resources (an execution added, forgotten, or a title's state). None when the history cannot be read: nothing
/// is known to have changed.
async fn list_seen(engine: &Engine) -> Option<(Vec<(String, ExecutionState)>, usize)> {
    let (statuses, total) = engine
        .list(&ListFilter {
            workflow: None,
            state: None,
            limit: LIST_WATCHED,
        })
        .await
        .inspect_err(|e| tracing::warn!(error = %crate::engine::error_chain(e), "reading the history failed"))
        .ok()?;
    Some((statuses.into_iter().map(|s| (s.execution_id, s.state)).collect(), total))
}

/// Tells `notifier` when the list of executions changes, at most [`LIST_EVERY`] apart, until `stop` fires.
async fn watch_list(engine: Engine, notifier: Notifier, stop: CancellationToken) {
    let mut changes = engine.changes();
    // Other processes' starts and ends: the history written.
    let mut written = engine.stored_changes();
    written.watch(std::iter::empty());
    let mut last = list_seen(&engine).await.unwrap_or_default();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = changes.changed() => {}
            () = written.changed() => {}
            _ = tokio::time::sleep(LIST_LOOK) => {}
        }
        let Some(now) = list_seen(&engine).await else {
            continue;
        };
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
