//! Serving one MCP session over a reader/writer pair (stdin/stdout in production, pipes in tests), and shutting
//! everything down when it ends.

use std::sync::Arc;
use std::time::Duration;

use rmcp::ServiceExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use super::server::WorkflowServer;
use super::transport::StdioTransport;
use crate::app::App;

/// SIGTERM to SIGKILL when the server stops its workflows on exit.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// Serves until the input ends (after answering every request received) or `stop` fires (a signal, or the
/// client is gone), then stops every workflow. Returns once no workflow process group is left.
pub async fn serve(
    app: Arc<App>,
    reader: impl AsyncRead + Send + Unpin + 'static,
    writer: impl AsyncWrite + Send + Unpin + 'static,
    stop: CancellationToken,
) {
    let engine = app.engine.clone();
    let transport = StdioTransport::new(reader, writer, stop.clone(), app.client_stall);
    // Subscriptions end with the session: when its input has ended and its calls are answered.
    let ended = transport.ended();
    let streams = transport.streams();
    // On a stop, pending calls must answer at once with the current state: shutting the engine down cancels
    // their waits and kills the workflows while the transport delivers the answers.
    let on_stop = {
        let (engine, stop) = (engine.clone(), stop.clone());
        tokio::spawn(async move {
            stop.cancelled().await;
            tracing::info!("stopping: answering pending calls and killing every workflow");
            engine.shutdown(SHUTDOWN_GRACE).await;
        })
    };
    match WorkflowServer::for_session(app, ended.clone(), Some(streams))
        .serve(transport)
        .await
    {
        Ok(service) => {
            let reason = service.waiting().await;
            tracing::info!(?reason, "session ended");
        }
        Err(e) => tracing::info!(error = %e, "the session ended before initialization"),
    }
    ended.cancel();
    engine.shutdown(SHUTDOWN_GRACE).await;
    on_stop.abort();
}
