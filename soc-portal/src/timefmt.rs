//! Times for people: in the reader's zone, with the offset always shown
//! (`2026-12-07 10:15:02 +09:00`), and form input read in that zone.
//!
//! Guarantees: stored times stay UTC µs; every rendered time carries its
//! offset; an ambiguous or skipped local time (DST) is resolved to the
//! earliest instant or refused, never guessed silently.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// `zone` parsed, UTC when unknown.
pub fn zone(name: &str) -> Tz {
    name.parse().unwrap_or(Tz::UTC)
}

/// `YYYY-MM-DD HH:MM:SS ±HH:MM` in `tz`.
pub fn show(us: i64, tz: Tz) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .unwrap_or_default()
        .with_timezone(&tz)
        .format("%Y-%m-%d %H:%M:%S %:z")
        .to_string()
}

/// A how-long text: "3d 4h", "2h 5m", "40s".
pub fn span(us: i64) -> String {
    let s = (us / 1_000_000).max(0);
    let (d, h, m) = (s / 86_400, s / 3_600 % 24, s / 60 % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {}s", s % 60)
    } else {
        format!("{s}s")
    }
}

/// A form's local time (`2026-12-07T10:15`, `2026-12-07 10:15:02`, or a
/// date `2026-12-07`) in `tz`, as UTC µs.
pub fn parse_local(text: &str, tz: Tz) -> Result<i64, String> {
    let text = text.trim();
    let naive = [
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
    .or_else(|| {
        chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })
    .ok_or_else(|| format!("\"{text}\" is not a time like 2026-12-07T10:15 or 2026-12-07"))?;
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.timestamp_micros())
        .ok_or_else(|| format!("{text} does not exist in {tz} (a daylight-saving jump)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_carry_their_offset() {
        let us = 1_796_606_102_000_000; // 2026-12-07T01:15:02Z
        assert_eq!(show(us, zone("Asia/Tokyo")), "2026-12-07 10:15:02 +09:00");
        assert_eq!(show(us, zone("nonsense")), "2026-12-07 01:15:02 +00:00");
        assert_eq!(
            parse_local("2026-12-07T10:15:02", zone("Asia/Tokyo")),
            Ok(us)
        );
        assert!(parse_local("yesterday", Tz::UTC).is_err());
        assert_eq!(span(90_000_000), "1m 30s");
    }
}
