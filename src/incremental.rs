//! One incremental run (SPEC 6): read what is new since the checkpoint,
//! reject what is too late, feed the rules the new events with the stock
//! carried in (and, for a store and item that a late event reaches back
//! into, the events already applied since it), and stage in the run's
//! transaction the rows to append, the rows to replace and the next
//! checkpoint. The rules are the same SQL as a full run's, through
//! [`enrichment::run_on`]; the decisions are the pure functions of
//! [`checkpoint`](crate::checkpoint).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use datafusion::catalog::TableProvider;

use crate::checkpoint::{self, Checkpoint, FileMark, Pair, PairPlan, PairState, StockTracker, pair_columns};
use crate::config::{EventSource, RunConfig};
use crate::enrichment::{self, Enriched, Inputs, Job};
use crate::error::{Reject, RejectReason, SourceError};
use crate::pipeline::{self, Planned, Slot};
use crate::progress::Progress;
use crate::sinks::{Commit, Destination, OutputWriter};
use crate::sources::csv::{Prefix, complete_end, fingerprint, read_from};
use crate::sources::streaming::ReadLog;
use crate::sources::{self, Table, TableRead};
use crate::storage::Location;
use crate::summary::IncrementalSummary;

/// What a run read since the checkpoint.
#[derive(Debug)]
pub struct NewRecords {
    /// The lookups, whole, and the new event records.
    pub reads: Vec<TableRead>,
    /// The checkpoint once they are applied.
    pub after: Checkpoint,
}

/// The rules of an incremental run, planned once over the lookups and over
/// [`Slot`]s for what each run brings: its events (with those fed again)
/// and the stock carried in. `enrich --incremental` plans them for its one
/// run, `stream` once for all its batches (planning costs more than a small
/// batch's execution).
pub struct Engine {
    planned: Planned,
    snapshots: Slot,
    changes: Slot,
    stock: Slot,
}

impl Engine {
    /// Plans the rules of `job` with the lookups in `lookups` (whose batches
    /// it takes, leaving their counts and rejects to be accounted).
    pub async fn plan(job: &Job<'_>, lookups: &mut [TableRead]) -> anyhow::Result<Engine> {
        let partitions = job.run.resources.threads;
        let (snapshots, changes) = (Slot::new(Table::InventorySnapshot.schema()), Slot::new(Table::InventoryChange.schema()));
        let stock = Slot::new(pipeline::stock_state_schema());
        let mut tables: Vec<(Table, Arc<dyn TableProvider>)> = vec![
            (Table::InventorySnapshot, snapshots.table(partitions)?),
            (Table::InventoryChange, changes.table(partitions)?),
        ];
        for table in [Table::Store, Table::Item, Table::InventoryChangeType] {
            let of_table = lookups.iter_mut().filter(|read| read.table == table);
            let batches = of_table.flat_map(|read| std::mem::take(&mut read.batches)).collect();
            tables.push((table, pipeline::memory_table(table, batches, partitions)?));
        }
        let planned = enrichment::plan(job, tables, Some(stock.table(1)?), None).await?;
        Ok(Engine { planned, snapshots, changes, stock })
    }

    /// The slot of an event table.
    fn events(&self, table: Table) -> &Slot {
        match table {
            Table::InventorySnapshot => &self.snapshots,
            _ => &self.changes,
        }
    }
}

/// Runs `job` incrementally into the destination attached to `commit`
/// (a PostgreSQL transaction or Delta tables), with late events beyond
/// `late_window` rejected.
pub async fn run(
    job: &Job<'_>,
    late_window: Duration,
    progress: &Progress,
    commit: &mut Commit,
) -> anyhow::Result<Enriched> {
    let load = commit.state().expect("an incremental run attaches its destination first");
    let stored = load.checkpoint().await?;
    let mut new = read_new(job.run, &stored.clone().unwrap_or_default(), progress).await?;
    let engine = Engine::plan(job, &mut new.reads).await?;
    apply(job, &engine, late_window, stored, new, progress, commit).await
}

/// Applies `new` (read since the checkpoint `stored`, `None` before the
/// first run) with `engine` into the destination attached to `commit`: the
/// rows, the stock, the journal and the next checkpoint, staged to commit
/// together.
pub async fn apply(
    job: &Job<'_>,
    engine: &Engine,
    late_window: Duration,
    stored: Option<Checkpoint>,
    new: NewRecords,
    progress: &Progress,
    commit: &mut Commit,
) -> anyhow::Result<Enriched> {
    let mut load = commit.state().expect("an incremental run attaches its destination first");
    let first = stored.is_none();
    let before = stored.unwrap_or_default();
    let NewRecords { reads, mut after } = new;
    let kept = kept_tables(job);
    after.tables = kept.iter().map(|table| table.to_string()).collect();
    if !first {
        check_kept_tables(job, &before, &load.place())?;
    }
    let events_read: u64 = reads.iter().filter(|read| read.table.is_event()).map(|read| read.records).sum();
    let mut account = IncrementalSummary {
        first_run: first,
        records_read: events_read,
        checkpoint_before: before.positions(),
        checkpoint_after: after.positions(),
        ..Default::default()
    };
    if !first && events_read == 0 {
        account.nothing_new = true;
        let mut summary = crate::summary::Summary::default();
        summary.incremental = Some(account);
        return Ok(Enriched { summary, rejects: Vec::new() });
    }

    let mut reads = sources::merge_by_table(reads);
    let window = late_window.as_secs() as i64;
    let mut new_events: BTreeMap<Table, RecordBatch> = BTreeMap::new();
    for table in [Table::InventorySnapshot, Table::InventoryChange] {
        let batches = reads.iter_mut().filter(|read| read.table == table).flat_map(|read| std::mem::take(&mut read.batches));
        new_events.insert(table, arrow::compute::concat_batches(&table.schema(), &batches.collect::<Vec<_>>())?);
    }
    if !first {
        load.start_lookups().await?;
    }
    let stored_stock = match first {
        true => HashMap::new(),
        false => load.stock(&earliest_per_pair(new_events.values()).into_keys().collect::<Vec<_>>()).await?,
    };

    // Late events out, unless they were applied already (sent again).
    let mut late_reads = Vec::new();
    let mut duplicates = 0;
    for (table, batch) in new_events.iter_mut() {
        let late = late_mask(batch, &stored_stock, window);
        if late.true_count() == 0 {
            continue;
        }
        let candidates = filter_record_batch(batch, &late)?;
        let applied = load.already_applied(*table, &candidates).await?;
        duplicates += applied.iter().filter(|applied| **applied).count() as u64;
        let rejects = (0..candidates.num_rows())
            .filter(|row| !applied[*row])
            .map(|row| late_reject(*table, &candidates, row, &stored_stock, late_window))
            .collect();
        // Counted as read with the table's other records already.
        late_reads.push(TableRead { table: *table, batches: Vec::new(), records: 0, rejects });
        *batch = filter_record_batch(batch, &arrow::compute::not(&late)?)?;
    }
    account.late_rejected = late_reads.iter().map(|read| read.rejects.len() as u64).sum();

    // Each store and item computed on from its stock, or again from an earlier point.
    let since = earliest_per_pair(new_events.values());
    let mut carried: HashMap<Pair, PairState> = HashMap::new();
    let mut rewrite: HashMap<Pair, i64> = HashMap::new();
    for (pair, time) in &since {
        match checkpoint::plan(*time, stored_stock.get(pair)) {
            PairPlan::Append => carried.extend(stored_stock.get(pair).map(|state| (*pair, *state))),
            PairPlan::RewriteFrom(from) => {
                rewrite.insert(*pair, from);
            }
        }
    }
    let mut refed: BTreeMap<Table, RecordBatch> = BTreeMap::new();
    if !rewrite.is_empty() {
        // From the last snapshot before, where the stock depends on no
        // earlier event (before any snapshot it is unknown, and so is
        // nothing carried in).
        for (pair, time) in load.last_snapshot_at_or_before(&rewrite).await? {
            rewrite.insert(pair, time);
        }
        for table in [Table::InventorySnapshot, Table::InventoryChange] {
            refed.insert(table, load.applied_since(table, &rewrite).await?);
        }
    }
    let touched: Vec<Pair> = since.keys().copied().collect();
    // The first run stages new tables, replacing what a full run left; later ones append.
    let removing = Instant::now();
    if !first {
        account.rows_rewritten = load.remove_for_rewrite(&rewrite, &touched, &kept).await?;
    }

    // The rules, on the new events and those fed again, with the stock carried in.
    let mut refed_rows = 0;
    for (table, batch) in &new_events {
        let mut batches = vec![batch.clone()];
        if let Some(again) = refed.remove(table) {
            refed_rows += again.num_rows() as u64;
            batches.push(again);
        }
        engine.events(*table).fill(batches);
    }
    engine.stock.fill(vec![checkpoint::stock_batch(&carried)]);
    reads.extend(late_reads);
    let inputs = Inputs {
        reads,
        log: ReadLog::default(),
        bars: Vec::new(),
        refed: refed_rows,
        duplicates,
    };
    let mut write_time = removing.elapsed();
    let writers = open_writers(job, commit)?;
    let rules = Instant::now();
    let mut tracker = StockTracker::default();
    let mut enriched =
        enrichment::run_on(job, &engine.planned, inputs, writers, progress, |batch| tracker.observe(batch)).await?;

    account.rules_ms = millis(rules.elapsed());
    // The checkpoint, with the rows.
    let writing = Instant::now();
    let mut load = commit.state().expect("attached above");
    load.put_stock(&tracker.finish(&carried)).await?;
    for (table, batch) in new_events {
        load.put_journal(table, batch).await?;
    }
    load.put_checkpoint(&after).await?;
    write_time += writing.elapsed();
    account.write_ms = millis(write_time);
    account.duplicates = enriched.summary.duplicates;
    account.rows_appended = enriched.summary.rows_written.saturating_sub(account.rows_rewritten);
    enriched.summary.incremental = Some(account);
    Ok(enriched)
}

/// The output tables `job` keeps, in SPEC order.
pub fn kept_tables(job: &Job<'_>) -> Vec<&'static str> {
    let enriched = (job.enriched.destination != Destination::Discard).then_some(pipeline::ENRICHED);
    enriched.into_iter().chain(job.current_inventory.map(|_| pipeline::CURRENT_INVENTORY)).collect()
}

/// Fails, naming the checkpoint's `place`, if the runs on the checkpoint
/// `stored` kept other tables than `job` keeps ([`checkpoint::same_tables`]).
pub fn check_kept_tables(job: &Job<'_>, stored: &Checkpoint, place: &str) -> anyhow::Result<()> {
    checkpoint::same_tables(&stored.tables, &kept_tables(job))
        .map_err(|reason| anyhow::anyhow!("cannot go on from the checkpoint in {place}: {reason}"))
}

/// `duration` in milliseconds.
pub fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The writers of the run's outputs, from the transaction attached to `commit`.
fn open_writers(job: &Job<'_>, commit: &mut Commit) -> anyhow::Result<(OutputWriter, Option<OutputWriter>)> {
    let enriched = job.enriched.open(commit)?;
    let current = job.current_inventory.map(|output| output.open(commit)).transpose()?;
    Ok((enriched, current))
}

/// Reads the lookups of `run`, whole.
pub async fn read_lookups(run: &RunConfig) -> anyhow::Result<Vec<TableRead>> {
    let lookups = [Table::Store, Table::Item, Table::InventoryChangeType];
    let lookup_files = sources::csv::discover(&run.data, &lookups).await?;
    Ok(sources::csv::read_all(&lookup_files, |_| {}).await?)
}

/// Reads the lookups whole and every event input from where `before`
/// stopped, and the checkpoint that brings it to.
async fn read_new(run: &RunConfig, before: &Checkpoint, progress: &Progress) -> anyhow::Result<NewRecords> {
    let mut reads = read_lookups(run).await?;
    let mut after = before.clone();
    match &run.events {
        EventSource::Kafka { settings, topics } => {
            let bar = progress.count("consume", "messages");
            let consumed = sources::kafka::read_topics(settings, topics, &before.offsets, {
                let bar = bar.clone();
                move |messages| bar.inc(messages)
            })
            .await?;
            bar.finish();
            for (topic_read, (_, topic)) in consumed.into_iter().zip(topics) {
                for (partition, next) in topic_read.next {
                    after.offsets.insert((topic.clone(), partition), next);
                }
                reads.push(topic_read.read);
            }
        }
        EventSource::Csv => {
            let Location::Local(dir) = &run.data else {
                unreachable!("the config refuses an incremental run of CSV objects");
            };
            let files = sources::csv::discover_files(dir, &[Table::InventorySnapshot, Table::InventoryChange])?;
            let tasks = files.into_iter().flat_map(|files| files.paths.into_iter().map(move |path| (files.table, path)));
            let tasks = tasks.map(|(table, path)| {
                let mark = before.files.get(&file_name(&path)).cloned();
                tokio::task::spawn_blocking(move || read_tail(table, &path, mark.as_ref()).map(|read| (path, read)))
            });
            for task in futures::future::join_all(tasks).await {
                let (path, tail) = task.expect("a CSV reader task panicked")?;
                if let Some((read, mark)) = tail {
                    after.files.insert(file_name(&path), mark);
                    reads.push(read);
                }
            }
        }
    }
    Ok(NewRecords { reads, after })
}

/// The name a file is known by in the checkpoint: its name in the data
/// directory (the directory may move).
fn file_name(path: &std::path::Path) -> String {
    path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The complete lines of `path` past `mark`, and the mark after them;
/// `None` if there are none.
fn read_tail(table: Table, path: &std::path::PathBuf, mark: Option<&FileMark>) -> Result<Option<(TableRead, FileMark)>, SourceError> {
    let io_error = |source| SourceError::File(sources::csv::FileError::Read { name: path.display().to_string(), source });
    let len = std::fs::metadata(path).map_err(io_error)?.len();
    let now = match mark {
        Some(mark) if len >= mark.end.byte => Some(fingerprint(path, mark.end.byte).map_err(io_error)?),
        _ => None,
    };
    let start = checkpoint::file_start(mark, len, now.as_deref())
        .map_err(|change| SourceError::FileChanged { path: path.display().to_string(), change })?;
    let Some(start) = start else { return Ok(None) };
    let Some(end) = complete_end(path, start, len).map_err(io_error)? else { return Ok(None) };
    let read = read_from(table, &Prefix { source: path, end: end.byte }, start).map_err(SourceError::File)?;
    Ok(Some((read, FileMark { end, fingerprint: fingerprint(path, end.byte).map_err(io_error)? })))
}

/// The earliest event time per store and item in `batches` (of event tables).
fn earliest_per_pair<'a>(batches: impl IntoIterator<Item = &'a RecordBatch>) -> BTreeMap<Pair, i64> {
    let mut earliest = BTreeMap::new();
    for batch in batches {
        let (stores, items, times) = pair_columns(batch);
        for row in 0..batch.num_rows() {
            let time = times.value(row);
            earliest
                .entry((stores.value(row), items.value(row)))
                .and_modify(|t: &mut i64| *t = (*t).min(time))
                .or_insert(time);
        }
    }
    earliest
}

/// Which rows of `batch` are late, given the stock stored for their pairs.
fn late_mask(batch: &RecordBatch, stock: &HashMap<Pair, PairState>, window: i64) -> BooleanArray {
    let (stores, items, times) = pair_columns(batch);
    (0..batch.num_rows())
        .map(|row| {
            let last = stock.get(&(stores.value(row), items.value(row)));
            Some(checkpoint::late_by(times.value(row), last, window).is_some())
        })
        .collect()
}

/// The reject of the late event at `row` of `batch`: named by its table,
/// store, item and time (the batch no longer knows the file line or
/// offset), with the record's values as CSV in the table's column order.
fn late_reject(table: Table, batch: &RecordBatch, row: usize, stock: &HashMap<Pair, PairState>, window: Duration) -> Reject {
    let (stores, items, times) = pair_columns(batch);
    let (pair, time) = ((stores.value(row), items.value(row)), times.value(row));
    let by = stock.get(&pair).map_or(0, |last| last.date_time - time);
    let formatter = arrow::util::display::ArrayFormatter::try_new;
    let options = arrow::util::display::FormatOptions::default();
    let raw: Vec<String> = batch
        .columns()
        .iter()
        .map(|column| formatter(column.as_ref(), &options).map(|f| f.value(row).to_string()).unwrap_or_default())
        .collect();
    let at = times.value_as_datetime(row).map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default();
    Reject {
        origin: format!("{} (store {} item {} at {at})", table.name(), pair.0, pair.1),
        reason: RejectReason::Late {
            by: checkpoint::format_seconds(by),
            window: checkpoint::format_seconds(window.as_secs() as i64),
        },
        raw: raw.join(","),
    }
}
