//! `owlet-soc serve`: the receiver process — accept loop, gRPC service, sink
//! thread, liveness monitor, retention, outputs, notifications, scheduled
//! reports (`[reports]`, owlet-soc-report's schedule) and CRL watcher ([`crate::revocation`]: a
//! changed `server.crl`, or SIGHUP, takes effect without a restart).
//!
//! Start-up order is part of the contract: take the database's instance lock
//! ([`crate::lock`]), bind the port, and only then open the sink (which
//! changes stored state: every agent is marked disconnected). A second
//! instance on the same config therefore fails on the lock and a receiver
//! whose port is taken fails on the bind, both without touching the
//! database.
//!
//! Under systemd (`Type=notify`): `READY=1` once the port is bound, the
//! database open and the TLS configuration loaded; `STATUS=` with agents
//! connected and events stored, when it changes; `WATCHDOG=1` every half
//! period while the sink thread is not stuck inside one request for longer
//! than the period; `STOPPING=1` when the stop begins.

use std::sync::Arc;

use anyhow::Context;
use owlet_proto::v1::telemetry_server::TelemetryServer;
use owlet_sdnotify::{Liveness, Systemd};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::CompressionEncoding;
use tracing::{info, warn};

use crate::accept;
use crate::config::SocConfig;
use crate::live::LiveConns;
use crate::lock::InstanceLock;
use crate::refusals::Refusals;
use crate::revocation;
use crate::service::TelemetryService;
use crate::sink::{BusSink, SinkHandle, SqliteSink};
use crate::status_file::{self, ReceiverStatus};

/// How long open agent streams may finish after a stop request.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// A bound, ready receiver: its port is listening and its sink is open.
pub struct Receiver {
    listener: TcpListener,
    config: SocConfig,
    sink: SinkHandle,
    /// The sink thread's liveness (gates the systemd watchdog).
    liveness: Liveness,
    /// Held until the receiver is dropped (after `serve` returns); none
    /// with a NATS sink (no local state: any number may run).
    _lock: Option<InstanceLock>,
}

impl Receiver {
    /// Opens the sink and binds the listening socket, so callers know the
    /// port and can read the sink before serving starts.
    pub async fn bind(config: SocConfig) -> anyhow::Result<Self> {
        let lock = match config.sqlite_path() {
            Ok(db) => Some(InstanceLock::acquire(db)?),
            Err(_) => None,
        };
        let listen = config.server.listen;
        let listener = TcpListener::bind(listen).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                anyhow::anyhow!(
                    "cannot listen on {listen} (server.listen): another program already uses this address; \
                     stop it or choose another server.listen"
                )
            } else {
                anyhow::anyhow!("cannot listen on {listen} (server.listen): {e}")
            }
        })?;
        let liveness = Liveness::default();
        let beat = Some(liveness.register("sink"));
        let sink = match config.bus() {
            Some(bus) => {
                let bus = owlet_soc_bus::Bus::connect(&bus).await?;
                let policies = config.clone();
                let retention_of = Box::new(move |tenant: &str| {
                    let policy = policies.retention_of(tenant);
                    owlet_soc_bus::Retention {
                        max_age: policy.max_age,
                        max_bytes: policy.max_bytes,
                    }
                });
                let sink = BusSink::new(
                    Arc::new(bus),
                    tokio::runtime::Handle::current(),
                    retention_of,
                );
                SinkHandle::spawn_watched(sink, beat)?
            }
            None => {
                let db = config.sqlite_path()?;
                let sink = SqliteSink::open(db)
                    .with_context(|| format!("cannot open the SQLite sink {}", db.display()))?;
                SinkHandle::spawn_watched(sink, beat)?
            }
        };
        Ok(Self {
            listener,
            config,
            sink,
            liveness,
            _lock: lock,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            config,
            sink,
            liveness,
            _lock,
        } = self;
        let (tls, crls) = revocation::load(&config.server)?;
        let live = Arc::new(LiveConns::default());
        match &crls {
            Some(crls) => revocation::apply(crls, &live, &sink).await,
            None => warn!(
                "no server.crl: revoked agent certificates are not refused (`owlet-soc ca init` writes ca.crl)"
            ),
        }
        let (tls_tx, tls_rx) = tokio::sync::watch::channel(Arc::new(tls));
        let crl_watch = tokio::spawn(revocation::watch(
            config.server.clone(),
            tls_tx,
            Arc::clone(&live),
            sink.clone(),
        ));
        // The embedded store's directory; none with a NATS sink, whose
        // configuration has no outputs, notifications or reports (config.rs).
        let root = config.sqlite_path().ok().map(crate::sink::store_root);
        let (conn_tx, conn_rx) = mpsc::channel(64);
        let refusals = Arc::new(Refusals::default());
        let accept = tokio::spawn(accept::accept_loop(
            listener,
            tls_rx,
            live,
            config.server.max_connections,
            Arc::clone(&refusals),
            conn_tx,
        ));
        let figures = root
            .clone()
            .map(|root| tokio::spawn(publish_figures(sink.clone(), Arc::clone(&refusals), root)));
        let silence = tokio::spawn(watch_liveness(sink.clone(), config.liveness.clone()));
        let retention = tokio::spawn(apply_retention(sink.clone(), config.clone()));
        // SIEM outputs: each reads the tenants' logs with its own cursor.
        let outputs_stop = tokio_util::sync::CancellationToken::new();
        let outputs: Vec<_> = config
            .outputs
            .iter()
            .map(|output| {
                let name = output.name.clone();
                let run = owlet_soc_outputs::run(
                    root.clone().unwrap_or_default(),
                    output.clone(),
                    outputs_stop.clone(),
                );
                tokio::spawn(async move {
                    if let Err(e) = run.await {
                        tracing::error!(output = %name, error = %e, "output stopped: fix its [[output]] entry and restart owlet-soc");
                    }
                })
            })
            .collect();
        let notifier = config.notify.clone().map(|notify| {
            let run = owlet_soc_notify::run(root.clone().unwrap_or_default(), notify, outputs_stop.clone());
            tokio::spawn(async move {
                if let Err(e) = run.await {
                    tracing::error!(error = %e, "notifications stopped: fix [notify] and restart owlet-soc");
                }
            })
        });
        // Scheduled reports: written into each tenant's reports/ directory,
        // deleted with its retention, mailed through [reports] mail_channel.
        let reports = config.reports.clone().map(|reports| {
            let mailer = config.report_mail_channel().and_then(|channel| {
                owlet_soc_notify::channel::smtp::SmtpChannel::new(channel)
                    .map_err(|e| tracing::error!(error = %e, "reports are not mailed: fix [reports] mail_channel's channel and restart owlet-soc"))
                    .ok()
            });
            let plans = config.clone();
            tokio::spawn(owlet_soc_report::schedule::run(
                owlet_soc_store::Store::existing(&root.clone().unwrap_or_default()),
                reports,
                move |store: &owlet_soc_store::Store| {
                    store
                        .tenants()
                        .unwrap_or_default()
                        .iter()
                        .map(|t| plans.report_plan(t))
                        .collect()
                },
                mailer,
                outputs_stop.clone(),
            ))
        });

        let notify_sink = sink.clone();
        let service = TelemetryServer::new(TelemetryService::new(sink))
            .max_decoding_message_size(owlet_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(owlet_proto::MAX_MESSAGE_BYTES)
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd)
            .send_compressed(CompressionEncoding::Zstd)
            .send_compressed(CompressionEncoding::Gzip);
        let sink_name = match &root {
            Some(root) => root.display().to_string(),
            None => format!(
                "NATS {}",
                config
                    .bus()
                    .map(|b| b.servers.join(","))
                    .unwrap_or_default()
            ),
        };
        info!(listen = %config.server.listen, sink = %sink_name, "owlet-soc {} serving", env!("CARGO_PKG_VERSION"));
        // Graceful stop first (no new streams); agent streams never end by
        // themselves, so after a grace period the connections are dropped.
        // Nothing is lost: only durable batches were acknowledged, and agents
        // resend the rest to whichever SOC they reach next.
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let notify = tokio::spawn(notify_systemd(
            notify_sink.clone(),
            liveness,
            stop_rx.clone(),
        ));
        let server = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
            .add_service(service)
            .serve_with_incoming_shutdown(ReceiverStream::new(conn_rx), async move {
                let _ = stop_rx.wait_for(|stop| *stop).await;
            });
        let result = tokio::select! {
            result = server => result,
            () = async {
                shutdown.await;
                info!("stopping: closing agent streams");
                let _ = stop_tx.send(true);
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } => Ok(()),
        };
        accept.abort();
        silence.abort();
        retention.abort();
        if let Some(figures) = figures {
            figures.abort();
        }
        outputs_stop.cancel();
        for output in outputs.into_iter().chain(notifier).chain(reports) {
            let _ = output.await;
        }
        crl_watch.abort();
        let _ = stop_tx.send(true);
        let _ = notify.await;
        result.context("gRPC server")
    }
}

/// How often the status line is recomputed (and at most sent).
const STATUS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// systemd's side (see the module doc); returns after `STOPPING=1` once
/// `stop` turns true. A no-op without `NOTIFY_SOCKET`.
async fn notify_systemd(
    sink: SinkHandle,
    liveness: Liveness,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut systemd = Systemd::from_env();
    if !systemd.active() {
        return;
    }
    let status = |sink: &SinkHandle| {
        let agents = sink.agents_connected();
        format!(
            "serving; {agents} agent{} connected; {} events stored since start",
            if agents == 1 { "" } else { "s" },
            sink.events_stored()
        )
    };
    systemd.ready(&status(&sink));
    let period = systemd.watchdog_period();
    let every = systemd
        .feed_every()
        .map_or(STATUS_EVERY, |feed| feed.min(STATUS_EVERY));
    let mut ticker = tokio::time::interval(every);
    let mut stuck_logged = false;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|stop| *stop) => break,
        }
        if let Some(period) = period {
            let stuck = liveness.stuck(period);
            for task in &stuck {
                if !stuck_logged {
                    tracing::error!(
                        task = task.task,
                        "{task}; no longer feeding the systemd watchdog, so that systemd restarts owlet-soc"
                    );
                }
            }
            stuck_logged = !stuck.is_empty();
            if stuck.is_empty() {
                systemd.watchdog();
            }
        }
        systemd.status(&status(&sink));
    }
    systemd.stopping("stopping: closing agent streams");
}

/// Periodically asks the sink which agents went silent.
async fn watch_liveness(sink: SinkHandle, config: crate::config::LivenessSection) {
    let mut ticker = tokio::time::interval(config.check_every);
    loop {
        ticker.tick().await;
        match sink
            .check_liveness(std::time::SystemTime::now(), config.silent_after)
            .await
        {
            Ok(changes) => {
                for change in changes {
                    if change.planned {
                        info!(agent = %change.agent, "agent_stopped: stopped on purpose (its last heartbeat said goodbye)");
                    } else {
                        warn!(agent = %change.agent, window = ?config.silent_after, "agent_silent: no heartbeat within the window");
                    }
                }
            }
            Err(e) => warn!(error = %e, "liveness check failed"),
        }
    }
}

/// Ends the refusal log's windows on time and rewrites the receiver's
/// status file for `owlet-soc status`.
async fn publish_figures(sink: SinkHandle, refusals: Arc<Refusals>, root: std::path::PathBuf) {
    let started = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut ticker = tokio::time::interval(status_file::EVERY);
    let mut warned = false;
    loop {
        ticker.tick().await;
        refusals.tick();
        let status = ReceiverStatus {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started: started.clone(),
            updated: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            agents_connected: sink.agents_connected(),
            events_stored_since_start: sink.events_stored(),
            connections_refused: refusals
                .counts()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        };
        match status_file::write(&root, &status) {
            Ok(()) => warned = false,
            Err(e) if !warned => {
                warn!(error = %e, dir = %root.display(), "cannot write receiver.json: `owlet-soc status` will not show the receiver's figures");
                warned = true;
            }
            Err(_) => {}
        }
    }
}

/// Applies the tenants' retention limits now and every
/// `retention.check_every`; each deletion is logged (and recorded in the
/// tenant's `deletions` table by the store).
async fn apply_retention(sink: SinkHandle, config: SocConfig) {
    let mut ticker = tokio::time::interval(config.retention.check_every);
    loop {
        ticker.tick().await;
        let policies = config.clone();
        let policy_of = Box::new(move |tenant: &str| policies.retention_of(tenant));
        match sink
            .enforce_retention(policy_of, std::time::SystemTime::now())
            .await
        {
            Ok(deleted) => {
                for (tenant, d) in deleted {
                    info!(%tenant, day = %d.day, events = d.events, reason = d.reason, "retention deleted a day of events");
                }
            }
            Err(e) => warn!(error = %e, "retention failed; it is tried again at the next interval"),
        }
        if let Ok(control) = config.sqlite_path() {
            let root = crate::sink::store_root(control);
            let _ = tokio::task::spawn_blocking(move || forget_notifications(&root)).await;
        }
    }
}

/// The notifications whose events retention deleted go too: through each
/// tenant's newest recorded deletion (partitions go oldest first, so every
/// id up to its last is gone). Idempotent, so a failure is mended at the
/// next interval.
fn forget_notifications(root: &std::path::Path) {
    let store = owlet_soc_store::Store::existing(root);
    let newest_deletions = store
        .tenants()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|tenant| {
            let newest = store
                .reader(&tenant)
                .ok()?
                .deletions(1)
                .ok()?
                .into_iter()
                .next()?;
            Some((tenant, newest.last_id))
        });
    for (tenant, last_id) in newest_deletions {
        match owlet_soc_notify::record::forget_through(root, &tenant, last_id) {
            Ok(0) => {}
            Ok(n) => {
                info!(%tenant, notifications = n, "retention deleted the notifications of deleted events")
            }
            Err(e) => {
                warn!(%tenant, error = %e, "retention could not delete old notifications; it is tried again at the next interval")
            }
        }
    }
}

/// Resolves at the first SIGTERM or SIGINT (Ctrl-C); never when the
/// handlers cannot be installed.
pub async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
