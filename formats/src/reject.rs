//! A bad record is data, not an error: a [`Reject`] says where it came
//! from, why it was left out, and what it was (SPEC 1.3).

use std::fmt;

/// A record left out of the output, with where it came from and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reject {
    /// `file:line` (the header is line 1) or `topic/partition@offset`.
    pub origin: String,
    /// Why the record was rejected.
    pub reason: RejectReason,
    /// The record exactly as read (a CSV line without its line end, a
    /// Kafka message value), as UTF-8 with invalid bytes replaced.
    pub raw: String,
}

/// Why a record was rejected (SPEC 1.3).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum RejectReason {
    /// The record has a different number of fields than the header.
    FieldCount {
        /// Fields in the header.
        expected: usize,
        /// Fields in the record.
        found: usize,
    },
    /// A required field is empty.
    EmptyField {
        /// The column.
        column: &'static str,
    },
    /// An integer field holds something else.
    NotAnInteger {
        /// The column.
        column: &'static str,
        /// The text found.
        value: String,
    },
    /// A date_time field matches none of the dialects of SPEC 1.1.
    BadDateTime {
        /// The text found.
        value: String,
        /// What was expected instead.
        expected: &'static str,
    },
    /// A quantity of 2^31 or more, either way: no shelf holds that many.
    OutOfRange {
        /// The column.
        column: &'static str,
        /// The text found.
        value: String,
    },
    /// A lookup row repeats an id of an earlier row.
    DuplicateKey {
        /// The id column.
        column: &'static str,
        /// The id.
        value: i64,
        /// The line of the row that has it first.
        first_line: u64,
    },
    /// A Kafka message is not JSON of the row or the transaction form.
    BadJson {
        /// What is wrong with it.
        detail: String,
    },
    /// A transaction-form message has an empty `items` list.
    NoItems,
    /// An item line of a transaction-form message is bad, and so is the whole transaction.
    BadItemLine {
        /// The line, counting from 1.
        line: usize,
        /// What is wrong with it.
        reason: Box<RejectReason>,
    },
    /// A field is not valid UTF-8.
    NotUtf8 {
        /// The column.
        column: &'static str,
    },
    /// An event of an incremental run that sorts before the last event
    /// already applied to its store and item, by more than the late window.
    Late {
        /// How long before that event, as `1d 2h 3m 4s`.
        by: String,
        /// The window, as given.
        window: String,
    },
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::FieldCount { expected, found } => {
                write!(f, "expected {expected} fields, found {found}")
            }
            RejectReason::EmptyField { column } => write!(f, "{column} is empty"),
            RejectReason::NotAnInteger { column, value } => {
                write!(f, "{column} is not an integer: '{value}'")
            }
            RejectReason::BadDateTime { value, expected } => {
                write!(f, "date_time is not a date: '{value}' ({expected})")
            }
            RejectReason::OutOfRange { column, value } => {
                write!(f, "{column} is out of range: '{value}' (a quantity is less than 2^31 either way)")
            }
            RejectReason::DuplicateKey { column, value, first_line } => {
                write!(f, "{column} {value} is already defined on line {first_line}")
            }
            RejectReason::BadJson { detail } => {
                write!(f, "not valid JSON of either form: {detail}")
            }
            RejectReason::NoItems => write!(f, "the transaction has no items"),
            RejectReason::BadItemLine { line, reason } => {
                write!(f, "item {line} of the transaction, so the whole transaction: {reason}")
            }
            RejectReason::NotUtf8 { column } => write!(f, "{column} is not valid UTF-8"),
            RejectReason::Late { by, window } => write!(
                f,
                "late: {by} before the last event already applied to its store and item, beyond --late-window {window}"
            ),
        }
    }
}

