//! The checkpoint of incremental runs in the database (SPEC 6.1): tables
//! beside the outputs, read at the start of a run and written in its
//! transaction, so that rows and checkpoint can never disagree.
//!
//! - `pos_etl_checkpoint`: per Kafka partition the next offset, per CSV file
//!   the end of what was loaded and a fingerprint of it;
//! - `pos_etl_stock`: per store and item, the stock after the last applied
//!   event;
//! - `pos_etl_snapshot_journal`, `pos_etl_change_journal`: every event
//!   applied, as read, so that a record sent again is known (SPEC 2.2) and a
//!   late one can be applied exactly among those already applied.
//!
//! Store and item sets go to the server as arrays (`unnest`), times as
//! seconds since the epoch, read as UTC wall clock.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Builder, RecordBatch, StringBuilder, TimestampSecondBuilder};
use arrow::datatypes::{Int64Type, TimestampSecondType};
use tokio_postgres::types::ToSql;

use super::{PgLoad, qualified, quote};
use crate::checkpoint::{Checkpoint, FileMark, Pair, PairState};
use crate::error::SinkError;
use crate::sources::records::Position;
use crate::sources::{Table, ValueKind};

/// The table of positions.
pub const CHECKPOINT: &str = "pos_etl_checkpoint";
/// The table of the stock per store and item.
pub const STOCK: &str = "pos_etl_stock";
/// The snapshots applied.
pub const SNAPSHOT_JOURNAL: &str = "pos_etl_snapshot_journal";
/// The changes applied.
pub const CHANGE_JOURNAL: &str = "pos_etl_change_journal";

/// Every table of the checkpoint.
pub const TABLES: [&str; 4] = [CHECKPOINT, STOCK, SNAPSHOT_JOURNAL, CHANGE_JOURNAL];

/// The journal of an event table.
pub fn journal(table: Table) -> &'static str {
    match table {
        Table::InventorySnapshot => SNAPSHOT_JOURNAL,
        _ => CHANGE_JOURNAL,
    }
}

/// `seconds` since the epoch as a timestamp without time zone, in SQL.
fn at(seconds: &str) -> String {
    format!("(to_timestamp({seconds}) AT TIME ZONE 'UTC')")
}

/// A timestamp column as seconds since the epoch, in SQL.
fn seconds(column: &str) -> String {
    format!("extract(epoch FROM {column})::bigint")
}

/// The store and item columns of pairs, and a time per pair, as query parameters.
struct PairParams {
    stores: Vec<i64>,
    items: Vec<i64>,
    times: Vec<i64>,
}

impl PairParams {
    fn new<'a>(pairs: impl IntoIterator<Item = (&'a Pair, i64)>) -> Self {
        let mut params = PairParams { stores: Vec::new(), items: Vec::new(), times: Vec::new() };
        for ((store, item), time) in pairs {
            params.stores.push(*store);
            params.items.push(*item);
            params.times.push(time);
        }
        params
    }

    /// `unnest(...) AS p(store_id, item_id, since)` over `$1..$3`.
    const FROM: &str = "unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS p(store_id, item_id, since)";

    fn params(&self) -> [&(dyn ToSql + Sync); 3] {
        [&self.stores, &self.items, &self.times]
    }
}

impl PgLoad {
    fn error(&self, action: &str) -> impl FnOnce(tokio_postgres::Error) -> SinkError {
        let action = format!("{action} ({})", self.target.place());
        move |cause| SinkError::Postgres { action, cause }
    }

    fn table(&self, name: &str) -> String {
        qualified(&self.target.schema, name)
    }

    /// Makes the rest of the transaction look pairs up by index. Each query
    /// of an incremental run looks a batch's pairs (an `unnest` of
    /// parameters, which PostgreSQL cannot size) up in a table of every
    /// pair, whose statistics lag behind its growth: planned as a hash join
    /// it reads the whole table for every batch (16 ms instead of 1.2 ms
    /// for 783 pairs among 40,000), as a nested loop over a scan it reads
    /// it once per pair (25 ms for 100 pairs among 2,000).
    pub async fn look_up_pairs_by_index(&self) -> Result<(), SinkError> {
        let client = self.client.lock().await;
        client
            .batch_execute("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; SET LOCAL enable_seqscan = off;")
            .await
            .map_err(self.error("setting up the run's lookups"))
    }

    /// The checkpoint of the runs so far, `None` if none had been stored
    /// when the transaction began (the first incremental run, or after a
    /// full load).
    pub async fn checkpoint(&self) -> Result<Option<Checkpoint>, SinkError> {
        if !self.checkpoint_stored {
            return Ok(None);
        }
        let mut client = self.client.lock().await;
        let rows = client
            .query(&format!("SELECT source, name, next, line, fingerprint FROM {} ORDER BY source, next", self.table(CHECKPOINT)), &[])
            .await
            .map_err(self.error("reading the checkpoint"))?;
        let mut checkpoint = Checkpoint::default();
        for row in rows {
            let (source, name, next): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
            match source.as_str() {
                "table" => checkpoint.tables.push(name),
                "kafka" => {
                    let (topic, partition) = name.rsplit_once('/').unwrap_or((&name, "0"));
                    checkpoint.offsets.insert((topic.to_string(), partition.parse().unwrap_or(0)), next);
                }
                _ => {
                    let end = Position { byte: next as u64, line: row.get::<_, Option<i64>>(3).unwrap_or(1) as u64 };
                    let fingerprint = row.get::<_, Option<String>>(4).unwrap_or_default();
                    checkpoint.files.insert(name, FileMark { end, fingerprint });
                }
            }
        }
        Ok(Some(checkpoint))
    }

    /// Stages `checkpoint` as the new content of the checkpoint table: a
    /// new version of the table, or, if the run writes it in place
    /// ([`PgLoad::append_to`]; no DDL in every batch of a stream), its rows
    /// replaced.
    pub async fn put_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), SinkError> {
        if self.appends_to(CHECKPOINT) {
            let client = self.client.lock().await;
            // Scanned whole: without a sequential scan (look_up_pairs_by_index), 16 ms instead of 0.2.
            let sql = format!("SET LOCAL enable_seqscan = on; DELETE FROM {}", self.table(CHECKPOINT));
            client.batch_execute(&sql).await.map_err(self.error("replacing the checkpoint"))?;
        }
        let mut source = StringBuilder::new();
        let mut name = StringBuilder::new();
        let (mut next, mut line) = (Int64Builder::new(), Int64Builder::new());
        let mut fingerprint = StringBuilder::new();
        for ((topic, partition), offset) in &checkpoint.offsets {
            source.append_value("kafka");
            name.append_value(format!("{topic}/{partition}"));
            next.append_value(*offset);
            line.append_null();
            fingerprint.append_null();
        }
        for (index, table) in checkpoint.tables.iter().enumerate() {
            source.append_value("table");
            name.append_value(table);
            next.append_value(index as i64);
            line.append_null();
            fingerprint.append_null();
        }
        for (file, mark) in &checkpoint.files {
            source.append_value("csv");
            name.append_value(file);
            next.append_value(mark.end.byte as i64);
            line.append_value(mark.end.line as i64);
            fingerprint.append_value(&mark.fingerprint);
        }
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("source", arrow::datatypes::DataType::Utf8, false),
            arrow::datatypes::Field::new("name", arrow::datatypes::DataType::Utf8, false),
            arrow::datatypes::Field::new("next", arrow::datatypes::DataType::Int64, false),
            arrow::datatypes::Field::new("line", arrow::datatypes::DataType::Int64, true),
            arrow::datatypes::Field::new("fingerprint", arrow::datatypes::DataType::Utf8, true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(source.finish()),
            Arc::new(name.finish()),
            Arc::new(next.finish()),
            Arc::new(line.finish()),
            Arc::new(fingerprint.finish()),
        ];
        let batch = RecordBatch::try_new(schema, columns).expect("columns of the schema");
        self.put(CHECKPOINT, batch).await.map(drop)
    }

    /// The stored stock of each of `pairs` that has one.
    pub async fn stock(&self, pairs: &[Pair]) -> Result<HashMap<Pair, PairState>, SinkError> {
        let params = PairParams::new(pairs.iter().map(|pair| (pair, 0)));
        let sql = format!(
            "SELECT s.store_id, s.item_id, {}, s.final_quantity, s.snapshot_quantity FROM {} JOIN {} s USING (store_id, item_id)",
            seconds("s.date_time"),
            PairParams::FROM,
            self.table(STOCK)
        );
        self.states(&sql, &params).await
    }

    /// For each of `from`'s pairs, the time of the last snapshot applied
    /// at or before its time, if any: a late event's pair is computed again
    /// from there, where its stock depends on no earlier event.
    pub async fn last_snapshot_at_or_before(&self, from: &HashMap<Pair, i64>) -> Result<HashMap<Pair, i64>, SinkError> {
        let params = PairParams::new(from.iter().map(|(pair, time)| (pair, *time)));
        let sql = format!(
            "SELECT p.store_id, p.item_id, {} FROM {} JOIN {} j \
             ON j.store_id = p.store_id AND j.item_id = p.item_id AND j.date_time <= {} GROUP BY 1, 2",
            seconds("max(j.date_time)"),
            PairParams::FROM,
            self.table(journal(Table::InventorySnapshot)),
            at("p.since"),
        );
        let mut client = self.client.lock().await;
        let rows = client.query(&sql, &params.params()).await.map_err(self.error("reading the snapshot journal"))?;
        Ok(rows.into_iter().map(|row| ((row.get(0), row.get(1)), row.get(2))).collect())
    }

    async fn states(&self, sql: &str, params: &PairParams) -> Result<HashMap<Pair, PairState>, SinkError> {
        let mut client = self.client.lock().await;
        let rows = client.query(sql, &params.params()).await.map_err(self.error("reading the stored stock"))?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let state = PairState { date_time: row.get(2), final_quantity: row.get(3), snapshot_quantity: row.get(4) };
                ((row.get(0), row.get(1)), state)
            })
            .collect())
    }

    /// The distinct events of `table` already applied to each of `from`'s
    /// pairs at or after its time, in the table's schema.
    pub async fn applied_since(&self, table: Table, from: &HashMap<Pair, i64>) -> Result<RecordBatch, SinkError> {
        let params = PairParams::new(from.iter().map(|(pair, time)| (pair, *time)));
        let columns: Vec<String> = table
            .columns()
            .iter()
            .map(|column| match column.kind {
                ValueKind::DateTime => seconds(&format!("j.{}", quote(column.name))),
                _ => format!("j.{}", quote(column.name)),
            })
            .collect();
        let sql = format!(
            "SELECT DISTINCT {} FROM {} JOIN {} j ON j.store_id = p.store_id AND j.item_id = p.item_id AND j.date_time >= {}",
            columns.join(", "),
            PairParams::FROM,
            self.table(journal(table)),
            at("p.since")
        );
        let mut client = self.client.lock().await;
        let rows = client.query(&sql, &params.params()).await.map_err(self.error("reading the events applied"))?;
        let arrays: Vec<ArrayRef> = table
            .columns()
            .iter()
            .enumerate()
            .map(|(index, column)| -> ArrayRef {
                match column.kind {
                    ValueKind::Text | ValueKind::TransId => {
                        Arc::new(rows.iter().map(|row| row.get::<_, Option<String>>(index)).collect::<arrow::array::StringArray>())
                    }
                    ValueKind::DateTime => {
                        let mut builder = TimestampSecondBuilder::new();
                        rows.iter().for_each(|row| builder.append_option(row.get::<_, Option<i64>>(index)));
                        Arc::new(builder.finish())
                    }
                    ValueKind::Int | ValueKind::Quantity => {
                        Arc::new(rows.iter().map(|row| row.get::<_, Option<i64>>(index)).collect::<arrow::array::Int64Array>())
                    }
                }
            })
            .collect();
        Ok(RecordBatch::try_new(table.schema(), arrays).expect("columns of the table's schema"))
    }

    /// For each row of `batch` (events of `table`), whether an identical
    /// event has been applied already.
    pub async fn already_applied(&self, table: Table, batch: &RecordBatch) -> Result<Vec<bool>, SinkError> {
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        let mut arrays = Vec::new();
        let mut matches = Vec::new();
        for (index, column) in table.columns().iter().enumerate() {
            let array = batch.column(index);
            let n = index + 1;
            let name = quote(column.name);
            match column.kind {
                ValueKind::Text | ValueKind::TransId => {
                    let values = array.as_string::<i32>();
                    params.push(Box::new((0..values.len()).map(|i| values.is_valid(i).then(|| values.value(i).to_string())).collect::<Vec<_>>()));
                    arrays.push(format!("${n}::text[]"));
                    matches.push(format!("j.{name} IS NOT DISTINCT FROM c.{name}"));
                }
                ValueKind::DateTime => {
                    let values = array.as_primitive::<TimestampSecondType>();
                    params.push(Box::new((0..values.len()).map(|i| values.is_valid(i).then(|| values.value(i))).collect::<Vec<_>>()));
                    arrays.push(format!("${n}::bigint[]"));
                    matches.push(format!("j.{name} = {}", at(&format!("c.{name}"))));
                }
                ValueKind::Int | ValueKind::Quantity => {
                    let values = array.as_primitive::<Int64Type>();
                    params.push(Box::new((0..values.len()).map(|i| values.is_valid(i).then(|| values.value(i))).collect::<Vec<_>>()));
                    arrays.push(format!("${n}::bigint[]"));
                    matches.push(format!("j.{name} IS NOT DISTINCT FROM c.{name}"));
                }
            }
        }
        let names: Vec<String> = table.columns().iter().map(|c| quote(c.name)).collect();
        let sql = format!(
            "SELECT c.row_number FROM unnest({}) WITH ORDINALITY AS c({}, row_number) \
             WHERE EXISTS (SELECT 1 FROM {} j WHERE {})",
            arrays.join(", "),
            names.join(", "),
            self.table(journal(table)),
            matches.join(" AND ")
        );
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
        let mut client = self.client.lock().await;
        let rows = client.query(&sql, &refs).await.map_err(self.error("looking up late events among those applied"))?;
        let mut applied = vec![false; batch.num_rows()];
        for row in rows {
            applied[row.get::<_, i64>(0) as usize - 1] = true;
        }
        Ok(applied)
    }

    /// Removes what a run computes again, from the outputs it keeps
    /// (`kept`): the `enriched` rows of each of `from`'s pairs at or after
    /// its time, and the `current_inventory` and stock rows of every pair in
    /// `touched`. Returns the `enriched` rows removed.
    pub async fn remove_for_rewrite(&self, from: &HashMap<Pair, i64>, touched: &[Pair], kept: &[&str]) -> Result<u64, SinkError> {
        let rewrite = PairParams::new(from.iter().map(|(pair, time)| (pair, *time)));
        let touched = PairParams::new(touched.iter().map(|pair| (pair, 0)));
        let mut statements: Vec<(String, &[&(dyn ToSql + Sync)])> = Vec::new();
        let (rewrite_params, touched_params) = (rewrite.params(), touched.params());
        let enriched = kept.contains(&crate::pipeline::ENRICHED);
        if enriched {
            let sql = format!(
                "DELETE FROM {} e USING {} WHERE e.store_id = p.store_id AND e.item_id = p.item_id AND e.date_time >= {}",
                self.table(crate::pipeline::ENRICHED),
                PairParams::FROM,
                at("p.since")
            );
            statements.push((sql, &rewrite_params[..]));
        }
        let tables = [crate::pipeline::CURRENT_INVENTORY, STOCK].into_iter().filter(|table| *table == STOCK || kept.contains(table));
        for table in tables {
            let sql = format!(
                "DELETE FROM {} t USING {} WHERE t.store_id = p.store_id AND t.item_id = p.item_id",
                self.table(table),
                PairParams::FROM
            );
            statements.push((sql, &touched_params[..]));
        }
        let mut client = self.client.lock().await;
        let removed = client.execute_all(&statements).await.map_err(self.error("removing the rows to compute again"))?;
        Ok(if enriched { removed[0] } else { 0 })
    }

    /// Writes `states` to the stock table (in place, or as its new version
    /// if the table is staged).
    pub async fn put_stock(&mut self, states: &std::collections::BTreeMap<Pair, PairState>) -> Result<(), SinkError> {
        self.put(STOCK, crate::checkpoint::stock_batch(states)).await.map(drop)
    }
}
