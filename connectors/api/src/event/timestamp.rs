//! ISO-8601 / RFC 3339 instants <-> milliseconds since the Unix epoch, without a date crate.
//!
//! Polaris writes timestamps with Java's `Instant.toString()`: `2026-05-01T10:00:00Z`, with 0,
//! 3, 6 or 9 fractional digits. The bridge models time as milliseconds; [`parse_instant`] also
//! reports the sub-millisecond remainder so a codec can tell whether text is exactly
//! representable in milliseconds.

const MILLIS_PER_DAY: i64 = 86_400_000;
const NANOS_PER_MILLI: u32 = 1_000_000;
/// Largest absolute year accepted by [`parse_instant`] (keeps every result inside `i64` millis).
const MAX_ABS_YEAR: i64 = 999_999;

/// Why a timestamp string is not an ISO-8601 instant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not an ISO-8601 instant like 2026-05-01T10:00:00.123Z: {reason}")]
pub struct TimestampError {
    /// The rejected text (truncated to 64 characters).
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// A parsed instant: whole milliseconds (floored) plus the nanoseconds below them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedInstant {
    /// Milliseconds since 1970-01-01T00:00:00Z, rounded towards negative infinity.
    pub millis: i64,
    /// Nanoseconds past `millis`, in `0..1_000_000`.
    pub sub_millis_nanos: u32,
}

/// Formats `millis` as RFC 3339 with exactly three fractional digits: `2026-05-01T10:00:00.000Z`.
pub fn format_rfc3339_millis(millis: i64) -> String {
    let (date_time, ms) = split(millis);
    format!("{date_time}.{ms:03}Z")
}

/// Formats `millis` the way Java's `Instant.toString()` does for a millisecond-precision
/// instant: no fraction when it is zero, else three digits (`2026-05-01T10:00:00Z`,
/// `2026-05-01T10:00:00.120Z`).
pub fn format_instant(millis: i64) -> String {
    let (date_time, ms) = split(millis);
    if ms == 0 {
        format!("{date_time}Z")
    } else {
        format!("{date_time}.{ms:03}Z")
    }
}

/// Renders everything but the fraction and zone, and returns the milliseconds of the second.
fn split(millis: i64) -> (String, i64) {
    let days = millis.div_euclid(MILLIS_PER_DAY);
    let ms_of_day = millis.rem_euclid(MILLIS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let secs = ms_of_day / 1000;
    let (hour, minute, second) = (secs / 3600, secs / 60 % 60, secs % 60);
    // Java writes years beyond 9999 with a sign and years before 0 with at least 4 digits.
    let year = if year > 9999 {
        format!("+{year}")
    } else if year < 0 {
        format!("-{:04}", -year)
    } else {
        format!("{year:04}")
    };
    (
        format!("{year}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}"),
        ms_of_day % 1000,
    )
}

/// Parses an ISO-8601 instant: `YYYY-MM-DDTHH:MM:SS[.fraction]` (1 to 9 fractional digits)
/// followed by `Z` or a `+HH:MM` / `-HH:MM` offset. Years may carry a sign and more than four
/// digits, as Java writes them.
pub fn parse_instant(text: &str) -> Result<ParsedInstant, TimestampError> {
    let fail = |reason| TimestampError {
        text: text.chars().take(64).collect(),
        reason,
    };
    let mut p = Cursor {
        bytes: text.as_bytes(),
        pos: 0,
    };

    let sign = match p.peek() {
        Some(b'+') => {
            p.pos += 1;
            1
        }
        Some(b'-') => {
            p.pos += 1;
            -1
        }
        _ => 1,
    };
    let year_digits = p.digit_run();
    if !(4..=6).contains(&year_digits) {
        return Err(fail("the year must have 4 to 6 digits"));
    }
    let year = sign * p.number(year_digits);
    p.eat(b'-')
        .map_err(|()| fail("expected `-` after the year"))?;
    let month = p.fixed(2).ok_or_else(|| fail("expected a 2-digit month"))?;
    p.eat(b'-')
        .map_err(|()| fail("expected `-` after the month"))?;
    let day = p.fixed(2).ok_or_else(|| fail("expected a 2-digit day"))?;
    match p.peek() {
        Some(b'T' | b't') => p.pos += 1,
        _ => return Err(fail("expected `T` between date and time")),
    }
    let hour = p.fixed(2).ok_or_else(|| fail("expected a 2-digit hour"))?;
    p.eat(b':')
        .map_err(|()| fail("expected `:` after the hour"))?;
    let minute = p.fixed(2).ok_or_else(|| fail("expected 2-digit minutes"))?;
    p.eat(b':')
        .map_err(|()| fail("expected `:` after the minutes"))?;
    let second = p.fixed(2).ok_or_else(|| fail("expected 2-digit seconds"))?;

    let mut nanos: i64 = 0;
    if p.peek() == Some(b'.') {
        p.pos += 1;
        let digits = p.digit_run();
        if digits == 0 || digits > 9 {
            return Err(fail("the fraction must have 1 to 9 digits"));
        }
        nanos = p.number(digits) * 10_i64.pow(9 - digits as u32);
    }

    let offset_secs = match p.peek() {
        Some(b'Z' | b'z') => {
            p.pos += 1;
            0
        }
        Some(sign @ (b'+' | b'-')) => {
            p.pos += 1;
            let hours = p
                .fixed(2)
                .ok_or_else(|| fail("expected a 2-digit offset hour"))?;
            p.eat(b':')
                .map_err(|()| fail("expected `:` in the offset"))?;
            let minutes = p
                .fixed(2)
                .ok_or_else(|| fail("expected 2-digit offset minutes"))?;
            if hours > 18 || minutes > 59 {
                return Err(fail("the offset is out of range"));
            }
            let secs = hours * 3600 + minutes * 60;
            if sign == b'+' {
                secs
            } else {
                -secs
            }
        }
        _ => return Err(fail("expected `Z` or an offset after the time")),
    };
    if p.pos != p.bytes.len() {
        return Err(fail("unexpected characters after the instant"));
    }

    if year.abs() > MAX_ABS_YEAR {
        return Err(fail("the year is out of range"));
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(fail("the date does not exist"));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(fail("the time of day is out of range"));
    }

    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    let nanos_per_milli = i64::from(NANOS_PER_MILLI);
    Ok(ParsedInstant {
        millis: secs * 1000 + nanos / nanos_per_milli,
        // The remainder is below 1_000_000, so it always fits.
        sub_millis_nanos: u32::try_from(nanos % nanos_per_milli).unwrap_or(0),
    })
}

/// A byte cursor over ASCII text.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, byte: u8) -> Result<(), ()> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(())
        }
    }

    /// How many ASCII digits start at the cursor (does not move it).
    fn digit_run(&self) -> usize {
        self.bytes[self.pos..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    }

    /// Consumes `n` digits known to be there and returns their value (n <= 9).
    fn number(&mut self, n: usize) -> i64 {
        let value = self.bytes[self.pos..self.pos + n]
            .iter()
            .fold(0_i64, |acc, b| acc * 10 + i64::from(b - b'0'));
        self.pos += n;
        value
    }

    /// Consumes exactly `n` digits, if the next `n` bytes are digits.
    fn fixed(&mut self, n: usize) -> Option<i64> {
        (self.digit_run() >= n).then(|| self.number(n))
    }
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-05-01T10:00:00Z
    const MAY_FIRST: i64 = 1_777_629_600_000;

    #[test]
    fn parses_java_instant_strings() {
        for (text, millis, sub) in [
            ("2026-05-01T10:00:00Z", MAY_FIRST, 0),
            ("2026-05-01T10:00:00.120Z", MAY_FIRST + 120, 0),
            ("2026-05-01T10:00:00.123456Z", MAY_FIRST + 123, 456_000),
            ("2026-05-01T10:00:00.123456789Z", MAY_FIRST + 123, 456_789),
            ("2026-05-01T12:00:00.5+02:00", MAY_FIRST + 500, 0),
            ("1970-01-01T00:00:00Z", 0, 0),
            ("1969-12-31T23:59:59.999Z", -1, 0),
            ("1969-12-31T23:59:59.9995Z", -1, 500_000),
            ("2000-02-29T00:00:00Z", 951_782_400_000, 0),
        ] {
            let parsed = parse_instant(text).unwrap();
            assert_eq!(parsed.millis, millis, "{text}");
            assert_eq!(parsed.sub_millis_nanos, sub, "{text}");
        }
    }

    #[test]
    fn rejects_malformed_instants() {
        for text in [
            "",
            "2026-05-01",
            "2026-05-01T10:00:00",
            "2026-05-01 10:00:00Z",
            "2026-02-30T10:00:00Z",
            "2026-05-01T24:00:00Z",
            "2026-05-01T10:00:00.Z",
            "2026-05-01T10:00:00.1234567890Z",
            "2026-05-01T10:00:00Zjunk",
            "1777629600000",
        ] {
            let err = parse_instant(text).unwrap_err();
            assert!(err.to_string().contains("ISO-8601"), "{err}");
        }
    }

    #[test]
    fn formats_like_java() {
        assert_eq!(format_instant(MAY_FIRST), "2026-05-01T10:00:00Z");
        assert_eq!(format_instant(MAY_FIRST + 120), "2026-05-01T10:00:00.120Z");
        assert_eq!(format_rfc3339_millis(MAY_FIRST), "2026-05-01T10:00:00.000Z");
        assert_eq!(format_rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            format_instant(253_402_300_800_000),
            "+10000-01-01T00:00:00Z"
        );
    }

    #[test]
    fn format_and_parse_round_trip() {
        let mut millis = -62_135_596_800_000_i64; // 0001-01-01
        while millis < 253_402_300_799_999 {
            for text in [format_instant(millis), format_rfc3339_millis(millis)] {
                assert_eq!(parse_instant(&text).unwrap().millis, millis, "{text}");
            }
            millis += 7_919_999_999_937;
        }
    }
}
