//! The agent's own health: a heartbeat `AgentStatus` event every
//! `status.interval`, and the health verdict `owlet health` prints.
//!
//! The heartbeat is also what the SOC's liveness monitor watches: an agent
//! that stops sending it is reported silent even if its TCP connection lives.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use owlet_proto::v1::{AgentStatus, ConnectionState, Event, event::Kind};
use owlet_spool::SpoolStats;
use serde::Serialize;
use tokio::sync::watch;

use crate::facts::HostFacts;
use crate::pipeline::{bus::EventSender, metrics::Metrics, store::Store};

/// Sends a heartbeat now and then every `interval` until shutdown.
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
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let event = status_event(interval, &hw_profile, &facts, &store.stats(), &metrics);
        if bus.send(event).await.is_err() {
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

/// Nagios-style verdict, as `owlet health` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl Verdict {
    /// Nagios plugin exit status.
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Ok => 0,
            Verdict::Warning => 1,
            Verdict::Critical => 2,
            Verdict::Unknown => 3,
        }
    }
}

/// What `owlet health --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub verdict: Verdict,
    /// Why the verdict is not OK (empty when OK).
    pub reasons: Vec<String>,
    pub version: &'static str,
    pub metrics: crate::pipeline::metrics::Snapshot,
    pub spool_events: u64,
    pub spool_bytes: u64,
    pub spool_max_bytes: u64,
    pub spool_oldest_age_seconds: u64,
}

/// Disconnected longer than this is CRITICAL (shorter is a WARNING).
const DISCONNECTED_CRITICAL: Duration = Duration::from_secs(300);

/// Judges the agent's health from its counters.
pub fn health(metrics: &Metrics, spool: &SpoolStats, spool_max_bytes: u64) -> Health {
    let m = metrics.snapshot();
    let mut verdict = Verdict::Ok;
    let mut reasons = Vec::new();
    let mut raise = |level: Verdict, reason: String| {
        verdict = verdict.max_with(level);
        reasons.push(reason);
    };
    if m.connection_state != ConnectionState::Connected {
        let level = if m.connection_state_seconds >= DISCONNECTED_CRITICAL.as_secs() {
            Verdict::Critical
        } else {
            Verdict::Warning
        };
        raise(
            level,
            format!(
                "not connected to the SOC for {}s",
                m.connection_state_seconds
            ),
        );
    }
    let fill = spool
        .bytes
        .saturating_mul(100)
        .checked_div(spool_max_bytes)
        .unwrap_or(0);
    if fill >= 90 {
        raise(Verdict::Critical, format!("spool {fill}% full"));
    } else if fill >= 50 {
        raise(Verdict::Warning, format!("spool {fill}% full"));
    }
    if m.events_dropped > 0 {
        raise(
            Verdict::Warning,
            format!("{} events lost since start", m.events_dropped),
        );
    }
    Health {
        verdict,
        reasons,
        version: env!("CARGO_PKG_VERSION"),
        spool_events: spool.events,
        spool_bytes: spool.bytes,
        spool_max_bytes,
        spool_oldest_age_seconds: oldest_age(spool),
        metrics: m,
    }
}

impl Verdict {
    fn rank(self) -> u8 {
        match self {
            Verdict::Ok => 0,
            Verdict::Warning => 1,
            Verdict::Unknown => 2,
            Verdict::Critical => 3,
        }
    }

    fn max_with(self, other: Verdict) -> Verdict {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }
}
