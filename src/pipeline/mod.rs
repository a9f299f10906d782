//! The enrich pipeline: typed input tables in, the `enriched` and
//! `current_inventory` tables out, as lazy DataFusion frames. Every source
//! (CSV, Kafka) feeds it and every sink (CSV, Parquet, stdout) drains it; it
//! does no I/O of its own beyond reading a `--sql-dir`.

pub mod rules;

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use datafusion::catalog::MemTable;
use datafusion::dataframe::DataFrame;
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::sql::parser::DFParser;

use crate::error::PipelineError;
use crate::sources::Table;
pub use rules::{RuleFile, Rules};

/// The view holding one row per event (SPEC 2).
pub const ENRICHED: &str = "enriched";
/// The view holding the stock now per store and item (SPEC 3).
pub const CURRENT_INVENTORY: &str = "current_inventory";

/// The outputs of the rules, not yet computed.
pub struct Outputs {
    /// The `enriched` view.
    pub enriched: DataFrame,
    /// The `current_inventory` view.
    pub current_inventory: DataFrame,
}

/// A DataFusion session for the rules: one partition per core.
pub fn new_session() -> SessionContext {
    // SQL's VARCHAR stays plain Utf8, so every text column of the outputs has
    // the same Arrow type (and Parquet readers see one kind of string).
    let config = SessionConfig::new()
        .with_information_schema(false)
        .set_bool("datafusion.sql_parser.map_string_types_to_utf8view", false);
    SessionContext::new_with_config(config)
}

/// Registers the input tables in `ctx`, runs every rule file in order, and
/// returns the output views. A table missing from `tables` is registered empty.
pub async fn enrich(
    ctx: &SessionContext,
    tables: Vec<(Table, Vec<RecordBatch>)>,
    rules: &Rules,
) -> Result<Outputs, PipelineError> {
    register_tables(ctx, tables)?;
    for file in &rules.files {
        run_rule_file(ctx, file).await?;
    }
    Ok(Outputs {
        enriched: output_view(ctx, ENRICHED).await?,
        current_inventory: output_view(ctx, CURRENT_INVENTORY).await?,
    })
}

fn register_tables(
    ctx: &SessionContext,
    mut tables: Vec<(Table, Vec<RecordBatch>)>,
) -> Result<(), PipelineError> {
    let partitions = ctx.state().config().target_partitions().max(1);
    for table in Table::ALL {
        let batches = tables
            .iter_mut()
            .filter(|(t, _)| *t == table)
            .flat_map(|(_, batches)| std::mem::take(batches))
            .collect::<Vec<_>>();
        let mut split = vec![Vec::new(); partitions];
        for (index, batch) in batches.into_iter().enumerate() {
            split[index % partitions].push(batch);
        }
        let register_error = |source| PipelineError::Register { table: table.name(), source };
        let mem = MemTable::try_new(table.schema(), split).map_err(register_error)?;
        ctx.register_table(table.name(), Arc::new(mem)).map_err(register_error)?;
    }
    Ok(())
}

async fn run_rule_file(ctx: &SessionContext, file: &RuleFile) -> Result<(), PipelineError> {
    let sql_error = |source| PipelineError::Sql { file: file.name.clone(), source };
    let statements = DFParser::parse_sql(&file.sql).map_err(sql_error)?;
    for statement in statements {
        let plan = ctx.state().statement_to_plan(statement).await.map_err(sql_error)?;
        ctx.execute_logical_plan(plan).await.map_err(sql_error)?.collect().await.map_err(sql_error)?;
    }
    Ok(())
}

async fn output_view(ctx: &SessionContext, view: &'static str) -> Result<DataFrame, PipelineError> {
    ctx.table(view).await.map_err(|source| PipelineError::MissingView { view, source })
}
