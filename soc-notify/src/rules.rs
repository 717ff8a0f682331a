//! Which events a rule notifies about, how they are grouped, and when quiet
//! hours hold them back.
//!
//! Invariants: a rule only ever sees events of its own tenant (the notifier
//! reads one tenant's log per worker and hands it that tenant's rules only;
//! [`Rule::matches`] checks the tenant again). Only `alert` and
//! `file_change` events are notifiable: they are the kinds with a severity.

use chrono::{DateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use owlet_proto::v1::event::Kind;
use owlet_soc_store::StoredEvent;

use crate::config::{GroupBy, QuietHours, RuleConfig, Severity, parse_time};

/// The facts of one notifiable event the rules look at.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate<'a> {
    pub event: &'a StoredEvent,
    pub severity: Severity,
    /// Alert source (`check`, `host`, `fim` ...); `fim` for file changes.
    pub source: String,
    /// Alert name; `file_<change>` for file changes (`file_modified` ...).
    pub name: String,
    /// Alert subject; the path for file changes.
    pub subject: String,
}

fn severity_of(raw: i32) -> Severity {
    match owlet_proto::v1::Severity::try_from(raw) {
        Ok(owlet_proto::v1::Severity::Critical) => Severity::Critical,
        Ok(owlet_proto::v1::Severity::Warning) => Severity::Warning,
        // Unset or unknown: the least urgent, so it never wakes anyone by
        // accident.
        _ => Severity::Info,
    }
}

/// The file-change alert name for a change kind.
pub fn file_change_name(change: i32) -> &'static str {
    use owlet_proto::v1::FileChangeKind as K;
    match K::try_from(change) {
        Ok(K::Created) => "file_created",
        Ok(K::Modified) => "file_modified",
        Ok(K::Deleted) => "file_deleted",
        Ok(K::Renamed) => "file_renamed",
        Ok(K::Attributes) => "file_attributes",
        _ => "file_changed",
    }
}

impl<'a> Candidate<'a> {
    /// The candidate of a notifiable event; `None` for every other kind.
    pub fn of(event: &'a StoredEvent) -> Option<Self> {
        match event.event.as_ref()?.kind.as_ref()? {
            Kind::Alert(a) => Some(Candidate {
                event,
                severity: severity_of(a.severity),
                source: a.source.clone(),
                name: a.name.clone(),
                subject: a.subject.clone(),
            }),
            Kind::FileChange(f) => Some(Candidate {
                event,
                severity: severity_of(f.severity),
                source: "fim".into(),
                name: file_change_name(f.change).into(),
                subject: f.path.clone(),
            }),
            _ => None,
        }
    }
}

/// A rule, ready to match.
#[derive(Debug, Clone)]
pub struct Rule {
    pub config: RuleConfig,
    pub zone: Tz,
    quiet: Option<(NaiveTime, NaiveTime, Option<Severity>)>,
}

impl Rule {
    pub fn new(config: RuleConfig, zone: Tz) -> Self {
        let quiet = config.quiet_hours.as_ref().and_then(|q: &QuietHours| {
            Some((
                parse_time(&q.start).ok()?,
                parse_time(&q.end).ok()?,
                q.except_severity,
            ))
        });
        Rule {
            config,
            zone,
            quiet,
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Whether the rule notifies about `c`.
    pub fn matches(&self, c: &Candidate<'_>) -> bool {
        let r = &self.config;
        let listed = |list: &[String], v: &str| list.is_empty() || list.iter().any(|x| x == v);
        c.event.tenant == r.tenant
            && c.severity >= r.min_severity
            && r.kinds.contains(&c.event.kind)
            && listed(&r.sources, &c.source)
            && listed(&r.names, &c.name)
            && listed(&r.agents, &c.event.agent)
    }

    /// The group `c` joins: one message per group and window.
    pub fn group_key(&self, c: &Candidate<'_>) -> String {
        match self.config.group_by {
            GroupBy::Rule => String::new(),
            GroupBy::Agent => c.event.agent.clone(),
            GroupBy::Subject => format!("{}/{}", c.event.agent, c.subject),
        }
    }

    /// When quiet hours hold back a message of `severity` at `now`: the end
    /// of the quiet window (UTC), or `None` when it may go out now.
    pub fn quiet_until(&self, severity: Severity, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let (start, end, except) = self.quiet?;
        if except.is_some_and(|e| severity >= e) {
            return None;
        }
        quiet_end(start, end, self.zone, now)
    }
}

/// The end of the quiet window `start..end` (local times in `zone`) that
/// contains `now`, or `None` when `now` is outside it. A window whose end
/// is before its start crosses midnight.
pub fn quiet_end(
    start: NaiveTime,
    end: NaiveTime,
    zone: Tz,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let local = now.with_timezone(&zone);
    let t = local.time();
    let date = local.date_naive();
    let end_date = if start <= end {
        if !(start <= t && t < end) {
            return None;
        }
        date
    } else if t >= start {
        date.succ_opt()?
    } else if t < end {
        date
    } else {
        return None;
    };
    let naive = end_date.and_time(end);
    // A DST gap has no such local time: take the first instant after it.
    let at = zone.from_local_datetime(&naive).earliest().or_else(|| {
        zone.from_local_datetime(&(naive + chrono::Duration::hours(1)))
            .earliest()
    })?;
    Some(at.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn quiet_window_across_midnight_in_the_tenants_zone() {
        let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
        let (s, e) = (parse_time("22:00").unwrap(), parse_time("07:00").unwrap());
        // 23:30 in Tokyo (14:30 UTC): quiet until 07:00 Tokyo next day = 22:00 UTC.
        assert_eq!(
            quiet_end(s, e, tokyo, utc("2026-12-06T14:30:00Z")),
            Some(utc("2026-12-06T22:00:00Z"))
        );
        // 02:00 Tokyo (17:00 UTC the day before): same end.
        assert_eq!(
            quiet_end(s, e, tokyo, utc("2026-12-06T17:00:00Z")),
            Some(utc("2026-12-06T22:00:00Z"))
        );
        // 12:00 Tokyo: not quiet.
        assert_eq!(quiet_end(s, e, tokyo, utc("2026-12-06T03:00:00Z")), None);
        // The same instant is quiet in UTC's evening but not in Tokyo's noon:
        // the zone is what decides.
        assert!(quiet_end(s, e, chrono_tz::UTC, utc("2026-12-06T23:00:00Z")).is_some());
        assert!(quiet_end(s, e, tokyo, utc("2026-12-06T23:00:00Z")).is_none());
    }

    #[test]
    fn window_within_one_day() {
        let (s, e) = (parse_time("09:00").unwrap(), parse_time("17:00").unwrap());
        assert_eq!(
            quiet_end(s, e, chrono_tz::UTC, utc("2026-12-06T10:00:00Z")),
            Some(utc("2026-12-06T17:00:00Z"))
        );
        assert_eq!(
            quiet_end(s, e, chrono_tz::UTC, utc("2026-12-06T17:00:00Z")),
            None
        );
    }
}
