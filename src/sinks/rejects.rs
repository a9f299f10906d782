//! The rejects file (SPEC 1.3): one CSV row per rejected record with its
//! origin, the reason and the raw text.

use std::sync::Arc;

use arrow::array::StringArray;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;

use crate::error::Reject;

/// The name of the rejects table in a database destination.
pub const TABLE: &str = "rejects";

/// Encodes `rejects` as CSV with the header `source,reason,raw`.
pub fn encode(rejects: &[Reject]) -> Vec<u8> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let rows = std::iter::once(["source".to_string(), "reason".to_string(), "raw".to_string()])
        .chain(rejects.iter().map(|r| [r.origin.clone(), r.reason.to_string(), r.raw.clone()]));
    for row in rows {
        writer.write_record(&row).expect("writing CSV to memory cannot fail");
    }
    writer.into_inner().expect("flushing to memory cannot fail")
}

/// `rejects` as one batch with the columns of the file: source, reason, raw.
pub fn to_batch(rejects: &[Reject]) -> RecordBatch {
    let schema = Schema::new(["source", "reason", "raw"].map(|name| Field::new(name, DataType::Utf8, false)).to_vec());
    let column = |text: fn(&Reject) -> String| Arc::new(rejects.iter().map(|r| Some(text(r))).collect::<StringArray>()) as _;
    RecordBatch::try_new(
        Arc::new(schema),
        vec![column(|r| r.origin.clone()), column(|r| r.reason.to_string()), column(|r| r.raw.clone())],
    )
    .expect("three text columns of equal length")
}
