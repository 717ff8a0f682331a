//! `owlet run`: wires the capabilities, the pipeline and the uplink together
//! and runs them until SIGTERM / SIGINT.
//!
//! Start-up order matters: the spool is opened first (so recovery losses are
//! reported), then the writer, then producers. Shutdown is the reverse:
//! producers stop, the bus drains into the spool, the uplink gets a short
//! grace period to deliver, and whatever is left stays spooled for next time.
//!
//! Under systemd (`Type=notify`) `READY=1` goes out after all of that
//! started, `STOPPING=1` when the drain begins, and the watchdog is fed from
//! the main loop while the pipeline tasks turn (`crate::notify`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use owlet_sdnotify::Liveness;
use owlet_spool::fs::{Filesystem, RealFs};
use owlet_spool::{Spool, SpoolConfig};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::collect::{Checks, Collector, Supervisor};
use crate::config::{self, Config, Durability};
use crate::control;
use crate::facts::HostFacts;
use crate::notify::{self, ServiceNotify};
use crate::pipeline::{bus, metrics::Metrics, store::Store, writer};
use crate::status;
use crate::tasks::{spawn_critical, spawn_watched};
use crate::uplink::{Credentials, InUse, Uplink};

/// Events the bus holds before producers wait.
const BUS_CAPACITY: usize = 4096;
/// How long the uplink may keep delivering spooled events after a stop
/// request (what is left stays spooled for the next start).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How long the stop may take after a pipeline task died.
const FAILED_DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Opens the spool described by the config.
pub fn open_spool(config: &Config) -> anyhow::Result<(Spool, Vec<owlet_proto::v1::DataLoss>)> {
    open_spool_on(config, Arc::new(RealFs))
}

/// [`open_spool`] doing its file operations through `fs`.
fn open_spool_on(
    config: &Config,
    fs: Arc<dyn Filesystem>,
) -> anyhow::Result<(Spool, Vec<owlet_proto::v1::DataLoss>)> {
    let dir = config.spool_dir();
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the spool directory {}", dir.display()))?;
    let durability = match config.spool.durability {
        Durability::EveryBatch => owlet_spool::Durability::Deferred,
        Durability::Interval => owlet_spool::Durability::Interval(config.spool.fsync_interval),
    };
    let spool_config = SpoolConfig {
        dir,
        max_bytes: config.spool.max_bytes.as_u64(),
        max_age: config.spool.max_age,
        segment_bytes: config.spool.segment_bytes.as_u64(),
        max_batches: config.spool.max_batches,
        durability,
    };
    Ok(Spool::open_with(spool_config, fs)?)
}

/// Runs the agent until a stop signal, with the collectors the
/// configuration asks for plus `extra` ones (the load generator of
/// `owlet-loadgen`; the `owlet` binary passes none).
///
/// Returns an error — so the process exits non-zero and the service manager
/// restarts it — when a pipeline task ends on its own.
pub async fn run(
    config_path: PathBuf,
    config: Config,
    extra: Vec<Box<dyn Collector>>,
) -> anyhow::Result<()> {
    run_on(config_path, config, extra, Arc::new(RealFs)).await
}

/// [`run`] with the spool on `spool_fs` (`owlet-loadgen` passes a
/// filesystem that can hold an fsync, to wedge the spool writer in tests).
pub async fn run_on(
    config_path: PathBuf,
    mut config: Config,
    extra: Vec<Box<dyn Collector>>,
    spool_fs: Arc<dyn Filesystem>,
) -> anyhow::Result<()> {
    let (spool, recovered_losses) = open_spool_on(&config, spool_fs)?;
    let control_listener = control::bind(&config.control.socket)?;
    let exposition_listener =
        match config.control.prometheus_listen {
            Some(address) => Some(tokio::net::TcpListener::bind(address).await.with_context(
                || {
                    format!(
                        "cannot listen on control.prometheus_listen {address} (is the port in use?)"
                    )
                },
            )?),
            None => None,
        };
    let store = Store::new(spool);
    let metrics = Arc::new(Metrics::default());
    let facts = HostFacts::read();
    let limits = bus::BatchLimits {
        max_events: config.batch.max_events,
        max_bytes: usize::try_from(config.batch.max_bytes.as_u64()).unwrap_or(usize::MAX),
        linger: config.batch.linger,
    };
    let (bus_tx, batcher) = bus::channel(BUS_CAPACITY, limits);
    // Producers stop first; the uplink later, after a grace period to deliver.
    let (shutdown_tx, shutdown) = watch::channel(false);
    let (uplink_stop_tx, uplink_stop) = watch::channel(false);
    let (ends_tx, mut ends) = mpsc::channel(8);

    let sync_every =
        (config.spool.durability == Durability::Interval).then_some(config.spool.fsync_interval);
    let liveness = Liveness::default();
    let writer = spawn_watched(
        "spool writer",
        writer::run(
            batcher,
            store.clone(),
            metrics.clone(),
            recovered_losses,
            sync_every,
        ),
        ends_tx.clone(),
        &liveness,
    );
    let (mut credentials, connector) = InUse::new(Credentials::load(&config)?);
    let uplink = Uplink::new(
        &config,
        connector,
        store.clone(),
        metrics.clone(),
        facts.clone(),
    );
    let uplink = spawn_watched(
        "uplink",
        uplink.run(uplink_stop),
        ends_tx.clone(),
        &liveness,
    );
    let heartbeat = spawn_watched(
        "heartbeat",
        status::heartbeat(
            config.status.interval,
            config.agent.hw_profile.clone(),
            facts,
            store.clone(),
            metrics.clone(),
            bus_tx.clone(),
            shutdown.clone(),
        ),
        ends_tx.clone(),
        &liveness,
    );
    let (requests_tx, mut requests) = mpsc::channel(8);
    if let Some(listener) = exposition_listener {
        spawn_critical(
            "metrics exposition",
            crate::exposition::serve(listener, requests_tx.clone(), shutdown.clone()),
            ends_tx.clone(),
        );
    }
    let control = spawn_critical(
        "control socket",
        control::serve(
            control_listener,
            config.control.socket.clone(),
            requests_tx,
            shutdown.clone(),
        ),
        ends_tx,
    );

    let mut collectors = Supervisor::new(bus_tx.clone());
    for kind in &crate::collect::OPTIONAL {
        if (kind.wanted)(&config) {
            collectors.add((kind.build)(&config));
        }
    }
    // The check list goes to the collector, which plans it and drops it
    // (the scheduler keeps the parsed checks; restarts take them from it):
    // with 10,000 checks each copy kept would cost ~7 MB.
    collectors.add(Box::new(Checks::new(std::mem::take(&mut config.probe))));
    for collector in extra {
        collectors.add(collector);
    }
    let mut reload_rejected: Option<String> = None;
    let running = RestartOnly::of(&config);
    // Settings a reload changed that wait for the next start.
    let mut pending_restart: Vec<String> = Vec::new();
    info!(config = %config_path.display(), soc = %config.soc.address, spool = %config.spool_dir().display(),
          "owlet {} running", env!("CARGO_PKG_VERSION"));
    let mut systemd = ServiceNotify::from_env(liveness);
    let status_now = |collectors: &Supervisor| {
        notify::status_line(&metrics.snapshot(), &store.stats(), &collectors.reports())
    };
    systemd.ready(&status_now(&collectors));
    let notify_every = systemd.tick_every();
    let mut notify_tick = tokio::time::interval(notify_every.unwrap_or(notify::STATUS_EVERY));

    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let failure = loop {
        tokio::select! {
            _ = sigterm.recv() => break None,
            _ = sigint.recv() => break None,
            _ = sighup.recv() => {
                reload(&config_path, &running, &mut collectors, &mut credentials,
                       &mut reload_rejected, &mut pending_restart).await;
            }
            Some(request) = requests.recv() => match request {
                control::Request::Health(answer) => {
                    let health = status::health(status::HealthInputs {
                        metrics: metrics.snapshot(),
                        spool: &store.stats(),
                        spool_max_bytes: config.spool.max_bytes.as_u64(),
                        collectors: collectors.reports(),
                        reload_rejected: reload_rejected.as_deref(),
                        pending_restart: &pending_restart,
                        undelivered: status::Undelivered {
                            warning: running.status.undelivered_warning,
                            critical: running.status.undelivered_critical,
                        },
                        certificate: Some(&credentials),
                    });
                    let _ = answer.send(serde_json::to_string(&health)
                        .unwrap_or_else(|e| format!(r#"{{"error":"{e}"}}"#)));
                }
                control::Request::Reload(answer) => {
                    let outcome = reload(&config_path, &running, &mut collectors, &mut credentials,
                                         &mut reload_rejected, &mut pending_restart).await;
                    let _ = answer.send(outcome.to_string());
                }
            },
            Some(end) = ends.recv() => {
                error!("{end}; stopping so that the service manager restarts owlet");
                break Some(end);
            }
            () = collectors.tend() => {}
            _ = notify_tick.tick(), if notify_every.is_some() => {
                systemd.tick(&status_now(&collectors));
            }
        }
    };
    systemd.stopping("stopping: draining the bus into the spool");
    info!("stopping: draining the bus into the spool");
    let drain = async {
        collectors.stop_all().await;
        let _ = shutdown_tx.send(true);
        let _ = heartbeat.await;
        drop(collectors);
        drop(bus_tx);
        let _ = writer.await;
        let grace = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while failure.is_none() && store.stats().events > 0 && tokio::time::Instant::now() < grace {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let _ = uplink_stop_tx.send(true);
        let _ = uplink.await;
        let _ = control.await;
    };
    if failure.is_some() {
        // A dead pipeline task may leave others waiting on it: bound the
        // drain, the spool keeps whatever it had accepted.
        let _ = tokio::time::timeout(FAILED_DRAIN_LIMIT, drain).await;
    } else {
        drain.await;
    }
    let left = store.stats();
    info!(
        spooled_events = left.events,
        "stopped; unacknowledged events stay in the spool"
    );
    match failure {
        None => Ok(()),
        Some(end) => Err(anyhow::anyhow!("{end}")),
    }
}

/// The settings only a start of the agent applies: the uplink, the spool,
/// the pipeline, the control socket and logging.
#[derive(PartialEq)]
struct RestartOnly {
    agent: config::AgentSection,
    soc: config::SocSection,
    spool: config::SpoolSection,
    batch: config::BatchSection,
    status: config::StatusSection,
    control: config::ControlSection,
    log: owlet_logging::LogSection,
}

impl RestartOnly {
    fn of(c: &Config) -> RestartOnly {
        RestartOnly {
            agent: c.agent.clone(),
            soc: c.soc.clone(),
            spool: c.spool.clone(),
            batch: c.batch.clone(),
            status: c.status.clone(),
            control: c.control.clone(),
            log: c.log.clone(),
        }
    }

    /// The sections of `new` that differ from these, by name.
    fn changed_in(&self, new: &RestartOnly) -> Vec<String> {
        let mut out = Vec::new();
        let mut note = |differs: bool, name: &str| {
            if differs {
                out.push(format!("[{name}]"));
            }
        };
        note(self.agent != new.agent, "agent");
        note(self.soc != new.soc, "soc");
        note(self.spool != new.spool, "spool");
        note(self.batch != new.batch, "batch");
        note(self.status != new.status, "status");
        note(self.control != new.control, "control");
        note(self.log != new.log, "log");
        out
    }
}

/// Re-reads the config file and applies what can change without a restart
/// of the agent: each collector's part (live, or by restarting that
/// collector), collectors added or removed, and the certificate and key the
/// uplink connects with. Settings that only a start applies are named in
/// `needs_restart` (and in `owlet health` until the agent restarts);
/// collectors that failed to start with the new values, and a certificate
/// that cannot be used (see [`crate::uplink::credentials`]; the running one
/// stays), in `failed` (a failed collector is a collector failure: alert,
/// CRITICAL, retried). A broken file is reported — in the log, in the
/// answer and in `owlet health` until a good reload — and the running
/// configuration kept. Returns the JSON answer for `owlet reload`:
/// `reload` is "applied" only when everything took effect, "partial"
/// otherwise, "rejected" for a broken file.
async fn reload(
    path: &Path,
    running: &RestartOnly,
    collectors: &mut Supervisor,
    credentials: &mut InUse,
    rejected: &mut Option<String>,
    pending_restart: &mut Vec<String>,
) -> serde_json::Value {
    match config::load(path) {
        Ok(new) => {
            let mut report = collectors.reload(&new).await;
            *rejected = None;
            *pending_restart = running.changed_in(&RestartOnly::of(&new));
            report.needs_restart = pending_restart.clone();
            let certificate = credentials.reload(&new);
            if let Some(error) = certificate["error"].as_str() {
                report.failed.push(format!("certificate: {error}"));
            }
            let outcome = if report.fully_applied() {
                "applied"
            } else {
                "partial"
            };
            if report.fully_applied() {
                info!(config = %path.display(), added = ?report.added, changed = ?report.changed,
                      removed = ?report.removed, restarted = ?report.restarted,
                      "configuration reloaded");
            } else {
                warn!(config = %path.display(), added = ?report.added, changed = ?report.changed,
                      removed = ?report.removed, restarted = ?report.restarted,
                      failed = ?report.failed, needs_restart = ?report.needs_restart,
                      "configuration reloaded in part: what failed is retried; what needs a restart applies at the next start of owlet");
            }
            let mut answer = serde_json::to_value(&report).unwrap_or_default();
            answer["reload"] = outcome.into();
            answer["certificate"] = certificate;
            answer
        }
        Err(errors) => {
            let text = errors.to_string();
            error!("configuration not reloaded, keeping the running one:\n{text}");
            *rejected = Some(text.clone());
            serde_json::json!({ "reload": "rejected", "errors": text })
        }
    }
}
