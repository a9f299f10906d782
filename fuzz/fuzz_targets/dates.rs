//! The date parser and the other dialect rules of SPEC 1.1 on any text:
//! never a panic; a date read is a real one, and reads back the same when
//! written in the output format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pos_etl_formats::dialect::{normalize_header, parse_date_time, strip_braces};

fuzz_target!(|text: &str| {
    if let Ok(time) = parse_date_time(text) {
        let written = time.format("%Y-%m-%d %H:%M:%S").to_string();
        assert_eq!(parse_date_time(&written), Ok(time), "{text:?} read as {written}");
        assert!((0..=9999).contains(&chrono::Datelike::year(&time)), "{text:?}: a year of four digits");
    }
    let header = normalize_header(text);
    assert_eq!(normalize_header(&header), header, "normalising twice changes nothing");
    assert!(text.contains(strip_braces(text)));
});
