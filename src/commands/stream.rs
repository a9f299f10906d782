//! `pos-etl stream`: incremental batches from Kafka into PostgreSQL, back
//! to back (SPEC 6.3). Each batch is one incremental run
//! ([`incremental::apply`]) over the messages that have arrived, committed
//! with its offsets; the consumer, the lookups and the plan of the rules
//! are set up once ([`incremental::Engine`]). A batch
//! that PostgreSQL fails is tried again, on a new connection, with backoff;
//! its offsets are not stored until it commits.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use tokio_postgres::error::SqlState;

use crate::cli::ProgressMode;
use crate::config::{EventSource, StreamConfig};
use crate::enrichment::{Enriched, Job};
use crate::error::{SinkError, one_line};
use crate::incremental::{self, Engine, NewRecords, millis};
use crate::metrics::{BatchMetrics, LatencySummary};
use crate::pipeline;
use crate::progress::Progress;
use crate::sinks::postgres::PgSession;
use crate::sinks::{Commit, Destination, Output, rejects};
use crate::sources::TableRead;
use crate::sources::kafka::TopicStream;
use crate::summary::{StreamSummary, Summary};

/// How long a batch waits for its first message before the loop looks
/// again at the signals and the idle time.
const POLL_WAIT: Duration = Duration::from_millis(200);

/// How often a line of progress goes to stderr.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// The longest wait between two tries of a batch PostgreSQL failed.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs `stream` until a signal or the idle time stops it; returns the
/// summary of the whole run (already printed on stderr).
pub async fn run(config: &StreamConfig) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let rules = config.run.rules.load()?;
    let EventSource::Kafka { settings, topics } = &config.run.events else {
        unreachable!("StreamConfig holds Kafka inputs only")
    };
    let stop = stop_on_signals()?;
    let mut lookups = incremental::read_lookups(&config.run).await?;
    let mut summary = Summary::default();
    let stored = config.target.begin(config.run.lock_timeout).await?.checkpoint().await?;
    let mut consumer = TopicStream::open(settings, topics, &stored.clone().unwrap_or_default().offsets)?;
    let mut metrics = match &config.metrics {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open --metrics {}", path.display()))?,
        ),
        None => None,
    };
    let table = |name: &str| Output { destination: Destination::table(&config.target, name), format: crate::cli::Format::Csv };
    let enriched = match config.keep_enriched {
        true => table(pipeline::ENRICHED),
        false => Output { destination: Destination::Discard, format: crate::cli::Format::Csv },
    };
    let current = table(pipeline::CURRENT_INVENTORY);
    let current_inventory = config.keep_current_inventory.then_some(&current);
    let job = Job { run: &config.run, rules: &rules, enriched: &enriched, current_inventory, keep_stock_seq: false };
    if let Some(stored) = &stored {
        // At once, not at the first record.
        incremental::check_kept_tables(&job, stored, &config.target.place())?;
    }
    let engine = incremental::Engine::plan(&job, &mut lookups).await?;

    // One connection from batch to batch, made again after a failure.
    let mut session = None;
    let mut batches = 0;
    let (mut latencies, mut maxima) = (Vec::new(), Vec::new());
    let mut last_record = Instant::now();
    let mut last_report = Instant::now();
    let mut broker_errors = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let taken = Instant::now();
        let polled = tokio::task::block_in_place(|| {
            consumer.poll_batch(config.max_batch_records, POLL_WAIT, |error| {
                // librdkafka reconnects by itself; say so now and then.
                if broker_errors % 50 == 0 {
                    eprintln!("pos-etl: stream: Kafka: {error} (waiting for the brokers)");
                }
                broker_errors += 1;
            })
        });
        if polled.messages == 0 {
            if config.stop_when_idle.is_some_and(|idle| last_record.elapsed() >= idle) {
                break;
            }
            continue;
        }
        let decode_ms = millis(taken.elapsed());
        let lag = consumer.lag();
        let offsets = consumer.next_offsets().clone();
        batches += 1;
        // The first batch carries the lookups' counts and rejects, once.
        let mut reads = std::mem::take(&mut lookups);
        reads.extend(polled.reads);
        let (done, retries, commit_ms) =
            commit_batch(config, &mut session, &job, &engine, reads, offsets, &stop).await.with_context(|| format!("batch {batches}"))?;
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        let latency_ms = (polled.sent_times > 0).then(|| (now - polled.sent_time_sum / polled.sent_times as f64) * 1000.0);
        let max_latency_ms = polled.earliest_sent_time.map(|earliest| (now - earliest) * 1000.0);
        latencies.extend(latency_ms);
        maxima.extend(max_latency_ms);
        let account = done.summary.incremental.clone().unwrap_or_default();
        let line = BatchMetrics {
            batch: batches,
            records: polled.messages,
            rows_written: done.summary.rows_written,
            decode_ms,
            rules_ms: account.rules_ms,
            write_ms: account.write_ms,
            commit_ms,
            committed_at: now,
            latency_ms,
            max_latency_ms,
            lag,
            retries,
        };
        if let (Some(file), Some(path)) = (metrics.as_mut(), &config.metrics) {
            let text = serde_json::to_string(&line).expect("metrics are plain data") + "\n";
            file.write_all(text.as_bytes()).with_context(|| format!("cannot write --metrics {}", path.display()))?;
        }
        summary.absorb(&done.summary);
        // Idle is time without a record, not time spent on one.
        last_record = Instant::now();
        if last_report.elapsed() >= REPORT_EVERY {
            last_report = Instant::now();
            let latency = latency_ms.map_or("-".to_string(), |ms| format!("{ms:.0} ms"));
            let behind: i64 = line.lag.values().sum();
            eprintln!(
                "pos-etl: stream: {batches} batches, {} records; last batch {} records, latency {latency}, {behind} records behind",
                summary.events_read, line.records
            );
        }
        wait_for_trigger(config.trigger, taken, &stop).await;
    }
    for read in &lookups {
        // No batch came to carry them (their rejects are in the next run's first batch).
        summary.absorb_read(read);
    }
    summary.stream = Some(StreamSummary { batches, latency: LatencySummary::of(&latencies, &maxima) });
    summary.elapsed_seconds = started.elapsed().as_secs_f64();
    let mut commit = Commit::new();
    if let Some(path) = &config.summary_json {
        commit.put(path, summary.to_json().as_bytes())?;
    }
    commit.commit().await?;
    for line in summary.to_lines() {
        eprintln!("pos-etl: {line}");
    }
    Ok(summary)
}

/// Sets the returned flag on SIGINT or SIGTERM: the loop finishes the batch
/// in hand and stops.
fn stop_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    use tokio::signal::unix::{SignalKind, signal};
    let stop = Arc::new(AtomicBool::new(false));
    for kind in [SignalKind::interrupt(), SignalKind::terminate()] {
        let mut signals = signal(kind).context("cannot listen for signals")?;
        let stop = stop.clone();
        tokio::spawn(async move {
            signals.recv().await;
            stop.store(true, Ordering::Relaxed);
        });
    }
    Ok(stop)
}

/// Waits until `trigger` after `started`, or until told to stop.
async fn wait_for_trigger(trigger: Duration, started: Instant, stop: &AtomicBool) {
    while started.elapsed() < trigger && !stop.load(Ordering::Relaxed) {
        let left = trigger.saturating_sub(started.elapsed());
        tokio::time::sleep(left.min(Duration::from_millis(100))).await;
    }
}

/// Commits one batch on `session` (connecting if there is none), trying
/// again (on a new connection, with backoff) while PostgreSQL fails it in a
/// way that may pass; returns the run's account, the tries again, and the
/// milliseconds of the commit.
async fn commit_batch(
    config: &StreamConfig,
    session: &mut Option<PgSession>,
    job: &Job<'_>,
    engine: &Engine,
    reads: Vec<TableRead>,
    offsets: std::collections::BTreeMap<(String, i32), i64>,
    stop: &AtomicBool,
) -> anyhow::Result<(Enriched, u32, f64)> {
    let mut backoff = Duration::from_millis(100);
    let mut retries = 0;
    loop {
        let tried = async {
            if session.is_none() {
                *session = Some(config.target.connect().await?);
            }
            let on = session.as_ref().expect("connected above");
            try_batch(config, on, job, engine, reads.clone(), &offsets).await
        };
        match tried.await {
            Ok((done, commit_ms)) => return Ok((done, retries, commit_ms)),
            // A failed batch leaves its transaction open: the next try connects anew.
            Err(error) if may_pass(&error) && !stop.load(Ordering::Relaxed) => {
                *session = None;
                eprintln!("pos-etl: stream: {}; trying the batch again in {:.1} s", one_line(&error), backoff.as_secs_f64());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                retries += 1;
            }
            Err(error) => {
                *session = None;
                return Err(error);
            }
        }
    }
}

/// One try of a batch: its own transaction, from the stored checkpoint.
async fn try_batch(
    config: &StreamConfig,
    session: &PgSession,
    job: &Job<'_>,
    engine: &Engine,
    reads: Vec<TableRead>,
    offsets: &std::collections::BTreeMap<(String, i32), i64>,
) -> anyhow::Result<(Enriched, f64)> {
    let mut load = session.begin(config.run.lock_timeout).await?;
    let stored = load.checkpoint().await?;
    let mut after = stored.clone().unwrap_or_default();
    after.offsets.extend(offsets.iter().map(|(key, next)| (key.clone(), *next)));
    if stored.is_some() {
        // Every batch's rejects are kept.
        load.append_to(rejects::TABLE);
    }
    let mut commit = Commit::new();
    commit.attach(load);
    let progress = Progress::new(ProgressMode::Never);
    let done =
        incremental::apply(job, engine, config.late_window, stored, NewRecords { reads, after }, &progress, &mut commit)
            .await?;
    let load = commit.postgres().expect("attached above");
    load.put(rejects::TABLE, rejects::to_batch(&done.rejects)).await?;
    let committing = Instant::now();
    commit.commit().await?;
    Ok((done, millis(committing.elapsed())))
}

/// Whether PostgreSQL failed the batch in a way that trying again may
/// mend: the connection lost or refused, the server shutting down or out
/// of resources, a lock or serialization conflict. Not: authentication, a
/// missing database, privileges, or anything not PostgreSQL's.
fn may_pass(error: &anyhow::Error) -> bool {
    let Some(SinkError::Postgres { cause, .. }) = error.chain().find_map(|cause| cause.downcast_ref::<SinkError>()) else {
        return false;
    };
    match cause.code() {
        None => true,
        Some(code) => {
            let class = &code.code()[..2];
            matches!(class, "08" | "40" | "53" | "57") || *code == SqlState::LOCK_NOT_AVAILABLE
        }
    }
}
