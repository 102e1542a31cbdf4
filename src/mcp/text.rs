//! The text content of tool results, written for a model to read: compact, plain and complete. Structured
//! content carries the same facts for programs.

use std::fmt::Write as _;

use crate::engine::ExecutionState;
use crate::format::{ProgressLine, Summary, count, human_bytes};
use crate::logs::BudgetHit;
use crate::logs::query::{SCAN_MAX_BYTES, SCAN_MAX_LINES};

use super::types::{ListExecutionsOutput, ListWorkflowsOutput, LogsOutput, MAX_WAIT_MS, StatusOutput};

pub fn status(o: &StatusOutput) -> String {
    let s = &o.status;
    let summary = Summary(s);
    let mut out = summary.headline();
    if let Some(p) = s.queue_position {
        let _ = write!(out, ", position {p} in the queue");
    }
    if let Some(pid) = s.pid
        && s.state == ExecutionState::Running
    {
        let _ = write!(out, ", pid {pid}");
    }
    if let Some(job) = &s.job {
        let _ = write!(out, ", {} job {}", job.system, job.id);
        if let Some(state) = &job.state {
            let _ = write!(out, " {state}");
        }
        if let Some(reason) = &job.reason {
            let _ = write!(out, " ({reason})");
        }
        if let Some(node) = &job.node {
            let _ = write!(out, " on {node}");
        }
    }
    out.push('\n');
    if let Some(e) = &s.error {
        let _ = writeln!(out, "error: {e}");
    }
    if let Some(p) = &s.progress {
        let _ = writeln!(out, "progress: {}", ProgressLine(p));
    }
    let out_summary = &s.output;
    let _ = write!(out, "output: {}", summary.output_counts());
    if let Some(last) = out_summary.last_seq {
        let _ = write!(out, "; last seq {last}");
    }
    if out_summary.dropped_lines > 0 {
        let _ = write!(
            out,
            "; {} lines ({}) evicted from memory",
            out_summary.dropped_lines,
            human_bytes(out_summary.dropped_bytes)
        );
    }
    if out_summary.truncated_lines > 0 {
        let _ = write!(out, "; {} over-long line pieces", out_summary.truncated_lines);
    }
    if !out_summary.held_open.is_empty() {
        let names: Vec<&str> = out_summary.held_open.iter().map(|s| s.as_str()).collect();
        let _ = write!(out, "; {} held open by an escaped process", names.join(" and "));
    }
    out.push('\n');
    if !s.params.is_empty() {
        let _ = writeln!(out, "params: {}", serde_json::Value::Object(s.params.clone()));
    }
    if let Some(e) = &s.evidence {
        let _ = writeln!(out, "evidence ({}):", e.about);
        out.push_str(&e.lines);
    }
    if let Some(tail) = &s.tail {
        if tail.is_empty() {
            out.push_str("tail: (no output yet)\n");
        } else {
            out.push_str("tail:\n");
            out.push_str(tail);
        }
    }
    let _ = writeln!(out, "next: {}", o.hint);
    out
}

/// What to call after a page of logs, in one line.
/// `scan_stopped`: the page ended at the scan budget; `looked_back_to`: a tail's look back stopped there;
/// `unwritten`: the disk error that kept lines out of the files this server reads them from.
pub fn logs_hint(
    next_seq: u64,
    has_more: bool,
    done: bool,
    cut_seq: Option<u64>,
    scan_stopped: bool,
    looked_back_to: Option<u64>,
    unwritten: Option<&str>,
) -> String {
    let mut hint = if has_more && scan_stopped {
        format!(
            "the scan stopped at its budget ({} MiB or {} looked at per call) before the end of the log: call \
             get_logs with since_seq={next_seq} to scan on",
            SCAN_MAX_BYTES >> 20,
            count(SCAN_MAX_LINES as u64, "line")
        )
    } else if has_more {
        format!("more lines: call get_logs with since_seq={next_seq}")
    } else if done && unwritten.is_some() {
        "done: every line on disk has been read and none will be added; get_status has the outcome".to_owned()
    } else if done {
        "done: every line has been read and none will be added; get_status has the outcome".to_owned()
    } else {
        format!(
            "no more lines yet: call get_logs with since_seq={next_seq} and wait_ms (at most {MAX_WAIT_MS}) to wait \
             for new ones"
        )
    };
    if let Some(seq) = looked_back_to {
        let _ = write!(
            hint,
            "; tail looked back only as far as seq {seq} (the scan budget): older lines of the selection may exist \
             before it (scan forward to them with since_seq)"
        );
    }
    if let Some(seq) = cut_seq {
        let _ = write!(
            hint,
            "; line {seq} was cut (+) to fit max_bytes: raise max_bytes to read it whole"
        );
    }
    if let Some(error) = unwritten {
        let _ = write!(
            hint,
            "; its log files could not be written ({error}): the lines after them are omitted here, as this \
             server reads another process's execution from its files"
        );
    }
    hint
}

pub fn logs(l: &LogsOutput) -> String {
    let mut out = format!("execution {} ({}): ", l.execution_id, l.state.as_str());
    match (l.first_seq, l.last_seq) {
        (Some(a), Some(b)) => {
            let _ = write!(out, "seq {a}-{b} of {}", l.total_lines);
        }
        _ => {
            let _ = write!(out, "no lines at seq {} of {}", l.next_seq, l.total_lines);
        }
    }
    match (l.has_more, l.truncated) {
        (true, Some(BudgetHit::MaxLines)) => out.push_str("; more (max_lines reached)"),
        (true, Some(BudgetHit::MaxBytes)) => out.push_str("; more (max_bytes reached)"),
        (true, Some(BudgetHit::ScanBudget)) => out.push_str("; more to scan (scan budget reached)"),
        (true, None) => out.push_str("; more"),
        (false, _) if l.done => out.push_str("; done"),
        (false, _) => out.push_str("; no more yet"),
    }
    out.push('\n');
    out.push_str(&l.lines);
    let _ = writeln!(out, "next: {}", l.hint);
    out
}

pub fn workflows(w: &ListWorkflowsOutput) -> String {
    let hint = w.hint.as_ref().map(|h| format!("hint: {h}\n")).unwrap_or_default();
    if w.workflows.is_empty() {
        return format!("no workflows are configured\n{hint}");
    }
    let mut out = format!("{} workflow(s):\n", w.workflows.len());
    for wf in &w.workflows {
        let _ = write!(out, "- {}", wf.name);
        if !wf.description.is_empty() {
            let _ = write!(out, ": {}", wf.description);
        }
        let props = wf.params_schema.get("properties").and_then(|p| p.as_object());
        let required: Vec<&str> = wf
            .params_schema
            .get("required")
            .and_then(|r| r.as_array())
            .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        if let Some(props) = props.filter(|p| !p.is_empty()) {
            let list: Vec<String> = props
                .iter()
                .map(|(name, s)| {
                    let mut d = format!("{name} ({}", s.get("type").and_then(|t| t.as_str()).unwrap_or("any"));
                    if required.contains(&name.as_str()) {
                        d.push_str(", required");
                    }
                    if let Some(e) = s.get("enum") {
                        let _ = write!(d, ", one of {e}");
                    }
                    if let Some(v) = s.get("default") {
                        let _ = write!(d, ", default {v}");
                    }
                    d.push(')');
                    d
                })
                .collect();
            let _ = write!(out, " | params: {}", list.join(", "));
        }
        out.push('\n');
    }
    if !w.more.is_empty() {
        let _ = writeln!(
            out,
            "{} more, left out to keep this answer small (list_workflows with workflow=NAME shows one): {}",
            w.more.len(),
            w.more.join(", ")
        );
    }
    out + &hint
}

pub fn executions(l: &ListExecutionsOutput) -> String {
    let mut out = format!(
        "{} of {} matching execution(s), newest first ({} retained: {}):\n",
        l.executions.len(),
        l.total,
        l.retained,
        l.retention
    );
    for s in &l.executions {
        let _ = writeln!(
            out,
            "- {} {} {}{} created {}",
            s.execution_id,
            s.workflow,
            s.state.as_str(),
            Summary(s).row_ending(),
            s.created_at
        );
    }
    if let Some(hint) = &l.hint {
        let _ = writeln!(out, "next: {hint}");
    }
    out
}
