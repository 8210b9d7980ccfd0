//! What the input parser promises for every input, whatever its bytes. One place, checked on
//! each input by the stable fuzz pass (`tests/parser_fuzz.rs`) and by the cargo-fuzz target
//! (`fuzz/fuzz_targets/parser.rs`, which includes this file).

use invbot::input::{self, Format, MAX_FIELD_LEN, MAX_LINE_BYTES, Parsed, ReadError};
use invbot::untrusted::is_printable;
use inventory_api::Kind;

/// Longest reason or error message: a sentence and a bounded quote of the input.
const MAX_MESSAGE_CHARS: usize = 1_000;
/// Longest raw sample: 512 characters, and `…` where it was cut.
const MAX_RAW_CHARS: usize = 513;
/// Where the parser looks for NUL bytes to tell a binary file.
const SNIFF_BYTES: usize = 8192;

/// Reads `data` in `format`, checks every promise (panics on a broken one), and returns what it
/// read. That it returns at all is the first promise: no panic, no hang.
pub(crate) fn check_format(data: &[u8], format: Format) -> Result<Parsed, ReadError> {
    let result = input::read(data, format);
    let lines = Line::split(data);
    let head = &data[..data.len().min(SNIFF_BYTES)];
    let utf16 = data.starts_with(b"\xff\xfe") || data.starts_with(b"\xfe\xff");
    let binary = !utf16 && head.contains(&0);
    match &result {
        Err(e) => {
            assert_message(&e.to_string());
            match e {
                ReadError::Io(e) => panic!("reading a slice failed: {e}"),
                ReadError::Utf16 => assert!(utf16),
                ReadError::NotText { .. } => assert!(binary, "{e}"),
                ReadError::Empty(_) => assert!(lines.iter().all(|l| l.blank), "{e}"),
                ReadError::Header { line, .. } => {
                    assert_eq!(format, Format::Csv, "{e}");
                    assert_eq!(
                        Some(*line),
                        lines.iter().position(|l| !l.blank).map(|i| i + 1)
                    );
                }
            }
        }
        Ok(parsed) => {
            assert!(
                !utf16 && !binary,
                "a UTF-16 or binary input was read as text"
            );
            check_parsed(&lines, format, parsed);
        }
    }
    result
}

fn check_parsed(lines: &[Line<'_>], format: Format, parsed: &Parsed) {
    // The parser's own accounting: every row read went somewhere, once.
    assert!(parsed.counts_add_up(), "{parsed:?}");
    let mut rows = lines.iter().enumerate().filter(|(_, l)| !l.blank);
    if format == Format::Csv {
        rows.next(); // the header
    }
    let row_numbers: Vec<usize> = rows.map(|(i, _)| i + 1).collect();
    assert_eq!(parsed.rows(), row_numbers.len(), "rows read");
    let mut seen: Vec<usize> = parsed
        .transactions
        .iter()
        .map(|t| t.line)
        .chain(parsed.rejected.iter().map(|r| r.line))
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen, row_numbers,
        "each non-blank row once, by its line number"
    );

    for t in &parsed.transactions {
        let line = &lines[t.line - 1];
        assert!(!line.cut, "a row over {MAX_LINE_BYTES} bytes was accepted");
        let text = std::str::from_utf8(line.bytes).expect("an accepted row is UTF-8");
        for id in [&t.warehouse_id, &t.sku] {
            assert_identifier(id);
            // Nothing forged: where the row has no quoting or escapes, the value is in it as is.
            let plain = match format {
                Format::Csv => !text.contains('"'),
                Format::JsonLines => !text.contains('\\'),
            };
            assert!(
                !plain || text.contains(id.as_str()),
                "{id:?} not in {text:?}"
            );
        }
        if let Some(txn_id) = &t.txn_id {
            assert_identifier(txn_id);
            assert!(txn_id.chars().all(|c| c == ' ' || c.is_ascii_graphic()));
        }
        match t.operation {
            Kind::Receive | Kind::Ship => assert!(t.quantity > 0, "{t:?}"),
            Kind::Adjust => assert!(t.quantity != 0, "{t:?}"),
        }
    }
    for r in &parsed.rejected {
        assert!(!r.reason.is_empty());
        assert_message(&r.reason);
        assert!(r.raw.chars().all(is_printable), "raw not escaped: {r:?}");
        assert!(r.raw.chars().count() <= MAX_RAW_CHARS, "{r:?}");
    }
}

fn assert_identifier(id: &str) {
    assert!(!id.is_empty() && id.trim() == id, "{id:?}");
    assert!(id.chars().count() <= MAX_FIELD_LEN, "{id:?}");
    assert!(id.chars().all(is_printable), "{id:?}");
}

/// Anything that may reach a terminal: printable and bounded.
fn assert_message(text: &str) {
    assert!(text.chars().all(is_printable), "not escaped: {text:?}");
    assert!(
        text.chars().count() <= MAX_MESSAGE_CHARS,
        "{} chars",
        text.len()
    );
}

/// A line as the parser sees it: split at `\n`, without `\r\n` or `\n`, the first without a
/// UTF-8 byte order mark.
struct Line<'a> {
    bytes: &'a [u8],
    cut: bool,
    blank: bool,
}

impl<'a> Line<'a> {
    fn split(data: &'a [u8]) -> Vec<Self> {
        let mut lines = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let (mut bytes, next) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let line = &rest[..i];
                    (line.strip_suffix(b"\r").unwrap_or(line), &rest[i + 1..])
                }
                None => (rest, &rest[rest.len()..]),
            };
            if lines.is_empty() {
                bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
            }
            let cut = bytes.len() > MAX_LINE_BYTES;
            let blank = !cut && bytes.iter().all(u8::is_ascii_whitespace);
            lines.push(Self { bytes, cut, blank });
            rest = next;
        }
        lines
    }
}
