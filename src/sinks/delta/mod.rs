//! Delta Lake tables (SPEC 5), a directory or an object-store URL each,
//! written with the deltalake crate. A run's data files are written into
//! the table as its rows come; readers see them only once the run's commit
//! names them in the log. A commit is `_delta_log/<version>.json`, created
//! only if absent (`If-None-Match` in a bucket), so a concurrent writer is
//! caught by Delta's protocol: the loser retries on the new version, or
//! fails if the two conflict. A batch run commits one overwrite per table;
//! an incremental run one append with its checkpoint ([`state`]).
//!
//! Timestamps are written in microseconds without time zone (Delta's
//! `timestamp_ntz`), the column types and order those of SPEC 2 and 3.

pub mod state;

use std::collections::HashMap;
use std::sync::{Arc, Once};

use arrow::datatypes::{SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use datafusion::physical_plan::SendableRecordBatchStream;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, StructType, Transaction};
use deltalake::logstore::{LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig};
use deltalake::operations::create::CreateBuilder;
use deltalake::protocol::{DeltaOperation, OutputMode, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaResult, DeltaTable, DeltaTableBuilder, DeltaTableError};
use futures::StreamExt;
use tokio::sync::Mutex;
use url::Url;

use crate::error::SinkError;
use crate::storage::{Location, StorageOptions};

/// A Delta table: where it is, and the settings of its store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaTarget {
    /// The table's directory, or its prefix in a bucket.
    pub location: Location,
    options: StorageOptions,
}

/// How a commit changes the table besides adding the run's data files.
#[derive(Debug)]
pub enum CommitKind {
    /// Every file of the table goes: a batch run, or an incremental run
    /// that starts over.
    Replace,
    /// The table grows by the run's files, less those it rewrote (`removes`).
    Append {
        /// Files whose rows were written again (late events, SPEC 6.2).
        removes: Vec<Action>,
        /// The run's number among the incremental runs of the table.
        run: i64,
    },
}

/// The `commitInfo` field that marks a commit as pos-etl's, and says what
/// kind of run made it ([`Stamp::pos_etl`]).
pub const COMMIT_FIELD: &str = "pos_etl";

/// What a commit records beside its rows: application transactions (the
/// positions of the inputs, SPEC 6.1) and pos-etl's field of `commitInfo`.
#[derive(Debug)]
pub struct Stamp {
    /// `txn` actions.
    pub transactions: Vec<Transaction>,
    /// The value of the commit's [`COMMIT_FIELD`].
    pub pos_etl: serde_json::Value,
}

impl DeltaTarget {
    /// The table at `location`, reached with `options`.
    pub fn new(location: Location, options: StorageOptions) -> DeltaTarget {
        register_stores();
        DeltaTarget { location, options }
    }

    /// The table's URL as deltalake names it (a directory URL for a local path).
    fn url(&self) -> Result<Url, SinkError> {
        match &self.location {
            Location::Local(path) => {
                let path = std::path::absolute(path).map_err(|e| SinkError::Write { path: self.to_string(), source: e.into() })?;
                Url::from_directory_path(&path).map_err(|()| self.error("naming", "not a directory path".to_string()))
            }
            Location::Object(object) => Url::parse(&object.to_string()).map_err(|e| self.error("naming", e.to_string())),
        }
    }

    fn options(&self) -> HashMap<String, String> {
        self.options.to_map()
    }

    /// An error of `action` on this table, with no secret in it.
    fn error(&self, action: &'static str, detail: String) -> SinkError {
        SinkError::Delta { table: self.to_string(), action, detail: self.options.scrub(&detail) }
    }

    fn failed(&self, action: &'static str) -> impl FnOnce(DeltaTableError) -> SinkError + '_ {
        move |cause| self.error(action, error_chain(&cause))
    }

    /// The table, its log read if it has one (else its version is `None`).
    pub async fn open(&self) -> Result<DeltaTable, SinkError> {
        let url = self.url()?;
        let mut table = DeltaTableBuilder::from_url(url)
            .and_then(|builder| builder.with_storage_options(self.options()).build())
            .map_err(self.failed("opening"))?;
        if table.log_store().is_delta_table_location().await.map_err(self.failed("opening"))? {
            table.load().await.map_err(self.failed("reading the log of"))?;
        }
        Ok(table)
    }

    /// A writer of new data files into the table; the columns are those of
    /// the first batch (or stream) written.
    pub fn writer(&self) -> SharedWriter {
        Arc::new(Mutex::new(TableWriter { target: self.clone(), files: None }))
    }

    /// Commits the files `writer` wrote as one new version of `table` (this
    /// table as the run read it; its first version, if it has none), changed
    /// as `kind` says and stamped with `stamp`. A version committed since
    /// `table` was read by another writer is checked against this one by
    /// Delta's rules: a conflict (the same `txn` application, a file both
    /// remove) fails the commit. Returns the version.
    pub async fn commit(&self, table: &DeltaTable, writer: &SharedWriter, kind: CommitKind, stamp: Stamp) -> Result<u64, SinkError> {
        let (adds, schema) = writer.lock().await.flush().await?;
        let columns: StructType = schema.as_ref().try_into_kernel().map_err(|e| self.error("writing to", e.to_string()))?;
        let mut actions: Vec<Action> = adds.into_iter().map(Action::Add).collect();
        actions.extend(stamp.transactions.into_iter().map(Action::Txn));
        let properties = CommitProperties::default().with_metadata([(COMMIT_FIELD.to_string(), stamp.pos_etl)]);
        let Some(state) = table.version().and(table.snapshot().ok()) else {
            let created = CreateBuilder::new()
                .with_log_store(table.log_store())
                .with_columns(columns.fields().cloned())
                .with_save_mode(SaveMode::ErrorIfExists)
                .with_actions(actions)
                .with_commit_properties(properties)
                .await
                .map_err(self.failed("creating"))?;
            return Ok(created.version().unwrap_or(0));
        };
        let existing = state.schema();
        if existing.fields().map(|f| (f.name(), f.data_type())).ne(columns.fields().map(|f| (f.name(), f.data_type()))) {
            return Err(self.error(
                "writing to",
                "the table has other columns than this run writes; write to a new location, or delete the table".to_string(),
            ));
        }
        let operation = match kind {
            CommitKind::Replace => {
                actions.extend(state.log_data().iter().map(|file| Action::Remove(file.remove_action(true))));
                DeltaOperation::Write { mode: SaveMode::Overwrite, partition_by: None, predicate: None }
            }
            CommitKind::Append { removes, run } => {
                let output_mode = if removes.is_empty() { OutputMode::Append } else { OutputMode::Update };
                actions.extend(removes);
                DeltaOperation::StreamingUpdate { output_mode, query_id: "pos-etl".to_string(), epoch_id: run }
            }
        };
        let committed = CommitBuilder::from(properties)
            .with_actions(actions)
            .build(Some(state), table.log_store(), operation)
            .await
            .map_err(|e| self.error("committing to", error_chain(&e)))?;
        Ok(committed.version())
    }
}

impl std::fmt::Display for DeltaTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.location.fmt(f)
    }
}

/// The new data files of one table, written as the run goes and added to
/// the table by its commit. Shared between the output that fills it and
/// the commit that flushes it.
pub type SharedWriter = Arc<Mutex<TableWriter>>;

/// A writer of a table's data files (see [`SharedWriter`]).
#[derive(Debug)]
pub struct TableWriter {
    target: DeltaTarget,
    /// The files, once the columns are known: timestamps in microseconds.
    files: Option<(RecordBatchWriter, SchemaRef)>,
}

impl TableWriter {
    /// Starts the files with the columns of `schema`, unless started.
    pub fn start(&mut self, schema: &SchemaRef) -> Result<(), SinkError> {
        if self.files.is_none() {
            let schema = super::with_timestamps_in(schema, TimeUnit::Microsecond);
            let url = self.target.url()?;
            let writer = RecordBatchWriter::try_new(url.as_str(), schema.clone(), None, Some(self.target.options()))
                .map_err(self.target.failed("writing to"))?;
            self.files = Some((writer, schema));
        }
        Ok(())
    }

    /// Writes `batch` (timestamps in any unit) into the table's new files.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        self.start(&batch.schema())?;
        let Some((writer, schema)) = self.files.as_mut() else { unreachable!("started above") };
        let columns = super::cast_to(batch, schema).map_err(|e| self.target.error("writing to", e.to_string()))?;
        writer.write(columns).await.map_err(self.target.failed("writing to"))
    }

    /// The data files written since the last flush, closed, and their columns.
    async fn flush(&mut self) -> Result<(Vec<Add>, SchemaRef), SinkError> {
        let Some((writer, schema)) = self.files.as_mut() else {
            return Err(self.target.error("writing to", "no columns were given".to_string()));
        };
        Ok((writer.flush().await.map_err(self.target.failed("writing to"))?, schema.clone()))
    }
}

/// Writes every batch of `stream` into `writer`'s files; returns the rows.
pub async fn write(
    writer: &SharedWriter,
    mut stream: SendableRecordBatchStream,
    name: &str,
    mut on_batch: impl FnMut(&RecordBatch),
) -> Result<u64, SinkError> {
    let mut writer = writer.lock().await;
    writer.start(&stream.schema())?;
    let mut rows = 0;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|source| SinkError::Compute { path: name.to_string(), source })?;
        on_batch(&batch);
        rows += batch.num_rows() as u64;
        writer.write(&batch).await?;
    }
    Ok(rows)
}

/// `error` and its causes, one after the other: deltalake's messages
/// often keep the useful part (the store's answer) in a cause.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text = format!("{text}: {inner_text}");
        }
        cause = inner.source();
    }
    text
}

/// The stores of `s3://`, `gs://` and `az://` tables: built as pos-etl
/// builds every store (credentials from the environment, then the storage
/// settings, which deltalake hands back as its options).
struct Stores;

impl ObjectStoreFactory for Stores {
    fn parse_url_opts(&self, url: &Url, config: &StorageConfig) -> DeltaResult<(ObjectStoreRef, object_store::path::Path)> {
        let generic = |detail: String| DeltaTableError::Generic(detail);
        let options = StorageOptions::new(config.raw.clone().into_iter().collect()).map_err(|e| generic(e.to_string()))?;
        match Location::parse(url.as_str(), &options).map_err(|e| generic(e.to_string()))? {
            Location::Object(object) => Ok((object.store, object.path)),
            Location::Local(_) => Err(DeltaTableError::InvalidTableLocation(url.to_string())),
        }
    }
}

/// Delta's own log store over any of those stores: a commit is a
/// conditional create, which S3, GCS and Azure all support.
struct Logs;

impl LogStoreFactory for Logs {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(deltalake::logstore::default_logstore(prefixed_store, root_store, location, options))
    }
}

/// Makes deltalake reach tables in buckets through [`Stores`] and [`Logs`].
fn register_stores() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for scheme in ["s3", "s3a", "gs", "az", "azure", "abfs", "abfss", "adl"] {
            let url = Url::parse(&format!("{scheme}://")).expect("a scheme is a URL");
            deltalake::logstore::object_store_factories().insert(url.clone(), Arc::new(Stores));
            deltalake::logstore::logstore_factories().insert(url, Arc::new(Logs));
        }
    });
}
