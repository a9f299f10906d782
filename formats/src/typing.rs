//! Typing raw text fields into Arrow values, shared by every source: the same
//! parsers and the same reject reasons whether a record came from a CSV line
//! or a Kafka message.

use std::sync::Arc;

use arrow_array::builder::{Int64Builder, StringBuilder, TimestampSecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};

use crate::dialect::{parse_date_time, strip_braces};
use crate::{ColumnSpec, MAX_COLUMNS, RejectReason, Table, ValueKind};

/// Rows per record batch, DataFusion's default batch size.
pub const BATCH_ROWS: usize = 8192;

/// The raw text fields of one record, in the order of its table's columns.
pub type Fields<'a> = [Option<&'a str>; MAX_COLUMNS];
/// The typed values of one record, in the order of its table's columns.
pub type Values<'a> = [Value<'a>; MAX_COLUMNS];

/// A field typed for its column; `None` is a null.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// An integer column.
    Int(Option<i64>),
    /// A text column (transaction ids already without braces).
    Text(Option<&'a str>),
    /// A date_time column, as seconds since the epoch of the wall-clock time.
    DateTime(Option<i64>),
}

/// Types the fields of one record, given in the order of `columns` (`None`
/// for a missing field), or says why it cannot. The first `columns.len()`
/// values are meaningful.
pub fn type_fields<'a>(
    columns: &[ColumnSpec],
    fields: &Fields<'a>,
) -> Result<Values<'a>, RejectReason> {
    let mut values = [Value::Int(None); MAX_COLUMNS];
    for ((column, field), value) in columns.iter().zip(fields).zip(&mut values) {
        let text = field.map_or("", |text| text.trim());
        if text.is_empty() {
            if column.required {
                return Err(RejectReason::EmptyField { column: column.name });
            }
            *value = match column.kind {
                ValueKind::Int | ValueKind::Quantity => Value::Int(None),
                ValueKind::Text | ValueKind::TransId => Value::Text(None),
                ValueKind::DateTime => Value::DateTime(None),
            };
            continue;
        }
        *value = match column.kind {
            ValueKind::Int => Value::Int(Some(parse_int(column, text)?)),
            ValueKind::Quantity => {
                let quantity = parse_int(column, text)?;
                if quantity.unsigned_abs() >= MAX_QUANTITY {
                    return Err(RejectReason::OutOfRange { column: column.name, value: text.to_string() });
                }
                Value::Int(Some(quantity))
            }
            ValueKind::Text => Value::Text(Some(text)),
            ValueKind::TransId => Value::Text(Some(strip_braces(text))),
            ValueKind::DateTime => Value::DateTime(Some(
                parse_date_time(text)
                    .map_err(|error| RejectReason::BadDateTime { value: text.to_string(), expected: error.expected() })?
                    .and_utc()
                    .timestamp(),
            )),
        };
    }
    Ok(values)
}

/// A quantity's absolute value is less than this (SPEC 1.1): 2^31. No shelf
/// holds more, and a running stock of such quantities cannot overflow 64 bits.
pub const MAX_QUANTITY: u64 = 1 << 31;

fn parse_int(column: &ColumnSpec, text: &str) -> Result<i64, RejectReason> {
    text.parse().map_err(|_| RejectReason::NotAnInteger { column: column.name, value: text.to_string() })
}

/// Column builders for one batch of a table.
pub struct BatchBuilder {
    table: Table,
    columns: Vec<ColumnBuilder>,
    /// Rows appended since the last batch.
    pub rows: usize,
}

enum ColumnBuilder {
    Int(Int64Builder),
    Text(StringBuilder),
    DateTime(TimestampSecondBuilder),
}

impl BatchBuilder {
    /// Empty builders for `table`.
    pub fn new(table: Table) -> Self {
        let columns = table
            .columns()
            .iter()
            .map(|column| match column.kind {
                ValueKind::Int | ValueKind::Quantity => ColumnBuilder::Int(Int64Builder::with_capacity(BATCH_ROWS)),
                ValueKind::Text | ValueKind::TransId => {
                    ColumnBuilder::Text(StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 16))
                }
                ValueKind::DateTime => {
                    ColumnBuilder::DateTime(TimestampSecondBuilder::with_capacity(BATCH_ROWS))
                }
            })
            .collect();
        BatchBuilder { table, columns, rows: 0 }
    }

    /// Appends one typed record.
    pub fn append(&mut self, values: &[Value<'_>]) {
        for (builder, value) in self.columns.iter_mut().zip(values) {
            match (builder, *value) {
                (ColumnBuilder::Int(b), Value::Int(v)) => b.append_option(v),
                (ColumnBuilder::Text(b), Value::Text(v)) => b.append_option(v),
                (ColumnBuilder::DateTime(b), Value::DateTime(v)) => b.append_option(v),
                _ => unreachable!("values are typed from the same column specs as the builders"),
            }
        }
        self.rows += 1;
    }

    /// The rows appended so far, as a batch; the builders start over.
    pub fn finish(&mut self) -> RecordBatch {
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|builder| -> ArrayRef {
                match builder {
                    ColumnBuilder::Int(b) => Arc::new(b.finish()),
                    ColumnBuilder::Text(b) => Arc::new(b.finish()),
                    ColumnBuilder::DateTime(b) => Arc::new(b.finish()),
                }
            })
            .collect();
        self.rows = 0;
        RecordBatch::try_new(self.table.schema(), arrays)
            .expect("builders follow the table schema")
    }
}

