//! The compact line form: how log lines travel to readers, in both the structured and the text result. One
//! record per line, no per-line JSON object, so a page costs the reader about what the lines themselves cost:
//!
//! ```text
//! record = SEQ MARKS ["@" TIME] " " TEXT "\n"
//! MARKS  = zero or more of, in this order:
//!          "!" stderr   "~" partial (a piece of an over-long line; it continues in the next record)
//!          "-" grep context (not a match)   "+" cut (TEXT shortened to fit max_bytes)
//! TIME   = RFC 3339 UTC with milliseconds, only when timestamps were asked for
//! note   = "# " TEXT "\n"   (not a log line: e.g. "# seq 10-99 omitted: 90 lines evicted from memory")
//! ```
//!
//! A record's cost against a byte budget is its size as sent: the JSON-escaped record, newline included.

use std::fmt::Write as _;

use super::segment::Stream;

/// A line as it is served: its place, its marks and its rendered text.
#[derive(Clone, Copy, Debug)]
pub struct Served<'a> {
    pub seq: u64,
    pub stream: Stream,
    pub partial: bool,
    pub event: bool,
    /// With grep: `Some(true)` for a match, `Some(false)` for a context line.
    pub matched: Option<bool>,
    pub cut: bool,
    pub text: &'a str,
    /// RFC 3339, when the reader asked for timestamps.
    pub ts: Option<&'a str>,
}

/// Bytes a JSON encoder writes for `text` inside a string (quotes not included).
pub fn escaped_len(text: &str) -> usize {
    text.len() + text.bytes().map(escape_extra).sum::<usize>()
}

/// Extra bytes JSON needs for one byte: `\"`, `\\`, `\n` and friends take 2, other control bytes `\u00XX` 6.
fn escape_extra(b: u8) -> usize {
    match b {
        b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 1,
        0..=0x1f => 5,
        _ => 0,
    }
}

fn digits(mut n: u64) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

fn mark_count(l: &Served<'_>) -> usize {
    usize::from(l.stream == Stream::Stderr)
        + usize::from(l.partial)
        + usize::from(l.matched == Some(false))
        + usize::from(l.cut)
}

/// What a record costs beyond the escaped text: seq, marks, timestamp, the space and the escaped newline.
pub fn overhead(l: &Served<'_>) -> usize {
    digits(l.seq) + mark_count(l) + l.ts.map_or(0, |t| 1 + t.len()) + 1 + 2
}

/// The record's size as sent.
pub fn cost(l: &Served<'_>) -> usize {
    overhead(l) + escaped_len(l.text)
}

/// The longest prefix of `text` (at a character boundary) whose escaped size is at most `budget`.
pub fn fit(text: &str, budget: usize) -> usize {
    let mut used = 0;
    for (i, c) in text.char_indices() {
        let size = if c.is_ascii() {
            1 + escape_extra(c as u8)
        } else {
            c.len_utf8()
        };
        if used + size > budget {
            return i;
        }
        used += size;
    }
    text.len()
}

/// Appends one record.
pub fn write_record(out: &mut String, l: &Served<'_>) {
    let _ = write!(out, "{}", l.seq);
    if l.stream == Stream::Stderr {
        out.push('!');
    }
    if l.partial {
        out.push('~');
    }
    if l.matched == Some(false) {
        out.push('-');
    }
    if l.cut {
        out.push('+');
    }
    if let Some(ts) = l.ts {
        out.push('@');
        out.push_str(ts);
    }
    out.push(' ');
    out.push_str(l.text);
    out.push('\n');
}

/// Appends the note for a seq range `[from, to)` that is no longer available.
pub fn write_omitted(out: &mut String, from: u64, to: u64) {
    let lines = to - from;
    let range = if lines == 1 {
        format!("seq {from}")
    } else {
        format!("seq {from}-{}", to - 1)
    };
    let _ = writeln!(out, "# {range} omitted: {lines} lines evicted from memory");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> Served<'_> {
        Served {
            seq: 42,
            stream: Stream::Stdout,
            partial: false,
            event: false,
            matched: None,
            cut: false,
            text,
            ts: None,
        }
    }

    #[test]
    fn the_cost_is_the_size_of_the_record_as_json_sends_it() {
        for text in ["plain", "quote \" and \\ back", "tab\tand\x01control", "é ü 日本", ""] {
            let l = line(text);
            let mut record = String::new();
            write_record(&mut record, &l);
            let json = serde_json::to_string(&record).unwrap();
            assert_eq!(cost(&l), json.len() - 2, "{text:?}");
        }
    }

    #[test]
    fn marks_come_in_their_order_and_timestamps_after_them() {
        let l = Served {
            stream: Stream::Stderr,
            partial: true,
            matched: Some(false),
            cut: true,
            ts: Some("2026-11-30T07:00:00.000Z"),
            ..line("x")
        };
        let mut out = String::new();
        write_record(&mut out, &l);
        assert_eq!(out, "42!~-+@2026-11-30T07:00:00.000Z x\n");
        assert_eq!(cost(&l), out.len() + 1);
    }

    #[test]
    fn fit_cuts_at_a_character_boundary_within_the_escaped_budget() {
        assert_eq!(fit("abcdef", 4), 4);
        assert_eq!(fit("a\"bc", 3), 2);
        assert_eq!(fit("日本", 4), 3);
        assert_eq!(fit("x\x01y", 3), 1);
        assert_eq!(fit("all", 100), 3);
    }
}
