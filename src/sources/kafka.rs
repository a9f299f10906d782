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
use std::time::{Duration, Instant};

use pos_etl_formats::json::MessageDecoder;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::{Table, TableRead};
use crate::config::KafkaSettings;
use crate::error::SourceError;

/// What was read from one topic.
#[derive(Debug)]
pub struct TopicRead {
    /// The records.
    pub read: TableRead,
    /// Per partition, the next offset to read.
    pub next: BTreeMap<i32, i64>,
}

/// Reads every topic (each with the table its messages belong to), topics in
/// parallel; one read per topic. A partition is read from its offset in
/// `from` (by topic and partition), or from its start. `on_messages` is
/// called with each further number of messages read.
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
        tokio::task::spawn_blocking(move || read_topic(&settings, table, &topic, &from, on_messages))
    });
    futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|read| read.expect("a Kafka reader task panicked"))
        .collect()
}

/// Reads one topic from the offsets in `from` (a partition not in it from
/// its start) to the high-water marks seen at start.
pub fn read_topic(
    settings: &KafkaSettings,
    table: Table,
    topic: &str,
    from: &BTreeMap<i32, i64>,
    on_messages: impl Fn(u64),
) -> Result<TopicRead, SourceError> {
    let consumer: BaseConsumer = settings
        .client_config(&[
            ("group.id", "pos-etl-enrich"),
            ("enable.auto.commit", "false"),
            ("auto.offset.reset", "earliest"),
        ])
        // The end-of-partition event is how a run knows it is done.
        .set("enable.partition.eof", "true")
        .create()
        .map_err(|source| SourceError::KafkaClient { brokers: settings.brokers.clone(), source })?;
    let unreachable = |source| SourceError::BrokerUnreachable {
        brokers: settings.brokers.clone(),
        timeout_secs: settings.timeout.as_secs_f64(),
        source,
    };
    let metadata = consumer.fetch_metadata(Some(topic), settings.timeout).map_err(unreachable)?;
    let partitions: Vec<i32> = match metadata.topics().iter().find(|t| t.name() == topic) {
        Some(found) if found.error().is_none() => found.partitions().iter().map(|p| p.id()).collect(),
        found => {
            return Err(SourceError::UnknownTopic {
                topic: topic.to_string(),
                brokers: settings.brokers.clone(),
                detail: found.and_then(|t| t.error()).map(|e| format!("{e:?}")).unwrap_or_default(),
            });
        }
    };

    // Every partition from its first offset: a broker's low watermark is not
    // trusted (Tansu 0.6 has answered a batch's base offset for it, and the
    // records before it were skipped). Where retention has removed records,
    // the broker says the offset is out of range and auto.offset.reset moves
    // the consumer to the earliest one retained.
    let mut pending: HashMap<i32, PartitionRead> = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    let mut done = BTreeMap::new();
    for partition in partitions {
        let (_, high) = consumer.fetch_watermarks(topic, partition, settings.timeout).map_err(unreachable)?;
        let start = from.get(&partition).copied().unwrap_or(0);
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(start))
            .map_err(|source| SourceError::Kafka { topic: topic.to_string(), source })?;
        pending.insert(partition, PartitionRead::new(start, high));
    }
    let mut decoder = MessageDecoder::new(table, topic);
    consumer
        .assign(&assignment)
        .map_err(|source| SourceError::Kafka { topic: topic.to_string(), source })?;

    let mut last_event = Instant::now();
    while !pending.is_empty() {
        match consumer.poll(Duration::from_millis(100)) {
            None if last_event.elapsed() > settings.timeout => {
                let mut stalled: Vec<String> =
                    pending.iter().map(|(partition, read)| format!("{topic}/{partition} {read}")).collect();
                stalled.sort();
                return Err(SourceError::Stalled {
                    brokers: settings.brokers.clone(),
                    timeout_secs: settings.timeout.as_secs_f64(),
                    partitions: stalled.join(", "),
                });
            }
            None => {}
            Some(Ok(message)) => {
                last_event = Instant::now();
                if let Some(read) = pending.get_mut(&message.partition()) {
                    read.on_message(message.offset());
                }
                decoder.push(message.partition(), message.offset(), message.payload().unwrap_or_default());
                if decoder.is_full() {
                    on_messages(decoder.flush() as u64);
                }
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                last_event = Instant::now();
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
    Ok(TopicRead { read: decoder.finish(), next: done })
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
