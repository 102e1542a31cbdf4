//! Test helpers: temporary folders, configs that run the fake workflow, a server with an MCP client (rmcp's)
//! connected — in this process over an in-memory pipe, or the real binary over stdio — and a raw JSON-RPC
//! session with the binary for lifecycle tests. A failing test shows the server's log.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, RequestMetaObject,
    ResourceUpdatedNotificationParam,
};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, NotificationContext, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, RoleClient, ServiceError, ServiceExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
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

/// A path as the fake workflow's argument.
pub fn path_arg(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 test path")
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

/// A tmpfs of `size` (as mount(8) spells it, e.g. `1m`) mounted on `dir` until dropped.
pub struct Tmpfs(std::ffi::CString);

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        let c = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
        let options = std::ffi::CString::new(format!("size={size}")).unwrap();
        // SAFETY: mount(2) with valid C strings; CI runs as root.
        let mounted = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                c.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                options.as_ptr().cast(),
            )
        };
        assert_eq!(
            mounted,
            0,
            "mounting a tmpfs needs root: {}",
            std::io::Error::last_os_error()
        );
        Tmpfs(c)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // SAFETY: umount2 with a valid C string.
        unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
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
/// An execution's state, from a status.
pub fn state(status: &Value) -> &str {
    status["state"].as_str().unwrap()
}

pub fn records(lines: &Value) -> Vec<Value> {
    let compact = lines
        .as_str()
        .unwrap_or_else(|| panic!("lines are one compact string, got {lines}"));
    parse_records(compact)
        .into_iter()
        .filter(|r| r.get("note").is_none())
        .collect()
}

/// The texts of parsed log lines.
pub fn texts(lines: &[Value]) -> Vec<String> {
    lines.iter().map(|l| l["text"].as_str().unwrap().to_owned()).collect()
}

/// The texts of the log lines of a compact `lines` value.
pub fn line_texts(lines: &Value) -> Vec<String> {
    texts(&records(lines))
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

/// Starts the binary with `config` on `state_dir`, which must refuse to start (exit code 1); returns its stderr.
pub async fn refused_start(config: &Path, state_dir: &Path) -> String {
    let out = tokio::process::Command::new(server_bin())
        .arg("--config")
        .arg(config)
        .arg("--state-dir")
        .arg(state_dir)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    stderr
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

/// Where a test server keeps its history.
enum History {
    /// A state directory in the server's own test folder.
    Own,
    /// A state directory the test names (which several servers may share).
    Dir(PathBuf),
    /// In memory only (`--ephemeral`): memory limits drop lines.
    Ephemeral,
}

/// How a test server is made: [`ServerBuilder::start`] runs it in this process, [`ServerBuilder::spawn`] runs the
/// real binary; the rest says where its history goes, what its environment adds, which client handler sees what
/// it sends, and which protocol the client speaks.
pub struct ServerBuilder<H: ClientHandler = ()> {
    label: String,
    config: Value,
    history: History,
    env: Vec<(String, String)>,
    handler: H,
    lifecycle: Option<ClientLifecycleMode>,
    program: Option<PathBuf>,
}

impl Server {
    pub fn builder(label: &str, config: Value) -> ServerBuilder {
        ServerBuilder {
            label: label.to_owned(),
            config,
            history: History::Own,
            env: Vec::new(),
            handler: (),
            lifecycle: None,
            program: None,
        }
    }

    /// An in-process server.
    pub async fn start(label: &str, config: Value) -> Server {
        Server::builder(label, config).start().await
    }

    /// The real binary, for tests about the server process.
    pub async fn spawn(label: &str, config: Value) -> Server {
        Server::builder(label, config).spawn().await
    }
}

impl<H: ClientHandler> ServerBuilder<H> {
    /// History in `state_dir` (which several servers may share).
    pub fn state_dir(mut self, state_dir: &Path) -> Self {
        self.history = History::Dir(state_dir.to_path_buf());
        self
    }

    /// History in memory only (`--ephemeral`): memory limits drop lines.
    pub fn ephemeral(mut self) -> Self {
        self.history = History::Ephemeral;
        self
    }

    /// These variables added to the server's environment (an environment belongs to a process: spawn only).
    pub fn env(mut self, env: &[(&str, &str)]) -> Self {
        self.env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }

    /// A client whose `handler` sees what the server sends (notifications).
    pub fn handler<H2: ClientHandler>(self, handler: H2) -> ServerBuilder<H2> {
        ServerBuilder {
            label: self.label,
            config: self.config,
            history: self.history,
            env: self.env,
            handler,
            lifecycle: self.lifecycle,
            program: self.program,
        }
    }

    /// The server binary run from `program` (a copy of [`server_bin`], say) instead (spawn only).
    pub fn program(mut self, program: &Path) -> Self {
        self.program = Some(program.to_path_buf());
        self
    }

    /// A client that speaks 2026-07-28: `server/discover` instead of `initialize`, and the client's capabilities
    /// in every request's `_meta`.
    pub fn protocol_2026(mut self) -> Self {
        self.lifecycle = Some(ClientLifecycleMode::Discover {
            preferred_versions: vec![rmcp::model::ProtocolVersion::V_2026_07_28],
        });
        self
    }

    /// `mcp::serve` on a task of the test's own runtime, its client talking over an in-memory pipe.
    pub async fn start(self) -> Server<H> {
        assert!(
            self.env.is_empty() && self.program.is_none(),
            "an environment and a program belong to a process: spawn the server for them"
        );
        capture_server_log();
        let (dir, config_path) = write_config(&self.label, &self.config);
        let config = workflow_mcp::catalog::config::load(&config_path).expect("a valid config");
        let history = match self.history {
            History::Own => HistoryPlace::Dir(dir.join("state")),
            History::Dir(state_dir) => HistoryPlace::Dir(state_dir),
            History::Ephemeral => HistoryPlace::Ephemeral,
        };
        let app = App::build(&config, None, &history).expect("build the app");
        let host = Arc::new(InProcess {
            host: Arc::new(Host::start(app)),
        });
        Server::<H>::session_on(host, Arc::new(dir), self.handler, self.lifecycle).await
    }

    /// The real binary, its client talking over its stdio.
    pub async fn spawn(self) -> Server<H> {
        assert!(
            self.lifecycle.is_none(),
            "the 2026-07-28 client is for in-process servers"
        );
        let (dir, config_path) = write_config(&self.label, &self.config);
        let stderr = dir.join("server.stderr");
        let mut cmd = tokio::process::Command::new(self.program.as_deref().unwrap_or(Path::new(server_bin())));
        cmd.arg("--config").arg(&config_path);
        match self.history {
            History::Own => cmd.arg("--state-dir").arg(dir.join("state")),
            History::Dir(state_dir) => cmd.arg("--state-dir").arg(state_dir),
            History::Ephemeral => cmd.arg("--ephemeral"),
        };
        cmd.env("WORKFLOW_MCP_LOG", "debug");
        cmd.envs(self.env);
        let (transport, _) = TokioChildProcess::builder(cmd)
            .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()))
            .spawn()
            .expect("spawn workflow-mcp");
        let pid = transport.id().expect("server pid");
        let client = self.handler.serve(transport).await.expect("MCP handshake");
        Server {
            client,
            backend: Backend::Process { pid, stderr },
            session: None,
            _dir: Arc::new(dir),
        }
    }
}

impl<H: ClientHandler> Server<H> {
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
    /// The pids an execution printed as `grandchild PID` lines (the fake workflow's `grandchild` actions), once
    /// `n` of them are there.
    pub async fn grandchildren(&self, id: &str, n: usize) -> Vec<u32> {
        let mut all = Vec::new();
        let mut since = 0;
        while all.len() < n {
            let page = self
                .ok(
                    "get_logs",
                    json!({"execution_id": id, "grep": "^grandchild ", "wait_ms": 60000, "since_seq": since}),
                )
                .await;
            since = page["next_seq"].as_u64().unwrap();
            all.extend(
                records(&page["lines"])
                    .iter()
                    .map(|l| l["text"].as_str().unwrap()[11..].parse::<u32>().unwrap()),
            );
        }
        all
    }

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

/// What a client heard from the server outside of answers.
#[derive(Debug, PartialEq)]
pub enum Heard {
    Updated(String),
    ListChanged,
}

/// A client handler that declares the tasks extension (or not) and records resource notifications.
#[derive(Clone)]
pub struct Client {
    tasks: bool,
    heard: mpsc::UnboundedSender<Heard>,
}

pub fn client(tasks: bool) -> (Client, mpsc::UnboundedReceiver<Heard>) {
    let (heard, rx) = mpsc::unbounded_channel();
    (Client { tasks, heard }, rx)
}

impl ClientHandler for Client {
    fn get_info(&self) -> ClientConfig {
        let capabilities = if self.tasks {
            ClientCapabilities::builder().enable_tasks().build()
        } else {
            ClientCapabilities::default()
        };
        ClientConfig::new(capabilities, Implementation::new("tasks-test", "0"))
    }

    async fn on_resource_updated(&self, p: ResourceUpdatedNotificationParam, _: NotificationContext<RoleClient>) {
        let _ = self.heard.send(Heard::Updated(p.uri));
    }

    async fn on_resource_list_changed(&self, _: NotificationContext<RoleClient>) {
        let _ = self.heard.send(Heard::ListChanged);
    }
}

/// The JSON-RPC error a request was answered with.
pub fn protocol_error<T: std::fmt::Debug>(r: Result<T, ServiceError>) -> rmcp::ErrorData {
    match r {
        Err(ServiceError::McpError(e)) => e,
        other => panic!("expected a JSON-RPC error, got {other:?}"),
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

/// How a [`RawServer`] is started: on its own state directory or one the test names, with limits of its own.
pub struct RawServerBuilder {
    label: String,
    config: Value,
    state_dir: Option<PathBuf>,
    fd_limit: Option<u64>,
    umask: Option<u32>,
}

impl RawServerBuilder {
    /// On the state directory `state_dir` (which other servers may share).
    pub fn state_dir(mut self, state_dir: &Path) -> Self {
        self.state_dir = Some(state_dir.to_path_buf());
        self
    }

    /// With RLIMIT_NOFILE set to `fd_limit` (to make it run out of file descriptors).
    pub fn fd_limit(mut self, fd_limit: u64) -> Self {
        self.fd_limit = Some(fd_limit);
        self
    }

    /// With the file mode mask `umask`.
    pub fn umask(mut self, umask: u32) -> Self {
        self.umask = Some(umask);
        self
    }

    /// Starts the binary and goes through `initialize`.
    pub async fn start(self) -> RawServer {
        let mut s = self.bare();
        s.send(json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw-test", "version": "0"}}}))
            .await;
        let init = s.recv().await.expect("initialize response");
        assert_eq!(init["id"], 0, "{init}");
        s.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        s
    }

    /// Starts the binary with nothing sent yet (no `initialize`): for sessions that speak 2026-07-28.
    pub fn bare(self) -> RawServer {
        let (dir, config_path) = write_config(&self.label, &self.config);
        let stderr = dir.join("server.stderr");
        let mut cmd = tokio::process::Command::new(server_bin());
        cmd.arg("--config")
            .arg(&config_path)
            .arg("--state-dir")
            .arg(self.state_dir.unwrap_or_else(|| dir.join("state")))
            .env("WORKFLOW_MCP_LOG", "debug")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()));
        if let Some(limit) = self.fd_limit {
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
        if let Some(mask) = self.umask {
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
}

impl RawServer {
    pub fn builder(label: &str, config: Value) -> RawServerBuilder {
        RawServerBuilder {
            label: label.to_owned(),
            config,
            state_dir: None,
            fd_limit: None,
            umask: None,
        }
    }

    pub async fn start(label: &str, config: Value) -> RawServer {
        RawServer::builder(label, config).start().await
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

    /// Waits (server-side) until the execution is final; returns its status.
    pub async fn wait_final(&mut self, id: &str) -> Value {
        loop {
            let st = self
                .call_ok("get_status", json!({"execution_id": id, "wait_ms": 50000}))
                .await;
            if !matches!(st["state"].as_str(), Some("running" | "queued")) {
                return st;
            }
        }
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

    /// The responses to `ids`, in that order, whichever order they come in (messages in between are skipped).
    pub async fn responses(&mut self, ids: &[u64]) -> Vec<Value> {
        let mut got: std::collections::HashMap<u64, Value> = std::collections::HashMap::new();
        while ids.iter().any(|id| !got.contains_key(id)) {
            let msg = self
                .recv()
                .await
                .unwrap_or_else(|| panic!("no response to all of {ids:?}\n{}", self.stderr()));
            if let Some(id) = msg["id"].as_u64().filter(|id| ids.contains(id)) {
                got.insert(id, msg);
            }
        }
        ids.iter().map(|id| got.remove(id).unwrap()).collect()
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
