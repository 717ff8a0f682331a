//! `owlet run`: wires the capabilities, the pipeline and the uplink together
//! and runs them until SIGTERM / SIGINT.
//!
//! Start-up order matters: the spool is opened first (so recovery losses are
//! reported), then the writer, then producers. Shutdown is the reverse:
//! producers stop, the bus drains into the spool, the uplink gets a short
//! grace period to deliver, and whatever is left stays spooled for next time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use owlet_spool::{Spool, SpoolConfig};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tracing::{error, info};

use crate::config::{self, Config, Durability};
use crate::control;
use crate::facts::HostFacts;
use crate::pipeline::{bus, metrics::Metrics, store::Store, writer};
use crate::status;
use crate::uplink::Uplink;

/// Events the bus holds before producers wait.
const BUS_CAPACITY: usize = 4096;
/// How long the uplink may keep delivering spooled events after a stop
/// request (what is left stays spooled for the next start).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Opens the spool described by the config.
pub fn open_spool(config: &Config) -> anyhow::Result<(Spool, Vec<owlet_proto::v1::DataLoss>)> {
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
    Ok(Spool::open(spool_config)?)
}

struct HealthSource {
    metrics: Arc<Metrics>,
    store: Store,
    spool_max_bytes: u64,
}

impl control::Handler for HealthSource {
    fn health_json(&self) -> String {
        let health = status::health(&self.metrics, &self.store.stats(), self.spool_max_bytes);
        serde_json::to_string(&health).unwrap_or_else(|e| format!(r#"{{"error":"{e}"}}"#))
    }
}

/// Runs the agent until a stop signal.
pub async fn run(config_path: PathBuf, config: Config) -> anyhow::Result<()> {
    let (spool, recovered_losses) = open_spool(&config)?;
    let control_listener = control::bind(&config.control.socket)?;
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

    let sync_every =
        (config.spool.durability == Durability::Interval).then_some(config.spool.fsync_interval);
    let writer = tokio::spawn(writer::run(
        batcher,
        store.clone(),
        metrics.clone(),
        recovered_losses,
        sync_every,
    ));
    let uplink = Uplink::new(&config, store.clone(), metrics.clone(), facts.clone())?;
    let uplink = tokio::spawn(uplink.run(uplink_stop));
    let heartbeat = tokio::spawn(status::heartbeat(
        config.status.interval,
        config.agent.hw_profile.clone(),
        facts,
        store.clone(),
        metrics.clone(),
        bus_tx.clone(),
        shutdown.clone(),
    ));
    let synthetic = tokio::spawn(crate::synthetic::run(
        config.synthetic.clone(),
        bus_tx.clone(),
        shutdown.clone(),
    ));
    let probes = owlet_probe::spawn(config.probe.clone(), bus_tx.clone());

    let (reload_tx, mut reload_rx) = mpsc::channel(1);
    let health = Arc::new(HealthSource {
        metrics: metrics.clone(),
        store: store.clone(),
        spool_max_bytes: config.spool.max_bytes.as_u64(),
    });
    let control = tokio::spawn(control::serve(
        control_listener,
        config.control.socket.clone(),
        health,
        reload_tx.clone(),
        shutdown.clone(),
    ));
    info!(config = %config_path.display(), soc = %config.soc.address, spool = %config.spool_dir().display(),
          "owlet {} running", env!("CARGO_PKG_VERSION"));

    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = sighup.recv() => reload(&config_path, &probes),
            Some(()) = reload_rx.recv() => reload(&config_path, &probes),
        }
    }
    info!("stopping: draining the bus into the spool");
    probes.shutdown().await;
    let _ = shutdown_tx.send(true);
    let _ = heartbeat.await;
    let _ = synthetic.await;
    drop(bus_tx);
    if writer.await.is_err() {
        error!("spool writer failed during shutdown");
    }
    let grace = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while store.stats().events > 0 && tokio::time::Instant::now() < grace {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = uplink_stop_tx.send(true);
    let _ = uplink.await;
    let _ = control.await;
    let left = store.stats();
    info!(
        spooled_events = left.events,
        "stopped; unacknowledged events stay in the spool"
    );
    Ok(())
}

/// Re-reads the config file and applies what can change without a restart
/// (the check list). A broken file is reported and the running config kept.
fn reload(path: &Path, probes: &owlet_probe::ProbeHandle) {
    match config::load(path) {
        Ok(new) => {
            probes.reload(new.probe);
            info!(config = %path.display(), "configuration reloaded (checks); other changes need a restart");
        }
        Err(errors) => error!("configuration not reloaded, keeping the running one:\n{errors}"),
    }
}
