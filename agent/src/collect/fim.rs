//! File integrity monitoring (`owlet-fim`) as a collector: file changes and
//! the monitor's own alerts (source "fim") as events on the bus.
//!
//! Guarantees:
//! * only started when `[[fim.watch]]` entries exist;
//! * the monitor runs on its own thread and hands events over with a
//!   blocking send: a full bus slows the monitor down (the kernel queues
//!   notifications meanwhile; an overflow there means a rescan, reported),
//!   so no change is dropped here;
//! * a reload with a different `[fim]` has the supervisor restart the
//!   monitor (a failed start is a collector failure); the baseline on disk
//!   carries over, so nothing changed in between is lost;
//! * a monitor thread that dies is a collector failure (restart with backoff).
//!
//! Health rule: WARNING while directories are left to periodic scanning
//! (watch limit), after queue overflows, and after permission problems.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use owlet_fim::{FimConfig, Monitor, Output};
use owlet_proto::v1::{Event, event::Kind};

use super::{Collector, CollectorHealth, Failure, Reload, ReloadReport, StartError};
use crate::config::Config;
use crate::pipeline::bus::EventSender;
use crate::verdict::Verdict;

/// How often a running monitor is checked for a dead thread.
const WATCH_EVERY: Duration = Duration::from_secs(1);

pub struct Fim {
    config: FimConfig,
    state_dir: PathBuf,
    bus: Option<EventSender>,
    running: Option<Arc<Monitor>>,
}

impl Fim {
    pub fn new(config: &Config) -> Self {
        Self {
            config: config.fim.clone(),
            state_dir: FimConfig::state_dir(&config.agent.state_dir),
            bus: None,
            running: None,
        }
    }

    /// Whether the configuration asks for file watching at all.
    pub fn wanted(config: &Config) -> bool {
        config.fim.enabled()
    }

    fn launch(&mut self, bus: EventSender) -> Result<Arc<Monitor>, owlet_fim::StartError> {
        let sink_bus = bus.clone();
        let monitor = Monitor::start(
            self.config.clone(),
            self.state_dir.clone(),
            Box::new(move |output: Output| {
                let kind = match output {
                    Output::Change(change) => Kind::FileChange(change.to_proto()),
                    Output::Alert(alert) => Kind::Alert(alert.to_proto()),
                };
                let event = Event {
                    seq: 0,
                    time: Some(owlet_proto::now()),
                    kind: Some(kind),
                };
                // The monitor's own thread: blocking is backpressure, not a
                // stalled async worker. A closed bus means shutdown.
                let _ = sink_bus.blocking_send(event);
            }),
        )?;
        self.bus = Some(bus);
        let monitor = Arc::new(monitor);
        self.running = Some(monitor.clone());
        Ok(monitor)
    }

    fn halt(&mut self) -> Option<Monitor> {
        self.running.take().and_then(Arc::into_inner)
    }
}

impl Collector for Fim {
    fn name(&self) -> &'static str {
        "fim"
    }

    fn start(&mut self, bus: EventSender) -> Result<Failure, StartError> {
        // The watch holds the monitor of this start only: a restart (after
        // a failure or a reload) gets a watch of its own.
        let monitor = Arc::downgrade(&self.launch(bus)?);
        Ok(Box::pin(async move {
            loop {
                tokio::time::sleep(WATCH_EVERY).await;
                if let Some(failure) = monitor.upgrade().and_then(|m| m.failure()) {
                    return failure;
                }
            }
        }))
    }

    fn reload(&mut self, config: &Config) -> Reload {
        let state_dir = FimConfig::state_dir(&config.agent.state_dir);
        if config.fim == self.config && state_dir == self.state_dir {
            return Reload::Applied(ReloadReport::default());
        }
        self.config = config.fim.clone();
        self.state_dir = state_dir;
        Reload::Restart(ReloadReport {
            changed: vec!["fim".into()],
            ..ReloadReport::default()
        })
    }

    fn stop(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let monitor = self.halt();
        self.bus = None;
        Box::pin(async move {
            if let Some(m) = monitor {
                // Joining the thread (it saves the baseline) blocks.
                let _ = tokio::task::spawn_blocking(move || m.stop()).await;
            }
        })
    }

    fn health(&self) -> CollectorHealth {
        let Some(monitor) = &self.running else {
            return CollectorHealth::ok(serde_json::json!({}));
        };
        let s = monitor.stats();
        let mut health = CollectorHealth::ok(serde_json::to_value(&s).unwrap_or_default());
        if s.fallback_scanning {
            health.verdict = Verdict::Warning;
            health.reasons.push(format!(
                "fim: inotify watch limit reached, {} directories are scanned every {} instead (raise fs.inotify.max_user_watches)",
                s.unwatched_dirs,
                humantime::format_duration(self.config.scan_interval)
            ));
        }
        if s.overflows > 0 {
            health.verdict = Verdict::Warning;
            health.reasons.push(format!(
                "fim: the notification queue overflowed {} times since start (the trees were rescanned)",
                s.overflows
            ));
        }
        if s.permission_denied > 0 {
            health.verdict = Verdict::Warning;
            health.reasons.push(format!(
                "fim: {} paths could not be read or watched (permission denied)",
                s.permission_denied
            ));
        }
        health
    }
}
