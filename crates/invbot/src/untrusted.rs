//! Text the bot did not write (input rows, the API's error bodies), made safe to print: a
//! terminal must never receive a control character or escape sequence from it.

use std::fmt::Write as _;

/// Whether `c` shows as itself: not a control, format (bidi, zero-width), separator or
/// unassigned character. Beyond ASCII, Rust's `Debug` escapes exactly those, so its table
/// decides.
pub fn is_printable(c: char) -> bool {
    if c.is_ascii() {
        return c == ' ' || c.is_ascii_graphic();
    }
    c.escape_debug().len() == 1
}

/// `bytes` with every non-printable character written as Rust escapes it (`\u{1b}`, `\t`) and
/// every byte that is not UTF-8 as `\xff`; at most `max_chars` characters, and `…` where it was
/// cut.
pub fn escape(bytes: &[u8], max_chars: usize) -> String {
    let mut out = String::new();
    let mut room = max_chars;
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            let escaped = (!is_printable(c)).then(|| c.escape_debug());
            let len = escaped.as_ref().map_or(1, ExactSizeIterator::len);
            if len > room {
                out.push('…');
                return out;
            }
            room -= len;
            match escaped {
                Some(escaped) => out.extend(escaped),
                None => out.push(c),
            }
        }
        for b in chunk.invalid() {
            if room < 4 {
                out.push('…');
                return out;
            }
            room -= 4;
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_bidi_and_bad_bytes_are_escaped() {
        assert_eq!(escape(b"SKU-\x1b[31m\t1", 64), r"SKU-\u{1b}[31m\t1");
        assert_eq!(
            escape("a\u{202e}b\u{200b}c".as_bytes(), 64),
            r"a\u{202e}b\u{200b}c"
        );
        assert_eq!(escape(b"ok\xff\xfe", 64), r"ok\xff\xfe");
        assert_eq!(
            escape("Größe \"7\" \\ é".as_bytes(), 64),
            "Größe \"7\" \\ é"
        );
    }

    #[test]
    fn long_text_is_cut_and_marked() {
        assert_eq!(escape(b"abcdef", 3), "abc…");
        assert_eq!(escape(b"\xff\xff\xff", 10), r"\xff\xff…");
        assert_eq!(escape(b"ab\x1b", 8), r"ab\u{1b}");
        assert_eq!(escape(b"ab\x1b", 7), "ab…");
        assert_eq!(escape(b"abc", 3), "abc");
    }

    #[test]
    fn printable_means_shown_as_itself() {
        assert!("SKU-00001 é ü 漢 \"'\\".chars().all(is_printable));
        for c in [
            '\u{1b}', '\0', '\n', '\u{7f}', '\u{85}', '\u{a0}', '\u{202e}', '\u{feff}',
        ] {
            assert!(!is_printable(c), "{c:?}");
        }
    }
}
