//! The CSV dialects of SPEC 1.1 as pure functions: header names, byte-order
//! marks, brace-wrapped transaction ids and the three date formats. No I/O here,
//! so every rule has a table-driven test.

use arrow::compute::kernels::cast_utils::string_to_datetime;
use chrono::{NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};

/// The UTF-8 byte-order mark that spreadsheet exports put before the header.
pub const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// A header name as the SQL files see it: trimmed, lower case, BOM removed.
pub fn normalize_header(name: &str) -> String {
    name.trim_start_matches('\u{feff}').trim().to_ascii_lowercase()
}

/// A transaction id without the braces some exports wrap GUIDs in.
pub fn strip_braces(trans_id: &str) -> &str {
    trans_id
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .unwrap_or(trans_id)
}

/// Parses a store-local wall-clock time in any of the dialects of SPEC 1.1:
/// `2021-01-03 14:05:00`, `1/3/2021 14:05[:00]`, `1/3/2021 2:05[:00] PM`, or ISO 8601
/// with `T`, an optional fraction and an optional `Z`/`±HH:MM` that is dropped
/// (the wall-clock time is kept). Fractions of a second are truncated.
pub fn parse_date_time(text: &str) -> Option<NaiveDateTime> {
    let text = text.trim();
    if text.contains('/') {
        return parse_us_date_time(text);
    }
    let (date, time) = text.split_once([' ', 'T'])?;
    let time = strip_utc_offset(time);
    // arrow's parser is several times faster than chrono's format-driven one
    // on the common shapes; chrono's takes what it does not (2021-1-3 14:05).
    let wall_clock = &text[..date.len() + 1 + time.len()];
    if let Ok(parsed) = string_to_datetime(&Utc, wall_clock) {
        return parsed.naive_utc().with_nanosecond(0);
    }
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    Some(date.and_time(parse_time_of_day(time)?))
}

/// `1/3/2021 14:05`, `1/3/2021 14:05:00`, `1/3/2021 2:05 PM` (month first, as US spreadsheets save).
fn parse_us_date_time(text: &str) -> Option<NaiveDateTime> {
    let (date, time) = text.split_once(' ')?;
    let date = NaiveDate::parse_from_str(date, "%m/%d/%Y").ok()?;
    let time = time.trim();
    let time = match time.len().checked_sub(2).map(|at| time.split_at(at)) {
        Some((clock, meridiem)) if meridiem.eq_ignore_ascii_case("AM") || meridiem.eq_ignore_ascii_case("PM") => {
            let clock = parse_time_of_day(clock.trim_end())?;
            let hour = clock.hour();
            if hour == 0 || hour > 12 {
                return None;
            }
            let hour24 = hour % 12 + if meridiem.eq_ignore_ascii_case("PM") { 12 } else { 0 };
            clock.with_hour(hour24)?
        }
        _ => parse_time_of_day(time)?,
    };
    Some(date.and_time(time))
}

/// `HH:MM`, `HH:MM:SS` or `HH:MM:SS.fff`, truncated to the second.
fn parse_time_of_day(text: &str) -> Option<NaiveTime> {
    let whole_seconds = text.split_once('.').map_or(text, |(whole, fraction)| {
        if fraction.bytes().all(|b| b.is_ascii_digit()) { whole } else { text }
    });
    NaiveTime::parse_from_str(whole_seconds, "%H:%M:%S")
        .or_else(|_| NaiveTime::parse_from_str(whole_seconds, "%H:%M"))
        .ok()
}

/// Drops a trailing `Z` or `±HH:MM` / `±HHMM` offset: timestamps are store-local wall-clock times.
fn strip_utc_offset(time: &str) -> &str {
    if let Some(rest) = time.strip_suffix(['Z', 'z']) {
        return rest;
    }
    match time.rfind(['+', '-']) {
        Some(at) if at >= 5 => &time[..at],
        _ => time,
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
            ("1/3/2021 2:05:30 pm", at(2021, 1, 3, 14, 5, 30)),
            ("1/3/2021 12:05 AM", at(2021, 1, 3, 0, 5, 0)),
            ("1/3/2021 12:05 PM", at(2021, 1, 3, 12, 5, 0)),
            ("2021-01-03T14:05:00", at(2021, 1, 3, 14, 5, 0)),
            ("2021-01-03T14:05:00.123", at(2021, 1, 3, 14, 5, 0)),
            ("2021-01-03T14:05:00Z", at(2021, 1, 3, 14, 5, 0)),
            ("2021-01-03T14:05:00.5+05:30", at(2021, 1, 3, 14, 5, 0)),
            ("2021-01-03T14:05:00-0800", at(2021, 1, 3, 14, 5, 0)),
            (" 2021-01-03 14:05:00 ", at(2021, 1, 3, 14, 5, 0)),
            ("", None),
            ("yesterday", None),
            ("2021-13-03 14:05:00", None),
            ("2021-01-03", None),
            ("1/3/2021 13:05 PM", None),
            ("3/31/2021 25:00", None),
            ("2021-01-03 14:05:00.x", None),
            ("2021-1-3 14:05:00", at(2021, 1, 3, 14, 5, 0)),
            ("2021-01-03 14:05:59.999999", at(2021, 1, 3, 14, 5, 59)),
            ("2021-01-03 24:00:00", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_date_time(text), expected, "{text:?}");
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
    }
}
