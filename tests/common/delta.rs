//! A Delta table read back as the tests check it: its log with the
//! deltalake crate, the files the log names with DataFusion's Parquet
//! reader, and the rows as CSV lines written as the CSV output writes them.

use datafusion::prelude::{ParquetReadOptions, SessionContext};
use deltalake::DeltaTable;
use pos_etl::sinks::delta::DeltaTarget;
use pos_etl::storage::{Location, StorageOptions};

/// A table as its last version has it.
pub struct DeltaRead {
    /// The log, loaded.
    pub table: DeltaTable,
    /// The rows as CSV, header first, rows sorted.
    pub csv: Vec<String>,
}

impl DeltaRead {
    pub fn version(&self) -> i64 {
        self.table.version().expect("a loaded table") as i64
    }

    /// The last version of the `txn` application `app_id`, if any.
    pub fn transaction(&self, app_id: &str) -> Option<i64> {
        runtime().block_on(async {
            let log_store = self.table.log_store();
            self.table.snapshot().unwrap().transaction_version(log_store.as_ref(), app_id).await.unwrap()
        })
    }

    /// The `commitInfo` of each version, newest first.
    pub fn history(&self) -> Vec<serde_json::Value> {
        runtime().block_on(async {
            use futures::TryStreamExt;
            let infos: Vec<_> = self.table.history(None).try_collect().await.unwrap();
            infos.into_iter().map(|info| serde_json::to_value(info).unwrap()).collect()
        })
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
}

/// The Delta table at `location` (a path relative to `dir`, or a URL), its
/// store reached with `options` (`key=value`).
pub fn read(dir: &std::path::Path, location: &str, options: &[String]) -> DeltaRead {
    let options: Vec<(String, String)> =
        options.iter().filter_map(|option| option.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let options = StorageOptions::new(options).unwrap();
    let location = match Location::parse(location, &options).unwrap() {
        Location::Local(path) => Location::Local(dir.join(path)),
        object => object,
    };
    runtime().block_on(async {
        let table = DeltaTarget::new(location.clone(), options).open().await.unwrap();
        assert!(table.version().is_some(), "{location} has no Delta log");
        let ctx = SessionContext::new();
        ctx.register_object_store(table.table_url(), table.log_store().root_object_store(None));
        let files: Vec<String> = table.get_file_uris().unwrap().collect();
        let batches = match files.is_empty() {
            true => Vec::new(),
            false => ctx.read_parquet(files, ParquetReadOptions::default()).await.unwrap().collect().await.unwrap(),
        };
        let mut bytes = Vec::new();
        {
            let mut writer = arrow::csv::WriterBuilder::new().with_timestamp_format("%Y-%m-%d %H:%M:%S".to_string()).build(&mut bytes);
            for batch in &batches {
                writer.write(batch).unwrap();
            }
        }
        let csv = crate::postgres::sorted(&String::from_utf8(bytes).unwrap());
        DeltaRead { table, csv }
    })
}
