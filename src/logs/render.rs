//! Turning stored line bytes into text for readers: invalid UTF-8 becomes U+FFFD, ANSI escape sequences are
//! removed, and a line holding carriage returns shows what a terminal would show. `raw` skips all but the UTF-8
//! step. The stored bytes never change; rendering happens only when a line is served.

use std::borrow::Cow;

/// Renders one line. `needs_render` is the log's flag saying the line holds an ESC or a CR byte.
pub fn render(bytes: &[u8], needs_render: bool, raw: bool) -> Cow<'_, str> {
    if raw || !needs_render {
        return String::from_utf8_lossy(bytes);
    }
    let stripped = strip_ansi(bytes);
    let text = String::from_utf8_lossy(&stripped);
    Cow::Owned(match text {
        Cow::Borrowed(t) if !t.contains('\r') => t.to_owned(),
        t => resolve_carriage_returns(&t),
    })
}

/// True when a line needs [`render`] to look at it (it holds ESC or CR).
pub fn needs_render(bytes: &[u8]) -> bool {
    memchr::memchr2(0x1b, b'\r', bytes).is_some()
}

/// Removes CSI (`ESC [ … final`), OSC (`ESC ] … BEL|ESC \`), string controls (DCS, SOS, PM, APC) and
/// two-byte escapes.
fn strip_ansi(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != 0x1b {
            out.push(b);
            i += 1;
            continue;
        }
        i += 1;
        let Some(&kind) = bytes.get(i) else { break };
        i += 1;
        match kind {
            b'[' => {
                // Parameters and intermediates, then one final byte in 0x40..=0x7e.
                while i < bytes.len() && !(0x40..=0x7e).contains(&bytes[i]) {
                    i += 1;
                }
                i += 1;
            }
            b']' | b'P' | b'X' | b'^' | b'_' => {
                // A string terminated by BEL (OSC only) or ST (`ESC \`).
                while i < bytes.len() {
                    if bytes[i] == 0x07 && kind == b']' {
                        i += 1;
                        break;
                    }
                    if bytes[i] == 0x1b && bytes.get(i + 1) == Some(&b'\\') {
                        i += 2;
                        break;
                    }
                    i += 1;
                }
            }
            0x20..=0x2f => {
                // nF escape: intermediates then a final byte.
                while i < bytes.len() && (0x20..=0x2f).contains(&bytes[i]) {
                    i += 1;
                }
                i += 1;
            }
            _ => {} // Two-byte escape (ESC 7, ESC c, ...): both bytes dropped.
        }
    }
    out
}

/// Each `\r` moves back to the start of the line and the following text overwrites what was there.
fn resolve_carriage_returns(text: &str) -> String {
    let mut screen: Vec<char> = Vec::new();
    for (n, segment) in text.split('\r').enumerate() {
        if n == 0 {
            screen.extend(segment.chars());
            continue;
        }
        for (col, c) in segment.chars().enumerate() {
            if col < screen.len() {
                screen[col] = c;
            } else {
                screen.push(c);
            }
        }
    }
    screen.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &[u8]) -> String {
        render(s, needs_render(s), false).into_owned()
    }

    #[test]
    fn ansi_sequences_are_removed_unless_raw() {
        assert_eq!(r(b"\x1b[1;31merror\x1b[0m: bad"), "error: bad");
        assert_eq!(r(b"\x1b]0;title\x07text"), "text");
        assert_eq!(r(b"\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\"), "link");
        assert_eq!(r(b"a\x1b(Bb\x1b7c"), "abc");
        let raw = b"\x1b[31mred";
        assert_eq!(render(raw, true, true), "\u{1b}[31mred");
    }

    #[test]
    fn carriage_returns_show_what_a_terminal_shows() {
        assert_eq!(r(b"progress 10%\rprogress 50%\rprogress 100%"), "progress 100%");
        assert_eq!(r(b"abcdef\rXY"), "XYcdef");
        assert_eq!(r(b"windows line\r"), "windows line");
        assert_eq!(render(b"a\rb", true, true), "a\rb");
    }

    #[test]
    fn invalid_utf8_becomes_replacement_characters() {
        assert_eq!(r(b"ok \xff\xfe end"), "ok \u{fffd}\u{fffd} end");
        assert_eq!(r("héllo".as_bytes()), "héllo");
    }
}
