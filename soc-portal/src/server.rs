//! The HTTPS listener: rustls (ring) over tokio, HTTP/1.1, serving the
//! router of [`crate::web::routes`].
//!
//! Guarantees: nothing is served without TLS; the server certificate is
//! the SOC's own (or `[portal] cert`/`key`); a failed handshake or a
//! broken connection ends that connection only; the peer's address is
//! handed to the guard (audit log, lockout by address).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::config::Settings;
use crate::db::Db;
use crate::web::{AppState, routes};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("portal TLS: {0}")]
    Tls(String),
    #[error("cannot listen on {addr} (portal.listen): {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

/// The TLS server configuration of `cert` / `key` (no client certificates:
/// people log in with passwords and TOTP).
pub fn tls_config(settings: &Settings) -> Result<rustls::ServerConfig, ServeError> {
    let certs =
        owlet_tls::load_certs(&settings.cert).map_err(|e| ServeError::Tls(e.to_string()))?;
    let key =
        owlet_tls::load_private_key(&settings.key).map_err(|e| ServeError::Tls(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(owlet_tls::config::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(format!("{}: {e}", settings.cert.display())))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A bound portal, ready to serve.
pub struct Portal {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    state: AppState,
}

impl Portal {
    /// Opens `portal.db`, loads the certificate and binds the address.
    pub async fn bind(settings: Settings) -> Result<Portal, ServeError> {
        let acceptor = TlsAcceptor::from(Arc::new(tls_config(&settings)?));
        let db = Db::open(&settings.portal_db())?;
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| ServeError::Listen {
                    addr: settings.listen,
                    source,
                })?;
        Ok(Portal {
            listener,
            acceptor,
            state: AppState::new(settings, db),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `stop` resolves.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        let router = routes::router(self.state.clone());
        let sweeper = tokio::spawn(sweep(self.state.clone()));
        tokio::pin!(stop);
        loop {
            let (tcp, peer) = tokio::select! {
                _ = &mut stop => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("portal accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let acceptor = self.acceptor.clone();
            let router = router.clone();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!("portal TLS handshake from {peer}: {e}");
                        return;
                    }
                    Err(_) => return,
                };
                let service = router.map_request(move |r: http::Request<hyper::body::Incoming>| {
                    let mut r = r.map(axum::body::Body::new);
                    r.extensions_mut().insert(ConnectInfo(peer));
                    r
                });
                let result = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .http1_only()
                    .serve_connection_with_upgrades(
                        TokioIo::new(tls),
                        TowerToHyperService::new(service),
                    )
                    .await;
                if let Err(e) = result {
                    tracing::debug!("portal connection from {peer}: {e}");
                }
            });
        }
        sweeper.abort();
    }
}

/// Deletes expired sessions now and then.
async fn sweep(state: AppState) {
    loop {
        tokio::time::sleep(Duration::from_secs(300)).await;
        let idle = state.0.settings.session_idle;
        let _ = state
            .blocking(move |s| Ok(crate::session::sweep(&s.db.lock(), idle)?))
            .await;
    }
}

/// Binds and serves until `stop` resolves.
pub async fn serve(settings: Settings, stop: impl Future<Output = ()>) -> Result<(), ServeError> {
    let portal = Portal::bind(settings).await?;
    tracing::info!(
        "portal listening on https://{}",
        portal
            .local_addr()
            .map_or_else(|e| e.to_string(), |a| a.to_string())
    );
    portal.run(stop).await;
    Ok(())
}
