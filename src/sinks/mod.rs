//! Sinks write record batch streams to their destination: CSV or Parquet
//! files, staged in a [`Commit`] that puts every output of a run in place
//! at once, PostgreSQL tables loaded in the run's transaction, Delta Lake
//! tables, or CSV on stdout. They also write the rejects file and hold the
//! per-output lock.

pub mod commit;
pub mod csv;
pub mod delta;
pub mod direct;
pub mod kafka;
pub mod lock;
pub mod parquet;
pub mod postgres;
pub mod rejects;
pub mod state;

use std::path::PathBuf;

use arrow::record_batch::RecordBatch;
use datafusion::physical_plan::SendableRecordBatchStream;

use crate::cli::Format;
use crate::error::SinkError;
use crate::storage::write::UploadWriter;
use crate::storage::{Location, ObjectUrl};
pub use commit::Commit;

/// Where an output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// CSV on standard output.
    Stdout,
    /// A file, replaced when the run commits.
    File(PathBuf),
    /// An object in a store, replaced when the run commits.
    Object(ObjectUrl),
    /// A Delta Lake table (a directory or prefix), replaced (or, in an
    /// incremental run, appended to) when the run commits.
    Delta(delta::DeltaTarget),
    /// A PostgreSQL table, replaced when the run commits.
    Postgres {
        /// The table's name (in the run's schema).
        table: String,
        /// The server and schema, for messages (never a password).
        shown: String,
    },
    /// Nowhere: the output is computed for the outputs that read it (and
    /// the stock an incremental run follows in it) but not kept
    /// (`stream --tables current_inventory`).
    Discard,
}

impl Destination {
    /// A file or an object at `location`.
    pub fn at(location: Location) -> Destination {
        match location {
            Location::Local(path) => Destination::File(path),
            Location::Object(url) => Destination::Object(url),
        }
    }

    /// Where the file or object is, if this is one.
    pub fn location(&self) -> Option<Location> {
        match self {
            Destination::File(path) => Some(Location::Local(path.clone())),
            Destination::Object(url) => Some(Location::Object(url.clone())),
            Destination::Delta(target) => Some(target.location.clone()),
            _ => None,
        }
    }

    /// The table `name` in the database and schema of `target`.
    pub fn table(target: &postgres::PgTarget, name: &str) -> Destination {
        Destination::Postgres { table: name.to_string(), shown: target.place() }
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Stdout => f.write_str("<stdout>"),
            Destination::File(path) => write!(f, "{}", path.display()),
            Destination::Object(url) => write!(f, "{url}"),
            Destination::Delta(target) => write!(f, "{target}"),
            Destination::Postgres { table, shown } => write!(f, "{shown} table {table}"),
            Destination::Discard => f.write_str("<not kept>"),
        }
    }
}

/// One output of a run: where and in which format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Where.
    pub destination: Destination,
    /// CSV or Parquet.
    pub format: Format,
}

/// What writing one output did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Rows written.
    pub rows: u64,
    /// Rows computed but not written: the reader of stdout went away
    /// (`| head`), or the output is not kept; always 0 for a file.
    pub unread: u64,
}

/// An output opened for writing.
#[derive(Debug)]
pub enum OutputWriter {
    /// Standard output.
    Stdout(tokio::io::Stdout),
    /// A file staged in the run's [`Commit`].
    Staged(commit::StagedWriter),
    /// An object uploading, completed by the run's [`Commit`].
    Upload(UploadWriter),
    /// A table loading in the run's PostgreSQL transaction.
    Postgres(postgres::PgTableWriter),
    /// The new data files of a Delta table, added by the run's [`Commit`].
    Delta(delta::SharedWriter),
    /// Nowhere.
    Discard,
}

impl Output {
    /// Opens this output: stdout, or a new version of the file or table staged in `commit`.
    pub fn open(&self, commit: &mut Commit) -> Result<OutputWriter, SinkError> {
        Ok(match &self.destination {
            Destination::Stdout => OutputWriter::Stdout(tokio::io::stdout()),
            Destination::File(path) => OutputWriter::Staged(commit.stage(path)?),
            Destination::Object(url) => OutputWriter::Upload(commit.stage_object(url)),
            Destination::Delta(target) => OutputWriter::Delta(commit.stage_delta(target)),
            Destination::Postgres { table, .. } => {
                let load = commit.postgres().expect("a run with PostgreSQL outputs attaches its transaction first");
                OutputWriter::Postgres(load.stage(table))
            }
            Destination::Discard => OutputWriter::Discard,
        })
    }

    /// Writes every batch of `stream` to `writer` (opened from this output),
    /// encoding CSV on up to `threads` threads. `on_batch` sees every batch
    /// before it is written. When the reader of stdout goes away, the stream
    /// is still drained, so that the outputs computed from it are whole.
    pub async fn write(
        &self,
        writer: OutputWriter,
        stream: SendableRecordBatchStream,
        threads: usize,
        on_batch: impl FnMut(&RecordBatch),
    ) -> Result<Written, SinkError> {
        let name = self.destination.to_string();
        match (writer, self.format) {
            (OutputWriter::Stdout(out), _) => csv::write(stream, out, &name, threads, on_batch).await,
            (OutputWriter::Staged(out), format) => write_file(format, stream, out, &name, threads, on_batch).await,
            (OutputWriter::Upload(out), format) => write_file(format, stream, out, &name, threads, on_batch).await,
            (OutputWriter::Postgres(table), _) => table.write(stream, on_batch).await.map(|rows| Written { rows, unread: 0 }),
            (OutputWriter::Delta(files), _) => delta::write(&files, stream, &name, on_batch).await.map(|rows| Written { rows, unread: 0 }),
            (OutputWriter::Discard, _) => discard(stream, &name, on_batch).await,
        }
    }
}

/// Writes `stream` to a file or object in `format`.
async fn write_file<W: tokio::io::AsyncWrite + Unpin + Send>(
    format: Format,
    stream: SendableRecordBatchStream,
    out: W,
    name: &str,
    threads: usize,
    on_batch: impl FnMut(&RecordBatch),
) -> Result<Written, SinkError> {
    match format {
        Format::Csv => csv::write(stream, out, name, threads, on_batch).await,
        Format::Parquet => parquet::write(stream, out, name, on_batch).await.map(|rows| Written { rows, unread: 0 }),
        Format::Delta => unreachable!("a Delta output is a Destination::Delta, not a file"),
    }
}

/// Drains `stream`, each batch seen by `on_batch`, and counts its rows as
/// computed but not written.
async fn discard(
    mut stream: SendableRecordBatchStream,
    name: &str,
    mut on_batch: impl FnMut(&RecordBatch),
) -> Result<Written, SinkError> {
    use futures::StreamExt;
    let mut unread = 0;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|source| SinkError::Compute { path: name.to_string(), source })?;
        on_batch(&batch);
        unread += batch.num_rows() as u64;
    }
    Ok(Written { rows: 0, unread })
}

/// `schema` with its timestamps in `unit`: Parquet has no timestamp in
/// seconds, Delta only microseconds.
pub fn with_timestamps_in(schema: &arrow::datatypes::SchemaRef, unit: arrow::datatypes::TimeUnit) -> arrow::datatypes::SchemaRef {
    use arrow::datatypes::{DataType, Field, Schema};
    let fields = schema.fields().iter().map(|field| match field.data_type() {
        DataType::Timestamp(_, zone) => Field::new(field.name(), DataType::Timestamp(unit, zone.clone()), field.is_nullable()),
        _ => field.as_ref().clone(),
    });
    std::sync::Arc::new(Schema::new(fields.collect::<Vec<_>>()))
}

/// `batch` with its columns cast to the types of `schema` (same columns, in order).
pub fn cast_to(batch: &RecordBatch, schema: &arrow::datatypes::SchemaRef) -> Result<RecordBatch, arrow::error::ArrowError> {
    let columns = batch.columns().iter().zip(schema.fields()).map(|(column, field)| arrow::compute::cast(column, field.data_type()));
    RecordBatch::try_new(schema.clone(), columns.collect::<Result<Vec<_>, _>>()?)
}
