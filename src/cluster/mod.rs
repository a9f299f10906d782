//! Running the rules on an Apache DataFusion Ballista cluster
//! (`enrich --cluster`), and the cluster's processes (`pos-etl cluster`).
//!
//! pos-etl reads its inputs with readers of its own (the CSV dialects,
//! rejects with their file and line, Kafka), and a Ballista executor reads
//! only what a plan can carry to it: files. So a cluster run reads and
//! checks every input here, as a local run does, stages the accepted rows as
//! Parquet in a directory that the scheduler and every executor see at the
//! same path, and has the cluster run the rules over those files. The rows
//! of `enriched` come back here in order and are written by the same sinks as
//! a local run's; `current_inventory` is computed here from them as they
//! come (a table fed by a stream cannot be shipped).

pub mod nodes;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use ballista::prelude::{SessionConfigExt, SessionContextExt};
use datafusion::catalog::TableProvider;
use datafusion::common::config::TableParquetOptions;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::arrow::datatypes::SchemaRef;

use crate::pipeline::{self, Resources};
use crate::sources::Table;

/// How long to try to reach the scheduler before a run gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A Ballista cluster to run the rules on, and where to stage its inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTarget {
    /// The scheduler's host.
    pub host: String,
    /// The scheduler's port.
    pub port: u16,
    /// A directory the scheduler and every executor reach at this same path.
    pub staging: PathBuf,
}

impl std::fmt::Display for ClusterTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the Ballista scheduler at df://{}:{}", self.host, self.port)
    }
}

impl ClusterTarget {
    /// A session whose plans run on the cluster, planned with the settings
    /// and functions of a local run. It fails at once if the scheduler
    /// cannot be reached (Ballista itself would only find out when a plan
    /// runs, after the inputs have been staged).
    pub async fn session(&self, resources: Resources) -> anyhow::Result<pipeline::Cluster> {
        if !self.staging.is_dir() {
            anyhow::bail!("--cluster-staging {} is not a directory: give one that the scheduler and every executor see at this path", self.staging.display());
        }
        let address = (self.host.as_str(), self.port);
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(address)).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(error).with_context(|| format!("cannot reach {self}")),
            Err(_) => anyhow::bail!("cannot reach {self}: no answer within {} s", CONNECT_TIMEOUT.as_secs()),
        }
        let config = pipeline::session_config(SessionConfig::new_with_ballista(), resources)
            // The adaptive planner does not yet run a stage again when an
            // executor dies (apache/datafusion-ballista#1986); the static one does.
            .set_bool(ballista_core::config::BALLISTA_ADAPTIVE_PLANNER_ENABLED, false)
            .with_ballista_broadcast_join_threshold_bytes(1 << 30)
            // Ballista joins by sort-merge: every event repartitioned by each
            // lookup's key and sorted again. The lookups are small, and
            // broadcast to every task, as in a local run, they keep the stock order.
            .set_bool("datafusion.optimizer.prefer_hash_join", true);
        let state = SessionStateBuilder::new().with_config(config).with_default_features().build();
        let url = format!("df://{}:{}", self.host, self.port);
        let mut session = SessionContext::remote_with_state(&url, state).await.with_context(|| format!("connecting to {self}"))?;
        // Ballista's session replaces the function lists: pos-etl's go in after.
        pipeline::register_functions(&mut session)?;
        Ok(pipeline::Cluster { session })
    }

    /// Writes the rows of every table in `tables` as Parquet under a new
    /// directory of [`ClusterTarget::staging`], and returns them as tables
    /// the cluster can read, with an empty stock to carry in.
    pub async fn stage(&self, tables: Vec<(Table, Arc<dyn TableProvider>)>, resources: Resources) -> anyhow::Result<Staged> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_nanos());
        let root = std::path::absolute(&self.staging)
            .with_context(|| format!("--cluster-staging {}", self.staging.display()))?
            .join(format!("pos-etl-{}-{nanos}", std::process::id()));
        let mut staged = Staged { root, tables: Vec::new(), stock_state: None };
        let ctx = pipeline::new_session(resources)?;
        let mut options = TableParquetOptions::default();
        // Read once, soon: fast to write and read beats small.
        options.global.compression = Some("snappy".into());
        for (table, provider) in tables {
            let dir = staged.table_dir(table.name())?;
            let path = format!("{}/", dir.display());
            ctx.read_table(provider)?
                .write_parquet(&path, DataFrameWriteOptions::new(), Some(options.clone()))
                .await
                .with_context(|| format!("staging {} in {}", table.name(), staged.root.display()))?;
            staged.tables.push((table, listing_table(&dir, table.schema())?));
        }
        // No stock is carried into a full run: one file without rows (a
        // directory without files plans as a node that Ballista's executors
        // rebuild differently from its scheduler, and then loses track of).
        let dir = staged.table_dir(pipeline::STOCK_STATE)?;
        let file = std::fs::File::create(dir.join("empty.parquet")).with_context(|| format!("creating {}", dir.display()))?;
        parquet::arrow::ArrowWriter::try_new(file, pipeline::stock_state_schema(), None)?.close()?;
        staged.stock_state = Some(listing_table(&dir, pipeline::stock_state_schema())?);
        Ok(staged)
    }
}

/// A run's inputs staged for the cluster; the files are removed when it is dropped.
#[derive(Debug)]
pub struct Staged {
    root: PathBuf,
    tables: Vec<(Table, Arc<dyn TableProvider>)>,
    stock_state: Option<Arc<dyn TableProvider>>,
}

impl Staged {
    /// The input tables, over the staged files.
    pub fn tables(&self) -> Vec<(Table, Arc<dyn TableProvider>)> {
        self.tables.clone()
    }

    /// The (empty) stock carried into the rules, as a table the cluster can read.
    pub fn stock_state(&self) -> Option<Arc<dyn TableProvider>> {
        self.stock_state.clone()
    }

    fn table_dir(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = self.root.join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The Parquet files in `dir` as a table of `schema`.
fn listing_table(dir: &Path, schema: SchemaRef) -> anyhow::Result<Arc<dyn TableProvider>> {
    let url = ListingTableUrl::parse(format!("{}/", dir.display()))?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new(url).with_listing_options(options).with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config)?))
}
