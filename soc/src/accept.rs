//! Accepting agents: TCP accept, TLS 1.3 handshake with a *required* client
//! certificate chained to the agent CA and not revoked by its CRL, then
//! identity from that certificate.
//!
//! Only connections that pass all three reach the gRPC service, each carrying
//! its [`Peer`] (identity, certificate serial and expiry, address) as tonic
//! connect info. A failed handshake or a certificate without a valid
//! `owlet://TENANT/AGENT` URI is logged and dropped before any byte of gRPC
//! is read. Handshakes run concurrently, each with a deadline, at most
//! `max_connections` at once.
//!
//! Each handshake uses the TLS configuration current when the connection
//! was accepted (a new CRL applies from the next accept). Every accepted
//! connection is registered in [`LiveConns`] by serial, and its reads and
//! writes fail once the registry closes it (a revoked certificate).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use std::future::Future;

use owlet_tls::{CertInfo, Identity};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::transport::server::Connected;
use tracing::{debug, warn};

use crate::live::{LiveConns, LiveGuard};
use crate::refusals::{Class, Refusals};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is on the other end of a connection, as proven by its certificate.
#[derive(Debug, Clone)]
pub struct Peer {
    pub identity: Identity,
    /// Serial and validity of the certificate it connected with.
    pub cert: CertInfo,
    pub addr: SocketAddr,
    /// Fires when that certificate is revoked (see [`crate::live`]).
    pub revoked: CancellationToken,
}

/// An authenticated agent connection.
pub struct AgentConn {
    stream: TlsStream<TcpStream>,
    peer: Peer,
    /// Resolves when the registry closes this connection.
    kill: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Held for the life of the connection: keeps it in the registry.
    _live: LiveGuard,
    /// Held for the life of the connection: bounds connections served.
    _permit: OwnedSemaphorePermit,
}

impl Connected for AgentConn {
    type ConnectInfo = Peer;
    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

/// Accepts forever, sending authenticated connections to `tx` (bounded).
pub async fn accept_loop(
    listener: TcpListener,
    tls: watch::Receiver<Arc<owlet_tls::rustls::ServerConfig>>,
    live: Arc<LiveConns>,
    max_connections: usize,
    refusals: Arc<Refusals>,
    tx: mpsc::Sender<std::io::Result<AgentConn>>,
) {
    let limit = Arc::new(Semaphore::new(max_connections));
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let (tcp, addr) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = TlsAcceptor::from(Arc::clone(&tls.borrow()));
        let tx = tx.clone();
        let live = Arc::clone(&live);
        let refusals = Arc::clone(&refusals);
        tokio::spawn(async move {
            match authenticate(acceptor, tcp, addr).await {
                Ok((stream, identity, cert)) => {
                    debug!(%addr, agent = %identity, cert_serial = %cert.serial, "agent authenticated");
                    let (tokens, guard) = live.register(identity.clone(), cert.serial.clone());
                    let conn = AgentConn {
                        stream,
                        peer: Peer {
                            identity,
                            cert,
                            addr,
                            revoked: tokens.revoked,
                        },
                        kill: Box::pin(tokens.kill.cancelled_owned()),
                        _live: guard,
                        _permit: permit,
                    };
                    let _ = tx.send(Ok(conn)).await;
                }
                Err((class, reason)) => refusals.record(addr, class, &reason),
            }
        });
    }
}

async fn authenticate(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    addr: SocketAddr,
) -> Result<(TlsStream<TcpStream>, Identity, CertInfo), (Class, String)> {
    let _ = tcp.set_nodelay(true);
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .map_err(|_| {
            (
                Class::HandshakeTimeout,
                format!("TLS handshake from {addr} timed out"),
            )
        })?
        .map_err(|e| (Class::Tls, format!("TLS handshake failed: {e}")))?;
    let certs = stream.get_ref().1.peer_certificates().unwrap_or_default();
    let identity = owlet_tls::identity_from_peer_certs(certs)
        .map_err(|e| (Class::Identity, format!("client certificate: {e}")))?;
    // identity_from_peer_certs found a leaf, so `first` is there.
    let cert = certs
        .first()
        .ok_or_else(|| (Class::Identity, "client certificate: none".to_string()))
        .and_then(|leaf| {
            owlet_tls::cert_info(leaf)
                .map_err(|e| (Class::Identity, format!("client certificate: {e}")))
        })?;
    Ok((stream, identity, cert))
}

impl AgentConn {
    /// Whether the registry closed this connection (a revoked certificate);
    /// otherwise the task is woken when it does.
    fn killed(&mut self, cx: &mut Context<'_>) -> bool {
        self.kill.as_mut().poll(cx).is_ready()
    }
}

fn revoked_error() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "the agent's certificate was revoked",
    )
}

impl AsyncRead for AgentConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.killed(cx) {
            return Poll::Ready(Err(revoked_error()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for AgentConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.killed(cx) {
            return Poll::Ready(Err(revoked_error()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if self.killed(cx) {
            return Poll::Ready(Err(revoked_error()));
        }
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
