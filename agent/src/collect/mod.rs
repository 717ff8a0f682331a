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
mod fim;
mod host;
mod supervisor;

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;

use crate::config::Config;
use crate::pipeline::bus::EventSender;
use crate::verdict::Verdict;

pub use capture::{Capture, CaptureStartError};
pub use checks::Checks;
pub use fim::Fim;
pub use host::{Host, HostStartError};
pub use supervisor::{CollectorReport, Supervisor};

/// Resolves, with a reason a person can read, when a running collector stops
/// on its own. It must stay pending while the collector runs as intended.
pub type Failure = Pin<Box<dyn Future<Output = String> + Send + 'static>>;

/// Why a collector could not start, by collector: a reason a person can
/// read, with the fix where there is one (the supervisor reports it and
/// retries).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Capture(#[from] CaptureStartError),
    #[error(transparent)]
    Fim(#[from] owlet_fim::StartError),
    #[error(transparent)]
    Host(#[from] HostStartError),
}

/// A capability as the agent runs it.
pub trait Collector: Send {
    /// Short stable name ("checks", "capture" ...) used in logs and health.
    fn name(&self) -> &'static str;

    /// Starts producing events on `bus`, from the configuration it was built
    /// with or last reloaded with. Called again to restart after a failure
    /// (after [`Collector::stop`]). An error is a reason a person can read,
    /// with the fix where there is one (a missing interface, a capability
    /// the service lacks).
    fn start(&mut self, bus: EventSender) -> Result<Failure, StartError>;

    /// Takes this collector's part of a new configuration and says how it
    /// applies: live ([`Reload::Applied`]), or by a stop and a start that
    /// the supervisor then does ([`Reload::Restart`]), so that a start that
    /// fails with the new values is a collector failure like any other.
    fn reload(&mut self, config: &Config) -> Reload;

    /// Stops and waits until nothing of the collector runs any more.
    fn stop(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;

    /// What `owlet health` says about it while it runs.
    fn health(&self) -> CollectorHealth;
}

/// How a collector takes a new configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// Applied while running (or kept for the next start when not running);
    /// what changed, by item.
    Applied(ReloadReport),
    /// Kept; applies when the supervisor stops and starts the collector,
    /// which it does at once. The report names what changed.
    Restart(ReloadReport),
}

/// What a reload changed, by item (check ids for the checks collector,
/// collector names otherwise), and what it could not apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReloadReport {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    /// Collectors stopped and started again with the new values.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restarted: Vec<String>,
    /// Collectors that failed to start with the new values, with the
    /// reason ("fim: ..."); the supervisor retries them with backoff.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
    /// Settings that only apply at the next start of the agent
    /// ("soc.address", "spool" ...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub needs_restart: Vec<String>,
}

impl ReloadReport {
    pub fn merge(&mut self, other: ReloadReport) {
        self.added.extend(other.added);
        self.changed.extend(other.changed);
        self.removed.extend(other.removed);
        self.restarted.extend(other.restarted);
        self.failed.extend(other.failed);
        self.needs_restart.extend(other.needs_restart);
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.changed.is_empty()
            && self.removed.is_empty()
            && self.restarted.is_empty()
            && self.failed.is_empty()
            && self.needs_restart.is_empty()
    }

    /// Everything asked for took effect now.
    pub fn fully_applied(&self) -> bool {
        self.failed.is_empty() && self.needs_restart.is_empty()
    }
}

/// The collectors a configuration may ask for (the checks collector is
/// always there and is added by the service itself).
pub struct Kind {
    pub name: &'static str,
    pub wanted: fn(&Config) -> bool,
    pub build: fn(&Config) -> Box<dyn Collector>,
}

/// Capture, file watching and host health, in start order.
pub const OPTIONAL: [Kind; 3] = [
    Kind {
        name: "capture",
        wanted: Capture::wanted,
        build: |c| Box::new(Capture::new(c)),
    },
    Kind {
        name: "fim",
        wanted: Fim::wanted,
        build: |c| Box::new(Fim::new(c)),
    },
    Kind {
        name: "host",
        wanted: Host::wanted,
        build: |c| Box::new(Host::new(c)),
    },
];

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
