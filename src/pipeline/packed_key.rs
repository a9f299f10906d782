//! Leading sort keys packed into one column. DataFusion sorts and merges by
//! a single primitive column directly, comparing values, but by several
//! through the row format: every key of every row encoded into bytes at
//! each merge and compared with `memcmp`, a quarter of a 30 million row
//! run's time (see bench/README.md). Up to four non-null 64-bit keys (the
//! stock order's store, item bucket, item and time) fit in one 256-bit
//! integer whose order is theirs: [`PackExec`] replaces those columns with
//! it before the sort and puts them back, as they were, after it.

use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Decimal256Array, Int64Array, RecordBatch, make_array};
use arrow::buffer::ScalarBuffer;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, i256};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{EquivalenceProperties, LexOrdering, Partitioning, PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties, SendableRecordBatchStream,
};
use futures::StreamExt;

/// The most keys one packed key holds: four 64-bit words.
const WORDS: usize = 4;
/// Flips a signed word's order into an unsigned one, and back.
const SIGN: u64 = 1 << 63;

/// A leading sort key that can be packed: its column and direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackedColumn {
    /// The column's index in the sort's input.
    index: usize,
    /// Whether it sorts descending.
    descending: bool,
    /// Whether its values are unsigned.
    unsigned: bool,
}

/// The leading `keys` that can be packed, at most four: plain columns of
/// non-null 64-bit integers, times, dates or durations (a null has no place
/// in a word, and `nulls_first` could not be kept).
pub fn packable(keys: &[PhysicalSortExpr], schema: &Schema) -> Vec<PackedColumn> {
    keys.iter()
        .map_while(|key| {
            let column = key.expr.downcast_ref::<Column>()?;
            let field = schema.field(column.index());
            let unsigned = match field.data_type() {
                DataType::UInt64 => true,
                DataType::Int64 | DataType::Timestamp(..) | DataType::Date64 | DataType::Duration(_) => false,
                _ => return None,
            };
            (!field.is_nullable()).then_some(PackedColumn { index: column.index(), descending: key.options.descending, unsigned })
        })
        .take(WORDS)
        .collect()
}

/// `plan` with every merge of sorted partitions whose keys can all be packed
/// (two to four of them) done by the packed key: each partition's rows
/// packed, merged by the key, and unpacked.
pub fn merge_by_packed_keys(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let Some(merge) = node.downcast_ref::<SortPreservingMergeExec>() else {
            return Ok(Transformed::no(node));
        };
        let packed = packable(merge.expr(), &merge.input().schema());
        if packed.len() < 2 || packed.len() < merge.expr().len() {
            return Ok(Transformed::no(node));
        }
        let pack = PackExec::pack(merge.input().clone(), packed);
        let merged = SortPreservingMergeExec::new(PackExec::by_key(), Arc::new(pack.clone())).with_fetch(merge.fetch());
        Ok(Transformed::yes(Arc::new(PackExec::unpack(Arc::new(merged), &pack)) as Arc<dyn ExecutionPlan>))
    })
    .map(|transformed| transformed.data)
}

/// The packed key's type: a 256-bit integer (the precision is never checked).
const KEY_TYPE: DataType = DataType::Decimal256(76, 0);

/// The name of the packed key's column.
const PACKED_KEY: &str = "packed_sort_key";

/// Which way a [`PackExec`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Replaces the columns with the key, first.
    Pack,
    /// Puts the columns back where they were, from the key.
    Unpack,
}

/// Packs `columns` of each batch into one key column (the first of its
/// output, the other columns after it in their order), or unpacks them.
#[derive(Debug, Clone)]
pub struct PackExec {
    input: Arc<dyn ExecutionPlan>,
    packing: Arc<Packing>,
    properties: Arc<PlanProperties>,
}

/// What a [`PackExec`] does to each batch.
#[derive(Debug)]
struct Packing {
    columns: Vec<PackedColumn>,
    direction: Direction,
    /// The schema with the columns unpacked.
    unpacked: SchemaRef,
    /// The schema of what it gives.
    output: SchemaRef,
}

impl PackExec {
    /// `input`'s `columns` packed into one key, the column [`PackExec::by_key`] orders by.
    pub fn pack(input: Arc<dyn ExecutionPlan>, columns: Vec<PackedColumn>) -> Self {
        let unpacked = input.schema();
        let mut fields = vec![Arc::new(Field::new(PACKED_KEY, KEY_TYPE, false))];
        fields.extend(unpacked.fields().iter().enumerate().filter(|(index, _)| !is_packed(&columns, *index)).map(|(_, field)| field.clone()));
        let output = Arc::new(Schema::new_with_metadata(fields, unpacked.metadata().clone()));
        Self::new(input, Packing { columns, direction: Direction::Pack, unpacked, output })
    }

    /// The columns a [`PackExec::pack`] packed, back in their places.
    pub fn unpack(input: Arc<dyn ExecutionPlan>, packed: &PackExec) -> Self {
        let Packing { columns, unpacked, .. } = packed.packing.as_ref();
        let packing = Packing { columns: columns.clone(), direction: Direction::Unpack, unpacked: unpacked.clone(), output: unpacked.clone() };
        Self::new(input, packing)
    }

    fn new(input: Arc<dyn ExecutionPlan>, packing: Packing) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(packing.output.clone()),
            // The input's partitioning names columns this moves.
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count()),
            input.pipeline_behavior(),
            input.boundedness(),
        );
        PackExec { input, packing: Arc::new(packing), properties: Arc::new(properties) }
    }

    /// The packed key, ascending: sorting by it sorts by the packed columns.
    pub fn by_key() -> LexOrdering {
        LexOrdering::new([PhysicalSortExpr::new_default(Arc::new(Column::new(PACKED_KEY, 0)))]).expect("one key")
    }
}

impl Packing {
    /// `batch` with its columns packed, or unpacked.
    fn convert(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let columns = match self.direction {
            Direction::Pack => {
                let mut columns = vec![pack(&self.columns, &batch)];
                columns.extend(batch.columns().iter().enumerate().filter(|(index, _)| !is_packed(&self.columns, *index)).map(|(_, c)| c.clone()));
                columns
            }
            Direction::Unpack => {
                let mut unpacked = unpack(&self.columns, batch.column(0).as_primitive(), &self.unpacked)?.into_iter();
                let mut others = batch.columns()[1..].iter().cloned();
                let mut columns: Vec<Option<ArrayRef>> = vec![None; self.unpacked.fields().len()];
                for column in &self.columns {
                    columns[column.index] = unpacked.next();
                }
                columns
                    .into_iter()
                    .map(|column| column.or_else(|| others.next()))
                    .collect::<Option<Vec<_>>>()
                    .expect("a column for every field")
            }
        };
        Ok(RecordBatch::try_new(self.output.clone(), columns)?)
    }
}

/// Whether the column at `index` is one of `columns`.
fn is_packed(columns: &[PackedColumn], index: usize) -> bool {
    columns.iter().any(|column| column.index == index)
}

/// One key per row of `batch`: the packed columns' words, most significant
/// first, each ordered as an unsigned number, so that the keys' order is
/// the columns' lexicographic order.
fn pack(columns: &[PackedColumn], batch: &RecordBatch) -> ArrayRef {
    let values: Vec<ScalarBuffer<i64>> = columns.iter().map(|column| bits(batch.column(column.index))).collect();
    let keys = (0..batch.num_rows()).map(|row| {
        let mut words = [0u64; WORDS];
        for (word, (column, values)) in words.iter_mut().zip(columns.iter().zip(&values)) {
            *word = column.word(values[row]);
        }
        // i256 compares its top word signed: its sign bit flipped back.
        let high = (((words[0] ^ SIGN) as i64 as i128) << 64) | words[1] as i128;
        let low = ((words[2] as u128) << 64) | words[3] as u128;
        i256::from_parts(low, high)
    });
    let keys = Decimal256Array::from_iter_values(keys).with_precision_and_scale(76, 0).expect("76 digits, none after the point");
    Arc::new(keys)
}

/// The packed columns of `keys`, with the types `schema` gives them.
fn unpack(columns: &[PackedColumn], keys: &Decimal256Array, schema: &Schema) -> Result<Vec<ArrayRef>> {
    let word = |key: i256, place: usize| -> u64 {
        let (low, high) = key.to_parts();
        match place {
            0 => ((high >> 64) as u64) ^ SIGN,
            1 => high as u64,
            2 => (low >> 64) as u64,
            _ => low as u64,
        }
    };
    columns
        .iter()
        .enumerate()
        .map(|(place, column)| {
            let values = Int64Array::from_iter_values(keys.values().iter().map(|key| column.value(word(*key, place))));
            let data = values.into_data().into_builder().data_type(schema.field(column.index).data_type().clone());
            Ok(make_array(data.build()?))
        })
        .collect()
}

/// A column of a 64-bit type: its values as the bits they are stored in.
fn bits(column: &ArrayRef) -> ScalarBuffer<i64> {
    let data = column.to_data();
    ScalarBuffer::new(data.buffers()[0].clone(), data.offset(), data.len())
}

impl PackedColumn {
    /// `value`'s word: ordered as an unsigned number as the column orders it.
    fn word(&self, value: i64) -> u64 {
        let word = match self.unsigned {
            true => value as u64,
            false => value as u64 ^ SIGN,
        };
        if self.descending { !word } else { word }
    }

    /// The value a [`PackedColumn::word`] came from.
    fn value(&self, word: u64) -> i64 {
        let word = if self.descending { !word } else { word };
        match self.unsigned {
            true => word as i64,
            false => (word ^ SIGN) as i64,
        }
    }
}

impl DisplayAs for PackExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let Packing { columns, direction, unpacked, .. } = self.packing.as_ref();
        let names: Vec<&str> = columns.iter().map(|column| unpacked.field(column.index).name().as_str()).collect();
        match direction {
            Direction::Pack => write!(f, "PackExec: [{}] into {PACKED_KEY}", names.join(", ")),
            Direction::Unpack => write!(f, "PackExec: [{}] from {PACKED_KEY}", names.join(", ")),
        }
    }
}

impl ExecutionPlan for PackExec {
    fn name(&self) -> &str {
        "PackExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    /// The columns it moves are not expressions.
    fn apply_expressions(&self, _: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(PackExec { input: children.swap_remove(0), packing: self.packing.clone(), properties: self.properties.clone() }))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let packing = self.packing.clone();
        let batches = input.map(move |batch| packing.convert(batch?));
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema(), batches)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{TimestampMillisecondArray, UInt64Array};
    use arrow::compute::{SortColumn, SortOptions, lexsort_to_indices, sort_to_indices, take_record_batch};
    use arrow::datatypes::TimeUnit;

    /// Rows of few values, extremes among them, so that each key decides
    /// some comparisons and ties on the first keys are common.
    fn batch(rows: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("text", DataType::Utf8, true),
            Field::new("signed", DataType::Int64, false),
            Field::new("unsigned", DataType::UInt64, false),
            Field::new("time", DataType::Timestamp(TimeUnit::Millisecond, Some("+01:00".into())), false),
            Field::new("last", DataType::Int64, false),
        ]));
        let mut state = 7u64;
        let mut next = |range: usize| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as usize % range
        };
        let signed = [i64::MIN, -2, -1, 0, 1, i64::MAX];
        let unsigned = [0, 1, 1 << 63, u64::MAX];
        let columns: Vec<ArrayRef> = vec![
            Arc::new(arrow::array::StringArray::from_iter((0..rows).map(|row| (row % 3 > 0).then(|| row.to_string())))),
            Arc::new(Int64Array::from_iter_values((0..rows).map(|_| signed[next(6)]))),
            Arc::new(UInt64Array::from_iter_values((0..rows).map(|_| unsigned[next(4)]))),
            Arc::new(TimestampMillisecondArray::from_iter_values((0..rows).map(|_| signed[next(6)])).with_timezone("+01:00")),
            Arc::new(Int64Array::from_iter_values((0..rows).map(|_| signed[next(6)]))),
        ];
        RecordBatch::try_new(schema, columns).unwrap()
    }

    #[test]
    fn the_packed_key_sorts_as_its_columns_and_unpacks_to_them() {
        let batch = batch(2_000);
        for descending in [[false, false, false, false], [true, false, true, false], [false, true, false, true]] {
            let columns: Vec<PackedColumn> = (1..5)
                .zip(descending)
                .map(|(index, descending)| PackedColumn { index, descending, unsigned: index == 2 })
                .collect();
            let keys = pack(&columns, &batch);
            let by_key = take_record_batch(&batch, &sort_to_indices(&keys, None, None).unwrap()).unwrap();
            let sort_columns: Vec<SortColumn> = columns
                .iter()
                .map(|column| SortColumn {
                    values: batch.column(column.index).clone(),
                    options: Some(SortOptions { descending: column.descending, nulls_first: false }),
                })
                .collect();
            let by_columns = take_record_batch(&batch, &lexsort_to_indices(&sort_columns, None).unwrap()).unwrap();
            // Rows equal in every key may come in either order: the keys compared.
            for column in &columns {
                assert_eq!(by_key.column(column.index), by_columns.column(column.index), "{descending:?}");
            }
            let unpacked = unpack(&columns, keys.as_primitive(), &batch.schema()).unwrap();
            for (column, values) in columns.iter().zip(unpacked) {
                assert_eq!(&values, batch.column(column.index));
            }
        }
    }

    #[test]
    fn only_leading_non_null_64_bit_keys_are_packed() {
        let schema = batch(1).schema();
        let nullable = Schema::new(vec![Field::new("signed", DataType::Int64, true)]);
        let key = |index: usize| PhysicalSortExpr::new_default(Arc::new(Column::new("c", index)));
        let indices = |keys: &[PhysicalSortExpr], schema: &Schema| -> Vec<usize> {
            packable(keys, schema).iter().map(|column| column.index).collect()
        };
        assert_eq!(indices(&[key(1), key(2), key(3), key(4)], &schema), [1, 2, 3, 4]);
        assert_eq!(indices(&[key(4), key(1), key(2), key(3), key(4)], &schema), [4, 1, 2, 3], "at most four");
        assert_eq!(indices(&[key(1), key(0), key(2)], &schema), [1], "up to the text");
        assert!(indices(&[key(0)], &nullable).is_empty(), "a nullable key");
    }

    #[tokio::test]
    async fn a_merge_by_the_packed_key_gives_the_rows_of_the_merge() {
        use datafusion::datasource::MemTable;
        use datafusion::physical_plan::{collect, displayable};
        use datafusion::prelude::{SessionConfig, SessionContext};

        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2).with_batch_size(100));
        let whole = batch(1_000);
        let partitions = vec![vec![whole.slice(0, 600)], vec![whole.slice(600, 400)]];
        ctx.register_table("t", Arc::new(MemTable::try_new(whole.schema(), partitions).unwrap())).unwrap();
        let sql = "SELECT * FROM t ORDER BY signed DESC, unsigned, time";
        let plain = ctx.sql(sql).await.unwrap().create_physical_plan().await.unwrap();
        let packed = merge_by_packed_keys(plain.clone()).unwrap();
        let plan = displayable(packed.as_ref()).indent(true).to_string();
        assert!(plan.contains("SortPreservingMergeExec: [packed_sort_key@0 ASC"), "{plan}");
        let rows = |batches: &[RecordBatch]| arrow::util::pretty::pretty_format_batches(batches).unwrap().to_string();
        let keys = |text: String| text.lines().map(|line| line.split('|').skip(2).take(3).collect::<Vec<_>>().join("|")).collect::<Vec<_>>();
        // Rows equal in the keys may come in either order: the keys compared.
        let expected = keys(rows(&collect(plain, ctx.task_ctx()).await.unwrap()));
        assert_eq!(keys(rows(&collect(packed, ctx.task_ctx()).await.unwrap())), expected);
    }
}
