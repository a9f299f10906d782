//! What `pos-etl stream` reports per batch (SPEC 6.3), and the latency
//! percentiles over a run.

use std::collections::BTreeMap;

use serde::Serialize;

/// One batch: a line of `--metrics`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BatchMetrics {
    /// The batch's number, from 1.
    pub batch: u64,
    /// Records read (Kafka messages).
    pub records: u64,
    /// Rows written to `enriched` (including rows written again for late events).
    pub rows_written: u64,
    /// Taking the messages from the consumer and decoding them.
    pub decode_ms: f64,
    /// The rules, with the COPY of the rows they compute as they are computed.
    pub rules_ms: f64,
    /// The rest of the writes: stock, journal, checkpoint, rejects.
    pub write_ms: f64,
    /// The COMMIT (and the swap of the checkpoint table before it).
    pub commit_ms: f64,
    /// When the commit ended, in seconds since the epoch.
    pub committed_at: f64,
    /// The commit's end minus the mean `sent_time` of the batch's records;
    /// `None` if none carries one.
    pub latency_ms: Option<f64>,
    /// The commit's end minus the earliest `sent_time`.
    pub max_latency_ms: Option<f64>,
    /// Records behind, per topic/partition, when the batch was taken.
    pub lag: BTreeMap<String, i64>,
    /// Times the batch was tried again after PostgreSQL failed it.
    pub retries: u32,
}

/// Latency over the batches of a run, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct LatencySummary {
    /// Batches with a latency.
    pub batches: usize,
    /// The median.
    pub p50_ms: f64,
    /// The 95th percentile (nearest rank).
    pub p95_ms: f64,
    /// The largest `max_latency_ms` of any batch.
    pub max_ms: f64,
}

impl LatencySummary {
    /// The percentiles of `latencies` (each batch's mean latency) and the
    /// largest of `maxima`; `None` if there are no latencies.
    pub fn of(latencies: &[f64], maxima: &[f64]) -> Option<LatencySummary> {
        if latencies.is_empty() {
            return None;
        }
        let mut sorted = latencies.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank = |p: f64| sorted[((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
        let max = maxima.iter().chain(latencies).copied().fold(f64::MIN, f64::max);
        Some(LatencySummary { batches: sorted.len(), p50_ms: rank(0.5), p95_ms: rank(0.95), max_ms: max })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        assert_eq!(LatencySummary::of(&[], &[]), None);
        let latencies: Vec<f64> = (1..=20).map(f64::from).collect();
        let summary = LatencySummary::of(&latencies, &[25.0]).unwrap();
        assert_eq!((summary.batches, summary.p50_ms, summary.p95_ms, summary.max_ms), (20, 10.0, 19.0, 25.0));
        let one = LatencySummary::of(&[7.0], &[]).unwrap();
        assert_eq!((one.p50_ms, one.p95_ms, one.max_ms), (7.0, 7.0, 7.0));
    }
}
