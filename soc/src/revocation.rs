//! Keeps the receiver's TLS configuration in step with the CRL file
//! (`server.crl`): re-read when the file changes (checked every
//! `server.crl_check_every`) and on SIGHUP.
//!
//! Guarantees:
//! - a new CRL takes effect in this order: the TLS configuration for new
//!   handshakes, then the live-connection registry (which ends the streams
//!   of newly revoked certificates, and any that register later), then the
//!   store's revoked set (what `owlet-soc agents` shows);
//! - a CRL file that is missing, unreadable or broken changes nothing: the
//!   CRL in force stays in force (never "no revocation" because a file was
//!   half-copied), and the problem is logged once per change of the file;
//! - SIGHUP also re-reads the server certificate, key and client CA.
//!
//! Must never block the accept loop: loading runs on this task, and the
//! accept loop only clones the current configuration.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::SystemTime;

use owlet_tls::rustls::ServerConfig;
use owlet_tls::{Crls, TlsError};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::config::ServerSection;
use crate::live::LiveConns;
use crate::sink::SinkHandle;

/// The receiver's TLS configuration with the CRLs of `server.crl` (none
/// when it is not set).
pub fn load(server: &ServerSection) -> Result<(ServerConfig, Option<Crls>), TlsError> {
    let crls = server
        .crl
        .as_deref()
        .map(|crl| owlet_tls::load_crls(crl, &server.client_ca))
        .transpose()?;
    let ders = crls.as_ref().map(|c| c.ders.clone()).unwrap_or_default();
    let tls =
        owlet_tls::server_config_with_crls(&server.cert, &server.key, &server.client_ca, ders)?;
    Ok((tls, crls))
}

/// Applies `crls` to the registry and the store (the TLS configuration is
/// the caller's: it goes first).
pub async fn apply(crls: &Crls, live: &LiveConns, sink: &SinkHandle) {
    let serials: HashSet<String> = crls.revoked.keys().cloned().collect();
    let ended = live.set_revoked(serials);
    for (agent, serial) in &ended {
        warn!(%agent, cert_serial = %serial, "certificate revoked: ending the agent's stream");
    }
    match sink
        .set_revoked(crls.revoked.values().cloned().collect())
        .await
    {
        Ok(agents) => {
            for agent in agents {
                info!(%agent, "agent's certificate revoked (recorded)");
            }
        }
        Err(e) => error!(error = %e, "could not record the revoked certificates"),
    }
}

/// What identifies one version of the CRL file.
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(server: &ServerSection) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(server.crl.as_deref()?).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

/// Watches the CRL file and SIGHUP until the task is aborted.
pub async fn watch(
    server: ServerSection,
    tls: watch::Sender<Arc<ServerConfig>>,
    live: Arc<LiveConns>,
    sink: SinkHandle,
) {
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(hangup) => Some(hangup),
        Err(e) => {
            warn!(error = %e, "no SIGHUP handler: the CRL is re-read only when its file changes");
            None
        }
    };
    let mut ticker = tokio::time::interval(server.crl_check_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = stamp(&server);
    loop {
        let forced = tokio::select! {
            _ = ticker.tick() => false,
            Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => None } } => true,
        };
        let now = stamp(&server);
        if !forced && now == seen {
            continue;
        }
        seen = now;
        reload(&server, &tls, &live, &sink, forced).await;
    }
}

async fn reload(
    server: &ServerSection,
    tls: &watch::Sender<Arc<ServerConfig>>,
    live: &LiveConns,
    sink: &SinkHandle,
    forced: bool,
) {
    let why = if forced {
        "SIGHUP"
    } else {
        "the CRL file changed"
    };
    match load(server) {
        Ok((config, crls)) => {
            tls.send_replace(Arc::new(config));
            match crls {
                Some(crls) => {
                    info!(reason = why, revoked = crls.revoked.len(),
                          crl = %server.crl.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
                          "TLS configuration reloaded with the CRL");
                    apply(&crls, live, sink).await;
                }
                None => info!(
                    reason = why,
                    "TLS configuration reloaded (no server.crl: no revocation check)"
                ),
            }
        }
        Err(e) => error!(reason = why, error = %e,
                         "TLS configuration not reloaded; the previous one (and its CRL) stays in force"),
    }
}
