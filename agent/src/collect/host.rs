//! Host health (`owlet-host`) as a collector: one `HostMetrics` event per
//! `host.interval`, and `Alert` events (source "host") for thresholds,
//! reboots and anomalies.
//!
//! Guarantees:
//! * sampling runs on its own thread ("owlet-host"), never on the async
//!   workers, and hands events over with `try_send`: it never waits on the
//!   bus; what does not fit is counted (`events_dropped`) and makes health
//!   WARNING;
//! * reloads apply without a restart (new thresholds, interval, learning
//!   settings) and keep the learned state; `host.enabled` itself applies at
//!   the next start of the agent;
//! * stopping saves the learned state before the thread ends; a thread that
//!   ends on its own (a panic) is a collector failure, restarted with
//!   backoff by the supervisor.
//!
//! Health rule: WARNING while a threshold alert is active, while events are
//! being dropped, or while a state file cannot be read or written; learning
//! progress is in the detail.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use owlet_host::{HostConfig, Monitor, Output};
use owlet_proto::v1::{Event, event::Kind};

use super::{Collector, CollectorHealth, Failure, Reload, ReloadReport, StartError};
use crate::config::Config;
use crate::pipeline::bus::EventSender;
use crate::verdict::Verdict;

/// How often a running sampler is checked for having ended.
const WATCH_EVERY: Duration = Duration::from_secs(1);

enum Command {
    Reload(Box<HostConfig>),
    Stop,
}

/// What the sampling thread shares with health and the supervisor.
#[derive(Default)]
struct Shared {
    health: Mutex<Option<owlet_host::Health>>,
    /// Why the thread ended, when it did on its own.
    failure: Mutex<Option<String>>,
    ended: AtomicBool,
    dropped: AtomicU64,
}

/// Marks the thread ended however it ends (a panic included).
struct EndGuard(Arc<Shared>);

impl Drop for EndGuard {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Ok(mut failure) = self.0.failure.lock()
        {
            failure.get_or_insert_with(|| "host sampling thread panicked".to_string());
        }
        self.0.ended.store(true, Ordering::SeqCst);
    }
}

pub struct Host {
    config: HostConfig,
    state_dir: PathBuf,
    running: Option<(SyncSender<Command>, JoinHandle<()>)>,
    shared: Arc<Shared>,
}

impl Host {
    pub fn new(config: &Config) -> Self {
        Self {
            config: config.host.clone(),
            state_dir: config.agent.state_dir.clone(),
            running: None,
            shared: Arc::default(),
        }
    }

    /// Whether the configuration asks for host health (on by default).
    pub fn wanted(config: &Config) -> bool {
        config.host.enabled
    }
}

/// Between the sample that primes the sampler and the first one sent.
const PRIME: Duration = Duration::from_secs(1);

fn run(
    config: HostConfig,
    state_dir: PathBuf,
    bus: EventSender,
    commands: mpsc::Receiver<Command>,
    shared: Arc<Shared>,
) {
    let _guard = EndGuard(shared.clone());
    let mut monitor = match Monitor::new(&config, &state_dir) {
        Ok(monitor) => monitor,
        Err(e) => {
            if let Ok(mut failure) = shared.failure.lock() {
                *failure = Some(e.to_string());
            }
            return;
        }
    };
    let mut interval = config.interval;
    // The first sample has no rates (CPU use, network and disk I/O are
    // deltas): it only primes the sampler, and the first sample the SOC
    // gets follows a moment later. Its alerts (a reboot) still go out.
    let mut priming = true;
    loop {
        let next = Instant::now() + if priming { PRIME } else { interval };
        for output in monitor.collect() {
            let kind = match output {
                Output::Metrics(_) if priming => continue,
                Output::Metrics(metrics) => Kind::HostMetrics(metrics),
                Output::Alert(alert) => Kind::Alert(alert),
            };
            let event = Event {
                seq: 0,
                time: Some(owlet_proto::now()),
                kind: Some(kind),
            };
            if bus.try_send(event).is_err() {
                shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        priming = false;
        if let Ok(mut health) = shared.health.lock() {
            *health = Some(monitor.health().clone());
        }
        loop {
            match commands.recv_timeout(next.saturating_duration_since(Instant::now())) {
                Ok(Command::Reload(config)) => {
                    monitor.reconfigure(&config);
                    interval = config.interval;
                }
                Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => {
                    monitor.save();
                    return;
                }
                Err(RecvTimeoutError::Timeout) => break,
            }
        }
    }
}

/// The host sampling thread could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the host sampling thread: {0}")]
pub struct HostStartError(std::io::Error);

impl Collector for Host {
    fn name(&self) -> &'static str {
        "host"
    }

    fn start(&mut self, bus: EventSender) -> Result<Failure, StartError> {
        let shared = Arc::new(Shared::default());
        self.shared = shared.clone();
        // Room for one reload and the stop: a sender never waits long.
        let (tx, rx) = mpsc::sync_channel(2);
        let (config, state_dir) = (self.config.clone(), self.state_dir.clone());
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("owlet-host".into())
            .spawn(move || run(config, state_dir, bus, rx, thread_shared))
            .map_err(HostStartError)?;
        self.running = Some((tx, thread));
        Ok(Box::pin(async move {
            loop {
                tokio::time::sleep(WATCH_EVERY).await;
                if shared.ended.load(Ordering::SeqCst) {
                    return shared
                        .failure
                        .lock()
                        .ok()
                        .and_then(|f| f.clone())
                        .unwrap_or_else(|| "host sampling thread ended".to_string());
                }
            }
        }))
    }

    fn reload(&mut self, config: &Config) -> Reload {
        if config.host == self.config {
            return Reload::Applied(ReloadReport::default());
        }
        self.config = config.host.clone();
        if let Some((tx, _)) = &self.running {
            // Full only when a reload is already queued: the next start
            // takes the configuration kept here.
            let _ = tx.try_send(Command::Reload(Box::new(self.config.clone())));
        }
        Reload::Applied(ReloadReport {
            changed: vec!["host".to_string()],
            ..ReloadReport::default()
        })
    }

    fn stop(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let running = self.running.take();
        Box::pin(async move {
            if let Some((tx, thread)) = running {
                // Joining blocks (the thread may be mid-sample): not on an
                // async worker.
                let _ = tokio::task::spawn_blocking(move || {
                    let _ = tx.send(Command::Stop);
                    let _ = thread.join();
                })
                .await;
            }
        })
    }

    fn health(&self) -> CollectorHealth {
        let health = self.shared.health.lock().ok().and_then(|h| h.clone());
        let dropped = self.shared.dropped.load(Ordering::Relaxed);
        let mut out = CollectorHealth::ok(serde_json::json!({
            "interval_seconds": self.config.interval.as_secs_f64(),
            "events_dropped": dropped,
            "host": health,
        }));
        let Some(health) = health else {
            return out;
        };
        for active in &health.active_alerts {
            out.verdict = Verdict::Warning;
            out.reasons.push(format!(
                "host: {} ({}): {}",
                active.name, active.subject, active.message
            ));
        }
        for note in &health.notes {
            out.verdict = Verdict::Warning;
            out.reasons.push(format!("host: {note}"));
        }
        if dropped > 0 {
            out.verdict = Verdict::Warning;
            out.reasons.push(format!(
                "host: {dropped} metrics/alert events dropped because the bus was full (the spool disk is too slow)"
            ));
        }
        out
    }
}
