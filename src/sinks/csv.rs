//! CSV output as SPEC 2.3 fixes it: a header line, RFC 4180 quoting, `\n`
//! line ends, nulls as empty fields, timestamps as `YYYY-MM-DD HH:MM:SS`.

use arrow::csv::WriterBuilder;
use arrow::record_batch::RecordBatch;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::StreamExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::error::SinkError;

/// The `date_time` format of every CSV output.
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Encodes one batch as CSV, with the header line if `header` is set.
pub fn encode(batch: &RecordBatch, header: bool) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let mut bytes = Vec::with_capacity(batch.num_rows() * 128);
    let mut writer = WriterBuilder::new()
        .with_header(header)
        .with_timestamp_format(TIMESTAMP_FORMAT.to_string())
        .build(&mut bytes);
    writer.write(batch)?;
    drop(writer);
    Ok(bytes)
}

/// Writes every batch of `stream` to `out` as one CSV document; returns the rows written.
/// An empty result still gets its header line.
pub async fn write<W: AsyncWrite + Unpin>(
    mut stream: SendableRecordBatchStream,
    mut out: W,
    name: &str,
    mut on_batch: impl FnMut(&RecordBatch),
) -> Result<u64, SinkError> {
    let write_error = |source: Box<dyn std::error::Error + Send + Sync>| SinkError::Write {
        path: name.to_string(),
        source,
    };
    let mut rows = 0;
    let mut header = true;
    while let Some(batch) = stream.next().await {
        let batch =
            batch.map_err(|source| SinkError::Compute { path: name.to_string(), source })?;
        on_batch(&batch);
        let bytes = encode(&batch, header).map_err(|e| write_error(e.into()))?;
        out.write_all(&bytes).await.map_err(|e| write_error(e.into()))?;
        rows += batch.num_rows() as u64;
        header = false;
    }
    if header {
        let bytes = encode(&RecordBatch::new_empty(stream.schema()), true)
            .map_err(|e| write_error(e.into()))?;
        out.write_all(&bytes).await.map_err(|e| write_error(e.into()))?;
    }
    out.shutdown().await.map_err(|e| write_error(e.into()))?;
    Ok(rows)
}
