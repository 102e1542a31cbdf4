//! Queries over a log [`Snapshot`]: cursor paging, tail, stream and event selection, grep with context lines,
//! and line and byte budgets that are never exceeded. A query reads only the segments it needs, so a page costs
//! O(page) however long the log is; a scan (grep, a stream or event selection) stops at its scan budget and says
//! where, so no call scans more than [`SCAN_MAX_BYTES`] or [`SCAN_MAX_LINES`] (a tail twice that: back, then
//! forward). Segments read back from disk are held one at a time.

use std::collections::VecDeque;
use std::sync::Arc;

use regex::bytes::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::compact::{self, Served};
use super::page::{BudgetHit, CompactLines, LineSink, LogPage, Omitted, PageBuilder, PageLimits};
use super::render::render;
use super::segment::{LineRef, Segment, Stream, flags};
use super::snapshot::Snapshot;

/// Which streams a query returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StreamSelector {
    #[default]
    Both,
    Stdout,
    Stderr,
}

/// Whether a query returns structured-event lines (`__WF_EVENT__:`), plain lines, or both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventSelector {
    /// Event lines and plain lines.
    #[default]
    All,
    /// Only well-formed event lines.
    Only,
    /// Only plain lines (event lines left out).
    Exclude,
}

/// Log text one call scans at most (the lines' bytes, selected or not).
pub const SCAN_MAX_BYTES: usize = 64 << 20;
/// Lines one call scans at most: short lines cost more per byte than long ones.
pub const SCAN_MAX_LINES: usize = 4_000_000;

/// What to read from a log.
#[derive(Clone, Debug)]
pub struct LogQuery {
    pub since_seq: Option<u64>,
    pub tail: Option<u64>,
    pub stream: StreamSelector,
    pub events: EventSelector,
    pub grep: Option<Regex>,
    pub context: usize,
    pub max_lines: usize,
    pub max_bytes: usize,
    pub raw: bool,
    /// The scan budget: a call stops after looking at this many lines or bytes of text.
    pub scan_lines: usize,
    pub scan_bytes: usize,
}

impl Default for LogQuery {
    fn default() -> Self {
        LogQuery {
            since_seq: None,
            tail: None,
            stream: StreamSelector::Both,
            events: EventSelector::All,
            grep: None,
            context: 0,
            max_lines: 200,
            max_bytes: 32 * 1024,
            raw: false,
            scan_lines: SCAN_MAX_LINES,
            scan_bytes: SCAN_MAX_BYTES,
        }
    }
}

/// Lines and bytes a scan has looked at, against its budget.
struct Scanned<'q> {
    lines: usize,
    bytes: usize,
    query: &'q LogQuery,
}

impl Scanned<'_> {
    fn spent(&self) -> bool {
        self.lines >= self.query.scan_lines.max(1) || self.bytes >= self.query.scan_bytes.max(1)
    }

    fn count(&mut self, line: &LineRef<'_>) {
        self.lines += 1;
        self.bytes += line.bytes.len();
    }

    /// Counts `line` as looked at; `false` when the budget was already spent (the line is not counted).
    fn take(&mut self, line: &LineRef<'_>) -> bool {
        if self.spent() {
            return false;
        }
        self.count(line);
        true
    }
}

/// A line kept for later (a context line before a match), with the segment that holds it.
struct HeldLine(Arc<Segment>, usize);

impl HeldLine {
    fn line(&self) -> LineRef<'_> {
        self.0.line(self.1)
    }
}

impl LogQuery {
    fn selects(&self, line: &LineRef<'_>) -> bool {
        let stream_ok = match self.stream {
            StreamSelector::Both => true,
            StreamSelector::Stdout => line.stream() == Stream::Stdout,
            StreamSelector::Stderr => line.stream() == Stream::Stderr,
        };
        let event = line.has(flags::EVENT);
        stream_ok
            && match self.events {
                EventSelector::All => true,
                EventSelector::Only => event,
                EventSelector::Exclude => !event,
            }
    }

    /// Whether the query scans (looks at lines it may not serve): a grep, a stream or an event selection.
    pub fn scans(&self) -> bool {
        self.filtered()
    }

    fn filtered(&self) -> bool {
        self.stream != StreamSelector::Both || self.events != EventSelector::All || self.grep.is_some()
    }

    /// Whether a selected line matches `grep` (on the text as rendered, so escapes never hide a match).
    fn matches(&self, re: &Regex, line: &LineRef<'_>) -> bool {
        if !self.raw && line.has(flags::NEEDS_RENDER) {
            re.is_match(render(line.bytes, true, false).as_bytes())
        } else {
            re.is_match(line.bytes)
        }
    }

    /// Runs the query over a snapshot, serving lines as [`LogLine`]s.
    pub fn run(&self, snap: &Snapshot) -> LogPage {
        self.run_into(snap, Vec::new())
    }

    /// Runs the query over a snapshot, serving lines into `sink`.
    pub fn run_into<S: LineSink>(&self, snap: &Snapshot, sink: S) -> LogPage<S> {
        match self.tail {
            Some(n) => {
                let (start, cut) = self.tail_start(snap, n);
                // The look back already scanned (within the budget) every line from `start` on.
                let mut page = self.forward(snap, start.max(self.since_seq.unwrap_or(0)), sink, false);
                if cut {
                    page.looked_back_to = Some(start);
                    page.budget_hit.get_or_insert(BudgetHit::ScanBudget);
                }
                page
            }
            None => self.forward(snap, self.since_seq.unwrap_or_else(|| snap.oldest_seq()), sink, true),
        }
    }

    /// The seq a forward scan starts at so that it returns the last `n` lines of the selection (plus the
    /// context lines before the first of them), and whether the look back stopped at the scan budget.
    fn tail_start(&self, snap: &Snapshot, n: u64) -> (u64, bool) {
        if n == 0 {
            return (snap.next_seq, false);
        }
        if !self.filtered() {
            let mut remaining = n;
            for seg in snap.segments.iter().rev() {
                let len = seg.len() as u64;
                if len >= remaining {
                    return (seg.first_seq() + (len - remaining), false);
                }
                remaining -= len;
            }
            return (snap.oldest_seq(), false);
        }
        let mut found = 0u64;
        let mut context_left: Option<usize> = None;
        let mut start = snap.oldest_seq();
        let mut scanned = Scanned {
            lines: 0,
            bytes: 0,
            query: self,
        };
        for seg in snap.segments.iter().rev() {
            let seg = seg.load();
            for i in (0..seg.len()).rev() {
                let line = seg.line(i);
                if !scanned.take(&line) {
                    // Nothing older was looked at: the forward scan starts at the oldest line that was.
                    return (line.seq + 1, true);
                }
                if !self.selects(&line) {
                    continue;
                }
                if let Some(left) = context_left.as_mut() {
                    if *left == 0 {
                        return (start, false);
                    }
                    *left -= 1;
                    start = line.seq;
                    continue;
                }
                let counts = match &self.grep {
                    Some(re) => self.matches(re, &line),
                    None => true,
                };
                if counts {
                    found += 1;
                    start = line.seq;
                    if found == n {
                        context_left = Some(self.context);
                    }
                }
            }
        }
        (start, false)
    }

    /// Serves the selection from `start` on until a budget ends the page; `budgeted`: the scan budget applies.
    fn forward<S: LineSink>(&self, snap: &Snapshot, start: u64, sink: S, budgeted: bool) -> LogPage<S> {
        let mut builder = PageBuilder {
            page: LogPage {
                lines: sink,
                count: 0,
                first_seq: None,
                last_seq: None,
                next_seq: snap.next_seq,
                has_more: false,
                omitted: None,
                total_lines: snap.next_seq,
                oldest_seq: snap.oldest_seq(),
                budget_hit: None,
                bytes: 0,
                cut_seq: None,
                looked_back_to: None,
            },
            limits: PageLimits {
                max_lines: self.max_lines,
                max_bytes: self.max_bytes,
                raw: self.raw,
            },
            snap,
            gap_ahead: snap.gap.filter(|g| start < g.to).map(|g| (start.max(g.from), g.to)),
            last_ts: None,
        };
        let mut scanned = Scanned {
            lines: 0,
            bytes: 0,
            query: self,
        };
        let mut before: VecDeque<HeldLine> = VecDeque::with_capacity(self.context);
        let mut after_left = 0usize;
        let first = snap.segment_index_for(start);
        'scan: for seg in snap.segments.iter().skip(first) {
            // Held while its lines are looked at, then dropped (a context line may hold it a little longer).
            let seg = seg.load();
            let from = start.saturating_sub(seg.first_seq()) as usize;
            for i in from.min(seg.len())..seg.len() {
                let line = seg.line(i);
                // Stops only between matches and their context (at most `context` lines past the budget), so
                // continuing from `next_seq` misses nothing.
                if budgeted && after_left == 0 && scanned.spent() {
                    let page = &mut builder.page;
                    page.budget_hit = Some(BudgetHit::ScanBudget);
                    // The context lines held for a match still to come are scanned again by the next call.
                    page.next_seq = before
                        .front()
                        .map_or(line.seq, |h| h.line().seq)
                        .max(start + 1)
                        .min(line.seq);
                    break 'scan;
                }
                scanned.count(&line);
                if !self.selects(&line) {
                    continue;
                }
                let matched = match &self.grep {
                    None => None,
                    Some(re) if self.matches(re, &line) => Some(true),
                    Some(_) if after_left > 0 => {
                        after_left -= 1;
                        Some(false)
                    }
                    Some(_) => {
                        if self.context > 0 {
                            if before.len() == self.context {
                                before.pop_front();
                            }
                            before.push_back(HeldLine(seg.clone(), i));
                        }
                        continue;
                    }
                };
                if matched == Some(true) {
                    after_left = self.context;
                    while let Some(c) = before.pop_front() {
                        if !builder.push(c.line(), Some(false)) {
                            break 'scan;
                        }
                    }
                }
                if !builder.push(line, matched) {
                    break 'scan;
                }
            }
        }
        let gap_ahead = builder.gap_ahead;
        let mut page = builder.page;
        page.has_more = page.next_seq < snap.next_seq;
        if let Some(gap) = snap.gap
            && start < gap.to
            && page.next_seq > gap.from
        {
            let from = start.max(gap.from);
            page.omitted = Some(Omitted {
                from_seq: from,
                to_seq: gap.to,
                lines: gap.to - from,
            });
            if let Some((from, to)) = gap_ahead {
                // No served line came after the range: the note closes the page.
                page.lines.omitted(from, to);
            }
        }
        page
    }
}

/// How far back [`last_lines`] looks for lines of the wanted stream.
const LAST_LINES_SCAN: usize = 200_000;

/// The last lines of `stream` (structured-event lines left out) that fit `max_lines` and `max_bytes` as compact
/// records; when even the newest does not fit, its beginning is served, cut. `None` when the last
/// [`LAST_LINES_SCAN`] lines hold none of that stream.
pub fn last_lines(
    snap: &Snapshot,
    stream: StreamSelector,
    max_lines: usize,
    max_bytes: usize,
) -> Option<LogPage<CompactLines>> {
    let query = LogQuery {
        stream,
        events: EventSelector::Exclude,
        max_lines,
        max_bytes,
        ..LogQuery::default()
    };
    let mut start = None;
    let (mut lines, mut bytes, mut looked_at) = (0, 0, 0);
    'scan: for seg in snap.segments.iter().rev() {
        let seg = seg.load();
        for i in (0..seg.len()).rev() {
            let line = seg.line(i);
            looked_at += 1;
            if looked_at > LAST_LINES_SCAN {
                break 'scan;
            }
            if !query.selects(&line) {
                continue;
            }
            let text = render(line.bytes, line.has(flags::NEEDS_RENDER), false);
            let served = Served {
                seq: line.seq,
                stream: line.stream(),
                partial: line.has(flags::PARTIAL),
                event: false,
                matched: None,
                cut: false,
                text: &text,
                ts: None,
            };
            bytes += compact::cost(&served);
            if start.is_some() && (bytes > max_bytes || lines == max_lines) {
                break 'scan;
            }
            start = Some(line.seq);
            lines += 1;
        }
    }
    // Bounded by the look back: at most LAST_LINES_SCAN lines from `start` on.
    let page = query.forward(snap, start?, CompactLines::default(), false);
    Some(page)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::SystemTime;

    use super::*;
    use crate::logs::{ExecutionLog, LogLimits, MemoryBudget};

    fn log_with(lines: &[(Stream, &str)]) -> Arc<ExecutionLog> {
        let log = ExecutionLog::new(
            LogLimits {
                max_bytes: 1 << 24,
                max_line_bytes: 4096,
            },
            MemoryBudget::new(1 << 30),
        );
        for (stream, text) in lines {
            let mut f = 0;
            if text.starts_with("__WF_EVENT__:") {
                f |= flags::EVENT;
            }
            if crate::logs::render::needs_render(text.as_bytes()) {
                f |= flags::NEEDS_RENDER;
            }
            log.append_line(*stream, text.as_bytes(), f, text.len() as u64 + 1, SystemTime::now());
        }
        log
    }

    fn numbered(n: usize) -> Arc<ExecutionLog> {
        let texts: Vec<String> = (0..n).map(|i| format!("line {i}")).collect();
        let lines: Vec<(Stream, &str)> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| (if i % 3 == 0 { Stream::Stderr } else { Stream::Stdout }, t.as_str()))
            .collect();
        log_with(&lines)
    }

    fn seqs(page: &LogPage) -> Vec<u64> {
        page.lines.iter().map(|l| l.seq).collect()
    }

    #[test]
    fn paging_with_next_seq_is_repeatable_and_complete() {
        let log = numbered(1000);
        let snap = log.snapshot();
        let mut q = LogQuery {
            max_lines: 64,
            ..LogQuery::default()
        };
        let mut seen = Vec::new();
        loop {
            let page = q.run(&snap);
            assert_eq!(seqs(&q.run(&snap)), seqs(&page), "the same call gives the same answer");
            seen.extend(seqs(&page));
            if !page.has_more {
                break;
            }
            q.since_seq = Some(page.next_seq);
        }
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn byte_budget_is_never_exceeded() {
        let log = numbered(1000);
        let q = LogQuery {
            max_bytes: 100,
            ..LogQuery::default()
        };
        let page = q.run(&log.snapshot());
        assert!(page.bytes <= 100);
        let compact = q.run_into(&log.snapshot(), CompactLines::default());
        assert_eq!(compact.bytes, page.bytes);
        let sent = serde_json::to_string(&compact.lines.text).unwrap();
        assert_eq!(page.bytes, sent.len() - 2, "the budget counts the lines as sent");
        assert_eq!(page.budget_hit, Some(BudgetHit::MaxBytes));
        assert_eq!(page.next_seq, page.lines.last().unwrap().seq + 1);
    }

    #[test]
    fn a_line_larger_than_the_budget_is_cut_and_paging_advances() {
        let long = "x".repeat(500);
        let log = log_with(&[(Stream::Stdout, long.as_str()), (Stream::Stdout, "next")]);
        let q = LogQuery {
            max_bytes: 100,
            ..LogQuery::default()
        };
        let page = q.run(&log.snapshot());
        assert_eq!(page.lines.len(), 1);
        assert!(page.lines[0].cut);
        // "0+ " and the escaped newline take 5 of the 100 bytes.
        assert_eq!(page.lines[0].text.len(), 95);
        assert_eq!(page.cut_seq, Some(0));
        assert_eq!(page.next_seq, 1);
    }

    #[test]
    fn tail_and_stream_selection() {
        let log = numbered(30);
        let snap = log.snapshot();
        let q = LogQuery {
            tail: Some(3),
            ..LogQuery::default()
        };
        assert_eq!(seqs(&q.run(&snap)), vec![27, 28, 29]);
        let q = LogQuery {
            tail: Some(2),
            stream: StreamSelector::Stderr,
            ..LogQuery::default()
        };
        assert_eq!(seqs(&q.run(&snap)), vec![24, 27]);
    }

    #[test]
    fn grep_returns_matches_with_context() {
        let log = numbered(30);
        let q = LogQuery {
            grep: Some(Regex::new("^line 1[05]$").unwrap()),
            context: 1,
            ..LogQuery::default()
        };
        let page = q.run(&log.snapshot());
        assert_eq!(seqs(&page), vec![9, 10, 11, 14, 15, 16]);
        let matched: Vec<_> = page.lines.iter().map(|l| l.matched).collect();
        assert_eq!(
            matched,
            vec![
                Some(false),
                Some(true),
                Some(false),
                Some(false),
                Some(true),
                Some(false)
            ]
        );
        assert!(!page.has_more);
        assert_eq!(page.next_seq, 30);
    }

    #[test]
    fn grep_sees_rendered_text_and_tail_counts_matches() {
        let log = log_with(&[
            (Stream::Stdout, "\x1b[31merr\x1b[0mor one"),
            (Stream::Stdout, "fine"),
            (Stream::Stderr, "error two"),
        ]);
        let q = LogQuery {
            grep: Some(Regex::new("error").unwrap()),
            ..LogQuery::default()
        };
        let page = q.run(&log.snapshot());
        assert_eq!(seqs(&page), vec![0, 2]);
        assert_eq!(page.lines[0].text, "error one");
        let q = LogQuery { tail: Some(1), ..q };
        assert_eq!(seqs(&q.run(&log.snapshot())), vec![2]);
    }

    #[test]
    fn a_scan_stops_at_its_budget_and_continuing_from_next_seq_misses_nothing() {
        let log = numbered(1000);
        let snap = log.snapshot();
        let re = Regex::new("^line (1|5)[0-9]*[05]$").unwrap();
        let whole = LogQuery {
            grep: Some(re.clone()),
            context: 2,
            max_lines: 10_000,
            ..LogQuery::default()
        };
        let expected = whole.run(&snap).lines;
        assert!(expected.len() > 100);
        let mut q = LogQuery {
            scan_lines: 37,
            ..whole.clone()
        };
        let (mut got, mut calls) = (Vec::new(), 0);
        loop {
            let page = q.run(&snap);
            calls += 1;
            if page.has_more {
                assert_eq!(page.budget_hit, Some(BudgetHit::ScanBudget));
            }
            got.extend(page.lines);
            if !page.has_more {
                break;
            }
            q.since_seq = Some(page.next_seq);
        }
        assert!(
            calls >= 1000 / (37 + 2),
            "each call scanned at most its budget and a context: {calls} calls"
        );
        assert_eq!(
            got, expected,
            "the pages together are the whole answer, context included"
        );
        // Nothing matches: each call still ends, at its budget.
        let none = LogQuery {
            grep: Some(Regex::new("nothing").unwrap()),
            scan_bytes: 100,
            ..LogQuery::default()
        };
        let page = none.run(&snap);
        assert_eq!((page.count, page.has_more), (0, true));
        assert!(page.next_seq > 0 && page.next_seq < 30, "{}", page.next_seq);
    }

    #[test]
    fn a_tail_that_looks_back_past_its_budget_says_how_far_it_looked() {
        let log = numbered(1000);
        let q = LogQuery {
            tail: Some(5),
            grep: Some(Regex::new("^line 1[0-9]$").unwrap()),
            scan_lines: 500,
            ..LogQuery::default()
        };
        let page = q.run(&log.snapshot());
        assert_eq!(page.count, 0, "the matches are further back than the budget");
        assert_eq!(page.looked_back_to, Some(500));
        assert_eq!(page.budget_hit, Some(BudgetHit::ScanBudget));
        let q = LogQuery { scan_lines: 995, ..q };
        assert_eq!(seqs(&q.run(&log.snapshot())), vec![15, 16, 17, 18, 19]);
    }

    #[test]
    fn event_lines_can_be_selected_or_left_out() {
        let log = log_with(&[
            (Stream::Stderr, "__WF_EVENT__:{\"type\":\"phase_started\"}"),
            (Stream::Stderr, "plain"),
        ]);
        let only = LogQuery {
            events: EventSelector::Only,
            ..LogQuery::default()
        };
        assert_eq!(seqs(&only.run(&log.snapshot())), vec![0]);
        let exclude = LogQuery {
            events: EventSelector::Exclude,
            ..LogQuery::default()
        };
        assert_eq!(seqs(&exclude.run(&log.snapshot())), vec![1]);
    }
}
