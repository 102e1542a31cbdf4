//! The stdio transport: newline-delimited JSON-RPC on stdin/stdout, with the shutdown rules of a workflow
//! server built in.
//!
//! - End of input means "no more requests", not "stop": `receive` reports the end only once every request
//!   already received has been answered, so a call waiting with `wait_ms` finishes its wait as usual.
//! - A malformed line is answered with a JSON-RPC error (parse error, invalid request, too large) instead of
//!   being dropped silently.
//! - A client that is gone (write error) or stops reading trips the session's `stop` token, which ends this
//!   session (in stdio mode, the server's only one: the server then shuts down). Stopping reading means no byte of a pending answer written for the stall time
//!   (`limits.client_stall_ms`, 30 s by default): answers are written by a thread of their own, so a busy
//!   runtime never looks like a client that stopped reading, and a client busy for a few seconds is not gone.
//! - A `subscriptions/listen` request is a stream, not a call that owes an answer: once its handler says it is
//!   streaming ([`Streams::started`]) the end of input no longer waits for it, and [`StdioTransport::ended`]
//!   tells it (and every subscription) that the session is over, so it ends with its final result.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::RoleServer;
use rmcp::model::{JsonRpcMessage, RequestId};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Largest request line accepted; a longer one is answered with an error and skipped.
pub const MAX_REQUEST_BYTES: usize = 4 << 20;
/// After a stop signal, how long in-flight calls (which answer at once on shutdown) get to be answered.
const STOP_ANSWER_GRACE: Duration = Duration::from_millis(1000);
/// Upper bound on waiting for in-flight calls after end of input (the longest wait a tool allows is 50 s).
const EOF_ANSWER_LIMIT: Duration = Duration::from_secs(120);

type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// Requests received and not yet answered.
#[derive(Default)]
struct InFlight {
    ids: Mutex<HashSet<RequestId>>,
    emptied: Notify,
}

impl InFlight {
    fn insert(&self, id: RequestId) {
        self.ids.lock().unwrap_or_else(|e| e.into_inner()).insert(id);
    }

    fn remove(&self, id: &RequestId) {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        ids.remove(id);
        if ids.is_empty() {
            self.emptied.notify_waiters();
        }
    }

    async fn wait_empty(&self) {
        loop {
            let notified = self.emptied.notified();
            if self.ids.lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
                return;
            }
            notified.await;
        }
    }
}

/// One line to write, and who waits for it to be written.
struct Job {
    line: Vec<u8>,
    done: oneshot::Sender<std::io::Result<()>>,
}

/// The writing side: lines go to the writer loop ([`write_lines`]) through a channel.
struct Output {
    jobs: mpsc::UnboundedSender<Job>,
    /// The client is gone: later writes fail at once instead of stalling again.
    gone: Arc<AtomicBool>,
}

fn client_gone() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client is gone")
}

impl Output {
    /// Starts the writer loop on a thread of its own with a small runtime (so the clock of a stall runs only
    /// while a write is really pending, however busy the server's runtime is), or, if no thread can be
    /// started, as a task of the current runtime.
    fn start(writer: Writer, stall: Duration, stop: CancellationToken) -> Output {
        let (jobs, rx) = mpsc::unbounded_channel();
        let gone = Arc::new(AtomicBool::new(false));
        let run = {
            let gone = gone.clone();
            move || write_lines(writer, rx, stall, stop, gone)
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new().name("mcp-writer".into()).spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
            let Ok(rt) = rt else {
                // The work comes back to be run elsewhere.
                let _ = ready_tx.send(Some(run));
                return;
            };
            let _ = ready_tx.send(None);
            rt.block_on(run());
            // A write stuck in a blocking thread of this runtime must not hold the process.
            rt.shutdown_background();
        });
        let fallback = match thread {
            Ok(_) => ready_rx.recv().ok().flatten(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the writer thread; writing from the async runtime");
                None
            }
        };
        if let Some(run) = fallback {
            tracing::warn!("cannot start the writer's runtime; writing from the async runtime");
            tokio::spawn(run());
        }
        Output { jobs, gone }
    }

    /// Writes one line; a failure or a stall means the client is gone, which ends the session.
    async fn write_line(&self, line: Vec<u8>) -> std::io::Result<()> {
        if self.gone.load(Ordering::Relaxed) {
            return Err(client_gone());
        }
        let (done, written) = oneshot::channel();
        if self.jobs.send(Job { line, done }).is_err() {
            return Err(client_gone());
        }
        written.await.unwrap_or_else(|_| Err(client_gone()))
    }

    async fn write_value(&self, v: &Value) {
        let mut line = v.to_string().into_bytes();
        line.push(b'\n');
        let _ = self.write_line(line).await;
    }
}

/// Writes the lines in the order sent, each whole and flushed. The first failure, or `stall` without a byte
/// written while a line is pending, marks the client gone and cancels `stop`; every line after fails at once.
async fn write_lines(
    mut writer: Writer,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    stall: Duration,
    stop: CancellationToken,
    gone: Arc<AtomicBool>,
) {
    while let Some(job) = jobs.recv().await {
        let result = if gone.load(Ordering::Relaxed) {
            Err(client_gone())
        } else {
            write_progressing(&mut writer, &job.line, stall).await
        };
        if let Err(e) = &result
            && !gone.swap(true, Ordering::Relaxed)
        {
            tracing::error!(error = %e, "cannot write to the client; ending the session");
            stop.cancel();
        }
        let _ = job.done.send(result);
    }
}

/// Writes `line` and flushes; fails when no byte is written (nor the flush done) for `stall`. Each write is
/// polled before the clock is looked at, so only time with the write itself pending counts.
async fn write_progressing(w: &mut Writer, line: &[u8], stall: Duration) -> std::io::Result<()> {
    let mut written = 0;
    let mut deadline = tokio::time::Instant::now() + stall;
    loop {
        let step = async {
            if written < line.len() {
                w.write(&line[written..]).await.map(Some)
            } else {
                w.flush().await.map(|()| None)
            }
        };
        let stepped = tokio::select! {
            biased;
            r = step => Some(r?),
            _ = tokio::time::sleep_until(deadline) => None,
        };
        match stepped {
            Some(Some(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
            Some(Some(n)) => {
                written += n;
                deadline = tokio::time::Instant::now() + stall;
            }
            Some(None) => return Ok(()),
            None => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "the client stopped reading responses: nothing written for {} s",
                        stall.as_secs_f64()
                    ),
                ));
            }
        }
    }
}

/// The transport handed to rmcp.
pub struct StdioTransport {
    incoming: mpsc::Receiver<RxJsonRpcMessage<RoleServer>>,
    out: Arc<Output>,
    in_flight: Arc<InFlight>,
    stop: CancellationToken,
    input_ended: bool,
    /// Cancelled once the session has no more requests (see [`StdioTransport::ended`]).
    ended: CancellationToken,
    /// The reader task. It holds the writing side too, so the session's pipe stays open while it runs.
    reading: tokio::task::AbortHandle,
}

impl Drop for StdioTransport {
    /// A session that is over closes its pipe, even if its client keeps its end open: the reader stops, and the
    /// writer thread ends once what is queued is written (or the client is found gone).
    fn drop(&mut self) {
        self.reading.abort();
    }
}

impl StdioTransport {
    /// `stop` is the session's: cancelled when the server stops (a signal), and by the transport itself when the
    /// client is gone.
    /// `stall`: how long a pending answer may go without a byte written before the client is taken as gone.
    pub fn new(
        reader: impl AsyncRead + Send + Unpin + 'static,
        writer: impl AsyncWrite + Send + Unpin + 'static,
        stop: CancellationToken,
        stall: Duration,
    ) -> Self {
        let out = Arc::new(Output::start(Box::new(writer), stall, stop.clone()));
        let (tx, rx) = mpsc::channel(64);
        let reading = tokio::spawn(read_requests(reader, tx, out.clone())).abort_handle();
        StdioTransport {
            incoming: rx,
            reading,
            out,
            in_flight: Arc::new(InFlight::default()),
            stop,
            input_ended: false,
            ended: CancellationToken::new(),
        }
    }

    /// Cancelled when the session is over: input ended (or the server is stopping) and every call received has
    /// been answered. Subscriptions end on it.
    pub fn ended(&self) -> CancellationToken {
        self.ended.clone()
    }

    /// Where a request's handler says it has become a stream (see [`Streams::started`]).
    pub fn streams(&self) -> Streams {
        Streams(self.in_flight.clone())
    }
}

/// Tells the transport which requests are streams that last as long as the session.
#[derive(Clone)]
pub struct Streams(Arc<InFlight>);

impl Streams {
    /// The request is now a stream (a `subscriptions/listen` that was acknowledged): the end of input does not
    /// wait for its answer; it answers when the session ends. (Until then it is waited for like any call, so a
    /// client that closes its input right after the acknowledgement still gets the stream's final result.)
    pub fn started(&self, id: &RequestId) {
        self.0.remove(id);
    }
}

/// Reads lines, parses them, answers the malformed ones, and passes the rest on.
async fn read_requests(
    reader: impl AsyncRead + Send + Unpin,
    tx: mpsc::Sender<RxJsonRpcMessage<RoleServer>>,
    out: Arc<Output>,
) {
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut reader)
            .take(MAX_REQUEST_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .await;
        match read {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "reading stdin failed; treating it as end of input");
                break;
            }
        }
        if line.len() > MAX_REQUEST_BYTES && line.last() != Some(&b'\n') {
            // Skip the rest of the oversized line without buffering it.
            let mut skipped = line.len();
            loop {
                let buf = match reader.fill_buf().await {
                    Ok([]) | Err(_) => break,
                    Ok(buf) => buf,
                };
                match memchr::memchr(b'\n', buf) {
                    Some(i) => {
                        skipped += i + 1;
                        reader.consume(i + 1);
                        break;
                    }
                    None => {
                        let n = buf.len();
                        skipped += n;
                        reader.consume(n);
                    }
                }
            }
            tracing::warn!(bytes = skipped, "discarded an oversized request line");
            out.write_value(&error_response(
                Value::Null,
                -32600,
                &format!(
                    "request of {skipped} bytes is larger than the {MAX_REQUEST_BYTES}-byte limit and was discarded"
                ),
            ))
            .await;
            continue;
        }
        let text = line.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&line);
        let text = text.trim_ascii();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_slice::<RxJsonRpcMessage<RoleServer>>(text) {
            Ok(msg) => {
                if tx.send(msg).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                if let Some(reply) = malformed_reply(text, &e) {
                    out.write_value(&reply).await;
                }
            }
        }
    }
}

fn error_response(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// The JSON-RPC error for a line that is not a valid message; `None` for a notification we do not know
/// (notifications get no answer).
fn malformed_reply(text: &[u8], err: &serde_json::Error) -> Option<Value> {
    let value: Value = match serde_json::from_slice(text) {
        Ok(v) => v,
        Err(e) => {
            return Some(error_response(
                Value::Null,
                -32700,
                &format!("parse error: {e}; send one JSON-RPC message per line"),
            ));
        }
    };
    match &value {
        Value::Array(_) => Some(error_response(
            Value::Null,
            -32600,
            "JSON-RPC batches are not supported; send one message per line",
        )),
        Value::Object(obj) => match obj.get("id") {
            Some(id) if obj.contains_key("method") => {
                Some(error_response(id.clone(), -32600, &format!("invalid request: {err}")))
            }
            Some(_) => None, // A response from the client to a request we never sent.
            None => {
                tracing::debug!(error = %err, "ignoring an unknown notification");
                None
            }
        },
        _ => Some(error_response(
            Value::Null,
            -32600,
            "invalid request: a JSON-RPC message must be an object",
        )),
    }
}

impl StdioTransport {
    /// Keeps the set of requests that still owe an answer.
    fn track(&self, msg: &RxJsonRpcMessage<RoleServer>) {
        match msg {
            JsonRpcMessage::Request(r) => self.in_flight.insert(r.id.clone()),
            JsonRpcMessage::Notification(n) => {
                if let rmcp::model::ClientNotification::CancelledNotification(c) = &n.notification
                    && let Some(id) = &c.params.request_id
                {
                    // A cancelled request gets no answer.
                    self.in_flight.remove(id);
                }
            }
            _ => {}
        }
    }
}

impl Transport<RoleServer> for StdioTransport {
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let out = self.out.clone();
        let in_flight = self.in_flight.clone();
        let answered = match &item {
            JsonRpcMessage::Response(r) => Some(r.id.clone()),
            JsonRpcMessage::Error(e) => e.id.clone(),
            _ => None,
        };
        async move {
            let mut line = serde_json::to_vec(&item).map_err(std::io::Error::other)?;
            line.push(b'\n');
            let result = out.write_line(line).await;
            if let Some(id) = answered {
                in_flight.remove(&id);
            }
            result
        }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        if !self.input_ended {
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => {
                    // Requests already read are still answered (at once, since the server is stopping).
                    if let Ok(msg) = self.incoming.try_recv() {
                        self.track(&msg);
                        return Some(msg);
                    }
                    self.input_ended = true;
                }
                msg = self.incoming.recv() => match msg {
                    Some(msg) => {
                        self.track(&msg);
                        return Some(msg);
                    }
                    None => self.input_ended = true,
                },
            }
        }
        // No more requests: report the end only once the ones received have been answered.
        let limit = if self.stop.is_cancelled() {
            STOP_ANSWER_GRACE
        } else {
            EOF_ANSWER_LIMIT
        };
        let stop = self.stop.clone();
        let waited = tokio::time::timeout(limit, async {
            tokio::select! {
                _ = self.in_flight.wait_empty() => {}
                // A stop signal while waiting: calls answer at once, give them a moment.
                _ = async {
                    stop.cancelled().await;
                    tokio::time::sleep(STOP_ANSWER_GRACE).await;
                } => {}
            }
        })
        .await;
        if waited.is_err() {
            tracing::warn!("gave up waiting for in-flight calls to be answered");
        }
        self.ended.cancel();
        None
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        // An empty line flushes what is queued before it; a client that stopped reading does not hold the exit.
        let _ = tokio::time::timeout(STOP_ANSWER_GRACE, self.out.write_line(Vec::new())).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_lines_get_specific_errors() {
        let err = |t: &str| {
            let e = serde_json::from_str::<RxJsonRpcMessage<RoleServer>>(t).unwrap_err();
            malformed_reply(t.as_bytes(), &e)
        };
        let r = err("{not json").unwrap();
        assert_eq!(r["error"]["code"], -32700);
        assert_eq!(r["id"], Value::Null);
        let r = err(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#).unwrap();
        assert_eq!(r["error"]["code"], -32600);
        let r = err(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":"x"}"#).unwrap();
        assert_eq!(r["error"]["code"], -32600);
        assert_eq!(r["id"], 7);
        assert!(err(r#"{"jsonrpc":"2.0","method":"notifications/whatever","params":5}"#).is_none());
    }
}
