//! Synthetic input (seed 001): a reproducible mix of operations over the API's demo catalog
//! (warehouses WH-01..WH-50, SKUs SKU-00001..SKU-00200), with an optional share of malformed rows and of unknown SKUs.

use std::io::Write;

use crate::input::CSV_HEADER;

use inventory_api::{DEMO_SKUS, DEMO_WAREHOUSES, Kind, demo_sku, demo_warehouse};

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub rows: usize,
    pub seed: u64,
    /// Share of rows written malformed (0..=1).
    pub malformed: f64,
    /// Share of valid rows naming a SKU the catalog does not have (the API answers 404).
    pub unknown_sku: f64,
    pub json_lines: bool,
}

/// Writes `opts.rows` data rows (plus a header in CSV); returns how many are malformed.
pub fn generate(opts: &GenerateOptions, out: &mut impl Write) -> std::io::Result<usize> {
    let mut rng = fastrand::Rng::with_seed(opts.seed);
    let mut malformed = 0;
    if !opts.json_lines {
        writeln!(out, "{CSV_HEADER}")?;
    }
    for n in 1..=opts.rows {
        let txn_id = format!("gen-{}-{n:07}", opts.seed);
        let warehouse = demo_warehouse(rng.usize(1..=DEMO_WAREHOUSES));
        let sku = if rng.f64() < opts.unknown_sku {
            "SKU-99999".to_owned()
        } else {
            demo_sku(rng.usize(1..=DEMO_SKUS))
        };
        let (operation, quantity) = match rng.u32(0..100) {
            0..40 => (Kind::Receive, rng.i64(1..=50)),
            40..85 => (Kind::Ship, rng.i64(1..=20)),
            _ => {
                let q = rng.i64(1..=5);
                (Kind::Adjust, if rng.bool() { q } else { -q })
            }
        };
        let mut fields = [
            txn_id,
            warehouse,
            sku,
            operation.to_string(),
            quantity.to_string(),
        ];
        if rng.f64() < opts.malformed {
            malformed += 1;
            match rng.u32(0..4) {
                0 => fields[3] = "teleport".into(),
                1 => fields[4] = "twelve".into(),
                2 => fields[2] = String::new(),
                _ => fields[2] = "S".repeat(100),
            }
        }
        let [txn_id, warehouse, sku, operation, quantity] = &fields;
        if opts.json_lines {
            // Malformed quantities stay strings so the row is still valid JSON with a bad value.
            let quantity = quantity.parse::<i64>().map_or_else(
                |_| serde_json::Value::from(quantity.as_str()),
                serde_json::Value::from,
            );
            let row = serde_json::json!({
                "txn_id": txn_id, "warehouse_id": warehouse, "sku": sku,
                "operation": operation, "quantity": quantity,
            });
            writeln!(out, "{row}")?;
        } else {
            writeln!(out, "{txn_id},{warehouse},{sku},{operation},{quantity}")?;
        }
    }
    Ok(malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{Format, read};

    fn opts(malformed: f64, json_lines: bool) -> GenerateOptions {
        GenerateOptions {
            rows: 2_000,
            seed: 7,
            malformed,
            unknown_sku: 0.0,
            json_lines,
        }
    }

    #[test]
    fn same_seed_same_output() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        generate(&opts(0.1, false), &mut a).unwrap();
        generate(&opts(0.1, false), &mut b).unwrap();
        assert_eq!(a, b);
        let mut c = Vec::new();
        generate(
            &GenerateOptions {
                seed: 8,
                ..opts(0.1, false)
            },
            &mut c,
        )
        .unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn generated_rows_parse_and_malformed_ones_are_rejected() {
        for json_lines in [false, true] {
            let mut out = Vec::new();
            let malformed = generate(&opts(0.05, json_lines), &mut out).unwrap();
            let format = if json_lines {
                Format::JsonLines
            } else {
                Format::Csv
            };
            let parsed = read(out.as_slice(), format).unwrap();
            assert_eq!(parsed.rows(), 2_000);
            assert_eq!(parsed.rejected.len(), malformed);
            assert!((50..=150).contains(&malformed), "{malformed}");
            let warehouses: std::collections::HashSet<_> = parsed
                .transactions
                .iter()
                .map(|t| &t.warehouse_id)
                .collect();
            assert!(
                warehouses.len() >= 45,
                "about 50 warehouses: {}",
                warehouses.len()
            );
        }
    }
}
