//! CSV output as SPEC 2.3 fixes it: a header line, RFC 4180 quoting, `\n`
//! line ends, nulls as empty fields, timestamps as `YYYY-MM-DD HH:MM:SS`.
//! Batches are encoded on blocking threads, several at once, and written in
//! order: encoding is most of the cost of writing.

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, LargeStringArray, StringArray, StringViewArray,
    TimestampSecondArray, UInt64Array,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::{Datelike, Timelike};
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::{StreamExt, TryStreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::Written;
use crate::error::SinkError;

/// The `date_time` format of every CSV output, as chrono spells it.
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Encodes one batch as CSV, with the header line if `header` is set.
///
/// The bytes are arrow-csv's with its default options (the `csv` crate's
/// quoting: a field with a comma, quote, CR or LF is quoted, quotes
/// doubled; a lone empty field written `""`), but for timestamps, which are
/// `YYYY-MM-DD HH:MM:SS`. Integers, text, booleans and timestamps are
/// written straight from their arrays: arrow-csv formats every value
/// through `Display` into a string and copies it twice, a fifth of the CPU
/// of a 10-million-row run (bench/README.md). Other types still go through
/// arrow's display formatting, as arrow-csv writes them.
pub fn encode(batch: &RecordBatch, header: bool) -> Result<Vec<u8>, ArrowError> {
    let options = FormatOptions::default().with_null("");
    let columns = batch.columns().iter().map(|array| Column::new(array, &options)).collect::<Result<Vec<_>, _>>()?;
    let mut bytes = Vec::with_capacity(batch.num_rows() * 128 + 256);
    if header {
        let schema = batch.schema();
        push_line(&mut bytes, columns.len(), |index, out| {
            push_field(schema.field(index).name().as_bytes(), out);
            Ok(())
        })?;
    }
    let mut text = String::new();
    for row in 0..batch.num_rows() {
        push_line(&mut bytes, columns.len(), |index, out| {
            columns[index].write(row, out, &mut text).map_err(|e| {
                ArrowError::CsvError(format!("Error processing row {}, col {}: {e}", row + 1, index + 1))
            })
        })?;
    }
    Ok(bytes)
}

/// One column of a batch being encoded, by how its values are written.
enum Column<'a> {
    /// Signed integers, widened to 64 bits.
    Signed(Int64Array),
    /// Unsigned integers, widened to 64 bits.
    Unsigned(UInt64Array),
    /// Text, quoted where it needs to be.
    Text(StringArray),
    /// Text with 64-bit offsets.
    LargeText(LargeStringArray),
    /// Text in views.
    TextView(StringViewArray),
    /// `true` or `false`.
    Boolean(BooleanArray),
    /// Timestamps without a time zone, in whole seconds.
    Seconds(TimestampSecondArray),
    /// Any other type, as arrow's display formatting writes it.
    Formatted(ArrayFormatter<'a>),
}

impl<'a> Column<'a> {
    fn new(array: &'a ArrayRef, options: &'a FormatOptions) -> Result<Self, ArrowError> {
        use DataType::*;
        Ok(match array.data_type() {
            Int8 | Int16 | Int32 | Int64 => Column::Signed(cast(array, &Int64)?.as_primitive().clone()),
            UInt8 | UInt16 | UInt32 | UInt64 => Column::Unsigned(cast(array, &UInt64)?.as_primitive().clone()),
            Utf8 => Column::Text(array.as_string().clone()),
            LargeUtf8 => Column::LargeText(array.as_string().clone()),
            Utf8View => Column::TextView(array.as_string_view().clone()),
            Boolean => Column::Boolean(array.as_boolean().clone()),
            Timestamp(_, None) => Column::Seconds(cast(array, &Timestamp(TimeUnit::Second, None))?.as_primitive().clone()),
            nested if nested.is_nested() => {
                return Err(ArrowError::CsvError(format!("Nested type {nested} is not supported in CSV")));
            }
            _ => Column::Formatted(ArrayFormatter::try_new(array.as_ref(), options)?),
        })
    }

    /// Appends the field of `row` to `out` (nothing for a null); `text` is
    /// scratch space for formatted values.
    fn write(&self, row: usize, out: &mut Vec<u8>, text: &mut String) -> Result<(), ArrowError> {
        let mut integer = itoa::Buffer::new();
        match self {
            Column::Signed(array) if array.is_valid(row) => out.extend_from_slice(integer.format(array.value(row)).as_bytes()),
            Column::Unsigned(array) if array.is_valid(row) => out.extend_from_slice(integer.format(array.value(row)).as_bytes()),
            Column::Text(array) if array.is_valid(row) => push_field(array.value(row).as_bytes(), out),
            Column::LargeText(array) if array.is_valid(row) => push_field(array.value(row).as_bytes(), out),
            Column::TextView(array) if array.is_valid(row) => push_field(array.value(row).as_bytes(), out),
            Column::Boolean(array) if array.is_valid(row) => {
                out.extend_from_slice(if array.value(row) { b"true" } else { b"false" })
            }
            Column::Seconds(array) if array.is_valid(row) => {
                if let Some(time) = chrono::DateTime::from_timestamp(array.value(row), 0) {
                    push_date_time(&time.naive_utc(), out);
                }
            }
            Column::Formatted(formatter) => {
                text.clear();
                formatter.value(row).write(text)?;
                push_field(text.as_bytes(), out);
            }
            _ => {}
        }
        Ok(())
    }
}

/// Appends a line of `width` fields, each written by `field(index, out)`.
/// A lone empty field is written `""`, so that the line does not read as
/// blank (the `csv` crate's rule).
fn push_line(
    out: &mut Vec<u8>,
    width: usize,
    mut field: impl FnMut(usize, &mut Vec<u8>) -> Result<(), ArrowError>,
) -> Result<(), ArrowError> {
    for index in 0..width {
        if index > 0 {
            out.push(b',');
        }
        let start = out.len();
        field(index, out)?;
        if width == 1 && out.len() == start {
            out.extend_from_slice(b"\"\"");
        }
    }
    out.push(b'\n');
    Ok(())
}

/// Appends `field`, quoted (quotes doubled) if it holds a comma, a quote, a
/// CR or an LF.
fn push_field(field: &[u8], out: &mut Vec<u8>) {
    if field.iter().any(|byte| matches!(byte, b',' | b'"' | b'\r' | b'\n')) {
        out.push(b'"');
        for piece in field.split_inclusive(|byte| *byte == b'"') {
            out.extend_from_slice(piece);
            if piece.last() == Some(&b'"') {
                out.push(b'"');
            }
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(field);
    }
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

/// Appends `time` as `YYYY-MM-DD HH:MM:SS` (years 0 to 9999).
fn push_date_time(time: &chrono::NaiveDateTime, out: &mut Vec<u8>) {
    let fields = [
        (time.year().clamp(0, 9999) as u32, 4, b'-'),
        (time.month(), 2, b'-'),
        (time.day(), 2, b' '),
        (time.hour(), 2, b':'),
        (time.minute(), 2, b':'),
        (time.second(), 2, 0),
    ];
    for (value, width, separator) in fields {
        let digits = [value / 1000 % 10, value / 100 % 10, value / 10 % 10, value % 10];
        out.extend(digits[4 - width..].iter().map(|d| b'0' + *d as u8));
        if separator != 0 {
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
            let mut out = Vec::new();
            push_date_time(&time, &mut out);
            assert_eq!(out, text.as_bytes());
            assert_eq!(time.format(TIMESTAMP_FORMAT).to_string(), text, "the chrono spelling agrees");
        }
    }

    /// The CSV arrow-csv writes for `batch` (default options), timestamps
    /// turned into text by chrono first: what `encode` must equal.
    fn arrow_csv(batch: &RecordBatch, header: bool) -> Vec<u8> {
        use arrow::array::StringArray;
        use arrow::datatypes::{Field, Schema};
        let (fields, columns): (Vec<Field>, Vec<ArrayRef>) = batch
            .schema()
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(field, column)| match field.data_type() {
                DataType::Timestamp(_, None) => {
                    let seconds = cast(column, &DataType::Timestamp(TimeUnit::Second, None)).unwrap();
                    let text: StringArray = seconds
                        .as_primitive::<arrow::datatypes::TimestampSecondType>()
                        .iter()
                        .map(|s| s.and_then(|s| chrono::DateTime::from_timestamp(s, 0)).map(|t| t.format(TIMESTAMP_FORMAT).to_string()))
                        .collect();
                    (Field::new(field.name(), DataType::Utf8, true), std::sync::Arc::new(text) as ArrayRef)
                }
                _ => (field.as_ref().clone(), column.clone()),
            })
            .unzip();
        let batch = RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns).unwrap();
        let mut bytes = Vec::new();
        arrow::csv::WriterBuilder::new().with_header(header).build(&mut bytes).write(&batch).unwrap();
        bytes
    }

    /// A column of `rows` values of one of the types the outputs hold, or
    /// of a type only arrow's formatting writes, with nulls.
    fn column(rows: usize) -> impl Strategy<Value = ArrayRef> {
        use arrow::array::*;
        use proptest::collection::vec;
        use proptest::option::of;
        let text = vec(prop::sample::select(vec!['a', 'b', ',', '"', '\r', '\n', ' ', 'é']), 0..6)
            .prop_map(|chars| chars.into_iter().collect::<String>());
        // years 0 to 9999, in milliseconds, the range CSV writes
        let millis = -62_167_219_200_000i64..253_402_300_799_000;
        prop_oneof![
            vec(of(any::<i64>()), rows).prop_map(|v| std::sync::Arc::new(Int64Array::from(v)) as ArrayRef),
            vec(of(any::<i8>()), rows).prop_map(|v| std::sync::Arc::new(Int8Array::from(v)) as ArrayRef),
            vec(of(any::<u64>()), rows).prop_map(|v| std::sync::Arc::new(UInt64Array::from(v)) as ArrayRef),
            vec(of(any::<bool>()), rows).prop_map(|v| std::sync::Arc::new(BooleanArray::from(v)) as ArrayRef),
            vec(of(text.clone()), rows).prop_map(|v| std::sync::Arc::new(StringArray::from(v)) as ArrayRef),
            vec(of(text.clone()), rows).prop_map(|v| std::sync::Arc::new(LargeStringArray::from(v)) as ArrayRef),
            vec(of(text), rows).prop_map(|v| std::sync::Arc::new(StringViewArray::from(v)) as ArrayRef),
            vec(of(millis), rows).prop_map(|v| std::sync::Arc::new(TimestampMillisecondArray::from(v)) as ArrayRef),
            vec(of(any::<f64>()), rows).prop_map(|v| std::sync::Arc::new(Float64Array::from(v)) as ArrayRef),
            vec(of(-1000i32..100_000), rows).prop_map(|v| std::sync::Arc::new(Date32Array::from(v)) as ArrayRef),
        ]
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn encode_writes_what_arrow_csv_writes(
            columns in (1usize..5, 0usize..8).prop_flat_map(|(width, rows)| proptest::collection::vec(column(rows), width)),
            names in proptest::collection::vec(prop::sample::select(vec!["item_id", "a,b", "", "say \"hi\""]), 5),
            header: bool,
        ) {
            let fields: Vec<_> = columns.iter().zip(&names).map(|(c, name)| arrow::datatypes::Field::new(*name, c.data_type().clone(), true)).collect();
            let batch = RecordBatch::try_new(std::sync::Arc::new(arrow::datatypes::Schema::new(fields)), columns).unwrap();
            let (ours, theirs) = (encode(&batch, header).unwrap(), arrow_csv(&batch, header));
            prop_assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs));
        }
    }
}
