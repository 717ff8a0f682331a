//! The uptime checks (`owlet-probe`) as a collector.
//!
//! Health rule for checks (documented in the README): every check that is
//! DOWN, DEGRADED or UNKNOWN is named, and makes the agent's verdict at least
//! WARNING — the agent itself works, but an operator looking at `owlet
//! health` must not read "all good" while targets are down or checks cannot
//! run. Checks without a first result yet are not counted against it.

use std::pin::Pin;
use std::time::SystemTime;

use owlet_probe::{CheckSet, ProbeConfig, ProbeHandle};
use owlet_proto::v1::State;

use super::{Collector, CollectorHealth, Failure, Reload, ReloadReport, StartError};
use crate::config::Config;
use crate::pipeline::bus::EventSender;
use crate::verdict::Verdict;

/// The checks collector keeps no copy of the check list while the checks
/// run: the scheduler holds the parsed checks, and a restart takes them back
/// from it ([`ProbeHandle::check_set`]). With 10,000 checks the list is
/// ~7 MB, the set a restart keeps ~1 MB of ids sharing the parsed checks.
pub struct Checks {
    /// What the next start runs (planned from the configuration until the
    /// first start and after a reload while stopped; the stopped
    /// scheduler's checks after a stop). `None` while running.
    next: Option<CheckSet>,
    running: Option<ProbeHandle>,
}

impl Checks {
    pub fn new(config: ProbeConfig) -> Self {
        Self {
            next: Some(CheckSet::new(&config)),
            running: None,
        }
    }
}

impl Collector for Checks {
    fn name(&self) -> &'static str {
        "checks"
    }

    fn start(&mut self, bus: EventSender) -> Result<Failure, StartError> {
        let set = match (self.next.take(), &self.running) {
            (Some(set), _) => set,
            // Started again without a stop: the same checks.
            (None, Some(handle)) => handle.check_set(),
            (None, None) => CheckSet::default(),
        };
        let handle = owlet_probe::spawn_set(set, bus);
        let ended = handle.wait_ended();
        self.running = Some(handle);
        Ok(Box::pin(ended))
    }

    fn reload(&mut self, config: &Config) -> Reload {
        Reload::Applied(match &self.running {
            Some(handle) => {
                let outcome = handle.reload(config.probe.clone());
                ReloadReport {
                    added: outcome.added,
                    changed: outcome.changed,
                    removed: outcome.removed,
                    ..ReloadReport::default()
                }
            }
            None => {
                self.next = Some(CheckSet::new(&config.probe));
                ReloadReport::default()
            }
        })
    }

    fn stop(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let running = self.running.take();
        if let Some(handle) = &running {
            self.next = Some(handle.check_set());
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use owlet_probe::{CheckConfig, CheckTypeName};
    use std::time::Duration;

    fn probe(ids: &[&str]) -> ProbeConfig {
        ProbeConfig {
            max_concurrency: 4,
            checks: ids
                .iter()
                .map(|id| {
                    let mut c = CheckConfig::new(*id, CheckTypeName::Tcp, "127.0.0.1:9");
                    c.interval = Duration::from_secs(3600);
                    c
                })
                .collect(),
        }
    }

    fn running_ids(checks: &Checks) -> Vec<String> {
        let handle = checks.running.as_ref().expect("running");
        handle.states().into_iter().map(|s| s.id).collect()
    }

    /// The collector keeps no check list, yet a restart (the supervisor's,
    /// after a failure) runs the same checks, and a reload made while
    /// stopped is what the next start runs.
    #[tokio::test]
    async fn restarts_run_the_configured_checks_without_a_kept_list() {
        let (bus, _rx) = tokio::sync::mpsc::channel(64);
        let mut checks = Checks::new(probe(&["a", "b"]));
        let _ended = checks.start(bus.clone()).unwrap();
        assert!(checks.next.is_none(), "a set kept while running");
        assert_eq!(running_ids(&checks), ["a", "b"]);

        let mut config = crate::config::profile::defaults_with("small").unwrap();
        config.probe = probe(&["a", "b", "c"]);
        checks.reload(&config);
        checks.stop().await;
        let _ended = checks.start(bus.clone()).unwrap();
        assert_eq!(
            running_ids(&checks),
            ["a", "b", "c"],
            "restart lost the reload"
        );

        checks.stop().await;
        config.probe = probe(&["d"]);
        checks.reload(&config);
        let _ended = checks.start(bus).unwrap();
        assert_eq!(
            running_ids(&checks),
            ["d"],
            "reload while stopped not applied"
        );
        checks.stop().await;
    }
}
