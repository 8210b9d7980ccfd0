//! Reading transactions from CSV or JSON lines. A malformed row never stops the run: it becomes a
//! [`Rejected`] with its line number and reason, and every other row goes on.

use std::fmt;
use std::io::BufRead;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Longest accepted text field; longer values are rejected rather than truncated.
pub const MAX_FIELD_LEN: usize = 64;

/// The CSV header the generator writes and the reader expects.
pub const CSV_HEADER: &str = "txn_id,warehouse_id,sku,operation,quantity";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Receive,
    Ship,
    Adjust,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Receive => "receive",
            Self::Ship => "ship",
            Self::Adjust => "adjust",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "receive" => Some(Self::Receive),
            "ship" => Some(Self::Ship),
            "adjust" => Some(Self::Adjust),
            _ => None,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One valid input row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transaction {
    /// 1-based line in the input file (the header is line 1 in CSV).
    pub line: usize,
    /// Caller-chosen id, used as the idempotency key when present.
    pub txn_id: Option<String>,
    pub warehouse_id: String,
    pub sku: String,
    pub operation: Operation,
    pub quantity: i64,
}

/// A row set aside, with where it was and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    pub line: usize,
    pub reason: String,
    pub raw: String,
}

/// Everything read from one input.
#[derive(Debug, Default)]
pub struct Parsed {
    pub transactions: Vec<Transaction>,
    pub rejected: Vec<Rejected>,
}

impl Parsed {
    pub fn rows(&self) -> usize {
        self.transactions.len() + self.rejected.len()
    }
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
struct RawRow {
    txn_id: Option<String>,
    warehouse_id: Option<String>,
    sku: Option<String>,
    operation: Option<String>,
    quantity: Option<serde_json::Value>,
}

/// Reads every row; I/O errors end the read (and are returned), bad rows are rejected.
pub fn read(reader: impl BufRead, format: Format) -> std::io::Result<Parsed> {
    match format {
        Format::Csv => read_csv(reader),
        Format::JsonLines => read_json_lines(reader),
    }
}

fn read_csv(reader: impl BufRead) -> std::io::Result<Parsed> {
    let mut parsed = Parsed::default();
    let mut lines = reader.lines().enumerate();
    let Some((_, header)) = lines.next() else {
        return Ok(parsed);
    };
    let header = header?;
    let columns: Vec<String> = split_csv(&header)
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.trim().to_owned())
        .collect();
    for (i, line) in lines {
        let line_no = i + 1;
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let row = split_csv(&line).and_then(|fields| {
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
                let value = Some(value.trim().to_owned()).filter(|v| !v.is_empty());
                match column.as_str() {
                    "txn_id" => row.txn_id = value,
                    "warehouse_id" => row.warehouse_id = value,
                    "sku" => row.sku = value,
                    "operation" => row.operation = value,
                    "quantity" => row.quantity = value.map(serde_json::Value::String),
                    _ => {}
                }
            }
            Ok(row)
        });
        push(&mut parsed, line_no, &line, row);
    }
    Ok(parsed)
}

fn read_json_lines(reader: impl BufRead) -> std::io::Result<Parsed> {
    let mut parsed = Parsed::default();
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let row = serde_json::from_str::<RawRow>(&line).map_err(|e| format!("invalid JSON: {e}"));
        push(&mut parsed, i + 1, &line, row);
    }
    Ok(parsed)
}

fn push(parsed: &mut Parsed, line: usize, raw: &str, row: Result<RawRow, String>) {
    match row.and_then(|r| validate(line, r)) {
        Ok(t) => parsed.transactions.push(t),
        Err(reason) => parsed.rejected.push(Rejected {
            line,
            reason,
            raw: raw.chars().take(512).collect(),
        }),
    }
}

fn validate(line: usize, row: RawRow) -> Result<Transaction, String> {
    let text = |name: &str, value: Option<String>| -> Result<String, String> {
        let value = value
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("missing {name}"))?;
        if value.len() > MAX_FIELD_LEN {
            return Err(format!(
                "{name} is {} characters long, the limit is {MAX_FIELD_LEN}",
                value.len()
            ));
        }
        Ok(value)
    };
    let warehouse_id = text("warehouse_id", row.warehouse_id)?;
    let sku = text("sku", row.sku)?;
    let op_text = text("operation", row.operation)?;
    let operation = Operation::parse(&op_text.to_ascii_lowercase()).ok_or_else(|| {
        format!("unknown operation {op_text:?} (expected receive, ship or adjust)")
    })?;
    let quantity = match row.quantity {
        None => return Err("missing quantity".into()),
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) => s.trim().parse::<i64>().ok(),
        Some(_) => None,
    }
    .ok_or_else(|| "quantity is not a whole number".to_owned())?;
    match operation {
        Operation::Receive | Operation::Ship if quantity <= 0 => {
            return Err(format!(
                "{operation} needs a positive quantity, got {quantity}"
            ));
        }
        Operation::Adjust if quantity == 0 => {
            return Err("adjust needs a non-zero quantity".into());
        }
        _ => {}
    }
    let txn_id = row.txn_id.map(|t| text("txn_id", Some(t))).transpose()?;
    Ok(Transaction {
        line,
        txn_id,
        warehouse_id,
        sku,
        operation,
        quantity,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(body: &str) -> Parsed {
        read(format!("{CSV_HEADER}\n{body}").as_bytes(), Format::Csv).unwrap()
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
            (3, None, Operation::Ship, 3)
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
}
