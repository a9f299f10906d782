//! Incremental runs into Delta tables (SPEC 6.1): the checkpoint lives in
//! the first table the runs keep (`enriched`), under `_pos_etl/` (Delta's
//! VACUUM leaves names starting with `_` alone):
//!
//! - `_pos_etl/<run>/state.json`: the checkpoint (input positions, tables
//!   kept), the run's number and the journal files so far;
//! - `_pos_etl/<run>/stock.parquet`: the stock of every store and item;
//! - `_pos_etl/<run>/snapshot_journal.parquet`, `change_journal.parquet`:
//!   the events the run applied, as read, so that a record sent again is
//!   known (SPEC 2.2) and a late one can be applied among those applied.
//!
//! A run writes these under a name of its own before it commits, and its
//! commit names them in its `commitInfo` (`pos_etl.state`), beside `txn`
//! actions for its number (`pos-etl`) and every input position
//! (`pos-etl:<topic>/<partition>` → the next offset, `pos-etl:<file>` → the
//! bytes loaded). The state is the one the table's last pos-etl commit
//! names, so rows and checkpoint cannot disagree, and the files of a run
//! that never committed are never read. A second run racing on the same
//! checkpoint writes the same `txn` application: Delta refuses its commit.
//!
//! The other table (`current_inventory`) is committed first: if the run
//! dies between the two commits, the next run computes the same stores and
//! items again from the same checkpoint and replaces their rows.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampSecondType};
use arrow::row::{RowConverter, SortField};
use bytes::Bytes;
use deltalake::DeltaTable;
use deltalake::kernel::{Action, Transaction};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::{COMMIT_FIELD, CommitKind, DeltaTarget, SharedWriter, Stamp};
use crate::checkpoint::{self, Checkpoint, Pair, PairState, output_column};
use crate::error::SinkError;
use crate::sources::Table;

/// The directory of the state in the table that carries it.
const STATE_DIR: &str = "_pos_etl";
/// The `txn` application of the runs' numbers.
const RUN_APP: &str = "pos-etl";

/// One table an incremental run keeps.
#[derive(Debug)]
struct Kept {
    name: &'static str,
    target: DeltaTarget,
    /// The table as the run read it: its commit is checked against what
    /// other writers committed since.
    table: DeltaTable,
    writer: SharedWriter,
    /// Files whose rows the run writes again, less those it removes.
    removes: Vec<Action>,
}

/// The state the last committed run left.
#[derive(Debug)]
struct Stored {
    /// Where it is, relative to the table.
    dir: String,
    run: i64,
    checkpoint: Checkpoint,
    /// The journal files, relative to the table.
    journals: Vec<String>,
}

/// An incremental run into Delta tables: the state its start found, and
/// what it changes, committed together by [`DeltaLoad::commit`].
#[derive(Debug)]
pub struct DeltaLoad {
    /// The tables kept, in SPEC order; the first carries the state.
    kept: Vec<Kept>,
    /// The store of the first table, rooted at it.
    store: Arc<dyn ObjectStore>,
    stored: Option<Stored>,
    stock: HashMap<Pair, PairState>,
    journal: Vec<(Table, RecordBatch)>,
    checkpoint: Checkpoint,
}

impl DeltaLoad {
    /// Reads the state of the runs into `tables` (name and place, in SPEC
    /// order): none if the first table has none, or if a full run replaced
    /// it since.
    pub async fn open(tables: Vec<(&'static str, DeltaTarget)>) -> Result<DeltaLoad, SinkError> {
        let mut kept = Vec::new();
        for (name, target) in tables {
            let table = target.open().await?;
            kept.push(Kept { name, writer: target.writer(), table, target, removes: Vec::new() });
        }
        let Kept { target: first, table, .. } = kept.first().expect("an incremental run keeps a table");
        let store = table.object_store();
        let stored = match last_state(table, first).await? {
            Some(dir) => Some(read_state(&store, &dir, first).await?),
            None => None,
        };
        let stock = match &stored {
            Some(stored) => {
                let path = format!("{}/stock.parquet", stored.dir);
                let batch = read_parquet(&store, &path, first, &crate::pipeline::stock_state_schema()).await?;
                checkpoint::stock_from_batch(&batch).map_err(|e| first.error("reading the checkpoint of", e))?
            }
            None => HashMap::new(),
        };
        Ok(DeltaLoad { kept, store, stored, stock, journal: Vec::new(), checkpoint: Checkpoint::default() })
    }

    fn first(&self) -> &DeltaTarget {
        &self.kept[0].target
    }

    /// The table that carries the checkpoint, for messages.
    pub fn place(&self) -> String {
        format!("Delta table {}", self.first())
    }

    /// The checkpoint of the runs so far, `None` before the first.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        self.stored.as_ref().map(|stored| stored.checkpoint.clone())
    }

    /// The writer of the kept table at `target`.
    pub fn writer(&self, target: &DeltaTarget) -> Option<SharedWriter> {
        self.kept.iter().find(|kept| kept.target == *target).map(|kept| kept.writer.clone())
    }

    /// The stored stock of each of `pairs` that has one.
    pub fn stock(&self, pairs: &[Pair]) -> HashMap<Pair, PairState> {
        pairs.iter().filter_map(|pair| self.stock.get(pair).map(|state| (*pair, *state))).collect()
    }

    /// The events of `table` applied to `pairs`, as read.
    async fn applied(&self, table: Table, pairs: &HashSet<Pair>) -> Result<RecordBatch, SinkError> {
        let schema = table.schema();
        let mut batches = Vec::new();
        let journals = self.stored.iter().flat_map(|stored| &stored.journals);
        for path in journals.filter(|path| path.ends_with(journal_file(table))) {
            let batch = read_parquet(&self.store, path, self.first(), &schema).await?;
            let (stores, items, _) = checkpoint::pair_columns(&batch);
            let mask: BooleanArray =
                (0..batch.num_rows()).map(|row| Some(pairs.contains(&(stores.value(row), items.value(row))))).collect();
            batches.push(filter_record_batch(&batch, &mask).map_err(|e| self.first().error("reading the journal of", e.to_string()))?);
        }
        concat_batches(&schema, &batches).map_err(|e| self.first().error("reading the journal of", e.to_string()))
    }

    /// For each row of `batch` (events of `table`), whether an identical
    /// event has been applied already.
    pub async fn already_applied(&self, table: Table, batch: &RecordBatch) -> Result<Vec<bool>, SinkError> {
        let applied = self.applied(table, &pairs_of(batch)).await?;
        let error = |e: arrow::error::ArrowError| self.first().error("reading the journal of", e.to_string());
        let converter = row_converter(batch).map_err(error)?;
        let known: HashSet<Vec<u8>> =
            converter.convert_columns(applied.columns()).map_err(error)?.iter().map(|row| row.as_ref().to_vec()).collect();
        let rows = converter.convert_columns(batch.columns()).map_err(error)?;
        Ok((0..batch.num_rows()).map(|row| known.contains(rows.row(row).as_ref())).collect())
    }

    /// For each of `from`'s pairs, the time of the last snapshot applied at
    /// or before its time, if any.
    pub async fn last_snapshot_at_or_before(&self, from: &HashMap<Pair, i64>) -> Result<HashMap<Pair, i64>, SinkError> {
        let snapshots = self.applied(Table::InventorySnapshot, &from.keys().copied().collect()).await?;
        let (stores, items, times) = checkpoint::pair_columns(&snapshots);
        let mut last: HashMap<Pair, i64> = HashMap::new();
        for row in 0..snapshots.num_rows() {
            let (pair, time) = ((stores.value(row), items.value(row)), times.value(row));
            if time <= from[&pair] {
                last.entry(pair).and_modify(|t| *t = (*t).max(time)).or_insert(time);
            }
        }
        Ok(last)
    }

    /// The distinct events of `table` applied to each of `from`'s pairs at
    /// or after its time.
    pub async fn applied_since(&self, table: Table, from: &HashMap<Pair, i64>) -> Result<RecordBatch, SinkError> {
        let applied = self.applied(table, &from.keys().copied().collect()).await?;
        let error = |e: arrow::error::ArrowError| self.first().error("reading the journal of", e.to_string());
        let (stores, items, times) = checkpoint::pair_columns(&applied);
        let converter = row_converter(&applied).map_err(error)?;
        let rows = converter.convert_columns(applied.columns()).map_err(error)?;
        let mut seen = HashSet::new();
        let mask: BooleanArray = (0..applied.num_rows())
            .map(|row| Some(times.value(row) >= from[&(stores.value(row), items.value(row))] && seen.insert(rows.row(row))))
            .collect();
        filter_record_batch(&applied, &mask).map_err(error)
    }

    /// Takes out of the kept tables what the run computes again: the
    /// `enriched` rows of each of `from`'s pairs at or after its time, and
    /// the `current_inventory` rows and stock of every pair in `touched`.
    /// A data file that holds such rows is removed at the commit and its
    /// other rows written again. Returns the `enriched` rows taken out.
    pub async fn remove_for_rewrite(&mut self, from: &HashMap<Pair, i64>, touched: &[Pair]) -> Result<u64, SinkError> {
        for pair in touched {
            self.stock.remove(pair);
        }
        let touched: HashSet<Pair> = touched.iter().copied().collect();
        let mut removed = 0;
        for kept in &mut self.kept {
            if kept.name == crate::pipeline::ENRICHED {
                if !from.is_empty() {
                    // Seconds, as the events have them; the table's are microseconds.
                    let earliest = from.values().min().copied().unwrap_or(i64::MAX);
                    removed = kept.rewrite(Some(earliest), |pair, time| from.get(&pair).is_some_and(|since| time >= *since)).await?;
                }
            } else {
                kept.rewrite(None, |pair, _| touched.contains(&pair)).await?;
            }
        }
        Ok(removed)
    }

    /// Sets the stock of `states`' pairs.
    pub fn put_stock(&mut self, states: &BTreeMap<Pair, PairState>) {
        self.stock.extend(states);
    }

    /// Adds `batch` (events of `table`) to the journal.
    pub fn put_journal(&mut self, table: Table, batch: RecordBatch) {
        self.journal.push((table, batch));
    }

    /// Sets the checkpoint the run leaves.
    pub fn put_checkpoint(&mut self, checkpoint: &Checkpoint) {
        self.checkpoint = checkpoint.clone();
    }

    /// Writes the run's state, then commits each kept table, the one that
    /// carries the state last, naming it.
    pub async fn commit(self) -> Result<(), SinkError> {
        let DeltaLoad { kept, store, stored, stock, journal, checkpoint } = self;
        let first = &kept[0].target;
        let replace = stored.is_none();
        let run = stored.as_ref().map_or(1, |stored| stored.run + 1);
        // A name no other run shares, even one racing on the same checkpoint.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let dir = format!("{STATE_DIR}/{run:010}-{:x}-{}", now.as_nanos(), std::process::id());
        let mut journals = stored.map(|stored| stored.journals).unwrap_or_default();
        for table in [Table::InventorySnapshot, Table::InventoryChange] {
            let batches: Vec<&RecordBatch> = journal.iter().filter(|(of, _)| *of == table).map(|(_, batch)| batch).collect();
            if batches.iter().any(|batch| batch.num_rows() > 0) {
                let path = format!("{dir}/{}", journal_file(table));
                write_parquet(&store, &path, first, &table.schema(), &batches).await?;
                journals.push(path);
            }
        }
        let stock = checkpoint::stock_batch(&stock);
        write_parquet(&store, &format!("{dir}/stock.parquet"), first, &stock.schema(), &[&stock]).await?;
        let state = serde_json::json!({"run": run, "checkpoint": checkpoint.to_json(), "journals": journals});
        put(&store, &format!("{dir}/state.json"), first, serde_json::to_vec_pretty(&state).expect("JSON").into()).await?;

        let positions: Vec<Transaction> =
            checkpoint.positions().into_iter().map(|(name, next)| Transaction::new(format!("{RUN_APP}:{name}"), next as i64)).collect();
        let mut order: Vec<&Kept> = kept.iter().skip(1).collect();
        order.push(&kept[0]);
        failpoint("before-delta-commits").await;
        for table in order {
            let carries = std::ptr::eq(table, &kept[0]);
            if carries && kept.len() > 1 {
                failpoint("between-delta-commits").await;
            }
            let kind = match replace {
                true => CommitKind::Replace,
                false => CommitKind::Append { removes: table.removes.clone(), run },
            };
            let stamp = match carries {
                true => Stamp {
                    transactions: std::iter::once(Transaction::new(RUN_APP, run)).chain(positions.iter().cloned()).collect(),
                    pos_etl: serde_json::json!({"run": run, "state": dir}),
                },
                false => Stamp { transactions: Vec::new(), pos_etl: serde_json::json!({"run": run}) },
            };
            table.target.commit(&table.table, &table.writer, kind, stamp).await?;
        }
        Ok(())
    }
}

/// Holds the run at `point` if `POS_ETL_FAILPOINT` names it: says so on
/// stderr, then waits for a line (or the end) of stdin. The tests kill the
/// run there (`kill -9`) to show what a crash at that point leaves, or
/// commit to its table meanwhile, as a concurrent writer.
async fn failpoint(point: &str) {
    if std::env::var("POS_ETL_FAILPOINT").is_ok_and(|name| name == point) {
        eprintln!("pos-etl: failpoint {point} reached");
        let _ = tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new())).await;
    }
}

impl Kept {
    /// Removes, at the commit, every data file holding a row that `gone`
    /// (of its store and item, and its time in seconds) picks, and writes
    /// the file's other rows again. Files whose statistics say that all
    /// their rows are older than `newest_kept` seconds are not read.
    async fn rewrite(&mut self, newest_kept: Option<i64>, gone: impl Fn(Pair, i64) -> bool) -> Result<u64, SinkError> {
        let Ok(state) = self.table.snapshot() else { return Ok(0) };
        let store = self.table.object_store();
        let mut removed = 0;
        for file in state.log_data().iter() {
            if newest_kept.is_some_and(|earliest| latest_time(file.stats().as_deref()).is_some_and(|latest| latest < earliest)) {
                continue;
            }
            let path = file.object_store_path();
            let bytes = store.get(&path).await.map_err(|e| self.target.error("reading", e.to_string()))?;
            let bytes = bytes.bytes().await.map_err(|e| self.target.error("reading", e.to_string()))?;
            let batches = decode_parquet(bytes).map_err(|e| self.target.error("reading", format!("{path}: {e}")))?;
            let mut left = Vec::new();
            let mut taken = 0;
            for batch in batches {
                let keep = keep_mask(&batch, &gone).map_err(|e| self.target.error("reading", format!("{path}: {e}")))?;
                taken += (batch.num_rows() - keep.true_count()) as u64;
                left.push(filter_record_batch(&batch, &keep).map_err(|e| self.target.error("reading", e.to_string()))?);
            }
            if taken == 0 {
                continue;
            }
            removed += taken;
            self.removes.push(Action::Remove(file.remove_action(true)));
            let mut writer = self.writer.lock().await;
            for batch in left.iter().filter(|batch| batch.num_rows() > 0) {
                writer.write(batch).await?;
            }
        }
        Ok(removed)
    }
}

/// Which rows of `batch` (of an output table) `gone` does not pick.
fn keep_mask(batch: &RecordBatch, gone: &impl Fn(Pair, i64) -> bool) -> Result<BooleanArray, String> {
    let (stores, items) = (output_column(batch, "store_id", &DataType::Int64)?, output_column(batch, "item_id", &DataType::Int64)?);
    let (stores, items) = (stores.as_primitive::<Int64Type>(), items.as_primitive::<Int64Type>());
    let times = output_column(batch, "date_time", &DataType::Timestamp(TimeUnit::Second, None))?;
    let times = times.as_primitive::<TimestampSecondType>();
    Ok((0..batch.num_rows()).map(|row| Some(!gone((stores.value(row), items.value(row)), times.value(row)))).collect())
}

/// The latest `date_time` in a data file's statistics, in seconds.
fn latest_time(stats: Option<&str>) -> Option<i64> {
    let stats: serde_json::Value = serde_json::from_str(stats?).ok()?;
    let text = stats["maxValues"]["date_time"].as_str()?;
    let text = text.trim_end_matches('Z');
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").ok().map(|time| time.and_utc().timestamp())
}

/// The newest pos-etl commit of `table`: the state directory it names, or
/// `None` if it names none (a full run) or there is no such commit.
async fn last_state(table: &DeltaTable, target: &DeltaTarget) -> Result<Option<String>, SinkError> {
    if table.version().is_none() {
        return Ok(None);
    }
    let mut history = table.history(None);
    while let Some(commit) = history.try_next().await.map_err(|e| target.error("reading the history of", super::error_chain(&e)))? {
        if let Some(field) = commit.info.get(COMMIT_FIELD) {
            return Ok(field["state"].as_str().map(str::to_string));
        }
    }
    Ok(None)
}

/// The state in `dir`.
async fn read_state(store: &Arc<dyn ObjectStore>, dir: &str, target: &DeltaTarget) -> Result<Stored, SinkError> {
    let bytes = get(store, &format!("{dir}/state.json"), target).await?;
    let bad = |detail: String| target.error("reading the checkpoint of", format!("{dir}/state.json: {detail}"));
    let json: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    let checkpoint = Checkpoint::from_json(&json["checkpoint"]).map_err(bad)?;
    let journals = json["journals"].as_array().ok_or_else(|| bad("no journal list".to_string()))?;
    Ok(Stored {
        dir: dir.to_string(),
        run: json["run"].as_i64().ok_or_else(|| bad("no run number".to_string()))?,
        checkpoint,
        journals: journals.iter().filter_map(|path| path.as_str().map(str::to_string)).collect(),
    })
}

/// The name of a journal file.
fn journal_file(table: Table) -> &'static str {
    match table {
        Table::InventorySnapshot => "snapshot_journal.parquet",
        _ => "change_journal.parquet",
    }
}

/// The store and item pairs of `batch` (of an event table).
fn pairs_of(batch: &RecordBatch) -> HashSet<Pair> {
    let (stores, items, _) = checkpoint::pair_columns(batch);
    (0..batch.num_rows()).map(|row| (stores.value(row), items.value(row))).collect()
}

/// A converter of `batch`'s rows into comparable bytes (nulls equal).
fn row_converter(batch: &RecordBatch) -> Result<RowConverter, arrow::error::ArrowError> {
    RowConverter::new(batch.schema().fields().iter().map(|field| SortField::new(field.data_type().clone())).collect())
}

async fn get(store: &Arc<dyn ObjectStore>, path: &str, target: &DeltaTarget) -> Result<Bytes, SinkError> {
    let error = |e: object_store::Error| target.error("reading the checkpoint of", format!("{path}: {e}"));
    store.get(&ObjectPath::from(path)).await.map_err(error)?.bytes().await.map_err(error)
}

async fn put(store: &Arc<dyn ObjectStore>, path: &str, target: &DeltaTarget, bytes: Bytes) -> Result<(), SinkError> {
    let error = |e: object_store::Error| target.error("writing the checkpoint of", format!("{path}: {e}"));
    store.put(&ObjectPath::from(path), bytes.into()).await.map(drop).map_err(error)
}

/// The rows of the Parquet file `path`, in `schema`.
async fn read_parquet(
    store: &Arc<dyn ObjectStore>,
    path: &str,
    target: &DeltaTarget,
    schema: &arrow::datatypes::SchemaRef,
) -> Result<RecordBatch, SinkError> {
    let bad = |detail: String| target.error("reading the checkpoint of", format!("{path}: {detail}"));
    let batches = decode_parquet(get(store, path, target).await?).map_err(bad)?;
    concat_batches(schema, &batches).map_err(|e| bad(e.to_string()))
}

/// The batches of a whole Parquet file.
fn decode_parquet(bytes: Bytes) -> Result<Vec<RecordBatch>, String> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).and_then(|builder| builder.build()).map_err(|e| e.to_string())?;
    reader.collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())
}

/// Writes `batches` as the Parquet file `path`.
async fn write_parquet(
    store: &Arc<dyn ObjectStore>,
    path: &str,
    target: &DeltaTarget,
    schema: &arrow::datatypes::SchemaRef,
    batches: &[&RecordBatch],
) -> Result<(), SinkError> {
    let bad = |e: parquet::errors::ParquetError| target.error("writing the checkpoint of", format!("{path}: {e}"));
    // Compressed: the journal holds every event (uncompressed, 10 million cost 450 MB).
    let properties = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(properties)).map_err(bad)?;
    for batch in batches {
        writer.write(batch).map_err(bad)?;
    }
    put(store, path, target, writer.into_inner().map_err(bad)?.into()).await
}
