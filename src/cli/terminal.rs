//! Workflow text made safe for a terminal: a line a workflow printed may hold control characters that a
//! terminal would act on (ring the bell, move the cursor, start an escape sequence through a one-character C1
//! CSI or OSC). On a terminal they are shown instead: C0 controls and DEL in caret notation (`^G`, `^[`, `^?`),
//! C1 controls as `\u{9b}`. Tab stays a tab. Into a pipe or a file the text goes as it is.

use std::borrow::Cow;

fn is_escaped(c: char) -> bool {
    c.is_control() && c != '\t'
}

/// `text` with every control character but tab made visible.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            c if !is_escaped(c) => out.push(c),
            '\x7f' => out.push_str("^?"),
            c if (c as u32) < 0x20 => {
                out.push('^');
                out.push(char::from(b'@' + c as u8));
            }
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    Cow::Owned(out)
}

/// `text` as it should be printed: escaped when `terminal`, untouched otherwise.
pub fn for_output(text: &str, terminal: bool) -> Cow<'_, str> {
    if terminal {
        escape_controls(text)
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_control_but_tab_is_shown_not_sent() {
        assert_eq!(escape_controls("plain\ttext é ✓"), "plain\ttext é ✓");
        assert!(matches!(escape_controls("plain"), Cow::Borrowed(_)));
        assert_eq!(escape_controls("\x07\x00\x1b[2J\x1f\x7f"), "^G^@^[[2J^_^?");
        assert_eq!(
            escape_controls("\u{9b}2J\u{9d}0;x\u{80}\u{9f}"),
            "\\u{9b}2J\\u{9d}0;x\\u{80}\\u{9f}"
        );
        assert_eq!(escape_controls("a\r\nb"), "a^M^Jb");
        assert_eq!(for_output("\x07", false), "\x07");
    }
}
