//! One execution's story, told in one place: how it ended (its exit code or the signal that killed it), the
//! headline a status starts with, the outcome line a command ends with, the title a person picks it by, where it
//! stands while it runs, how a finished task reads, and the exit code its end stands for. The CLI, the tool
//! text, tasks, resources, progress notifications and hints all tell it with these, so they never disagree.

use crate::engine::{ExecutionState, ExecutionStatus};

use super::{ProgressLine, count, human_bytes, human_ms};

/// Exit code when an execution could not start (as a shell reports a command it cannot run).
pub const EXIT_FAILED_TO_START: u8 = 127;
/// Exit code for an execution stopped at its timeout (as `timeout(1)` exits).
pub const EXIT_TIMED_OUT: u8 = 124;

/// The exit code an execution's end stands for: 0 when it succeeded, its own code when it failed, 128+N when
/// signal N killed it, 124 for a timeout, 127 when it could not start, 1 when it was cancelled or lost (and for
/// a failure with neither code nor signal). `signal` is the killing signal's number (the status names it).
pub fn exit_code(state: ExecutionState, exit_code: Option<i32>, signal: Option<i32>) -> u8 {
    match state {
        ExecutionState::Succeeded => 0,
        ExecutionState::TimedOut => EXIT_TIMED_OUT,
        ExecutionState::FailedToStart => EXIT_FAILED_TO_START,
        ExecutionState::Cancelled | ExecutionState::Lost => 1,
        ExecutionState::Queued | ExecutionState::Running | ExecutionState::Failed => match (exit_code, signal) {
            (Some(c), _) => u8::try_from(c & 0xff).unwrap_or(1),
            (None, Some(sig)) => 128u8.saturating_add(u8::try_from(sig).unwrap_or(0)),
            _ => 1,
        },
    }
}

/// An execution's status, as people and models read it.
pub struct Summary<'a>(pub &'a ExecutionStatus);

/// How the process ended: its exit code, else the signal that killed it.
enum Ending<'a> {
    Code(i32),
    Signal(&'a str),
}

impl Summary<'_> {
    fn ending(&self) -> Option<Ending<'_>> {
        let s = self.0;
        match (s.exit_code, &s.signal) {
            (Some(code), _) => Some(Ending::Code(code)),
            (None, Some(sig)) => Some(Ending::Signal(sig)),
            _ => None,
        }
    }

    /// How it ended, in brackets, when that says more than its state: " (exit code 2)", " (SIGKILL)" — a zero
    /// exit code says nothing a state does not.
    fn bracketed_ending(&self) -> String {
        match self.ending() {
            Some(Ending::Code(code)) if code != 0 => format!(" (exit code {code})"),
            Some(Ending::Signal(sig)) => format!(" ({sig})"),
            _ => String::new(),
        }
    }

    /// `execution ID (workflow "build"): failed, exit code 2, after 1.0 s` (`running for 3.0 s` while it runs):
    /// the first line of a status, for get_status and `workflow-mcp status`.
    pub fn headline(&self) -> String {
        let s = self.0;
        let mut out = format!(
            "execution {} (workflow \"{}\"): {}",
            s.execution_id,
            s.workflow,
            s.state.as_str()
        );
        match self.ending() {
            Some(Ending::Code(code)) => out.push_str(&format!(", exit code {code}")),
            Some(Ending::Signal(sig)) => out.push_str(&format!(", killed by {sig}")),
            None => {}
        }
        if let Some(ms) = s.duration_ms {
            let joint = if s.state == ExecutionState::Running {
                " for"
            } else {
                ", after"
            };
            out.push_str(&format!("{joint} {}", human_ms(ms)));
        }
        out
    }

    /// `build failed (exit code 2) after 1.0 s: ERROR`: the line `run` and `logs --follow` end with.
    pub fn outcome(&self) -> String {
        let s = self.0;
        let mut out = format!("{} {}", s.workflow, s.state.as_str());
        match self.ending() {
            Some(Ending::Code(code)) => out.push_str(&format!(" (exit code {code})")),
            Some(Ending::Signal(sig)) => out.push_str(&format!(" (killed by {sig})")),
            None => {}
        }
        if let Some(ms) = s.duration_ms {
            out.push_str(&format!(" after {}", human_ms(ms)));
        }
        if let Some(e) = &s.error {
            out.push_str(&format!(": {e}"));
        }
        out
    }

    /// ` exit 2 1.0 s` (or ` SIGKILL 1.0 s`): how it ended and how long it took, after its state in a list row.
    pub fn row_ending(&self) -> String {
        let mut out = match self.ending() {
            Some(Ending::Code(code)) => format!(" exit {code}"),
            Some(Ending::Signal(sig)) => format!(" {sig}"),
            None => String::new(),
        };
        if let Some(ms) = self.0.duration_ms {
            out.push_str(&format!(" {}", human_ms(ms)));
        }
        out
    }

    /// `build: failed (exit code 2)` (`build: queued (position 3)` while it waits), for a title; the caller adds
    /// when it began.
    pub fn title(&self) -> String {
        let s = self.0;
        let mut state = s.state.as_str().to_owned();
        match (s.state, s.queue_position) {
            (ExecutionState::Queued, Some(p)) => state.push_str(&format!(" (position {p})")),
            (ExecutionState::Queued, None) => {}
            _ => state.push_str(&self.bracketed_ending()),
        }
        format!("{}: {state}", s.workflow)
    }

    /// Where it stands, in one line: state and run time, phase and tasks from structured events, and line
    /// counts — e.g. `running for 12.0 s; phase 2/3 "Build" running; 1234 stdout and 2 stderr lines so far`.
    /// Progress notifications and a working task's `statusMessage` say this.
    pub fn standing(&self) -> String {
        let s = self.0;
        let mut parts = vec![s.state.as_str().to_owned()];
        if let Some(ms) = s.duration_ms {
            parts[0].push_str(&format!(" for {}", human_ms(ms)));
        }
        if let Some(p) = &s.progress {
            let line = ProgressLine(p).to_string();
            if !line.is_empty() {
                parts.push(line);
            }
        }
        let o = &s.output;
        parts.push(format!(
            "{} stdout and {} stderr lines so far",
            o.stdout.lines, o.stderr.lines
        ));
        parts.join("; ")
    }

    /// How a finished execution ended, in one line: `failed after 1.0 s (exit code 2); 1 stdout and 1 stderr
    /// lines` — a finished task's `statusMessage`. The error says more than the code, except for a failure
    /// (its error only repeats the code).
    pub fn ended(&self) -> String {
        let s = self.0;
        let mut head = s.state.as_str().to_owned();
        if let Some(ms) = s.duration_ms {
            head.push_str(&format!(" after {}", human_ms(ms)));
        }
        match &s.error {
            Some(error) if s.state != ExecutionState::Failed => head.push_str(&format!(" ({error})")),
            _ => head.push_str(&self.bracketed_ending()),
        }
        let o = &s.output;
        format!("{head}; {} stdout and {} stderr lines", o.stdout.lines, o.stderr.lines)
    }

    /// How many lines it printed: "1 line", "1234 lines".
    pub fn lines(&self) -> String {
        count(self.0.output.last_seq.map_or(0, |l| l + 1), "line")
    }

    /// `1 stdout line (10 B), 1 stderr line (16 B)`.
    pub fn output_counts(&self) -> String {
        let o = &self.0.output;
        format!(
            "{} ({}), {} ({})",
            count(o.stdout.lines, "stdout line"),
            human_bytes(o.stdout.bytes),
            count(o.stderr.lines, "stderr line"),
            human_bytes(o.stderr.bytes)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_end_stands_for_one_exit_code_whoever_asks() {
        use ExecutionState::*;
        assert_eq!(exit_code(Succeeded, Some(0), None), 0);
        assert_eq!(exit_code(Failed, Some(3), None), 3);
        assert_eq!(exit_code(Failed, None, Some(9)), 137);
        assert_eq!(exit_code(TimedOut, None, Some(15)), 124);
        assert_eq!(exit_code(FailedToStart, None, None), 127);
        assert_eq!(
            exit_code(Cancelled, None, Some(15)),
            1,
            "cancelled is 1, whatever signal ended it"
        );
        assert_eq!(exit_code(Cancelled, Some(0), None), 1, "never 0: it did not succeed");
        assert_eq!(exit_code(Lost, None, None), 1);
    }
}
