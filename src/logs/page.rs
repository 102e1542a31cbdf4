//! What a query serves: lines as [`LogLine`]s or in the compact form, into a [`LogPage`] that says where to go
//! on and which budget ended it, filled line by line by a [`PageBuilder`] that never passes the page's budgets.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::compact::{self, Served};
use super::render::render;
use super::segment::{LineRef, Stream, flags};
use super::snapshot::Snapshot;

/// One line as served to an in-process reader (the `run` CLI, tests). MCP readers get the compact form.
#[derive(Clone, Debug, PartialEq)]
pub struct LogLine {
    /// Per-execution sequence number, from 0; never changes.
    pub seq: u64,
    pub stream: Stream,
    /// The line as UTF-8 (invalid bytes as U+FFFD), ANSI escapes removed and carriage returns resolved unless
    /// `raw`.
    pub text: String,
    /// This record is a piece of a line longer than the max line length; the line continues in the next record.
    pub partial: bool,
    /// A well-formed `__WF_EVENT__:` structured-event line.
    pub event: bool,
    /// With `grep`: true for a matching line, false for a context line.
    pub matched: Option<bool>,
    /// The text was cut to fit `max_bytes`.
    pub cut: bool,
}

/// Where a page's lines go.
pub trait LineSink {
    /// Whether served lines carry their read time.
    fn timestamps(&self) -> bool {
        false
    }
    fn push(&mut self, line: &Served<'_>);
    /// The seq range `[from, to)` is no longer available; called where it falls between served lines.
    fn omitted(&mut self, _from: u64, _to: u64) {}
}

impl LineSink for Vec<LogLine> {
    fn push(&mut self, l: &Served<'_>) {
        self.push(LogLine {
            seq: l.seq,
            stream: l.stream,
            text: l.text.to_owned(),
            partial: l.partial,
            event: l.event,
            matched: l.matched,
            cut: l.cut,
        });
    }
}

/// Lines in the compact form (see [`super::compact`]), ready to send.
#[derive(Clone, Debug, Default)]
pub struct CompactLines {
    pub text: String,
    pub timestamps: bool,
}

impl CompactLines {
    pub fn new(timestamps: bool) -> Self {
        CompactLines {
            text: String::new(),
            timestamps,
        }
    }
}

impl LineSink for CompactLines {
    fn timestamps(&self) -> bool {
        self.timestamps
    }

    fn push(&mut self, l: &Served<'_>) {
        compact::write_record(&mut self.text, l);
    }

    fn omitted(&mut self, from: u64, to: u64) {
        compact::write_omitted(&mut self.text, from, to);
    }
}

/// Lines in the requested range that are no longer in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Omitted {
    /// First seq missing.
    pub from_seq: u64,
    /// One past the last seq missing.
    pub to_seq: u64,
    pub lines: u64,
}

/// Which budget ended a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BudgetHit {
    MaxLines,
    MaxBytes,
    /// The call scanned as much of the log as one call may; `next_seq` is where to go on scanning.
    ScanBudget,
}

/// The answer to a [`LogQuery`], with its lines in the sink `S`.
#[derive(Clone, Debug)]
pub struct LogPage<S = Vec<LogLine>> {
    pub lines: S,
    /// Lines served.
    pub count: usize,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Pass back as `since_seq` to continue exactly where this page stopped.
    pub next_seq: u64,
    /// More lines exist at or after `next_seq` right now.
    pub has_more: bool,
    pub omitted: Option<Omitted>,
    /// Lines produced so far (the seq the next line will get).
    pub total_lines: u64,
    pub oldest_seq: u64,
    pub budget_hit: Option<BudgetHit>,
    /// The served lines' size as sent in the compact form (what `max_bytes` counts).
    pub bytes: usize,
    /// Seq of the first line cut to fit `max_bytes`.
    pub cut_seq: Option<u64>,
    /// A `tail` whose look back stopped at the scan budget: the oldest seq it looked at (older lines of the
    /// selection may exist before it).
    pub looked_back_to: Option<u64>,
}

/// Fills a page line by line until a budget says stop.
pub(super) struct PageBuilder<'q, S> {
    pub(super) page: LogPage<S>,
    pub(super) limits: PageLimits,
    pub(super) snap: &'q Snapshot,
    /// The evicted range still ahead of the served lines, if the scan started before its end.
    pub(super) gap_ahead: Option<(u64, u64)>,
    /// Lines read in one chunk share a timestamp: it is formatted once.
    pub(super) last_ts: Option<(u32, String)>,
}

/// What of a query bounds the page it fills.
pub(super) struct PageLimits {
    pub(super) max_lines: usize,
    pub(super) max_bytes: usize,
    pub(super) raw: bool,
}

impl<S: LineSink> PageBuilder<'_, S> {
    /// Adds a line; `false` when a budget ends the page (`next_seq` then points at what was not added).
    pub(super) fn push(&mut self, l: LineRef<'_>, matched: Option<bool>) -> bool {
        let (page, q) = (&mut self.page, &self.limits);
        if page.count >= q.max_lines.max(1) {
            page.budget_hit = Some(BudgetHit::MaxLines);
            page.next_seq = l.seq;
            return false;
        }
        let ts = if page.lines.timestamps() {
            let ts_ms = l.ts_ms();
            match &self.last_ts {
                Some((ms, _)) if *ms == ts_ms => {}
                _ => self.last_ts = Some((ts_ms, crate::clock::rfc3339(self.snap.timestamp(ts_ms)))),
            }
            self.last_ts.as_ref().map(|(_, t)| t.as_str())
        } else {
            None
        };
        let text = render(l.bytes, l.has(flags::NEEDS_RENDER), q.raw);
        let mut served = Served {
            seq: l.seq,
            stream: l.stream(),
            partial: l.has(flags::PARTIAL),
            event: l.has(flags::EVENT),
            matched,
            cut: false,
            text: &text,
            ts,
        };
        let mut cost = compact::cost(&served);
        if page.bytes + cost > q.max_bytes {
            if page.count > 0 {
                page.budget_hit = Some(BudgetHit::MaxBytes);
                page.next_seq = l.seq;
                return false;
            }
            // A single line larger than the whole budget: serve its beginning so paging always advances.
            served.cut = true;
            let room = q.max_bytes.saturating_sub(compact::overhead(&served));
            served.text = &text[..compact::fit(&text, room)];
            cost = compact::cost(&served);
        }
        if let Some((from, to)) = self.gap_ahead
            && l.seq >= to
        {
            page.lines.omitted(from, to);
            self.gap_ahead = None;
        }
        page.bytes += cost;
        page.count += 1;
        page.first_seq.get_or_insert(l.seq);
        page.last_seq = Some(l.seq);
        page.lines.push(&served);
        if served.cut {
            page.budget_hit = Some(BudgetHit::MaxBytes);
            page.cut_seq = Some(l.seq);
            page.next_seq = l.seq + 1;
            return false;
        }
        true
    }
}
