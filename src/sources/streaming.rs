//! Event files and Kafka topics read while the rules run, so that no more
//! of them is in memory than the sort holds before it spills: a DataFusion
//! table whose partitions each read a share of the files, or one topic, on
//! a blocking thread. What each file or topic yielded besides rows – its
//! record count and rejects – goes to a [`ReadLog`] that the caller reads
//! once the outputs are written.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{Table, TableRead, kafka};
use crate::config::KafkaSettings;
use crate::sources::csv::{Input, ReadPath, Source, stream_file};

/// Batches a partition reads ahead of the plan consuming them.
const READ_AHEAD_BATCHES: usize = 4;

/// What every file read so far yielded besides rows, once per file (a plan
/// that scans a table twice reads its files twice).
#[derive(Debug, Clone, Default)]
pub struct ReadLog {
    files: Arc<Mutex<BTreeMap<(Table, String), TableRead>>>,
}

impl ReadLog {
    /// The reads logged, one per file, in table and file-name order.
    pub fn reads(&self) -> Vec<TableRead> {
        let files = std::mem::take(&mut *self.files.lock().expect("no panic while holding the lock"));
        files.into_values().collect()
    }

    fn record(&self, name: String, read: TableRead) {
        let mut files = self.files.lock().expect("no panic while holding the lock");
        files.entry((read.table, name)).or_insert(read);
    }
}

/// The files of `table` as a table of `partitions` partitions or fewer, each
/// reading its share of the files (balanced by size) when the plan runs.
/// `on_bytes` is called with each further number of bytes read.
pub fn csv_table(
    table: Table,
    inputs: &[Input],
    partitions: usize,
    log: &ReadLog,
    on_bytes: impl Fn(u64) + Clone + Send + Sync + 'static,
) -> Result<Arc<StreamingTable>, DataFusionError> {
    let mut by_size: Vec<(u64, String, &Input)> = inputs.iter().map(|input| (input.size(), input.name(), input)).collect();
    by_size.sort_by(|a, b| (b.0, &b.1).cmp(&(a.0, &a.1)));
    let mut shares: Vec<(u64, Vec<Input>)> = vec![(0, Vec::new()); partitions.clamp(1, inputs.len().max(1))];
    for (size, _, input) in by_size {
        let lightest = shares.iter_mut().min_by_key(|(load, _)| *load).expect("at least one share");
        lightest.0 += size;
        lightest.1.push(input.clone());
    }
    let on_bytes: Arc<dyn Fn(u64) + Send + Sync> = Arc::new(on_bytes);
    let readers = shares.into_iter().map(|(_, inputs)| Files { table, inputs, on_bytes: on_bytes.clone() });
    streaming_table(table, readers, log)
}

/// The topics of `table`, opened (each to be read whole, from its start),
/// as a table of one partition per topic, each reading its topic when the
/// plan runs. `on_messages` is called with each further number of messages
/// read.
pub fn kafka_table(
    table: Table,
    settings: &KafkaSettings,
    topics: Vec<kafka::OpenTopic>,
    log: &ReadLog,
    on_messages: impl Fn(u64) + Send + Sync + 'static,
) -> Result<Arc<StreamingTable>, DataFusionError> {
    let on_messages: Arc<dyn Fn(u64) + Send + Sync> = Arc::new(on_messages);
    let readers = topics.into_iter().map(|opened| Topic {
        table,
        settings: settings.clone(),
        topic: opened.topic().to_string(),
        opened: Mutex::new(Some(opened)),
        on_messages: on_messages.clone(),
    });
    streaming_table(table, readers, log)
}

/// A table of one partition per reader.
fn streaming_table(
    table: Table,
    readers: impl Iterator<Item = impl Reader + 'static>,
    log: &ReadLog,
) -> Result<Arc<StreamingTable>, DataFusionError> {
    let partitions = readers
        .map(|reader| {
            Arc::new(ReaderPartition { schema: table.schema(), reader: Arc::new(reader), log: log.clone() })
                as Arc<dyn PartitionStream>
        })
        .collect();
    Ok(Arc::new(StreamingTable::try_new(table.schema(), partitions)?))
}

/// What one partition of a streaming table reads, on a blocking thread.
trait Reader: std::fmt::Debug + Send + Sync {
    /// Reads, handing each batch of rows to `on_batch` until it breaks, and
    /// logs what each file or topic yielded besides rows in `log`.
    fn read(
        &self,
        log: &ReadLog,
        on_batch: &mut dyn FnMut(RecordBatch) -> ControlFlow<()>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

/// Some files of one table, read one after the other.
struct Files {
    table: Table,
    inputs: Vec<Input>,
    on_bytes: Arc<dyn Fn(u64) + Send + Sync>,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files").field("table", &self.table).field("inputs", &self.inputs).finish()
    }
}

impl Reader for Files {
    fn read(
        &self,
        log: &ReadLog,
        on_batch: &mut dyn FnMut(RecordBatch) -> ControlFlow<()>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        for input in &self.inputs {
            let read = stream_file(self.table, input, ReadPath::Fast, |bytes| (self.on_bytes)(bytes), &mut *on_batch)?;
            log.record(input.name(), read);
        }
        Ok(())
    }
}

/// One Kafka topic of one table, every partition from its start.
struct Topic {
    table: Table,
    settings: KafkaSettings,
    topic: String,
    /// Opened when the run starts, so that every topic's high-water marks
    /// are those of that moment and a broker lost later is met mid-read;
    /// taken by the first execution (a plan executed again opens it anew).
    opened: Mutex<Option<kafka::OpenTopic>>,
    on_messages: Arc<dyn Fn(u64) + Send + Sync>,
}

// By hand, and without the settings: they may hold a SASL password.
impl std::fmt::Debug for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topic").field("table", &self.table).field("topic", &self.topic).finish()
    }
}

impl Reader for Topic {
    fn read(
        &self,
        log: &ReadLog,
        on_batch: &mut dyn FnMut(RecordBatch) -> ControlFlow<()>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let opened = self.opened.lock().expect("no panic while holding the lock").take();
        let opened = match opened {
            Some(opened) => opened,
            None => kafka::open_topic(&self.settings, self.table, &self.topic, &BTreeMap::new())?,
        };
        let read = opened.read(&self.settings, |messages| (self.on_messages)(messages), on_batch)?;
        log.record(self.topic.clone(), read.read);
        Ok(())
    }
}

/// One partition of a streaming table: its reader run on a blocking thread
/// when the plan executes it, a few batches ahead of the plan.
#[derive(Debug)]
struct ReaderPartition {
    schema: SchemaRef,
    reader: Arc<dyn Reader>,
    log: ReadLog,
}

impl PartitionStream for ReaderPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (sender, receiver) = mpsc::channel(READ_AHEAD_BATCHES);
        let (reader, log) = (self.reader.clone(), self.log.clone());
        tokio::task::spawn_blocking(move || {
            let mut on_batch = |batch| match sender.blocking_send(Ok(batch)) {
                Ok(()) => ControlFlow::Continue(()),
                // The plan stopped reading: it failed or has what it needs.
                Err(_) => ControlFlow::Break(()),
            };
            if let Err(error) = reader.read(&log, &mut on_batch) {
                let _ = sender.blocking_send(Err(DataFusionError::External(error)));
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), ReceiverStream::new(receiver)))
    }
}
