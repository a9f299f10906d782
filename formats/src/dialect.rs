//! The CSV dialects of SPEC 1.1 as pure functions: header names, byte-order
//! marks, brace-wrapped transaction ids and the three date formats. No I/O here,
//! so every rule has a table-driven test.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

/// The UTF-8 byte-order mark that spreadsheet exports put before the header.
pub const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// A header name as the SQL files see it: trimmed, lower case, BOM removed.
pub fn normalize_header(name: &str) -> String {
    // Marks and spaces in any order: a re-saved export can have both, twice.
    name.trim_start_matches(|c: char| c == '\u{feff}' || c.is_whitespace()).trim_end().to_ascii_lowercase()
}

/// A transaction id without the braces some exports wrap GUIDs in.
pub fn strip_braces(trans_id: &str) -> &str {
    trans_id
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .unwrap_or(trans_id)
}

/// Why a date_time field is not a date: what was expected instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateError {
    /// Not one of the shapes of SPEC 1.1.
    Shape,
    /// The year does not have four digits (`1/3/21` is not the year 21).
    Year,
    /// No such date (month 13, February 30, or a day-first 31/12/2021).
    Day,
    /// An hour, minute or second out of range (seconds run 00 to 59).
    Time,
    /// An offset that is not `Z` or `±HH:MM`.
    Offset,
}

impl DateError {
    /// What the value should have been, for a reject's reason.
    pub fn expected(self) -> &'static str {
        match self {
            DateError::Shape => "expected 2021-01-03 14:05:00, 1/3/2021 2:05 PM or ISO 8601",
            DateError::Year => "the year must have four digits",
            DateError::Day => "no such date; 1/3/2021 is January 3",
            DateError::Time => "hours run 0 to 23 (1 to 12 with AM/PM), minutes and seconds 00 to 59",
            DateError::Offset => "an offset is Z or ±HH:MM",
        }
    }
}

/// Parses a store-local wall-clock time in any of the dialects of SPEC 1.1:
/// `2021-01-03 14:05:00`, `1/3/2021 14:05[:00]`, `1/3/2021 2:05[:00] PM`, or
/// ISO 8601 with `T`, an optional fraction and an optional `Z`/`±HH:MM` that
/// is dropped (the wall-clock time is kept). Fractions of a second are
/// truncated. Years have four digits; seconds run 00 to 59.
pub fn parse_date_time(text: &str) -> Result<NaiveDateTime, DateError> {
    let mut scan = Scanner { text: text.trim().as_bytes(), at: 0 };
    let us = scan.text.contains(&b'/');
    let (year, month, day) = if us {
        let month = scan.number(1, 2).ok_or(DateError::Shape)?;
        scan.expect(b'/')?;
        let day = scan.number(1, 2).ok_or(DateError::Shape)?;
        scan.expect(b'/')?;
        (scan.year()?, month, day)
    } else {
        let year = scan.year()?;
        scan.expect(b'-')?;
        let month = scan.number(1, 2).ok_or(DateError::Shape)?;
        scan.expect(b'-')?;
        (year, month, scan.number(1, 2).ok_or(DateError::Shape)?)
    };
    let date = NaiveDate::from_ymd_opt(year as i32, month, day).ok_or(DateError::Day)?;
    match scan.next() {
        Some(b' ') => scan.skip_spaces(),
        Some(b'T' | b't') if !us => {}
        _ => return Err(DateError::Shape),
    }
    let mut hour = scan.number(1, 2).ok_or(DateError::Shape)?;
    scan.expect(b':')?;
    let minute = scan.number(2, 2).ok_or(DateError::Shape)?;
    let second = match scan.peek() {
        Some(b':') => {
            scan.next();
            scan.number(2, 2).ok_or(DateError::Shape)?
        }
        _ => 0,
    };
    if scan.peek() == Some(b'.') {
        scan.next();
        scan.number(1, usize::MAX).ok_or(DateError::Shape)?;
    }
    if us {
        scan.skip_spaces();
        if let Some(pm) = scan.meridiem() {
            if !(1..=12).contains(&hour) {
                return Err(DateError::Time);
            }
            hour = hour % 12 + if pm { 12 } else { 0 };
        }
    } else {
        scan.offset()?;
    }
    if scan.peek().is_some() {
        return Err(DateError::Shape);
    }
    if minute > 59 || second > 59 {
        return Err(DateError::Time);
    }
    let time = NaiveTime::from_hms_opt(hour, minute, second).ok_or(DateError::Time)?;
    Ok(date.and_time(time))
}

/// A cursor over the bytes of a date.
struct Scanner<'a> {
    text: &'a [u8],
    at: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek();
        self.at += usize::from(byte.is_some());
        byte
    }

    fn expect(&mut self, byte: u8) -> Result<(), DateError> {
        match self.next() {
            Some(found) if found == byte => Ok(()),
            _ => Err(DateError::Shape),
        }
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.at += 1;
        }
    }

    /// A number of `min` to `max` digits (and no more).
    fn number(&mut self, min: usize, max: usize) -> Option<u32> {
        let digits = self.text[self.at..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits < min || digits > max {
            return None;
        }
        let value = self.text[self.at..self.at + digits]
            .iter()
            .fold(0u32, |value, digit| value.saturating_mul(10).saturating_add(u32::from(digit - b'0')));
        self.at += digits;
        Some(value)
    }

    fn year(&mut self) -> Result<u32, DateError> {
        match self.text[self.at..].iter().take_while(|b| b.is_ascii_digit()).count() {
            4 => Ok(self.number(4, 4).expect("four digits")),
            0 => Err(DateError::Shape),
            _ => Err(DateError::Year),
        }
    }

    /// `AM` or `PM` in any case: whether it is PM.
    fn meridiem(&mut self) -> Option<bool> {
        let word = self.text.get(self.at..self.at + 2)?;
        let pm = match word.to_ascii_uppercase().as_slice() {
            b"AM" => false,
            b"PM" => true,
            _ => return None,
        };
        self.at += 2;
        Some(pm)
    }

    /// An optional `Z` or `±HH:MM`, checked and dropped.
    fn offset(&mut self) -> Result<(), DateError> {
        match self.peek() {
            None => Ok(()),
            Some(b'Z' | b'z') => {
                self.next();
                Ok(())
            }
            Some(b'+' | b'-') => {
                self.next();
                let hours = self.number(2, 2).ok_or(DateError::Offset)?;
                if self.next() != Some(b':') {
                    return Err(DateError::Offset);
                }
                let minutes = self.number(2, 2).ok_or(DateError::Offset)?;
                if hours > 23 || minutes > 59 || self.peek().is_some() {
                    return Err(DateError::Offset);
                }
                Ok(())
            }
            Some(_) => Err(DateError::Shape),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<NaiveDateTime> {
        NaiveDate::from_ymd_opt(y, mo, d)?.and_hms_opt(h, mi, s)
    }

    #[test]
    fn date_time_dialects() {
        let cases = [
            ("2021-01-03 14:05:00", at(2021, 1, 3, 14, 5, 0)),
            ("2021-01-03 14:05", at(2021, 1, 3, 14, 5, 0)),
            ("1/3/2021 14:05", at(2021, 1, 3, 14, 5, 0)),
            ("01/03/2021 14:05:09", at(2021, 1, 3, 14, 5, 9)),
            ("1/3/2021 2:05 PM", at(2021, 1, 3, 14, 5, 0)),
            ("1/3/2021 2:05PM", at(2021, 1, 3, 14, 5, 0)),
            ("1/3/2021 2:05:30 pm", at(2021, 1, 3, 14, 5, 30)),
            ("1/3/2021 12:05 AM", at(2021, 1, 3, 0, 5, 0)),
            ("1/3/2021 12:05 PM", at(2021, 1, 3, 12, 5, 0)),
            ("2021-01-03T14:05:00", at(2021, 1, 3, 14, 5, 0)),
            ("2021-01-03T14:05:00.123", at(2021, 1, 3, 14, 5, 0)),
            ("2021-01-03T14:05:00Z", at(2021, 1, 3, 14, 5, 0)),
            ("2021-01-03T14:05:00.5+05:30", at(2021, 1, 3, 14, 5, 0)),
            ("2021-01-03T14:05:00-08:00", at(2021, 1, 3, 14, 5, 0)),
            ("2021-01-03 14:05:00+01:00", at(2021, 1, 3, 14, 5, 0)),
            (" 2021-01-03 14:05:00 ", at(2021, 1, 3, 14, 5, 0)),
            ("2021-1-3 14:05:00", at(2021, 1, 3, 14, 5, 0)),
            ("2021-01-03 14:05:59.999999", at(2021, 1, 3, 14, 5, 59)),
            ("2024-02-29 00:00:00", at(2024, 2, 29, 0, 0, 0)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_date_time(text).ok(), expected, "{text:?}");
        }
    }

    #[test]
    fn what_is_not_a_date_says_what_was_expected() {
        use DateError::*;
        let cases = [
            ("", Shape),
            ("yesterday", Shape),
            ("2021-01-03", Shape),
            ("2021-01-03 14:05:00.x", Shape),
            ("2021-01-03 14:05:00 PM", Shape),
            ("1/3/2021T14:05", Shape),
            ("1/3/21 2:19 PM", Year),
            ("1/3/202 2:19 PM", Year),
            ("21-01-03 14:05:00", Year),
            ("20210-01-03 14:05:00", Year),
            ("2021-13-03 14:05:00", Day),
            ("2023-02-29 14:05:00", Day),
            ("31/12/2021 10:00", Day),
            ("2021-01-03 24:00:00", Time),
            ("2021-01-03 14:60:00", Time),
            ("2021-01-03 14:25:60", Time),
            ("1/3/2021 13:05 PM", Time),
            ("1/3/2021 0:05 AM", Time),
            ("3/31/2021 25:00", Time),
            ("2021-01-03T14:05:00+05:30:00", Offset),
            ("2021-01-03T14:05:00-", Offset),
            ("2021-01-03T14:05:00-0800", Offset),
            ("2021-01-03T14:05:00+24:00", Offset),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_date_time(text), Err(expected), "{text:?}");
        }
    }

    #[test]
    fn braces() {
        assert_eq!(strip_braces("{6B29FC40-CA47}"), "6B29FC40-CA47");
        assert_eq!(strip_braces("6B29FC40-CA47"), "6B29FC40-CA47");
        assert_eq!(strip_braces("{unclosed"), "{unclosed");
    }

    #[test]
    fn headers() {
        assert_eq!(normalize_header("\u{feff}Item_ID"), "item_id");
        assert_eq!(normalize_header(" Store_Id "), "store_id");
        // Found by the dates fuzz target: normalising must be idempotent.
        assert_eq!(normalize_header("\u{feff}  \u{feff}Item_ID"), "item_id");
    }
}
