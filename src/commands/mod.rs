//! One module per subcommand; each turns a checked config into a run.

pub mod cluster;
pub mod enrich;
pub mod generate;
pub mod produce;
pub mod report;
pub mod stream;

use std::time::Instant;

use crate::cli::Command;
use crate::config::{EnrichConfig, ProduceConfig, ReportConfig, StreamConfig};
use crate::enrichment::Enriched;
use crate::error::TooManyRejects;
use crate::progress::Progress;
use crate::sinks::lock::OutputLock;
use crate::sinks::{Commit, rejects};
use crate::storage::Location;
use crate::summary::Summary;

/// Runs `command` to its end on a runtime of its own.
///
/// The runtime is built and entered here, not in the binary's `main`: a
/// crate that waits on these futures compiles their state machines, the
/// whole pipeline, again (2.5 minutes of a release build for the binary).
pub fn run(command: Command) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        match command {
            Command::Enrich(args) => enrich::run(&EnrichConfig::try_from(args)?).await.map(drop),
            Command::Report(args) => report::run(&ReportConfig::try_from(args)?).await.map(drop),
            Command::Stream(args) => stream::run(&StreamConfig::try_from(args)?).await.map(drop),
            Command::Produce(args) => produce::run(&ProduceConfig::try_from(args)?).await.map(drop),
            Command::Generate(args) => generate::run(&args).map(drop),
            Command::Cluster(command) => cluster::run(command).await,
        }
    })
}

/// Stages the rejects file (and table, when the run loads PostgreSQL) of an
/// enrich run in `commit` and returns the
/// run's summary. Over `max_rejects`, nothing of the run is kept but the
/// rejects file, committed alone for diagnosis, and the run fails (exit 2);
/// `on_stdout` says that the enriched rows went to stdout, and so are out.
async fn stage_rejects(
    enriched: Enriched,
    path: &Location,
    max_rejects: Option<u64>,
    on_stdout: bool,
    commit: &mut Commit,
) -> anyhow::Result<Summary> {
    let Enriched { mut summary, rejects } = enriched;
    summary.rejects_file = Some(path.to_string());
    let bytes = rejects::encode(&rejects);
    if let Some(limit) = max_rejects.filter(|&limit| summary.rejected > limit) {
        let mut alone = Commit::new();
        alone.put(path, &bytes)?;
        alone.commit().await?;
        return Err(TooManyRejects { rejected: summary.rejected, limit, rejects: path.to_string(), on_stdout }.into());
    }
    commit.put(path, &bytes)?;
    if let Some(load) = commit.postgres() {
        load.put(rejects::TABLE, rejects::to_batch(&rejects)).await?;
    }
    Ok(summary)
}

/// Stamps the run's elapsed time on `summary`, stages it as JSON in
/// `commit` if asked, commits everything the run wrote (if it still holds
/// `locks`), then prints the summary on stderr.
async fn finish(
    summary: &mut Summary,
    started: Instant,
    progress: &Progress,
    json: Option<&Location>,
    locks: &[OutputLock],
    mut commit: Commit,
) -> anyhow::Result<()> {
    summary.elapsed_seconds = started.elapsed().as_secs_f64();
    if let Some(path) = json {
        commit.put(path, summary.to_json().as_bytes())?;
    }
    locks.iter().try_for_each(OutputLock::check)?;
    commit.commit().await?;
    for line in summary.to_lines() {
        progress.println(&format!("pos-etl: {line}"));
    }
    Ok(())
}
