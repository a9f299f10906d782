//! Parquet output: the column types of SPEC 2, timestamps without time zone,
//! Snappy-compressed (what Tableau and Spark read by default). Parquet has no
//! timestamp in seconds, so date_time is written in milliseconds.

use arrow::datatypes::TimeUnit;
use arrow::record_batch::RecordBatch;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::StreamExt;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use tokio::io::AsyncWrite;

use crate::error::SinkError;

/// Rows per row group, as DuckDB writes them. The writer holds a row group's
/// pages in memory until it is complete; at the crate's default of a million
/// rows, zeroing the fresh pages of those buffers took 14% of a run's CPU.
const ROW_GROUP_ROWS: usize = 122_880;

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
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        // trans_id is a GUID, nearly one per row: a dictionary of it costs
        // time and saves no space.
        .set_column_dictionary_enabled(ColumnPath::from("trans_id"), false)
        .build();
    let schema = super::with_timestamps_in(&stream.schema(), TimeUnit::Millisecond);
    let mut writer = AsyncArrowWriter::try_new(out, schema.clone(), Some(properties)).map_err(write_error)?;
    let mut rows = 0;
    while let Some(batch) = stream.next().await {
        let batch =
            batch.map_err(|source| SinkError::Compute { path: name.to_string(), source })?;
        on_batch(&batch);
        let columns = super::cast_to(&batch, &schema).map_err(|source| write_error(source.into()))?;
        writer.write(&columns).await.map_err(write_error)?;
        rows += batch.num_rows() as u64;
    }
    writer.close().await.map_err(write_error)?;
    Ok(rows)
}
