//! Kafka message values (SPEC 1.2): UTF-8 JSON of the row form or the
//! transaction form, told apart per message and typed by the same code as a
//! CSV line. A message that fits neither form is a reject with its
//! `topic/partition@offset`; a transaction with a bad item line is rejected
//! whole.
//!
//! Each message is parsed once, by serde_json, as it is pushed: its fields
//! are borrowed from the payload (copied only where an escape must be
//! undone) and typed straight into the batch being built.

use std::borrow::Cow;
use std::fmt;

use arrow_array::RecordBatch;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::typing::{BATCH_ROWS, BatchBuilder, Fields, type_fields};
use crate::{ColumnSpec, MAX_COLUMNS, Reject, RejectReason, Table, TableRead};

/// The field of a transaction-form message that holds its item lines.
const ITEMS: &str = "items";
/// The fields of an item line, which stand in for the message's own.
const LINE_FIELDS: [&str; 2] = ["item_id", "quantity"];
/// The producer's stamp on a message (SPEC 1.2), epoch seconds.
const SENT_TIME: &str = "sent_time";

/// Decodes the messages of one topic into typed batches of about
/// [`BATCH_ROWS`] messages each.
pub struct MessageDecoder {
    table: Table,
    topic: String,
    /// Messages pushed since the last flush.
    messages: usize,
    batch: BatchBuilder,
    read: TableRead,
    /// Rejects since the last flush, keyed by position so that each chunk's
    /// are reported in partition and offset order.
    chunk_rejects: Vec<((i32, i64), Reject)>,
}

impl MessageDecoder {
    /// A decoder of the messages of `topic`, whose records belong to `table`.
    pub fn new(table: Table, topic: &str) -> Self {
        MessageDecoder {
            table,
            topic: topic.to_string(),
            messages: 0,
            batch: BatchBuilder::new(table),
            read: TableRead::empty(table),
            chunk_rejects: Vec::new(),
        }
    }

    /// Decodes the message at `partition@offset`; returns its `sent_time`
    /// if it is a JSON object with a number there (a message rejected for
    /// its fields still says when it was sent).
    pub fn push(&mut self, partition: i32, offset: i64, payload: &[u8]) -> Option<f64> {
        self.messages += 1;
        let position = (partition, offset);
        match parse_message(self.table, payload) {
            Ok(message) => {
                let fields: Fields<'_> = std::array::from_fn(|index| message.fields[index].as_deref());
                match &message.items {
                    None => self.type_row(&fields, position, payload),
                    Some(lines) => self.type_transaction(&fields, lines, position, payload),
                }
                message.sent_time
            }
            Err(reason) => {
                self.reject(position, payload, reason);
                None
            }
        }
    }

    /// Whether a batch's worth of messages has been pushed.
    pub fn is_full(&self) -> bool {
        self.messages >= BATCH_ROWS
    }

    /// Ends the batch of the messages pushed since the last flush; returns
    /// how many there were.
    pub fn flush(&mut self) -> usize {
        if self.batch.rows > 0 {
            self.read.batches.push(self.batch.finish());
        }
        self.chunk_rejects.sort_by_key(|(position, _)| *position);
        self.read.rejects.extend(self.chunk_rejects.drain(..).map(|(_, reject)| reject));
        std::mem::take(&mut self.messages)
    }

    fn type_transaction(&mut self, parent: &Fields<'_>, lines: &[Line<'_>], position: (i32, i64), payload: &[u8]) {
        if lines.is_empty() {
            self.reject(position, payload, RejectReason::NoItems);
            return;
        }
        let columns = self.table.columns();
        // Where each field of a line goes among the table's columns.
        let targets = LINE_FIELDS.map(|name| columns.iter().position(|column| column.name == name));
        // Every line is typed before any is kept: a transaction is applied whole or not at all.
        let mut typed = Vec::with_capacity(lines.len());
        for (number, line) in lines.iter().enumerate() {
            let mut fields = *parent;
            for (value, target) in line.iter().zip(targets) {
                if let Some(column) = target {
                    fields[column] = value.as_deref();
                }
            }
            match type_fields(columns, &fields) {
                Ok(values) => typed.push(values),
                Err(reason) => {
                    let reason = RejectReason::BadItemLine { line: number + 1, reason: Box::new(reason) };
                    self.reject(position, payload, reason);
                    return;
                }
            }
        }
        for values in &typed {
            self.read.records += 1;
            self.batch.append(&values[..columns.len()]);
        }
    }

    fn type_row(&mut self, fields: &Fields<'_>, position: (i32, i64), payload: &[u8]) {
        match type_fields(self.table.columns(), fields) {
            Ok(values) => {
                self.read.records += 1;
                self.batch.append(&values[..self.table.columns().len()]);
            }
            Err(reason) => self.reject(position, payload, reason),
        }
    }

    fn reject(&mut self, (partition, offset): (i32, i64), payload: &[u8], reason: RejectReason) {
        self.read.records += 1;
        let reject = Reject {
            origin: format!("{}/{partition}@{offset}", self.topic),
            reason,
            raw: String::from_utf8_lossy(payload).into_owned(),
        };
        self.chunk_rejects.push(((partition, offset), reject));
    }

    /// The rows decoded so far and not yet taken, for a reader that hands
    /// them on as it goes; `finish` then holds only the rest.
    pub fn take_batches(&mut self) -> Vec<RecordBatch> {
        std::mem::take(&mut self.read.batches)
    }

    /// Everything decoded: the rows, the count of records, the rejects.
    pub fn finish(mut self) -> TableRead {
        self.flush();
        self.read
    }
}

/// The text of a message's fields, in the order of its table's columns, the
/// item lines of a transaction-form message, and its `sent_time`.
struct Message<'a> {
    fields: [Option<Cow<'a, str>>; MAX_COLUMNS],
    items: Option<Vec<Line<'a>>>,
    sent_time: Option<f64>,
}

/// The `item_id` and `quantity` of one item line.
type Line<'a> = [Option<Cow<'a, str>>; 2];

/// Parses `payload` as one message of `table`, or says why it is not one.
fn parse_message(table: Table, payload: &[u8]) -> Result<Message<'_>, RejectReason> {
    // Checked once here, so that serde_json need not check each string again.
    let json = std::str::from_utf8(payload).map_err(|error| RejectReason::BadJson { detail: format!("not UTF-8: {error}") })?;
    let columns = table.columns();
    let fields = MessageFields { columns, with_items: table == Table::InventoryChange };
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let parsed = deserializer.deserialize_map(fields).and_then(|message| deserializer.end().map(|()| message));
    parsed.map_err(|error| {
        let detail = match json.trim_start().as_bytes().first() {
            // Other JSON than an object: say so, unless it is not JSON at all.
            Some(b) if *b != b'{' && serde_json::from_str::<IgnoredAny>(json).is_ok() => "not a JSON object".to_string(),
            _ => error.to_string(),
        };
        RejectReason::BadJson { detail }
    })
}

/// Reads a message object: the fields named by `columns` (and `items`, for
/// changes) kept as text, `sent_time` as a number if it is one, every other
/// field checked as JSON and skipped.
struct MessageFields<'c> {
    columns: &'c [ColumnSpec],
    with_items: bool,
}

/// What a key of a message names.
enum Key {
    Column(usize),
    Items,
    SentTime,
    Other,
}

impl<'de> Visitor<'de> for MessageFields<'_> {
    type Value = Message<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Message<'de>, A::Error> {
        let mut message = Message { fields: [const { None }; MAX_COLUMNS], items: None, sent_time: None };
        let key_of = |key: &str| match key {
            ITEMS if self.with_items => Key::Items,
            SENT_TIME => Key::SentTime,
            _ => self.columns.iter().position(|column| column.name == key).map_or(Key::Other, Key::Column),
        };
        while let Some(key) = map.next_key_seed(KeyOf(key_of))? {
            match key {
                Key::Column(index) => message.fields[index] = text(self.columns[index].name, map.next_value()?)?,
                Key::Items => message.items = map.next_value::<Option<LineList<'de>>>()?.map(|lines| lines.0),
                // Any JSON is accepted there, as in any field pos-etl does not
                // read: kept as written and parsed apart, so that a number out
                // of range (1e400) is no stamp rather than a bad message.
                Key::SentTime => message.sent_time = serde_json::from_str(map.next_value::<&RawValue>()?.get()).ok(),
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(message)
    }
}

/// The item lines of a transaction.
struct LineList<'a>(Vec<Line<'a>>);

impl<'de> de::Deserialize<'de> for LineList<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(LineList(Vec::new()))
    }
}

impl<'de> Visitor<'de> for LineList<'de> {
    type Value = LineList<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a list of item lines")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut lines: A) -> Result<Self, A::Error> {
        while let Some(line) = lines.next_element_seed(LineFields)? {
            self.0.push(line);
        }
        Ok(self)
    }
}

/// Reads one item line: `item_id` and `quantity` as text, the rest skipped.
struct LineFields;

impl<'de> DeserializeSeed<'de> for LineFields {
    type Value = Line<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Line<'de>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for LineFields {
    type Value = Line<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an item line object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Line<'de>, A::Error> {
        let mut line: Line<'de> = [None, None];
        while let Some(index) = map.next_key_seed(KeyOf(|key: &str| LINE_FIELDS.iter().position(|name| *name == key)))? {
            match index {
                Some(index) => line[index] = text(LINE_FIELDS[index], map.next_value()?)?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(line)
    }
}

/// Reads an object's key into what the function makes of it, without copying it.
struct KeyOf<F>(F);

impl<'de, K, F: FnOnce(&str) -> K> DeserializeSeed<'de> for KeyOf<F> {
    type Value = K;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<K, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, K, F: FnOnce(&str) -> K> Visitor<'de> for KeyOf<F> {
    type Value = K;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<K, E> {
        Ok((self.0)(key))
    }
}

/// The text of the value of field `name`: a string as its characters, a
/// number or boolean as written (so that `1.5` is no integer, as in a CSV
/// file), `None` for null; an object or a list is not a field's value.
fn text<'de, E: de::Error>(name: &str, value: &'de RawValue) -> Result<Option<Cow<'de, str>>, E> {
    let json = value.get();
    match json.as_bytes()[0] {
        b'"' if !json.contains('\\') => Ok(Some(Cow::Borrowed(&json[1..json.len() - 1]))),
        b'"' => serde_json::from_str::<String>(json).map(|text| Some(Cow::Owned(text))).map_err(E::custom),
        b'n' => Ok(None),
        b'{' => Err(E::custom(format_args!("{name} is an object, not text or a number"))),
        b'[' => Err(E::custom(format_args!("{name} is a list, not text or a number"))),
        _ => Ok(Some(Cow::Borrowed(json))),
    }
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

    #[test]
    fn each_field_is_the_text_the_message_gives() {
        let row = |fields: &str| {
            format!(r#"{{"trans_id":"X","store_id":1,"date_time":"2021-01-03 10:00:00","change_type_id":1,{fields}}}"#)
        };
        let messages = [
            // escapes undone in keys and values; unknown fields of any shape skipped
            row(r#""item\u005fid":"1\u0030","quantity":-2,"extra":{"a":[1,{"b":null}]},"items":null"#),
            // a number as written, so 10.0 is no integer
            row(r#""item_id":10.0,"quantity":-2"#),
            row(r#""item_id":true,"quantity":-2"#),
            row(r#""item_id":10,"quantity":[1]"#),
            row(r#""item_id":10,"quantity":-2,"items":5"#),
            row("\"item_id\":\"1\u{1}0\",\"quantity\":-2"),
            // the last of a repeated field counts, as the last cell would if a CSV row were
            row(r#""item_id":11,"quantity":-2,"item_id":12"#),
        ];
        let mut decoder = MessageDecoder::new(Table::InventoryChange, "t");
        for (offset, message) in messages.iter().enumerate() {
            decoder.push(0, offset as i64, message.as_bytes());
        }
        decoder.push(0, 7, b"{\"trans_id\":\"\xff\"}");
        let read = decoder.finish();
        let reasons: Vec<String> = read.rejects.iter().map(|r| format!("{} {}", r.origin, r.reason)).collect();
        assert_eq!(reasons[0], "t/0@1 item_id is not an integer: '10.0'", "{reasons:?}");
        assert_eq!(reasons[1], "t/0@2 item_id is not an integer: 'true'", "{reasons:?}");
        assert!(reasons[2].starts_with("t/0@3 not valid JSON of either form: quantity is a list"), "{reasons:?}");
        assert!(reasons[3].starts_with("t/0@4 not valid JSON of either form: invalid type: integer `5`"), "{reasons:?}");
        assert!(reasons[4].starts_with("t/0@5 not valid JSON of either form: control character"), "{reasons:?}");
        assert!(reasons[5].starts_with("t/0@7 not valid JSON of either form: not UTF-8"), "{reasons:?}");
        assert_eq!(reasons.len(), 6, "{reasons:?}");
        let text = arrow_cast::pretty::pretty_format_batches(&read.batches).unwrap().to_string();
        assert!(text.contains("| X        | 10      | 1        | 2021-01-03T10:00:00 | -2"), "{text}");
        assert!(text.contains("| X        | 12      | 1        | 2021-01-03T10:00:00 | -2"), "{text}");
        assert_eq!(read.records, 8);
    }

    #[test]
    fn each_message_says_when_it_was_sent_if_it_can() {
        let row = r#""trans_id":"X","item_id":10,"store_id":1,"date_time":"2021-01-03 10:00:00","quantity":-2,"change_type_id":1"#;
        let mut decoder = MessageDecoder::new(Table::InventoryChange, "t");
        let mut sent = |offset: i64, message: &str| decoder.push(0, offset, message.as_bytes());
        assert_eq!(sent(0, &format!("{{{row},\"sent_time\":1700000000.25}}")), Some(1_700_000_000.25));
        assert_eq!(sent(1, &format!("{{\"sent_time\":17,{row}}}")), Some(17.0));
        // rejected for its fields, it was still sent then
        assert_eq!(sent(2, r#"{"item_id":"ten","sent_time":5}"#), Some(5.0));
        // a stamp that is no number is no stamp, and the message is kept
        assert_eq!(sent(3, &format!("{{{row},\"sent_time\":\"yesterday\"}}")), None);
        assert_eq!(sent(4, &format!("{{{row},\"sent_time\":null}}")), None);
        assert_eq!(sent(5, &format!("{{{row}}}")), None);
        assert_eq!(sent(6, r#"{"sent_time":5"#), None, "not JSON");
        assert_eq!(sent(7, &format!("{{\"sent_time\":{{\"at\":[1,{{}}]}},{row}}}")), None);
        assert_eq!(sent(8, &format!("{{{row},\"sent_time\":-3}}")), Some(-3.0));
        assert_eq!(sent(9, &format!("{{{row},\"sent_time\":1e400}}")), None, "out of range: no stamp, still a row");
        let read = decoder.finish();
        assert_eq!(read.records, 10);
        let rejected: Vec<&str> = read.rejects.iter().map(|r| r.origin.as_str()).collect();
        assert_eq!(rejected, ["t/0@2", "t/0@6"]);
    }
}
