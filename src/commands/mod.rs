//! One module per subcommand; each turns a checked config into a run.

pub mod enrich;
pub mod generate;
pub mod produce;
pub mod report;

use std::path::Path;
use std::time::Instant;

use anyhow::Context;

use crate::progress::Progress;
use crate::summary::Summary;

/// Stamps the run's elapsed time on `summary`, prints it on stderr, and
/// writes it as JSON to `json` if asked.
fn finish(summary: &mut Summary, started: Instant, progress: &Progress, json: Option<&Path>) -> anyhow::Result<()> {
    summary.elapsed_seconds = started.elapsed().as_secs_f64();
    for line in summary.to_lines() {
        progress.println(&format!("pos-etl: {line}"));
    }
    if let Some(path) = json {
        summary.write_json(path).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
