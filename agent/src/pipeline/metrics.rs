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
    /// Microseconds since the epoch when the connection state last changed.
    connection_since_micros: AtomicI64,
    errors: Mutex<BTreeMap<&'static str, u64>>,
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
            connection_since_micros: AtomicI64::new(now_micros()),
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
    /// Seconds the connection has been in its current state.
    pub connection_state_seconds: u64,
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
        if previous != state as u8 {
            self.connection_since_micros
                .store(now_micros(), Ordering::Relaxed);
            if state == ConnectionState::Connected {
                self.reconnects.fetch_add(1, Ordering::Relaxed);
            }
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
            connection_state_seconds: seconds_between(
                self.connection_since_micros.load(Ordering::Relaxed),
                now,
            ),
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
