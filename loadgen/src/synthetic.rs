//! A synthetic load producer: it emits `CheckResult` events (check id
//! "synthetic", message = a counter from 0) at a configured rate, through
//! the same bus and the same collector shape as every real capability.
//!
//! It waits when the bus is full (like a collector that must not lose data),
//! so every event it generates is accepted: tests can count exactly. It logs
//! "synthetic load finished" when it has produced `total` events.

use std::pin::Pin;
use std::time::Duration;

use owlet_agent::collect::{Collector, CollectorHealth, Failure, Reload, ReloadReport, StartError};
use owlet_agent::config::Config;
use owlet_agent::pipeline::bus::EventSender;
use owlet_proto::v1::{CheckResult, CheckType, Event, State, event::Kind};
use tokio::task::JoinHandle;

/// Ticks per second the producer works in; each tick sends rate/TICKS events.
const TICKS: u64 = 100;

pub struct Synthetic {
    rate: u64,
    total: u64,
    /// Events produced so far: a restart continues the counter.
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: Option<JoinHandle<()>>,
}

impl Synthetic {
    pub fn new(rate: u64, total: u64) -> Self {
        Self {
            rate,
            total,
            sent: Default::default(),
            task: None,
        }
    }
}

impl Collector for Synthetic {
    fn name(&self) -> &'static str {
        "synthetic"
    }

    fn start(&mut self, bus: EventSender) -> Result<Failure, StartError> {
        let task = tokio::spawn(produce(self.rate, self.total, self.sent.clone(), bus));
        self.task = Some(task);
        // Finishing is not a failure: the load simply ends.
        Ok(Box::pin(std::future::pending()))
    }

    fn reload(&mut self, _config: &Config) -> Reload {
        Reload::Applied(ReloadReport::default())
    }

    fn stop(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let task = self.task.take();
        Box::pin(async move {
            if let Some(task) = task {
                task.abort();
                let _ = task.await;
            }
        })
    }

    fn health(&self) -> CollectorHealth {
        let produced = self.sent.load(std::sync::atomic::Ordering::Relaxed);
        CollectorHealth::ok(serde_json::json!({ "events_produced": produced }))
    }
}

async fn produce(
    rate: u64,
    total: u64,
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
    bus: EventSender,
) {
    use std::sync::atomic::Ordering;
    if rate == 0 {
        return;
    }
    let limit = if total == 0 { u64::MAX } else { total };
    let per_tick = rate.div_ceil(TICKS).max(1);
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / TICKS));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut n = sent.load(Ordering::Relaxed);
    while n < limit {
        ticker.tick().await;
        for _ in 0..per_tick.min(limit - n) {
            if bus.send(event(n)).await.is_err() {
                return;
            }
            n += 1;
            sent.store(n, Ordering::Relaxed);
        }
    }
    tracing::info!(events = n, "synthetic load finished");
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
