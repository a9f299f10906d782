//! One computation, two outputs. DataFusion inlines a view into every query
//! that reads it, so `current_inventory`, read from `enriched`, would run the
//! whole sort and windows of the stock order a second time. Instead, once the
//! rules have defined `enriched`, the name is given to a [`Feed`]: a table
//! whose rows are the batches of `enriched` as they are written. A feed is
//! armed anew for each execution, so that a plan built once (`stream`'s)
//! can run once per batch.

use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::tree_node::TreeNode;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Batches buffered for the reading view at most: a slower reader holds the
/// writer back instead of letting memory grow.
const BUFFERED_BATCHES: usize = 16;

/// The receiver a fed table's next scan reads from.
type Armed = Arc<Mutex<Option<mpsc::Receiver<RecordBatch>>>>;

/// The writing end of a table fed by another stream.
#[derive(Debug)]
pub struct Feed {
    table: String,
    armed: Armed,
}

/// A table named `table` whose rows will be those of the stream passed to
/// [`Feed::tee`]. It can be scanned once per tee.
pub fn feed_table(table: &str, schema: SchemaRef) -> Result<(Arc<StreamingTable>, Feed)> {
    let armed = Armed::default();
    let partition = ChannelPartition { table: table.to_string(), schema: schema.clone(), receiver: armed.clone() };
    let provider = StreamingTable::try_new(schema, vec![Arc::new(partition)])?;
    Ok((Arc::new(provider), Feed { table: table.to_string(), armed }))
}

impl Feed {
    /// Whether `plan` scans the fed table.
    pub fn is_read_by(&self, plan: &LogicalPlan) -> bool {
        plan.exists(|node| {
            Ok(matches!(node, LogicalPlan::TableScan(scan) if scan.table_name.table() == self.table))
        })
        .expect("the closure never fails")
    }

    /// Gives the fed table's next scan a channel of its own, and returns its
    /// sending end for [`Feed::tee`]. Arm before executing the reader.
    pub fn arm(&self) -> mpsc::Sender<RecordBatch> {
        let (sender, receiver) = mpsc::channel(BUFFERED_BATCHES);
        *self.armed.lock().expect("no panic while holding the lock") = Some(receiver);
        sender
    }

    /// `stream`, whose batches also go to the fed table through `sender`
    /// (from [`Feed::arm`]). The reader of the table must be consumed
    /// concurrently with the returned stream.
    pub fn tee(sender: mpsc::Sender<RecordBatch>, stream: SendableRecordBatchStream) -> SendableRecordBatchStream {
        let schema = stream.schema();
        let teed = stream.then(move |batch| {
            let sender = sender.clone();
            async move {
                if let Ok(batch) = &batch {
                    // A reader that is gone has failed, and fails the run itself.
                    let _ = sender.send(batch.clone()).await;
                }
                batch
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(schema, teed))
    }
}

/// The reading end of a feed, as a table partition that can be executed once.
#[derive(Debug)]
struct ChannelPartition {
    table: String,
    schema: SchemaRef,
    receiver: Armed,
}

impl PartitionStream for ChannelPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let receiver = self.receiver.lock().expect("no panic while holding the lock").take();
        let Some(receiver) = receiver else {
            let error = DataFusionError::Execution(format!(
                "{} can be read only once by the views defined after it: they read the rows as they are written",
                self.table
            ));
            return Box::pin(RecordBatchStreamAdapter::new(
                self.schema.clone(),
                futures::stream::once(async move { Err(error) }),
            ));
        };
        let batches = ReceiverStream::new(receiver).map(Ok);
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batches))
    }
}
