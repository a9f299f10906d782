//! The checkpoint of an incremental run (SPEC 6.1) and the decisions a run
//! takes from it, as pure functions: where each input goes on from, which
//! events are late, from where each store and item is computed again, and
//! the stock each store and item is left with. The destination stores the
//! checkpoint (`sinks::postgres`) and the sources report positions; nothing
//! here does I/O.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampSecondType};

use crate::sources::records::Position;

/// A store and item: (store_id, item_id).
pub type Pair = (i64, i64);

/// Where every input of the runs so far stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// Per Kafka topic and partition: the next offset to read.
    pub offsets: BTreeMap<(String, i32), i64>,
    /// Per CSV event file, by its name in the data directory: what has been loaded.
    pub files: BTreeMap<String, FileMark>,
    /// The output tables the runs keep (`stream --tables`), in order; empty
    /// in a checkpoint stored before pos-etl recorded them (both kept).
    pub tables: Vec<String>,
}

/// How much of a CSV file has been loaded, and how to recognise it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMark {
    /// Where the next record starts: the end of the last complete line loaded.
    pub end: Position,
    /// A fingerprint of the bytes before `end.byte` (see `sources::csv::fingerprint`).
    pub fingerprint: String,
}

impl Checkpoint {
    /// Every position, by `topic/partition` or file name: for the summary.
    pub fn positions(&self) -> BTreeMap<String, u64> {
        let offsets = self.offsets.iter().map(|((topic, partition), next)| (format!("{topic}/{partition}"), *next as u64));
        let files = self.files.iter().map(|(name, mark)| (name.clone(), mark.end.byte));
        offsets.chain(files).collect()
    }

    /// The checkpoint as JSON, for a destination that keeps it in a file
    /// (a Delta table, `sinks::delta::state`).
    pub fn to_json(&self) -> serde_json::Value {
        let offsets = self.offsets.iter().map(|((topic, partition), next)| {
            serde_json::json!({"topic": topic, "partition": partition, "next": next})
        });
        let files = self.files.iter().map(|(name, mark)| {
            serde_json::json!({"name": name, "byte": mark.end.byte, "line": mark.end.line, "fingerprint": mark.fingerprint})
        });
        serde_json::json!({
            "kafka": offsets.collect::<Vec<_>>(),
            "files": files.collect::<Vec<_>>(),
            "tables": self.tables,
        })
    }

    /// The checkpoint that [`Checkpoint::to_json`] wrote as `json`.
    pub fn from_json(json: &serde_json::Value) -> Result<Checkpoint, String> {
        let list = |key: &str| json[key].as_array().cloned().ok_or_else(|| format!("the checkpoint has no list {key}"));
        let text = |value: &serde_json::Value, key: &str| value[key].as_str().map(str::to_string).ok_or_else(|| format!("{key} is not text"));
        let number = |value: &serde_json::Value, key: &str| value[key].as_i64().ok_or_else(|| format!("{key} is not a number"));
        let mut checkpoint = Checkpoint::default();
        for offset in list("kafka")? {
            let partition = i32::try_from(number(&offset, "partition")?).map_err(|e| e.to_string())?;
            checkpoint.offsets.insert((text(&offset, "topic")?, partition), number(&offset, "next")?);
        }
        for file in list("files")? {
            let end = Position { byte: number(&file, "byte")? as u64, line: number(&file, "line")? as u64 };
            checkpoint.files.insert(text(&file, "name")?, FileMark { end, fingerprint: text(&file, "fingerprint")? });
        }
        for table in list("tables")? {
            checkpoint.tables.push(table.as_str().ok_or("a table name is not text")?.to_string());
        }
        Ok(checkpoint)
    }
}

/// Whether a run that keeps `now` may go on from a checkpoint whose runs
/// kept `stored`: a table the earlier runs did not keep lacks their rows,
/// and one they kept would lack this run's, so the set may not change. The
/// error says how to start again.
pub fn same_tables(stored: &[String], now: &[&str]) -> Result<(), String> {
    let stored: Vec<&str> = match stored.is_empty() {
        true => vec![crate::pipeline::ENRICHED, crate::pipeline::CURRENT_INVENTORY],
        false => stored.iter().map(String::as_str).collect(),
    };
    match stored == now {
        true => Ok(()),
        false => Err(format!(
            "the runs so far kept {}, this one would keep {}: a run without --incremental (a full load) starts the tables and the checkpoint again",
            stored.join(","),
            now.join(",")
        )),
    }
}

/// Where a run reads a CSV file from, given what the checkpoint says of it
/// (`mark`), the file's length now and the fingerprint now of the bytes the
/// mark covers. `None`: nothing new. An error says how the file changed
/// other than by growing, which a run cannot account for.
pub fn file_start(mark: Option<&FileMark>, len: u64, fingerprint_now: Option<&str>) -> Result<Option<Position>, String> {
    let Some(mark) = mark else {
        return Ok(Some(Position::START));
    };
    if len < mark.end.byte {
        return Err(format!("it is shorter ({len} bytes) than the {} bytes already loaded", mark.end.byte));
    }
    if fingerprint_now != Some(mark.fingerprint.as_str()) {
        return Err(format!("its first {} bytes, already loaded, have changed", mark.end.byte));
    }
    Ok((len > mark.end.byte).then_some(mark.end))
}

/// The stock of one store and item after the last event applied to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairState {
    /// That event's time (seconds since the epoch, wall clock).
    pub date_time: i64,
    /// The stock after it; `None` before any snapshot.
    pub final_quantity: Option<i64>,
    /// The count of the last snapshot up to it, if any.
    pub snapshot_quantity: Option<i64>,
}

/// `states` as rows of the rules' `stock_state` table (and of the stock
/// table an incremental run stores), in store and item order.
pub fn stock_batch<'a>(states: impl IntoIterator<Item = (&'a Pair, &'a PairState)>) -> RecordBatch {
    use arrow::array::{ArrayRef, Int64Array, TimestampSecondArray};
    let mut rows: Vec<(&Pair, &PairState)> = states.into_iter().collect();
    rows.sort_by_key(|(pair, _)| **pair);
    let columns: Vec<ArrayRef> = vec![
        std::sync::Arc::new(Int64Array::from_iter_values(rows.iter().map(|(pair, _)| pair.0))),
        std::sync::Arc::new(Int64Array::from_iter_values(rows.iter().map(|(pair, _)| pair.1))),
        std::sync::Arc::new(TimestampSecondArray::from_iter_values(rows.iter().map(|(_, state)| state.date_time))),
        std::sync::Arc::new(Int64Array::from_iter(rows.iter().map(|(_, state)| state.final_quantity))),
        std::sync::Arc::new(Int64Array::from_iter(rows.iter().map(|(_, state)| state.snapshot_quantity))),
    ];
    RecordBatch::try_new(crate::pipeline::stock_state_schema(), columns).expect("columns of the schema")
}

/// The stock per store and item in `batch` (of [`stock_batch`]'s columns).
pub fn stock_from_batch(batch: &RecordBatch) -> Result<HashMap<Pair, PairState>, String> {
    let column = |index: usize| batch.columns().get(index).ok_or_else(|| "the stock has too few columns".to_string());
    let int = |index: usize| -> Result<&arrow::array::Int64Array, String> {
        column(index)?.as_primitive_opt::<Int64Type>().ok_or_else(|| format!("stock column {index} is not a 64-bit integer"))
    };
    let times = column(2)?.as_primitive_opt::<TimestampSecondType>().ok_or("the stock's date_time is not in seconds")?;
    let (stores, items, finals, snapshots) = (int(0)?, int(1)?, int(3)?, int(4)?);
    let value = |array: &arrow::array::Int64Array, row| array.is_valid(row).then(|| array.value(row));
    Ok((0..batch.num_rows())
        .map(|row| {
            let state = PairState { date_time: times.value(row), final_quantity: value(finals, row), snapshot_quantity: value(snapshots, row) };
            ((stores.value(row), items.value(row)), state)
        })
        .collect())
}

/// The store_id, item_id and date_time columns of an event batch.
pub fn pair_columns(
    batch: &RecordBatch,
) -> (&arrow::array::Int64Array, &arrow::array::Int64Array, &arrow::array::TimestampSecondArray) {
    let column = |name| batch.column_by_name(name).expect("event tables have store_id, item_id and date_time");
    (
        column("store_id").as_primitive::<Int64Type>(),
        column("item_id").as_primitive::<Int64Type>(),
        column("date_time").as_primitive::<TimestampSecondType>(),
    )
}

/// The column `name` of `batch` (of an output table: enriched or
/// current_inventory) as `data_type`: the rules may give an integer column
/// another width, and a Delta table has its timestamps in microseconds.
pub fn output_column(batch: &RecordBatch, name: &str, data_type: &DataType) -> Result<arrow::array::ArrayRef, String> {
    let column = batch.column_by_name(name).ok_or_else(|| format!("the output has no {name} column"))?;
    arrow::compute::cast(column, data_type).map_err(|e| e.to_string())
}

/// How far an event at `time` is before the last event applied to its store
/// and item, if by more than `window` seconds: such an event is late (SPEC
/// 6.2) and rejected.
pub fn late_by(time: i64, last: Option<&PairState>, window: i64) -> Option<i64> {
    let last = last?.date_time;
    (time < last.saturating_sub(window)).then(|| last - time)
}

/// What a run does with a store and item it has new events for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairPlan {
    /// Every new event sorts after the last applied one: compute on from
    /// the stored stock and append.
    Append,
    /// Some new event is at or before the last applied one (within the late
    /// window): the rows from this time on are computed again, from the
    /// events already applied since then and the new ones, and replace the
    /// stored ones.
    RewriteFrom(i64),
}

/// The plan for a store and item whose earliest new (not late) event is at
/// `since`. An event at the same second as the last applied one may sort
/// before it (SPEC 2.1 breaks ties by more than time), so it rewrites.
pub fn plan(since: i64, last: Option<&PairState>) -> PairPlan {
    match last {
        Some(last) if since <= last.date_time => PairPlan::RewriteFrom(since),
        _ => PairPlan::Append,
    }
}

/// A duration in seconds as `1d 2h 3m 4s`, largest units first, zeros left out.
pub fn format_seconds(seconds: i64) -> String {
    let units = [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)];
    let mut left = seconds.max(0);
    let parts: Vec<String> = units
        .iter()
        .filter_map(|(unit, size)| {
            let count = left / size;
            left %= size;
            (count > 0).then(|| format!("{count}{unit}"))
        })
        .collect();
    if parts.is_empty() { "0s".to_string() } else { parts.join(" ") }
}

/// The stock each store and item is left with, followed along the rows of
/// `enriched` as they are written (in store, item and stock order).
#[derive(Debug, Default)]
pub struct StockTracker {
    states: HashMap<Pair, Seen>,
}

/// What the rows of a run said of one store and item.
#[derive(Debug, Clone, Copy)]
struct Seen {
    date_time: i64,
    final_quantity: Option<i64>,
    /// The last snapshot among the run's rows.
    snapshot_quantity: Option<i64>,
}

impl StockTracker {
    /// Follows the rows of one batch of `enriched`. It needs the columns
    /// store_id, item_id, date_time, quantity, source_type and final_quantity.
    pub fn observe(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let int = |name: &str| output_column(batch, name, &DataType::Int64).map(|array| array.as_primitive::<Int64Type>().clone());
        let (store, item, quantity, stock) = (int("store_id")?, int("item_id")?, int("quantity")?, int("final_quantity")?);
        let time = output_column(batch, "date_time", &DataType::Timestamp(TimeUnit::Second, None))?;
        let time = time.as_primitive::<TimestampSecondType>();
        let source_type = output_column(batch, "source_type", &DataType::Utf8)?;
        let source_type = source_type.as_string::<i32>();
        let value = |array: &arrow::array::PrimitiveArray<Int64Type>, row| (!array.is_null(row)).then(|| array.value(row));
        for row in 0..batch.num_rows() {
            let pair = (store.value(row), item.value(row));
            let snapshot = (source_type.value(row) == "snapshot_only").then(|| quantity.value(row));
            let seen = Seen { date_time: time.value(row), final_quantity: value(&stock, row), snapshot_quantity: snapshot };
            self.states
                .entry(pair)
                .and_modify(|earlier| *earlier = Seen { snapshot_quantity: snapshot.or(earlier.snapshot_quantity), ..seen })
                .or_insert(seen);
        }
        Ok(())
    }

    /// The state of every store and item the run wrote rows for; the last
    /// snapshot comes from `carried` (the state the run started from) when
    /// the run's rows have none.
    pub fn finish(self, carried: &HashMap<Pair, PairState>) -> BTreeMap<Pair, PairState> {
        self.states
            .into_iter()
            .map(|(pair, seen)| {
                let snapshot = seen.snapshot_quantity.or_else(|| carried.get(&pair).and_then(|c| c.snapshot_quantity));
                let state =
                    PairState { date_time: seen.date_time, final_quantity: seen.final_quantity, snapshot_quantity: snapshot };
                (pair, state)
            })
            .collect()
    }
}

impl fmt::Display for PairPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PairPlan::Append => f.write_str("append"),
            PairPlan::RewriteFrom(time) => write!(f, "rewrite from {time}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray, TimestampSecondArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    const DAY: i64 = 86_400;

    #[test]
    fn the_kept_tables_may_not_change() {
        let (both, current) = (["enriched", "current_inventory"], ["current_inventory"]);
        let stored = |tables: &[&str]| tables.iter().map(|table| table.to_string()).collect::<Vec<_>>();
        assert_eq!(same_tables(&stored(&both), &both), Ok(()));
        assert_eq!(same_tables(&[], &both), Ok(()), "an older checkpoint kept both");
        assert_eq!(same_tables(&stored(&current), &current), Ok(()));
        let error = same_tables(&stored(&both), &current).unwrap_err();
        assert!(error.starts_with("the runs so far kept enriched,current_inventory, this one would keep current_inventory"), "{error}");
        assert!(same_tables(&[], &current).is_err());
    }

    #[test]
    fn a_file_goes_on_from_its_mark_only_if_it_grew() {
        let mark = FileMark { end: Position { byte: 100, line: 5 }, fingerprint: "abc".into() };
        assert_eq!(file_start(None, 10, None), Ok(Some(Position::START)), "a new file is read whole");
        assert_eq!(file_start(Some(&mark), 100, Some("abc")), Ok(None), "nothing new");
        assert_eq!(file_start(Some(&mark), 150, Some("abc")), Ok(Some(mark.end)), "the grown tail");
        assert!(file_start(Some(&mark), 90, None).unwrap_err().contains("shorter (90 bytes) than the 100 bytes"));
        assert!(file_start(Some(&mark), 150, Some("abd")).unwrap_err().contains("first 100 bytes"));
    }

    #[test]
    fn the_checkpoint_and_the_stock_survive_a_file() {
        let mut checkpoint = Checkpoint::default();
        checkpoint.offsets.insert(("InventoryChangeStore001".into(), 3), 1_234);
        let end = Position { byte: 100, line: 5 };
        checkpoint.files.insert("inventory_change_001.csv".into(), FileMark { end, fingerprint: "abc".into() });
        checkpoint.tables = vec!["enriched".into(), "current_inventory".into()];
        assert_eq!(Checkpoint::from_json(&checkpoint.to_json()), Ok(checkpoint));
        assert!(Checkpoint::from_json(&serde_json::json!({"kafka": 1})).is_err());

        let states: HashMap<Pair, PairState> = [
            ((1, 2), PairState { date_time: DAY, final_quantity: Some(7), snapshot_quantity: None }),
            ((1, 3), PairState { date_time: 2 * DAY, final_quantity: None, snapshot_quantity: Some(4) }),
        ]
        .into();
        assert_eq!(stock_from_batch(&stock_batch(&states)), Ok(states));
    }

    #[test]
    fn late_is_beyond_the_window_before_the_last_applied_event() {
        let last = PairState { date_time: 10 * DAY, final_quantity: Some(5), snapshot_quantity: Some(5) };
        assert_eq!(late_by(9 * DAY, Some(&last), DAY), None, "exactly the window back is still in it");
        assert_eq!(late_by(9 * DAY - 1, Some(&last), DAY), Some(DAY + 1));
        assert_eq!(late_by(0, None, DAY), None, "nothing applied yet: nothing is late");
        assert_eq!(plan(10 * DAY + 1, Some(&last)), PairPlan::Append);
        assert_eq!(plan(10 * DAY, Some(&last)), PairPlan::RewriteFrom(10 * DAY), "the same second may sort before");
        assert_eq!(plan(9 * DAY, Some(&last)), PairPlan::RewriteFrom(9 * DAY));
        assert_eq!(plan(0, None), PairPlan::Append);
        assert_eq!(format_seconds(DAY + 2 * 3600 + 5), "1d 2h 5s");
        assert_eq!(format_seconds(0), "0s");
    }

    #[test]
    fn the_stock_left_is_the_last_row_and_the_last_snapshot() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("store_id", DataType::Int64, false),
            Field::new("item_id", DataType::Int64, false),
            Field::new("date_time", DataType::Timestamp(TimeUnit::Second, None), false),
            Field::new("quantity", DataType::Int64, false),
            Field::new("source_type", DataType::Utf8, false),
            Field::new("final_quantity", DataType::Int64, true),
        ]));
        let batch = |rows: &[(i64, i64, i64, i64, &str, Option<i64>)]| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                    Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
                    Arc::new(TimestampSecondArray::from_iter_values(rows.iter().map(|r| r.2))),
                    Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3))),
                    Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.4))),
                    Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.5))),
                ],
            )
            .unwrap()
        };
        let mut tracker = StockTracker::default();
        tracker
            .observe(&batch(&[(1, 1, 10, 100, "snapshot_only", Some(100)), (1, 1, 20, -2, "snapshot_with_change", Some(98))]))
            .unwrap();
        // The next batch goes on with the same pair, then one that only has changes.
        tracker.observe(&batch(&[(1, 1, 30, 5, "snapshot_with_change", Some(103)), (1, 2, 15, -1, "snapshot_with_change", Some(6))])).unwrap();
        let carried = HashMap::from([((1, 2), PairState { date_time: 5, final_quantity: Some(7), snapshot_quantity: Some(9) })]);
        let states = tracker.finish(&carried);
        assert_eq!(states[&(1, 1)], PairState { date_time: 30, final_quantity: Some(103), snapshot_quantity: Some(100) });
        assert_eq!(states[&(1, 2)], PairState { date_time: 15, final_quantity: Some(6), snapshot_quantity: Some(9) }, "the carried count");
    }
}
