//! The account of a run (SPEC 1.3): what was read, written, rejected and
//! deduplicated, printed on stderr and optionally written as JSON.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::sinks::{Destination, Written};
use crate::sources::Table;

/// Counts for one input table.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct TableCounts {
    /// Records read (header lines excluded).
    pub read: u64,
    /// Records rejected.
    pub rejected: u64,
}

/// Rows whose id has no lookup row; they are kept with null names.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct UnmatchedLookups {
    /// Rows whose store_id is not in `store`.
    pub store: u64,
    /// Rows whose item_id is not in `item`.
    pub item: u64,
    /// Change rows whose change_type_id is not in `inventory_change_type`.
    pub change_type: u64,
}

/// One output written.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OutputCounts {
    /// Which view.
    pub table: String,
    /// Where it went.
    pub path: String,
    /// Rows written.
    pub rows: u64,
    /// Rows computed but not written: the reader of stdout went away, or
    /// the output is not kept.
    pub unread: u64,
    /// Whether the output is kept anywhere (`stream --tables` may leave
    /// `enriched` out).
    pub kept: bool,
}

impl OutputCounts {
    /// The counts of `table`, written to `destination`.
    pub fn new(table: &str, destination: &Destination, written: Written) -> Self {
        OutputCounts {
            table: table.to_string(),
            path: destination.to_string(),
            rows: written.rows,
            unread: written.unread,
            kept: *destination != Destination::Discard,
        }
    }
}

/// The account of one `enrich` or `report` run.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    /// Per input table.
    pub tables: BTreeMap<Table, TableCounts>,
    /// Event records (snapshots and changes) read.
    pub events_read: u64,
    /// Rows written to the enriched output.
    pub rows_written: u64,
    /// Rows of the enriched output computed but not written, because the
    /// reader of stdout went away or it is not kept.
    pub rows_unread: u64,
    /// Records rejected, all tables.
    pub rejected: u64,
    /// Event records the rules dropped as sent again (SPEC 2.2).
    pub duplicates: u64,
    /// Event records a user's rules left out of the enriched output (0 with
    /// the built-in rules): read − rejected − duplicates − rows computed.
    pub left_out_by_rules: u64,
    /// Rows kept with a missing lookup.
    pub unmatched_lookups: UnmatchedLookups,
    /// Every output written.
    pub outputs: Vec<OutputCounts>,
    /// Where the rejects went, if any record was rejected.
    pub rejects_file: Option<String>,
    /// The batches of `stream` and their latency (stream only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamSummary>,
    /// What an incremental run did (`--incremental` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incremental: Option<IncrementalSummary>,
    /// How the report's forecasts did in their back-test (report only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forecast: Option<ForecastSummary>,
    /// Wall-clock time of the run.
    pub elapsed_seconds: f64,
}

/// The batches of a `stream` run.
#[derive(Debug, Clone, Serialize)]
pub struct StreamSummary {
    /// Batches committed.
    pub batches: u64,
    /// Their latency, if their records carry `sent_time`.
    pub latency: Option<crate::metrics::LatencySummary>,
}

/// The account of an incremental run (SPEC 6).
#[derive(Debug, Default, Clone, Serialize)]
pub struct IncrementalSummary {
    /// Whether there was no checkpoint yet: the run loaded everything.
    pub first_run: bool,
    /// Whether nothing new was read: the run committed nothing.
    pub nothing_new: bool,
    /// Event records read since the checkpoint.
    pub records_read: u64,
    /// Rows added to `enriched`.
    pub rows_appended: u64,
    /// Rows of `enriched` written again because a late event came before them.
    pub rows_rewritten: u64,
    /// Events rejected as later than --late-window.
    pub late_rejected: u64,
    /// Records already applied (this run or earlier), not applied again.
    pub duplicates: u64,
    /// Where each input stood before the run (Kafka topic/partition: next
    /// offset; CSV file: bytes loaded).
    pub checkpoint_before: BTreeMap<String, u64>,
    /// Where each input stands after it.
    pub checkpoint_after: BTreeMap<String, u64>,
    /// Milliseconds in the rules, with the COPY of the rows they compute.
    pub rules_ms: f64,
    /// Milliseconds in the other writes: rows removed, stock, journal, checkpoint.
    pub write_ms: f64,
}

impl IncrementalSummary {
    fn to_lines(&self) -> Vec<String> {
        if self.nothing_new {
            return vec!["incremental: nothing new since the checkpoint; nothing committed".to_string()];
        }
        let moved: Vec<String> = self
            .checkpoint_after
            .iter()
            .filter_map(|(name, after)| {
                let before = self.checkpoint_before.get(name).copied().unwrap_or(0);
                (before != *after).then(|| format!("{name} {before}→{after}"))
            })
            .collect();
        vec![
            format!(
                "incremental{}: {} records read, {} rows appended, {} rewritten by late events, {} late rejected, {} duplicates",
                if self.first_run { " (first run: everything loaded)" } else { "" },
                self.records_read,
                self.rows_appended,
                self.rows_rewritten,
                self.late_rejected,
                self.duplicates
            ),
            format!("checkpoint: {}", if moved.is_empty() { "unchanged".to_string() } else { moved.join(", ") }),
        ]
    }
}

/// The back-test of the report's forecasts, over the series that have one.
#[derive(Debug, Clone, Serialize)]
pub struct ForecastSummary {
    /// Series forecast.
    pub series: usize,
    /// Mean MASE of the model over the held-out days.
    pub mean_mase: f64,
    /// Mean MASE of the seasonal-naive forecast over the same days.
    pub seasonal_naive_mean_mase: f64,
}

impl Summary {
    /// Adds the counts of `read` (one input read).
    pub fn absorb_read(&mut self, read: &crate::sources::TableRead) {
        let counts = self.tables.entry(read.table).or_default();
        counts.read += read.records;
        counts.rejected += read.rejects.len() as u64;
        self.rejected += read.rejects.len() as u64;
        if read.table.is_event() {
            self.events_read += read.records;
        }
    }

    /// Adds the counts of `batch`, one batch of a `stream` run.
    pub fn absorb(&mut self, batch: &Summary) {
        for (table, counts) in &batch.tables {
            let total = self.tables.entry(*table).or_default();
            total.read += counts.read;
            total.rejected += counts.rejected;
        }
        self.events_read += batch.events_read;
        self.rows_written += batch.rows_written;
        self.rows_unread += batch.rows_unread;
        self.rejected += batch.rejected;
        self.duplicates += batch.duplicates;
        self.left_out_by_rules += batch.left_out_by_rules;
        let u = &mut self.unmatched_lookups;
        (u.store, u.item, u.change_type) = (
            u.store + batch.unmatched_lookups.store,
            u.item + batch.unmatched_lookups.item,
            u.change_type + batch.unmatched_lookups.change_type,
        );
        for output in &batch.outputs {
            match self.outputs.iter_mut().find(|o| o.table == output.table) {
                Some(total) => (total.rows, total.unread) = (total.rows + output.rows, total.unread + output.unread),
                None => self.outputs.push(output.clone()),
            }
        }
        if let Some(run) = &batch.incremental {
            let total = self.incremental.get_or_insert_with(|| IncrementalSummary {
                checkpoint_before: run.checkpoint_before.clone(),
                ..Default::default()
            });
            total.records_read += run.records_read;
            total.rows_appended += run.rows_appended;
            total.rows_rewritten += run.rows_rewritten;
            total.late_rejected += run.late_rejected;
            total.duplicates += run.duplicates;
            total.rules_ms += run.rules_ms;
            total.write_ms += run.write_ms;
            total.first_run |= run.first_run;
            total.checkpoint_after = run.checkpoint_after.clone();
        }
    }

    /// The summary as the lines printed on stderr.
    pub fn to_lines(&self) -> Vec<String> {
        if let Some(incremental) = self.incremental.as_ref().filter(|run| run.nothing_new) {
            let mut lines = incremental.to_lines();
            lines.push(format!("done in {:.2} s", self.elapsed_seconds));
            return lines;
        }
        let per_table = self
            .tables
            .iter()
            .map(|(table, counts)| format!("{} {}", table.name(), counts.read))
            .collect::<Vec<_>>()
            .join(", ");
        let mut lines = vec![format!("read {per_table}")];
        for output in &self.outputs {
            if !output.kept {
                lines.push(format!("computed {} {} rows, not kept (--tables)", output.unread, output.table));
                continue;
            }
            let mut line = format!("wrote {} {} rows to {}", output.rows, output.table, output.path);
            if output.unread > 0 {
                line.push_str(&format!(" (its reader went away; {} rows not written)", output.unread));
            }
            lines.push(line);
        }
        let rejects = match &self.rejects_file {
            Some(path) if self.rejected > 0 => format!("{} rejected (see {path})", self.rejected),
            // stream keeps its rejects in the rejects table only.
            _ => format!("{} rejected", self.rejected),
        };
        let u = &self.unmatched_lookups;
        lines.push(format!(
            "{rejects}, {} duplicates removed, unmatched lookups: store {}, item {}, change_type {}",
            self.duplicates, u.store, u.item, u.change_type
        ));
        if self.left_out_by_rules > 0 {
            lines.push(format!("{} events left out by the rules of --sql-dir", self.left_out_by_rules));
        }
        if let Some(incremental) = &self.incremental {
            lines.extend(incremental.to_lines());
        }
        if let Some(stream) = &self.stream {
            lines.push(match &stream.latency {
                Some(l) => format!(
                    "stream: {} batches; latency p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms",
                    stream.batches, l.p50_ms, l.p95_ms, l.max_ms
                ),
                None => format!("stream: {} batches (no record carried a sent_time: no latency)", stream.batches),
            });
        }
        if let Some(f) = &self.forecast {
            lines.push(format!(
                "forecast back-test over {} series: mean MASE {:.3}, seasonal naive {:.3}",
                f.series, f.mean_mase, f.seasonal_naive_mean_mase
            ));
        }
        lines.push(format!("done in {:.2} s", self.elapsed_seconds));
        lines
    }

    /// The summary as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("summary is plain data") + "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_are_counted_with_or_without_a_file() {
        let mut summary = Summary { rejected: 3, ..Default::default() };
        assert!(summary.to_lines().iter().any(|line| line.starts_with("3 rejected, ")), "stream: no file");
        summary.rejects_file = Some("r.csv".into());
        assert!(summary.to_lines().iter().any(|line| line.starts_with("3 rejected (see r.csv)")));
        let batch = summary.clone();
        summary.absorb(&batch);
        assert_eq!(summary.rejected, 6, "a stream adds up its batches");
    }
}
