//! CSV exports: finding the files of each table in a directory and reading
//! one file (or object, or bytes in memory: a [`Source`]) into typed record
//! batches and rejects.
//!
//! arrow-csv's decoder splits the records into text columns, a batch at a
//! time; the fields are then typed by the code every source shares. SPEC 1.3
//! asks for what arrow-csv cannot give – a record with the wrong number of
//! fields is one reject, not a failed batch, and every reject carries its line
//! number and text – so a batch with any bad record is read again record by
//! record with the csv-core state machine arrow-csv also uses
//! (`records.rs`, which also counts the lines).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::StringArray;
use arrow_csv::reader::Decoder;
use arrow_schema::{DataType, Field, Schema};

use crate::dialect::normalize_header;
use crate::records::{Position, Record, RecordSplitter};
use crate::typing::{BATCH_ROWS, BatchBuilder, Fields, Value, type_fields};
use crate::{MAX_COLUMNS, Reject, RejectReason, Table, TableRead};

/// A CSV input that cannot be found or read as a whole (a bad record is a
/// [`Reject`], not an error).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The input directory is missing.
    #[error("input directory {0} does not exist")]
    MissingDir(PathBuf),
    /// A required input file is missing.
    #[error("missing input file {0}")]
    MissingFile(PathBuf),
    /// No file matches a required pattern.
    #[error("no {pattern} file in {dir}")]
    NoFiles {
        /// The directory searched.
        dir: PathBuf,
        /// The file-name pattern.
        pattern: &'static str,
    },
    /// The input cannot be opened or read.
    #[error("cannot read {name}")]
    Read {
        /// The input.
        name: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The input has no header line.
    #[error("{0} is empty: expected a header line")]
    Empty(String),
    /// The header lacks a required column.
    #[error("{name}: the header has no {column} column (found: {found})")]
    MissingColumn {
        /// The input.
        name: String,
        /// The missing column.
        column: &'static str,
        /// The header as read, normalised.
        found: String,
    },
}

/// Bytes a CSV reader can read from any offset: a local file, an object in
/// a bucket, or bytes in memory.
pub trait Source: Sync {
    /// The name positions are given in (`NAME:line`).
    fn name(&self) -> String;
    /// A reader of the bytes from `offset` on.
    fn open_at(&self, offset: u64) -> std::io::Result<Box<dyn BufRead + Send + '_>>;
}

impl Source for PathBuf {
    fn name(&self) -> String {
        self.display().to_string()
    }

    fn open_at(&self, offset: u64) -> std::io::Result<Box<dyn BufRead + Send + '_>> {
        let mut file = File::open(self)?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(BufReader::with_capacity(1 << 20, file)))
    }
}

/// The first `end` bytes of another source: a file read up to where a
/// run decided to stop, however much is appended meanwhile.
pub struct Prefix<'a> {
    /// The whole source.
    pub source: &'a dyn Source,
    /// Bytes readable from its start.
    pub end: u64,
}

impl Source for Prefix<'_> {
    fn name(&self) -> String {
        self.source.name()
    }

    fn open_at(&self, offset: u64) -> std::io::Result<Box<dyn BufRead + Send + '_>> {
        Ok(Box::new(self.source.open_at(offset)?.take(self.end.saturating_sub(offset))))
    }
}

/// Bytes in memory under a name: for tests and fuzzing.
#[derive(Debug, Clone, Copy)]
pub struct Bytes<'a> {
    /// The name positions are given in.
    pub name: &'a str,
    /// The whole input.
    pub bytes: &'a [u8],
}

impl Source for Bytes<'_> {
    fn name(&self) -> String {
        self.name.to_string()
    }

    fn open_at(&self, offset: u64) -> std::io::Result<Box<dyn BufRead + Send + '_>> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(self.bytes.len());
        Ok(Box::new(&self.bytes[start..]))
    }
}

/// The input files of one table.
#[derive(Debug, Clone)]
pub struct TableFiles {
    /// The table.
    pub table: Table,
    /// Its files, sorted by name.
    pub paths: Vec<PathBuf>,
}

/// Finds the files of each of `tables` in `dir` (SPEC 1): `store.csv`,
/// `item.csv`, `inventory_change_type.csv`, and one or more
/// `inventory_snapshot_*.csv` and `inventory_change_*.csv`.
pub fn discover(dir: &Path, tables: &[Table]) -> Result<Vec<TableFiles>, FileError> {
    if !dir.is_dir() {
        return Err(FileError::MissingDir(dir.to_path_buf()));
    }
    let names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|source| FileError::Read { name: dir.display().to_string(), source })?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_type().is_ok_and(|kind| !kind.is_dir()))
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    Ok(select(dir, &names, tables)?
        .into_iter()
        .map(|(table, names)| TableFiles { table, paths: names.iter().map(|name| dir.join(name)).collect() })
        .collect())
}

/// The names among `names` (the entries of `dir`, a directory or an object
/// prefix) that are the files of each of `tables`, sorted; an error naming
/// the first table that has none.
pub fn select(dir: &Path, names: &[String], tables: &[Table]) -> Result<Vec<(Table, Vec<String>)>, FileError> {
    let mut names = names.to_vec();
    names.sort();
    tables
        .iter()
        .map(|&table| {
            let mine: Vec<String> = names.iter().filter(|name| file_belongs_to(name, table)).cloned().collect();
            if mine.is_empty() {
                return Err(match fixed_file_name(table) {
                    Some(name) => FileError::MissingFile(dir.join(name)),
                    None => FileError::NoFiles { dir: dir.to_path_buf(), pattern: file_pattern(table) },
                });
            }
            Ok((table, mine))
        })
        .collect()
}

fn fixed_file_name(table: Table) -> Option<&'static str> {
    match table {
        Table::Store => Some("store.csv"),
        Table::Item => Some("item.csv"),
        Table::InventoryChangeType => Some("inventory_change_type.csv"),
        Table::InventorySnapshot | Table::InventoryChange => None,
    }
}

fn file_pattern(table: Table) -> &'static str {
    match table {
        Table::InventorySnapshot => "inventory_snapshot_*.csv",
        Table::InventoryChange => "inventory_change_*.csv",
        other => fixed_file_name(other).expect("lookup tables have a fixed file name"),
    }
}

/// Whether a file name is one of `table`'s files. `inventory_change_type.csv`
/// also matches `inventory_change_*.csv`, and is a lookup, not changes.
fn file_belongs_to(name: &str, table: Table) -> bool {
    if let Some(fixed) = fixed_file_name(table) {
        return name == fixed;
    }
    let prefix = match table {
        Table::InventorySnapshot => "inventory_snapshot_",
        _ => "inventory_change_",
    };
    name.starts_with(prefix)
        && name.ends_with(".csv")
        && name.len() > prefix.len() + ".csv".len()
        && fixed_file_name(Table::InventoryChangeType) != Some(name)
}

/// How a CSV input is read. Both ways give the same rows and rejects (the
/// fuzzers check it); the fast one is several times faster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadPath {
    /// Batches by arrow-csv's decoder, record by record only for a batch
    /// with a bad record. Lookups go record by record anyway, for the check
    /// of repeated ids.
    Fast,
    /// Record by record throughout.
    RecordByRecord,
}

/// Reads one CSV input of `table` into memory. `on_bytes` is called with each
/// further number of bytes read.
pub fn read_file(table: Table, source: &dyn Source, path: ReadPath, on_bytes: impl Fn(u64)) -> Result<TableRead, FileError> {
    let mut batches = Vec::new();
    let mut read = stream_file(table, source, path, on_bytes, |batch| {
        batches.push(batch);
        ControlFlow::Continue(())
    })?;
    read.batches = batches;
    Ok(read)
}

/// Checks that `source` has a header with the required columns of `table`,
/// without reading further: a run fails on a bad header before it starts.
pub fn check_header(table: Table, source: &dyn Source) -> Result<(), FileError> {
    Layout::read(table, source).map(drop)
}

/// Reads one CSV file of `table`, handing each batch of typed rows to
/// `on_batch` as it is full, until the end or until `on_batch` breaks.
/// Returns the count of records read and the rejects; its `batches` are
/// empty. `on_bytes` is called with each further number of bytes read.
///
/// Batches are split and typed by arrow-csv's decoder. A batch in which any
/// record is bad (wrong field count, an untypable field) is read again by
/// [`RecordReader`], record by record, for each reject's line and text.
/// Lookup files always go record by record, for the check of repeated ids.
pub fn stream_file(
    table: Table,
    source: &dyn Source,
    path: ReadPath,
    on_bytes: impl Fn(u64),
    on_batch: impl FnMut(RecordBatch) -> ControlFlow<()>,
) -> Result<TableRead, FileError> {
    stream_from(table, source, None, path, on_bytes, on_batch)
}

/// Reads the records of `source` that start at or after `from` (a record
/// boundary past the header, such as the end of an earlier read) into
/// memory, the header still read for the file's layout: the grown tail of
/// an appended file.
pub fn read_from(table: Table, source: &dyn Source, from: Position) -> Result<TableRead, FileError> {
    let mut batches = Vec::new();
    let mut read = stream_from(table, source, Some(from), ReadPath::Fast, |_| {}, |batch| {
        batches.push(batch);
        ControlFlow::Continue(())
    })?;
    read.batches = batches;
    Ok(read)
}

/// [`stream_file`] from the record at `from` (the first after the header if `None`).
fn stream_from(
    table: Table,
    source: &dyn Source,
    from: Option<Position>,
    path: ReadPath,
    on_bytes: impl Fn(u64),
    mut on_batch: impl FnMut(RecordBatch) -> ControlFlow<()>,
) -> Result<TableRead, FileError> {
    let layout = Layout::read(table, source)?;
    let mut read = TableRead::empty(table);
    let read_error = |error| FileError::Read { name: source.name(), source: error };
    // The first record of the batch being decoded, and the end of what the decoder took.
    let mut start = from.filter(|from| from.byte > layout.data_start.byte).unwrap_or(layout.data_start);
    let mut decoded_to = start;
    let mut file = source.open_at(start.byte).map_err(read_error)?;
    let mut decoder = (table.is_event() && path == ReadPath::Fast).then(|| layout.decoder());
    let mut records = RecordReader::new(&layout, source);
    loop {
        let Some(fast) = decoder.as_mut() else {
            // Record by record to the end.
            let (batch, end) = records.read(start, usize::MAX, &mut read)?;
            on_bytes(end.byte - start.byte);
            if batch.num_rows() > 0 {
                let _ = on_batch(batch);
            }
            return Ok(read);
        };
        let buffer = file.fill_buf().map_err(read_error)?;
        let at_end = buffer.is_empty();
        let decoded = match fast.decode(buffer) {
            Ok(consumed) => {
                decoded_to = decoded_to.after(&buffer[..consumed]);
                file.consume(consumed);
                if fast.capacity() > 0 && !at_end {
                    continue;
                }
                fast.flush()
            }
            Err(error) => Err(error),
        };
        let typed = match decoded {
            Ok(None) if at_end => return Ok(read),
            Ok(None) => continue,
            Ok(Some(strings)) => layout.type_batch(&strings),
            Err(_) => None,
        };
        let (batch, next) = match typed {
            Some(batch) => {
                read.records += batch.num_rows() as u64;
                (batch, decoded_to)
            }
            None => {
                // Some record of this batch is bad: read it again record by record.
                let (batch, next) = records.read(start, BATCH_ROWS, &mut read)?;
                file = source.open_at(next.byte).map_err(read_error)?;
                *fast = layout.decoder();
                (batch, next)
            }
        };
        on_bytes(next.byte - start.byte);
        start = next;
        decoded_to = next;
        if batch.num_rows() > 0 && on_batch(batch).is_break() {
            return Ok(read);
        }
    }
}

/// What a file's header says about reading it.
struct Layout {
    table: Table,
    /// Fields in the header; every record must have as many.
    fields: usize,
    /// For each column of the table, its field index in the file, if any.
    positions: Vec<Option<usize>>,
    /// Where the first record after the header starts.
    data_start: Position,
}

impl Layout {
    fn read(table: Table, source: &dyn Source) -> Result<Layout, FileError> {
        let read_error = |error| FileError::Read { name: source.name(), source: error };
        let input = source.open_at(0).map_err(read_error)?;
        let mut splitter = RecordSplitter::new(input, Position::START);
        let header = match splitter.next_record().map_err(read_error)? {
            Some(header) if (0..header.len()).any(|i| header.get(i).is_some_and(|f| !f.trim_ascii().is_empty())) => {
                (0..header.len()).map(|i| String::from_utf8_lossy(header.get(i).unwrap_or_default()).into_owned()).collect::<Vec<_>>()
            }
            _ => return Err(FileError::Empty(source.name())),
        };
        let positions = column_positions(table, source, &header)?;
        Ok(Layout { table, fields: header.len(), positions, data_start: splitter.position() })
    }

    /// An arrow-csv decoder of the file's records (past the header) into
    /// text columns: the table's columns the file has, in table order.
    fn decoder(&self) -> Decoder {
        let schema = Schema::new(
            (0..self.fields).map(|index| Field::new(format!("field{index}"), DataType::Utf8, true)).collect::<Vec<_>>(),
        );
        arrow_csv::ReaderBuilder::new(Arc::new(schema))
            .with_header(false)
            .with_batch_size(BATCH_ROWS)
            .with_projection(self.positions.iter().flatten().copied().collect())
            .build_decoder()
    }

    /// The text columns of `strings` typed into the table's schema, or
    /// `None` if any record cannot be.
    fn type_batch(&self, strings: &RecordBatch) -> Option<RecordBatch> {
        let mut projected = strings.columns().iter().map(|column| column.as_string::<i32>());
        let columns: Vec<Option<&StringArray>> =
            self.positions.iter().map(|position| position.and_then(|_| projected.next())).collect();
        let mut batch = BatchBuilder::new(self.table);
        for row in 0..strings.num_rows() {
            let mut fields: Fields<'_> = [None; MAX_COLUMNS];
            for (field, column) in fields.iter_mut().zip(&columns) {
                *field = column.map(|c| c.value(row));
            }
            let values = type_fields(self.table.columns(), &fields).ok()?;
            batch.append(&values[..self.positions.len()]);
        }
        Some(batch.finish())
    }
}

/// Reads records one by one: the way for lookups and for batches that hold
/// a bad record, which becomes a [`Reject`] with its line and text.
struct RecordReader<'a> {
    table: Table,
    source: &'a dyn Source,
    fields: usize,
    positions: Vec<Option<usize>>,
    keys: LookupKeys,
}

impl<'a> RecordReader<'a> {
    fn new(layout: &Layout, source: &'a dyn Source) -> Self {
        RecordReader {
            table: layout.table,
            source,
            fields: layout.fields,
            positions: layout.positions.clone(),
            keys: LookupKeys::new(layout.table),
        }
    }

    /// Reads up to `limit` records from `start`, counting them and their
    /// rejects in `read`. Returns the typed rows and where the next record starts.
    fn read(&mut self, start: Position, limit: usize, read: &mut TableRead) -> Result<(RecordBatch, Position), FileError> {
        let display = self.source.name();
        let read_error = |error| FileError::Read { name: display.clone(), source: error };
        let input = self.source.open_at(start.byte).map_err(read_error)?;
        let mut records = RecordSplitter::new(input, start);
        let mut batch = BatchBuilder::new(self.table);
        let mut taken = 0;
        while taken < limit {
            let Some(record) = records.next_record().map_err(read_error)? else { break };
            taken += 1;
            read.records += 1;
            let typed = csv_fields(self.table, &self.positions, self.fields, &record)
                .and_then(|fields| type_fields(self.table.columns(), &fields))
                .and_then(|values| self.keys.check(&values, record.line).map(|()| values));
            match typed {
                Ok(values) => batch.append(&values[..self.positions.len()]),
                Err(reason) => read.rejects.push(Reject {
                    origin: format!("{display}:{}", record.line),
                    reason,
                    raw: String::from_utf8_lossy(record.raw).into_owned(),
                }),
            }
        }
        Ok((batch.finish(), records.position()))
    }
}

/// For each column of `table`, its field index in the file, if the header has it.
fn column_positions(table: Table, source: &dyn Source, header: &[String]) -> Result<Vec<Option<usize>>, FileError> {
    let names: Vec<String> = header.iter().map(|name| normalize_header(name)).collect();
    table
        .columns()
        .iter()
        .map(|column| match names.iter().position(|name| name == column.name) {
            Some(index) => Ok(Some(index)),
            None if column.required => Err(FileError::MissingColumn {
                name: source.name(),
                column: column.name,
                found: names.join(","),
            }),
            None => Ok(None),
        })
        .collect()
}

/// The ids seen so far in a lookup file: a lookup id given twice would
/// multiply every event that joins it, so the later row is rejected.
struct LookupKeys {
    column: Option<&'static str>,
    first_line: HashMap<i64, u64>,
}

impl LookupKeys {
    fn new(table: Table) -> Self {
        let column = (!table.is_event()).then(|| table.columns()[0].name);
        LookupKeys { column, first_line: HashMap::new() }
    }

    fn check(&mut self, values: &[Value<'_>], line: u64) -> Result<(), RejectReason> {
        let (Some(column), Value::Int(Some(id))) = (self.column, values[0]) else {
            return Ok(());
        };
        match self.first_line.entry(id) {
            Entry::Occupied(first) => {
                Err(RejectReason::DuplicateKey { column, value: id, first_line: *first.get() })
            }
            Entry::Vacant(slot) => {
                slot.insert(line);
                Ok(())
            }
        }
    }
}

/// The fields of `record` in the order of `table`'s columns (`None` for a
/// column the file lacks), checked for count and UTF-8.
fn csv_fields<'a>(
    table: Table,
    positions: &[Option<usize>],
    expected_fields: usize,
    record: &Record<'a>,
) -> Result<Fields<'a>, RejectReason> {
    if record.len() != expected_fields {
        return Err(RejectReason::FieldCount { expected: expected_fields, found: record.len() });
    }
    let mut fields: Fields<'a> = [None; MAX_COLUMNS];
    for ((column, position), field) in table.columns().iter().zip(positions).zip(&mut fields) {
        if let Some(bytes) = position.and_then(|index| record.get(index)) {
            *field = Some(
                std::str::from_utf8(bytes).map_err(|_| RejectReason::NotUtf8 { column: column.name })?,
            );
        }
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_files_exclude_the_change_type_lookup() {
        assert!(file_belongs_to("inventory_change_online.csv", Table::InventoryChange));
        assert!(!file_belongs_to("inventory_change_type.csv", Table::InventoryChange));
        assert!(file_belongs_to("inventory_change_type.csv", Table::InventoryChangeType));
        assert!(!file_belongs_to("inventory_change_.csv", Table::InventoryChange));
        assert!(file_belongs_to("inventory_snapshot_store_001.csv", Table::InventorySnapshot));
        assert!(!file_belongs_to("inventory_snapshot_store_001.csv.bak", Table::InventorySnapshot));
    }

    #[test]
    fn a_tail_is_read_from_where_an_earlier_read_stopped() {
        let text = b"\xEF\xBB\xBFstore_id,item_id,date_time,quantity,employee_id\r\n1,2,2021-01-01 09:00:00,5,7\r\n1,2,2021-01-02 09:00:00,x,7\r\n1,3,2021-01-03 09:00:00,6,7\r\n";
        let source = Bytes { name: "s.csv", bytes: text };
        // The first run saw the header and one record; the position after it is line 3.
        let first_end = text.windows(2).enumerate().filter(|(_, w)| w == b"\r\n").nth(1).unwrap().0 as u64 + 2;
        let first = read_from(Table::InventorySnapshot, &Prefix { source: &source, end: first_end }, Position::START).unwrap();
        assert_eq!(first.records, 1);
        let tail = read_from(Table::InventorySnapshot, &source, Position { byte: first_end, line: 3 }).unwrap();
        assert_eq!(tail.records, 2, "the two records after it, the header not read again as one");
        assert_eq!(tail.rejects[0].origin, "s.csv:3", "positions go on from where the first read stopped");
        assert_eq!(tail.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    }

    fn read_text(table: Table, text: &[u8]) -> TableRead {
        let source = Bytes { name: "input.csv", bytes: text };
        let fast = read_file(table, &source, ReadPath::Fast, |_| {}).expect("read fixture");
        let slow = read_file(table, &source, ReadPath::RecordByRecord, |_| {}).expect("read fixture");
        assert_eq!((fast.records, &fast.rejects), (slow.records, &slow.rejects), "both ways read alike");
        let rows = |read: &TableRead| arrow_select::concat::concat_batches(&table.schema(), &read.batches).unwrap();
        assert_eq!(rows(&fast), rows(&slow), "both ways read alike");
        fast
    }

    #[test]
    fn bom_crlf_and_header_case() {
        let read = read_text(
            Table::Store,
            b"\xEF\xBB\xBFStore_ID,NAME,Region\r\n0,online,web\r\n1,store_001,north\r\n",
        );
        assert_eq!(read.records, 2);
        assert!(read.rejects.is_empty(), "{:?}", read.rejects);
        let text = arrow_cast::pretty::pretty_format_batches(&read.batches).unwrap().to_string();
        assert!(text.contains("| 1        | store_001 |"), "{text}");
    }

    #[test]
    fn each_bad_record_is_one_reject_with_its_line() {
        let read = read_text(
            Table::InventoryChange,
            b"trans_id,item_id,store_id,date_time,quantity,change_type_id\n\
              {A},1,1,2021-01-03 10:00:00,-1,1\n\
              B,1,1,2021-01-03 10:00:00,-1\n\
              C,x,1,2021-01-03 10:00:00,-1,1\n\
              D,1,1,someday,-1,1\n\
              ,1,1,2021-01-03 10:00:00,-1,1\n\
              E,1,1,1/3/2021 10:00 AM,-1,1\n",
        );
        assert_eq!(read.records, 6);
        let found: Vec<(String, String)> = read
            .rejects
            .iter()
            .map(|r| (r.origin.rsplit(':').next().unwrap().to_string(), r.reason.to_string()))
            .collect();
        assert_eq!(
            found,
            [
                ("3".to_string(), "expected 6 fields, found 5".to_string()),
                ("4".to_string(), "item_id is not an integer: 'x'".to_string()),
                ("5".to_string(), "date_time is not a date: 'someday' (expected 2021-01-03 14:05:00, 1/3/2021 2:05 PM or ISO 8601)".to_string()),
                ("6".to_string(), "trans_id is empty".to_string()),
            ]
        );
        assert_eq!(read.rejects[0].raw, "B,1,1,2021-01-03 10:00:00,-1");
        assert_eq!(read.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
    }

    /// Bad records in the first record, past the first batches, and after
    /// a record that spans two lines, in every dialect of line ends: each is
    /// rejected with the line an editor shows and its text as read, and
    /// every good record is read once, in order.
    #[test]
    fn bad_records_keep_their_lines_in_every_dialect() {
        for (bom, end) in [("", "\n"), ("", "\r\n"), ("\u{feff}", "\r\n"), ("\u{feff}", "\n")] {
            let mut text = format!("{bom}trans_id,item_id,store_id,date_time,quantity,change_type_id{end}");
            let mut expected = Vec::new();
            let mut line = 2;
            for row in 0..3 * BATCH_ROWS {
                let record = match row {
                    0 | 9_000 => "T,1,1,2021-01-03 10:00:00,-1".to_string(),
                    100 => format!("\"T{end}wrapped\",1,1,2021-01-03 10:00:00,-1,1"),
                    20_000 => "  T,1,1,31/12/2021,-1,1 ".to_string(),
                    _ => format!("T{row},{row},1,2021-01-03 10:00:00,-1,1"),
                };
                if [0, 9_000, 20_000].contains(&row) {
                    expected.push((line, record.clone()));
                }
                text.push_str(&record);
                text.push_str(end);
                line += if row == 100 { 2 } else { 1 };
            }
            let read = read_text(Table::InventoryChange, text.as_bytes());
            assert_eq!(read.records, 3 * BATCH_ROWS as u64);
            let found: Vec<(u64, String)> = read
                .rejects
                .iter()
                .map(|r| (r.origin.rsplit(':').next().unwrap().parse().unwrap(), r.raw.clone()))
                .collect();
            assert_eq!(found, expected, "BOM {bom:?}, line end {end:?}");
            let item_ids: Vec<i64> = read
                .batches
                .iter()
                .flat_map(|b| b.column(1).as_primitive::<arrow_array::types::Int64Type>().values().to_vec())
                .collect();
            let expected: Vec<i64> = (0..3 * BATCH_ROWS as i64)
                .filter(|row| ![0, 9_000, 20_000].contains(row))
                .map(|row| if row == 100 { 1 } else { row })
                .collect();
            assert_eq!(item_ids, expected);
        }
    }

    /// A repeated id in a CRLF lookup names both lines as an editor shows them.
    #[test]
    fn repeated_lookup_ids_name_their_lines_in_crlf_files() {
        let read = read_text(Table::Store, b"store_id,name\r\n0,online\r\n1,store_001\r\n1,store_002\r\n");
        let rejects: Vec<(&str, String)> =
            read.rejects.iter().map(|r| (r.origin.rsplit(':').next().unwrap(), r.reason.to_string())).collect();
        assert_eq!(rejects, [("4", "store_id 1 is already defined on line 3".to_string())]);
    }
}
