//! Accepting agents: TCP accept, TLS 1.3 handshake with a *required* client
//! certificate chained to the agent CA, then identity from that certificate.
//!
//! Only connections that pass all three reach the gRPC service, each carrying
//! its [`Peer`] (identity + address) as tonic connect info. A failed handshake
//! or a certificate without a valid `owlet://TENANT/AGENT` URI is logged and
//! dropped before any byte of gRPC is read. Handshakes run concurrently, each
//! with a deadline, at most `max_connections` at once.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use owlet_tls::Identity;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;
use tracing::{debug, warn};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is on the other end of a connection, as proven by its certificate.
#[derive(Debug, Clone)]
pub struct Peer {
    pub identity: Identity,
    pub addr: SocketAddr,
}

/// An authenticated agent connection.
pub struct AgentConn {
    stream: TlsStream<TcpStream>,
    peer: Peer,
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
    tls: Arc<owlet_tls::rustls::ServerConfig>,
    max_connections: usize,
    tx: mpsc::Sender<std::io::Result<AgentConn>>,
) {
    let acceptor = TlsAcceptor::from(tls);
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
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            match authenticate(acceptor, tcp, addr).await {
                Ok((stream, identity)) => {
                    debug!(%addr, agent = %identity, "agent authenticated");
                    let conn = AgentConn {
                        stream,
                        peer: Peer { identity, addr },
                        _permit: permit,
                    };
                    let _ = tx.send(Ok(conn)).await;
                }
                Err(reason) => warn!(%addr, %reason, "connection refused"),
            }
        });
    }
}

async fn authenticate(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    addr: SocketAddr,
) -> Result<(TlsStream<TcpStream>, Identity), String> {
    let _ = tcp.set_nodelay(true);
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .map_err(|_| format!("TLS handshake from {addr} timed out"))?
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    let certs = stream.get_ref().1.peer_certificates().unwrap_or_default();
    let identity = owlet_tls::identity_from_peer_certs(certs)
        .map_err(|e| format!("client certificate: {e}"))?;
    Ok((stream, identity))
}

impl AsyncRead for AgentConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for AgentConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
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
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
