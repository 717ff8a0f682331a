//! Collectors: the one shape every capability takes inside the agent.
//!
//! A capability (uptime checks today; capture, file watching and host health
//! next) is a library crate with no agent dependency. The agent wraps each in
//! a [`Collector`] — start, reload, stop, health — and hands it to the
//! [`Supervisor`], which:
//!
//! * starts it with a sender on the bus (the only way events leave it);
//! * notices when it fails on its own (a panic, a task that ended, a start
//!   that failed), reports that in the log, in `owlet health` and to the SOC
//!   as a `collector_failed` alert, and restarts it with backoff — without
//!   touching any other collector or the pipeline;
//! * forwards reloads and gathers what each reload changed;
//! * stops them all first at shutdown, so the bus can drain.
//!
//! A collector must never block the async workers and must never wait on the
//! SOC: it only sees the bounded bus.

mod capture;
mod checks;
mod host;
mod supervisor;

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;

use crate::config::Config;
use crate::pipeline::bus::EventSender;
use crate::status::Verdict;

pub use capture::Capture;
pub use checks::Checks;
pub use host::Host;
pub use supervisor::{CollectorReport, Supervisor};

/// Resolves, with a reason a person can read, when a running collector stops
/// on its own. It must stay pending while the collector runs as intended.
pub type Failure = Pin<Box<dyn Future<Output = String> + Send + 'static>>;

/// A capability as the agent runs it.
pub trait Collector: Send {
    /// Short stable name ("checks", "capture" ...) used in logs and health.
    fn name(&self) -> &'static str;

    /// Starts producing events on `bus`, from the configuration it was built
    /// with or last reloaded with. Called again to restart after a failure
    /// (after [`Collector::stop`]). An error is a reason a person can read,
    /// with the fix where there is one (a missing interface, a capability
    /// the service lacks).
    fn start(&mut self, bus: EventSender) -> Result<Failure, String>;

    /// Takes this collector's part of a new configuration. When running, it
    /// is applied without a restart; when not, it is kept for the next start.
    fn reload(&mut self, config: &Config) -> ReloadReport;

    /// Stops and waits until nothing of the collector runs any more.
    fn stop(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;

    /// What `owlet health` says about it while it runs.
    fn health(&self) -> CollectorHealth;
}

/// What a reload changed, by item (check ids for the checks collector).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReloadReport {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

impl ReloadReport {
    pub fn merge(&mut self, other: ReloadReport) {
        self.added.extend(other.added);
        self.changed.extend(other.changed);
        self.removed.extend(other.removed);
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// A collector's own verdict, the reasons behind it, and detail for `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct CollectorHealth {
    pub verdict: Verdict,
    pub reasons: Vec<String>,
    pub detail: serde_json::Value,
}

impl CollectorHealth {
    pub fn ok(detail: serde_json::Value) -> Self {
        Self {
            verdict: Verdict::Ok,
            reasons: Vec::new(),
            detail,
        }
    }
}
