//! Event files read while the rules run, so that no more of them is in
//! memory than the sort holds before it spills: a DataFusion table whose
//! partitions each read a share of the files on a blocking thread. What each
//! file yielded besides rows – its record count and rejects – goes to a
//! [`ReadLog`] that the caller reads once the outputs are written.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{Table, TableRead};
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
    let streams = shares
        .into_iter()
        .map(|(_, inputs)| {
            Arc::new(FilesPartition {
                table,
                schema: table.schema(),
                inputs,
                log: log.clone(),
                on_bytes: Arc::new(on_bytes.clone()),
            }) as Arc<dyn PartitionStream>
        })
        .collect();
    Ok(Arc::new(StreamingTable::try_new(table.schema(), streams)?))
}

/// One partition: some files of one table, read one after the other.
struct FilesPartition {
    table: Table,
    schema: SchemaRef,
    inputs: Vec<Input>,
    log: ReadLog,
    on_bytes: Arc<dyn Fn(u64) + Send + Sync>,
}

impl std::fmt::Debug for FilesPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilesPartition").field("table", &self.table).field("inputs", &self.inputs).finish()
    }
}

impl PartitionStream for FilesPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (sender, receiver) = mpsc::channel(READ_AHEAD_BATCHES);
        let (table, inputs, log, on_bytes) =
            (self.table, self.inputs.clone(), self.log.clone(), self.on_bytes.clone());
        tokio::task::spawn_blocking(move || {
            for input in inputs {
                let on_batch = |batch| match sender.blocking_send(Ok(batch)) {
                    Ok(()) => ControlFlow::Continue(()),
                    // The plan stopped reading: it failed or has what it needs.
                    Err(_) => ControlFlow::Break(()),
                };
                match stream_file(table, &input, ReadPath::Fast, |bytes| on_bytes(bytes), on_batch) {
                    Ok(read) => log.record(input.name(), read),
                    Err(error) => {
                        let _ = sender.blocking_send(Err(DataFusionError::External(Box::new(error))));
                        return;
                    }
                }
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), ReceiverStream::new(receiver)))
    }
}
