//! Functions pos-etl adds to SQL. DataFusion evaluates a window over a
//! stream one row at a time, and its built-in RANK, SUM and LAST_VALUE pay
//! for generality there (values copied out of the arrays for every row); the
//! two window functions here read the arrays in place, and the stock
//! timeline's windows take a third of the CPU time they took as RANK, SUM and
//! LAST_VALUE. `is_duplicate` counts the records the rules drop as sent
//! again, where they drop them. The rules that call them stay in the SQL files.

use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, downcast_primitive_array};
use arrow::datatypes::{ArrowNativeTypeOp, DataType, Field, FieldRef, Int64Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, LimitEffect, PartitionEvaluator, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility, WindowUDF, WindowUDFImpl,
    function::{PartitionEvaluatorArgs, WindowUDFFieldArgs},
};
use datafusion::physical_expr::PhysicalExpr;

/// Every window function of this module, to register in a session.
pub fn window_functions() -> Vec<WindowUDF> {
    vec![
        // `repeats_previous(a, b, ...)`: true when the row holds the same
        // values (NULL the same as NULL) in every argument as the row before
        // it in its window, false on the first row. Listing every ordered
        // column finds the records sent twice.
        WindowUDF::from(RowWiseFunction {
            name: "repeats_previous",
            signature: Signature::variadic_any(Volatility::Immutable),
            int64_args: 0,
            output: Field::new("repeats_previous", DataType::Boolean, false),
            evaluator: || Box::new(RepeatsPreviousEvaluator),
        }),
        // `stock_level(change, count, key, ...)`: the last non-NULL `count`
        // of the window so far plus every `change` after it (a NULL change
        // counts as 0); NULL before the first count. A row whose keys differ
        // from the row before's starts again, as a window of its own would:
        // one window partition can then hold many stores' and items' stock
        // (each partition costs more than a few rows, see the rules).
        WindowUDF::from(RowWiseFunction {
            name: "stock_level",
            signature: Signature::user_defined(Volatility::Immutable),
            int64_args: 2,
            output: Field::new("stock_level", DataType::Int64, true),
            evaluator: || Box::new(StockLevelEvaluator { level: None }),
        }),
    ]
}

/// The name of [`DuplicateCounter`] in SQL.
pub const IS_DUPLICATE: &str = "is_duplicate";

/// `is_duplicate(flag)`: `flag` itself, and every row where it is true is
/// counted as a duplicate removed in the run's summary. The rules drop the
/// records sent again with `WHERE NOT is_duplicate(...)`, so the count is
/// of the rows dropped, whatever a user's rules do besides.
#[derive(Debug)]
pub struct DuplicateCounter {
    signature: Signature,
    /// Where the count goes; `None` evaluates the flag without counting.
    count: Option<Arc<AtomicU64>>,
}

impl DuplicateCounter {
    /// The function, counting into `count` (or not at all).
    pub fn udf(count: Option<Arc<AtomicU64>>) -> ScalarUDF {
        // Volatile: evaluated once per row where the rules call it, never
        // moved or merged by the optimizer.
        let signature = Signature::exact(vec![DataType::Boolean], Volatility::Volatile);
        ScalarUDF::from(DuplicateCounter { signature, count })
    }
}

impl PartialEq for DuplicateCounter {
    fn eq(&self, other: &Self) -> bool {
        match (&self.count, &other.count) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (a, b) => a.is_none() && b.is_none(),
        }
    }
}

impl Eq for DuplicateCounter {}

impl Hash for DuplicateCounter {
    fn hash<H: Hasher>(&self, state: &mut H) {
        IS_DUPLICATE.hash(state);
        self.count.as_ref().map(Arc::as_ptr).hash(state);
    }
}

impl ScalarUDFImpl for DuplicateCounter {
    fn name(&self) -> &str {
        IS_DUPLICATE
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [flag] = <[ColumnarValue; 1]>::try_from(args.args)
            .map_err(|_| datafusion::error::DataFusionError::Plan(format!("{IS_DUPLICATE} takes one argument")))?;
        if let Some(count) = &self.count {
            let duplicates = match &flag {
                ColumnarValue::Array(array) => array.as_boolean().true_count(),
                ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))) => args.number_rows,
                ColumnarValue::Scalar(_) => 0,
            };
            count.fetch_add(duplicates as u64, Ordering::Relaxed);
        }
        Ok(flag)
    }
}

/// A window function whose value on a row depends on that row and the rows
/// before it only, so it runs on a stream in bounded memory.
#[derive(Debug)]
struct RowWiseFunction {
    name: &'static str,
    signature: Signature,
    /// With a user-defined signature: how many arguments it takes at least,
    /// cast to Int64; the rest are taken as they are.
    int64_args: usize,
    /// The type and nullability of its values (the name is the call's).
    output: Field,
    /// A fresh evaluator, for each window partition.
    evaluator: fn() -> Box<dyn PartitionEvaluator>,
}

// DataFusion compares functions to compare plans; the name tells them apart.
impl PartialEq for RowWiseFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for RowWiseFunction {}

impl Hash for RowWiseFunction {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl WindowUDFImpl for RowWiseFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn partition_evaluator(&self, _args: PartitionEvaluatorArgs) -> Result<Box<dyn PartitionEvaluator>> {
        Ok((self.evaluator)())
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() < self.int64_args {
            return Err(datafusion::error::DataFusionError::Plan(format!(
                "{} takes at least {} arguments",
                self.name, self.int64_args
            )));
        }
        let int64 = std::iter::repeat_n(DataType::Int64, self.int64_args);
        Ok(int64.chain(arg_types[self.int64_args..].iter().cloned()).collect())
    }

    fn field(&self, field_args: WindowUDFFieldArgs) -> Result<FieldRef> {
        Ok(Arc::new(self.output.clone().with_name(field_args.name())))
    }

    fn limit_effect(&self, _args: &[Arc<dyn PhysicalExpr>]) -> LimitEffect {
        LimitEffect::None
    }
}

/// Evaluates `repeats_previous` on one window partition.
#[derive(Debug)]
struct RepeatsPreviousEvaluator;

impl PartitionEvaluator for RepeatsPreviousEvaluator {
    fn is_causal(&self) -> bool {
        true
    }

    fn supports_bounded_execution(&self) -> bool {
        true
    }

    /// The row and the one before it: asking for both keeps the previous row
    /// in memory when a window's rows arrive in several batches.
    fn get_range(&self, idx: usize, _n_rows: usize) -> Result<Range<usize>> {
        Ok(idx.saturating_sub(1)..idx + 1)
    }

    fn evaluate(&mut self, values: &[ArrayRef], range: &Range<usize>) -> Result<ScalarValue> {
        let row = range.end - 1;
        let repeats = range.start < row && all_equal_at(values, row - 1, row)?;
        Ok(ScalarValue::Boolean(Some(repeats)))
    }

    fn evaluate_all(&mut self, values: &[ArrayRef], num_rows: usize) -> Result<ArrayRef> {
        let repeats = (0..num_rows)
            .map(|row| Ok(row > 0 && all_equal_at(values, row - 1, row)?))
            .collect::<Result<BooleanArray>>()?;
        Ok(Arc::new(repeats))
    }
}

/// Whether rows `a` and `b` hold the same value in every column, NULL the
/// same as NULL.
fn all_equal_at(columns: &[ArrayRef], a: usize, b: usize) -> Result<bool> {
    for column in columns {
        if !equal_at(column.as_ref(), a, b)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether rows `a` and `b` of `column` hold the same value, as the sort
/// orders them: NULL the same as NULL, floats by their total order.
fn equal_at(column: &dyn Array, a: usize, b: usize) -> Result<bool> {
    match (column.is_valid(a), column.is_valid(b)) {
        (false, false) => return Ok(true),
        (true, true) => {}
        _ => return Ok(false),
    }
    let equal = downcast_primitive_array!(
        column => column.value(a).is_eq(column.value(b)),
        DataType::Utf8 => column.as_string::<i32>().value(a) == column.as_string::<i32>().value(b),
        DataType::LargeUtf8 => column.as_string::<i64>().value(a) == column.as_string::<i64>().value(b),
        DataType::Utf8View => column.as_string_view().value(a) == column.as_string_view().value(b),
        _ => ScalarValue::try_from_array(column, a)? == ScalarValue::try_from_array(column, b)?,
    );
    Ok(equal)
}

/// Evaluates `stock_level` on one window partition.
#[derive(Debug)]
struct StockLevelEvaluator {
    /// The level after the rows evaluated so far.
    level: Option<i64>,
}

impl StockLevelEvaluator {
    /// Moves the level past `row` of the (change, count, keys...) columns,
    /// from no level if `row` starts the window or holds other keys than
    /// the row before (`previous`).
    fn advance(&mut self, values: &[ArrayRef], previous: Option<usize>, row: usize) -> Result<Option<i64>> {
        let same_keys = match previous {
            Some(previous) => all_equal_at(&values[2..], previous, row)?,
            None => false,
        };
        if !same_keys {
            self.level = None;
        }
        let value_at = |column: &ArrayRef| {
            let column = column.as_primitive::<Int64Type>();
            column.is_valid(row).then(|| column.value(row))
        };
        self.level = match value_at(&values[1]) {
            Some(count) => Some(count),
            // Quantities are less than 2^31 either way (SPEC 1.1), so no real
            // stock comes near the bounds; at them it stops, never wraps.
            None => self.level.map(|level| level.saturating_add(value_at(&values[0]).unwrap_or(0))),
        };
        Ok(self.level)
    }
}

impl PartitionEvaluator for StockLevelEvaluator {
    fn is_causal(&self) -> bool {
        true
    }

    fn supports_bounded_execution(&self) -> bool {
        true
    }

    /// The row and the one before it, whose keys it is compared with.
    fn get_range(&self, idx: usize, _n_rows: usize) -> Result<Range<usize>> {
        Ok(idx.saturating_sub(1)..idx + 1)
    }

    fn evaluate(&mut self, values: &[ArrayRef], range: &Range<usize>) -> Result<ScalarValue> {
        let row = range.end - 1;
        Ok(ScalarValue::Int64(self.advance(values, (range.start < row).then(|| row - 1), row)?))
    }

    fn evaluate_all(&mut self, values: &[ArrayRef], num_rows: usize) -> Result<ArrayRef> {
        let levels = (0..num_rows).map(|row| self.advance(values, row.checked_sub(1), row)).collect::<Result<Int64Array>>()?;
        Ok(Arc::new(levels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringArray;
    use arrow::record_batch::RecordBatch;
    use datafusion::catalog::MemTable;
    use datafusion::prelude::{SessionConfig, SessionContext};

    /// Store, time, trans_id, change, count: store 1 has a record sent three
    /// times and one sent twice with a NULL trans_id; store 2 starts with
    /// changes before its first count.
    fn events() -> RecordBatch {
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            Field::new("store", DataType::Int64, false),
            Field::new("t", DataType::Int64, false),
            Field::new("trans_id", DataType::Utf8, true),
            Field::new("change", DataType::Int64, true),
            Field::new("count", DataType::Int64, true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2])),
            Arc::new(Int64Array::from(vec![1, 2, 2, 2, 3, 4, 4, 1, 2, 3, 4])),
            Arc::new(StringArray::from(vec![
                None,
                Some("a"),
                Some("a"),
                Some("a"),
                Some("b"),
                None,
                None,
                Some("c"),
                Some("d"),
                None,
                Some("e"),
            ])),
            Arc::new(Int64Array::from(vec![
                Some(0),
                Some(-2),
                Some(-2),
                Some(-2),
                Some(5),
                None,
                None,
                Some(-1),
                Some(-1),
                Some(0),
                Some(3),
            ])),
            Arc::new(Int64Array::from(vec![
                Some(10),
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                Some(7),
                None,
            ])),
        ];
        RecordBatch::try_new(schema, columns).unwrap()
    }

    /// Runs both functions over `events`, one row per batch, so that a
    /// window's rows (and a repeat and its original) arrive in separate
    /// batches; returns (repeats_previous, stock_level) in window order.
    async fn run_one_row_per_batch() -> (Vec<bool>, Vec<Option<i64>>) {
        let ctx = SessionContext::new_with_config(
            SessionConfig::new()
                .with_batch_size(1)
                .with_target_partitions(2),
        );
        window_functions()
            .into_iter()
            .for_each(|function| ctx.register_udwf(function));
        let batch = events();
        let rows: Vec<RecordBatch> = (0..batch.num_rows())
            .map(|row| batch.slice(row, 1))
            .collect();
        ctx.register_table(
            "events",
            Arc::new(MemTable::try_new(batch.schema(), vec![rows]).unwrap()),
        )
        .unwrap();
        // The second level keyed by store in one window, as the rules key
        // each item's in a window of many: the same values.
        let sql = "SELECT repeats_previous(t, trans_id, change) OVER w AS repeated,
                          stock_level(change, count) OVER w AS level,
                          stock_level(change, count, store) OVER (ORDER BY store, t, trans_id, change) AS keyed
                   FROM events
                   WINDOW w AS (PARTITION BY store ORDER BY t, trans_id, change)
                   ORDER BY store, t, trans_id, change";
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let mut repeated = Vec::new();
        let mut levels = Vec::new();
        let mut keyed = Vec::new();
        for batch in batches {
            repeated.extend(batch.column(0).as_boolean().iter().map(Option::unwrap));
            levels.extend(batch.column(1).as_primitive::<Int64Type>().iter());
            keyed.extend(batch.column(2).as_primitive::<Int64Type>().iter());
        }
        assert_eq!(keyed, levels, "a change of keys starts the level again, as a new window does");
        (repeated, levels)
    }

    #[tokio::test]
    async fn repeats_and_levels_carry_across_batches() {
        let (repeated, levels) = run_one_row_per_batch().await;
        assert_eq!(
            repeated,
            [
                false, false, true, true, false, false, true, false, false, false, false
            ],
            "a NULL equals a NULL; the first row of a window never repeats"
        );
        // The repeats are not filtered here, so their changes count.
        assert_eq!(
            levels,
            [
                Some(10),
                Some(8),
                Some(6),
                Some(4),
                Some(9),
                Some(9),
                Some(9),
                None,
                None,
                Some(7),
                Some(10)
            ]
        );
    }

    #[test]
    fn whole_partition_evaluation_agrees_with_row_by_row() {
        let batch = events().slice(0, 7);
        let columns = batch.columns();
        let repeated = RepeatsPreviousEvaluator
            .evaluate_all(&columns[1..4], 7)
            .unwrap();
        assert_eq!(
            repeated.as_boolean(),
            &BooleanArray::from(vec![false, false, true, true, false, false, true])
        );
        let levels = StockLevelEvaluator { level: None }
            .evaluate_all(&columns[3..5], 7)
            .unwrap();
        assert_eq!(
            levels.as_primitive::<Int64Type>(),
            &Int64Array::from(vec![10, 8, 6, 4, 9, 9, 9])
        );
        // Keyed by store over both stores: store 2 starts from no level.
        let whole = events();
        let keyed = [whole.column(3).clone(), whole.column(4).clone(), whole.column(0).clone()];
        let levels = StockLevelEvaluator { level: None }.evaluate_all(&keyed, 11).unwrap();
        assert_eq!(
            levels.as_primitive::<Int64Type>(),
            &Int64Array::from(vec![Some(10), Some(8), Some(6), Some(4), Some(9), Some(9), Some(9), None, None, Some(7), Some(10)])
        );
    }
}
