//! A report's period: a calendar month (`2026-11`) or an ISO week
//! (`2026-W48`), from midnight to midnight in the tenant's zone.

use chrono::{Datelike, Days, Months, NaiveDate, TimeZone, Weekday};
use owlet_soc_export::Zone;

/// A month or an ISO week, as dates in the tenant's zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    /// As given: `2026-11` or `2026-W48`.
    pub label: String,
    /// First day.
    pub first: NaiveDate,
    /// The day after the last.
    pub end: NaiveDate,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "period {given:?}: {why}; use a month as YYYY-MM (for example 2026-11) or an ISO week as YYYY-Www (for example 2026-W48)"
)]
pub struct PeriodError {
    pub given: String,
    pub why: &'static str,
}

impl Period {
    /// Parses `YYYY-MM` or `YYYY-Www`.
    pub fn parse(text: &str) -> Result<Self, PeriodError> {
        let err = |why| PeriodError {
            given: text.to_string(),
            why,
        };
        let (year, rest) = text.split_once('-').ok_or_else(|| err("no '-'"))?;
        let year: i32 = year
            .parse()
            .ok()
            .filter(|y| (1970..=9999).contains(y))
            .ok_or_else(|| err("the year is not a number from 1970 to 9999"))?;
        let (first, end) = if let Some(week) = rest.strip_prefix(['W', 'w']) {
            let week: u32 = week.parse().map_err(|_| err("the week is not a number"))?;
            let first = NaiveDate::from_isoywd_opt(year, week, Weekday::Mon)
                .ok_or_else(|| err("that year has no such ISO week"))?;
            (first, first + Days::new(7))
        } else {
            let month: u32 = rest
                .parse()
                .ok()
                .filter(|m| (1..=12).contains(m))
                .ok_or_else(|| err("the month is not a number from 1 to 12"))?;
            let first =
                NaiveDate::from_ymd_opt(year, month, 1).ok_or_else(|| err("no such month"))?;
            (first, first + Months::new(1))
        };
        Ok(Period {
            label: if rest.starts_with(['W', 'w']) {
                format!("{year}-W{:02}", first.iso_week().week())
            } else {
                format!("{year}-{:02}", first.month())
            },
            first,
            end,
        })
    }

    /// `[start, end)` in UTC µs: midnight of the first day to midnight after
    /// the last, in `zone`.
    pub fn bounds(&self, zone: &Zone) -> (i64, i64) {
        (midnight(zone, self.first), midnight(zone, self.end))
    }
}

/// The start of local day `day` in `zone` (UTC µs). A zone whose clocks
/// skip midnight starts the day at the first local time that exists.
fn midnight(zone: &Zone, day: NaiveDate) -> i64 {
    let local = day.and_time(chrono::NaiveTime::MIN);
    match zone {
        Zone::Utc => local.and_utc().timestamp_micros(),
        Zone::Named(tz) => (0..=4)
            .find_map(|quarter| {
                let t = local + chrono::Duration::minutes(15 * quarter);
                tz.from_local_datetime(&t).earliest()
            })
            .map_or(local.and_utc().timestamp_micros(), |t| t.timestamp_micros()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_iso_weeks_parse_to_local_midnights() {
        let p = Period::parse("2026-11").unwrap();
        assert_eq!(p.first.to_string(), "2026-11-01");
        assert_eq!(p.end.to_string(), "2026-12-01");
        let tokyo = Zone::parse("Asia/Tokyo").unwrap();
        let (start, end) = p.bounds(&tokyo);
        // 2026-11-01T00:00+09:00 is 2026-10-31T15:00Z.
        assert_eq!(start, 1_793_458_800_000_000);
        assert_eq!(end - start, 30 * 86_400_000_000);
        let w = Period::parse("2026-W48").unwrap();
        assert_eq!(w.first.to_string(), "2026-11-23");
        assert_eq!(w.end.to_string(), "2026-11-30");
        assert_eq!(w.label, "2026-W48");
        // Berlin leaves summer time on 2026-10-25: that week has 169 hours.
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        let (s, e) = Period::parse("2026-W43").unwrap().bounds(&berlin);
        assert_eq!(e - s, 169 * 3_600_000_000);
    }

    #[test]
    fn a_wrong_period_says_what_to_write() {
        for bad in ["2026", "2026-13", "2026-W54", "11-2026", "2026-W", "x-11"] {
            let e = Period::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("YYYY-MM"), "{e}");
        }
    }
}
