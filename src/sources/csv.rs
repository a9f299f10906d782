//! CSV exports: the formats crate's reader, and every file of a set of
//! tables read in parallel on blocking threads.

pub use pos_etl_formats::csv::*;

use super::TableRead;
use super::records::Position;

/// Reads every file of every table, files in parallel; one read per file, in
/// the order of `files`. `on_bytes` is called with each further number of bytes read.
pub async fn read_all(
    files: &[TableFiles],
    on_bytes: impl Fn(u64) + Clone + Send + 'static,
) -> Result<Vec<TableRead>, FileError> {
    let tasks = files.iter().flat_map(|table_files| {
        table_files.paths.iter().map(|path| {
            let (table, path, on_bytes) = (table_files.table, path.clone(), on_bytes.clone());
            tokio::task::spawn_blocking(move || read_file(table, &path, ReadPath::Fast, on_bytes))
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
