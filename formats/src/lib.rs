//! The input formats of pos-etl (SPEC 1): CSV exports and Kafka JSON
//! messages into typed Arrow record batches of the five input tables, plus a
//! [`Reject`] for every record that cannot be typed, with its position and
//! reason. Pure parsing: no DataFusion, no broker, no destination, so that
//! the fuzzers build and run on this crate alone.

pub mod csv;
pub mod dialect;
pub mod json;
pub mod records;
mod reject;
pub mod typing;

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

pub use reject::{Reject, RejectReason};

/// The kind of value an input column holds, and so how its text is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// A signed 64-bit integer.
    Int,
    /// A signed integer less than 2^31 either way.
    Quantity,
    /// Free text, kept as read.
    Text,
    /// A store-local wall-clock time in one of the dialects of SPEC 1.1.
    DateTime,
    /// A transaction id; surrounding braces are removed.
    TransId,
}

/// One column of an input table.
#[derive(Debug, Clone, Copy)]
pub struct ColumnSpec {
    /// The column name as the SQL files see it (lower case).
    pub name: &'static str,
    /// How the text is parsed.
    pub kind: ValueKind,
    /// Whether an empty or missing value rejects the record.
    pub required: bool,
}

const fn column(name: &'static str, kind: ValueKind, required: bool) -> ColumnSpec {
    ColumnSpec { name, kind, required }
}

/// The most columns any input table has.
pub const MAX_COLUMNS: usize = 6;

const STORE_COLUMNS: &[ColumnSpec] =
    &[column("store_id", ValueKind::Int, true), column("name", ValueKind::Text, true)];
const ITEM_COLUMNS: &[ColumnSpec] = &[
    column("item_id", ValueKind::Int, true),
    column("name", ValueKind::Text, true),
    column("supplier_id", ValueKind::Int, false),
    column("safety_stock_quantity", ValueKind::Int, false),
];
const CHANGE_TYPE_COLUMNS: &[ColumnSpec] =
    &[column("change_type_id", ValueKind::Int, true), column("change_type", ValueKind::Text, true)];
const SNAPSHOT_COLUMNS: &[ColumnSpec] = &[
    column("item_id", ValueKind::Int, true),
    column("employee_id", ValueKind::Int, false),
    column("store_id", ValueKind::Int, true),
    column("date_time", ValueKind::DateTime, true),
    column("quantity", ValueKind::Quantity, true),
];
const CHANGE_COLUMNS: &[ColumnSpec] = &[
    column("trans_id", ValueKind::TransId, true),
    column("item_id", ValueKind::Int, true),
    column("store_id", ValueKind::Int, true),
    column("date_time", ValueKind::DateTime, true),
    column("quantity", ValueKind::Quantity, true),
    column("change_type_id", ValueKind::Int, true),
];

/// The five input tables of SPEC 1, under the names the SQL files use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// `store`: store_id, name.
    Store,
    /// `item`: item_id, name, supplier_id, safety_stock_quantity.
    Item,
    /// `inventory_change_type`: change_type_id, change_type.
    InventoryChangeType,
    /// `inventory_snapshot`: shelf counts.
    InventorySnapshot,
    /// `inventory_change`: sales, restocks, shrink and BOPIS orders.
    InventoryChange,
}

impl Table {
    /// Every table, lookups first.
    pub const ALL: [Table; 5] = [
        Table::Store,
        Table::Item,
        Table::InventoryChangeType,
        Table::InventorySnapshot,
        Table::InventoryChange,
    ];

    /// The table name the SQL files see.
    pub fn name(self) -> &'static str {
        match self {
            Table::Store => "store",
            Table::Item => "item",
            Table::InventoryChangeType => "inventory_change_type",
            Table::InventorySnapshot => "inventory_snapshot",
            Table::InventoryChange => "inventory_change",
        }
    }

    /// Whether rows of this table are events that reach the `enriched` output (not lookups).
    pub fn is_event(self) -> bool {
        matches!(self, Table::InventorySnapshot | Table::InventoryChange)
    }

    /// The columns, in the order of the table's schema.
    pub fn columns(self) -> &'static [ColumnSpec] {
        match self {
            Table::Store => STORE_COLUMNS,
            Table::Item => ITEM_COLUMNS,
            Table::InventoryChangeType => CHANGE_TYPE_COLUMNS,
            Table::InventorySnapshot => SNAPSHOT_COLUMNS,
            Table::InventoryChange => CHANGE_COLUMNS,
        }
    }

    /// The Arrow schema the SQL files see.
    pub fn schema(self) -> SchemaRef {
        let fields = self.columns().iter().map(|column| {
            let data_type = match column.kind {
                ValueKind::Int | ValueKind::Quantity => DataType::Int64,
                ValueKind::Text | ValueKind::TransId => DataType::Utf8,
                ValueKind::DateTime => DataType::Timestamp(TimeUnit::Second, None),
            };
            Field::new(column.name, data_type, !column.required)
        });
        Arc::new(Schema::new(fields.collect::<Vec<_>>()))
    }
}

/// What a source read for one table: the typed rows and the records it rejected.
#[derive(Debug, Clone)]
pub struct TableRead {
    /// Which table.
    pub table: Table,
    /// Rows that typed cleanly, in the table's schema.
    pub batches: Vec<RecordBatch>,
    /// Records read, header lines excluded: rows in `batches` plus rejects.
    pub records: u64,
    /// Records that could not be typed.
    pub rejects: Vec<Reject>,
}

impl TableRead {
    /// An empty read of `table`.
    pub fn empty(table: Table) -> Self {
        TableRead { table, batches: Vec::new(), records: 0, rejects: Vec::new() }
    }

}

/// Merges reads of the same table (several files, several topics) into one
/// read per table, keeping the order of their rejects.
pub fn merge_by_table(reads: impl IntoIterator<Item = TableRead>) -> Vec<TableRead> {
    let mut merged: Vec<TableRead> = Vec::new();
    for read in reads {
        match merged.iter_mut().find(|m| m.table == read.table) {
            Some(existing) => {
                existing.batches.extend(read.batches);
                existing.records += read.records;
                existing.rejects.extend(read.rejects);
            }
            None => merged.push(read),
        }
    }
    merged
}
