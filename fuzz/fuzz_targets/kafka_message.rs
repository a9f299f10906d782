//! Kafka message values, of either table, through the JSON decoder of both
//! forms: never a panic; every message is rows (one per item of a
//! transaction) or one reject with its offset; a rejected transaction
//! gives no row.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pos_etl_formats::Table;
use pos_etl_formats::json::MessageDecoder;

fuzz_target!(|input: &[u8]| {
    let Some((&selector, payloads)) = input.split_first() else { return };
    let table = if selector % 2 == 0 { Table::InventoryChange } else { Table::InventorySnapshot };
    // Several messages in one chunk, split at NUL bytes, as a batch of a topic.
    let messages: Vec<&[u8]> = payloads.split(|&b| b == 0).collect();
    let mut decoder = MessageDecoder::new(table, "fuzz");
    for (offset, message) in messages.iter().enumerate() {
        decoder.push(0, offset as i64, message);
    }
    decoder.flush();
    let read = decoder.finish();
    let rows = read.batches.iter().map(|batch| batch.num_rows() as u64).sum::<u64>();
    assert_eq!(read.records, rows + read.rejects.len() as u64, "every record is a row or a reject");
    assert!(read.rejects.len() <= messages.len(), "at most one reject per message");
    for (reject, previous) in read.rejects.iter().skip(1).zip(&read.rejects) {
        let offset = |origin: &str| origin.rsplit('@').next().and_then(|o| o.parse::<usize>().ok()).expect("@offset");
        assert!(offset(&previous.origin) < offset(&reject.origin), "rejects in offset order, one per message");
    }
});
