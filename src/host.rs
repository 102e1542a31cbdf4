//! The owner of the running server: the app, the process-wide stop signal and the shutdown grace. Sessions (the
//! MCP front end over stdio today) sit on top of it: a session ends by itself (its input ends, its client is
//! gone) without touching the engine; only the host stops the engine, taking session-scoped workflows along.
//! stdio mode is one host with one session: the host starts, the session runs, the host shuts down.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app::App;

/// SIGTERM to SIGKILL when the server stops its workflows on exit.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// The app for as long as the server runs, and the one place that stops it.
pub struct Host {
    app: Arc<App>,
    stop: CancellationToken,
    grace: Duration,
    /// Shuts the engine down as soon as `stop` fires.
    on_stop: JoinHandle<()>,
}

impl Host {
    /// Starts hosting `app`. Must run inside a tokio runtime.
    pub fn start(app: Arc<App>) -> Host {
        let stop = CancellationToken::new();
        let grace = SHUTDOWN_GRACE;
        // On a stop, pending calls must answer at once with the current state: shutting the engine down cancels
        // their waits and kills the workflows while the sessions deliver the answers.
        let on_stop = {
            let (engine, stop) = (app.engine.clone(), stop.clone());
            tokio::spawn(async move {
                stop.cancelled().await;
                tracing::info!("stopping: answering pending calls and killing every workflow");
                engine.shutdown(grace).await;
            })
        };
        Host {
            app,
            stop,
            grace,
            on_stop,
        }
    }

    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// The process-wide stop: cancelled on a stop signal; every session ends on it.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// A new session's own stop: fires with the host's stop, or alone when that session's client is gone.
    pub fn session_token(&self) -> CancellationToken {
        self.stop.child_token()
    }

    /// Stops the server: every session ends (answering its pending calls at once) and the engine shuts down.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Shuts the engine down: no new executions, queued ones cancelled, every session-scoped workflow killed
    /// (SIGTERM, the grace, SIGKILL). Returns once they are gone. Called after the sessions have ended (stdio:
    /// the one session) or after [`Host::stop`].
    pub async fn shutdown(&self) {
        self.app.engine.shutdown(self.grace).await;
        self.on_stop.abort();
    }
}
