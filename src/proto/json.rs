//! Small JSON and text helpers shared by the protocol modules: `JSON.stringify`-compatible string
//! escaping, byte offsets of `serde_json` errors, and one-line summaries for packet renderings.

use std::fmt::Write as _;

/// Appends `s` as a JSON string literal, escaped exactly like `JSON.stringify` does
/// (ECMA-262 `QuoteJSONString`: `"` `\` and the C0 controls; `\b \t \n \f \r` short forms,
/// other controls as lowercase `\u00xx`; everything else, including `/` and non-ASCII, verbatim).
pub fn push_json_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            0x08 => Some("\\b"),
            0x09 => Some("\\t"),
            0x0a => Some("\\n"),
            0x0c => Some("\\f"),
            0x0d => Some("\\r"),
            0x00..=0x1f => None,
            _ => continue,
        };
        // `i` is at an ASCII byte, hence on a char boundary.
        out.push_str(s.get(start..i).unwrap_or_default());
        match esc {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{:04x}", b);
            }
        }
        start = i + 1;
    }
    out.push_str(s.get(start..).unwrap_or_default());
    out.push('"');
}

/// The byte offset in `text` at which `serde_json` reported `err` (it reports 1-based line and
/// column, where the column counts bytes). Clamped to `text.len()`; `text.len()` when the JSON
/// ended too early.
pub fn error_offset(text: &str, err: &serde_json::Error) -> usize {
    if err.is_eof() {
        return text.len();
    }
    let line = err.line();
    let column = err.column();
    if line == 0 {
        return 0;
    }
    let mut line_start = 0usize;
    let mut current = 1usize;
    if line > 1 {
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' {
                current += 1;
                if current == line {
                    line_start = i + 1;
                    break;
                }
            }
        }
    }
    line_start
        .saturating_add(column.saturating_sub(1))
        .min(text.len())
}

/// What `serde_json` said, without its ` at line L column C` suffix (callers report a byte offset).
pub fn error_message(err: &serde_json::Error) -> String {
    let full = err.to_string();
    match full.rfind(" at line ") {
        Some(i) if full.get(i..).is_some_and(|t| t.contains(" column ")) => {
            full.get(..i).unwrap_or(&full).to_owned()
        }
        _ => full,
    }
}

/// Default width (in characters) of the text part of a one-line summary.
pub const SUMMARY_MAX_CHARS: usize = 100;

/// Appends `s` on one line: control characters are escaped (`\n`, `\x1e`, ...) and the text is
/// cut after `max_chars` characters with a trailing `…`.
pub fn push_one_line(out: &mut String, s: &str, max_chars: usize) {
    for (n, c) in s.chars().enumerate() {
        if n >= max_chars {
            out.push('…');
            return;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// Appends up to `max_bytes` bytes as lowercase hex pairs separated by spaces, then `…` if cut.
pub fn push_hex(out: &mut String, bytes: &[u8], max_bytes: usize) {
    for (i, b) in bytes.iter().take(max_bytes).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{b:02x}");
    }
    if bytes.len() > max_bytes {
        out.push('…');
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn quoted(s: &str) -> String {
        let mut out = String::new();
        push_json_str(&mut out, s);
        out
    }

    #[test]
    fn escapes_like_json_stringify() {
        assert_eq!(quoted("send_message"), r#""send_message""#);
        assert_eq!(quoted("a\"b\\c/d"), r#""a\"b\\c/d""#);
        assert_eq!(quoted("\u{8}\t\n\u{c}\r"), r#""\b\t\n\f\r""#);
        assert_eq!(
            quoted("\u{0}\u{1e}\u{1f}\u{7f}"),
            "\"\\u0000\\u001e\\u001f\u{7f}\""
        );
        assert_eq!(quoted("Olá mundo! 👋"), "\"Olá mundo! 👋\"");
    }

    #[test]
    fn escaping_matches_serde_json_for_every_ascii_byte() {
        for b in 0u8..128 {
            let s = char::from(b).to_string();
            assert_eq!(
                quoted(&s),
                serde_json::to_string(&s).unwrap_or_default(),
                "byte {b}"
            );
        }
    }

    #[test]
    fn error_offset_points_at_the_bad_byte() {
        let text = r#"{"a":1,}"#;
        let err = serde_json::from_str::<serde_json::Value>(text).err();
        let off = err.map(|e| error_offset(text, &e));
        assert_eq!(off, Some(7));
        let text = "[1,\n 2,\n x]";
        let err = serde_json::from_str::<serde_json::Value>(text).err();
        let off = err.map(|e| error_offset(text, &e));
        assert_eq!(off, Some(9));
    }

    #[test]
    fn error_message_drops_the_position() {
        let err = serde_json::from_str::<serde_json::Value>("[1,").unwrap_err();
        assert_eq!(error_message(&err), "EOF while parsing a value");
    }

    #[test]
    fn one_line_escapes_and_truncates() {
        let mut out = String::new();
        push_one_line(&mut out, "a\nb\u{1e}c", 10);
        assert_eq!(out, "a\\nb\\x1ec");
        let mut out = String::new();
        push_one_line(&mut out, "abcdef", 3);
        assert_eq!(out, "abc…");
        let mut out = String::new();
        push_hex(&mut out, &[1, 2, 255], 2);
        assert_eq!(out, "01 02…");
    }
}
