//! `workflow-mcp run NAME --param k=v`: runs a workflow on the same engine the server uses and streams its
//! output live. All output goes to stdout in the order it was read; stderr lines are marked (`! ` or, on a
//! terminal, colour). Structured events become `» ...` lines, and on a terminal a live progress line on stderr.
//! Exits with the workflow's exit code.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::terminal::{escape_controls, for_output};
use crate::app::App;
use crate::catalog::param::resolve;
use crate::engine::progress::{EVENT_PREFIX, WorkflowEvent, parse_event};
use crate::engine::{ExecutionState, ExecutionView, StopReason};
use crate::format::summary::exit_code;
use crate::format::{ProgressLine, Summary};
use crate::logs::{LogLine, LogQuery, Stream};

/// Exit code when Ctrl-C cancelled the workflow (as a shell reports a command it interrupted).
const EXIT_INTERRUPTED: u8 = 130;
/// Exit code for a mistake on the command line (unknown workflow, bad param).
const EXIT_USAGE: u8 = 2;

fn describe_event(e: &WorkflowEvent) -> Option<(String, bool)> {
    // (text, milestone): milestones are printed even when a progress line shows the rest.
    let text = match e {
        WorkflowEvent::PhaseStarted {
            phase,
            name,
            total_phases,
        } => {
            let total = total_phases.map(|t| format!("/{t}")).unwrap_or_default();
            return Some((format!("phase {}{total} {name} started", phase + 1), true));
        }
        WorkflowEvent::PhaseCompleted { phase, name } => {
            return Some((format!("phase {} {name} completed", phase + 1), true));
        }
        WorkflowEvent::PhaseFailed { phase, name, error } => {
            return Some((format!("phase {} {name} failed: {error}", phase + 1), true));
        }
        WorkflowEvent::TaskStarted {
            task_id, description, ..
        } => format!("task {task_id} started: {description}"),
        WorkflowEvent::TaskProgress { task_id, message } => format!("{task_id}: {message}"),
        WorkflowEvent::TaskCompleted { task_id, result } => match result {
            Some(r) => format!("task {task_id} completed: {r}"),
            None => format!("task {task_id} completed"),
        },
        WorkflowEvent::TaskFailed { task_id, error } => return Some((format!("task {task_id} failed: {error}"), true)),
        WorkflowEvent::AgentStarted {
            agent_name,
            description,
            ..
        } => format!("[{agent_name}] started: {description}"),
        WorkflowEvent::AgentMessage {
            agent_name, message, ..
        } => format!("[{agent_name}] {message}"),
        WorkflowEvent::AgentCompleted { agent_name, result, .. } => match result {
            Some(r) => format!("[{agent_name}] completed: {r}"),
            None => format!("[{agent_name}] completed"),
        },
        WorkflowEvent::AgentFailed { agent_name, error, .. } => {
            return Some((format!("[{agent_name}] failed: {error}"), true));
        }
        WorkflowEvent::StateFileCreated {
            file_path, description, ..
        } => {
            format!("state file {file_path}: {description}")
        }
        WorkflowEvent::RawOutput { .. } => return None,
    };
    Some((text, false))
}

/// Prints lines and keeps the progress line (terminal only) below them.
struct Display {
    /// stdout is a terminal: stderr lines in colour, control characters escaped.
    color: bool,
    progress_line: bool,
    progress_shown: bool,
    /// The progress text on screen, so an unchanged line is not redrawn.
    last_progress: String,
}

/// Columns of the terminal on stderr (80 when unknown).
fn terminal_width() -> usize {
    // SAFETY: a winsize is plain integers, valid zeroed.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills a winsize struct; a failure leaves it zeroed.
    let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 10 {
        usize::from(ws.ws_col)
    } else {
        80
    }
}

impl Display {
    fn clear_progress(&mut self) {
        if self.progress_shown {
            eprint!("\r\x1b[2K");
            self.progress_shown = false;
        }
    }

    fn show_progress(&mut self, text: &str) {
        if self.progress_shown && text == self.last_progress {
            return;
        }
        if self.progress_line && !text.is_empty() {
            self.last_progress = text.to_owned();
            let shown: String = escape_controls(text).chars().take(terminal_width() - 3).collect();
            eprint!("\r\x1b[2K\x1b[36m▸ {shown}\x1b[0m");
            let _ = std::io::stderr().flush();
            self.progress_shown = true;
        }
    }

    fn line(&self, out: &mut impl Write, l: &LogLine) {
        let text = &l.text;
        if l.event {
            let event = text.as_bytes().strip_prefix(EVENT_PREFIX).and_then(parse_event);
            if let Some((summary, milestone)) = event.as_ref().and_then(describe_event)
                && (!self.progress_line || milestone)
            {
                let summary = for_output(&summary, self.color);
                let _ = if self.color {
                    writeln!(out, "\x1b[2m» {summary}\x1b[0m")
                } else {
                    writeln!(out, "» {summary}")
                };
            }
            return;
        }
        let text = for_output(text, self.color);
        let _ = match (l.stream, self.color) {
            (Stream::Stdout, _) => writeln!(out, "{text}"),
            (Stream::Stderr, true) => writeln!(out, "\x1b[33m{text}\x1b[0m"),
            (Stream::Stderr, false) => writeln!(out, "! {text}"),
        };
    }
}

/// Runs the workflow and returns the process exit code.
/// Follows an execution that outlives this command to its end, as `logs --follow` does; returns its exit code.
async fn follow_detached(app: &App, workflow: &str, id: uuid::Uuid) -> u8 {
    eprintln!(
        "workflow-mcp: {workflow} outlives this command (outlive_session): Ctrl-C leaves it running; \
         `workflow-mcp cancel {id}` stops it"
    );
    let code = match app.engine.history().cloned() {
        Some(store) => tokio::task::spawn_blocking(move || super::history::logs(&store, &id.to_string(), true))
            .await
            .unwrap_or(1),
        None => 1,
    };
    app.engine.shutdown(crate::host::SHUTDOWN_GRACE).await;
    code
}

pub async fn run(app: Arc<App>, workflow: &str, params: &[(String, String)], params_json: Option<&str>) -> u8 {
    let catalog = app.catalog.clone();
    let _ = tokio::task::spawn_blocking(move || catalog.settled()).await;
    let Some(def) = app.catalog.get(workflow) else {
        eprintln!("workflow-mcp: {}", app.catalog.unknown_message(workflow));
        return EXIT_USAGE;
    };
    let mut given = Map::new();
    if let Some(json) = params_json {
        match serde_json::from_str::<Value>(json) {
            Ok(Value::Object(m)) => given = m,
            _ => {
                eprintln!("workflow-mcp: --params must be a JSON object such as '{{\"jobs\": 4}}'");
                return EXIT_USAGE;
            }
        }
    }
    for (k, v) in params {
        given.insert(k.clone(), Value::String(v.clone()));
    }
    let invocation = match resolve(&def.name, &def.params, &given) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("workflow-mcp: {e}");
            return EXIT_USAGE;
        }
    };
    let exec = match app.engine.execute(def.clone(), invocation, None).await {
        Ok(ExecutionView::Live(e)) => e,
        // It outlives its session (its own supervisor runs it): followed like `logs --follow`, and left running
        // when this command is interrupted.
        Ok(ExecutionView::Stored(stored)) => return follow_detached(&app, &def.name, stored.record.id).await,
        Err(e) => {
            eprintln!("workflow-mcp: {e}");
            return 1;
        }
    };
    let mut display = Display {
        color: std::io::stdout().is_terminal(),
        progress_line: std::io::stderr().is_terminal(),
        progress_shown: false,
        last_progress: String::new(),
    };
    let mut follow = app.engine.follow(&ExecutionView::Live(exec.clone()));
    let mut since = 0;
    let mut interrupted = false;
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let state = exec.state();
        let page = LogQuery {
            since_seq: Some(since),
            max_lines: 10_000,
            max_bytes: 4 << 20,
            ..LogQuery::default()
        }
        .run(&exec.logs_buffer.snapshot());
        if !page.lines.is_empty() || page.omitted.is_some() {
            display.clear_progress();
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            if let Some(o) = &page.omitted {
                let _ = writeln!(out, "[... {} lines evicted from memory ...]", o.lines);
            }
            for l in &page.lines {
                display.line(&mut out, l);
            }
            let _ = out.flush();
        }
        if let Some(p) = exec.progress.snapshot() {
            display.show_progress(&ProgressLine(&p).to_string());
        }
        since = page.next_seq;
        if page.has_more {
            continue;
        }
        if state.is_terminal() {
            break;
        }
        tokio::select! {
            _ = follow.changed() => {}
            _ = &mut ctrl_c, if !interrupted => {
                interrupted = true;
                display.clear_progress();
                let grace = app.engine.config().grace;
                eprintln!("workflow-mcp: stopping {} (SIGTERM, then SIGKILL after {} ms)", def.name, grace.as_millis());
                let (engine, exec) = (app.engine.clone(), exec.clone());
                let view = ExecutionView::Live(exec);
                tokio::spawn(async move { engine.stop(&view, StopReason::Cancel, grace).await });
            }
        }
    }
    display.clear_progress();
    let status = app.engine.status(&ExecutionView::Live(exec.clone()));
    eprintln!("workflow-mcp: {}", Summary(&status).outcome());
    let code = match status.state {
        ExecutionState::Cancelled if interrupted => EXIT_INTERRUPTED,
        state => exit_code(state, status.exit_code, exec.life().signal),
    };
    app.engine.shutdown(crate::host::SHUTDOWN_GRACE).await;
    code
}
