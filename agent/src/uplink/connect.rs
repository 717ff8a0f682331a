//! Opening a mutually authenticated TLS 1.3 connection to the SOC and running
//! gRPC over it.
//!
//! The rustls client config (from `owlet-tls`) trusts only the configured CA
//! and offers the agent's certificate; the server name checked is
//! `soc.server_name` (or the host of `soc.address`). tonic gets the finished
//! TLS stream through a custom connector, so no TLS code of tonic's own is
//! involved and TLS 1.3-only is enforced by our config. With
//! `soc.alternatives`, the connector tries the receivers in turn
//! ([`Connector`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tonic::transport::{Channel, Endpoint};

use super::error::UplinkError;
use super::replay::Replay;

/// Largest first read from the SOC (its HTTP/2 SETTINGS frame is ~30 bytes).
const FIRST_READ: usize = 4096;
use crate::config::Config;

/// One receiver the agent may stream to.
#[derive(Clone)]
struct Target {
    address: String,
    server_name: ServerName<'static>,
}

/// Dials the SOC: `soc.address`, then each of `soc.alternatives` while the
/// earlier ones cannot be reached. Sticky: the next connection starts with
/// the receiver that answered last, so an agent moves only when its
/// receiver fails (the SOC keeps exactly-once across receivers either way).
#[derive(Clone)]
pub struct Connector {
    tls: TlsConnector,
    targets: Arc<[Target]>,
    /// Index in `targets` of the receiver to try first.
    current: Arc<AtomicUsize>,
    timeout: Duration,
}

impl Connector {
    pub fn new(config: &Config) -> Result<Self, UplinkError> {
        let tls = owlet_tls::client_config(&config.soc.ca, &config.soc.cert, &config.soc.key)?;
        let targets = config
            .soc_addresses()
            .map(|address| {
                let name = config.server_name_of(address);
                Ok(Target {
                    address: address.to_string(),
                    server_name: ServerName::try_from(name.clone())
                        .map_err(|_| UplinkError::ServerName(name))?,
                })
            })
            .collect::<Result<Vec<_>, UplinkError>>()?;
        Ok(Self {
            tls: TlsConnector::from(Arc::new(tls)),
            targets: targets.into(),
            current: Arc::new(AtomicUsize::new(0)),
            timeout: config.soc.connect_timeout,
        })
    }

    /// The connect timeout, also used for the hello/welcome exchange.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The receiver tried first (the one connected to, once connected).
    pub fn address(&self) -> &str {
        &self.targets[self.current.load(Ordering::Relaxed) % self.targets.len()].address
    }

    /// A TLS connection to the first receiver that answers, starting with
    /// the current one. Each receiver gets the whole connect timeout. If
    /// none answers, the error is the first receiver's; the others' are
    /// logged.
    async fn connect_any(&self) -> Result<Replay<TlsStream<TcpStream>>, UplinkError> {
        let first = self.current.load(Ordering::Relaxed);
        let n = self.targets.len();
        let mut first_error = None;
        for i in (first..first + n).map(|i| i % n) {
            match self.connect_tls(&self.targets[i]).await {
                Ok(stream) => {
                    self.current.store(i, Ordering::Relaxed);
                    return Ok(stream);
                }
                Err(e) if n > 1 => {
                    tracing::warn!(soc = %self.targets[i].address, reason = %e,
                        "cannot reach this receiver; trying the next of soc.address and soc.alternatives");
                    first_error.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(first_error.unwrap_or(UplinkError::Closed))
    }

    /// TCP connect + TLS handshake + the SOC's first bytes, bounded by the
    /// connect timeout.
    ///
    /// In TLS 1.3 the client's handshake completes before the server has
    /// judged the client's certificate; a refusal arrives as an alert on the
    /// first read. Inside tonic that read happens in hyper's connection task,
    /// which reports only "operation was canceled". So the first read is
    /// done here — the SOC, an HTTP/2 server, sends its SETTINGS at once —
    /// and a refusal becomes a handshake error that names its alert; the
    /// bytes read are replayed to hyper.
    async fn connect_tls(
        &self,
        target: &Target,
    ) -> Result<Replay<TlsStream<TcpStream>>, UplinkError> {
        let address = &target.address;
        let attempt = async {
            // Resolve first, so a DNS failure is told apart from a refusal.
            let addrs: Vec<_> = tokio::net::lookup_host(address)
                .await
                .map_err(|e| UplinkError::Dns(address.clone(), e))?
                .collect();
            let mut last_error = None;
            let mut connected = None;
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(tcp) => {
                        connected = Some(tcp);
                        break;
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            let tcp = connected.ok_or_else(|| {
                let e = last_error.unwrap_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, "the name has no addresses")
                });
                UplinkError::Connect(address.clone(), e)
            })?;
            tcp.set_nodelay(true)
                .map_err(|e| UplinkError::Connect(address.clone(), e))?;
            let mut tls = self
                .tls
                .connect(target.server_name.clone(), tcp)
                .await
                .map_err(|e| UplinkError::Handshake(address.clone(), e))?;
            let mut first = vec![0u8; FIRST_READ];
            let n = tls
                .read(&mut first)
                .await
                .map_err(|e| UplinkError::Handshake(address.clone(), e))?;
            if n == 0 {
                return Err(UplinkError::Closed);
            }
            first.truncate(n);
            Ok(Replay::new(first, tls))
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .map_err(|_| UplinkError::Timeout(address.clone(), self.timeout))?
    }

    /// A gRPC channel over one fresh TLS connection.
    pub async fn channel(&self) -> Result<Channel, UplinkError> {
        let connector = self.clone();
        // The URI is not used for addressing (the connector dials the SOC);
        // tonic needs a syntactically valid one.
        let endpoint = Endpoint::from_static("http://soc.owlet.invalid")
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true);
        endpoint
            .connect_with_connector(tower::service_fn(move |_| {
                let connector = connector.clone();
                async move { connector.connect_any().await.map(TokioIo::new) }
            }))
            .await
            .map_err(|e| UplinkError::Transport(Box::new(e)))
    }
}
