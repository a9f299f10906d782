//! Kafka as a destination, for `produce`: topic creation, producers with
//! idempotent delivery, and the JSON message forms of SPEC 1.2.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type, TimestampSecondType};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::FutureProducer;
use serde_json::{Map, Value, json};

use crate::config::KafkaSettings;
use crate::error::SinkError;

/// A producer with idempotent delivery: a retried send never duplicates a record.
pub fn producer(settings: &KafkaSettings) -> Result<FutureProducer, SinkError> {
    settings
        .client_config(&[
            ("enable.idempotence", "true"),
            ("linger.ms", "20"),
            ("queue.buffering.max.messages", "500000"),
        ])
        .create()
        .map_err(|source| kafka_error(&settings.brokers, source))
}

/// Creates the topics of `names` that do not exist yet, then waits until the
/// cluster's metadata shows every one of them (polling, up to the timeout).
pub async fn ensure_topics(
    settings: &KafkaSettings,
    names: &[String],
    partitions: i32,
    replication: i32,
) -> Result<(), SinkError> {
    let admin: AdminClient<DefaultClientContext> =
        settings.client_config(&[]).create().map_err(|source| kafka_error(&settings.brokers, source))?;
    let missing: Vec<&String> = {
        let existing = topic_names(&admin, settings)?;
        names.iter().filter(|name| !existing.contains(*name)).collect()
    };
    if missing.is_empty() {
        return Ok(());
    }
    let new_topics: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(replication)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(settings.timeout));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(|source| kafka_error(&settings.brokers, source))?;
    for result in results {
        if let Err((topic, code)) = result {
            if code != RDKafkaErrorCode::TopicAlreadyExists {
                return Err(SinkError::CreateTopic { topic, brokers: settings.brokers.clone(), code: format!("{code:?}") });
            }
        }
    }
    let deadline = Instant::now() + settings.timeout;
    loop {
        let existing = topic_names(&admin, settings)?;
        if missing.iter().all(|name| existing.contains(*name)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(SinkError::CreateTopic {
                topic: missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","),
                brokers: settings.brokers.clone(),
                code: "not visible in the cluster metadata after creation".to_string(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn topic_names(admin: &AdminClient<DefaultClientContext>, settings: &KafkaSettings) -> Result<HashSet<String>, SinkError> {
    let metadata = admin
        .inner()
        .fetch_metadata(None, settings.timeout)
        .map_err(|source| SinkError::Unreachable {
            brokers: settings.brokers.clone(),
            timeout_secs: settings.timeout.as_secs_f64(),
            source,
        })?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|topic| topic.error().is_none() && !topic.partitions().is_empty())
        .map(|topic| topic.name().to_string())
        .collect())
}

fn kafka_error(brokers: &str, source: rdkafka::error::KafkaError) -> SinkError {
    SinkError::Kafka { brokers: brokers.to_string(), source }
}

/// The JSON value of one cell, as the original producer wrote it: numbers as
/// numbers, times as `YYYY-MM-DD HH:MM:SS`, nulls as null.
fn cell(batch: &RecordBatch, column: usize, row: usize) -> Value {
    let array = batch.column(column);
    if array.is_null(row) {
        return Value::Null;
    }
    match array.data_type() {
        DataType::Int64 => json!(array.as_primitive::<Int64Type>().value(row)),
        DataType::Timestamp(_, _) => {
            let seconds = array.as_primitive::<TimestampSecondType>().value(row);
            let time = chrono::DateTime::from_timestamp(seconds, 0).expect("timestamps come from parsed dates");
            json!(time.naive_utc().format(crate::sinks::csv::TIMESTAMP_FORMAT).to_string())
        }
        _ => json!(array.as_string::<i32>().value(row)),
    }
}

/// A message key: the text of one cell (so that one item's, or one
/// transaction's, messages land in one partition, in order).
pub fn encode_key(batch: &RecordBatch, column: &str, row: usize) -> Vec<u8> {
    let index = batch.schema().index_of(column).expect("the key column is in the batch");
    match cell(batch, index, row) {
        Value::String(text) => text.into_bytes(),
        other => other.to_string().into_bytes(),
    }
}

/// A row-form message (SPEC 1.2): one object with the CSV column names.
pub fn encode_row(batch: &RecordBatch, row: usize, sent_time: f64) -> Vec<u8> {
    let mut object = Map::new();
    for (index, field) in batch.schema().fields().iter().enumerate() {
        object.insert(field.name().clone(), cell(batch, index, row));
    }
    object.insert("sent_time".to_string(), json!(sent_time));
    serde_json::to_vec(&object).expect("JSON of plain values")
}

/// A transaction-form message (SPEC 1.2) from change rows that share
/// trans_id, store_id, date_time and change_type_id: one object with `items`.
pub fn encode_transaction(batch: &RecordBatch, rows: &[usize], sent_time: f64) -> Vec<u8> {
    let schema = batch.schema();
    let index = |name: &str| schema.index_of(name).expect("change batches have the change columns");
    let first = rows[0];
    let items: Vec<Value> = rows
        .iter()
        .map(|&row| json!({"item_id": cell(batch, index("item_id"), row), "quantity": cell(batch, index("quantity"), row)}))
        .collect();
    let message = json!({
        "trans_id": cell(batch, index("trans_id"), first),
        "store_id": cell(batch, index("store_id"), first),
        "date_time": cell(batch, index("date_time"), first),
        "change_type_id": cell(batch, index("change_type_id"), first),
        "items": items,
        "sent_time": sent_time,
    });
    serde_json::to_vec(&message).expect("JSON of plain values")
}
