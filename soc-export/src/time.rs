//! The zone export times are written in: an IANA zone or UTC, always with
//! an explicit offset.

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;

/// A time zone for rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    Utc,
    Named(Tz),
}

impl Zone {
    /// `"UTC"` or an IANA name such as `"Asia/Tokyo"`; an unknown name is
    /// an error naming it.
    pub fn parse(name: &str) -> Result<Self, String> {
        if name.eq_ignore_ascii_case("utc") || name == "Etc/UTC" {
            return Ok(Zone::Utc);
        }
        name.parse::<Tz>().map(Zone::Named).map_err(|_| {
            format!("unknown time zone {name:?}: use an IANA name such as Asia/Tokyo or Europe/Berlin, or UTC")
        })
    }

    /// RFC 3339 with milliseconds and an explicit offset (`Z` never: UTC
    /// is written `+00:00`, so every record shows its offset the same way).
    pub fn rfc3339(&self, micros: i64) -> String {
        let Some(t) = DateTime::<Utc>::from_timestamp_micros(micros) else {
            return String::new();
        };
        match self {
            Zone::Utc => t.to_rfc3339_opts(SecondsFormat::Millis, false),
            Zone::Named(tz) => t
                .with_timezone(tz)
                .to_rfc3339_opts(SecondsFormat::Millis, false),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Zone::Utc => "UTC",
            Zone::Named(tz) => tz.name(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_carry_an_explicit_offset() {
        let t = 1_796_515_200_000_000; // 2026-12-06T00:00:00Z
        assert_eq!(Zone::Utc.rfc3339(t), "2026-12-06T00:00:00.000+00:00");
        let tokyo = Zone::parse("Asia/Tokyo").unwrap();
        assert_eq!(tokyo.rfc3339(t), "2026-12-06T09:00:00.000+09:00");
        assert!(
            Zone::parse("Mars/Olympus")
                .unwrap_err()
                .contains("Mars/Olympus")
        );
    }
}
