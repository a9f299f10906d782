//! `pos-etl enrich`: read the exports, run the SQL rules, write the outputs,
//! the rejects and the summary. Every output is staged and renamed into place
//! only when all of them are written, so a failed run changes nothing.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use arrow::array::{Array, RecordBatch};
use arrow::compute::kernels::boolean::{and, is_not_null, is_null};
use datafusion::physical_plan::SendableRecordBatchStream;

use crate::config::{EnrichConfig, EventSource, RuleSource};
use crate::error::{Reject, TooManyRejects};
use crate::pipeline::{self, Rules};
use crate::progress::Progress;
use crate::sinks::lock::OutputLock;
use crate::sinks::{self, Destination, Output, StagedFile};
use crate::sources::{self, Table, TableRead};
use crate::summary::{OutputCounts, Summary, TableCounts, UnmatchedLookups};

/// Runs `enrich` and returns its summary (already printed on stderr).
pub async fn run(config: &EnrichConfig) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let progress = Progress::new(config.progress);
    let rules = match &config.rules {
        RuleSource::Builtin => Rules::builtin(),
        RuleSource::Dir(dir) => Rules::from_dir(dir)?,
    };
    let _locks = lock_outputs(config)?;

    let reads = read_inputs(config, &progress).await?;

    let mut summary = Summary::default();
    let rejects = account_reads(&reads, &mut summary);
    let rejects_file = StagedFile::new(&config.rejects)?;
    rejects_file.put(sinks::rejects::encode(&rejects)).await?;
    summary.rejects_file = Some(config.rejects.display().to_string());
    if let Some(limit) = config.max_rejects.filter(|&limit| summary.rejected > limit) {
        rejects_file.commit().await?;
        return Err(TooManyRejects {
            rejected: summary.rejected,
            limit,
            rejects: config.rejects.display().to_string(),
        }
        .into());
    }

    let ctx = pipeline::new_session();
    let tables = reads.into_iter().map(|read| (read.table, read.batches)).collect();
    let outputs = pipeline::enrich(&ctx, tables, &rules).await.context("running the SQL rules")?;

    let (enriched, current_inventory) = outputs
        .execute(config.current_inventory.is_some())
        .await
        .context("planning the output views")?;
    let mut unmatched = UnmatchedLookups::default();
    let write_enriched = write_output(&config.enriched, enriched, pipeline::ENRICHED, &progress, |batch| {
        count_unmatched(batch, &mut unmatched)
    });
    // Both at once: current_inventory is fed enriched's rows as they are written.
    let write_current = async {
        match (&config.current_inventory, current_inventory) {
            (Some(output), Some(stream)) => {
                write_output(output, stream, pipeline::CURRENT_INVENTORY, &progress, |_| {}).await.map(Some)
            }
            _ => Ok(None),
        }
    };
    let ((rows, enriched_file), current) = futures::future::try_join(write_enriched, write_current).await?;
    summary.rows_written = rows;
    summary.unmatched_lookups = unmatched;
    summary.outputs.push(OutputCounts {
        table: pipeline::ENRICHED.to_string(),
        path: config.enriched.destination.to_string(),
        rows,
    });
    let mut staged: Vec<StagedFile> = vec![rejects_file];
    staged.extend(enriched_file);
    if let (Some(output), Some((rows, file))) = (&config.current_inventory, current) {
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
    summary.elapsed_seconds = started.elapsed().as_secs_f64();
    for line in summary.to_lines() {
        progress.println(&format!("pos-etl: {line}"));
    }
    if let Some(path) = &config.summary_json {
        summary.write_json(path).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(summary)
}

/// Reads the lookups, and the events from the CSV files or the Kafka topics.
async fn read_inputs(config: &EnrichConfig, progress: &Progress) -> anyhow::Result<Vec<TableRead>> {
    let csv_tables: &[Table] = match config.events {
        EventSource::Csv => &Table::ALL,
        EventSource::Kafka { .. } => &[Table::Store, Table::Item, Table::InventoryChangeType],
    };
    let files = sources::csv::discover(&config.data_dir, csv_tables)?;
    let total_bytes = files
        .iter()
        .flat_map(|f| &f.paths)
        .filter_map(|path| std::fs::metadata(path).ok())
        .map(|meta| meta.len())
        .sum();
    let bar = progress.bytes("read", total_bytes);
    let mut reads = sources::csv::read_all(&files, {
        let bar = bar.clone();
        move |bytes| bar.inc(bytes)
    })
    .await?;
    bar.finish();
    if let EventSource::Kafka { settings, topics } = &config.events {
        let bar = progress.count("consume", "messages");
        reads.extend(
            sources::kafka::read_topics(settings, topics, {
                let bar = bar.clone();
                move |messages| bar.inc(messages)
            })
            .await?,
        );
        bar.finish();
    }
    Ok(sources::merge_by_table(reads))
}

/// Locks every file output, in path order so that two runs cannot deadlock.
fn lock_outputs(config: &EnrichConfig) -> anyhow::Result<Vec<OutputLock>> {
    let mut paths: Vec<&PathBuf> = std::iter::once(&config.enriched)
        .chain(&config.current_inventory)
        .filter_map(|output| match &output.destination {
            Destination::File(path) => Some(path),
            Destination::Stdout => None,
        })
        .collect();
    paths.sort();
    paths.dedup();
    Ok(paths
        .into_iter()
        .map(|path| OutputLock::acquire(path, config.lock_timeout))
        .collect::<Result<_, _>>()?)
}

/// Fills the per-table counts of `summary` and returns every reject, in input order.
fn account_reads(reads: &[TableRead], summary: &mut Summary) -> Vec<Reject> {
    let mut rejects = Vec::new();
    for read in reads {
        let rejected = read.rejects.len() as u64;
        summary.tables.insert(read.table, TableCounts { read: read.records, rejected });
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
    progress: &Progress,
    mut on_batch: impl FnMut(&RecordBatch),
) -> anyhow::Result<(u64, Option<StagedFile>)> {
    let bar = progress.count(view, "rows");
    let written = sinks::write(output, stream, |batch| {
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
