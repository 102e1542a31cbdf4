//! Formatting shared by both front ends: durations, byte sizes, a progress snapshot in one line, and (in
//! [`summary`]) one execution's story.

pub mod summary;

use std::fmt;
use std::fmt::Write as _;

use crate::engine::Progress;
use crate::engine::progress::StepState;

pub use summary::Summary;

pub fn human_bytes(n: u64) -> String {
    match n {
        n if n < 1024 => format!("{n} B"),
        n if n < 1024 * 1024 => format!("{:.1} KiB", n as f64 / 1024.0),
        n if n < 1024 * 1024 * 1024 => format!("{:.1} MiB", n as f64 / 1048576.0),
        n => format!("{:.2} GiB", n as f64 / 1073741824.0),
    }
}

/// "1 line", "2 lines": a count and its noun, `singular` + "s" when not one.
pub fn count(n: u64, singular: &str) -> String {
    if n == 1 {
        format!("1 {singular}")
    } else {
        format!("{n} {singular}s")
    }
}

pub fn human_ms(ms: u64) -> String {
    match ms {
        ms if ms < 1000 => format!("{ms} ms"),
        ms if ms < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        ms => format!("{}m{:02}s", ms / 60_000, ms % 60_000 / 1000),
    }
}

/// Progress in one line: phase, tasks, last message, state files, malformed events.
pub struct ProgressLine<'a>(pub &'a Progress);

impl fmt::Display for ProgressLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&progress_line(self.0))
    }
}

fn progress_line(p: &Progress) -> String {
    let mut parts = Vec::new();
    if let Some(ph) = &p.phase {
        let total = ph.total.map(|t| format!("/{t}")).unwrap_or_default();
        let state = match ph.state {
            StepState::Running => "running",
            StepState::Completed => "completed",
            StepState::Failed => "failed",
        };
        let err = ph.error.as_ref().map(|e| format!(": {e}")).unwrap_or_default();
        parts.push(format!("phase {}{total} \"{}\" {state}{err}", ph.index + 1, ph.name));
    }
    let t = &p.tasks;
    if t.started > 0 {
        let total = t.total.map(|n| format!(" of {n}")).unwrap_or_default();
        let mut s = format!(
            "tasks {} started{total}, {} completed, {} failed",
            t.started, t.completed, t.failed
        );
        if let Some(r) = t.running.first() {
            let more = if t.running_count > 1 {
                format!(" (+{} more)", t.running_count - 1)
            } else {
                String::new()
            };
            let _ = write!(s, "; running: {} \"{}\"{more}", r.task_id, r.description);
        }
        parts.push(s);
    }
    if let Some(m) = &p.message {
        let who = m
            .agent_name
            .as_ref()
            .or(m.task_id.as_ref())
            .map(|w| format!("[{w}] "))
            .unwrap_or_default();
        parts.push(format!("last message: {who}{}", m.text));
    }
    if p.state_files_count > 0 {
        let last = p.state_files.last().map(|f| f.path.as_str()).unwrap_or("");
        parts.push(format!("{} state file(s), last {last}", p.state_files_count));
    }
    if p.malformed_events > 0 {
        parts.push(format!(
            "{} malformed event line(s) kept as plain lines",
            p.malformed_events
        ));
    }
    parts.join("; ")
}
