//! The enrich pipeline: typed input tables in, the `enriched` and
//! `current_inventory` tables out, as lazy DataFusion frames. Every source
//! (CSV, Kafka) feeds it and every sink (CSV, Parquet, stdout) drains it; it
//! does no I/O of its own beyond reading a `--sql-dir`.

mod functions;
mod memory;
pub mod rules;
mod shared;
mod slot;
mod packed_key;
mod tie_sort;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use datafusion::catalog::{MemTable, TableProvider};
use datafusion::config::SpillCompression;
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::execution::disk_manager::DiskManagerBuilder;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream, execute_stream};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{Expr, ScalarUDF, WindowUDF};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::sql::parser::DFParser;

use crate::error::PipelineError;
use crate::sources::Table;
use functions::{DuplicateCounter, IS_DUPLICATE};
pub use rules::{RuleFile, Rules};
use shared::Feed;
pub use slot::Slot;

/// The view holding one row per event (SPEC 2).
pub const ENRICHED: &str = "enriched";
/// The view holding the stock now per store and item (SPEC 3).
pub const CURRENT_INVENTORY: &str = "current_inventory";
/// The table of the stock carried into an incremental run, per store and
/// item: the state after the last event applied before the run's.
pub const STOCK_STATE: &str = "stock_state";
/// The column of `enriched` numbering its rows in the stock order (SPEC 2.1)
/// within their store and item, for the views after it; not an output column.
pub const STOCK_SEQ: &str = "stock_seq";

/// The columns of [`STOCK_STATE`].
pub fn stock_state_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("store_id", DataType::Int64, false),
        Field::new("item_id", DataType::Int64, false),
        // The last applied event's time, and the stock after it (NULL before any snapshot).
        Field::new("date_time", DataType::Timestamp(TimeUnit::Second, None), false),
        Field::new("final_quantity", DataType::Int64, true),
        // The count of the last snapshot up to then (NULL if none).
        Field::new("snapshot_quantity", DataType::Int64, true),
    ]))
}

/// `stream` without [`STOCK_SEQ`]: the columns of SPEC 2 that pos-etl writes.
pub fn without_stock_seq(stream: SendableRecordBatchStream) -> SendableRecordBatchStream {
    let schema = stream.schema();
    let Ok(hidden) = schema.index_of(STOCK_SEQ) else {
        return stream;
    };
    let keep: Vec<usize> = (0..schema.fields().len()).filter(|&index| index != hidden).collect();
    let projected = Arc::new(schema.project(&keep).expect("indices of the schema"));
    let batches = stream.map(move |batch| batch.and_then(|batch| Ok(batch.project(&keep)?)));
    Box::pin(RecordBatchStreamAdapter::new(projected, batches))
}

/// The outputs of the rules, not yet computed.
pub struct Outputs {
    /// The `enriched` view.
    pub enriched: DataFrame,
    /// The `current_inventory` view.
    pub current_inventory: DataFrame,
    /// What the views defined after `enriched` see under its name.
    feed: Feed,
    /// Records the rules dropped as sent again, counted as `enriched` is computed.
    duplicates: Arc<AtomicU64>,
}

impl Outputs {
    /// Plans `enriched`, and `current_inventory` if asked, for execution:
    /// once by a full run, once for all its batches by `stream`. With a
    /// `cluster` session, `enriched` runs there (its tables must be ones
    /// the cluster can read) and `current_inventory` here, fed its rows.
    pub async fn plan(self, with_current_inventory: bool, cluster: Option<&Cluster>) -> Result<Planned, PipelineError> {
        let plan_error = |source| PipelineError::Start { source };
        let (local, enriched) = self.enriched.into_parts();
        let task = Arc::new(TaskContext::from(&local));
        let (enriched, enriched_task) = match cluster {
            None => {
                let plan = local.create_physical_plan(&enriched).await.map_err(plan_error)?;
                let plan = tie_sort::sort_ties_apart(plan).and_then(packed_key::merge_by_packed_keys).map_err(plan_error)?;
                (plan, task.clone())
            }
            Some(cluster) => {
                let remote = cluster.session.state();
                (remote.create_physical_plan(&enriched).await.map_err(plan_error)?, Arc::new(TaskContext::from(&remote)))
            }
        };
        let (current_inventory, feed) = match with_current_inventory {
            false => (None, None),
            true => {
                let reads_enriched = self.feed.is_read_by(self.current_inventory.logical_plan());
                let (state, plan) = without_duplicate_count(self.current_inventory).map_err(plan_error)?.into_parts();
                let plan = state.create_physical_plan(&plan).await.map_err(plan_error)?;
                (Some(plan), reads_enriched.then_some(self.feed))
            }
        };
        Ok(Planned {
            task,
            enriched: (enriched, enriched_task),
            current_inventory,
            feed,
            duplicates: cluster.is_none().then_some(self.duplicates),
        })
    }
}

/// A Ballista cluster's session, for [`Outputs::plan`]: plans run on the
/// cluster, with the settings of [`session_config`] and pos-etl's functions.
pub struct Cluster {
    /// The session.
    pub session: SessionContext,
}

/// The output views planned: physical plans that can be executed again,
/// each time on what the input tables then hold.
pub struct Planned {
    task: Arc<TaskContext>,
    /// `enriched`, and the context it runs in (a cluster's, or `task`).
    enriched: (Arc<dyn ExecutionPlan>, Arc<TaskContext>),
    current_inventory: Option<Arc<dyn ExecutionPlan>>,
    /// Feeds `current_inventory` with `enriched`'s rows, if it reads them.
    feed: Option<Feed>,
    /// Records the rules dropped as duplicates, in the current execution;
    /// not known when they run on a cluster (the count stays there).
    duplicates: Option<Arc<AtomicU64>>,
}

impl Planned {
    /// Starts computing `enriched`, and `current_inventory` if planned. When
    /// `current_inventory` reads `enriched` (as the built-in rules do), it is
    /// fed `enriched`'s batches as they go by, and the two streams must be
    /// consumed concurrently.
    pub fn execute(&self) -> Result<(SendableRecordBatchStream, Option<SendableRecordBatchStream>), PipelineError> {
        let start_error = |source| PipelineError::Start { source };
        // Operators keep what they built (a join's hash table, a
        // repartition's channels) for their one execution: fresh copies.
        let fresh = |plan: &Arc<dyn ExecutionPlan>| reset_plan_states(plan.clone()).map_err(start_error);
        if let Some(duplicates) = &self.duplicates {
            duplicates.store(0, Ordering::Relaxed);
        }
        let sender = self.feed.as_ref().map(Feed::arm);
        let current_inventory = match &self.current_inventory {
            Some(plan) => Some(execute_stream(fresh(plan)?, self.task.clone()).map_err(start_error)?),
            None => None,
        };
        let (plan, task) = &self.enriched;
        let enriched = execute_stream(fresh(plan)?, task.clone()).map_err(start_error)?;
        let enriched = match sender {
            Some(sender) => Feed::tee(sender, enriched),
            None => enriched,
        };
        Ok((enriched, current_inventory))
    }

    /// The records the rules have dropped as duplicates in the current
    /// execution so far (all of them, once `enriched` has been computed);
    /// `None` when they ran on a cluster.
    pub fn duplicates(&self) -> Option<u64> {
        self.duplicates.as_ref().map(|duplicates| duplicates.load(Ordering::Relaxed))
    }
}

/// `frame` with `is_duplicate` evaluated but not counted. Only `enriched`
/// counts the records its rules drop: a `current_inventory` that reads the
/// timeline again (a user's rules may) would count them a second time.
fn without_duplicate_count(frame: DataFrame) -> datafusion::error::Result<DataFrame> {
    let (state, plan) = frame.into_parts();
    // Optimizing inlines the views, where the calls are.
    let plan = state.optimize(&plan)?;
    let quiet = Arc::new(DuplicateCounter::udf(None));
    let plan = plan
        .transform_up_with_subqueries(|node| {
            node.map_expressions(|expr| {
                expr.transform_up(|expr| match expr {
                    Expr::ScalarFunction(call) if call.name() == IS_DUPLICATE => {
                        Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(quiet.clone(), call.args))))
                    }
                    other => Ok(Transformed::no(other)),
                })
            })
        })?
        .data;
    Ok(DataFrame::new(state, plan))
}

/// How much of the machine a run may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    /// Partitions the rules run in, and so threads busy at once.
    pub threads: usize,
    /// Bytes the sorts and other operators may hold before spilling to disk.
    pub memory_limit: usize,
}

/// Memory each thread needs at least: each of its partitions runs a few
/// sorts and aggregates at once, and each must hold a batch or two to make
/// progress. (How much exactly depends on the data: a run that needs more
/// fails with [`OutOfMemory`].)
pub const MIN_MEMORY_PER_THREAD: usize = 8 << 20;

/// The rules needed more memory than the limit gives the threads.
#[derive(Debug, thiserror::Error)]
#[error(
    "computing {output} needs more memory than --memory-limit {} gives {} threads: raise --memory-limit or lower --threads",
    crate::cli::format_size(resources.memory_limit),
    resources.threads
)]
pub struct OutOfMemory {
    /// The output being computed.
    pub output: String,
    /// What the run had.
    pub resources: Resources,
}

impl Resources {
    /// `error` as an [`OutOfMemory`] if DataFusion ran out of the memory
    /// limit computing `output` (its message names settings a user of
    /// pos-etl cannot set), else `error` itself.
    pub fn explain(&self, output: &str, error: anyhow::Error) -> anyhow::Error {
        let exhausted = error.chain().any(|cause| {
            cause
                .downcast_ref::<DataFusionError>()
                .is_some_and(|e| matches!(e.find_root(), DataFusionError::ResourcesExhausted(_)))
        });
        match exhausted {
            true => OutOfMemory { output: output.to_string(), resources: *self }.into(),
            false => error,
        }
    }

    /// Sorted runs a sort that spilled merges at once: each holds a few
    /// batches in memory (about 8 MiB), outside the limit, so fewer when
    /// memory is scarce; beyond it, runs are merged into longer ones first,
    /// which writes their rows to disk again. One per 16 MiB of a thread's
    /// share, 32 at the default: 10 million rows spill about 19 runs per
    /// thread, merged in one pass (one per 32 MiB merged them in two, 10%
    /// slower; see bench/README.md).
    fn merge_fan_in(&self) -> usize {
        (self.memory_limit / self.threads.max(1) / (16 << 20)).clamp(4, 64)
    }
}

/// A DataFusion session for the rules: `threads` partitions, and operators
/// that spill to the temporary directory beyond the memory limit.
pub fn new_session(resources: Resources) -> Result<SessionContext, PipelineError> {
    let runtime = RuntimeEnvBuilder::new()
        .with_disk_manager_builder(DiskManagerBuilder::default().with_max_spill_merge_fan_in(resources.merge_fan_in()))
        .with_memory_pool(Arc::new(memory::SpillPool::new(resources.memory_limit)))
        .build_arc()
        .map_err(|source| PipelineError::Start { source })?;
    let mut ctx = SessionContext::new_with_config_rt(session_config(SessionConfig::new(), resources), runtime);
    register_functions(&mut ctx).map_err(|source| PipelineError::Start { source })?;
    Ok(ctx)
}

/// `config` with the settings the rules are planned with: `threads`
/// partitions, and the choices below. A cluster's session (see
/// [`crate::cluster`]) starts from Ballista's config and adds the same.
pub fn session_config(config: SessionConfig, resources: Resources) -> SessionConfig {
    // SQL's VARCHAR stays plain Utf8, so every text column of the outputs has
    // the same Arrow type (and Parquet readers see one kind of string).
    config
        .with_information_schema(false)
        .with_target_partitions(resources.threads.max(1))
        // Sorted runs spilled compressed: less to write and read back, for
        // little CPU (7% faster at 30 million rows).
        .with_spill_compression(SpillCompression::Lz4Frame)
        .set_bool("datafusion.sql_parser.map_string_types_to_utf8view", false)
        // A dynamic filter holds the bounds of one execution's join build
        // side, and a plan executed again (stream's) would filter its next
        // batch by them; the lookups hold every key, so they prune nothing.
        .set_bool("datafusion.optimizer.enable_dynamic_filter_pushdown", false)
        // Lookups are joined by broadcasting them to every partition: the
        // alternative repartitions every event by the lookup key and loses
        // the stock order the windows sorted them into.
        .set_usize("datafusion.optimizer.hash_join_single_partition_threshold", 1 << 30)
        .set_usize("datafusion.optimizer.hash_join_single_partition_threshold_rows", 50_000_000)
}

/// Registers pos-etl's functions in `registry` (a session, a Ballista
/// scheduler's or executor's), by the names the rules call them: every
/// process that plans or runs the rules must know them. `is_duplicate`
/// counts nothing here; a run's session registers its counting one over it.
pub fn register_functions(registry: &mut dyn FunctionRegistry) -> datafusion::error::Result<()> {
    let (scalar, window) = own_functions();
    for function in scalar {
        registry.register_udf(function)?;
    }
    for function in window {
        registry.register_udwf(function)?;
    }
    Ok(())
}

/// pos-etl's scalar and window functions, for a registry that takes them
/// otherwise than by [`register_functions`] (a Ballista executor's).
pub fn own_functions() -> (Vec<Arc<ScalarUDF>>, Vec<Arc<WindowUDF>>) {
    let window = functions::window_functions().into_iter().map(Arc::new).collect();
    (vec![Arc::new(DuplicateCounter::udf(None))], window)
}

/// `batches` of `table` as an in-memory table of `partitions` partitions.
pub fn memory_table(
    table: Table,
    batches: Vec<RecordBatch>,
    partitions: usize,
) -> Result<Arc<dyn TableProvider>, PipelineError> {
    let partitions = partitions.max(1);
    let mut split = vec![Vec::new(); partitions];
    for (index, batch) in batches.into_iter().enumerate() {
        split[index % partitions].push(batch);
    }
    let mem = MemTable::try_new(table.schema(), split)
        .map_err(|source| PipelineError::Register { table: table.name(), source })?;
    Ok(Arc::new(mem))
}

/// Registers the input tables in `ctx`, and `state` as [`STOCK_STATE`] (empty
/// if `None`: a full run), runs every rule file in order, and returns the
/// output views. A table missing from `tables` is registered empty.
pub async fn enrich(
    ctx: &SessionContext,
    tables: Vec<(Table, Arc<dyn TableProvider>)>,
    state: Option<Arc<dyn TableProvider>>,
    rules: &Rules,
) -> Result<Outputs, PipelineError> {
    register_tables(ctx, tables)?;
    let register_error = |source| PipelineError::Register { table: STOCK_STATE, source };
    let state = match state {
        Some(state) => state,
        None => Arc::new(MemTable::try_new(stock_state_schema(), vec![Vec::new()]).map_err(register_error)?),
    };
    ctx.register_table(STOCK_STATE, state).map_err(register_error)?;
    let duplicates = Arc::new(AtomicU64::new(0));
    ctx.register_udf(DuplicateCounter::udf(Some(duplicates.clone())));
    let mut enriched = None;
    execute_files(ctx, rules, async || {
        if enriched.is_none() && ctx.table_exist(ENRICHED)? {
            enriched = Some(feed_enriched(ctx).await?);
        }
        Ok(())
    })
    .await?;
    let (enriched, feed) = enriched.ok_or(PipelineError::MissingView { view: ENRICHED })?;
    let current_inventory = ctx
        .table(CURRENT_INVENTORY)
        .await
        .map_err(|_| PipelineError::MissingView { view: CURRENT_INVENTORY })?;
    Ok(Outputs { enriched, current_inventory, feed, duplicates })
}

/// Runs every statement of `rules` in `ctx`, in order: rules that read
/// tables already registered, such as the report's over `enriched`.
pub async fn run_rules(ctx: &SessionContext, rules: &Rules) -> Result<(), PipelineError> {
    execute_files(ctx, rules, async || Ok(())).await
}

/// Runs every statement of every rule file in order, and `after_each` after
/// each statement; an error names the file.
async fn execute_files(
    ctx: &SessionContext,
    rules: &Rules,
    mut after_each: impl AsyncFnMut() -> datafusion::error::Result<()>,
) -> Result<(), PipelineError> {
    for file in &rules.files {
        let sql_error = |source| PipelineError::Sql { file: file.name.clone(), source };
        for statement in DFParser::parse_sql(&file.sql).map_err(sql_error)? {
            let plan = ctx.state().statement_to_plan(statement).await.map_err(sql_error)?;
            ctx.execute_logical_plan(plan).await.map_err(sql_error)?.collect().await.map_err(sql_error)?;
            after_each().await.map_err(sql_error)?;
        }
    }
    Ok(())
}

/// Takes the `enriched` view just defined and gives its name to a feed of
/// its rows, for the views that read it.
async fn feed_enriched(ctx: &SessionContext) -> datafusion::error::Result<(DataFrame, Feed)> {
    let enriched = ctx.table(ENRICHED).await?;
    let (table, feed) = shared::feed_table(ENRICHED, Arc::new(enriched.schema().as_arrow().clone()))?;
    ctx.deregister_table(ENRICHED)?;
    ctx.register_table(ENRICHED, table)?;
    Ok((enriched, feed))
}

fn register_tables(
    ctx: &SessionContext,
    mut tables: Vec<(Table, Arc<dyn TableProvider>)>,
) -> Result<(), PipelineError> {
    for table in Table::ALL {
        let provider = match tables.iter().position(|(t, _)| *t == table) {
            Some(index) => tables.swap_remove(index).1,
            None => memory_table(table, Vec::new(), 1)?,
        };
        ctx.register_table(table.name(), provider)
            .map_err(|source| PipelineError::Register { table: table.name(), source })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::csv::{Bytes, ReadPath, read_file};

    fn rows(table: Table, csv: &str) -> Vec<RecordBatch> {
        let source = Bytes { name: table.name(), bytes: csv.as_bytes() };
        read_file(table, &source, ReadPath::Fast, |_| {}).expect("valid test input").batches
    }

    const SNAPSHOTS: &str = "item_id,employee_id,store_id,date_time,quantity\n";
    const CHANGES: &str = "trans_id,item_id,store_id,date_time,quantity,change_type_id\n";

    /// The rules planned over `snapshots` and `changes` (and fixed lookups).
    async fn planned(snapshots: Arc<dyn TableProvider>, changes: Arc<dyn TableProvider>) -> Planned {
        let lookups = [
            (Table::Store, "store_id,name\n1,Store 1\n0,online\n"),
            (Table::Item, "item_id,name,supplier_id,safety_stock_quantity\n10,a,1,5\n11,b,1,25\n"),
            (Table::InventoryChangeType, "change_type_id,change_type\n1,sale\n2,bopis\n"),
        ];
        let mut tables = vec![(Table::InventorySnapshot, snapshots), (Table::InventoryChange, changes)];
        for (table, csv) in lookups {
            tables.push((table, memory_table(table, rows(table, csv), 2).unwrap()));
        }
        let ctx = new_session(Resources { threads: 2, memory_limit: 64 << 20 }).unwrap();
        enrich(&ctx, tables, None, &Rules::builtin()).await.unwrap().plan(true, None).await.unwrap()
    }

    /// Both outputs of one execution, as text, and the duplicates it counted.
    async fn outputs(planned: &Planned) -> (String, String, u64) {
        let (enriched, current) = planned.execute().unwrap();
        let collect = datafusion::physical_plan::common::collect;
        let (enriched, current) = futures::future::try_join(collect(enriched), collect(current.unwrap())).await.unwrap();
        let text = |batches: &[RecordBatch]| arrow::util::pretty::pretty_format_batches(batches).unwrap().to_string();
        (text(&enriched), text(&current), planned.duplicates().expect("counted locally"))
    }

    #[tokio::test]
    async fn a_plan_executes_again_on_what_its_slots_then_hold() {
        let batches = [
            (
                format!("{SNAPSHOTS}10,7,1,2021-01-01 06:00:00,20\n"),
                format!("{CHANGES}t1,10,1,2021-01-01 07:00:00,-1,1\nt1,10,1,2021-01-01 07:00:00,-1,1\n"),
            ),
            (
                format!("{SNAPSHOTS}11,7,1,2021-01-02 06:00:00,30\n10,8,0,2021-01-02 06:00:00,4\n"),
                format!("{CHANGES}t2,11,1,2021-01-02 08:00:00,-3,1\nt3,10,0,2021-01-02 09:00:00,-2,2\n"),
            ),
            (SNAPSHOTS.to_string(), format!("{CHANGES}t4,10,1,2021-01-03 07:00:00,-1,1\n")),
        ];
        let (snapshots, changes) = (Slot::new(Table::InventorySnapshot.schema()), Slot::new(Table::InventoryChange.schema()));
        let reused = planned(snapshots.table(2).unwrap(), changes.table(2).unwrap()).await;
        let mut seen = Vec::new();
        for (snapshot_csv, change_csv) in &batches {
            let (snapshot_rows, change_rows) =
                (rows(Table::InventorySnapshot, snapshot_csv), rows(Table::InventoryChange, change_csv));
            let fresh = planned(
                memory_table(Table::InventorySnapshot, snapshot_rows.clone(), 2).unwrap(),
                memory_table(Table::InventoryChange, change_rows.clone(), 2).unwrap(),
            )
            .await;
            snapshots.fill(snapshot_rows);
            changes.fill(change_rows);
            let again = outputs(&reused).await;
            assert_eq!(again, outputs(&fresh).await, "the plan made once gives what a plan of this batch gives");
            seen.push(again);
        }
        let data_rows = |text: &str| text.lines().filter(|line| line.starts_with("| ")).count().saturating_sub(1);
        let counts: Vec<_> = seen.iter().map(|(enriched, current, duplicates)| (data_rows(enriched), data_rows(current), *duplicates)).collect();
        // Rows of enriched, of current_inventory, and records dropped as sent again, per execution.
        assert_eq!(counts, [(2, 1, 1), (4, 2, 0), (1, 0, 0)]);
        assert!(seen[1].0.contains("t2") && seen[1].0.contains("t3") && !seen[1].0.contains("t1"), "{}", seen[1].0);
    }
}
