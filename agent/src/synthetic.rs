//! A synthetic load producer for benchmarks and end-to-end tests: it emits
//! `CheckResult` events (check id "synthetic", message = a counter from 0) at
//! a configured rate, through the same bus as every real collector.
//!
//! It waits when the bus is full (like a collector that must not lose data),
//! so every event it generates is accepted: tests can count exactly. Off
//! unless `[synthetic] rate` is set.

use std::time::Duration;

use owlet_proto::v1::{CheckResult, CheckType, Event, State, event::Kind};
use serde::Deserialize;
use tokio::sync::watch;

use crate::pipeline::bus::EventSender;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SyntheticSection {
    /// Events per second; 0 = off.
    #[serde(default)]
    pub rate: u64,
    /// Stop after this many events; 0 = no limit.
    #[serde(default)]
    pub total: u64,
}

/// Ticks per second the producer works in; each tick sends rate/TICKS events.
const TICKS: u64 = 100;

pub async fn run(config: SyntheticSection, bus: EventSender, mut shutdown: watch::Receiver<bool>) {
    if config.rate == 0 {
        return;
    }
    let limit = if config.total == 0 {
        u64::MAX
    } else {
        config.total
    };
    let per_tick = config.rate.div_ceil(TICKS).max(1);
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / TICKS));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = 0u64;
    while sent < limit {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        for _ in 0..per_tick.min(limit - sent) {
            if bus.send(event(sent)).await.is_err() {
                return;
            }
            sent += 1;
        }
    }
    tracing::info!(events = sent, "synthetic load finished");
}

fn event(n: u64) -> Event {
    Event {
        seq: 0,
        time: Some(owlet_proto::now()),
        kind: Some(Kind::CheckResult(CheckResult {
            check_id: "synthetic".into(),
            check_type: CheckType::Tcp as i32,
            target: "127.0.0.1:9".into(),
            result: State::Up as i32,
            state: State::Up as i32,
            message: n.to_string(),
            duration_us: 1234,
            ..Default::default()
        })),
    }
}
