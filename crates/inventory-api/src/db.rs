//! SQLite: the schema, the queries, and the bridge from async handlers to blocking connections.
//!
//! One writer connection serializes every change (SQLite allows one writer at a time anyway) and
//! one reader serves lookups; in WAL mode the two never block each other.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::metrics::BoundHistogram;
use opentelemetry_semantic_conventions::attribute::{DB_OPERATION_NAME, DB_SYSTEM_NAME};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::model::{DEMO_SKUS, DEMO_WAREHOUSES, Item, TransactionRequest, TransactionResponse};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS items (
    warehouse_id TEXT NOT NULL,
    sku          TEXT NOT NULL,
    name         TEXT NOT NULL,
    quantity     INTEGER NOT NULL CHECK (quantity >= 0),
    unit_price   REAL NOT NULL,
    PRIMARY KEY (warehouse_id, sku)
) WITHOUT ROWID;
-- One row per applied transaction. The key is UNIQUE and the row holds everything the response
-- needs, so a retried request replays the stored answer instead of applying twice.
CREATE TABLE IF NOT EXISTS transactions (
    id              INTEGER PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    warehouse_id    TEXT NOT NULL,
    sku             TEXT NOT NULL,
    kind            TEXT NOT NULL,
    quantity        INTEGER NOT NULL,
    quantity_after  INTEGER NOT NULL,
    applied_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
";

/// Inserts an item unless one with its key exists; `execute` then reports 0 rows.
const INSERT_ITEM: &str = "INSERT INTO items (warehouse_id, sku, name, quantity, unit_price)
    VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING";

/// How long a statement waits for a lock held by another connection or process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[error("cannot open the database {}", path.display())]
pub struct OpenError {
    path: PathBuf,
    #[source]
    source: rusqlite::Error,
}

/// A database call that failed for reasons of the database itself.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("SQLite failed")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the database task did not finish")]
    Task(#[from] tokio::task::JoinError),
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum InsertError {
    #[error("the item already exists")]
    Exists,
    #[error(transparent)]
    Db(#[from] DbError),
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplyError {
    #[error("the idempotency key was used for a different transaction")]
    KeyReused,
    #[error("no such item")]
    UnknownItem,
    #[error("only {available} in stock")]
    InsufficientStock { available: i64 },
    #[error("the stock would exceed the largest storable quantity")]
    Overflow,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The database handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct Db(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    /// Per operation, in [`Op::ALL`] order.
    ops: [OpTelemetry; Op::ALL.len()],
}

/// What an operation's calls record, made once: building them per call (a name formatted, an
/// attribute set looked up by the SDK) cost more than recording them.
#[derive(Debug)]
struct OpTelemetry {
    span_name: String,
    duration: BoundHistogram<f64>,
}

/// The traced database operations.
#[derive(Debug, Clone, Copy)]
enum Op {
    InsertItem,
    GetItem,
    ApplyTransaction,
    SeedDemoCatalog,
}

impl Op {
    /// In declaration order, so that `op as usize` indexes it.
    const ALL: [Self; 4] = [
        Self::InsertItem,
        Self::GetItem,
        Self::ApplyTransaction,
        Self::SeedDemoCatalog,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::InsertItem => "insert_item",
            Self::GetItem => "get_item",
            Self::ApplyTransaction => "apply_transaction",
            Self::SeedDemoCatalog => "seed_demo_catalog",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Conn {
    Writer,
    Reader,
}

impl Db {
    /// Opens (creating if needed) the database file and its schema. Metrics go to the global
    /// meter, so open after telemetry is set up.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let open = || -> rusqlite::Result<Self> {
            let writer = connect(path)?;
            writer.execute_batch(SCHEMA)?;
            let reader = connect(path)?;
            let duration = opentelemetry::global::meter(names::scope::API)
                .f64_histogram(names::metric::DB_DURATION.name)
                .with_unit(names::metric::DB_DURATION.unit)
                .with_description("Duration of database operations, lock wait included")
                .build();
            let ops = Op::ALL.map(|op| OpTelemetry {
                span_name: format!("{} {}", names::span::DB_SYSTEM, op.as_str()),
                duration: duration.bind(&[
                    KeyValue::new(DB_SYSTEM_NAME, names::span::DB_SYSTEM),
                    KeyValue::new(DB_OPERATION_NAME, op.as_str()),
                ]),
            });
            Ok(Self(Arc::new(Inner {
                writer: Mutex::new(writer),
                reader: Mutex::new(reader),
                ops,
            })))
        };
        open().map_err(|source| OpenError {
            path: path.to_owned(),
            source,
        })
    }

    /// `SELECT 1`, for readiness probes: not traced, so probes do not flood the trace store.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.blocking(Conn::Reader, tracing::Span::none(), |c| {
            c.query_row("SELECT 1", [], |_| Ok(()))
        })
        .await
    }

    pub(crate) async fn insert_item(&self, item: Item) -> Result<(), InsertError> {
        let inserted = self
            .traced(Op::InsertItem, Conn::Writer, move |c| {
                insert_item(&mut *c.prepare_cached(INSERT_ITEM)?, &item)
            })
            .await?;
        if inserted == 0 {
            return Err(InsertError::Exists);
        }
        Ok(())
    }

    pub(crate) async fn get_item(
        &self,
        warehouse_id: String,
        sku: String,
    ) -> Result<Option<Item>, DbError> {
        self.traced(Op::GetItem, Conn::Reader, move |c| {
            c.prepare_cached(
                "SELECT name, quantity, unit_price FROM items WHERE warehouse_id = ?1 AND sku = ?2",
            )?
            .query_row(params![warehouse_id, sku], |r| {
                Ok(Item {
                    name: r.get(0)?,
                    quantity: r.get(1)?,
                    unit_price: r.get(2)?,
                    warehouse_id: warehouse_id.clone(),
                    sku: sku.clone(),
                })
            })
            .optional()
        })
        .await
    }

    /// Applies `delta` to the item's stock, or replays the answer already stored under `key`.
    /// Check, update and the key's row share one `BEGIN IMMEDIATE` transaction, so concurrent
    /// retries of one request apply it exactly once.
    pub(crate) async fn apply(
        &self,
        key: String,
        request: TransactionRequest,
        delta: i64,
    ) -> Result<TransactionResponse, ApplyError> {
        self.traced(Op::ApplyTransaction, Conn::Writer, move |c| {
            apply(c, &key, request, delta)
        })
        .await?
    }

    /// Fills an empty catalog with the demo items; returns how many it inserted (0 when the
    /// catalog already had items).
    pub async fn seed_demo_catalog(&self) -> Result<usize, DbError> {
        self.traced(Op::SeedDemoCatalog, Conn::Writer, |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if tx.query_row("SELECT EXISTS (SELECT 1 FROM items)", [], |r| r.get(0))? {
                return Ok(0);
            }
            let mut insert = tx.prepare(INSERT_ITEM)?;
            for w in 1..=DEMO_WAREHOUSES {
                for s in 1..=DEMO_SKUS {
                    insert_item(&mut insert, &crate::model::demo_item(w, s))?;
                }
            }
            drop(insert);
            tx.commit()?;
            Ok(DEMO_WAREHOUSES * DEMO_SKUS)
        })
        .await
    }

    /// Runs `f` under a client span that is a child of the caller's span, and times it.
    async fn traced<T: Send + 'static>(
        &self,
        op: Op,
        conn: Conn,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, DbError> {
        let telemetry = &self.0.ops[op as usize];
        let span = tracing::info_span!(
            names::span::DB,
            otel.name = telemetry.span_name.as_str(),
            otel.kind = "client",
            db.system.name = names::span::DB_SYSTEM,
            db.operation.name = op.as_str(),
        );
        let start = Instant::now();
        let result = self.blocking(conn, span, f).await;
        telemetry.duration.record(start.elapsed().as_secs_f64());
        result
    }

    /// Runs `f` on a blocking thread with `span` entered there, so the span keeps its parent.
    async fn blocking<T: Send + 'static>(
        &self,
        conn: Conn,
        span: tracing::Span,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, DbError> {
        let inner = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let mutex = match conn {
                Conn::Writer => &inner.writer,
                Conn::Reader => &inner.reader,
            };
            // A panic mid-call leaves the connection usable: an open transaction rolls back
            // when it is dropped during the unwind.
            let mut c = mutex.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut c)
        })
        .await?
        .map_err(DbError::from)
    }
}

fn insert_item(insert: &mut rusqlite::Statement<'_>, i: &Item) -> rusqlite::Result<usize> {
    insert.execute(params![
        i.warehouse_id,
        i.sku,
        i.name,
        i.quantity,
        i.unit_price
    ])
}

fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open(path)?;
    c.busy_timeout(BUSY_TIMEOUT)?;
    // WAL lets the reader run beside the writer; NORMAL syncs at checkpoints, not every commit,
    // which is safe against corruption and loses at most the last commits on power loss.
    c.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))?;
    c.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(c)
}

fn apply(
    c: &mut Connection,
    key: &str,
    request: TransactionRequest,
    delta: i64,
) -> rusqlite::Result<Result<TransactionResponse, ApplyError>> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let respond = |transaction_id, quantity_after, replayed| TransactionResponse {
        transaction_id,
        warehouse_id: request.warehouse_id.clone(),
        sku: request.sku.clone(),
        kind: request.kind,
        quantity: request.quantity,
        quantity_after,
        replayed,
    };

    let stored = tx
        .prepare_cached(
            "SELECT id, quantity_after, warehouse_id = ?2 AND sku = ?3 AND kind = ?4 AND quantity = ?5
             FROM transactions WHERE idempotency_key = ?1",
        )?
        .query_row(
            params![
                key,
                request.warehouse_id,
                request.sku,
                request.kind.as_str(),
                request.quantity
            ],
            |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, bool>(2)?)),
        )
        .optional()?;
    if let Some((id, quantity_after, same_payload)) = stored {
        // Nothing was written: dropping `tx` rolls back an empty transaction.
        return Ok(if same_payload {
            Ok(respond(id, quantity_after, true))
        } else {
            Err(ApplyError::KeyReused)
        });
    }

    let available: Option<i64> = tx
        .prepare_cached("SELECT quantity FROM items WHERE warehouse_id = ?1 AND sku = ?2")?
        .query_row(params![request.warehouse_id, request.sku], |r| r.get(0))
        .optional()?;
    let Some(available) = available else {
        return Ok(Err(ApplyError::UnknownItem));
    };
    let quantity_after = match available.checked_add(delta) {
        None => return Ok(Err(ApplyError::Overflow)),
        Some(after) if after < 0 => return Ok(Err(ApplyError::InsufficientStock { available })),
        Some(after) => after,
    };

    tx.prepare_cached("UPDATE items SET quantity = ?3 WHERE warehouse_id = ?1 AND sku = ?2")?
        .execute(params![request.warehouse_id, request.sku, quantity_after])?;
    tx.prepare_cached(
        "INSERT INTO transactions (idempotency_key, warehouse_id, sku, kind, quantity, quantity_after)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        key,
        request.warehouse_id,
        request.sku,
        request.kind.as_str(),
        request.quantity,
        quantity_after
    ])?;
    let id = tx.last_insert_rowid();
    tx.commit()?;
    Ok(Ok(respond(id, quantity_after, false)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_indexes_all_at_its_place() {
        for (at, op) in Op::ALL.into_iter().enumerate() {
            assert_eq!(op as usize, at, "{}", op.as_str());
        }
    }
}
