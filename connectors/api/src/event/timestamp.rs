//! ISO-8601 / RFC 3339 instants <-> milliseconds since the Unix epoch.
//!
//! Polaris writes timestamps with Java's `Instant.toString()`: `2026-05-01T10:00:00Z`, with 0,
//! 3, 6 or 9 fractional digits. The bridge models time as milliseconds; [`parse_instant`] also
//! reports the sub-millisecond remainder so a codec can tell whether text is exactly
//! representable in milliseconds. Parsing is the `time` crate's RFC 3339 parser (years 0000 to
//! 9999, `Z` or a numeric offset).

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const NANOS_PER_MILLI: i128 = 1_000_000;

/// Why a timestamp string is not an ISO-8601 instant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not an ISO-8601 instant like 2026-05-01T10:00:00.123Z: {reason}")]
pub struct TimestampError {
    /// The rejected text (truncated to 64 characters).
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
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
    match split(millis) {
        Some((date_time, ms)) => format!("{date_time}.{ms:03}Z"),
        None => millis.to_string(),
    }
}

/// Formats `millis` the way Java's `Instant.toString()` does for a millisecond-precision
/// instant: no fraction when it is zero, else three digits (`2026-05-01T10:00:00Z`,
/// `2026-05-01T10:00:00.120Z`). Instants outside the years 0000-9999 are written as their
/// number of milliseconds.
pub fn format_instant(millis: i64) -> String {
    match split(millis) {
        Some((date_time, 0)) => format!("{date_time}Z"),
        Some((date_time, ms)) => format!("{date_time}.{ms:03}Z"),
        None => millis.to_string(),
    }
}

/// Renders everything but the fraction and zone, and returns the milliseconds of the second.
fn split(millis: i64) -> Option<(String, u16)> {
    let at =
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * NANOS_PER_MILLI).ok()?;
    Some((
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second()
        ),
        at.millisecond(),
    ))
}

/// Parses an RFC 3339 instant: `YYYY-MM-DDTHH:MM:SS[.fraction]` (1 to 9 fractional digits)
/// followed by `Z` or a `+HH:MM` / `-HH:MM` offset.
pub fn parse_instant(text: &str) -> Result<ParsedInstant, TimestampError> {
    let at = OffsetDateTime::parse(text, &Rfc3339).map_err(|e| TimestampError {
        text: text.chars().take(64).collect(),
        reason: e.to_string(),
    })?;
    let nanos = at.unix_timestamp_nanos();
    Ok(ParsedInstant {
        millis: nanos.div_euclid(NANOS_PER_MILLI) as i64,
        sub_millis_nanos: nanos.rem_euclid(NANOS_PER_MILLI) as u32,
    })
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
            "2026-02-30T10:00:00Z",
            "2026-05-01T24:00:00Z",
            "2026-05-01T10:00:00.Z",
            "2026-05-01T10:00:00Zjunk",
            "1777629600000",
        ] {
            let err = parse_instant(text).expect_err(text);
            assert!(err.to_string().contains("ISO-8601"), "{err}");
        }
    }

    #[test]
    fn formats_like_java() {
        assert_eq!(format_instant(MAY_FIRST), "2026-05-01T10:00:00Z");
        assert_eq!(format_instant(MAY_FIRST + 120), "2026-05-01T10:00:00.120Z");
        assert_eq!(format_rfc3339_millis(MAY_FIRST), "2026-05-01T10:00:00.000Z");
        assert_eq!(format_rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_instant(253_402_300_800_000), "253402300800000");
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
