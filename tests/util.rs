//! Test helpers: temporary folders, configs that run the fake workflow, a server with an MCP client (rmcp's)
//! connected — in this process over an in-memory pipe, or the real binary over stdio — and a raw JSON-RPC
//! session with the binary for lifecycle tests. A failing test shows the server's log.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, RequestMetaObject};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use workflow_mcp::app::{App, HistoryPlace};
use workflow_mcp::host::Host;

/// The fake workflow binary (tests/fake_workflow.rs).
pub fn fake() -> &'static str {
    env!("CARGO_BIN_EXE_fake-workflow")
}

/// A state home for server processes a test starts by hand (`run`, `list`): one per test process, so no test
/// writes to the real `~/.local/state`.
pub fn test_state_home() -> &'static Path {
    static HOME: LazyLock<PathBuf> = LazyLock::new(|| {
        let p = std::env::temp_dir().join(format!("wfmcp-test-state-{}", std::process::id()));
        std::fs::create_dir_all(&p).expect("create the test state home");
        p
    });
    &HOME
}

pub fn server_bin() -> &'static str {
    env!("CARGO_BIN_EXE_workflow-mcp")
}

/// A workflow entry running the fake workflow with these actions.
pub fn wf(name: &str, actions: &[&str]) -> Value {
    let mut command = vec![fake().to_owned()];
    command.extend(actions.iter().map(|a| a.to_string()));
    json!({"name": name, "command": command})
}

/// A folder removed when dropped.
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new(label: &str) -> TestDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "wfmcp-test-{}-{}-{label}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create test dir");
        TestDir { path }
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// A FIFO the fake workflow's `wait-fifo` blocks on until [`release_fifo`] is called.
    pub fn fifo(&self, name: &str) -> PathBuf {
        let p = self.join(name);
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo failed");
        p
    }
}

/// Lets a fake workflow blocked in `wait-fifo` continue.
pub fn release_fifo(path: &Path) {
    // Opening for writing blocks until the reader has opened it, then closing gives it EOF.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open fifo for writing");
    drop(f);
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Whether a process exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    workflow_mcp::proc::scan::process_alive(pid)
}

/// Waits until process `pid` (not a child of ours) has exited, on a pidfd; false if it has not within 30 s (a
/// hang guard, not a timing assertion).
pub async fn exited(pid: u32) -> bool {
    tokio::task::spawn_blocking(move || {
        // SAFETY: pidfd_open/poll/close on a descriptor owned here.
        unsafe {
            let fd = libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) as libc::c_int;
            if fd < 0 {
                return true; // Already gone.
            }
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            let ready = libc::poll(&mut pfd, 1, 30_000) == 1;
            libc::close(fd);
            ready
        }
    })
    .await
    .unwrap()
}

/// Parses the compact line form docs/tools.md documents into one JSON object per record:
/// `{seq, stream, text, partial, matched, cut, ts, event}` for a log line, `{note}` for a `# ` line.
/// Every line of the input must match the grammar.
pub fn parse_records(compact: &str) -> Vec<Value> {
    // Compiled once: building a regex costs milliseconds in a debug build, and tests page through thousands.
    static GRAMMAR: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r"^(\d+)(!?)(~?)(-?)(\+?)(?:@(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z))? (.*)$").unwrap()
    });
    let grammar = &*GRAMMAR;
    assert!(
        compact.is_empty() || compact.ends_with('\n'),
        "every record ends with a newline: {compact:?}"
    );
    compact
        .split_terminator('\n')
        .map(|record| {
            if let Some(note) = record.strip_prefix("# ") {
                return json!({"note": note});
            }
            let c = grammar
                .captures(record)
                .unwrap_or_else(|| panic!("record {record:?} does not match the documented grammar"));
            let text = c.get(7).unwrap().as_str();
            json!({
                "seq": c[1].parse::<u64>().unwrap(),
                "stream": if c[2].is_empty() { "stdout" } else { "stderr" },
                "partial": !c[3].is_empty(),
                "matched": if c[4].is_empty() { Value::Null } else { json!(false) },
                "cut": !c[5].is_empty(),
                "ts": c.get(6).map(|t| t.as_str()),
                "event": text.starts_with("__WF_EVENT__:"),
                "text": text,
            })
        })
        .collect()
}

/// The log lines of a compact `lines` (or `tail`, or evidence) value, notes left out.
pub fn records(lines: &Value) -> Vec<Value> {
    let compact = lines
        .as_str()
        .unwrap_or_else(|| panic!("lines are one compact string, got {lines}"));
    parse_records(compact)
        .into_iter()
        .filter(|r| r.get("note").is_none())
        .collect()
}

/// A tool call's answer.
#[derive(Debug)]
pub struct Reply {
    pub is_error: bool,
    pub text: String,
    pub structured: Value,
}

impl Reply {
    /// Characters of the result as sent: the structured content and the text, each serialized.
    pub fn sent_len(&self) -> usize {
        serde_json::to_string(&self.structured).unwrap().len() + serde_json::to_string(&self.text).unwrap().len()
    }
}

/// A server with an rmcp client connected to it: by default `mcp::serve` on a task of the test's own runtime,
/// talking over an in-memory pipe ([`Server::start`]); for tests about the process itself (its pid, its
/// environment, its stderr, being killed, re-parented descendants), the real binary over stdio
/// ([`Server::spawn`]).
pub struct Server<H: ClientHandler = ()> {
    pub client: RunningService<RoleClient, H>,
    backend: Backend,
    /// The server side of an in-process session: done once the session has ended.
    session: Option<tokio::task::JoinHandle<()>>,
    /// Holds the config (and a spawned server's stderr); removed when the last session on it ends.
    _dir: Arc<TestDir>,
}

enum Backend {
    Process {
        pid: u32,
        stderr: PathBuf,
    },
    /// Shared by the sessions on one in-process server; the last one dropped stops it.
    InProcess(Arc<InProcess>),
}

/// An in-process server: a host with the sessions the test opens on it. Dropping it stops the host, which ends
/// every session and kills their workflows before the test goes on.
struct InProcess {
    host: Arc<Host>,
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.host.stop();
        // The test's runtime may never run another task (it ends with the test, and a current-thread one is blocked
        // right here), so the host shuts down on a runtime of this drop's own.
        let host = self.host.clone();
        let shutdown = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the shutdown")
                .block_on(host.shutdown());
        });
        if shutdown.join().is_err() && !std::thread::panicking() {
            panic!("the in-process server's shutdown panicked");
        }
    }
}

/// Writes `config` into a fresh folder and returns the folder and the config path.
pub fn write_config(label: &str, config: &Value) -> (TestDir, PathBuf) {
    let dir = TestDir::new(label);
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
    (dir, path)
}

/// Sends the log of in-process servers to the test's captured output (shown when a test fails), at the level
/// `WORKFLOW_MCP_LOG` gives (default `info,rmcp=warn`).
fn capture_server_log() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_env("WORKFLOW_MCP_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rmcp=warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .with_ansi(false)
            .with_target(false)
            .try_init();
    });
}

impl Server {
    /// The real binary on the state directory `state_dir` (which several servers may share).
    pub async fn spawn_in(label: &str, config: Value, state_dir: &Path) -> Server {
        Server::spawn_with_history(label, config, Some(state_dir), &[]).await
    }

    /// The real binary with its history in `state_dir`, or in memory only (`--ephemeral`) when it is None, and
    /// these variables added to its environment.
    pub async fn spawn_with_history(
        label: &str,
        config: Value,
        state_dir: Option<&Path>,
        env: &[(&str, &str)],
    ) -> Server {
        let (dir, config_path) = write_config(label, &config);
        Server::spawn_on(dir, config_path, state_dir, env, ()).await
    }

    /// An in-process server.
    pub async fn start(label: &str, config: Value) -> Server {
        Server::start_with_handler(label, config, &[], ()).await
    }

    /// An in-process server that keeps history in memory only (`--ephemeral`): memory limits drop lines.
    pub async fn start_ephemeral(label: &str, config: Value) -> Server {
        Server::in_process(label, config, (), true).await
    }

    /// The real binary, for tests about the server process.
    pub async fn spawn(label: &str, config: Value) -> Server {
        Server::spawn_with_handler(label, config, &[], ()).await
    }

    /// The real binary with these variables added to its environment (an environment belongs to a process).
    pub async fn start_with_env(label: &str, config: Value, env: &[(&str, &str)]) -> Server {
        Server::spawn_with_handler(label, config, env, ()).await
    }
}

impl<H: ClientHandler> Server<H> {
    /// Starts a server with a client whose `handler` sees what the server sends (notifications): in-process,
    /// or the real binary when `env` adds to its environment.
    pub async fn start_with_handler(label: &str, config: Value, env: &[(&str, &str)], handler: H) -> Server<H> {
        if !env.is_empty() {
            return Server::spawn_with_handler(label, config, env, handler).await;
        }
        Self::in_process(label, config, handler, false).await
    }

    /// An in-process server whose client speaks 2026-07-28: `server/discover` instead of `initialize`, and the
    /// client's capabilities in every request's `_meta`.
    pub async fn start_2026(label: &str, config: Value, handler: H) -> Server<H> {
        let lifecycle = ClientLifecycleMode::Discover {
            preferred_versions: vec![rmcp::model::ProtocolVersion::V_2026_07_28],
        };
        Self::in_process_with(label, config, handler, false, Some(lifecycle)).await
    }

    /// The real binary on the state directory `state_dir` (which several servers may share), with a client
    /// whose `handler` sees what the server sends.
    pub async fn spawn_in_with_handler(label: &str, config: Value, state_dir: &Path, handler: H) -> Server<H> {
        let (dir, config_path) = write_config(label, &config);
        Self::spawn_on(dir, config_path, Some(state_dir), &[], handler).await
    }

    /// An in-process server with its history in a state directory of its own, or in memory only (`ephemeral`).
    async fn in_process(label: &str, config: Value, handler: H, ephemeral: bool) -> Server<H> {
        Self::in_process_with(label, config, handler, ephemeral, None).await
    }

    /// As [`Server::in_process`], the client starting with `lifecycle` (default: `initialize`).
    async fn in_process_with(
        label: &str,
        config: Value,
        handler: H,
        ephemeral: bool,
        lifecycle: Option<ClientLifecycleMode>,
    ) -> Server<H> {
        capture_server_log();
        let (dir, config_path) = write_config(label, &config);
        let config = workflow_mcp::catalog::config::load(&config_path).expect("a valid config");
        let history = if ephemeral {
            HistoryPlace::Ephemeral
        } else {
            HistoryPlace::Dir(dir.join("state"))
        };
        let app = App::build(&config, None, &history).expect("build the app");
        let host = Arc::new(InProcess {
            host: Arc::new(Host::start(app)),
        });
        Self::session_on(host, Arc::new(dir), handler, lifecycle).await
    }

    /// A session on the in-process server `host`, with a client that starts with `lifecycle`.
    async fn session_on(
        host: Arc<InProcess>,
        dir: Arc<TestDir>,
        handler: H,
        lifecycle: Option<ClientLifecycleMode>,
    ) -> Server<H> {
        // 64 KiB each way, as a pipe holds: a client that does not read holds the server up as over stdio.
        let (client_end, server_end) = tokio::io::duplex(64 * 1024);
        let (server_read, server_write) = tokio::io::split(server_end);
        let session = {
            let host = host.host.clone();
            tokio::spawn(async move { workflow_mcp::mcp::serve(&host, server_read, server_write).await })
        };
        let transport = tokio::io::split(client_end);
        let client = match lifecycle {
            None => handler.serve(transport).await,
            Some(lifecycle) => handler.serve_with_lifecycle(transport, lifecycle).await,
        }
        .expect("MCP handshake");
        Server {
            client,
            backend: Backend::InProcess(host),
            session: Some(session),
            _dir: dir,
        }
    }

    /// Another session (a client of its own) on this in-process server.
    pub async fn another_session(&self) -> Server {
        let Backend::InProcess(host) = &self.backend else {
            panic!("another session needs an in-process server; start it with Server::start")
        };
        Server::session_on(host.clone(), self._dir.clone(), (), None).await
    }

    /// Spawns the real binary with these variables added to its environment, and connects a client with
    /// `handler` to it over stdio.
    pub async fn spawn_with_handler(label: &str, config: Value, env: &[(&str, &str)], handler: H) -> Server<H> {
        let (dir, config_path) = write_config(label, &config);
        let state_dir = dir.join("state");
        Self::spawn_on(dir, config_path, Some(&state_dir), env, handler).await
    }

    async fn spawn_on(
        dir: TestDir,
        config_path: PathBuf,
        state_dir: Option<&Path>,
        env: &[(&str, &str)],
        handler: H,
    ) -> Server<H> {
        let stderr = dir.join("server.stderr");
        let mut cmd = tokio::process::Command::new(server_bin());
        cmd.arg("--config").arg(&config_path);
        match state_dir {
            Some(dir) => cmd.arg("--state-dir").arg(dir),
            None => cmd.arg("--ephemeral"),
        };
        cmd.env("WORKFLOW_MCP_LOG", "debug");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (transport, _) = TokioChildProcess::builder(cmd)
            .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()))
            .spawn()
            .expect("spawn workflow-mcp");
        let pid = transport.id().expect("server pid");
        let client = handler.serve(transport).await.expect("MCP handshake");
        Server {
            client,
            backend: Backend::Process { pid, stderr },
            session: None,
            _dir: Arc::new(dir),
        }
    }

    /// Another session on this in-process server with no MCP client on it: the test writes and reads the JSON-RPC
    /// lines itself, over a 64 KiB pipe as over stdio. The task is done once the server has ended the session.
    pub fn raw_session(&self) -> (tokio::io::DuplexStream, tokio::task::JoinHandle<()>) {
        let Backend::InProcess(host) = &self.backend else {
            panic!("a raw session needs an in-process server; start it with Server::start")
        };
        let (client_end, server_end) = tokio::io::duplex(64 * 1024);
        let (server_read, server_write) = tokio::io::split(server_end);
        let host = host.host.clone();
        let session = tokio::spawn(async move { workflow_mcp::mcp::serve(&host, server_read, server_write).await });
        (client_end, session)
    }

    /// Ends this in-process session from the client's side (its input ends, its pipe closes) and returns once
    /// the server has ended the session. The server goes on while other sessions hold it.
    pub async fn end_session(mut self) {
        let session = self.session.take().expect("an in-process session");
        let _ = self.client.close().await;
        tokio::time::timeout(Duration::from_secs(30), session)
            .await
            .expect("the session ends when its client does")
            .expect("the session task");
    }

    /// Stops an in-process server as a signal stops the real one: every session ends and every session-scoped
    /// workflow is killed; returns once they are gone.
    pub async fn shut_down(&self) {
        let Backend::InProcess(host) = &self.backend else {
            panic!("only an in-process server is shut down from the test");
        };
        host.host.stop();
        host.host.shutdown().await;
    }

    /// The server process's id.
    pub fn pid(&self) -> u32 {
        match &self.backend {
            Backend::Process { pid, .. } => *pid,
            Backend::InProcess(_) => {
                panic!("an in-process server has no process of its own; start it with Server::spawn")
            }
        }
    }

    /// What the server process wrote on stderr (its log, at debug level).
    pub fn stderr(&self) -> String {
        match &self.backend {
            Backend::Process { stderr, .. } => std::fs::read_to_string(stderr).unwrap_or_default(),
            Backend::InProcess(_) => {
                panic!(
                    "an in-process server has no stderr (its log is in the test's output); start it with Server::spawn"
                )
            }
        }
    }

    /// The server's log, for a failure message.
    fn log(&self) -> String {
        match &self.backend {
            Backend::Process { .. } => self.stderr(),
            Backend::InProcess(_) => "(in-process: see the test's output)".to_owned(),
        }
    }

    pub async fn call(&self, tool: &str, args: Value) -> Reply {
        self.call_with(tool, args, None).await
    }

    /// Calls a tool with this `_meta` on the request (e.g. a progress token).
    pub async fn call_with(&self, tool: &str, args: Value, meta: Option<RequestMetaObject>) -> Reply {
        let mut params = CallToolRequestParams::new(tool.to_owned()).with_arguments(args.as_object().unwrap().clone());
        params.meta = meta;
        let result = match self.client.call_tool(params).await {
            Ok(r) => r,
            Err(e) => panic!("{tool} failed at the protocol level: {e}\nserver log:\n{}", self.log()),
        };
        let text = result
            .content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect::<Vec<_>>()
            .join("\n");
        Reply {
            is_error: result.is_error == Some(true),
            text,
            structured: result.structured_content.unwrap_or(Value::Null),
        }
    }

    /// Calls a tool that must succeed; returns its structured content.
    pub async fn ok(&self, tool: &str, args: Value) -> Value {
        let r = self.call(tool, args.clone()).await;
        assert!(
            !r.is_error,
            "{tool} {args} failed: {}\nserver log:\n{}",
            r.text,
            self.log()
        );
        r.structured
    }

    /// Calls a tool that must answer with a tool error; returns its text.
    pub async fn err(&self, tool: &str, args: Value) -> String {
        let r = self.call(tool, args.clone()).await;
        assert!(r.is_error, "{tool} {args} should have failed but returned: {}", r.text);
        assert!(r.structured.is_null(), "a tool error carries no structured content");
        r.text
    }

    /// Starts a workflow and returns its execution id.
    pub async fn start_wf(&self, workflow: &str, params: Value) -> String {
        let s = self
            .ok("execute_workflow", json!({"workflow": workflow, "params": params}))
            .await;
        s["execution_id"].as_str().unwrap().to_owned()
    }

    /// Waits (server-side, wait_ms) until the execution is final; returns its status.
    pub async fn wait_final(&self, id: &str) -> Value {
        loop {
            let s = self
                .ok("get_status", json!({"execution_id": id, "wait_ms": 60000}))
                .await;
            let state = s["state"].as_str().unwrap();
            if state != "running" && state != "queued" {
                return s;
            }
        }
    }

    /// Waits (server-side long-poll) for a log line matching `pattern`; returns its text.
    pub async fn wait_line(&self, id: &str, pattern: &str) -> String {
        let mut since = 0u64;
        loop {
            let page = self
                .ok(
                    "get_logs",
                    json!({"execution_id": id, "since_seq": since, "grep": pattern, "wait_ms": 60000}),
                )
                .await;
            if let Some(line) = records(&page["lines"]).first() {
                return line["text"].as_str().unwrap().to_owned();
            }
            assert!(
                !page["done"].as_bool().unwrap(),
                "execution ended without a line matching {pattern}"
            );
            since = page["next_seq"].as_u64().unwrap();
        }
    }

    /// Reads every line of an execution by paging with next_seq.
    pub async fn all_lines(&self, id: &str, max_lines: u64) -> Vec<Value> {
        let mut lines = Vec::new();
        let mut since = 0u64;
        loop {
            let page = self
                .ok(
                    "get_logs",
                    json!({"execution_id": id, "since_seq": since, "max_lines": max_lines, "max_bytes": 1048576}),
                )
                .await;
            lines.extend(records(&page["lines"]));
            since = page["next_seq"].as_u64().unwrap();
            if !page["has_more"].as_bool().unwrap() {
                return lines;
            }
        }
    }
}

/// A server driven with raw JSON-RPC lines, for tests about the process itself (shutdown, signals).
pub struct RawServer {
    pub child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    _dir: TestDir,
    stderr: PathBuf,
    next_id: u64,
}

impl RawServer {
    pub async fn start(label: &str, config: Value) -> RawServer {
        Self::start_with_fd_limit(label, config, None).await
    }

    /// The binary with nothing sent yet (no `initialize`): for sessions that speak 2026-07-28.
    pub async fn start_bare(label: &str, config: Value) -> RawServer {
        Self::spawn_raw(label, config, None, None, None)
    }

    /// Starts the server with RLIMIT_NOFILE set to `fd_limit` (to make it run out of file descriptors).
    pub async fn start_with_fd_limit(label: &str, config: Value, fd_limit: Option<u64>) -> RawServer {
        Self::start_on(label, config, fd_limit, None, None).await
    }

    /// Starts the server on the state directory `state_dir` (which other servers may share).
    pub async fn start_in(label: &str, config: Value, state_dir: &Path) -> RawServer {
        Self::start_on(label, config, None, Some(state_dir), None).await
    }

    /// Starts the server on `state_dir` with RLIMIT_NOFILE `fd_limit` and the file mode mask `umask`, when given.
    pub async fn start_in_with(
        label: &str,
        config: Value,
        state_dir: &Path,
        fd_limit: Option<u64>,
        umask: Option<u32>,
    ) -> RawServer {
        Self::start_on(label, config, fd_limit, Some(state_dir), umask).await
    }

    async fn start_on(
        label: &str,
        config: Value,
        fd_limit: Option<u64>,
        state_dir: Option<&Path>,
        umask: Option<u32>,
    ) -> RawServer {
        let mut s = Self::spawn_raw(label, config, fd_limit, state_dir, umask);
        s.send(json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw-test", "version": "0"}}}))
            .await;
        let init = s.recv().await.expect("initialize response");
        assert_eq!(init["id"], 0, "{init}");
        s.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        s
    }

    fn spawn_raw(
        label: &str,
        config: Value,
        fd_limit: Option<u64>,
        state_dir: Option<&Path>,
        umask: Option<u32>,
    ) -> RawServer {
        let (dir, config_path) = write_config(label, &config);
        let stderr = dir.join("server.stderr");
        let mut cmd = tokio::process::Command::new(server_bin());
        cmd.arg("--config")
            .arg(&config_path)
            .arg("--state-dir")
            .arg(state_dir.map_or_else(|| dir.join("state"), Path::to_path_buf))
            .env("WORKFLOW_MCP_LOG", "debug")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()));
        if let Some(limit) = fd_limit {
            // SAFETY: setrlimit is async-signal-safe; it runs in the child between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        if let Some(mask) = umask {
            // SAFETY: umask is async-signal-safe; it runs in the child between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    libc::umask(mask as libc::mode_t);
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().expect("spawn workflow-mcp");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        RawServer {
            child,
            stdin,
            stdout,
            _dir: dir,
            stderr,
            next_id: 100,
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("server still running")
    }

    /// Sends a tools/call and returns its structured result (panics on a protocol error).
    pub async fn call_ok(&mut self, tool: &str, args: Value) -> Value {
        let id = self.call(tool, args).await;
        let r = self.response(id).await;
        assert!(r["result"]["isError"] != true, "{tool} failed: {r}\n{}", self.stderr());
        r["result"]["structuredContent"].clone()
    }

    pub async fn send(&mut self, msg: Value) {
        self.send_line(&msg.to_string()).await;
    }

    pub async fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(line.as_bytes()).await.unwrap();
        stdin.write_all(b"\n").await.unwrap();
        stdin.flush().await.unwrap();
    }

    /// Sends a tools/call and returns its id.
    pub async fn call(&mut self, tool: &str, args: Value) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": args}}))
            .await;
        id
    }

    /// The next message from the server (None at end of output).
    pub async fn recv(&mut self) -> Option<Value> {
        let line = self.stdout.next_line().await.expect("read server stdout")?;
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("server wrote a non-JSON line {line:?}: {e}")))
    }

    /// Reads messages until the response with `id`.
    pub async fn response(&mut self, id: u64) -> Value {
        loop {
            let msg = self
                .recv()
                .await
                .unwrap_or_else(|| panic!("no response to {id}\n{}", self.stderr()));
            if msg["id"] == id {
                return msg;
            }
        }
    }

    /// Reads the next message as a client busy elsewhere does: `first` bytes of it, then nothing for `pause`,
    /// then the rest of its line.
    pub async fn recv_pausing(&mut self, first: usize, pause: Duration) -> Value {
        use tokio::io::AsyncReadExt;
        let reader = self.stdout.get_mut();
        let mut line = vec![0; first];
        reader
            .read_exact(&mut line)
            .await
            .expect("the first part of the message");
        tokio::time::sleep(pause).await;
        reader
            .read_until(b'\n', &mut line)
            .await
            .expect("the rest of the message");
        serde_json::from_slice(&line).unwrap_or_else(|e| panic!("a message cut short ({} bytes): {e}", line.len()))
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the server to exit (a hang guard, not a timing assertion); returns the elapsed time.
    pub async fn wait_exit(&mut self) -> Duration {
        let start = std::time::Instant::now();
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(status) => assert!(
                status.unwrap().success(),
                "server exited with an error\n{}",
                self.stderr()
            ),
            Err(_) => panic!("server did not exit\n{}", self.stderr()),
        }
        start.elapsed()
    }
}

/// The structured content of a tools/call response read by [`RawServer`].
pub fn structured(response: &Value) -> &Value {
    &response["result"]["structuredContent"]
}
