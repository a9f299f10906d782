//! `pos-etl report`: run the enrich pipeline into scratch Parquet files
//! beside the output, compute the report over them, and write its tables
//! (files, or PostgreSQL tables) and page. Every file is staged and renamed into place only when all are
//! written, so a failed run leaves the previous report whole.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use datafusion::execution::context::SessionContext;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::ParquetReadOptions;

use crate::cli::Format;
use crate::config::ReportConfig;
use crate::enrichment::{self, Job};
use crate::pipeline::{self, CURRENT_INVENTORY, ENRICHED};
use crate::progress::Progress;
use crate::report::{self, Report};
use crate::sinks::delta::DeltaTarget;
use crate::sinks::lock::OutputLock;
use crate::sinks::postgres::PgTarget;
use crate::sinks::{Commit, Destination, Output};
use crate::storage::{Location, StorageOptions};
use crate::summary::{ForecastSummary, OutputCounts, Summary};

/// The page's file name in the output directory.
pub const PAGE: &str = "report.html";

/// Runs `report` and returns its summary (already printed on stderr).
pub async fn run(config: &ReportConfig) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let progress = Progress::new(config.run.progress);
    let out_dir = &config.out_dir;
    if let Location::Local(dir) = out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let lock = OutputLock::acquire(&out_dir.join(PAGE), config.run.lock_timeout).await?;
    let mut commit = Commit::new();
    if let Some(target) = &config.postgres {
        commit.attach(target.begin(config.run.lock_timeout).await?);
    }
    let enrich_rules = config.run.rules.load()?;
    let report_rules = config.run.rules.load_report()?;

    // The report's views read enriched several times: written once to
    // Parquet, it is read back by column, in parallel. Beside the outputs
    // (on their disk), or in the temporary directory for a bucket.
    let scratch_dir = match out_dir {
        Location::Local(dir) => dir.clone(),
        Location::Object(_) => std::env::temp_dir(),
    };
    let scratch = tempfile::Builder::new()
        .prefix(".pos-etl-report-")
        .tempdir_in(&scratch_dir)
        .with_context(|| format!("cannot create a scratch directory in {}", scratch_dir.display()))?;
    let scratch_file = |view: &str| scratch.path().join(format!("{view}.parquet"));
    let scratch_output = |view: &str| Output { destination: Destination::File(scratch_file(view)), format: Format::Parquet };
    let (enriched, current_inventory) = (scratch_output(ENRICHED), scratch_output(CURRENT_INVENTORY));
    let job = Job {
        run: &config.run,
        rules: &enrich_rules,
        enriched: &enriched,
        current_inventory: Some(&current_inventory),
        keep_stock_seq: true,
    };
    let mut scratch_files = Commit::scratch();
    let enriched = enrichment::run(&job, &progress, &mut scratch_files).await?;
    scratch_files.commit().await?;
    let rejects = out_dir.join("rejects.csv");
    let mut summary = super::stage_rejects(enriched, &rejects, config.run.max_rejects, false, &mut commit).await?;

    let spinner = progress.count("report", "tables");
    let ctx = pipeline::new_session(config.run.resources)?;
    for view in [ENRICHED, CURRENT_INVENTORY] {
        register_parquet(&ctx, view, &scratch_file(view)).await?;
    }
    let report = report::build(&ctx, &report_rules, &config.settings).await.context("computing the report")?;
    let tables = match &config.postgres {
        Some(target) => Tables::Postgres(target),
        None => Tables::Files { dir: out_dir, format: config.format, storage: &config.run.storage },
    };
    summary.outputs = write_report(&report, &tables, config.run.resources.threads, &mut commit).await?;
    commit.put(&out_dir.join(PAGE), report::html::render(&report).as_bytes())?;
    spinner.finish();

    summary.forecast = report.mean_mase.map(|(mase, naive)| ForecastSummary {
        series: report.table("forecast_accuracy").rows(),
        mean_mase: mase,
        seasonal_naive_mean_mase: naive,
    });
    super::finish(&mut summary, started, &progress, config.summary_json.as_ref(), &[lock], commit).await?;
    progress.println(&format!("pos-etl: open {}", out_dir.join(PAGE)));
    Ok(summary)
}

async fn register_parquet(ctx: &SessionContext, name: &str, path: &Path) -> anyhow::Result<()> {
    let location = path.to_str().with_context(|| format!("{} is not valid UTF-8", path.display()))?;
    ctx.register_parquet(name, location, ParquetReadOptions::default())
        .await
        .with_context(|| format!("cannot read back {}", path.display()))
}

/// Where the report's tables go.
enum Tables<'a> {
    /// Files in a directory (or objects under a prefix), one per table (a
    /// directory or prefix each for Delta tables, reached with `storage`).
    Files { dir: &'a Location, format: Format, storage: &'a StorageOptions },
    /// Tables of a database.
    Postgres(&'a PgTarget),
}

impl Tables<'_> {
    fn output(&self, table: &str) -> Output {
        match self {
            Tables::Files { dir, format, storage } => {
                let extension = match format {
                    Format::Csv => "csv",
                    Format::Parquet => "parquet",
                    Format::Delta => {
                        let target = DeltaTarget::new(dir.join(table), (*storage).clone());
                        return Output { destination: Destination::Delta(target), format: Format::Delta };
                    }
                };
                Output { destination: Destination::at(dir.join(&format!("{table}.{extension}"))), format: *format }
            }
            Tables::Postgres(target) => Output { destination: Destination::table(target, table), format: Format::Csv },
        }
    }
}

/// Writes every table, staged in `commit`.
async fn write_report(
    report: &Report,
    tables: &Tables<'_>,
    threads: usize,
    commit: &mut Commit,
) -> anyhow::Result<Vec<OutputCounts>> {
    let mut counts = Vec::new();
    for table in &report.tables {
        let output = tables.output(table.name);
        let batch = table.batch.clone();
        let stream = RecordBatchStreamAdapter::new(batch.schema(), futures::stream::iter([Ok(batch)]));
        let writer = output.open(commit)?;
        let written = output.write(writer, Box::pin(stream), threads, |_| {}).await?;
        counts.push(OutputCounts::new(table.name, &output.destination, written));
    }
    Ok(counts)
}
