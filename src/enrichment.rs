//! One run of the enrich pipeline, for every command that needs the
//! enriched tables (enrich writes them; report analyses them): open the
//! inputs, run the rules, write the outputs staged in the run's commit, and
//! account for every record read. The caller commits, so that a failure
//! anywhere in the run changes nothing.

use std::sync::Arc;

use anyhow::Context;
use arrow::array::{Array, RecordBatch};
use arrow::compute::kernels::boolean::{and, is_not_null, is_null};
use datafusion::catalog::TableProvider;
use datafusion::physical_plan::SendableRecordBatchStream;
use indicatif::ProgressBar;

use crate::config::{EventSource, RunConfig};
use crate::error::Reject;
use crate::pipeline::{self, Planned, Resources, Rules};
use crate::progress::Progress;
use crate::sinks::{Commit, Output, OutputWriter, Written};
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
    /// Whether `enriched` keeps the rules' stock_seq column: the report's
    /// scratch copy does, for its views; the outputs of SPEC 2 do not.
    pub keep_stock_seq: bool,
}

/// What a run computed, for the caller to commit.
#[derive(Debug)]
pub struct Enriched {
    /// The account of the run (all but the elapsed time and the rejects file).
    pub summary: Summary,
    /// Every record rejected, in input order.
    pub rejects: Vec<Reject>,
}

/// Runs `job` on every input, staging its outputs in `commit` (which the
/// caller commits with whatever else the run writes).
pub async fn run(job: &Job<'_>, progress: &Progress, commit: &mut Commit) -> anyhow::Result<Enriched> {
    // Opened before anything is computed, so that an output that cannot be
    // written fails the run at once.
    let enriched_writer = job.enriched.open(commit)?;
    let current_writer = job.current_inventory.map(|output| output.open(commit)).transpose()?;
    let writers = (enriched_writer, current_writer);
    let Some(target) = &job.run.cluster else {
        let (tables, inputs) = open_inputs(job, progress).await?;
        let planned = plan(job, tables, None, None).await?;
        return run_on(job, &planned, inputs, writers, progress, |_| Ok(())).await;
    };
    // The same rules, with enriched run by the cluster over the inputs
    // staged for it (read and checked here, so rejects are as locally);
    // the scheduler is reached first, before anything is read.
    let cluster = target.session(job.run.resources).await?;
    let (tables, inputs) = open_inputs(job, progress).await?;
    let started = std::time::Instant::now();
    let staged = target.stage(tables, job.run.resources).await?;
    progress.println(&format!("pos-etl: staged the inputs for the cluster in {:.1} s", started.elapsed().as_secs_f64()));
    let planned = plan(job, staged.tables(), staged.stock_state(), Some(&cluster)).await?;
    run_on(job, &planned, inputs, writers, progress, |_| Ok(()))
        .await
        .with_context(|| format!("running the rules on {target}"))
}

/// Plans the rules of `job` over `tables` (and `state`, the stock carried
/// into an incremental run's rules) in a new session; `enriched` to run on
/// `cluster` if given.
pub async fn plan(
    job: &Job<'_>,
    tables: Vec<(Table, Arc<dyn TableProvider>)>,
    state: Option<Arc<dyn TableProvider>>,
    cluster: Option<&pipeline::Cluster>,
) -> anyhow::Result<Planned> {
    let ctx = pipeline::new_session(job.run.resources)?;
    let outputs = pipeline::enrich(&ctx, tables, state, job.rules).await.context("running the SQL rules")?;
    Ok(outputs.plan(job.current_inventory.is_some(), cluster).await.context("planning the output views")?)
}

/// Runs `planned` (the rules of `job`) on what its tables now hold, into
/// `writers` (of `enriched` and, if asked, `current_inventory`);
/// `on_enriched` sees every batch of `enriched` as it is written (an
/// incremental run follows the stock in it).
pub async fn run_on(
    job: &Job<'_>,
    planned: &Planned,
    inputs: Inputs,
    writers: (OutputWriter, Option<OutputWriter>),
    progress: &Progress,
    mut on_enriched: impl FnMut(&RecordBatch) -> Result<(), String>,
) -> anyhow::Result<Enriched> {
    let (enriched_writer, current_writer) = writers;
    let (enriched, current_inventory) = planned.execute().context("starting the SQL rules")?;
    let enriched = if job.keep_stock_seq { enriched } else { pipeline::without_stock_seq(enriched) };
    let mut unmatched = UnmatchedLookups::default();
    let mut followed = Ok(());
    let resources = job.run.resources;
    let write_enriched =
        write_output(job.enriched, enriched_writer, enriched, pipeline::ENRICHED, resources, progress, |batch| {
            count_unmatched(batch, &mut unmatched);
            if followed.is_ok() {
                followed = on_enriched(batch);
            }
        });
    // Both at once: current_inventory is fed enriched's rows as they are written.
    let write_current = async {
        match (job.current_inventory, current_writer, current_inventory) {
            (Some(output), Some(writer), Some(stream)) => {
                write_output(output, writer, stream, pipeline::CURRENT_INVENTORY, resources, progress, |_| {})
                    .await
                    .map(Some)
            }
            _ => Ok(None),
        }
    };
    let (enriched, current) = futures::future::try_join(write_enriched, write_current).await?;
    followed.map_err(|reason| anyhow::anyhow!("following the stock in {}: {reason}", job.enriched.destination))?;
    inputs.bars.iter().for_each(ProgressBar::finish);

    let mut summary = Summary::default();
    let mut reads = inputs.reads;
    reads.extend(inputs.log.reads());
    let rejects = account_reads(&reads, &mut summary);
    summary.rows_written = enriched.rows;
    summary.rows_unread = enriched.unread;
    // Rows written again from events of earlier runs were not read by this one.
    let rows_of_reads = (enriched.rows + enriched.unread).saturating_sub(inputs.refed);
    let dropped = summary.events_read.saturating_sub(event_rejects(&summary) + inputs.duplicates + rows_of_reads);
    // On a cluster the rules' count of duplicates stays on the executors:
    // what they dropped is counted as duplicates (all the built-in rules drop).
    let by_rules = planned.duplicates().unwrap_or(dropped);
    summary.duplicates = inputs.duplicates + by_rules;
    summary.left_out_by_rules = dropped.saturating_sub(by_rules);
    summary.unmatched_lookups = unmatched;
    summary.outputs.push(OutputCounts::new(pipeline::ENRICHED, &job.enriched.destination, enriched));
    if let (Some(output), Some(written)) = (job.current_inventory, current) {
        summary.outputs.push(OutputCounts::new(pipeline::CURRENT_INVENTORY, &output.destination, written));
    }
    Ok(Enriched { summary, rejects })
}

/// What reading a run's inputs yields besides rows.
pub struct Inputs {
    /// Reads done before the rules run: the lookups.
    pub reads: Vec<TableRead>,
    /// Reads done while the rules run: the event files and topics.
    pub log: ReadLog,
    /// The progress of the reads done while the rules run (bytes of the
    /// files, messages of the topics), finished once the outputs are written.
    pub bars: Vec<ProgressBar>,
    /// Events of earlier runs among the tables, fed again to compute
    /// their rows again (an incremental run's late events).
    pub refed: u64,
    /// Records found to be duplicates before the rules ran.
    pub duplicates: u64,
}

/// Reads the lookups, and sets the event files or topics up to be read
/// while the rules run: the input tables, and what reading them yields.
/// Every file's header and every topic is checked here, so a missing
/// column or topic fails the run before it starts.
async fn open_inputs(job: &Job<'_>, progress: &Progress) -> anyhow::Result<(Vec<(Table, Arc<dyn TableProvider>)>, Inputs)> {
    let partitions = job.run.resources.threads;
    let lookups = [Table::Store, Table::Item, Table::InventoryChangeType];
    let events = [Table::InventorySnapshot, Table::InventoryChange];
    let lookup_files = sources::csv::discover(&job.run.data, &lookups).await?;
    let event_files = match &job.run.events {
        EventSource::Csv => sources::csv::discover(&job.run.data, &events).await?,
        EventSource::Kafka { .. } => Vec::new(),
    };
    sources::csv::check_headers(&event_files).await?;
    // Topics are read while the rules run, like files, but opened now, all
    // at once: a broker that does not answer or a topic missing fails the
    // run before it starts, and every topic is read to its marks of now.
    let mut opened = Vec::new();
    if let EventSource::Kafka { settings, topics } = &job.run.events {
        let opening = topics.iter().map(|(table, topic)| {
            let (settings, table, topic) = (settings.clone(), *table, topic.clone());
            tokio::task::spawn_blocking(move || {
                sources::kafka::open_topic(&settings, table, &topic, &Default::default()).map(|open| (table, open))
            })
        });
        for open in futures::future::join_all(opening).await {
            opened.push(open.expect("a Kafka consumer panicked while opening")?);
        }
    }
    let total_bytes = lookup_files.iter().chain(&event_files).flat_map(|f| &f.inputs).map(|input| input.size()).sum();
    let read_bar = progress.bytes("read", total_bytes);
    let on_bytes = {
        let bar = read_bar.clone();
        move |bytes| bar.inc(bytes)
    };

    let mut reads = sources::merge_by_table(sources::csv::read_all(&lookup_files, on_bytes.clone()).await?);
    let mut tables = Vec::new();
    for read in &mut reads {
        let batches = std::mem::take(&mut read.batches);
        tables.push((read.table, pipeline::memory_table(read.table, batches, partitions)?));
    }
    let log = ReadLog::default();
    for files in &event_files {
        let table = sources::streaming::csv_table(files.table, &files.inputs, partitions, &log, on_bytes.clone())
            .with_context(|| format!("reading the {} files", files.table.name()))?;
        tables.push((files.table, table as Arc<dyn TableProvider>));
    }
    let mut bars = vec![read_bar];
    if let EventSource::Kafka { settings, .. } = &job.run.events {
        let bar = progress.count("consume", "messages");
        for table in events {
            let of_table: Vec<_> = opened.extract_if(.., |(t, _)| *t == table).map(|(_, open)| open).collect();
            if of_table.is_empty() {
                continue;
            }
            let on_messages = {
                let bar = bar.clone();
                move |messages| bar.inc(messages)
            };
            let topics_table = sources::streaming::kafka_table(table, settings, of_table, &log, on_messages)
                .with_context(|| format!("reading the {} topics", table.name()))?;
            tables.push((table, topics_table as Arc<dyn TableProvider>));
        }
        bars.push(bar);
    }
    Ok((tables, Inputs { reads, log, bars, refed: 0, duplicates: 0 }))
}

/// Fills the per-table counts of `summary` and returns every reject, in input order.
fn account_reads(reads: &[TableRead], summary: &mut Summary) -> Vec<Reject> {
    let mut rejects = Vec::new();
    for read in reads {
        // A table read from several files (one per store) is counted once, in total.
        summary.absorb_read(read);
        rejects.extend(read.rejects.iter().cloned());
    }
    rejects
}

fn event_rejects(summary: &Summary) -> u64 {
    summary.tables.iter().filter(|(table, _)| table.is_event()).map(|(_, c)| c.rejected).sum()
}

async fn write_output(
    output: &Output,
    writer: OutputWriter,
    stream: SendableRecordBatchStream,
    view: &str,
    resources: Resources,
    progress: &Progress,
    mut on_batch: impl FnMut(&RecordBatch),
) -> anyhow::Result<Written> {
    let bar = progress.count(view, "rows");
    let written = output
        .write(writer, stream, resources.threads, |batch| {
            bar.inc(batch.num_rows() as u64);
            on_batch(batch);
        })
        .await
        .map_err(|error| resources.explain(&output.destination.to_string(), error.into()))?;
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
