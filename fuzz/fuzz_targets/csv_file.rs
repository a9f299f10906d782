//! One CSV file, of any table, through the whole typed reader: never a
//! panic; both ways of reading it (arrow-csv's batches with record-by-record
//! reading of bad batches, and record by record throughout) give the same
//! rows and rejects; every record read is a row or a reject; every reject
//! has a line of the file and the record's text (line 1 too: a lone `\r`
//! ends a record, as in every CSV reader, but not a line).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pos_etl_formats::Table;
use pos_etl_formats::csv::{Bytes, ReadPath, read_file};

fuzz_target!(|input: &[u8]| {
    let Some((&selector, bytes)) = input.split_first() else { return };
    let table = Table::ALL[usize::from(selector) % Table::ALL.len()];
    let source = Bytes { name: "fuzz.csv", bytes };
    let fast = read_file(table, &source, ReadPath::Fast, |_| {});
    let slow = read_file(table, &source, ReadPath::RecordByRecord, |_| {});
    let (fast, slow) = match (fast, slow) {
        (Ok(fast), Ok(slow)) => (fast, slow),
        (Err(fast), Err(slow)) => {
            assert_eq!(fast.to_string(), slow.to_string());
            return;
        }
        (fast, slow) => panic!("one way failed: {fast:?} / {slow:?}"),
    };
    assert_eq!(fast.records, slow.records);
    assert_eq!(fast.rejects, slow.rejects);
    let rows = |batches| arrow_select::concat::concat_batches(&table.schema(), batches).unwrap();
    assert_eq!(rows(&fast.batches), rows(&slow.batches));
    let rows = fast.batches.iter().map(|batch| batch.num_rows() as u64).sum::<u64>();
    assert_eq!(fast.records, rows + fast.rejects.len() as u64, "every record is a row or a reject");
    let lines = 1 + bytes.iter().filter(|&&b| b == b'\n').count() as u64;
    for reject in &fast.rejects {
        let line: u64 = reject.origin.strip_prefix("fuzz.csv:").and_then(|l| l.parse().ok()).expect("fuzz.csv:LINE");
        assert!((1..=lines).contains(&line), "{reject:?} in a file of {lines} lines");
    }
});
