//! The wire types of the HTTP contract, shared with clients (the bot and the tests) so both
//! sides serialize the same shapes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An item of one warehouse: the body of `POST /items` and of `GET /items/{warehouse_id}/{sku}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub warehouse_id: String,
    pub sku: String,
    pub name: String,
    pub quantity: i64,
    pub unit_price: f64,
}

/// What a transaction does to the stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Adds `quantity` (> 0).
    Receive,
    /// Removes `quantity` (> 0).
    Ship,
    /// Adds the signed, non-zero `quantity`.
    Adjust,
}

impl Kind {
    /// In declaration order, so that `kind as usize` indexes it.
    pub const ALL: [Self; 3] = [Self::Receive, Self::Ship, Self::Adjust];

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Receive => "receive",
            Self::Ship => "ship",
            Self::Adjust => "adjust",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of `POST /transactions` (the idempotency key travels in the `Idempotency-Key` header).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionRequest {
    pub warehouse_id: String,
    pub sku: String,
    pub kind: Kind,
    pub quantity: i64,
}

/// The answer to an applied (201) or replayed (200) transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionResponse {
    pub transaction_id: i64,
    pub warehouse_id: String,
    pub sku: String,
    pub kind: Kind,
    pub quantity: i64,
    pub quantity_after: i64,
    pub replayed: bool,
}

/// Every error response: a stable machine-readable code and a message that names the field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
}

/// The demo catalog's size: warehouses `WH-01..=WH-50` times SKUs `SKU-00001..=SKU-00200`.
pub const DEMO_WAREHOUSES: usize = 50;
pub const DEMO_SKUS: usize = 200;
/// The stock every demo item starts with.
pub const DEMO_QUANTITY: i64 = 1000;

/// The id of demo warehouse `n`, counted from 1: `demo_warehouse(1) == "WH-01"`.
pub fn demo_warehouse(n: usize) -> String {
    format!("WH-{n:02}")
}

/// The SKU of demo item `n`, counted from 1: `demo_sku(1) == "SKU-00001"`.
pub fn demo_sku(n: usize) -> String {
    format!("SKU-{n:05}")
}

/// Demo item `sku_n` of demo warehouse `warehouse_n`: the same name and price in every warehouse.
pub(crate) fn demo_item(warehouse_n: usize, sku_n: usize) -> Item {
    Item {
        warehouse_id: demo_warehouse(warehouse_n),
        sku: demo_sku(sku_n),
        name: format!("Item {sku_n:05}"),
        quantity: DEMO_QUANTITY,
        // 1.00 to 99.99, spread over the catalog but fixed per SKU.
        unit_price: (100 + sku_n * 37 % 9_900) as f64 / 100.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_indexes_all_at_its_place() {
        for (at, kind) in Kind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, at, "{kind}");
        }
    }
}
