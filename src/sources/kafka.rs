//! Kafka topics (SPEC 1.2): every partition of a topic is read from its first
//! offset (or, in an incremental run, from the checkpoint's) up to the
//! high-water mark seen at start, and the messages are decoded by the
//! formats crate's JSON decoder.
//!
//! A partition is done when its consumer has passed the high-water mark seen
//! at start *and* librdkafka has then signalled end-of-partition: some brokers
//! (Tansu 0.6) under-report the mark, and the end-of-partition event is the
//! fact that holds everywhere. librdkafka's end-of-partition event names the
//! partition but not the topic, so each topic gets its own consumer.

use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use pos_etl_formats::json::MessageDecoder;
use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::statistics::Statistics;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::{Table, TableRead};
use crate::config::KafkaSettings;
use crate::error::SourceError;

/// The settings every consumer of pos-etl starts from (before the user's
/// `-X`), followed by `own`: offsets are pos-etl's to keep, never committed
/// to Kafka, and a partition with none is read from its start.
fn consumer_defaults<'a>(own: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let shared = [
        ("enable.auto.commit", "false"),
        ("auto.offset.reset", "earliest"),
        // A fetch returns as soon as it has a record on Kafka, but some
        // brokers (Tansu 0.6) hold every fetch this long: 500 ms, the
        // default, made a read of 1 million records 2.6× slower.
        ("fetch.wait.max.ms", "10"),
    ];
    shared.into_iter().chain(own.iter().copied()).collect()
}

/// What was read from one topic.
#[derive(Debug)]
pub struct TopicRead {
    /// The count of records and the rejects; the rows too if read into memory.
    pub read: TableRead,
    /// Per partition, the next offset to read.
    pub next: BTreeMap<i32, i64>,
}

/// Reads every topic (each with the table its messages belong to) into
/// memory, topics in parallel; one read per topic. A partition is read from
/// its offset in `from` (by topic and partition), or from its start.
/// `on_messages` is called with each further number of messages read.
pub async fn read_topics(
    settings: &KafkaSettings,
    topics: &[(Table, String)],
    from: &BTreeMap<(String, i32), i64>,
    on_messages: impl Fn(u64) + Clone + Send + 'static,
) -> Result<Vec<TopicRead>, SourceError> {
    let tasks = topics.iter().map(|(table, topic)| {
        let (settings, table, topic, on_messages) =
            (settings.clone(), *table, topic.clone(), on_messages.clone());
        let from: BTreeMap<i32, i64> =
            from.iter().filter(|((t, _), _)| *t == topic).map(|((_, partition), next)| (*partition, *next)).collect();
        tokio::task::spawn_blocking(move || {
            let mut batches = Vec::new();
            let mut topic_read = read_topic(&settings, table, &topic, &from, on_messages, |batch| {
                batches.push(batch);
                ControlFlow::Continue(())
            })?;
            topic_read.read.batches = batches;
            Ok(topic_read)
        })
    });
    futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|read| read.expect("a Kafka reader task panicked"))
        .collect()
}

/// Reads one topic from the offsets in `from` (a partition not in it from
/// its start) to the high-water marks seen at start, handing each batch of
/// rows to `on_batch` as it is decoded (the read stops early if it breaks:
/// the plan reading it has stopped). The read returned holds the count of
/// records and the rejects, not the rows.
pub fn read_topic(
    settings: &KafkaSettings,
    table: Table,
    topic: &str,
    from: &BTreeMap<i32, i64>,
    on_messages: impl Fn(u64),
    on_batch: impl FnMut(RecordBatch) -> ControlFlow<()>,
) -> Result<TopicRead, SourceError> {
    open_topic(settings, table, topic, from)?.read(settings, on_messages, on_batch)
}

/// A topic's consumer, assigned every partition, with the high-water marks
/// seen when it was opened: what is there to read.
pub struct OpenTopic {
    consumer: BaseConsumer,
    table: Table,
    topic: String,
    pending: HashMap<i32, PartitionRead>,
}

/// Opens `topic` to be read from the offsets in `from` (a partition not in
/// it from its start): fails if the brokers do not answer or the topic does
/// not exist.
pub fn open_topic(
    settings: &KafkaSettings,
    table: Table,
    topic: &str,
    from: &BTreeMap<i32, i64>,
) -> Result<OpenTopic, SourceError> {
    let consumer: BaseConsumer = settings
        .client_config(&consumer_defaults(&[
            ("group.id", "pos-etl-enrich"),
            // The rules hold the reader back when they are busier than it
            // (the channel to them is full); librdkafka then waits this
            // long (default 1 s) before its next fetch once its read-ahead
            // is full, which left both cores idle for most of a second.
            ("fetch.queue.backoff.ms", "10"),
            // Read-ahead per partition (default 64 MiB): a dozen partitions
            // would otherwise hold more than the rules.
            ("queued.max.messages.kbytes", "16384"),
        ]))
        // The end-of-partition event is how a run knows it is done.
        .set("enable.partition.eof", "true")
        .create()
        .map_err(|source| SourceError::KafkaClient { brokers: settings.brokers.clone(), source })?;
    let unreachable = |source| SourceError::BrokerUnreachable {
        brokers: settings.brokers.clone(),
        timeout_secs: settings.timeout.as_secs_f64(),
        source,
    };
    let partitions = partitions_of(&consumer, settings, topic)?;

    // Every partition from its first offset: a broker's low watermark is not
    // trusted (Tansu 0.6 has answered a batch's base offset for it, and the
    // records before it were skipped). Where retention has removed records,
    // the broker says the offset is out of range and auto.offset.reset moves
    // the consumer to the earliest one retained.
    let mut pending: HashMap<i32, PartitionRead> = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        let (_, high) = consumer.fetch_watermarks(topic, partition, settings.timeout).map_err(unreachable)?;
        let start = from.get(&partition).copied().unwrap_or(0);
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(start))
            .map_err(|source| SourceError::Kafka { topic: topic.to_string(), source })?;
        pending.insert(partition, PartitionRead::new(start, high));
    }
    consumer
        .assign(&assignment)
        .map_err(|source| SourceError::Kafka { topic: topic.to_string(), source })?;
    Ok(OpenTopic { consumer, table, topic: topic.to_string(), pending })
}

impl OpenTopic {
    /// The topic's name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Reads what is there to read, as [`read_topic`] does.
    pub fn read(
        self,
        settings: &KafkaSettings,
        on_messages: impl Fn(u64),
        mut on_batch: impl FnMut(RecordBatch) -> ControlFlow<()>,
    ) -> Result<TopicRead, SourceError> {
        let OpenTopic { consumer, table, topic, mut pending } = self;
        let topic = topic.as_str();
        let mut done = BTreeMap::new();
        let mut decoder = MessageDecoder::new(table, topic);
        // Since when the polls have brought no message or end of partition:
        // the clock is read once a poll comes back empty, not per message.
        let mut idle_since: Option<Instant> = None;
        while !pending.is_empty() {
            match consumer.poll(Duration::from_millis(100)) {
                None => {
                    if idle_since.get_or_insert_with(Instant::now).elapsed() > settings.timeout {
                        let mut stalled: Vec<String> =
                            pending.iter().map(|(partition, read)| format!("{topic}/{partition} {read}")).collect();
                        stalled.sort();
                        return Err(SourceError::Stalled {
                            brokers: settings.brokers.clone(),
                            timeout_secs: settings.timeout.as_secs_f64(),
                            partitions: stalled.join(", "),
                        });
                    }
                }
                Some(Ok(message)) => {
                    idle_since = None;
                    if let Some(read) = pending.get_mut(&message.partition()) {
                        read.on_message(message.offset());
                    }
                    decoder.push(message.partition(), message.offset(), message.payload().unwrap_or_default());
                    if decoder.is_full() {
                        on_messages(decoder.flush() as u64);
                        if decoder.take_batches().into_iter().try_for_each(&mut on_batch).is_break() {
                            break;
                        }
                    }
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    idle_since = None;
                    // The consumer's position is past the control records a
                    // transactional producer leaves, which are never delivered.
                    let position = consumer.position().ok().and_then(|positions| {
                        match positions.find_partition(topic, partition)?.offset() {
                            Offset::Offset(offset) => Some(offset),
                            _ => None,
                        }
                    });
                    if let Some(read) = pending.get_mut(&partition) {
                        if read.on_end(position) {
                            done.insert(partition, read.next);
                            pending.remove(&partition);
                        }
                    }
                }
                // Transient errors (a broker restarting, a rebalance of leaders):
                // librdkafka retries, and the stall timeout above bounds the wait.
                Some(Err(KafkaError::MessageConsumption(_))) => {}
                Some(Err(source)) => return Err(SourceError::Kafka { topic: topic.to_string(), source }),
            }
        }
        on_messages(decoder.flush() as u64);
        // Past a break the batches left are dropped, as the plan wants no more.
        let _ = decoder.take_batches().into_iter().try_for_each(&mut on_batch);
        Ok(TopicRead { read: decoder.finish(), next: done })
    }
}

/// A consumer that stays, for `pos-etl stream`: every partition of its
/// topics, from a checkpoint's offsets (a partition not in it from its
/// start), read batch after batch.
pub struct TopicStream {
    consumer: BaseConsumer<MarksContext>,
    /// The table of each topic's messages.
    tables: HashMap<String, Table>,
    /// Per topic and partition, the next offset to read.
    next: BTreeMap<(String, i32), i64>,
    /// Per topic and partition, the high-water mark of librdkafka's last statistics.
    marks: Arc<Mutex<BTreeMap<(String, i32), i64>>>,
}

/// Keeps the high-water marks of librdkafka's statistics (emitted during
/// `poll`, every second): the lag without a request to the brokers.
struct MarksContext {
    marks: Arc<Mutex<BTreeMap<(String, i32), i64>>>,
}

impl ClientContext for MarksContext {
    fn stats(&self, statistics: Statistics) {
        let mut marks = self.marks.lock().expect("no panic while holding the lock");
        for (topic, stats) in statistics.topics {
            for (partition, stats) in stats.partitions {
                // Partition -1 is librdkafka's "unassigned" bucket; -1001 an unknown mark.
                if partition >= 0 && stats.hi_offset >= 0 {
                    marks.insert((topic.clone(), partition), stats.hi_offset);
                }
            }
        }
    }
}

impl ConsumerContext for MarksContext {}

/// One batch of messages taken from a [`TopicStream`].
#[derive(Debug, Default)]
pub struct Polled {
    /// The records, one read per topic that had messages.
    pub reads: Vec<TableRead>,
    /// Messages taken.
    pub messages: u64,
    /// The sum of the messages' `sent_time` (epoch seconds), and how many had one.
    pub sent_time_sum: f64,
    /// Messages with a `sent_time`.
    pub sent_times: u64,
    /// The earliest `sent_time`.
    pub earliest_sent_time: Option<f64>,
}

impl TopicStream {
    /// Assigns every partition of `topics` from the offsets in `from`.
    pub fn open(
        settings: &KafkaSettings,
        topics: &[(Table, String)],
        from: &BTreeMap<(String, i32), i64>,
    ) -> Result<TopicStream, SourceError> {
        let marks = Arc::new(Mutex::new(BTreeMap::new()));
        let consumer: BaseConsumer<MarksContext> = settings
            .client_config(&consumer_defaults(&[("group.id", "pos-etl-stream"), ("statistics.interval.ms", "1000")]))
            .create_with_context(MarksContext { marks: marks.clone() })
            .map_err(|source| SourceError::KafkaClient { brokers: settings.brokers.clone(), source })?;
        let mut assignment = TopicPartitionList::new();
        let mut next = BTreeMap::new();
        for (_, topic) in topics {
            for partition in partitions_of(&consumer, settings, topic)? {
                let start = from.get(&(topic.clone(), partition)).copied().unwrap_or(0);
                assignment
                    .add_partition_offset(topic, partition, Offset::Offset(start))
                    .map_err(|source| SourceError::Kafka { topic: topic.clone(), source })?;
                next.insert((topic.clone(), partition), start);
            }
        }
        consumer.assign(&assignment).map_err(|source| SourceError::Kafka { topic: String::new(), source })?;
        let tables = topics.iter().map(|(table, topic)| (topic.clone(), *table)).collect();
        Ok(TopicStream { consumer, tables, next, marks })
    }

    /// Waits up to `wait` for a message, then takes what has arrived, up to
    /// `max` messages. Errors the client recovers from (a broker away, a
    /// leader moving) go to `on_error`, and the wait goes on.
    pub fn poll_batch(&mut self, max: u64, wait: Duration, mut on_error: impl FnMut(&KafkaError)) -> Polled {
        let deadline = Instant::now() + wait;
        let mut decoders: BTreeMap<String, MessageDecoder> = BTreeMap::new();
        let mut polled = Polled::default();
        while polled.messages < max {
            let timeout = match polled.messages {
                0 => deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(100)),
                _ => Duration::ZERO,
            };
            match self.consumer.poll(timeout) {
                None if polled.messages > 0 || Instant::now() >= deadline => break,
                None => {}
                Some(Ok(message)) => {
                    let topic = message.topic();
                    let Some(table) = self.tables.get(topic) else { continue };
                    let decoder = decoders.entry(topic.to_string()).or_insert_with(|| MessageDecoder::new(*table, topic));
                    let payload = message.payload().unwrap_or_default();
                    if let Some(sent) = decoder.push(message.partition(), message.offset(), payload) {
                        polled.sent_time_sum += sent;
                        polled.sent_times += 1;
                        polled.earliest_sent_time = Some(polled.earliest_sent_time.map_or(sent, |e: f64| e.min(sent)));
                    }
                    if decoder.is_full() {
                        decoder.flush();
                    }
                    self.next.insert((topic.to_string(), message.partition()), message.offset() + 1);
                    polled.messages += 1;
                }
                Some(Err(error)) => on_error(&error),
            }
        }
        polled.reads = decoders.into_values().map(MessageDecoder::finish).collect();
        polled
    }

    /// Per topic and partition, the next offset to read (past the last batch taken).
    pub fn next_offsets(&self) -> &BTreeMap<(String, i32), i64> {
        &self.next
    }

    /// Records behind, per `topic/partition`: the high-water mark of the
    /// client's last statistics (at most a second old) minus the next
    /// offset to read. A broker that under-reports its marks (Tansu 0.6)
    /// under-reports the lag.
    pub fn lag(&self) -> BTreeMap<String, i64> {
        let marks = self.marks.lock().expect("no panic while holding the lock");
        self.next
            .iter()
            .map(|(key, next)| {
                let high = marks.get(key).copied().unwrap_or(*next);
                (format!("{}/{}", key.0, key.1), (high - next).max(0))
            })
            .collect()
    }
}

/// The partitions of `topic`, from the cluster's metadata.
fn partitions_of<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    settings: &KafkaSettings,
    topic: &str,
) -> Result<Vec<i32>, SourceError> {
    let metadata = consumer.fetch_metadata(Some(topic), settings.timeout).map_err(|source| {
        SourceError::BrokerUnreachable {
            brokers: settings.brokers.clone(),
            timeout_secs: settings.timeout.as_secs_f64(),
            source,
        }
    })?;
    match metadata.topics().iter().find(|t| t.name() == topic) {
        Some(found) if found.error().is_none() => Ok(found.partitions().iter().map(|p| p.id()).collect()),
        found => Err(SourceError::UnknownTopic {
            topic: topic.to_string(),
            brokers: settings.brokers.clone(),
            detail: found.and_then(|t| t.error()).map(|e| format!("{e:?}")).unwrap_or_default(),
        }),
    }
}

/// How far the reading of one partition has got, and whether it is done:
/// it has reached the high-water mark seen at start *and* librdkafka has
/// then signalled the end of the partition. Either alone is not enough:
/// some brokers (Tansu 0.6) under-report the mark, and an end-of-partition
/// event can come before the consumer has fetched anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionRead {
    /// The next offset to read.
    next: i64,
    /// The high-water mark seen at start.
    high: i64,
}

impl PartitionRead {
    /// A partition to read from `start`, whose mark was `high` at start.
    pub fn new(start: i64, high: i64) -> Self {
        PartitionRead { next: start, high }
    }

    /// A record at `offset` was read.
    pub fn on_message(&mut self, offset: i64) {
        self.next = self.next.max(offset + 1);
    }

    /// librdkafka signalled the end of the partition, with the consumer's
    /// position if it knows it (past records a consumer never receives:
    /// the control records of transactions). Returns whether the partition
    /// is done.
    pub fn on_end(&mut self, position: Option<i64>) -> bool {
        if let Some(position) = position {
            self.next = self.next.max(position);
        }
        self.next >= self.high
    }
}

impl std::fmt::Display for PartitionRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at offset {} of {}", self.next, self.high)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_is_done_at_its_end_past_the_mark_seen_at_start() {
        // Tansu under-reports the mark: 1 for ten records; the end comes after them.
        let mut read = PartitionRead::new(0, 1);
        assert!(!read.on_end(Some(0)), "an end before anything was fetched");
        read.on_message(0);
        read.on_message(9);
        assert!(read.on_end(Some(10)));
        // A transactional producer's commit marker at offset 10 is never delivered:
        // the consumer's position says the end is past it.
        let mut read = PartitionRead::new(0, 11);
        read.on_message(9);
        assert!(!read.on_end(None), "without the position the marker looks like a record still to come");
        assert!(read.on_end(Some(11)));
        // An empty partition is done at its first end.
        assert!(PartitionRead::new(0, 0).on_end(None));
        // Records produced during the run are read too: the mark only says when enough is enough.
        let mut read = PartitionRead::new(5, 7);
        read.on_message(20);
        assert!(read.on_end(Some(21)));
        assert_eq!(read.to_string(), "at offset 21 of 7");
    }
}
