//! The agent's own health: a heartbeat `AgentStatus` event every
//! `status.interval`, and the health verdict `owlet health` prints.
//!
//! The heartbeat is also what the SOC's liveness monitor watches: an agent
//! that stops sending it is reported silent even if its TCP connection lives.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use owlet_proto::v1::{AgentStatus, ConnectionState, Event, event::Kind};
use owlet_spool::SpoolStats;
use serde::Serialize;
use tokio::sync::watch;

use crate::collect::CollectorReport;
use crate::facts::HostFacts;
use crate::pipeline::{bus::EventSender, metrics::Metrics, store::Store};
pub use crate::verdict::Verdict;

/// Sends a heartbeat now and then every `interval`, and a last one marked
/// `stopping` at shutdown (a planned stop, not a crash).
pub async fn heartbeat(
    interval: Duration,
    hw_profile: String,
    facts: HostFacts,
    store: Store,
    metrics: Arc<Metrics>,
    bus: EventSender,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = ticker.tick() => false,
            _ = shutdown.changed() => true,
        };
        let mut event = status_event(interval, &hw_profile, &facts, &store.stats(), &metrics);
        if let Some(Kind::AgentStatus(status)) = &mut event.kind {
            // The goodbye: the SOC tells a planned stop from a crash by it.
            status.stopping = stopping;
        }
        // A bus that stays full (a stuck spool writer) wedges the heartbeat.
        let _busy = crate::tasks::busy();
        if bus.send(event).await.is_err() || stopping {
            return;
        }
    }
}

fn status_event(
    interval: Duration,
    hw_profile: &str,
    facts: &HostFacts,
    spool: &SpoolStats,
    metrics: &Metrics,
) -> Event {
    let m = metrics.snapshot();
    let status = AgentStatus {
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_seconds: m.uptime_seconds,
        spool_events: spool.events,
        spool_bytes: spool.bytes,
        spool_oldest_age_seconds: oldest_age(spool),
        connection: m.connection_state as i32,
        last_ack_time: (m.last_ack_micros > 0).then(|| owlet_proto::Timestamp {
            seconds: m.last_ack_micros / 1_000_000,
            nanos: ((m.last_ack_micros % 1_000_000) * 1000) as i32,
        }),
        events_accepted: m.events_accepted,
        events_dropped: m.events_dropped,
        errors: m.errors.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        time_zone: facts.time_zone.clone(),
        utc_offset_seconds: crate::facts::utc_offset_seconds(),
        hw_profile: hw_profile.to_string(),
        interval_seconds: u32::try_from(interval.as_secs()).unwrap_or(u32::MAX),
        rss_bytes: rss_bytes(),
        reconnects: m.reconnects,
        stopping: false,
    };
    Event {
        seq: 0,
        time: Some(owlet_proto::now()),
        kind: Some(Kind::AgentStatus(status)),
    }
}

fn oldest_age(spool: &SpoolStats) -> u64 {
    spool
        .oldest
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .map_or(0, |d| d.as_secs())
}

/// Resident set size of this process, from /proc (0 if unreadable).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

/// What `owlet health --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub verdict: Verdict,
    /// Why the verdict is not OK (empty when OK), worst first.
    pub reasons: Vec<String>,
    pub version: &'static str,
    pub metrics: crate::pipeline::metrics::Snapshot,
    pub spool_events: u64,
    pub spool_bytes: u64,
    pub spool_max_bytes: u64,
    pub spool_oldest_age_seconds: u64,
    /// Highest sequence number the spool has accepted (0: none yet).
    pub spool_last_seq: u64,
    /// Every collector's state and its own findings.
    pub collectors: BTreeMap<&'static str, CollectorReport>,
    /// The last rejected reload's errors, until a reload succeeds.
    pub reload_rejected: Option<String>,
    /// Sections a reload changed that apply at the next start of owlet.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending_restart: Vec<String>,
    /// The certificate the uplink connects with.
    pub certificate: Option<CertificateSummary>,
}

/// The agent's certificate in `owlet health --json`.
#[derive(Debug, Clone, Serialize)]
pub struct CertificateSummary {
    pub path: String,
    pub serial: String,
    /// RFC 3339, UTC.
    pub not_after: String,
    /// Why the last reload did not take a new certificate, until one does.
    pub reload_rejected: Option<String>,
}

/// What the verdict is judged from.
pub struct HealthInputs<'a> {
    pub metrics: crate::pipeline::metrics::Snapshot,
    pub spool: &'a SpoolStats,
    pub spool_max_bytes: u64,
    pub collectors: BTreeMap<&'static str, CollectorReport>,
    pub reload_rejected: Option<&'a str>,
    pub pending_restart: &'a [String],
    /// Events waiting this long unacknowledged: WARNING, then CRITICAL.
    pub undelivered: Undelivered,
    /// The uplink's certificate (`None` in tests that do not need one).
    pub certificate: Option<&'a crate::uplink::InUse>,
}

/// The delivery thresholds (`status.undelivered_warning` / `_critical`).
#[derive(Debug, Clone, Copy)]
pub struct Undelivered {
    pub warning: Duration,
    pub critical: Duration,
}

impl Default for Undelivered {
    fn default() -> Self {
        Self {
            warning: Duration::from_secs(120),
            critical: Duration::from_secs(300),
        }
    }
}

/// Not connected for longer than this is CRITICAL (shorter is a WARNING:
/// a SOC restart or a short network hiccup is normal).
pub const DISCONNECTED_CRITICAL: Duration = Duration::from_secs(300);

/// Judges the agent's health. The rule (README, "owlet health"):
/// * CRITICAL: not connected to the SOC for 5 minutes or more; events
///   waiting unacknowledged for `status.undelivered_critical` (5 min); spool
///   90 % full or more; a collector failed and is being restarted; the
///   agent's certificate has expired;
/// * WARNING: not connected for less than 5 minutes; events waiting
///   unacknowledged for `status.undelivered_warning` (2 min); spool 50 %
///   full or more; events lost since start; a check DOWN, DEGRADED or UNKNOWN; the
///   last reload was rejected (the previous configuration still runs); a
///   reload changed settings that wait for a restart; the agent's
///   certificate expires within 30 days; the last reload's new certificate
///   was refused (the previous one is still in use);
/// * OK otherwise. (UNKNOWN, 3, is what the client reports when it cannot
///   reach the agent at all.)
pub fn health(inputs: HealthInputs<'_>) -> Health {
    let HealthInputs {
        metrics: m,
        spool,
        spool_max_bytes,
        collectors,
        reload_rejected,
        pending_restart,
        undelivered,
        certificate,
    } = inputs;
    let mut findings: Vec<(Verdict, String)> = Vec::new();
    if m.connection_state != ConnectionState::Connected {
        let level = if m.disconnected_seconds >= DISCONNECTED_CRITICAL.as_secs() {
            Verdict::Critical
        } else {
            Verdict::Warning
        };
        let why = m
            .uplink_problem
            .as_ref()
            .map_or(String::new(), |p| format!(": {}", p.reason));
        findings.push((
            level,
            format!(
                "not connected to the SOC for {}{why}",
                humantime::format_duration(Duration::from_secs(m.disconnected_seconds))
            ),
        ));
    }
    // Delivery, not only the connection: events waiting with no ack. The
    // shorter of "since the last ack" and "the oldest waiting event" — a
    // backlog draining with acks flowing is fine, and so is one new event
    // after a quiet hour.
    if spool.events > 0 {
        let oldest = oldest_age(spool);
        let stalled = m.last_ack_age_seconds.map_or(oldest, |a| a.min(oldest));
        let level = if stalled >= undelivered.critical.as_secs() {
            Some(Verdict::Critical)
        } else if stalled >= undelivered.warning.as_secs() {
            Some(Verdict::Warning)
        } else {
            None
        };
        if let Some(level) = level {
            let last =
                m.last_ack_age_seconds
                    .map_or("no acknowledgement since start".to_string(), |a| {
                        format!(
                            "the last acknowledgement was {} ago",
                            humantime::format_duration(Duration::from_secs(a))
                        )
                    });
            findings.push((
                level,
                format!(
                    "events are not being delivered: {} wait, the oldest for {}; {last} (the SOC takes the connection but stores nothing: check owlet-soc's log and its disk)",
                    spool.events,
                    humantime::format_duration(Duration::from_secs(oldest))
                ),
            ));
        }
    }
    let fill = spool
        .bytes
        .saturating_mul(100)
        .checked_div(spool_max_bytes)
        .unwrap_or(0);
    if fill >= 90 {
        findings.push((Verdict::Critical, format!("spool {fill}% full")));
    } else if fill >= 50 {
        findings.push((Verdict::Warning, format!("spool {fill}% full")));
    }
    if m.events_dropped > 0 {
        findings.push((
            Verdict::Warning,
            format!("{} events lost since start", m.events_dropped),
        ));
    }
    for report in collectors.values() {
        for reason in &report.health.reasons {
            findings.push((report.health.verdict, reason.clone()));
        }
    }
    if let Some(errors) = reload_rejected {
        let first = errors.lines().next().unwrap_or_default();
        findings.push((
            Verdict::Warning,
            format!("the last reload was rejected, the previous configuration still runs: {first}"),
        ));
    }
    if !pending_restart.is_empty() {
        findings.push((
            Verdict::Warning,
            format!(
                "configuration changes wait for a restart of owlet: {} (systemctl restart owlet)",
                pending_restart.join(", ")
            ),
        ));
    }
    if let Some(cert) = certificate {
        findings.extend(cert.current.expiry_finding(SystemTime::now()));
        if let Some(why) = &cert.rejected {
            findings.push((
                Verdict::Warning,
                format!("the last reload's certificate was refused, the previous one is still in use: {why}"),
            ));
        }
    }
    // Worst first, so the one-line summary leads with what matters most.
    findings.sort_by_key(|(level, _)| std::cmp::Reverse(level.rank()));
    let verdict = findings
        .iter()
        .fold(Verdict::Ok, |v, (level, _)| v.max_with(*level));
    Health {
        verdict,
        reasons: findings.into_iter().map(|(_, reason)| reason).collect(),
        version: env!("CARGO_PKG_VERSION"),
        spool_events: spool.events,
        spool_bytes: spool.bytes,
        spool_max_bytes,
        spool_oldest_age_seconds: oldest_age(spool),
        spool_last_seq: spool.last_seq,
        collectors,
        reload_rejected: reload_rejected.map(str::to_string),
        pending_restart: pending_restart.to_vec(),
        certificate: certificate.map(|c| CertificateSummary {
            path: c.current.path.clone(),
            serial: c.current.cert.serial.clone(),
            not_after: humantime::format_rfc3339_seconds(c.current.cert.not_after).to_string(),
            reload_rejected: c.rejected.clone(),
        }),
        metrics: m,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::CollectorHealth;
    use crate::pipeline::metrics::UplinkProblem;

    fn connected() -> crate::pipeline::metrics::Snapshot {
        let metrics = Metrics::default();
        metrics.set_connection(ConnectionState::Connected);
        metrics.snapshot()
    }

    fn spool(bytes: u64) -> SpoolStats {
        SpoolStats {
            events: 0,
            bytes,
            batches: 0,
            oldest: None,
            acked_seq: 0,
            last_seq: 0,
        }
    }

    fn judge(
        metrics: crate::pipeline::metrics::Snapshot,
        spool_bytes: u64,
        collectors: BTreeMap<&'static str, CollectorReport>,
        reload_rejected: Option<&str>,
    ) -> Health {
        health(HealthInputs {
            metrics,
            spool: &spool(spool_bytes),
            spool_max_bytes: 1000,
            collectors,
            reload_rejected,
            pending_restart: &[],
            undelivered: Undelivered::default(),
            certificate: None,
        })
    }

    fn checks(verdict: Verdict, reasons: &[&str]) -> BTreeMap<&'static str, CollectorReport> {
        BTreeMap::from([(
            "checks",
            CollectorReport {
                state: "running",
                health: CollectorHealth {
                    verdict,
                    reasons: reasons.iter().map(|r| r.to_string()).collect(),
                    detail: serde_json::Value::Null,
                },
            },
        )])
    }

    #[test]
    fn delivery_is_judged_by_the_oldest_waiting_event_and_the_last_ack() {
        let waiting = |oldest_s: u64, last_ack_s: Option<u64>| {
            let mut m = connected();
            m.last_ack_age_seconds = last_ack_s;
            let spool = SpoolStats {
                events: 40,
                bytes: 10,
                batches: 2,
                oldest: Some(SystemTime::now() - Duration::from_secs(oldest_s)),
                acked_seq: 0,
                last_seq: 0,
            };
            health(HealthInputs {
                metrics: m,
                spool: &spool,
                spool_max_bytes: 1000,
                collectors: BTreeMap::new(),
                reload_rejected: None,
                pending_restart: &[],
                undelivered: Undelivered::default(),
                certificate: None,
            })
        };
        // A SOC that took the connection and stores nothing.
        let h = waiting(150, Some(140));
        assert_eq!(h.verdict, Verdict::Warning, "{:?}", h.reasons);
        assert!(
            h.reasons[0].starts_with("events are not being delivered: 40 wait"),
            "{:?}",
            h.reasons
        );
        assert_eq!(waiting(400, Some(310)).verdict, Verdict::Critical);
        assert_eq!(waiting(400, None).verdict, Verdict::Critical);
        // A backlog draining with acks flowing; one new event after a
        // quiet hour: both fine.
        assert_eq!(waiting(3600, Some(1)).verdict, Verdict::Ok);
        assert_eq!(waiting(2, Some(3600)).verdict, Verdict::Ok);
    }

    #[test]
    fn connected_and_quiet_is_ok() {
        let h = judge(connected(), 0, checks(Verdict::Ok, &[]), None);
        assert_eq!(h.verdict, Verdict::Ok);
        assert!(h.reasons.is_empty());
    }

    #[test]
    fn a_short_outage_warns_with_its_reason_and_a_long_one_is_critical() {
        let mut m = connected();
        m.connection_state = ConnectionState::Connecting;
        m.disconnected_seconds = 42;
        m.uplink_problem = Some(UplinkProblem {
            class: "tls_unknown_issuer",
            reason: "the SOC's certificate is not signed by the CA in soc.ca".into(),
        });
        let h = judge(m.clone(), 0, BTreeMap::new(), None);
        assert_eq!(h.verdict, Verdict::Warning);
        assert!(h.reasons[0].contains("42s"), "{:?}", h.reasons);
        assert!(
            h.reasons[0].contains("not signed by the CA"),
            "{:?}",
            h.reasons
        );

        m.connection_state = ConnectionState::Disconnected;
        m.disconnected_seconds = 30 * 60;
        let h = judge(m, 0, BTreeMap::new(), None);
        assert_eq!(h.verdict, Verdict::Critical);
        assert!(h.reasons[0].contains("30m"), "{:?}", h.reasons);
    }

    #[test]
    fn the_outage_clock_does_not_restart_when_retries_flip_the_state() {
        let metrics = Metrics::default();
        metrics.set_connection(ConnectionState::Connected);
        metrics.set_connection(ConnectionState::Disconnected);
        std::thread::sleep(Duration::from_millis(1100));
        // Retries: connecting, failed, connecting, failed ...
        for _ in 0..3 {
            metrics.set_connection(ConnectionState::Connecting);
            metrics.set_connection(ConnectionState::Disconnected);
        }
        metrics.set_connection(ConnectionState::Connecting);
        assert!(
            metrics.snapshot().disconnected_seconds >= 1,
            "the outage is counted from the last time the stream was up"
        );
        metrics.set_connection(ConnectionState::Connected);
        assert_eq!(metrics.snapshot().disconnected_seconds, 0);
    }

    #[test]
    fn spool_fill_and_losses() {
        assert_eq!(
            judge(connected(), 500, BTreeMap::new(), None).verdict,
            Verdict::Warning
        );
        assert_eq!(
            judge(connected(), 900, BTreeMap::new(), None).verdict,
            Verdict::Critical
        );
        let mut m = connected();
        m.events_dropped = 7;
        let h = judge(m, 0, BTreeMap::new(), None);
        assert_eq!(h.verdict, Verdict::Warning);
        assert_eq!(h.reasons, vec!["7 events lost since start"]);
    }

    #[test]
    fn checks_down_and_failed_collectors_are_named() {
        let h = judge(
            connected(),
            0,
            checks(Verdict::Warning, &["2 checks down: dns1, web"]),
            None,
        );
        assert_eq!(h.verdict, Verdict::Warning);
        assert_eq!(h.reasons, vec!["2 checks down: dns1, web"]);

        let mut collectors = checks(Verdict::Warning, &["1 check down: web"]);
        collectors.insert(
            "capture",
            CollectorReport {
                state: "restarting",
                health: CollectorHealth {
                    verdict: Verdict::Critical,
                    reasons: vec!["capture failed (1x): no eth9".into()],
                    detail: serde_json::Value::Null,
                },
            },
        );
        let h = judge(connected(), 0, collectors, None);
        assert_eq!(h.verdict, Verdict::Critical);
        // Worst first.
        assert_eq!(h.reasons[0], "capture failed (1x): no eth9");
    }

    #[test]
    fn a_rejected_reload_warns_until_cleared() {
        let h = judge(
            connected(),
            0,
            BTreeMap::new(),
            Some("owlet.toml:3:1: probe.check[0].interval: expected a duration\nsecond"),
        );
        assert_eq!(h.verdict, Verdict::Warning);
        assert!(h.reasons[0].contains("reload was rejected"));
        assert!(h.reasons[0].contains("owlet.toml:3:1"));
        assert!(!h.reasons[0].contains("second"));
        assert!(h.reload_rejected.is_some());
    }
}
