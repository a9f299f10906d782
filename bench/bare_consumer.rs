//! The peer of `bench/kafka.sh`: a bare Rust consumer (an rdkafka
//! `BaseConsumer` loop, as pos-etl's) that reads every partition of the given
//! topics from offset 0 to the high-water mark seen at start, and only counts
//! the messages and their bytes: no decoding, no rules, no output. It stops
//! the way pos-etl does, past the mark seen at start *and* at the end of the
//! partition, because Tansu under-reports the mark.
//!
//! `cargo run --release --example bare_consumer -- BROKERS TOPIC,TOPIC…`

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pos_etl::sources::kafka::PartitionRead;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(brokers), Some(topics)) = (args.next(), args.next()) else {
        eprintln!("usage: bare_consumer BROKERS TOPIC[,TOPIC…]");
        std::process::exit(2);
    };
    let started = Instant::now();
    // One consumer per topic, topics in parallel, as pos-etl reads them.
    let readers: Vec<_> = topics
        .split(',')
        .map(|topic| {
            let (brokers, topic) = (brokers.clone(), topic.to_string());
            std::thread::spawn(move || read_topic(&brokers, &topic))
        })
        .collect();
    let (mut messages, mut bytes) = (0, 0);
    for reader in readers {
        let (m, b) = reader.join().expect("a reader panicked").unwrap_or_else(|error| {
            eprintln!("bare consumer: {error}");
            std::process::exit(1);
        });
        messages += m;
        bytes += b;
    }
    println!("bare consumer: {messages} messages, {bytes} bytes in {:.2} s", started.elapsed().as_secs_f64());
}

/// Reads every partition of `topic` from offset 0 to its end; returns the
/// messages and payload bytes read.
fn read_topic(brokers: &str, topic: &str) -> Result<(u64, u64), KafkaError> {
    let timeout = Duration::from_secs(30);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "bench-bare-consumer")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        // As pos-etl's consumer: Tansu holds every fetch this long. (Its
        // other two settings, fetch.queue.backoff.ms and
        // queued.max.messages.kbytes, only act when the reader is held
        // back, which a loop that only counts never is.)
        .set("fetch.wait.max.ms", "10")
        .create()?;
    // Per partition, how far the reading has got, by pos-etl's own rule.
    let mut pending: HashMap<i32, PartitionRead> = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        let (_, high) = consumer.fetch_watermarks(topic, partition.id(), timeout)?;
        assignment.add_partition_offset(topic, partition.id(), Offset::Offset(0))?;
        pending.insert(partition.id(), PartitionRead::new(0, high));
    }
    consumer.assign(&assignment)?;
    let (mut messages, mut bytes) = (0u64, 0u64);
    while !pending.is_empty() {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => {
                messages += 1;
                bytes += message.payload_len() as u64;
                if let Some(read) = pending.get_mut(&message.partition()) {
                    read.on_message(message.offset());
                }
            }
            // Without the consumer's position: `pos-etl produce` writes no
            // transaction markers, so the last record read is the end.
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                if pending.get_mut(&partition).is_some_and(|read| read.on_end(None)) {
                    pending.remove(&partition);
                }
            }
            Some(Err(KafkaError::MessageConsumption(_))) => {}
            Some(Err(error)) => return Err(error),
        }
    }
    Ok((messages, bytes))
}
