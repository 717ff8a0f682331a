//! What the output tests share: a store filled through its real writer,
//! a test CA from the workspace's own CA tooling, a TLS HTTP server the
//! fake SIEMs run on, and waiting helpers.
#![allow(dead_code)]

pub mod bulk;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use owlet_proto::v1::{CheckResult, Event, FlowRecord, State, event::Kind};
use owlet_soc_outputs::{OutputConfig, OutputStatus, status};
use owlet_soc_store::{Batch, Store};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Appends events with agent sequence numbers `seqs` to `tenant`'s log
/// (alternating flows and check results, so documents differ by kind).
pub fn fill(root: &Path, tenant: &str, seqs: std::ops::RangeInclusive<u64>) {
    fill_at(root, tenant, seqs, SystemTime::now());
}

/// `fill` as if the SOC received the events at `received` (partitions are
/// days of arrival).
pub fn fill_at(
    root: &Path,
    tenant: &str,
    seqs: std::ops::RangeInclusive<u64>,
    received: SystemTime,
) {
    let events = events(tenant, seqs);
    let store = Store::open(root).unwrap();
    let mut log = store.writer(tenant).unwrap();
    for chunk in events.chunks(1000) {
        log.append(
            &[Batch {
                agent: "s1",
                zone: "Asia/Tokyo",
                events: chunk,
                sequenced: true,
            }],
            received,
        )
        .unwrap();
    }
}

/// Events with agent sequence numbers `seqs`, alternating flows and check
/// results (so documents differ by kind), naming `tenant` in their fields.
pub fn events(tenant: &str, seqs: std::ops::RangeInclusive<u64>) -> Vec<Event> {
    seqs.map(|seq| Event {
        seq,
        time: Some(owlet_proto::now()),
        kind: Some(if seq % 2 == 0 {
            Kind::FlowRecord(FlowRecord {
                src_addr: "10.0.0.5".into(),
                dst_addr: "192.0.2.1".into(),
                src_port: 40000 + (seq % 1000) as u32,
                dst_port: 443,
                protocol: 6,
                bytes_out: seq,
                tls_sni: format!("{tenant}.example"),
                ..Default::default()
            })
        } else {
            Kind::CheckResult(CheckResult {
                check_id: format!("{tenant}-web"),
                result: State::Up as i32,
                state: State::Up as i32,
                ..Default::default()
            })
        }),
    })
    .collect()
}

/// `tenant/s1/N` for N in `seqs`: the event ids `fill` produced.
pub fn ids(tenant: &str, seqs: std::ops::RangeInclusive<u64>) -> Vec<String> {
    seqs.map(|s| format!("{tenant}/s1/{s}")).collect()
}

/// A test CA and a server certificate for localhost / 127.0.0.1, made by
/// the workspace's CA tooling (`owlet-soc ca init`'s code).
pub struct TestCa {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn test_ca(dir: &Path) -> TestCa {
    let paths = owlet_ca::init(
        &dir.join("ca"),
        &["localhost".to_string(), "127.0.0.1".to_string()],
        30,
    )
    .unwrap();
    TestCa {
        ca: paths.ca_cert,
        cert: paths.soc_cert,
        key: paths.soc_key,
    }
}

/// A secret in a 0600 file.
pub fn token_file(dir: &Path, token: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("token");
    std::fs::write(&path, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

pub type Handler = Arc<
    dyn Fn(Request<Bytes>) -> Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>
        + Send
        + Sync,
>;

/// An HTTPS server on 127.0.0.1 (HTTP/1.1, the test CA's certificate) that
/// answers with `handler`. Dropping or `stop`ping it closes the listener
/// and every open connection: the destination is down.
pub struct HttpsServer {
    pub addr: SocketAddr,
    stop: CancellationToken,
}

impl HttpsServer {
    /// Listens on `port` (0: any free port).
    pub async fn start(ca: &TestCa, port: u16, handler: Handler) -> Self {
        let config = owlet_tls::rustls::ServerConfig::builder_with_provider(Arc::new(
            owlet_tls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            owlet_tls::load_certs(&ca.cert).unwrap(),
            owlet_tls::load_private_key(&ca.key).unwrap(),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    _ = token.cancelled() => return,
                    r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
                };
                let (acceptor, handler, token) = (acceptor.clone(), handler.clone(), token.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let handler = handler.clone();
                            async move {
                                let (parts, body) = req.into_parts();
                                let body = body
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                Ok::<_, Infallible>(handler(Request::from_parts(parts, body)).await)
                            }
                        });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service);
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = conn => {}
                    }
                });
            }
        });
        Self { addr, stop }
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub fn json_response(status: u16, body: serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// Runs `config` as `owlet-soc serve` would: a task with a shutdown token.
pub struct Running {
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), owlet_soc_outputs::OutputError>>,
}

pub fn spawn(root: &Path, config: &OutputConfig) -> Running {
    spawn_with(|stop| owlet_soc_outputs::run(root.to_path_buf(), config.clone(), stop))
}

/// Runs `config` as `owlet-soc outputs` would, on the scaled-out SOC's
/// PostgreSQL at `conninfo`.
pub fn spawn_postgres(conninfo: &str, config: &OutputConfig) -> Running {
    spawn_with(|stop| owlet_soc_outputs::run_postgres(conninfo.to_string(), config.clone(), stop))
}

fn spawn_with<F>(run: impl FnOnce(CancellationToken) -> F) -> Running
where
    F: Future<Output = Result<(), owlet_soc_outputs::OutputError>> + Send + 'static,
{
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(stop.clone()));
    Running { stop, task }
}

impl Running {
    /// Stops the output as a SOC shutdown would, and waits for it.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// Polls `check` every 50 ms until it is true; panics with `what` after
/// `limit` (a generous bound: these machines are shared).
pub async fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The status rows of `config`, by tenant.
pub fn rows(root: &Path, config: &OutputConfig) -> Vec<OutputStatus> {
    status(root, std::slice::from_ref(config)).unwrap()
}

/// Asserts that `seen` (ids in arrival order, resends included) holds every
/// id of `expected` and that first arrivals follow the log's order.
pub fn assert_complete_and_ordered(seen: &[String], expected: &[String]) {
    let mut first = Vec::new();
    let mut set = std::collections::HashSet::new();
    for id in seen {
        if set.insert(id.clone()) {
            first.push(id.clone());
        }
    }
    let missing: Vec<_> = expected.iter().filter(|id| !set.contains(*id)).collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    let extra: Vec<_> = first.iter().filter(|id| !expected.contains(id)).collect();
    assert!(extra.is_empty(), "unexpected events: {extra:?}");
    assert_eq!(first, expected, "events arrived out of order");
}
