//! One run of the enrich pipeline, for every command that needs the
//! enriched tables (enrich writes them; report analyses them): open the
//! inputs, run the rules, write the outputs staged, account for every record
//! read, and commit the outputs only when the run is within its reject limit.
//! Every output is staged and renamed into place only when all of them are
//! written, so a failed run changes nothing.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use arrow::array::{Array, RecordBatch};
use arrow::compute::kernels::boolean::{and, is_not_null, is_null};
use datafusion::catalog::TableProvider;
use datafusion::physical_plan::SendableRecordBatchStream;
use indicatif::ProgressBar;

use crate::config::{EventSource, RunConfig};
use crate::error::{Reject, TooManyRejects};
use crate::pipeline::{self, Rules};
use crate::progress::Progress;
use crate::sinks::{self, Output, StagedFile};
use crate::sources::streaming::ReadLog;
use crate::sources::{self, Table, TableRead};
use crate::summary::{OutputCounts, Summary, UnmatchedLookups};

/// What one run reads, runs and writes.
#[derive(Debug)]
pub struct Job<'a> {
    /// The inputs, reject limit and resources.
    pub run: &'a RunConfig,
    /// The SQL rules, as loaded from `run.rules`.
    pub rules: &'a Rules,
    /// Where `enriched` goes.
    pub enriched: &'a Output,
    /// Where `current_inventory` goes, if anywhere.
    pub current_inventory: Option<&'a Output>,
    /// Where rejected records go.
    pub rejects: &'a Path,
}

/// Runs `job`. When it returns `Ok`, every output and the rejects file are in
/// place; the summary (not yet printed) has everything but the elapsed time.
pub async fn run(job: &Job<'_>, progress: &Progress) -> anyhow::Result<Summary> {
    let ctx = pipeline::new_session(job.run.resources)?;
    let inputs = open_inputs(job, progress).await?;
    let outputs = pipeline::enrich(&ctx, inputs.tables, job.rules).await.context("running the SQL rules")?;
    let (enriched, current_inventory) = outputs
        .execute(job.current_inventory.is_some())
        .await
        .context("planning the output views")?;
    let threads = job.run.resources.threads;
    let mut unmatched = UnmatchedLookups::default();
    let write_enriched = write_output(job.enriched, enriched, pipeline::ENRICHED, threads, progress, |batch| {
        count_unmatched(batch, &mut unmatched)
    });
    // Both at once: current_inventory is fed enriched's rows as they are written.
    let write_current = async {
        match (job.current_inventory, current_inventory) {
            (Some(output), Some(stream)) => {
                write_output(output, stream, pipeline::CURRENT_INVENTORY, threads, progress, |_| {})
                    .await
                    .map(Some)
            }
            _ => Ok(None),
        }
    };
    let ((rows, enriched_file), current) = futures::future::try_join(write_enriched, write_current).await?;
    inputs.read_bar.finish();

    let mut summary = Summary::default();
    let mut reads = inputs.reads;
    reads.extend(inputs.log.reads());
    let rejects = account_reads(&reads, &mut summary);
    let rejects_file = StagedFile::new(job.rejects)?;
    rejects_file.put(sinks::rejects::encode(&rejects)).await?;
    summary.rejects_file = Some(job.rejects.display().to_string());
    if let Some(limit) = job.run.max_rejects.filter(|&limit| summary.rejected > limit) {
        // The outputs are dropped unwritten; only the rejects are kept, for diagnosis.
        rejects_file.commit().await?;
        return Err(TooManyRejects {
            rejected: summary.rejected,
            limit,
            rejects: job.rejects.display().to_string(),
        }
        .into());
    }
    summary.rows_written = rows;
    summary.unmatched_lookups = unmatched;
    summary.outputs.push(OutputCounts {
        table: pipeline::ENRICHED.to_string(),
        path: job.enriched.destination.to_string(),
        rows,
    });
    let mut staged: Vec<StagedFile> = vec![rejects_file];
    staged.extend(enriched_file);
    if let (Some(output), Some((rows, file))) = (job.current_inventory, current) {
        staged.extend(file);
        summary.outputs.push(OutputCounts {
            table: pipeline::CURRENT_INVENTORY.to_string(),
            path: output.destination.to_string(),
            rows,
        });
    }
    for file in staged {
        file.commit().await?;
    }

    summary.duplicates = summary
        .events_read
        .saturating_sub(summary.rows_written)
        .saturating_sub(event_rejects(&summary));
    Ok(summary)
}

/// The input tables of a run, and what reading them yields besides rows.
struct Inputs {
    /// Every input table, for the rules.
    tables: Vec<(Table, Arc<dyn TableProvider>)>,
    /// Reads done before the rules run: the lookups, and Kafka topics.
    reads: Vec<TableRead>,
    /// Reads done while the rules run: the event files.
    log: ReadLog,
    /// Bytes of the files read so far.
    read_bar: ProgressBar,
}

/// Reads the lookups and any Kafka topics, and sets the event files up to
/// be read while the rules run. Every file's header is checked here, so a
/// missing column fails the run before it starts.
async fn open_inputs(job: &Job<'_>, progress: &Progress) -> anyhow::Result<Inputs> {
    let partitions = job.run.resources.threads;
    let lookups = [Table::Store, Table::Item, Table::InventoryChangeType];
    let events = [Table::InventorySnapshot, Table::InventoryChange];
    let lookup_files = sources::csv::discover(&job.run.data_dir, &lookups)?;
    let event_files = match &job.run.events {
        EventSource::Csv => sources::csv::discover(&job.run.data_dir, &events)?,
        EventSource::Kafka { .. } => Vec::new(),
    };
    for files in &event_files {
        for path in &files.paths {
            sources::csv::check_header(files.table, path)?;
        }
    }
    let total_bytes = lookup_files
        .iter()
        .chain(&event_files)
        .flat_map(|f| &f.paths)
        .filter_map(|path| std::fs::metadata(path).ok())
        .map(|meta| meta.len())
        .sum();
    let read_bar = progress.bytes("read", total_bytes);
    let on_bytes = {
        let bar = read_bar.clone();
        move |bytes| bar.inc(bytes)
    };

    let mut reads = sources::csv::read_all(&lookup_files, on_bytes.clone()).await?;
    if let EventSource::Kafka { settings, topics } = &job.run.events {
        let bar = progress.count("consume", "messages");
        let consumed = sources::kafka::read_topics(settings, topics, {
            let bar = bar.clone();
            move |messages| bar.inc(messages)
        })
        .await?;
        bar.finish();
        reads.extend(consumed);
    }
    let mut reads = sources::merge_by_table(reads);
    let mut tables = Vec::new();
    for read in &mut reads {
        let batches = std::mem::take(&mut read.batches);
        tables.push((read.table, pipeline::memory_table(read.table, batches, partitions)?));
    }
    let log = ReadLog::default();
    for files in &event_files {
        let table = sources::streaming::csv_table(files.table, &files.paths, partitions, &log, on_bytes.clone())
            .with_context(|| format!("reading the {} files", files.table.name()))?;
        tables.push((files.table, table as Arc<dyn TableProvider>));
    }
    Ok(Inputs { tables, reads, log, read_bar })
}

/// Fills the per-table counts of `summary` and returns every reject, in input order.
fn account_reads(reads: &[TableRead], summary: &mut Summary) -> Vec<Reject> {
    let mut rejects = Vec::new();
    for read in reads {
        let rejected = read.rejects.len() as u64;
        // A table read from several files (one per store) is counted once, in total.
        let counts = summary.tables.entry(read.table).or_default();
        counts.read += read.records;
        counts.rejected += rejected;
        summary.rejected += rejected;
        if read.table.is_event() {
            summary.events_read += read.records;
        }
        rejects.extend(read.rejects.iter().cloned());
    }
    rejects
}

fn event_rejects(summary: &Summary) -> u64 {
    summary.tables.iter().filter(|(table, _)| table.is_event()).map(|(_, c)| c.rejected).sum()
}

async fn write_output(
    output: &Output,
    stream: SendableRecordBatchStream,
    view: &str,
    threads: usize,
    progress: &Progress,
    mut on_batch: impl FnMut(&RecordBatch),
) -> anyhow::Result<(u64, Option<StagedFile>)> {
    let bar = progress.count(view, "rows");
    let written = sinks::write(output, stream, threads, |batch| {
        bar.inc(batch.num_rows() as u64);
        on_batch(batch);
    })
    .await?;
    bar.finish();
    Ok(written)
}

/// Adds to `unmatched` the rows of an enriched batch whose lookups found nothing.
/// Columns a user's SQL dropped are not counted.
fn count_unmatched(batch: &RecordBatch, unmatched: &mut UnmatchedLookups) {
    let nulls = |name: &str| batch.column_by_name(name).map_or(0, |c| c.null_count() as u64);
    unmatched.store += nulls("store_name");
    unmatched.item += nulls("item_name");
    if let (Some(id), Some(name)) =
        (batch.column_by_name("change_type_id"), batch.column_by_name("change_type"))
    {
        let missing = and(&is_not_null(id).expect("is_not_null on any array"), &is_null(name).expect("is_null on any array"))
            .expect("equal lengths");
        unmatched.change_type += missing.true_count() as u64;
    }
}
