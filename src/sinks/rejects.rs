//! The rejects file (SPEC 1.3): one CSV row per rejected record with its
//! origin, the reason and the raw text.

use crate::error::Reject;

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
