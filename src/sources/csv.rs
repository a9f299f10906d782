//! CSV exports: the formats crate's reader, the files of each table found in
//! a directory or under an object-store prefix, and every file of a set of
//! tables read in parallel on blocking threads.

pub use pos_etl_formats::csv::*;

use std::io::BufRead;
use std::path::{Path, PathBuf};

use super::records::Position;
use super::{Table, TableRead};
use crate::error::SourceError;
use crate::storage::Location;
use crate::storage::read::ObjectFile;

/// One CSV export: a local file or an object.
#[derive(Debug, Clone)]
pub enum Input {
    /// A local file.
    File(PathBuf),
    /// An object in a store.
    Object(ObjectFile),
}

impl Input {
    /// Its size in bytes (0 if it cannot be read: the read says why).
    pub fn size(&self) -> u64 {
        match self {
            Input::File(path) => std::fs::metadata(path).map_or(0, |meta| meta.len()),
            Input::Object(object) => object.size,
        }
    }

    /// Its file name, without the directory or prefix.
    pub fn file_name(&self) -> String {
        match self {
            Input::File(path) => path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            Input::Object(object) => object.url.path.filename().unwrap_or_default().to_string(),
        }
    }
}

impl Source for Input {
    fn name(&self) -> String {
        match self {
            Input::File(path) => path.name(),
            Input::Object(object) => object.name(),
        }
    }

    fn open_at(&self, offset: u64) -> std::io::Result<Box<dyn BufRead + Send + '_>> {
        match self {
            Input::File(path) => path.open_at(offset),
            Input::Object(object) => object.open_at(offset),
        }
    }
}

/// The inputs of one table.
#[derive(Debug, Clone)]
pub struct TableInputs {
    /// The table.
    pub table: Table,
    /// Its files or objects, sorted by name.
    pub inputs: Vec<Input>,
}

/// Finds the files of each of `tables` in the local directory `dir` (SPEC 1).
pub fn discover_files(dir: &Path, tables: &[Table]) -> Result<Vec<TableFiles>, FileError> {
    pos_etl_formats::csv::discover(dir, tables)
}

/// Finds the files of each of `tables` in the directory or under the
/// prefix `data` (SPEC 1); objects are listed with their sizes.
pub async fn discover(data: &Location, tables: &[Table]) -> Result<Vec<TableInputs>, SourceError> {
    match data {
        Location::Local(dir) => Ok(discover_files(dir, tables)?
            .into_iter()
            .map(|files| TableInputs { table: files.table, inputs: files.paths.into_iter().map(Input::File).collect() })
            .collect()),
        Location::Object(prefix) => {
            let listed = prefix.list().await?;
            if listed.is_empty() {
                return Err(FileError::MissingDir(PathBuf::from(prefix.to_string())).into());
            }
            let names: Vec<String> = listed.iter().map(|(name, _)| name.clone()).collect();
            let sizes: std::collections::HashMap<String, u64> = listed.into_iter().collect();
            let selected = select(Path::new(&prefix.to_string()), &names, tables)?;
            Ok(selected
                .into_iter()
                .map(|(table, names)| TableInputs {
                    table,
                    inputs: names
                        .iter()
                        .map(|name| Input::Object(ObjectFile { url: prefix.join(name), size: sizes[name] }))
                        .collect(),
                })
                .collect())
        }
    }
}

/// Checks the header of every input (on blocking threads: an object is read
/// with requests the runtime serves), so that a missing column fails a run
/// before it starts.
pub async fn check_headers(files: &[TableInputs]) -> Result<(), FileError> {
    let files = files.to_vec();
    tokio::task::spawn_blocking(move || {
        files.iter().try_for_each(|files| files.inputs.iter().try_for_each(|input| check_header(files.table, input)))
    })
    .await
    .expect("a CSV header check panicked")
}

/// Reads every file of every table, files in parallel; one read per file, in
/// the order of `files`. `on_bytes` is called with each further number of bytes read.
pub async fn read_all(
    files: &[TableInputs],
    on_bytes: impl Fn(u64) + Clone + Send + 'static,
) -> Result<Vec<TableRead>, FileError> {
    let tasks = files.iter().flat_map(|table_files| {
        table_files.inputs.iter().map(|input| {
            let (table, input, on_bytes) = (table_files.table, input.clone(), on_bytes.clone());
            tokio::task::spawn_blocking(move || read_file(table, &input, ReadPath::Fast, on_bytes))
        })
    });
    futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|read| read.expect("a CSV reader task panicked"))
        .collect()
}

/// Bytes of a file's start and of the end of its loaded part that its
/// fingerprint covers: enough to tell a file rewritten from one appended to,
/// without reading all of a large file each run.
const FINGERPRINT_SPAN: u64 = 64 << 10;

/// A fingerprint of `path`'s first `end` bytes: their length and a SHA-256
/// of the first and the last [`FINGERPRINT_SPAN`] bytes of them.
pub fn fingerprint(path: &std::path::Path, end: u64) -> std::io::Result<String> {
    use sha2::Digest;
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let mut hash = sha2::Sha256::new();
    let mut span = |from: u64, hash: &mut sha2::Sha256| -> std::io::Result<()> {
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(from))?;
        (&mut file).take(FINGERPRINT_SPAN.min(end - from)).read_to_end(&mut bytes)?;
        hash.update(&bytes);
        Ok(())
    };
    span(0, &mut hash)?;
    span(end.saturating_sub(FINGERPRINT_SPAN), &mut hash)?;
    let digest: String = hash.finalize().iter().map(|byte| format!("{byte:02x}")).collect();
    Ok(format!("{end}:{digest}"))
}

/// The end of the last complete line of `path` after `from` (up to `len`
/// bytes), with its line number: where a run that reads from `from` stops,
/// so that a line still being written is left for the next one. `None` if
/// no line is complete.
pub fn complete_end(path: &std::path::Path, from: Position, len: u64) -> std::io::Result<Option<Position>> {
    use std::io::{BufRead, Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(from.byte))?;
    // In chunks: a first run reads whole files, which need not be in memory.
    let mut tail = std::io::BufReader::with_capacity(1 << 20, file.take(len.saturating_sub(from.byte)));
    let (mut at, mut end) = (from, None);
    loop {
        let chunk = tail.fill_buf()?;
        if chunk.is_empty() {
            return Ok(end);
        }
        let read = chunk.len();
        at = match memchr::memrchr(b'\n', chunk) {
            Some(last) => {
                let line_end = at.after(&chunk[..=last]);
                end = Some(line_end);
                line_end.after(&chunk[last + 1..])
            }
            None => at.after(chunk),
        };
        tail.consume(read);
    }
}
