//! Kafka message values (SPEC 1.2): UTF-8 JSON of the row form or the
//! transaction form, told apart per message and decoded into typed batches
//! with arrow-json. A message that fits neither form is a reject with its
//! `topic/partition@offset`; a transaction with a bad item line is rejected
//! whole.

use std::ops::Range;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ListArray, RecordBatch, StringArray, StructArray};
use arrow_json::ReaderBuilder;
use arrow_schema::{DataType, Field, Fields as ArrowFields, Schema};

use crate::typing::{BATCH_ROWS, BatchBuilder, Fields, type_fields};
use crate::{MAX_COLUMNS, Reject, RejectReason, Table, TableRead};

/// The field of a transaction-form message that holds its item lines.
const ITEMS: &str = "items";

/// Decodes messages of one topic in chunks: JSON syntax is checked per
/// message, then the whole chunk goes through one arrow-json decoder.
pub struct MessageDecoder {
    table: Table,
    topic: String,
    payloads: Vec<u8>,
    messages: Vec<(i32, i64, Range<usize>)>,
    batch: BatchBuilder,
    read: TableRead,
    /// Rejects of the chunk being decoded, keyed by position so that they are
    /// reported in offset order whichever check found them.
    chunk_rejects: Vec<((i32, i64), Reject)>,
}

impl MessageDecoder {
    /// A decoder of the messages of `topic`, whose records belong to `table`.
    pub fn new(table: Table, topic: &str) -> Self {
        MessageDecoder {
            table,
            topic: topic.to_string(),
            payloads: Vec::new(),
            messages: Vec::with_capacity(BATCH_ROWS),
            batch: BatchBuilder::new(table),
            read: TableRead::empty(table),
            chunk_rejects: Vec::new(),
        }
    }

    /// Buffers the message at `partition@offset`.
    pub fn push(&mut self, partition: i32, offset: i64, payload: &[u8]) {
        let start = self.payloads.len();
        self.payloads.extend_from_slice(payload);
        self.messages.push((partition, offset, start..self.payloads.len()));
    }

    /// Whether a batch's worth of messages is buffered.
    pub fn is_full(&self) -> bool {
        self.messages.len() >= BATCH_ROWS
    }

    /// Decodes the buffered messages; returns how many there were.
    pub fn flush(&mut self) -> usize {
        let messages = std::mem::take(&mut self.messages);
        let mut objects = Vec::with_capacity(messages.len());
        for (index, (_, _, span)) in messages.iter().enumerate() {
            match check_json_object(&self.payloads[span.clone()]) {
                Ok(()) => objects.push(index),
                Err(reason) => self.reject(&messages[index], reason),
            }
        }
        let decoded = match decode_json(self.table, &self.payloads, &messages, &objects) {
            Ok(batch) => Some((batch, objects)),
            // Some message has a field of the wrong shape: find it, decode the rest.
            Err(_) => {
                let (good, bad): (Vec<usize>, Vec<usize>) = objects
                    .iter()
                    .partition(|&&index| decode_json(self.table, &self.payloads, &messages, &[index]).is_ok());
                for index in bad {
                    let error = decode_json(self.table, &self.payloads, &messages, &[index])
                        .expect_err("partitioned as failing");
                    self.reject(&messages[index], RejectReason::BadJson { detail: error.to_string() });
                }
                decode_json(self.table, &self.payloads, &messages, &good).ok().map(|batch| (batch, good))
            }
        };
        if let Some((batch, rows)) = decoded {
            self.type_rows(&batch, &rows, &messages);
        }
        self.chunk_rejects.sort_by_key(|(position, _)| *position);
        self.read.rejects.extend(self.chunk_rejects.drain(..).map(|(_, reject)| reject));
        self.payloads.clear();
        messages.len()
    }

    /// Types every decoded message, expanding transaction-form messages to one row per item.
    fn type_rows(&mut self, batch: &RecordBatch, rows: &[usize], messages: &[(i32, i64, Range<usize>)]) {
        let columns = self.table.columns();
        let text: Vec<Option<&StringArray>> = columns
            .iter()
            .map(|column| batch.column_by_name(column.name).map(|array| array.as_string::<i32>()))
            .collect();
        let items = batch.column_by_name(ITEMS).map(|array| array.as_list::<i32>());
        for (row, &message) in rows.iter().enumerate() {
            let mut fields: Fields<'_> = [None; MAX_COLUMNS];
            for (field, array) in fields.iter_mut().zip(&text) {
                *field = array.filter(|a| a.is_valid(row)).map(|a| a.value(row));
            }
            match items.filter(|list| list.is_valid(row)) {
                None => self.type_row(&fields, &messages[message]),
                Some(list) => self.type_transaction(&fields, list, row, &messages[message]),
            }
        }
        if self.batch.rows > 0 {
            self.read.batches.push(self.batch.finish());
        }
    }

    fn type_transaction(&mut self, parent: &Fields<'_>, list: &ListArray, row: usize, message: &(i32, i64, Range<usize>)) {
        let lines = list.value(row);
        let lines: &StructArray = lines.as_struct();
        if lines.is_empty() {
            self.reject(message, RejectReason::NoItems);
            return;
        }
        let item_ids = lines.column_by_name("item_id").map(|a| a.as_string::<i32>().clone());
        let quantities = lines.column_by_name("quantity").map(|a| a.as_string::<i32>().clone());
        let columns = self.table.columns();
        // Every line is typed before any is kept: a transaction is applied whole or not at all.
        let mut typed = Vec::with_capacity(lines.len());
        for line in 0..lines.len() {
            let mut fields = *parent;
            for (field, column) in fields.iter_mut().zip(columns) {
                let from_line = match column.name {
                    "item_id" => &item_ids,
                    "quantity" => &quantities,
                    _ => continue,
                };
                *field = from_line.as_ref().filter(|a| a.is_valid(line)).map(|a| a.value(line));
            }
            match type_fields(columns, &fields) {
                Ok(values) => typed.push(values),
                Err(reason) => {
                    self.reject(message, RejectReason::BadItemLine { line: line + 1, reason: Box::new(reason) });
                    return;
                }
            }
        }
        for values in &typed {
            self.read.records += 1;
            self.batch.append(&values[..columns.len()]);
        }
    }

    fn type_row(&mut self, fields: &Fields<'_>, message: &(i32, i64, Range<usize>)) {
        match type_fields(self.table.columns(), fields) {
            Ok(values) => {
                self.read.records += 1;
                self.batch.append(&values[..self.table.columns().len()]);
            }
            Err(reason) => self.reject(message, reason),
        }
    }

    fn reject(&mut self, (partition, offset, span): &(i32, i64, Range<usize>), reason: RejectReason) {
        self.read.records += 1;
        let reject = Reject {
            origin: format!("{}/{partition}@{offset}", self.topic),
            reason,
            raw: String::from_utf8_lossy(&self.payloads[span.clone()]).into_owned(),
        };
        self.chunk_rejects.push(((*partition, *offset), reject));
    }

    /// The rows decoded so far and not yet taken, for a reader that hands
    /// them on as it goes; `finish` then holds only the rest.
    pub fn take_batches(&mut self) -> Vec<RecordBatch> {
        std::mem::take(&mut self.read.batches)
    }

    /// Everything decoded: the rows, the count of records, the rejects.
    pub fn finish(self) -> TableRead {
        self.read
    }
}

/// Whether `payload` is one JSON object (syntax only; shapes are arrow-json's job).
fn check_json_object(payload: &[u8]) -> Result<(), RejectReason> {
    if let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(payload) {
        return Err(RejectReason::BadJson { detail: error.to_string() });
    }
    match payload.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(()),
        _ => Err(RejectReason::BadJson { detail: "not a JSON object".to_string() }),
    }
}

/// Decodes the messages at `indices` into one batch of text columns (numbers
/// become text, so that the shared typing gives the same rejects as CSV).
fn decode_json(
    table: Table,
    payloads: &[u8],
    messages: &[(i32, i64, Range<usize>)],
    indices: &[usize],
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let mut decoder = ReaderBuilder::new(Arc::new(json_schema(table)))
        .with_coerce_primitive(true)
        .with_batch_size(indices.len().max(1))
        .build_decoder()?;
    for &index in indices {
        decoder.decode(&payloads[messages[index].2.clone()])?;
    }
    Ok(decoder.flush()?.unwrap_or_else(|| RecordBatch::new_empty(Arc::new(json_schema(table)))))
}

/// The JSON shape of `table`'s messages: its columns as text, plus, for
/// changes, the `items` of the transaction form.
fn json_schema(table: Table) -> Schema {
    let mut fields: Vec<Field> =
        table.columns().iter().map(|c| Field::new(c.name, DataType::Utf8, true)).collect();
    if table == Table::InventoryChange {
        let line = ArrowFields::from(vec![
            Field::new("item_id", DataType::Utf8, true),
            Field::new("quantity", DataType::Utf8, true),
        ]);
        let item = Field::new_list_field(DataType::Struct(line), true);
        fields.push(Field::new(ITEMS, DataType::List(Arc::new(item)), true));
    }
    Schema::new(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(table: Table, messages: &[&str]) -> TableRead {
        let mut decoder = MessageDecoder::new(table, "t");
        for (offset, message) in messages.iter().enumerate() {
            decoder.push(0, offset as i64, message.as_bytes());
        }
        decoder.flush();
        decoder.finish()
    }

    #[test]
    fn both_forms_and_every_kind_of_bad_message() {
        let read = decode(
            Table::InventoryChange,
            &[
                r#"{"trans_id":"{A}","item_id":10,"store_id":1,"date_time":"2021-01-03 10:00:00","quantity":-2,"change_type_id":1,"sent_time":1.5}"#,
                r#"{"trans_id":"B","store_id":"1","date_time":"2021-01-03T11:00:00","change_type_id":3,"items":[{"item_id":10,"quantity":5},{"item_id":"20","quantity":6}]}"#,
                r#"{"trans_id":"C","item_id":10"#,
                r#"[1,2]"#,
                r#"{"trans_id":"D","store_id":1,"date_time":"2021-01-03 10:00:00","change_type_id":1,"items":[]}"#,
                r#"{"trans_id":{"nested":true},"item_id":10,"store_id":1,"date_time":"2021-01-03 10:00:00","quantity":-2,"change_type_id":1}"#,
                r#"{"trans_id":"E","item_id":10,"store_id":1,"date_time":"noon","quantity":-2,"change_type_id":1}"#,
            ],
        );
        let rows: usize = read.batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 3, "one row-form message and a two-line transaction");
        let rejects: Vec<(&str, String)> =
            read.rejects.iter().map(|r| (r.origin.as_str(), r.reason.to_string())).collect();
        let origins: Vec<&str> = rejects.iter().map(|(o, _)| *o).collect();
        assert_eq!(origins, ["t/0@2", "t/0@3", "t/0@4", "t/0@5", "t/0@6"], "{rejects:?}");
        assert!(rejects[0].1.starts_with("not valid JSON of either form: EOF while parsing"), "{rejects:?}");
        assert_eq!(rejects[1].1, "not valid JSON of either form: not a JSON object");
        assert_eq!(rejects[2].1, "the transaction has no items");
        assert!(rejects[3].1.starts_with("not valid JSON of either form"), "{rejects:?}");
        assert!(rejects[4].1.starts_with("date_time is not a date: 'noon'"), "{rejects:?}");
        assert_eq!(read.records, 8, "3 rows + 5 rejects");
        let text = arrow_cast::pretty::pretty_format_batches(&read.batches).unwrap().to_string();
        assert!(text.contains("| A        | 10      | 1        | 2021-01-03T10:00:00 | -2"), "{text}");
        assert!(text.contains("| B        | 20      | 1        | 2021-01-03T11:00:00 | 6"), "{text}");
    }

    #[test]
    fn a_transaction_with_one_bad_line_is_rejected_whole() {
        let read = decode(
            Table::InventoryChange,
            &[
                r#"{"trans_id":"T","store_id":1,"date_time":"2021-01-03 10:00:00","change_type_id":1,"items":[{"item_id":10,"quantity":-1},{"item_id":11,"quantity":-9223372036854775808},{"item_id":12,"quantity":-1}]}"#,
                r#"{"trans_id":"U","store_id":1,"date_time":"2021-01-03 10:05:00","change_type_id":1,"items":[{"item_id":10,"quantity":-1}]}"#,
            ],
        );
        let rows: usize = read.batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 1, "only the good transaction's line");
        assert_eq!(read.records, 2, "the bad transaction is one reject");
        assert_eq!(read.rejects.len(), 1);
        assert_eq!(read.rejects[0].origin, "t/0@0");
        assert_eq!(
            read.rejects[0].reason.to_string(),
            "item 2 of the transaction, so the whole transaction: quantity is out of range: '-9223372036854775808' (a quantity is less than 2^31 either way)"
        );
    }
}
