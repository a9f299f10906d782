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

/// Rows per batch a slot hands out (DataFusion's batch size). A slot is
/// often filled with one batch of everything (a first incremental run's
/// whole backlog): whole, it would go to one partition, and a sort would
/// have to hold it in one piece, beyond any memory limit.
pub const SLICE_ROWS: usize = 8192;

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

    /// Gives the table `batches` as its rows, for the next execution, in
    /// slices of [`SLICE_ROWS`].
    pub fn fill(&self, batches: Vec<RecordBatch>) {
        let slices = batches.iter().flat_map(|batch| {
            (0..batch.num_rows()).step_by(SLICE_ROWS).map(|start| batch.slice(start, SLICE_ROWS.min(batch.num_rows() - start)))
        });
        *self.rows.lock().expect("no panic while holding the lock") = slices.collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::prelude::SessionContext;
    use futures::TryStreamExt;

    #[tokio::test]
    async fn one_big_fill_is_shared_by_every_partition_in_slices() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let rows = 3 * SLICE_ROWS + 5;
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from_iter_values(0..rows as i64))]).unwrap();
        let slot = Slot::new(schema);
        slot.fill(vec![batch]);
        let ctx = SessionContext::new().task_ctx();
        let mut counts = Vec::new();
        for index in 0..2 {
            let partition = SlotPartition { slot: slot.clone(), index, of: 2 };
            let batches: Vec<RecordBatch> = partition.execute(ctx.clone()).try_collect().await.unwrap();
            assert!(batches.iter().all(|batch| batch.num_rows() <= SLICE_ROWS));
            counts.push(batches.iter().map(RecordBatch::num_rows).sum::<usize>());
        }
        assert_eq!(counts, [2 * SLICE_ROWS, SLICE_ROWS + 5]);
    }
}
