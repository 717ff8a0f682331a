//! A synthetic load producer: it emits `CheckResult` events (check id
//! "synthetic", message = a counter from 0) at a configured rate, through
//! the same bus and the same collector shape as every real capability; or,
//! for the SOC's flow-heavy benchmark, `FlowRecord`s with varied endpoints,
//! ports and names (a counter from 0 in `tls_alpn`).
//!
//! It waits when the bus is full (like a collector that must not lose data),
//! so every event it generates is accepted: tests can count exactly. It logs
//! "synthetic load finished" when it has produced `total` events.

use std::pin::Pin;
use std::time::Duration;

use owlet_agent::collect::{Collector, CollectorHealth, Failure, Reload, ReloadReport, StartError};
use owlet_agent::config::Config;
use owlet_agent::pipeline::bus::EventSender;
use owlet_proto::v1::{CheckResult, CheckType, Event, FlowRecord, State, event::Kind};
use tokio::task::JoinHandle;

/// Ticks per second the producer works in; each tick sends rate/TICKS events.
const TICKS: u64 = 100;

/// What the producer emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LoadKind {
    /// Check results, check id "synthetic".
    Check,
    /// Flow records over a few thousand hosts, ports and names.
    Flow,
}

pub struct Synthetic {
    kind: LoadKind,
    rate: u64,
    total: u64,
    /// Events produced so far: a restart continues the counter.
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: Option<JoinHandle<()>>,
}

impl Synthetic {
    pub fn new(kind: LoadKind, rate: u64, total: u64) -> Self {
        Self {
            kind,
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
        let task = tokio::spawn(produce(
            self.kind,
            self.rate,
            self.total,
            self.sent.clone(),
            bus,
        ));
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
    kind: LoadKind,
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
            let event = match kind {
                LoadKind::Check => event(n),
                LoadKind::Flow => flow(n),
            };
            if bus.send(event).await.is_err() {
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

/// Flow `n`: 4,096 sources, 2,048 destinations, 64 ports and 512 names,
/// mixed so that top lists have a long tail.
fn flow(n: u64) -> Event {
    let h = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let src = h % 4096;
    let dst = (h >> 12) % 2048;
    let port = [443, 80, 53, 22, 123, 8080][(h >> 24) as usize % 6] + ((h >> 30) % 11) as u32;
    Event {
        seq: 0,
        time: Some(owlet_proto::now()),
        kind: Some(Kind::FlowRecord(FlowRecord {
            interface: "span0".into(),
            src_addr: format!("10.{}.{}.{}", src >> 8, src & 0xff, 1 + (h >> 40) % 3),
            dst_addr: format!("198.51.{}.{}", dst >> 8, dst & 0xff),
            src_port: 32768 + (h >> 16) as u32 % 28000,
            dst_port: port,
            protocol: if port == 53 || port == 123 { 17 } else { 6 },
            packets_out: 1 + (h >> 8) % 40,
            bytes_out: 60 + (h >> 4) % 60_000,
            packets_in: 1 + (h >> 10) % 40,
            bytes_in: 60 + (h >> 6) % 600_000,
            tls_sni: if port == 443 {
                format!("svc{}.example.net", (h >> 36) % 512)
            } else {
                String::new()
            },
            dns_query: if port == 53 {
                format!("host{}.example.org", (h >> 36) % 512)
            } else {
                String::new()
            },
            tls_alpn: vec![n.to_string()],
            ..Default::default()
        })),
    }
}
