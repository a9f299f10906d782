//! `pos-etl produce`: send the snapshot and change exports to Kafka, one topic
//! per file (`inventory_change_store_001.csv` → `InventoryChangeStore001`, the
//! names of the original producer), all files merged in date_time order, each
//! message stamped with `sent_time`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use arrow::array::{AsArray, RecordBatch};
use arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use arrow::datatypes::TimestampSecondType;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use futures::channel::oneshot::Canceled;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::producer::future_producer::OwnedDeliveryResult;

use crate::cli::MessageForm;
use crate::config::ProduceConfig;
use crate::error::SinkError;
use crate::progress::Progress;
use crate::sinks::kafka::{encode_key, encode_row, encode_transaction, ensure_topics, producer};
use crate::sources::{self, Table};

/// Deliveries awaited at most at once, across producers.
const MAX_IN_FLIGHT: usize = 100_000;

/// What a `produce` run sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// Kafka messages.
    pub messages: u64,
    /// CSV records in them.
    pub records: u64,
    /// Records rejected as unreadable (not sent).
    pub rejected: u64,
}

/// One file's rows, sorted by date_time and grouped into messages.
struct TopicRows {
    topic: String,
    batch: RecordBatch,
    /// Each message: its time and the rows of `batch` it carries.
    messages: Vec<(i64, std::ops::Range<usize>)>,
    form: MessageForm,
}

impl TopicRows {
    fn new(table: Table, topic: String, batch: RecordBatch, form: MessageForm) -> anyhow::Result<Self> {
        let column = |name: &str| batch.column_by_name(name).expect("event tables have the column").clone();
        let mut keys = vec![SortColumn { values: column("date_time"), options: None }];
        let transactions = form == MessageForm::Transaction && table == Table::InventoryChange;
        if transactions {
            for name in ["trans_id", "store_id", "change_type_id"] {
                keys.push(SortColumn { values: column(name), options: None });
            }
        }
        let order = lexsort_to_indices(&keys, None)?;
        let batch = take_record_batch(&batch, &order)?;
        let times = batch.column_by_name("date_time").expect("event tables have date_time").as_primitive::<TimestampSecondType>().clone();
        let mut messages: Vec<(i64, std::ops::Range<usize>)> = Vec::new();
        let same_transaction = |a: usize, b: usize| {
            ["trans_id", "store_id", "change_type_id", "date_time"].iter().all(|name| {
                let array = column_of(&batch, name);
                arrow::array::make_comparator(array.as_ref(), array.as_ref(), Default::default())
                    .map(|compare| compare(a, b).is_eq())
                    .unwrap_or(false)
            })
        };
        for row in 0..batch.num_rows() {
            match messages.last_mut() {
                Some((_, rows)) if transactions && same_transaction(rows.start, row) => rows.end = row + 1,
                _ => messages.push((times.value(row), row..row + 1)),
            }
        }
        Ok(TopicRows { topic, batch, messages, form: if transactions { form } else { MessageForm::Row } })
    }

    fn encode(&self, message: usize, sent_time: f64) -> (Vec<u8>, Vec<u8>) {
        let rows = self.messages[message].1.clone();
        let key_column = if self.form == MessageForm::Transaction { "trans_id" } else { "item_id" };
        let key = encode_key(&self.batch, key_column, rows.start);
        let payload = match self.form {
            MessageForm::Row => encode_row(&self.batch, rows.start, sent_time),
            MessageForm::Transaction => encode_transaction(&self.batch, &rows.collect::<Vec<_>>(), sent_time),
        };
        (key, payload)
    }
}

fn column_of(batch: &RecordBatch, name: &str) -> arrow::array::ArrayRef {
    batch.column_by_name(name).expect("event tables have the column").clone()
}

/// The topic of an export file, as the original producer named it:
/// `inventory_snapshot_online.csv` → `InventorySnapshotOnline`.
pub fn topic_for(table: Table, path: &Path) -> String {
    let (prefix, kind) = match table {
        Table::InventorySnapshot => ("inventory_snapshot_", "InventorySnapshot"),
        _ => ("inventory_change_", "InventoryChange"),
    };
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let store = stem.strip_prefix(prefix).unwrap_or(&stem);
    let camel: String = store
        .split(['_', '-', ' '])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect();
    format!("{kind}{camel}")
}

/// Runs `produce`; returns what was sent (already reported on stderr).
pub async fn run(config: &ProduceConfig) -> anyhow::Result<Sent> {
    let started = Instant::now();
    let progress = Progress::new(config.progress);
    let files = sources::csv::discover(&config.data, &[Table::InventorySnapshot, Table::InventoryChange]).await?;
    let reads = sources::csv::read_all(&files, |_| {}).await?;
    let paths = files.iter().flat_map(|f| f.inputs.iter().map(move |input| (f.table, input)));
    let mut topics = Vec::new();
    let mut sent = Sent::default();
    for ((table, path), read) in paths.zip(reads) {
        for reject in &read.rejects {
            progress.println(&format!("pos-etl: not sent: {}: {} ({})", reject.origin, reject.reason, reject.raw));
        }
        sent.rejected += read.rejects.len() as u64;
        let batch = concat_batches(&table.schema(), &read.batches)?;
        topics.push(TopicRows::new(table, topic_for(table, Path::new(&path.file_name())), batch, config.form)?);
    }
    let mut names: Vec<String> = topics.iter().map(|t| t.topic.clone()).collect();
    names.sort();
    names.dedup();
    ensure_topics(&config.kafka, &names, config.partitions, config.replication).await?;
    let producers = (0..config.producers).map(|_| producer(&config.kafka)).collect::<Result<Vec<_>, _>>()?;

    let total: u64 = topics.iter().map(|t| t.batch.num_rows() as u64).sum();
    let bar = progress.bytes("send", total);
    bar.set_style(indicatif::ProgressStyle::with_template("{msg:>10} [{bar:30}] {human_pos}/{human_len} records {per_sec} {eta}").expect("valid template"));
    // A k-way merge of the files by time: each heap entry is a file's next message.
    let first_messages = || -> BinaryHeap<Reverse<(i64, usize, usize)>> {
        topics
            .iter()
            .enumerate()
            .filter_map(|(file, t)| t.messages.first().map(|(time, _)| Reverse((*time, file, 0))))
            .collect()
    };
    let mut next = first_messages();
    let mut in_flight = FuturesUnordered::new();
    let sending = Instant::now();
    let until = config.loop_for.map(|duration| sending + duration);
    loop {
        let Some(Reverse((_, file, message))) = next.pop() else {
            // One pass done: again, if looping and there is time left.
            match until {
                Some(until) if Instant::now() < until && total > 0 => {
                    next = first_messages();
                    continue;
                }
                _ => break,
            }
        };
        if until.is_some_and(|until| Instant::now() >= until) {
            break;
        }
        let topic = &topics[file];
        if let Some((time, _)) = topic.messages.get(message + 1) {
            next.push(Reverse((*time, file, message + 1)));
        }
        if let Some(rate) = config.rate {
            let due = sending + Duration::from_secs_f64(sent.records as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let (key, payload) = topic.encode(message, epoch_seconds());
        let producer = &producers[sent.messages as usize % producers.len()];
        let mut record = FutureRecord::to(&topic.topic).key(&key).payload(&payload);
        let delivery = loop {
            match producer.send_result(record) {
                Ok(delivery) => break delivery,
                Err((error, returned)) => {
                    // The local queue is full: wait for a delivery, then retry.
                    let Some(done) = in_flight.next().await else {
                        return Err(SinkError::Delivery { topic: topic.topic.clone(), source: error }.into());
                    };
                    check_delivery(done)?;
                    record = returned;
                }
            }
        };
        let rows = topic.messages[message].1.len() as u64;
        in_flight.push(delivery);
        sent.messages += 1;
        sent.records += rows;
        bar.inc(rows);
        while in_flight.len() > MAX_IN_FLIGHT {
            check_delivery(in_flight.next().await.expect("in flight"))?;
        }
    }
    while let Some(done) = in_flight.next().await {
        check_delivery(done)?;
    }
    for producer in &producers {
        rdkafka::producer::Producer::flush(producer, config.kafka.timeout)
            .map_err(|source| SinkError::Kafka { brokers: config.kafka.brokers.clone(), source })
            .context("flushing the producers")?;
    }
    bar.finish();
    let seconds = started.elapsed().as_secs_f64();
    progress.println(&format!(
        "pos-etl: sent {} records in {} messages to {} topics with {} producer(s) in {:.2} s: {:.0} records/s{}",
        sent.records,
        sent.messages,
        names.len(),
        producers.len(),
        seconds,
        sent.records as f64 / seconds.max(1e-9),
        if sent.rejected > 0 { format!(" ({} unreadable records not sent)", sent.rejected) } else { String::new() },
    ));
    Ok(sent)
}

/// Turns a finished delivery into an error naming the topic, if it failed.
fn check_delivery(result: Result<OwnedDeliveryResult, Canceled>) -> Result<(), SinkError> {
    match result {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((source, message))) => Err(SinkError::Delivery { topic: message.topic().to_string(), source }),
        Err(Canceled) => Err(SinkError::Delivery { topic: "(unknown)".to_string(), source: KafkaError::Canceled }),
    }
}

fn epoch_seconds() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}
