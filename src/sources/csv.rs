//! CSV exports: the formats crate's reader, and every file of a set of
//! tables read in parallel on blocking threads.

pub use pos_etl_formats::csv::*;

use super::TableRead;

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
