//! Input tables whose rows change between executions of one plan. `stream`
//! plans the rules once and runs them on every batch: its events and the
//! stock it carries in are [`Slot`]s, filled before each execution, where a
//! full run's inputs are fixed when the plan is made.

use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;

/// The rows a slot's table has until it is filled again.
#[derive(Debug, Clone)]
pub struct Slot {
    schema: SchemaRef,
    rows: Arc<Mutex<Vec<RecordBatch>>>,
}

impl Slot {
    /// An empty slot of `schema`.
    pub fn new(schema: SchemaRef) -> Slot {
        Slot { schema, rows: Arc::default() }
    }

    /// The slot as a table of `partitions` partitions, each scanning its
    /// share of the batches the slot holds when the plan is executed.
    pub fn table(&self, partitions: usize) -> Result<Arc<StreamingTable>> {
        let partitions = partitions.max(1);
        let streams = (0..partitions)
            .map(|index| Arc::new(SlotPartition { slot: self.clone(), index, of: partitions }) as Arc<dyn PartitionStream>)
            .collect();
        Ok(Arc::new(StreamingTable::try_new(self.schema.clone(), streams)?))
    }

    /// Gives the table `batches` as its rows, for the next execution.
    pub fn fill(&self, batches: Vec<RecordBatch>) {
        *self.rows.lock().expect("no panic while holding the lock") = batches;
    }
}

/// One partition of a slot's table: every `of`-th batch from `index`.
#[derive(Debug)]
struct SlotPartition {
    slot: Slot,
    index: usize,
    of: usize,
}

impl PartitionStream for SlotPartition {
    fn schema(&self) -> &SchemaRef {
        &self.slot.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let rows = self.slot.rows.lock().expect("no panic while holding the lock");
        let share: Vec<_> = rows.iter().skip(self.index).step_by(self.of).cloned().map(Ok).collect();
        Box::pin(RecordBatchStreamAdapter::new(self.slot.schema.clone(), futures::stream::iter(share)))
    }
}
