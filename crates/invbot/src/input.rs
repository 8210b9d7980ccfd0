//! Reading transactions from CSV or JSON lines. A malformed row never stops the run: it becomes a
//! [`Rejected`] with its line number and reason, and every other row goes on.
//!
//! Input is hostile until validated. Rows are read as bytes, so a row that is not UTF-8 is
//! rejected rather than the file; at most [`MAX_LINE_BYTES`] of a row are held, a longer one is
//! rejected and skipped to its end, so memory per row is bounded whatever the file holds;
//! identifiers must be printable; and every reason and raw sample is escaped
//! ([`crate::untrusted`]), since they reach the terminal. Only what leaves no row readable fails
//! the whole read ([`ReadError`]): an empty or binary file, UTF-16, a bad CSV header.

use std::io::{self, BufRead, Read as _};
use std::path::Path;

use inventory_api::Kind;
use serde::{Deserialize, Serialize};

use crate::untrusted::{escape, is_printable};

/// Longest accepted text field, in characters (the API's limit for ids); longer values are
/// rejected rather than truncated.
pub const MAX_FIELD_LEN: usize = 64;

/// Longest row, in bytes without its line end: five fields at their limit fit, with CSV quoting
/// or JSON escapes. A longer row is rejected without being held in memory.
pub const MAX_LINE_BYTES: usize = 4096;

/// The CSV header the generator writes and the reader expects (columns in any order; `txn_id`
/// may be left out).
pub const CSV_HEADER: &str = "txn_id,warehouse_id,sku,operation,quantity";

/// A NUL byte this early means a binary file rather than text with a few bad rows.
const SNIFF_BYTES: usize = 8192;
/// Characters of a rejected row kept for the rejects file.
const RAW_CHARS: usize = 512;
/// Characters of input quoted in a reason or a whole-file error: a header, a column name, the
/// line of a binary file with the NUL.
const QUOTE_CHARS: usize = 120;
const NAME_CHARS: usize = 40;
const BINARY_CHARS: usize = 30;
/// How much of an over-long row is read at a time while skipping it.
const SKIP_CHUNK: u64 = 64 * 1024;

/// One valid input row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transaction {
    /// 1-based line in the input file (the header is line 1 in CSV).
    pub line: usize,
    /// Caller-chosen id, used as the idempotency key when present.
    pub txn_id: Option<String>,
    pub warehouse_id: String,
    pub sku: String,
    pub operation: Kind,
    pub quantity: i64,
}

/// A row set aside, with where it was and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    pub line: usize,
    pub reason: String,
    /// The row's start, escaped.
    pub raw: String,
}

/// Everything read from one input.
#[derive(Debug, Default)]
pub struct Parsed {
    pub transactions: Vec<Transaction>,
    pub rejected: Vec<Rejected>,
    /// Rows read (non-blank lines after the header), counted apart from where each one went.
    rows: usize,
}

impl Parsed {
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Every row read became a transaction or a rejected row.
    pub fn counts_add_up(&self) -> bool {
        self.rows == self.transactions.len() + self.rejected.len()
    }
}

/// Why no row of an input could be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("the file is empty: expected {0}")]
    Empty(&'static str),
    #[error("not a text file: line {line} has a NUL byte at column {column} (`{start}`)")]
    NotText {
        line: usize,
        column: usize,
        /// The line's start, escaped.
        start: String,
    },
    #[error("the file is UTF-16 (it starts with a UTF-16 byte order mark): save it as UTF-8")]
    Utf16,
    #[error(
        "line {line}: {problem}; the header must name the columns {CSV_HEADER} \
         (in any order; txn_id may be left out)"
    )]
    Header { line: usize, problem: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    JsonLines,
}

impl Format {
    /// By extension: `.jsonl`/`.ndjson`/`.json` are JSON lines, everything else CSV.
    pub fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl" | "ndjson" | "json") => Self::JsonLines,
            _ => Self::Csv,
        }
    }
}

/// The raw fields of a row before validation.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRow {
    txn_id: Option<String>,
    warehouse_id: Option<String>,
    sku: Option<String>,
    operation: Option<String>,
    quantity: Option<serde_json::Value>,
}

/// Reads every row; bad rows are rejected, and only an input with no readable row at all (or an
/// I/O error) is an error.
pub fn read(reader: impl BufRead, format: Format) -> Result<Parsed, ReadError> {
    let mut lines = Lines::new(reader)?;
    let mut parsed = Parsed::default();
    match format {
        Format::Csv => {
            let columns = read_header(&mut lines)?;
            read_rows(&mut lines, &mut parsed, |text| csv_row(&columns, text))?;
        }
        Format::JsonLines => {
            read_rows(&mut lines, &mut parsed, json_row)?;
            if parsed.rows == 0 {
                return Err(ReadError::Empty("one JSON object per line"));
            }
        }
    }
    Ok(parsed)
}

/// The CSV header's columns, in its order, by their names in [`CSV_HEADER`].
fn read_header(lines: &mut Lines<impl BufRead>) -> Result<Vec<&'static str>, ReadError> {
    let Some(line) = lines.next()? else {
        return Err(ReadError::Empty("the CSV header and rows"));
    };
    let fail = |problem: String| ReadError::Header {
        line: line.number,
        problem,
    };
    if line.cut {
        return Err(fail(format!(
            "cannot read the header: it is longer than {MAX_LINE_BYTES} bytes"
        )));
    }
    let text = utf8(line.bytes).map_err(|e| fail(format!("cannot read the header: {e}")))?;
    let names = split_csv(text).map_err(|e| fail(format!("cannot read the header: {e}")))?;
    let found = escape(text.as_bytes(), QUOTE_CHARS);
    let known = |name: &str| {
        CSV_HEADER
            .split(',')
            .find(|c| c.eq_ignore_ascii_case(name.trim_ascii()))
    };
    let mut columns = Vec::with_capacity(names.len());
    for name in &names {
        let Some(column) = known(name) else {
            let hint = if names.iter().all(|n| known(n).is_none()) {
                " (is the header missing?)"
            } else {
                ""
            };
            return Err(fail(format!(
                "the header `{found}` names an unknown column \"{}\"{hint}",
                escape(name.trim_ascii().as_bytes(), NAME_CHARS)
            )));
        };
        if columns.contains(&column) {
            return Err(fail(format!("the header `{found}` names {column:?} twice")));
        }
        columns.push(column);
    }
    if let Some(missing) = CSV_HEADER
        .split(',')
        .skip(1) // txn_id is optional
        .find(|c| !columns.contains(c))
    {
        return Err(fail(format!("the header `{found}` lacks {missing:?}")));
    }
    Ok(columns)
}

/// Reads the rows after the header (CSV) or from the start (JSON lines) with `parse`.
fn read_rows(
    lines: &mut Lines<impl BufRead>,
    parsed: &mut Parsed,
    parse: impl Fn(&str) -> Result<RawRow, String>,
) -> Result<(), ReadError> {
    while let Some(line) = lines.next()? {
        parsed.rows += 1;
        let number = line.number;
        let row = if line.cut {
            let raw = escape(line.bytes, RAW_CHARS);
            let len = lines.skip_rest()?;
            Err((
                format!("the row is {len} bytes long, the limit is {MAX_LINE_BYTES}"),
                raw,
            ))
        } else {
            utf8(line.bytes)
                .and_then(&parse)
                .and_then(|row| validate(number, row))
                .map_err(|reason| (reason, escape(line.bytes, RAW_CHARS)))
        };
        match row {
            Ok(t) => parsed.transactions.push(t),
            Err((reason, raw)) => parsed.rejected.push(Rejected {
                line: number,
                reason,
                raw,
            }),
        }
    }
    Ok(())
}

fn utf8(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        format!(
            "not valid UTF-8: byte 0x{:02x} at column {} (the file must be UTF-8)",
            bytes[at],
            at + 1
        )
    })
}

fn csv_row(columns: &[&str], text: &str) -> Result<RawRow, String> {
    let fields = split_csv(text)?;
    if fields.len() != columns.len() {
        return Err(format!(
            "expected {} fields ({}), found {}",
            columns.len(),
            columns.join(","),
            fields.len()
        ));
    }
    let mut row = RawRow::default();
    for (column, value) in columns.iter().zip(fields) {
        let value = Some(value.trim_ascii().to_owned()).filter(|v| !v.is_empty());
        let slot = match *column {
            "txn_id" => &mut row.txn_id,
            "warehouse_id" => &mut row.warehouse_id,
            "sku" => &mut row.sku,
            "operation" => &mut row.operation,
            // The header holds nothing else.
            _ => {
                row.quantity = value.map(serde_json::Value::String);
                continue;
            }
        };
        *slot = value;
    }
    Ok(row)
}

fn json_row(text: &str) -> Result<RawRow, String> {
    // serde quotes unknown field names as they are: escape its message.
    serde_json::from_str(text).map_err(|e| {
        format!(
            "invalid JSON: {}",
            escape(e.to_string().as_bytes(), QUOTE_CHARS)
        )
    })
}

fn validate(line: usize, row: RawRow) -> Result<Transaction, String> {
    let warehouse_id = identifier("warehouse_id", row.warehouse_id)?;
    let sku = identifier("sku", row.sku)?;
    let op_text = field("operation", row.operation)?;
    let operation = Kind::ALL
        .into_iter()
        .find(|k| k.as_str().eq_ignore_ascii_case(&op_text))
        .ok_or_else(|| {
            format!("unknown operation {op_text:?} (expected receive, ship or adjust)")
        })?;
    let quantity = quantity(row.quantity)?;
    match operation {
        Kind::Receive | Kind::Ship if quantity <= 0 => {
            return Err(format!(
                "{operation} needs a positive quantity, got {quantity}"
            ));
        }
        Kind::Adjust if quantity == 0 => {
            return Err("adjust needs a non-zero quantity".into());
        }
        _ => {}
    }
    let txn_id = row.txn_id.map(txn_id).transpose()?;
    Ok(Transaction {
        line,
        txn_id,
        warehouse_id,
        sku,
        operation,
        quantity,
    })
}

/// A required text field, trimmed of ASCII whitespace only (any other space is non-printable, so
/// a value padded with one is rejected rather than silently changed), within the length limit.
fn field(name: &str, value: Option<String>) -> Result<String, String> {
    let value = value
        .map(|v| v.trim_ascii().to_owned())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("missing {name}"))?;
    let chars = value.chars().count();
    if chars > MAX_FIELD_LEN {
        return Err(format!(
            "{name} is {chars} characters long, the limit is {MAX_FIELD_LEN}"
        ));
    }
    Ok(value)
}

/// A field that names something: printable characters only, since it is shown on terminals and
/// in the API's messages.
fn identifier(name: &str, value: Option<String>) -> Result<String, String> {
    let value = field(name, value)?;
    match value.chars().enumerate().find(|&(_, c)| !is_printable(c)) {
        Some((i, c)) => Err(format!(
            "{name} holds the non-printable character {c:?} at position {}",
            i + 1
        )),
        None => Ok(value),
    }
}

/// The idempotency key: printable ASCII only, since it travels as an HTTP header.
fn txn_id(value: String) -> Result<String, String> {
    let value = field("txn_id", Some(value))?;
    match value
        .chars()
        .enumerate()
        .find(|&(_, c)| !(c == ' ' || c.is_ascii_graphic()))
    {
        Some((i, c)) => Err(format!(
            "txn_id holds {c:?} at position {}: it is sent as the Idempotency-Key header, \
             which takes printable ASCII only",
            i + 1
        )),
        None => Ok(value),
    }
}

fn quantity(value: Option<serde_json::Value>) -> Result<i64, String> {
    use serde_json::Value;
    let not_whole = || "quantity is not a whole number".to_owned();
    let out_of_range = || {
        format!(
            "quantity is out of range: it must lie between {} and {}",
            i64::MIN,
            i64::MAX
        )
    };
    match value {
        None => Err("missing quantity".into()),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| {
            // Integers past i64 arrive as u64 or as floats of that size.
            if n.is_u64() || n.as_f64().is_some_and(|f| f.abs() >= 2f64.powi(63)) {
                out_of_range()
            } else {
                not_whole()
            }
        }),
        Some(Value::String(s)) => s.trim_ascii().parse::<i64>().map_err(|e| match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                out_of_range()
            }
            _ => not_whole(),
        }),
        Some(_) => Err(not_whole()),
    }
}

/// Splits one CSV line (RFC 4180 quoting, no embedded newlines).
fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (false, '"') if at_start => quoted = true,
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => {
                quoted = false;
                if !matches!(chars.peek(), None | Some(',')) {
                    return Err("bad CSV: text after a closing quote".into());
                }
            }
            (false, ',') => {
                fields.push(std::mem::take(&mut field));
                at_start = true;
                continue;
            }
            (false, '"') => return Err("bad CSV: quote inside an unquoted field".into()),
            (_, c) => field.push(c),
        }
        at_start = false;
    }
    if quoted {
        return Err("bad CSV: unterminated quoted field".into());
    }
    fields.push(field);
    Ok(fields)
}

/// A non-blank line: its 1-based number and its bytes without the line end; when `cut`, only
/// its first bytes (more than [`MAX_LINE_BYTES`]), the rest still unread.
struct Line<'a> {
    number: usize,
    bytes: &'a [u8],
    cut: bool,
}

/// The non-blank lines of a reader. Holds at most `MAX_LINE_BYTES + 2` bytes of a line, and
/// [`SKIP_CHUNK`] while it skips the rest of a longer one.
struct Lines<R> {
    reader: R,
    buf: Vec<u8>,
    /// The number of the line in `buf`.
    number: usize,
    /// The line in `buf` was cut; its rest has not been read yet.
    rest_unread: bool,
}

impl<R: BufRead> Lines<R> {
    /// Refuses, from its first block, an input that is not UTF-8 text at all.
    fn new(mut reader: R) -> Result<Self, ReadError> {
        let head = reader.fill_buf()?;
        if head.starts_with(b"\xff\xfe") || head.starts_with(b"\xfe\xff") {
            return Err(ReadError::Utf16);
        }
        let head = &head[..head.len().min(SNIFF_BYTES)];
        if let Some(at) = head.iter().position(|&b| b == 0) {
            let before = &head[..at];
            let start = before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            let end = head[at..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(head.len(), |i| at + i);
            return Err(ReadError::NotText {
                line: before.iter().filter(|&&b| b == b'\n').count() + 1,
                column: at - start + 1,
                start: escape(&head[start..end], BINARY_CHARS),
            });
        }
        Ok(Self {
            reader,
            buf: Vec::new(),
            number: 0,
            rest_unread: false,
        })
    }

    fn next(&mut self) -> Result<Option<Line<'_>>, ReadError> {
        // Room for a line at the limit and its CRLF.
        const TAKE: u64 = MAX_LINE_BYTES as u64 + 2;
        loop {
            if self.rest_unread {
                self.skip_rest()?;
            }
            self.buf.clear();
            let n = (&mut self.reader)
                .take(TAKE)
                .read_until(b'\n', &mut self.buf)?;
            if n == 0 {
                return Ok(None);
            }
            self.number += 1;
            if self.buf.last() == Some(&b'\n') {
                self.buf.pop();
                if self.buf.last() == Some(&b'\r') {
                    self.buf.pop();
                }
            } else {
                self.rest_unread = n as u64 == TAKE;
            }
            if self.number == 1 && self.buf.starts_with(b"\xef\xbb\xbf") {
                self.buf.drain(..3);
            }
            let cut = self.rest_unread || self.buf.len() > MAX_LINE_BYTES;
            if cut || !self.buf.iter().all(u8::is_ascii_whitespace) {
                return Ok(Some(Line {
                    number: self.number,
                    bytes: &self.buf,
                    cut,
                }));
            }
        }
    }

    /// Reads to the end of a cut line, a chunk at a time; returns the line's length in bytes
    /// (without its line end).
    fn skip_rest(&mut self) -> io::Result<usize> {
        let mut len = self.buf.len();
        let mut last = self.buf.last().copied();
        while self.rest_unread {
            self.buf.clear();
            let n = (&mut self.reader)
                .take(SKIP_CHUNK)
                .read_until(b'\n', &mut self.buf)?;
            len += n;
            if self.buf.last() == Some(&b'\n') {
                let before = self.buf.len().checked_sub(2).map(|i| self.buf[i]);
                len -= if before.or(last) == Some(b'\r') { 2 } else { 1 };
                self.rest_unread = false;
            } else if n == 0 {
                self.rest_unread = false;
            }
            last = self.buf.last().copied().or(last);
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(body: &str) -> Parsed {
        csv_bytes(body.as_bytes())
    }

    fn csv_bytes(body: &[u8]) -> Parsed {
        let input = [format!("{CSV_HEADER}\n").as_bytes(), body].concat();
        let parsed = read(input.as_slice(), Format::Csv).unwrap();
        assert!(parsed.counts_add_up(), "{parsed:?}");
        parsed
    }

    fn reasons(p: &Parsed) -> Vec<(usize, &str)> {
        p.rejected
            .iter()
            .map(|r| (r.line, r.reason.as_str()))
            .collect()
    }

    fn read_error(input: &[u8], format: Format) -> String {
        read(input, format).unwrap_err().to_string()
    }

    #[test]
    fn valid_csv_rows_become_transactions() {
        let p = csv(
            "t1,WH-01,SKU-00001,receive,5\n,WH-02,SKU-00002,SHIP,3\nt3,WH-01,\"SKU-00003\",adjust,-2\n",
        );
        assert_eq!(p.rejected, vec![]);
        assert_eq!(p.transactions.len(), 3);
        let t = &p.transactions[1];
        assert_eq!(
            (t.line, t.txn_id.as_deref(), t.operation, t.quantity),
            (3, None, Kind::Ship, 3)
        );
        assert_eq!(p.transactions[2].quantity, -2);
    }

    #[test]
    fn malformed_rows_are_rejected_with_line_and_reason() {
        let long = "X".repeat(MAX_FIELD_LEN + 1);
        let p = csv(&format!(
            "t1,WH-01,SKU-1,receive,5\n\
             t2,WH-01,,receive,5\n\
             t3,WH-01,SKU-1,teleport,5\n\
             t4,WH-01,SKU-1,ship,lots\n\
             t5,WH-01,SKU-1,ship\n\
             t6,WH-01,{long},ship,1\n\
             t7,WH-01,\"SKU-1,ship,1\n\
             t8,WH-01,SKU-1,ship,0\n\
             t9,WH-01,SKU-1,ship,2\n"
        ));
        assert_eq!(
            p.transactions.iter().map(|t| t.line).collect::<Vec<_>>(),
            vec![2, 10]
        );
        let reasons: Vec<(usize, &str)> = p
            .rejected
            .iter()
            .map(|r| (r.line, r.reason.as_str()))
            .collect();
        assert_eq!(reasons[0], (3, "missing sku"));
        assert!(
            reasons[1].1.contains("unknown operation \"teleport\""),
            "{reasons:?}"
        );
        assert_eq!(reasons[2], (5, "quantity is not a whole number"));
        assert!(reasons[3].1.starts_with("expected 5 fields"), "{reasons:?}");
        assert!(reasons[4].1.contains("the limit is 64"), "{reasons:?}");
        assert!(reasons[5].1.starts_with("bad CSV"), "{reasons:?}");
        assert_eq!(reasons[6], (9, "ship needs a positive quantity, got 0"));
        assert_eq!(p.rows(), 9);
    }

    #[test]
    fn json_lines_accept_numbers_and_reject_bad_json() {
        let input = r#"{"txn_id":"a","warehouse_id":"WH-01","sku":"SKU-1","operation":"receive","quantity":4}
{"warehouse_id":"WH-01","sku":"SKU-1","operation":"ship","quantity":"2"}
{not json}
{"warehouse_id":"WH-01","sku":"SKU-1","operation":"ship","quantity":1.5}
"#;
        let p = read(input.as_bytes(), Format::JsonLines).unwrap();
        assert_eq!(p.transactions.len(), 2);
        assert_eq!(p.rejected.len(), 2);
        assert_eq!(p.rejected[0].line, 3);
        assert!(p.rejected[0].reason.starts_with("invalid JSON"));
        assert_eq!(p.rejected[1].reason, "quantity is not a whole number");
    }

    #[test]
    fn format_follows_the_extension() {
        assert_eq!(Format::from_path(Path::new("a.jsonl")), Format::JsonLines);
        assert_eq!(Format::from_path(Path::new("a.csv")), Format::Csv);
    }

    #[test]
    fn a_row_that_is_not_utf8_is_rejected_alone() {
        let p = csv_bytes(
            b"t1,WH-01,SKU-1,receive,5\nt2,WH-01,SK\xff\xfe,receive,5\nt3,WH-01,SKU-1,ship,1\n",
        );
        assert_eq!(
            p.transactions.iter().map(|t| t.line).collect::<Vec<_>>(),
            vec![2, 4]
        );
        assert_eq!(
            reasons(&p),
            vec![(
                3,
                "not valid UTF-8: byte 0xff at column 12 (the file must be UTF-8)"
            )]
        );
        assert_eq!(p.rejected[0].raw, r"t2,WH-01,SK\xff\xfe,receive,5");
    }

    #[test]
    fn a_binary_file_is_refused_with_where() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0";
        for format in [Format::Csv, Format::JsonLines] {
            assert_eq!(
                read_error(png, format),
                r"not a text file: line 3 has a NUL byte at column 1 (`\0\0\0\rIHDR\0\0`)"
            );
        }
        assert!(read_error(b"\xff\xfet\0x\0n\0", Format::Csv).contains("UTF-16"));
        // Past the first 8 KiB a NUL is one bad row among good ones.
        let mut late = "t1,WH-01,SKU-1,receive,5\n".repeat(400).into_bytes();
        late.extend(b"t2,WH-01,SKU\0,receive,5\n");
        let p = csv_bytes(&late);
        assert_eq!((p.transactions.len(), p.rejected.len()), (400, 1));
        assert!(p.rejected[0].reason.contains(r"'\0'"), "{p:?}");
    }

    #[test]
    fn identifiers_must_be_printable_and_nothing_raw_is_kept() {
        let p = csv("t1,WH-01,\x1b[31mRED,receive,5\n\
             t2,WH\u{202e}10,SKU-1,receive,5\n\
             t\u{e9},WH-01,SKU-1,receive,5\n\
             t4,WH-01,SKU\u{a0}1,receive,5\n\
             t5,WH-01,Größe-7 ü,receive,5\n\
             t6,WH-01,SKU-1\u{a0},receive,5\n");
        assert_eq!(
            reasons(&p),
            vec![
                (
                    2,
                    r"sku holds the non-printable character '\u{1b}' at position 1"
                ),
                (
                    3,
                    r"warehouse_id holds the non-printable character '\u{202e}' at position 3"
                ),
                (
                    4,
                    "txn_id holds 'é' at position 2: it is sent as the Idempotency-Key header, \
                     which takes printable ASCII only"
                ),
                (
                    5,
                    r"sku holds the non-printable character '\u{a0}' at position 4"
                ),
                // Padding other than ASCII is not trimmed away: the value is refused.
                (
                    7,
                    r"sku holds the non-printable character '\u{a0}' at position 6"
                ),
            ]
        );
        assert_eq!(p.transactions[0].sku, "Größe-7 ü");
        for r in &p.rejected {
            assert!(
                r.raw
                    .chars()
                    .chain(r.reason.chars())
                    .all(crate::untrusted::is_printable),
                "{r:?}"
            );
        }
        assert_eq!(p.rejected[0].raw, r"t1,WH-01,\u{1b}[31mRED,receive,5");
    }

    #[test]
    fn a_huge_field_is_rejected_by_length_and_skipped_in_bounded_memory() {
        for size in [100_000, 10_000_000] {
            let mut input = format!("{CSV_HEADER}\nt1,WH-01,").into_bytes();
            input.extend(std::iter::repeat_n(b'S', size));
            input.extend(b",receive,5\nt2,WH-01,SKU-1,receive,5\n");
            let mut lines = Lines::new(input.as_slice()).unwrap();
            let columns = read_header(&mut lines).unwrap();
            let mut p = Parsed::default();
            read_rows(&mut lines, &mut p, |text| csv_row(&columns, text)).unwrap();
            let reason = format!("the row is {} bytes long, the limit is 4096", size + 19);
            assert_eq!(reasons(&p), vec![(2, reason.as_str())]);
            assert_eq!(p.transactions[0].line, 3);
            assert!(p.rejected[0].raw.ends_with("SSS…"));
            // What the row cost: one chunk of the skip, whatever its length.
            let held = lines.buf.capacity();
            assert!(held <= 2 * SKIP_CHUNK as usize, "{held} bytes held");
        }
    }

    #[test]
    fn one_endless_line() {
        // CSV: an endless header fails at once, without reading on (this reader never ends).
        let endless = io::BufReader::new(io::repeat(b'x'));
        let e = read(endless, Format::Csv).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "line 1: cannot read the header: it is longer than 4096 bytes; the header must name"
            ),
            "{e}"
        );
        // JSON lines: the endless row is rejected, the next one read.
        let row = r#"{"warehouse_id":"WH-01","sku":"SKU-1","operation":"receive","quantity":1}"#;
        let rest = format!("x\n{row}\n");
        let input = io::BufReader::new(io::repeat(b' ').take(64 << 20)).chain(rest.as_bytes());
        let p = read(input, Format::JsonLines).unwrap();
        assert_eq!(
            reasons(&p),
            vec![(1, "the row is 67108865 bytes long, the limit is 4096")]
        );
        assert_eq!(p.transactions[0].line, 2);
    }

    #[test]
    fn quantities_that_overflow_are_out_of_range() {
        let range = "quantity is out of range: it must lie between -9223372036854775808 and 9223372036854775807";
        let p = csv("t1,WH-01,SKU-1,receive,9223372036854775808\n\
             t2,WH-01,SKU-1,adjust,-99999999999999999999999\n\
             t3,WH-01,SKU-1,adjust,-9223372036854775808\n\
             t4,WH-01,SKU-1,receive,9223372036854775807\n");
        assert_eq!(reasons(&p), vec![(2, range), (3, range)]);
        assert_eq!(
            p.transactions
                .iter()
                .map(|t| t.quantity)
                .collect::<Vec<_>>(),
            vec![i64::MIN, i64::MAX]
        );
        let json = |q: &str| {
            format!(r#"{{"warehouse_id":"W","sku":"S","operation":"adjust","quantity":{q}}}"#)
        };
        for (q, reason) in [
            ("18446744073709551615", range),
            ("1e300", range),
            ("-1e19", range),
            ("1.5", "quantity is not a whole number"),
            ("[1]", "quantity is not a whole number"),
        ] {
            let p = read(json(q).as_bytes(), Format::JsonLines).unwrap();
            assert_eq!(reasons(&p), vec![(1, reason)], "{q}");
        }
    }

    #[test]
    fn rows_with_too_few_or_too_many_fields() {
        let p = csv("t1,WH-01,SKU-1,receive\nt2,WH-01,SKU-1,receive,5,extra\n,,,,\n");
        let expected = "(txn_id,warehouse_id,sku,operation,quantity)";
        assert_eq!(
            reasons(&p),
            vec![
                (2, format!("expected 5 fields {expected}, found 4").as_str()),
                (3, format!("expected 5 fields {expected}, found 6").as_str()),
                (4, "missing warehouse_id"),
            ]
        );
        let p = read(
            br#"{"warehouse_id":"W","sku":"S","operation":"ship","quantity":1,"note":"x"}"#
                .as_slice(),
            Format::JsonLines,
        )
        .unwrap();
        assert!(
            p.rejected[0]
                .reason
                .starts_with("invalid JSON: unknown field `note`"),
            "{p:?}"
        );
    }

    #[test]
    fn the_header_is_checked_and_read_by_name() {
        let reordered = "sku,quantity,operation,warehouse_id\nSKU-1,5,receive,WH-01\n";
        let p = read(reordered.as_bytes(), Format::Csv).unwrap();
        assert_eq!(
            (
                p.transactions[0].sku.as_str(),
                p.transactions[0].warehouse_id.as_str(),
                p.transactions[0].quantity
            ),
            ("SKU-1", "WH-01", 5)
        );
        for (input, problem) in [
            (
                "t1,WH-01,SKU-1,receive,5\n",
                "the header `t1,WH-01,SKU-1,receive,5` names an unknown column \"t1\" (is the header missing?)",
            ),
            (
                "txn_id,warehouse,sku,operation,quantity\n",
                "the header `txn_id,warehouse,sku,operation,quantity` names an unknown column \"warehouse\"",
            ),
            (
                "txn_id,sku,sku,operation,quantity\n",
                "the header `txn_id,sku,sku,operation,quantity` names \"sku\" twice",
            ),
            (
                "txn_id,warehouse_id,sku,operation\n",
                "the header `txn_id,warehouse_id,sku,operation` lacks \"quantity\"",
            ),
            (
                "\"txn_id,warehouse_id\n",
                "cannot read the header: bad CSV: unterminated quoted field",
            ),
        ] {
            assert_eq!(
                read_error(input.as_bytes(), Format::Csv),
                format!(
                    "line 1: {problem}; the header must name the columns {CSV_HEADER} (in any order; txn_id may be left out)"
                )
            );
        }
    }

    #[test]
    fn crlf_a_bom_and_blank_lines_are_plain_text() {
        let input = format!(
            "\u{feff}{CSV_HEADER}\r\n\r\nt1,WH-01,SKU-1,receive,5\r\n  \r\nt2,WH-01,SKU-1,ship,2"
        );
        let p = read(input.as_bytes(), Format::Csv).unwrap();
        assert_eq!(p.rejected, vec![]);
        assert_eq!(
            p.transactions
                .iter()
                .map(|t| (t.line, t.txn_id.as_deref()))
                .collect::<Vec<_>>(),
            vec![(3, Some("t1")), (5, Some("t2"))]
        );
        let json = "\u{feff}{\"warehouse_id\":\"W\",\"sku\":\"S\",\"operation\":\"ship\",\"quantity\":1}\r\n";
        assert_eq!(
            read(json.as_bytes(), Format::JsonLines)
                .unwrap()
                .transactions
                .len(),
            1
        );
    }

    #[test]
    fn an_empty_file_says_so() {
        for input in ["", "\n\r\n  \n"] {
            assert_eq!(
                read_error(input.as_bytes(), Format::Csv),
                "the file is empty: expected the CSV header and rows"
            );
            assert_eq!(
                read_error(input.as_bytes(), Format::JsonLines),
                "the file is empty: expected one JSON object per line"
            );
        }
        // A header without rows is a valid, empty input.
        assert_eq!(read(CSV_HEADER.as_bytes(), Format::Csv).unwrap().rows(), 0);
    }
}
