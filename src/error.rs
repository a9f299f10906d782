//! Error types of each layer and the mapping from a failed run to the
//! process exit code and its one line on stderr. A bad record is not an
//! error but a [`Reject`], defined with the input formats.

use std::path::PathBuf;

use datafusion::error::DataFusionError;
pub use pos_etl_formats::csv::FileError;
pub use pos_etl_formats::{Reject, RejectReason};

/// A failure to read an input as a whole (a bad record is a [`Reject`], not an error).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A CSV input cannot be found or read as a whole.
    #[error(transparent)]
    File(#[from] FileError),
    /// An object store cannot be listed or read.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// The Kafka client could not be created.
    #[error("cannot create a Kafka client for {brokers} (check the -X and [kafka] settings)")]
    KafkaClient {
        /// The bootstrap brokers.
        brokers: String,
        /// librdkafka's message.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// No broker answered within the timeout.
    #[error("cannot reach Kafka brokers {brokers} within {timeout_secs} s (see --kafka-timeout)")]
    BrokerUnreachable {
        /// The bootstrap brokers.
        brokers: String,
        /// The timeout.
        timeout_secs: f64,
        /// librdkafka's message.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A topic does not exist.
    #[error("topic {topic} does not exist on {brokers} {detail}")]
    UnknownTopic {
        /// The topic.
        topic: String,
        /// The bootstrap brokers.
        brokers: String,
        /// The broker's error code.
        detail: String,
    },
    /// Partitions stopped delivering before reaching their end.
    #[error("no message from {brokers} for {timeout_secs} s while reading {partitions} (see --kafka-timeout)")]
    Stalled {
        /// The bootstrap brokers.
        brokers: String,
        /// The timeout.
        timeout_secs: f64,
        /// The partitions not yet read to their end, with positions.
        partitions: String,
    },
    /// An input file changed since an incremental run loaded it, other than by growing.
    #[error("{path} changed since an incremental run loaded it: {change}; restore it, or run without --incremental to load everything again")]
    FileChanged {
        /// The file.
        path: String,
        /// How it changed.
        change: String,
    },
    /// Consuming a topic failed.
    #[error("reading topic {topic} failed")]
    Kafka {
        /// The topic.
        topic: String,
        /// librdkafka's message.
        #[source]
        source: rdkafka::error::KafkaError,
    },
}

/// A failure to plan or run the SQL rules.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A SQL file failed to parse, plan or run.
    #[error("{file} failed")]
    Sql {
        /// The SQL file.
        file: String,
        /// DataFusion's message.
        #[source]
        source: DataFusionError,
    },
    /// The SQL directory cannot be read.
    #[error("cannot read SQL directory {path}")]
    SqlDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The SQL directory holds no `.sql` file.
    #[error("{0} holds no .sql file")]
    NoSqlFiles(PathBuf),
    /// The SQL files do not define a required output view.
    #[error("the SQL files define no view named {view}")]
    MissingView {
        /// The view.
        view: &'static str,
    },
    /// The output views could not be planned for execution.
    #[error("cannot start computing the outputs")]
    Start {
        /// DataFusion's message.
        #[source]
        source: DataFusionError,
    },
    /// An input table could not be registered.
    #[error("cannot register table {table}")]
    Register {
        /// The table.
        table: &'static str,
        /// DataFusion's message.
        #[source]
        source: DataFusionError,
    },
}

/// A failure to write an output.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Writing or renaming the output failed.
    #[error("cannot write {path}")]
    Write {
        /// The output.
        path: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An object store refused or failed a write.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// A Delta table could not be read, written or committed to.
    #[error("Delta table {table}: {action} it failed: {detail}")]
    Delta {
        /// The table, without credentials.
        table: String,
        /// What pos-etl was doing (`committing to`…).
        action: &'static str,
        /// What went wrong, secrets replaced by `***`.
        detail: String,
    },
    /// Computing the rows to write failed.
    #[error("computing {path} failed")]
    Compute {
        /// The output.
        path: String,
        /// DataFusion's message.
        #[source]
        source: DataFusionError,
    },
    /// A Kafka client failed.
    #[error("Kafka client for {brokers} failed")]
    Kafka {
        /// The bootstrap brokers.
        brokers: String,
        /// librdkafka's message.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// No broker answered within the timeout.
    #[error("cannot reach Kafka brokers {brokers} within {timeout_secs} s (see --kafka-timeout)")]
    Unreachable {
        /// The bootstrap brokers.
        brokers: String,
        /// The timeout.
        timeout_secs: f64,
        /// librdkafka's message.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A topic could not be created.
    #[error("cannot create topic {topic} on {brokers}: {code}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// The bootstrap brokers.
        brokers: String,
        /// The broker's answer.
        code: String,
    },
    /// A message was not delivered.
    #[error("delivery to {topic} failed")]
    Delivery {
        /// The topic.
        topic: String,
        /// librdkafka's message.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// Another run holds the output's lock.
    #[error("{path} is locked by another run ({holder}); gave up after {waited_secs:.1} s (see --lock-timeout)")]
    Locked {
        /// The lock file or object.
        path: String,
        /// What the holder wrote into the lock file.
        holder: String,
        /// How long this run waited.
        waited_secs: f64,
    },
    /// PostgreSQL refused or failed a step of the load.
    #[error("PostgreSQL: {action}: {}", postgres_message(cause))]
    Postgres {
        /// What pos-etl was doing, with the server (never its password) or table.
        action: String,
        /// The driver's error; its text is in the message, once (so not a `source`).
        cause: tokio_postgres::Error,
    },
}

/// A PostgreSQL error on one line: the server's message with its detail
/// and hint, or the driver's with its cause (a refused connection, a timeout).
fn postgres_message(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut text = db.message().to_string();
        if let Some(detail) = db.detail() {
            text += &format!(" ({detail})");
        }
        if let Some(hint) = db.hint() {
            text += &format!("; hint: {hint}");
        }
        return text;
    }
    match std::error::Error::source(error) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

/// More records were rejected than `--max-rejects` allows.
#[derive(Debug, thiserror::Error)]
#[error("{rejected} records rejected, more than --max-rejects {limit} (see {rejects}); {}", if *on_stdout {
    "the enriched rows had already gone to stdout, the other outputs are unchanged"
} else {
    "the previous outputs are unchanged"
})]
pub struct TooManyRejects {
    /// Records rejected.
    pub rejected: u64,
    /// The limit.
    pub limit: u64,
    /// Where the rejects were written.
    pub rejects: String,
    /// Whether the enriched rows went to stdout (and so could not be held back).
    pub on_stdout: bool,
}

/// The exit code for a failed run: 2 for bad usage or bad input over the
/// reject limit, 1 otherwise.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    let usage_or_input = |cause: &(dyn std::error::Error + 'static)| {
        cause.is::<TooManyRejects>() || cause.is::<crate::config::ConfigError>()
    };
    if error.chain().any(usage_or_input) { 2 } else { 1 }
}

/// The error and its causes on one line, each cause once. Libraries often
/// repeat their cause in their own message (librdkafka's "Meta data fetch
/// error: BrokerTransportFailure (…)" over "BrokerTransportFailure (…)",
/// DataFusion's "External error: …" over the error itself), so a cause whose
/// message holds a deeper cause's text is left out, and the deeper one says it.
pub fn one_line(error: &anyhow::Error) -> String {
    let messages: Vec<String> = error.chain().map(|cause| cause.to_string().trim().to_string()).collect();
    // The text of a message past a leading "label: ", which a wrapper may quote.
    let core = |message: &str| message.split_once(": ").map_or(message, |(_, rest)| rest).to_string();
    let repeats_a_deeper_cause = |index: usize| {
        messages[index + 1..].iter().any(|deeper| {
            let deeper_core = core(deeper);
            messages[index].contains(deeper.as_str()) || (deeper_core.len() >= 8 && messages[index].contains(&deeper_core))
        })
    };
    let kept: Vec<&str> = messages
        .iter()
        .enumerate()
        .filter(|(index, message)| !message.is_empty() && (*index == 0 || !repeats_a_deeper_cause(*index)))
        .map(|(_, message)| message.as_str())
        .collect();
    kept.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Message(String, #[source] Option<Box<Message>>);

    fn chain(messages: &[&str]) -> anyhow::Error {
        let error = messages
            .iter()
            .rev()
            .fold(None, |source, message| Some(Message(message.to_string(), source.map(Box::new))))
            .expect("at least one message");
        error.into()
    }

    #[test]
    fn each_cause_is_told_once() {
        let cases = [
            (
                vec![
                    "cannot reach Kafka brokers k:1 within 1 s",
                    "Meta data fetch error: BrokerTransportFailure (Local: Broker transport failure)",
                    "BrokerTransportFailure (Local: Broker transport failure)",
                ],
                "cannot reach Kafka brokers k:1 within 1 s: BrokerTransportFailure (Local: Broker transport failure)",
            ),
            (
                vec!["computing e.csv failed", "External error: disk full", "disk full"],
                "computing e.csv failed: disk full",
            ),
            (vec!["cannot write e.csv", "No space left on device (os error 28)"], "cannot write e.csv: No space left on device (os error 28)"),
            (
                vec![
                    "sql/020.sql failed",
                    "SQL error: ParserError(\"Expected: ), found: DESC at Line: 20, Column: 62\")",
                    "sql parser error: Expected: ), found: DESC at Line: 20, Column: 62",
                ],
                "sql/020.sql failed: sql parser error: Expected: ), found: DESC at Line: 20, Column: 62",
            ),
        ];
        for (messages, expected) in cases {
            assert_eq!(one_line(&chain(&messages)), expected);
        }
    }
}
