//! `pos-etl enrich`: run the enrich pipeline into the outputs asked for,
//! then commit them all and report the summary.

use std::time::Instant;

use crate::config::EnrichConfig;
use crate::enrichment::{self, Job};
use crate::incremental;
use crate::sinks::delta::state::DeltaLoad;
use crate::sinks::postgres::state;
use crate::progress::Progress;
use crate::sinks::lock::OutputLock;
use crate::sinks::{Commit, Destination};
use crate::storage::Location;
use crate::summary::Summary;

/// Runs `enrich` and returns its summary (already printed on stderr).
pub async fn run(config: &EnrichConfig) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let progress = Progress::new(config.run.progress);
    let rules = config.run.rules.load()?;
    let locks = lock_outputs(config).await?;
    let job = Job {
        run: &config.run,
        rules: &rules,
        enriched: &config.enriched,
        current_inventory: config.current_inventory.as_ref(),
        keep_stock_seq: false,
    };
    let mut commit = Commit::new();
    if let Some(target) = &config.postgres {
        // Connected before anything is computed: a database that cannot be
        // reached fails the run at once.
        let mut load = target.begin(config.run.lock_timeout).await?;
        if config.incremental.is_none() {
            // A full load starts incremental runs over.
            for table in state::TABLES {
                load.drop_at_commit(table);
            }
        }
        commit.attach(load);
    } else if config.incremental.is_some() {
        // Delta tables (the config allows no other): their checkpoint is read first.
        let tables = [(crate::pipeline::ENRICHED, Some(&config.enriched)), (crate::pipeline::CURRENT_INVENTORY, config.current_inventory.as_ref())];
        let tables = tables.into_iter().filter_map(|(name, output)| match output.map(|output| &output.destination) {
            Some(Destination::Delta(target)) => Some((name, target.clone())),
            _ => None,
        });
        commit.attach_delta(DeltaLoad::open(tables.collect()).await?);
    }
    let enriched = match config.incremental {
        Some(late_window) => incremental::run(&job, late_window, &progress, &mut commit).await?,
        None => enrichment::run(&job, &progress, &mut commit).await?,
    };
    if enriched.summary.incremental.as_ref().is_some_and(|run| run.nothing_new) {
        // Nothing to commit: the transaction rolls back as it is dropped,
        // and the summary alone is written.
        drop(commit);
        let mut summary = enriched.summary;
        super::finish(&mut summary, started, &progress, config.summary_json.as_ref(), &locks, Commit::new()).await?;
        return Ok(summary);
    }
    let on_stdout = config.enriched.destination == Destination::Stdout;
    let mut summary =
        super::stage_rejects(enriched, &config.rejects, config.run.max_rejects, on_stdout, &mut commit).await?;
    super::finish(&mut summary, started, &progress, config.summary_json.as_ref(), &locks, commit).await?;
    Ok(summary)
}

/// Locks every file or object output, in name order so that two runs cannot deadlock.
async fn lock_outputs(config: &EnrichConfig) -> anyhow::Result<Vec<OutputLock>> {
    let mut outputs: Vec<Location> = std::iter::once(&config.enriched)
        .chain(&config.current_inventory)
        .filter_map(|output| output.destination.location())
        .collect();
    outputs.sort_by_key(|output| output.to_string());
    outputs.dedup();
    let mut locks = Vec::new();
    for output in &outputs {
        locks.push(OutputLock::acquire(output, config.run.lock_timeout).await?);
    }
    Ok(locks)
}
