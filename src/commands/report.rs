//! `pos-etl report`: run the enrich pipeline into scratch Parquet files
//! beside the output, compute the report over them, and write its tables and
//! page. Every file is staged and renamed into place only when all are
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
use crate::sinks::lock::OutputLock;
use crate::sinks::{self, Destination, Output, StagedFile};
use crate::summary::{ForecastSummary, OutputCounts, Summary};

/// The page's file name in the output directory.
pub const PAGE: &str = "report.html";

/// Runs `report` and returns its summary (already printed on stderr).
pub async fn run(config: &ReportConfig) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let progress = Progress::new(config.run.progress);
    let out_dir = &config.out_dir;
    std::fs::create_dir_all(out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let _lock = OutputLock::acquire(&out_dir.join(PAGE), config.run.lock_timeout)?;
    let enrich_rules = config.run.rules.load()?;
    let report_rules = config.run.rules.load_report()?;

    // The report's views read enriched several times: written once to
    // Parquet, it is read back by column, in parallel.
    let scratch = tempfile::Builder::new()
        .prefix(".pos-etl-report-")
        .tempdir_in(out_dir)
        .with_context(|| format!("cannot create a scratch directory in {}", out_dir.display()))?;
    let scratch_file = |view: &str| scratch.path().join(format!("{view}.parquet"));
    let scratch_output = |view: &str| Output { destination: Destination::File(scratch_file(view)), format: Format::Parquet };
    let (enriched, current_inventory) = (scratch_output(ENRICHED), scratch_output(CURRENT_INVENTORY));
    let rejects = out_dir.join("rejects.csv");
    let job = Job {
        run: &config.run,
        rules: &enrich_rules,
        enriched: &enriched,
        current_inventory: Some(&current_inventory),
        rejects: &rejects,
    };
    let mut summary = enrichment::run(&job, &progress).await?;

    let spinner = progress.count("report", "tables");
    let ctx = pipeline::new_session(config.run.resources)?;
    for view in [ENRICHED, CURRENT_INVENTORY] {
        register_parquet(&ctx, view, &scratch_file(view)).await?;
    }
    let report = report::build(&ctx, &report_rules, &config.settings).await.context("computing the report")?;
    summary.outputs = write_report(&report, out_dir, config.format, config.run.resources.threads).await?;
    spinner.finish();

    summary.forecast = report.mean_mase.map(|(mase, naive)| ForecastSummary {
        series: report.table("forecast_accuracy").rows(),
        mean_mase: mase,
        seasonal_naive_mean_mase: naive,
    });
    super::finish(&mut summary, started, &progress, config.summary_json.as_deref())?;
    progress.println(&format!("pos-etl: open {}", out_dir.join(PAGE).display()));
    Ok(summary)
}

async fn register_parquet(ctx: &SessionContext, name: &str, path: &Path) -> anyhow::Result<()> {
    let location = path.to_str().with_context(|| format!("{} is not valid UTF-8", path.display()))?;
    ctx.register_parquet(name, location, ParquetReadOptions::default())
        .await
        .with_context(|| format!("cannot read back {}", path.display()))
}

/// Writes every table and the page staged, then commits them all.
async fn write_report(
    report: &Report,
    out_dir: &Path,
    format: Format,
    threads: usize,
) -> anyhow::Result<Vec<OutputCounts>> {
    let extension = match format {
        Format::Csv => "csv",
        Format::Parquet => "parquet",
    };
    let mut staged = Vec::new();
    let mut counts = Vec::new();
    for table in &report.tables {
        let path = out_dir.join(format!("{}.{extension}", table.name));
        let output = Output { destination: Destination::File(path.clone()), format };
        let batch = table.batch.clone();
        let stream = RecordBatchStreamAdapter::new(batch.schema(), futures::stream::iter([Ok(batch)]));
        let (rows, file) = sinks::write(&output, Box::pin(stream), threads, |_| {}).await?;
        staged.extend(file);
        counts.push(OutputCounts { table: table.name.to_string(), path: path.display().to_string(), rows });
    }
    let page_path = out_dir.join(PAGE);
    let page = StagedFile::new(&page_path)?;
    page.put(report::html::render(report).into_bytes()).await?;
    staged.push(page);
    for file in staged {
        file.commit().await?;
    }
    Ok(counts)
}
