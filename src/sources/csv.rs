//! CSV exports: finding the files of each table in a directory and reading one
//! file into typed record batches and rejects.
//!
//! Records are split by the `csv` crate (the csv-core state machine that
//! arrow-csv also uses) rather than by arrow-csv's reader, because SPEC 1.3
//! needs what arrow-csv cannot give: a record with the wrong number of fields
//! must become one reject instead of failing its whole batch, and every reject
//! carries its line number and text. Fields go straight into Arrow builders.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use csv::ByteRecord;

use super::dialect::normalize_header;
use super::typing::{BATCH_ROWS, BatchBuilder, Fields, Value, type_fields};
use super::{MAX_COLUMNS, Table, TableRead};
use crate::error::{Reject, RejectReason, SourceError};

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
pub fn discover(dir: &Path, tables: &[Table]) -> Result<Vec<TableFiles>, SourceError> {
    if !dir.is_dir() {
        return Err(SourceError::MissingDir(dir.to_path_buf()));
    }
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|source| SourceError::Read { path: dir.to_path_buf(), source })?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_type().is_ok_and(|kind| !kind.is_dir()))
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    names.sort();
    tables
        .iter()
        .map(|&table| {
            let paths: Vec<PathBuf> = names
                .iter()
                .filter(|name| file_belongs_to(name, table))
                .map(|name| dir.join(name))
                .collect();
            if paths.is_empty() {
                return Err(match fixed_file_name(table) {
                    Some(name) => SourceError::MissingFile(dir.join(name)),
                    None => SourceError::NoFiles { dir: dir.to_path_buf(), pattern: file_pattern(table) },
                });
            }
            Ok(TableFiles { table, paths })
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

/// Reads every file of every table, files in parallel; one read per file, in
/// the order of `files`. `on_bytes` is called with each further number of bytes read.
pub async fn read_all(
    files: &[TableFiles],
    on_bytes: impl Fn(u64) + Clone + Send + 'static,
) -> Result<Vec<TableRead>, SourceError> {
    let tasks = files.iter().flat_map(|table_files| {
        table_files.paths.iter().map(|path| {
            let (table, path, on_bytes) = (table_files.table, path.clone(), on_bytes.clone());
            tokio::task::spawn_blocking(move || read_file(table, &path, on_bytes))
        })
    });
    futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|read| read.expect("a CSV reader task panicked"))
        .collect()
}

/// Reads one CSV file of `table`. `on_bytes` is called with each further number of bytes read.
pub fn read_file(
    table: Table,
    path: &Path,
    on_bytes: impl Fn(u64),
) -> Result<TableRead, SourceError> {
    let mut reported = 0;
    let mut on_progress = |position: u64| {
        on_bytes(position.saturating_sub(reported));
        reported = reported.max(position);
    };
    let read_error = |source| SourceError::Read { path: path.to_path_buf(), source };
    let file = File::open(path).map_err(read_error)?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(BufReader::with_capacity(1 << 20, file));
    let header = reader.byte_headers().map_err(|e| read_error(e.into()))?.clone();
    if header.is_empty() || header.iter().all(|field| field.is_empty()) {
        return Err(SourceError::Empty(path.to_path_buf()));
    }
    let positions = column_positions(table, path, &header)?;
    let display = path.display().to_string();

    let mut batch = BatchBuilder::new(table);
    let mut read = TableRead::empty(table);
    let mut record = ByteRecord::new();
    let mut keys = LookupKeys::new(table);
    while reader.read_byte_record(&mut record).map_err(|e| read_error(e.into()))? {
        read.records += 1;
        let line = record.position().map_or(0, |p| p.line());
        let typed = csv_fields(table, &positions, header.len(), &record)
            .and_then(|fields| type_fields(table.columns(), &fields))
            .and_then(|values| keys.check(&values, line).map(|()| values));
        match typed {
            Ok(values) => batch.append(&values[..positions.len()]),
            Err(reason) => read.rejects.push(Reject {
                origin: format!("{display}:{line}"),
                reason,
                raw: requote(&record),
            }),
        }
        if batch.rows == BATCH_ROWS {
            read.batches.push(batch.finish());
            on_progress(record.position().map_or(0, |p| p.byte()));
        }
    }
    if batch.rows > 0 {
        read.batches.push(batch.finish());
    }
    on_progress(reader.position().byte());
    Ok(read)
}

/// For each column of `table`, its field index in the file, if the header has it.
fn column_positions(
    table: Table,
    path: &Path,
    header: &ByteRecord,
) -> Result<Vec<Option<usize>>, SourceError> {
    let names: Vec<String> =
        header.iter().map(|name| normalize_header(&String::from_utf8_lossy(name))).collect();
    table
        .columns()
        .iter()
        .map(|column| match names.iter().position(|name| name == column.name) {
            Some(index) => Ok(Some(index)),
            None if column.required => Err(SourceError::MissingColumn {
                path: path.to_path_buf(),
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
    record: &'a ByteRecord,
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

/// The record as one CSV line, for the rejects file.
fn requote(record: &ByteRecord) -> String {
    let mut writer = csv::WriterBuilder::new().flexible(true).from_writer(Vec::new());
    let line = writer
        .write_byte_record(record)
        .map_err(|e| e.to_string())
        .and_then(|()| writer.into_inner().map_err(|e| e.to_string()));
    match line {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim_end().to_string(),
        Err(message) => format!("<unprintable record: {message}>"),
    }
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

    fn read_text(table: Table, text: &[u8]) -> TableRead {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("input.csv");
        std::fs::write(&path, text).expect("write fixture");
        read_file(table, &path, |_| {}).expect("read fixture")
    }

    #[test]
    fn bom_crlf_and_header_case() {
        let read = read_text(
            Table::Store,
            b"\xEF\xBB\xBFStore_ID,NAME,Region\r\n0,online,web\r\n1,store_001,north\r\n",
        );
        assert_eq!(read.records, 2);
        assert!(read.rejects.is_empty(), "{:?}", read.rejects);
        let text = arrow::util::pretty::pretty_format_batches(&read.batches).unwrap().to_string();
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
}
