//! The agent's own counters, shared by the pipeline, the heartbeat and the
//! control socket. Lock-free on the hot path (atomics); error classes are a
//! small fixed set of `&'static str` names.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::time::Instant;

use owlet_proto::v1::ConnectionState;

#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    events_accepted: AtomicU64,
    events_dropped: AtomicU64,
    reconnects: AtomicU64,
    connection: AtomicU8,
    /// Microseconds since the epoch of the last ack; 0 = never.
    last_ack_micros: AtomicI64,
    /// Microseconds since the epoch when the stream to the SOC was last up
    /// (or the agent started, if it never was). Retries flip the state
    /// between connecting and disconnected; this does not move with them.
    down_since_micros: AtomicI64,
    /// Why the last attempt to reach the SOC failed; cleared on connect.
    uplink_problem: Mutex<Option<UplinkProblem>>,
    errors: Mutex<BTreeMap<&'static str, u64>>,
}

/// The last uplink failure, as `owlet health` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UplinkProblem {
    pub class: &'static str,
    pub reason: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            events_accepted: AtomicU64::new(0),
            events_dropped: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            connection: AtomicU8::new(ConnectionState::Connecting as u8),
            last_ack_micros: AtomicI64::new(0),
            down_since_micros: AtomicI64::new(now_micros()),
            uplink_problem: Mutex::new(None),
            errors: Mutex::new(BTreeMap::new()),
        }
    }
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Snapshot {
    pub uptime_seconds: u64,
    pub events_accepted: u64,
    pub events_dropped: u64,
    pub reconnects: u64,
    pub connection: &'static str,
    #[serde(skip)]
    pub connection_state: ConnectionState,
    /// Seconds since the stream to the SOC was last up (since start if it
    /// never was); 0 while connected.
    pub disconnected_seconds: u64,
    /// Why the last attempt to reach the SOC failed (none while connected).
    pub uplink_problem: Option<UplinkProblem>,
    /// Seconds since the last ack; `None` if never acknowledged.
    pub last_ack_age_seconds: Option<u64>,
    #[serde(skip)]
    pub last_ack_micros: i64,
    pub errors: BTreeMap<&'static str, u64>,
}

impl Metrics {
    pub fn accepted(&self, events: u64) {
        self.events_accepted.fetch_add(events, Ordering::Relaxed);
    }

    pub fn dropped(&self, events: u64) {
        self.events_dropped.fetch_add(events, Ordering::Relaxed);
    }

    pub fn error(&self, class: &'static str) {
        if let Ok(mut errors) = self.errors.lock() {
            *errors.entry(class).or_default() += 1;
        }
    }

    pub fn set_connection(&self, state: ConnectionState) {
        let previous = self.connection.swap(state as u8, Ordering::Relaxed);
        let connected = ConnectionState::Connected as u8;
        if previous == connected && state as u8 != connected {
            self.down_since_micros
                .store(now_micros(), Ordering::Relaxed);
        }
        if previous != connected && state as u8 == connected {
            self.reconnects.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut problem) = self.uplink_problem.lock() {
                *problem = None;
            }
        }
    }

    /// Records why reaching the SOC failed (counted by class, shown by
    /// `owlet health`).
    pub fn uplink_failed(&self, diagnosis: &crate::uplink::diagnosis::Diagnosis) {
        self.error(diagnosis.class);
        if let Ok(mut problem) = self.uplink_problem.lock() {
            *problem = Some(UplinkProblem {
                class: diagnosis.class,
                reason: diagnosis.to_string(),
            });
        }
    }

    /// Whether the uplink is connected to the SOC now.
    pub fn connected(&self) -> bool {
        self.connection.load(Ordering::Relaxed) == ConnectionState::Connected as u8
    }

    pub fn acked(&self) {
        self.last_ack_micros.store(now_micros(), Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let now = now_micros();
        let connection_state =
            ConnectionState::try_from(i32::from(self.connection.load(Ordering::Relaxed)))
                .unwrap_or_default();
        let last_ack = self.last_ack_micros.load(Ordering::Relaxed);
        Snapshot {
            uptime_seconds: self.started.elapsed().as_secs(),
            events_accepted: self.events_accepted.load(Ordering::Relaxed),
            events_dropped: self.events_dropped.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            connection: match connection_state {
                ConnectionState::Connected => "connected",
                ConnectionState::Connecting => "connecting",
                ConnectionState::Disconnected => "disconnected",
                ConnectionState::Unspecified => "unknown",
            },
            connection_state,
            disconnected_seconds: if connection_state == ConnectionState::Connected {
                0
            } else {
                seconds_between(self.down_since_micros.load(Ordering::Relaxed), now)
            },
            uplink_problem: self.uplink_problem.lock().ok().and_then(|p| p.clone()),
            last_ack_age_seconds: (last_ack > 0).then(|| seconds_between(last_ack, now)),
            last_ack_micros: last_ack,
            errors: self.errors.lock().map(|e| e.clone()).unwrap_or_default(),
        }
    }
}

fn seconds_between(from_micros: i64, to_micros: i64) -> u64 {
    u64::try_from(to_micros.saturating_sub(from_micros) / 1_000_000).unwrap_or(0)
}

pub fn now_micros() -> i64 {
    owlet_proto::timestamp_micros(&owlet_proto::now())
}
