//! The agent's side of systemd's notification protocol (`Type=notify`,
//! `WatchdogSec=`): what `READY=1`, `STATUS=` and `WATCHDOG=1` mean for
//! owlet. The protocol itself is `owlet-sdnotify`.
//!
//! * `READY=1` is sent by [`crate::service::run`] once the config is
//!   loaded, the spool open, the pipeline tasks spawned and the collectors
//!   started.
//! * `WATCHDOG=1` is sent from the service's main loop (so a wedged main
//!   loop stops it too), every half period, and only while no critical
//!   pipeline task is stuck: each one marks itself busy while inside a
//!   spool call or a send into the bus ([`crate::tasks::busy`]); waiting for
//!   input is idle by design. A task busy for longer than the watchdog
//!   period stops the feeding, with an error in the log naming it, and
//!   systemd restarts the agent within about one more period.
//! * `STATUS=` is one line for `systemctl status`: the SOC connection (and
//!   why it is down), the spool depth, checks down. Sent when it changed, at
//!   most every [`STATUS_EVERY`].
//!
//! Without `NOTIFY_SOCKET` all of it is a no-op.

use std::collections::BTreeMap;
use std::time::Duration;

use owlet_sdnotify::{Liveness, Systemd};
use owlet_spool::SpoolStats;
use tracing::{error, info};

use crate::collect::CollectorReport;
use crate::pipeline::metrics::Snapshot;

/// How often the status line is recomputed (and at most sent).
pub const STATUS_EVERY: Duration = Duration::from_secs(5);

/// Longest uplink failure reason shown in the status line.
const REASON_CHARS: usize = 160;

pub struct ServiceNotify {
    systemd: Systemd,
    liveness: Liveness,
    /// The stuck tasks last logged, so the error is logged once per change.
    stuck_logged: Vec<&'static str>,
}

impl ServiceNotify {
    pub fn from_env(liveness: Liveness) -> Self {
        Self {
            systemd: Systemd::from_env(),
            liveness,
            stuck_logged: Vec::new(),
        }
    }

    /// How often [`ServiceNotify::tick`] should run: half the watchdog
    /// period, and at least every [`STATUS_EVERY`] for the status line
    /// (never, without a service manager).
    pub fn tick_every(&self) -> Option<Duration> {
        if !self.systemd.active() {
            return None;
        }
        Some(
            self.systemd
                .feed_every()
                .map_or(STATUS_EVERY, |feed| feed.min(STATUS_EVERY)),
        )
    }

    pub fn ready(&mut self, status: &str) {
        self.systemd.ready(status);
        if let Some(period) = self.systemd.watchdog_period() {
            info!(
                period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX),
                "systemd watchdog on: fed while the pipeline tasks turn"
            );
        }
    }

    /// Feeds the watchdog unless a critical task is stuck; sends `status`
    /// when it changed.
    pub fn tick(&mut self, status: &str) {
        if let Some(period) = self.systemd.watchdog_period() {
            let stuck = self.liveness.stuck(period);
            let names: Vec<&'static str> = stuck.iter().map(|s| s.task).collect();
            if names != self.stuck_logged {
                for task in &stuck {
                    error!(
                        task = task.task,
                        "{task}; no longer feeding the systemd watchdog, so that systemd restarts owlet"
                    );
                }
                if stuck.is_empty() {
                    info!("pipeline tasks turn again; feeding the systemd watchdog");
                }
                self.stuck_logged = names;
            }
            if stuck.is_empty() {
                self.systemd.watchdog();
            }
        }
        self.systemd.status(status);
    }

    pub fn stopping(&mut self, status: &str) {
        self.systemd.stopping(status);
    }
}

/// The status line: connection, spool depth, collectors' problems.
pub fn status_line(
    metrics: &Snapshot,
    spool: &SpoolStats,
    collectors: &BTreeMap<&'static str, CollectorReport>,
) -> String {
    let mut parts = Vec::new();
    parts.push(match (&metrics.uplink_problem, metrics.connection) {
        (_, "connected") => "connected to the SOC".to_string(),
        (Some(problem), state) => {
            let mut reason: String = problem.reason.chars().take(REASON_CHARS).collect();
            if reason.len() < problem.reason.len() {
                reason.push('…');
            }
            format!(
                "{state} for {}s ({}: {reason})",
                metrics.disconnected_seconds, problem.class
            )
        }
        (None, state) => format!("{state} for {}s", metrics.disconnected_seconds),
    });
    parts.push(format!(
        "spool {} event{}",
        spool.events,
        if spool.events == 1 { "" } else { "s" }
    ));
    for (name, report) in collectors {
        if report.state != "running" {
            parts.push(format!("{name} {}", report.state));
        }
        parts.extend(report.health.reasons.iter().cloned());
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::metrics::{Metrics, UplinkProblem};

    #[test]
    fn the_status_line_says_why_the_soc_is_unreachable_and_what_is_down() {
        let mut snapshot = Metrics::default().snapshot();
        snapshot.uplink_problem = Some(UplinkProblem {
            class: "connect",
            reason: "x".repeat(500),
        });
        let spool = SpoolStats {
            events: 12,
            ..Default::default()
        };
        let mut collectors = BTreeMap::new();
        collectors.insert(
            "checks",
            CollectorReport {
                state: "running",
                health: crate::collect::CollectorHealth {
                    verdict: crate::verdict::Verdict::Warning,
                    reasons: vec!["1 check down: fw-ping".into()],
                    detail: serde_json::Value::Null,
                },
            },
        );
        let line = status_line(&snapshot, &spool, &collectors);
        assert!(
            line.starts_with("connecting for 0s (connect: xxx"),
            "{line}"
        );
        assert!(
            line.ends_with("…); spool 12 events; 1 check down: fw-ping"),
            "{line}"
        );
        assert!(line.len() < 260, "{line}");
    }
}
