//! CSV records as a text editor shows them: split by csv-core (the state
//! machine arrow-csv's decoder also runs), each with the line it starts on
//! and its text exactly as read. This is the one place lines are counted:
//! the fast decoder and the record-by-record reader both move a
//! [`Position`] over the bytes they consume, so they cannot drift.
//!
//! A line is what an editor numbers: it ends at `\n` (so `\r\n` is one line
//! end, as is a lone `\n`), and a record's line is the line of its first
//! byte. csv-core ends a record at `\r` and takes the `\n` of a `\r\n` as
//! part of the next read; counting only `\n`, and only the bytes before a
//! record's first byte of content, makes both line-end styles agree.

use std::io::BufRead;

use crate::dialect::UTF8_BOM;

/// A byte offset in a file and the line that byte is on (the first line is 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Bytes from the start of the file.
    pub byte: u64,
    /// 1 + the line ends (`\n`) before `byte`.
    pub line: u64,
}

impl Position {
    /// The start of a file.
    pub const START: Position = Position { byte: 0, line: 1 };

    /// This position moved past `bytes`, which follow it in the file.
    pub fn after(self, bytes: &[u8]) -> Position {
        Position {
            byte: self.byte + bytes.len() as u64,
            line: self.line + memchr::memchr_iter(b'\n', bytes).count() as u64,
        }
    }
}

/// One record: where it starts, its text and its fields.
#[derive(Debug)]
pub struct Record<'a> {
    /// The line of its first byte.
    pub line: u64,
    /// The record as read, without the line ends around it.
    pub raw: &'a [u8],
    fields: &'a [u8],
    ends: &'a [usize],
}

impl<'a> Record<'a> {
    /// Fields in the record.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the record has no field (never true of a record read).
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Field `index`, unquoted, if the record has it.
    pub fn get(&self, index: usize) -> Option<&'a [u8]> {
        let end = *self.ends.get(index)?;
        let start = if index == 0 { 0 } else { self.ends[index - 1] };
        Some(&self.fields[start..end])
    }
}

/// Reads records one at a time from `input`, which starts at `at` in its file.
pub struct RecordSplitter<R> {
    input: R,
    core: csv_core::Reader,
    /// Where the next unread byte of `input` is.
    at: Position,
    raw: Vec<u8>,
    fields: Vec<u8>,
    ends: Vec<usize>,
}

impl<R: BufRead> RecordSplitter<R> {
    /// A splitter of `input`, whose first byte is at `at`.
    pub fn new(input: R, at: Position) -> Self {
        RecordSplitter {
            input,
            core: csv_core::Reader::new(),
            at,
            raw: Vec::with_capacity(256),
            fields: vec![0; 256],
            ends: vec![0; 16],
        }
    }

    /// Where the next record's bytes begin (after everything read so far).
    pub fn position(&self) -> Position {
        self.at
    }

    /// The next record, or `None` at the end of the input.
    pub fn next_record(&mut self) -> std::io::Result<Option<Record<'_>>> {
        use csv_core::ReadRecordResult;
        self.raw.clear();
        if self.at.byte == 0 {
            // csv-core strips a byte-order mark too, but takes a read that
            // holds nothing else for the end of the input.
            let input = self.input.fill_buf()?;
            if input.starts_with(UTF8_BOM) {
                self.raw.extend_from_slice(UTF8_BOM);
                self.input.consume(UTF8_BOM.len());
            }
        }
        let (mut out, mut ends) = (0, 0);
        loop {
            let input = self.input.fill_buf()?;
            let (result, read, written, ended) =
                self.core.read_record(input, &mut self.fields[out..], &mut self.ends[ends..]);
            self.raw.extend_from_slice(&input[..read]);
            self.input.consume(read);
            out += written;
            ends += ended;
            match result {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => self.fields.resize(self.fields.len() * 2, 0),
                ReadRecordResult::OutputEndsFull => self.ends.resize(self.ends.len() * 2, 0),
                ReadRecordResult::Record => break,
                ReadRecordResult::End => {
                    self.at = self.at.after(&self.raw);
                    return Ok(None);
                }
            }
        }
        // Before the record: the rest of the previous line end, blank lines
        // (csv-core skips them), and at the start of a file a byte-order mark.
        let body_start = leading_noise(&self.raw);
        let line = self.at.after(&self.raw[..body_start]).line;
        self.at = self.at.after(&self.raw);
        let body = &self.raw[body_start..];
        let body_end = body.len() - body.iter().rev().take_while(|b| matches!(b, b'\r' | b'\n')).count();
        Ok(Some(Record { line, raw: &body[..body_end], fields: &self.fields[..out], ends: &self.ends[..ends] }))
    }
}

/// Bytes at the start of `raw` that come before a record's text: line ends
/// and a UTF-8 byte-order mark.
fn leading_noise(raw: &[u8]) -> usize {
    let bom = if raw.starts_with(UTF8_BOM) { UTF8_BOM.len() } else { 0 };
    bom + raw[bom..].iter().take_while(|b| matches!(b, b'\r' | b'\n')).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (line, raw, fields) of every record of `text`, read through a buffer
    /// of `capacity` bytes (small ones split records across reads).
    fn split(text: &[u8], capacity: usize) -> Vec<(u64, String, Vec<String>)> {
        let mut splitter = RecordSplitter::new(std::io::BufReader::with_capacity(capacity, text), Position::START);
        let mut records = Vec::new();
        while let Some(record) = splitter.next_record().unwrap() {
            let fields = (0..record.len()).map(|i| String::from_utf8_lossy(record.get(i).unwrap()).into_owned()).collect();
            records.push((record.line, String::from_utf8_lossy(record.raw).into_owned(), fields));
        }
        assert_eq!(splitter.position(), Position::START.after(text), "every byte is accounted for");
        records
    }

    #[test]
    fn lines_are_those_an_editor_shows_for_every_line_end() {
        let lf = b"h1,h2\na,b\n\nc,\"d\ne\"\n   \nf,g";
        let crlf = b"\xEF\xBB\xBFh1,h2\r\na,b\r\n\r\nc,\"d\r\ne\"\r\n   \r\nf,g\r\n";
        let cases: [(&[u8], &str, &str); 3] =
            [(lf, "\n", "LF"), (&crlf[UTF8_BOM.len()..], "\r\n", "CRLF"), (crlf, "\r\n", "CRLF with BOM")];
        for capacity in [1, 2, 3, 4, 7, 1 << 16] {
            for (text, end, name) in cases {
                // A byte-order mark is seen when the first read holds it whole.
                if text.starts_with(UTF8_BOM) && capacity < UTF8_BOM.len() {
                    continue;
                }
                let lines: Vec<(u64, String)> = split(text, capacity).into_iter().map(|r| (r.0, r.1)).collect();
                let quoted = format!("c,\"d{end}e\"");
                let expected = [(1, "h1,h2"), (2, "a,b"), (4, quoted.as_str()), (6, "   "), (7, "f,g")];
                assert_eq!(lines, expected.map(|(line, raw)| (line, raw.to_string())), "{name}, buffer {capacity}");
            }
        }
        let records = split(crlf, 3);
        assert_eq!(records[2].2, ["c", "d\r\ne"], "fields are unquoted");
        assert_eq!(records[3].2, ["   "], "fields are not trimmed");
    }

    #[test]
    fn a_splitter_can_start_mid_file() {
        let text = b"h\r\na\r\nb\r\n";
        // Where a reader that stopped after the header would resume: on the \n of its \r\n.
        let at = Position::START.after(&text[..2]);
        let mut splitter = RecordSplitter::new(&text[2..], at);
        let record = splitter.next_record().unwrap().unwrap();
        assert_eq!((record.line, record.raw), (2, &b"a"[..]));
        assert_eq!(splitter.next_record().unwrap().unwrap().line, 3);
        assert!(splitter.next_record().unwrap().is_none());
        assert_eq!(splitter.position(), Position { byte: 9, line: 4 });
    }
}
