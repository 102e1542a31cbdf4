//! Serving one MCP session over a reader/writer pair (stdin/stdout in production, pipes in tests) on a host.
//! The session ends when its input ends (after answering every request received), when its client is gone, or
//! when the host stops; ending it never stops the engine (the host does that).

use rmcp::ServiceExt;
use tokio::io::{AsyncRead, AsyncWrite};

use super::server::WorkflowServer;
use super::transport::StdioTransport;
use crate::host::Host;

/// Serves one session until its input ends (after answering every request received), its client is gone (a
/// write failed, or it stopped reading), or the host stops (pending calls then answer at once).
pub async fn serve(
    host: &Host,
    reader: impl AsyncRead + Send + Unpin + 'static,
    writer: impl AsyncWrite + Send + Unpin + 'static,
) {
    let app = host.app().clone();
    // The transport cancels this session's own token when its client is gone; the host's stop cancels it too.
    let stop = host.session_token();
    let transport = StdioTransport::new(reader, writer, stop.clone(), app.client_stall);
    // Subscriptions end with the session: when its input has ended and its calls are answered.
    let ended = transport.ended();
    let streams = transport.streams();
    match WorkflowServer::for_session(app, ended.clone(), Some(streams))
        .serve(transport)
        .await
    {
        Ok(service) => {
            // A client that is gone reads no answers: its pending calls end at once (on a host stop they answer).
            let gone = {
                let (service_stop, host_stop) = (service.cancellation_token(), host.stop_token());
                tokio::spawn(async move {
                    stop.cancelled().await;
                    if !host_stop.is_cancelled() {
                        service_stop.cancel();
                    }
                })
            };
            let reason = service.waiting().await;
            gone.abort();
            tracing::info!(?reason, "session ended");
        }
        Err(e) => tracing::info!(error = %e, "the session ended before initialization"),
    }
    ended.cancel();
}
