//! Parquet output: the column types of SPEC 2, timestamps without time zone,
//! Snappy-compressed (what Tableau and Spark read by default).

use arrow::record_batch::RecordBatch;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::StreamExt;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tokio::io::AsyncWrite;

use crate::error::SinkError;

/// Writes every batch of `stream` to `out` as one Parquet file; returns the rows written.
pub async fn write<W: AsyncWrite + Unpin + Send>(
    mut stream: SendableRecordBatchStream,
    out: W,
    name: &str,
    mut on_batch: impl FnMut(&RecordBatch),
) -> Result<u64, SinkError> {
    let write_error = |source: parquet::errors::ParquetError| SinkError::Write {
        path: name.to_string(),
        source: source.into(),
    };
    let properties = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut writer =
        AsyncArrowWriter::try_new(out, stream.schema(), Some(properties)).map_err(write_error)?;
    let mut rows = 0;
    while let Some(batch) = stream.next().await {
        let batch =
            batch.map_err(|source| SinkError::Compute { path: name.to_string(), source })?;
        on_batch(&batch);
        writer.write(&batch).await.map_err(write_error)?;
        rows += batch.num_rows() as u64;
    }
    writer.close().await.map_err(write_error)?;
    Ok(rows)
}
