//! Waits that say they are alive: while a call waits on an execution and the request carries a
//! `progressToken`, the client gets `notifications/progress` — when something changes (at most once a second)
//! and at least every few seconds (Claude Code resets its idle timer on each). The message says where the
//! execution stands (phase and tasks from structured events, else line counts); the value only ever grows, and
//! carries the phase total when the workflow announced one.

use std::future::Future;
use std::time::Duration;

use rmcp::RoleServer;
use rmcp::model::{ProgressNotificationParam, ProgressToken};
use rmcp::service::{Peer, RequestContext};
use tokio::time::Instant;

use crate::engine::{Engine, ExecutionView, Follow};
use crate::format::Summary;

/// A notification at least this often while waiting.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// Changes are reported at most this often.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// How the value of this wait's notifications is counted, fixed at the first one so it never goes back.
#[derive(Clone, Copy)]
enum Scale {
    /// Phases completed, out of the announced total.
    Phases(u32),
    /// Seconds waited.
    Seconds,
}

struct Reporter {
    follow: Follow<Engine>,
    peer: Peer<RoleServer>,
    token: ProgressToken,
    started: Instant,
    scale: Option<Scale>,
    value: f64,
    message: String,
    sent_at: Option<Instant>,
}

impl Reporter {
    async fn report(&mut self, now: Instant) {
        let Ok(status) = self.follow.status().await;
        let message = Summary(&status).standing();
        let due = match self.sent_at {
            None => true,
            Some(at) => now - at >= HEARTBEAT || (message != self.message && now - at >= CHECK_EVERY),
        };
        if !due {
            return;
        }
        let progress = status.progress;
        let scale = *self.scale.get_or_insert_with(|| {
            match progress.as_ref().and_then(|p| p.phase.as_ref()).and_then(|ph| ph.total) {
                Some(total) => Scale::Phases(total),
                None => Scale::Seconds,
            }
        });
        let candidate = match scale {
            Scale::Phases(_) => progress.map_or(0.0, |p| f64::from(p.phases_completed)),
            Scale::Seconds => (now - self.started).as_secs_f64(),
        };
        // Strictly increasing, as the protocol asks, even when nothing moved.
        let value = if self.sent_at.is_none() {
            candidate
        } else {
            candidate.max(self.value + 0.001)
        };
        self.value = (value * 1000.0).round() / 1000.0;
        let mut param = ProgressNotificationParam::new(self.token.clone(), self.value).with_message(message.clone());
        if let Scale::Phases(total) = scale {
            param = param.with_total(f64::from(total));
        }
        if let Err(e) = self.peer.notify_progress(param).await {
            tracing::debug!(error = %e, "a progress notification could not be sent");
        }
        self.message = message;
        self.sent_at = Some(now);
    }
}

/// Runs `wait` to its end, reporting on `view` meanwhile when the request asked for progress.
pub async fn reporting<F: Future>(
    ctx: &RequestContext<RoleServer>,
    engine: &Engine,
    view: &ExecutionView,
    wait: F,
) -> F::Output {
    let Some(token) = ctx.meta.get_progress_token() else {
        return wait.await;
    };
    let mut reporter = Reporter {
        follow: engine.follow(view),
        peer: ctx.peer.clone(),
        token,
        started: Instant::now(),
        scale: None,
        value: 0.0,
        message: String::new(),
        sent_at: None,
    };
    let mut wait = std::pin::pin!(wait);
    let mut ticks = tokio::time::interval(CHECK_EVERY);
    loop {
        tokio::select! {
            biased;
            out = &mut wait => return out,
            _ = ticks.tick() => reporter.report(Instant::now()).await,
        }
    }
}
