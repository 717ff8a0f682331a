//! The uptime checks (`owlet-probe`) as a collector.
//!
//! Health rule for checks (documented in the README): every check that is
//! DOWN, DEGRADED or UNKNOWN is named, and makes the agent's verdict at least
//! WARNING — the agent itself works, but an operator looking at `owlet
//! health` must not read "all good" while targets are down or checks cannot
//! run. Checks without a first result yet are not counted against it.

use std::pin::Pin;
use std::time::SystemTime;

use owlet_probe::{ProbeConfig, ProbeHandle};
use owlet_proto::v1::State;

use super::{Collector, CollectorHealth, Failure, Reload, ReloadReport};
use crate::config::Config;
use crate::pipeline::bus::EventSender;
use crate::verdict::Verdict;

pub struct Checks {
    config: ProbeConfig,
    running: Option<ProbeHandle>,
}

impl Checks {
    pub fn new(config: ProbeConfig) -> Self {
        Self {
            config,
            running: None,
        }
    }
}

impl Collector for Checks {
    fn name(&self) -> &'static str {
        "checks"
    }

    fn start(&mut self, bus: EventSender) -> Result<Failure, String> {
        let handle = owlet_probe::spawn(self.config.clone(), bus);
        let ended = handle.wait_ended();
        self.running = Some(handle);
        Ok(Box::pin(ended))
    }

    fn reload(&mut self, config: &Config) -> Reload {
        self.config = config.probe.clone();
        Reload::Applied(match &self.running {
            Some(handle) => {
                let outcome = handle.reload(self.config.clone());
                ReloadReport {
                    added: outcome.added,
                    changed: outcome.changed,
                    removed: outcome.removed,
                    ..ReloadReport::default()
                }
            }
            None => ReloadReport::default(),
        })
    }

    fn stop(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let running = self.running.take();
        Box::pin(async move {
            if let Some(handle) = running {
                handle.shutdown().await;
            }
        })
    }

    fn health(&self) -> CollectorHealth {
        let states = self
            .running
            .as_ref()
            .map(ProbeHandle::states)
            .unwrap_or_default();
        let named = |wanted: State| -> Vec<&str> {
            states
                .iter()
                .filter(|s| s.state == wanted && (wanted != State::Unknown || s.since.is_some()))
                .map(|s| s.id.as_str())
                .collect()
        };
        let mut health = CollectorHealth::ok(serde_json::Value::Null);
        for (state, word) in [
            (State::Down, "down"),
            (State::Degraded, "degraded"),
            (State::Unknown, "unknown (the agent cannot run them)"),
        ] {
            let ids = named(state);
            if !ids.is_empty() {
                health.verdict = Verdict::Warning;
                health.reasons.push(format!(
                    "{} check{} {word}: {}",
                    ids.len(),
                    if ids.len() == 1 { "" } else { "s" },
                    ids.join(", ")
                ));
            }
        }
        let now = SystemTime::now();
        health.detail = serde_json::Value::Array(
            states
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "id": s.id,
                        "type": s.check_type.as_str_name().trim_start_matches("CHECK_TYPE_").to_ascii_lowercase(),
                        "state": s.state.as_str_name(),
                        "for_seconds": s.since.and_then(|t| now.duration_since(t).ok()).map(|d| d.as_secs()),
                        "message": s.message,
                    })
                })
                .collect(),
        );
        health
    }
}
