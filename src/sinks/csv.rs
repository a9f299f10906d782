//! CSV output as SPEC 2.3 fixes it: a header line, RFC 4180 quoting, `\n`
//! line ends, nulls as empty fields, timestamps as `YYYY-MM-DD HH:MM:SS`.
//! Batches are encoded on blocking threads, several at once, and written in
//! order: encoding is most of the cost of writing.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, StringBuilder};
use arrow::compute::cast;
use arrow::csv::WriterBuilder;
use arrow::datatypes::{DataType, Field, Schema, TimeUnit, TimestampSecondType};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use chrono::{Datelike, Timelike};
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::{StreamExt, TryStreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::Written;
use crate::error::SinkError;

/// The `date_time` format of every CSV output, as chrono spells it.
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Encodes one batch as CSV, with the header line if `header` is set.
pub fn encode(batch: &RecordBatch, header: bool) -> Result<Vec<u8>, ArrowError> {
    let batch = timestamps_as_text(batch)?;
    let mut bytes = Vec::with_capacity(batch.num_rows() * 128);
    let mut writer = WriterBuilder::new().with_header(header).build(&mut bytes);
    writer.write(&batch)?;
    drop(writer);
    Ok(bytes)
}

/// Writes every batch of `stream` to `out` as one CSV document, encoding
/// up to `threads` batches at once. An empty result still gets its header
/// line. If `out` is a pipe whose reader goes away (`| head`), the rest of
/// the stream is drained unwritten and counted as unread (from the batch
/// the reader did not take whole).
pub async fn write<W: AsyncWrite + Unpin>(
    stream: SendableRecordBatchStream,
    mut out: W,
    name: &str,
    threads: usize,
    mut on_batch: impl FnMut(&RecordBatch),
) -> Result<Written, SinkError> {
    let write_error = |source: Box<dyn std::error::Error + Send + Sync>| SinkError::Write {
        path: name.to_string(),
        source,
    };
    let schema = stream.schema();
    let mut encoded = stream
        .map_err(|source| SinkError::Compute { path: name.to_string(), source })
        .enumerate()
        .map(|(index, batch)| {
            let batch = batch.inspect(&mut on_batch);
            async move {
                let batch = batch?;
                let rows = batch.num_rows() as u64;
                let bytes = tokio::task::spawn_blocking(move || encode(&batch, index == 0))
                    .await
                    .expect("a CSV encoder panicked")
                    .map_err(|e| write_error(e.into()))?;
                Ok::<_, SinkError>((rows, bytes))
            }
        })
        .buffered(threads.max(1));
    let mut written = Written::default();
    let mut header = true;
    let mut reader_gone = false;
    while let Some(chunk) = encoded.next().await {
        let (rows, bytes) = chunk?;
        header = false;
        if reader_gone {
            written.unread += rows;
            continue;
        }
        match out.write_all(&bytes).await {
            Ok(()) => written.rows += rows,
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {
                reader_gone = true;
                written.unread += rows;
            }
            Err(error) => return Err(write_error(error.into())),
        }
    }
    if reader_gone {
        return Ok(written);
    }
    let header = match header {
        true => encode(&RecordBatch::new_empty(schema), true).map_err(|e| write_error(e.into()))?,
        false => Vec::new(),
    };
    match out.write_all(&header).await {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => return Ok(written),
        Err(error) => return Err(write_error(error.into())),
    }
    match out.shutdown().await {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(write_error(error.into())),
        _ => Ok(written),
    }
}

/// `batch` with every timestamp column as `YYYY-MM-DD HH:MM:SS` text.
/// arrow-csv formats a timestamp through chrono's format interpreter, which
/// costs more than encoding the rest of the row.
fn timestamps_as_text(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let is_timestamp = |data_type: &DataType| matches!(data_type, DataType::Timestamp(_, None));
    if !batch.schema().fields().iter().any(|field| is_timestamp(field.data_type())) {
        return Ok(batch.clone());
    }
    let (fields, columns): (Vec<Field>, Vec<ArrayRef>) = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, column)| {
            if !is_timestamp(field.data_type()) {
                return Ok((field.as_ref().clone(), column.clone()));
            }
            let seconds = cast(column, &DataType::Timestamp(TimeUnit::Second, None))?;
            let seconds = seconds.as_primitive::<TimestampSecondType>();
            let mut text = StringBuilder::with_capacity(seconds.len(), seconds.len() * 19);
            let mut line = String::with_capacity(19);
            for value in seconds.iter() {
                match value.and_then(|s| chrono::DateTime::from_timestamp(s, 0)) {
                    Some(time) => {
                        line.clear();
                        push_date_time(&time.naive_utc(), &mut line);
                        text.append_value(&line);
                    }
                    None => text.append_null(),
                }
            }
            let column: ArrayRef = Arc::new(text.finish());
            Ok((Field::new(field.name(), DataType::Utf8, field.is_nullable()), column))
        })
        .collect::<Result<Vec<_>, ArrowError>>()?
        .into_iter()
        .unzip();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// Appends `time` as `YYYY-MM-DD HH:MM:SS` (years 0 to 9999).
fn push_date_time(time: &chrono::NaiveDateTime, out: &mut String) {
    let fields = [
        (time.year().clamp(0, 9999) as u32, 4, '-'),
        (time.month(), 2, '-'),
        (time.day(), 2, ' '),
        (time.hour(), 2, ':'),
        (time.minute(), 2, ':'),
        (time.second(), 2, '\0'),
    ];
    for (value, width, separator) in fields {
        let digits = [value / 1000 % 10, value / 100 % 10, value / 10 % 10, value % 10];
        out.extend(digits[4 - width..].iter().map(|d| char::from(b'0' + *d as u8)));
        if separator != '\0' {
            out.push(separator);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_written_with_a_space_and_no_fraction() {
        for (seconds, text) in [(0, "1970-01-01 00:00:00"), (1_609_682_700, "2021-01-03 14:05:00"), (253_402_300_799, "9999-12-31 23:59:59")] {
            let time = chrono::DateTime::from_timestamp(seconds, 0).unwrap().naive_utc();
            let mut out = String::new();
            push_date_time(&time, &mut out);
            assert_eq!(out, text);
            assert_eq!(time.format(TIMESTAMP_FORMAT).to_string(), text, "the chrono spelling agrees");
        }
    }
}
