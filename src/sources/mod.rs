//! Sources turn exported bytes into typed Arrow record batches of the five
//! input tables of SPEC 1, plus a [`Reject`](crate::error::Reject) for every
//! record that cannot be typed. The parsing itself – dialects, records, typing,
//! the JSON of Kafka messages – is the `pos-etl-formats` crate, re-exported
//! here; this module adds what needs a runtime: files read in parallel and
//! while the rules run, and Kafka consumers. Sources know nothing about the
//! SQL rules or the outputs.

pub mod csv;
pub mod kafka;
pub mod streaming;

pub use pos_etl_formats::{
    ColumnSpec, MAX_COLUMNS, Table, TableRead, ValueKind, dialect, json, merge_by_table, records, typing,
};
