//! Sinks write record batch streams to their destination: CSV or Parquet
//! files through object_store (staged under a temporary name and renamed only
//! when every output of the run is complete), or CSV on stdout. They also write
//! the rejects file and hold the per-output lock.

pub mod csv;
pub mod kafka;
pub mod lock;
pub mod parquet;
pub mod rejects;
pub mod staged;

use std::path::PathBuf;

use datafusion::physical_plan::SendableRecordBatchStream;

use crate::cli::Format;
use crate::error::SinkError;
pub use staged::StagedFile;

/// Where an output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// CSV on standard output.
    Stdout,
    /// A file, replaced atomically.
    File(PathBuf),
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Stdout => f.write_str("<stdout>"),
            Destination::File(path) => write!(f, "{}", path.display()),
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

/// Writes `stream` to `output`, encoding CSV on up to `threads` threads; a
/// file output is staged and must be committed with [`StagedFile::commit`]
/// once every output of the run is written. `on_batch` sees every batch
/// before it is written. Returns the rows written and the staged file, if any.
pub async fn write(
    output: &Output,
    stream: SendableRecordBatchStream,
    threads: usize,
    on_batch: impl FnMut(&arrow::record_batch::RecordBatch),
) -> Result<(u64, Option<StagedFile>), SinkError> {
    let name = output.destination.to_string();
    match &output.destination {
        Destination::Stdout => {
            let rows = csv::write(stream, tokio::io::stdout(), &name, threads, on_batch).await;
            match rows {
                Err(error) if is_broken_pipe(&error) => Ok((0, None)),
                other => Ok((other?, None)),
            }
        }
        Destination::File(path) => {
            let staged = StagedFile::new(path)?;
            let rows = match output.format {
                Format::Csv => csv::write(stream, staged.writer(), &name, threads, on_batch).await?,
                Format::Parquet => parquet::write(stream, staged.writer(), &name, on_batch).await?,
            };
            Ok((rows, Some(staged)))
        }
    }
}

/// Whether writing failed because the reader of stdout went away (`| head`),
/// which ends a run successfully, as in ripgrep and xsv.
fn is_broken_pipe(error: &SinkError) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::BrokenPipe;
        }
        cause = current.source();
    }
    false
}
