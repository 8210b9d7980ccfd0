//! The input parser under a seeded fuzz pass that runs on stable Rust: hostile CSV and JSON-lines
//! files (valid rows next to rows built from hostile fields, then mutated byte by byte) and raw
//! byte strings, each checked against the promises in `parser_props`; every valid row the
//! generator wrote must come out as exactly that transaction, at its line.
//!
//! `cargo test` runs a short pass, bounded in count and time. The long run sets the count (and
//! `INVBOT_FUZZ_SEED` another sequence):
//!
//! ```text
//! INVBOT_FUZZ_CASES=10000000 cargo test --release -p invbot --test parser_fuzz -- --nocapture
//! ```

mod parser_props;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use invbot::input::{CSV_HEADER, Format, MAX_FIELD_LEN, ReadError, Transaction};
use inventory_api::Kind;

/// The short pass: this many cases, or fewer when the time is up first.
const SHORT_CASES: u64 = 200_000;
const SHORT_TIME: Duration = Duration::from_secs(25);
/// A short pass that checks fewer cases than this proves little: fail rather than pass quietly.
const SHORT_MIN_CASES: u64 = 5_000;
/// Peak resident memory the whole pass may reach (inputs are at most a few MB each).
const MAX_RSS_BYTES: u64 = 256 << 20;

#[test]
fn the_parser_keeps_its_promises_on_hostile_input() {
    let long = env_u64("INVBOT_FUZZ_CASES");
    let seed = env_u64("INVBOT_FUZZ_SEED").unwrap_or(15);
    let (count, deadline) = match long {
        Some(n) => (n, None),
        None => (SHORT_CASES, Some(Instant::now() + SHORT_TIME)),
    };
    // One generator per core, each with its own seed: the sequence per thread is fixed.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let started = Instant::now();
    let stats = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let share = count / threads + u64::from(t < count % threads);
                scope.spawn(move || {
                    fuzz(
                        seed.wrapping_add(t),
                        share,
                        deadline,
                        long.is_some() && t == 0,
                    )
                })
            })
            .collect();
        let mut total = Stats::default();
        for worker in workers {
            match worker.join() {
                Ok(stats) => total.add(stats),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        total
    });
    let rss = peak_rss();
    eprintln!(
        "seed {seed}, {threads} threads: {} cases ({} MB) in {:.1?}; {} transactions, {} \
         rejected rows, read errors {:?}; peak RSS {} MB",
        stats.cases,
        stats.bytes >> 20,
        started.elapsed(),
        stats.transactions,
        stats.rejected,
        stats.errors,
        rss.map_or_else(|| "unknown".to_owned(), |b| (b >> 20).to_string()),
    );
    assert!(stats.cases >= count.min(SHORT_MIN_CASES), "{stats:?}");
    if let Some(rss) = rss {
        assert!(rss < MAX_RSS_BYTES, "peak RSS {rss} bytes");
    }
}

/// Checks `count` cases from the generator seeded with `seed`, or fewer if the deadline passes.
fn fuzz(seed: u64, count: u64, deadline: Option<Instant>, progress: bool) -> Stats {
    let mut generator = Generator(fastrand::Rng::with_seed(seed));
    let mut stats = Stats::default();
    let started = Instant::now();
    for i in 1..=count {
        if deadline.is_some_and(|d| Instant::now() > d) {
            break;
        }
        let case = generator.case();
        stats.cases += 1;
        stats.bytes += case.data.len() as u64;
        stats.count(&check_case(&case));
        if progress && i % (count / 10).max(1) == 0 {
            eprintln!("thread 0: {i} cases, {:.0?}", started.elapsed());
        }
    }
    stats
}

/// Checks both readings of the case's bytes, and what the generator knows of its own format.
fn check_case(case: &Case) -> Result<invbot::input::Parsed, ReadError> {
    let other = match case.format {
        Format::Csv => Format::JsonLines,
        Format::JsonLines => Format::Csv,
    };
    let _ = parser_props::check_format(&case.data, other);
    let result = parser_props::check_format(&case.data, case.format);
    let binary = case.data[..case.data.len().min(8192)].contains(&0);
    // Readable: not binary and, in CSV, a valid header; then only JSON lines may be empty.
    let readable = !binary && (case.header_ok || case.format == Format::JsonLines);
    if readable && (case.format == Format::Csv || !case.expected.is_empty()) {
        let parsed = result
            .as_ref()
            .unwrap_or_else(|e| panic!("{e} for {:?}", lossy(case)));
        for want in &case.expected {
            let got = parsed.transactions.iter().find(|t| t.line == want.line);
            assert_eq!(got, Some(want), "line {} of {:?}", want.line, lossy(case));
        }
    }
    result
}

fn lossy(case: &Case) -> String {
    let text = String::from_utf8_lossy(&case.data);
    text.chars().take(2_000).collect()
}

#[derive(Debug, Default)]
struct Stats {
    cases: u64,
    bytes: u64,
    transactions: u64,
    rejected: u64,
    errors: BTreeMap<&'static str, u64>,
}

impl Stats {
    fn add(&mut self, other: Self) {
        self.cases += other.cases;
        self.bytes += other.bytes;
        self.transactions += other.transactions;
        self.rejected += other.rejected;
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
    }

    fn count(&mut self, result: &Result<invbot::input::Parsed, ReadError>) {
        match result {
            Ok(p) => {
                self.transactions += p.transactions.len() as u64;
                self.rejected += p.rejected.len() as u64;
            }
            Err(e) => {
                let kind = match e {
                    ReadError::Io(_) => "io",
                    ReadError::Empty(_) => "empty",
                    ReadError::NotText { .. } => "not_text",
                    ReadError::Utf16 => "utf16",
                    ReadError::Header { .. } => "header",
                };
                *self.errors.entry(kind).or_default() += 1;
            }
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
    )
}

/// Peak resident set of this process (Linux), in bytes.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    Some(
        kb.trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()?
            * 1024,
    )
}

/// One generated input.
struct Case {
    data: Vec<u8>,
    format: Format,
    /// A CSV file whose header the parser must accept.
    header_ok: bool,
    /// The valid rows written, as the parser must read them.
    expected: Vec<Transaction>,
}

/// Field values that have broken parsers: controls, escapes, bidi and invisible characters,
/// bytes that are not UTF-8, numbers past i64, quoting and JSON syntax. None holds `\n`: each
/// row stays on its line, so the lines after it keep their numbers.
const HOSTILE: &[&[u8]] = &[
    b"",
    b"   ",
    b"\x1b[31mRED",
    b"\x1b]0;title\x07",
    b"\x9b31m",
    "\u{9b}31m".as_bytes(),
    "a\u{202e}b".as_bytes(),
    "x\u{a0}y".as_bytes(),
    "\u{200b}".as_bytes(),
    "\u{feff}SKU".as_bytes(),
    "e\u{301}".as_bytes(),
    b"\0",
    b"SK\xff\xfe",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\xc0\xaf",
    b"\xf4\x90\x80\x80",
    b"99999999999999999999",
    b"-9223372036854775809",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"0",
    b"-0",
    b"1e3",
    b"1.0",
    b"0x10",
    b"--1",
    b"+",
    "١٢".as_bytes(),
    b"NaN",
    b"teleport",
    b"RECEIVE",
    b"a\"b",
    b"\"unterminated",
    b"\"x\"y",
    b",",
    b",,,,,",
    b"\\",
    b"\\u0000",
    b"\r",
    b"\t",
    b"{}",
    b"[]",
    b"null",
    b"true",
    b"{\"a\":",
    b"\"",
];

/// Characters of valid identifiers: mostly plain, some that need CSV quoting or JSON escapes,
/// some multi-byte.
const ID_CHARS: &[char] = &[
    'A', 'B', 'K', 'S', 'U', 'W', 'H', 'x', 'z', '0', '1', '7', '9', '-', '-', '_', '.', ' ', ',',
    '"', '\'', '\\', '{', '}', ':', 'é', 'ß', 'Ж', '漢', '😀',
];

struct Generator(fastrand::Rng);

impl Generator {
    fn case(&mut self) -> Case {
        match self.0.u8(0..100) {
            0..5 => self.raw_bytes(),
            _ => self.file(),
        }
    }

    /// Bytes with no structure, biased towards the bytes the parser branches on.
    fn raw_bytes(&mut self) -> Case {
        const SPECIAL: &[u8] = b",\"\n\r{}:[] \t\\0123456789\x00\xff\xef\xbb\xbf\x1b";
        let len = self.0.usize(0..600);
        let mut data = Vec::with_capacity(len + CSV_HEADER.len());
        match self.0.u8(0..10) {
            0..5 => data.extend(format!("{CSV_HEADER}\n").as_bytes()),
            5 => data.extend(b"\xff\xfe"),
            _ => {}
        }
        for _ in 0..len {
            data.push(match self.0.u8(0..4) {
                0 => self.0.u8(..),
                _ => SPECIAL[self.0.usize(..SPECIAL.len())],
            });
        }
        Case {
            data,
            format: self.format(),
            header_ok: false,
            expected: Vec::new(),
        }
    }

    fn format(&mut self) -> Format {
        if self.0.bool() {
            Format::Csv
        } else {
            Format::JsonLines
        }
    }

    /// A file of valid, hostile and blank rows, with a header in CSV.
    fn file(&mut self) -> Case {
        let format = self.format();
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let mut header_ok = false;
        let mut columns: Vec<&'static str> = CSV_HEADER.split(',').collect();
        if format == Format::Csv {
            (columns, header_ok) = self.header();
            let names: Vec<String> = columns.iter().map(|c| self.cased(c)).collect();
            lines.push(names.join(",").into_bytes());
        }
        let mut expected = Vec::new();
        let rows = match self.0.u8(0..20) {
            0 => 0,
            1 => self.0.usize(50..300),
            _ => self.0.usize(1..12),
        };
        for _ in 0..rows {
            let line = lines.len() + 1;
            match self.0.u8(0..20) {
                0 => lines.push(self.blank()),
                1..10 => {
                    let t = self.transaction(line, format, &columns);
                    lines.push(self.write(&t, format, &columns));
                    expected.push(t);
                }
                _ => lines.push(self.hostile_row(line, format, &columns)),
            }
        }
        let mut data = Vec::new();
        if self.0.u8(0..20) == 0 {
            data.extend(b"\xef\xbb\xbf");
        }
        let crlf = match self.0.u8(0..10) {
            0..7 => Some(false),
            7..9 => Some(true),
            _ => None, // mixed
        };
        let last = lines.len();
        for (i, line) in lines.into_iter().enumerate() {
            data.extend(line);
            if i + 1 < last || self.0.u8(0..4) != 0 {
                if crlf.unwrap_or_else(|| self.0.bool()) {
                    data.push(b'\r');
                }
                data.push(b'\n');
            }
        }
        Case {
            data,
            format,
            header_ok,
            expected,
        }
    }

    /// The CSV header's columns, and whether the parser must accept them: usually all of them
    /// in some order, sometimes without `txn_id`, sometimes broken.
    fn header(&mut self) -> (Vec<&'static str>, bool) {
        let mut columns: Vec<&'static str> = CSV_HEADER.split(',').collect();
        self.0.shuffle(&mut columns);
        match self.0.u8(0..20) {
            0..14 => (columns, true),
            14..17 => {
                columns.retain(|&c| c != "txn_id");
                (columns, true)
            }
            17 => {
                let dropped = columns.pop();
                (columns, dropped == Some("txn_id"))
            }
            18 => {
                columns.push(columns[0]);
                (columns, false)
            }
            _ => {
                columns[0] = "t1";
                (columns, false)
            }
        }
    }

    /// `name` in upper case now and then: column names and operations are read case-blind.
    fn cased(&mut self, name: &str) -> String {
        if self.0.u8(0..8) == 0 {
            name.to_ascii_uppercase()
        } else {
            name.to_owned()
        }
    }

    fn blank(&mut self) -> Vec<u8> {
        [&b""[..], b" ", b"\t ", b"\r"][self.0.usize(..4)].to_vec()
    }

    fn transaction(&mut self, line: usize, format: Format, columns: &[&str]) -> Transaction {
        let operation = Kind::ALL[self.0.usize(..Kind::ALL.len())];
        let mut quantity = match self.0.u8(0..4) {
            0 => self.0.i64(1..=i64::MAX),
            1 => i64::MAX,
            _ => self.0.i64(1..1_000),
        };
        if operation == Kind::Adjust && self.0.bool() {
            quantity = if self.0.u8(0..8) == 0 {
                i64::MIN
            } else {
                -quantity
            };
        }
        let has_txn_id = format == Format::JsonLines || columns.contains(&"txn_id");
        Transaction {
            line,
            txn_id: (has_txn_id && self.0.bool()).then(|| {
                const KEY_CHARS: &[u8] = b"gen-0123456789:ABCxyz_.";
                let len = self.0.usize(1..=MAX_FIELD_LEN);
                (0..len)
                    .map(|_| char::from(KEY_CHARS[self.0.usize(..KEY_CHARS.len())]))
                    .collect()
            }),
            warehouse_id: self.id(),
            sku: self.id(),
            operation,
            quantity,
        }
    }

    /// A valid identifier: 1 to 64 printable characters, no space at either end.
    fn id(&mut self) -> String {
        let len = match self.0.u8(0..10) {
            0 => MAX_FIELD_LEN,
            _ => self.0.usize(1..12),
        };
        let mut id: Vec<char> = (0..len)
            .map(|_| ID_CHARS[self.0.usize(..ID_CHARS.len())])
            .collect();
        for end in [0, len - 1] {
            if id[end] == ' ' {
                id[end] = 'X';
            }
        }
        id.into_iter().collect()
    }

    /// A transaction as a CSV row (columns in the header's order) or a JSON object (keys in
    /// any order), quoted, padded and cased in the ways the parser must accept.
    fn write(&mut self, t: &Transaction, format: Format, columns: &[&str]) -> Vec<u8> {
        let operation = self.cased(t.operation.as_str());
        let quantity = if t.quantity > 0 && self.0.u8(0..10) == 0 {
            format!("+{}", t.quantity)
        } else {
            t.quantity.to_string()
        };
        match format {
            Format::Csv => {
                let fields: Vec<String> = columns
                    .iter()
                    .map(|&c| match c {
                        "txn_id" => t.txn_id.clone().unwrap_or_default(),
                        "warehouse_id" => self.csv_field(&t.warehouse_id),
                        "sku" => self.csv_field(&t.sku),
                        "operation" => self.pad(&operation),
                        _ => self.pad(&quantity),
                    })
                    .collect();
                fields.join(",").into_bytes()
            }
            Format::JsonLines => {
                let string = |s: &str| serde_json::Value::from(s).to_string();
                let mut pairs = vec![
                    format!("\"warehouse_id\":{}", string(&t.warehouse_id)),
                    format!("\"sku\":{}", string(&t.sku)),
                    format!("\"operation\":{}", string(&self.pad(&operation))),
                    if self.0.bool() {
                        format!("\"quantity\":{}", t.quantity)
                    } else {
                        format!("\"quantity\":{}", string(&self.pad(&quantity)))
                    },
                ];
                match &t.txn_id {
                    Some(id) => pairs.push(format!("\"txn_id\":{}", string(id))),
                    None if self.0.bool() => pairs.push("\"txn_id\":null".into()),
                    None => {}
                }
                self.0.shuffle(&mut pairs);
                let sep = if self.0.bool() { ", " } else { "," };
                format!("{{{}}}", pairs.join(sep)).into_bytes()
            }
        }
    }

    /// A CSV field holding `value`: quoted when it must be (or when it may), padded otherwise.
    fn csv_field(&mut self, value: &str) -> String {
        if value.contains([',', '"']) || self.0.u8(0..5) == 0 {
            format!("\"{}\"", value.replace('"', "\"\""))
        } else {
            self.pad(value)
        }
    }

    fn pad(&mut self, value: &str) -> String {
        match self.0.u8(0..10) {
            0 => format!(" {value}"),
            1 => format!("{value}  "),
            _ => value.to_owned(),
        }
    }

    /// A row that starts valid and is then broken: hostile field values, missing or extra
    /// fields, a cut, byte flips; a rare one is far over the length limit.
    fn hostile_row(&mut self, line: usize, format: Format, columns: &[&str]) -> Vec<u8> {
        let t = self.transaction(line, format, columns);
        let mut row = self.write(&t, format, columns);
        if self.0.u16(0..500) == 0 {
            let len = if self.0.u16(0..200) == 0 {
                16 << 20
            } else {
                self.0.usize(100_000..1_000_000)
            };
            let at = self.0.usize(..=row.len());
            row.splice(at..at, std::iter::repeat_n(b'S', len));
            return row;
        }
        for _ in 0..self.0.usize(1..4) {
            match self.0.u8(0..10) {
                0..5 => self.replace_value(&mut row, format),
                5 => {
                    let extra: &[u8] = match format {
                        Format::Csv => b",extra",
                        Format::JsonLines => b",\"note\":1}",
                    };
                    // In JSON, in place of the closing brace.
                    let at = match format {
                        Format::Csv => row.len(),
                        Format::JsonLines => row.len().saturating_sub(1),
                    };
                    row.splice(at.., extra.iter().copied());
                }
                6 => {
                    let cut = self.0.usize(..=row.len());
                    row.truncate(cut);
                }
                7 => {
                    let at = self.0.usize(..=row.len());
                    row.splice(at..at, std::iter::repeat_n(b'[', 300));
                }
                _ => self.flip_bytes(&mut row),
            }
        }
        row
    }

    /// Puts a hostile value between two quotes or commas of the row, quoted or raw.
    fn replace_value(&mut self, row: &mut Vec<u8>, format: Format) {
        let value = HOSTILE[self.0.usize(..HOSTILE.len())];
        let (open, close) = match format {
            Format::Csv => (b',', b','),
            Format::JsonLines => (b':', b','),
        };
        let Some(start) = row
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == open)
            .map(|(i, _)| i + 1)
            .nth(self.0.usize(..4))
        else {
            return;
        };
        let end = row[start..]
            .iter()
            .position(|&b| b == close || b == b'}')
            .map_or(row.len(), |i| start + i);
        let replacement: Vec<u8> = match (format, self.0.u8(0..3)) {
            (Format::JsonLines, 0) => {
                let text = String::from_utf8_lossy(value);
                serde_json::Value::from(text.as_ref())
                    .to_string()
                    .into_bytes()
            }
            (Format::Csv, 0) => [&b"\""[..], value, b"\""].concat(),
            _ => value.to_vec(),
        };
        row.splice(start..end, replacement);
    }

    /// Flips, inserts or deletes a few bytes, never a line end.
    fn flip_bytes(&mut self, row: &mut Vec<u8>) {
        for _ in 0..self.0.usize(1..4) {
            let byte = match self.0.u8(..) {
                b'\n' => b'\r',
                b => b,
            };
            match (self.0.u8(0..3), row.is_empty()) {
                (0, false) => {
                    let at = self.0.usize(..row.len());
                    row[at] = byte;
                }
                (1, false) => {
                    row.remove(self.0.usize(..row.len()));
                }
                _ => row.insert(self.0.usize(..=row.len()), byte),
            }
        }
    }
}
