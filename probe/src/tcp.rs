//! TCP port checks: connect time, optional TLS handshake (certificate
//! expiry), optional send / expect banner check.
//!
//! Refused (RST), unreachable (ICMP / no route) and timeout are told apart
//! from the connect error. Reads are bounded (4 KiB) and limited by the
//! check's deadline, so a server that trickles bytes or never answers cannot
//! hold the check longer than its timeout.

use std::time::{Duration, Instant};

use owlet_proto::v1::{CheckResult, FailureClass, TcpDetail, check_result::Detail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::spec::{CheckSpec, TcpSpec};
use crate::{Io, Outcome, classify_io, micros, ms, resolve};

const MAX_READ: usize = 4096;
const BANNER_MAX: usize = 256;

pub(crate) async fn run(spec: &CheckSpec, t: &TcpSpec, r: &mut CheckResult) -> Outcome {
    let deadline = Instant::now() + spec.timeout;
    let mut d = TcpDetail::default();
    let o = inner(spec.timeout, deadline, t, r, &mut d).await;
    r.detail = Some(Detail::Tcp(d));
    o
}

/// Connects with a deadline; errors already classified.
pub(crate) async fn connect(
    addr: std::net::SocketAddr,
    deadline: Instant,
    timeout: Duration,
) -> Result<TcpStream, Outcome> {
    match tokio::time::timeout_at(deadline.into(), TcpStream::connect(addr)).await {
        Err(_) => Err(Outcome::down(
            FailureClass::Timeout,
            format!(
                "TCP connect to {addr} timed out after {}",
                humantime::format_duration(timeout)
            ),
        )),
        Ok(Err(e)) => {
            let class = classify_io(&e);
            let what = match class {
                FailureClass::Refused => "connection refused".to_string(),
                FailureClass::Unreachable => format!("unreachable ({e})"),
                _ => e.to_string(),
            };
            Err(Outcome::failed(
                class,
                format!("TCP connect to {addr}: {what}"),
            ))
        }
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }
}

async fn inner(
    timeout: Duration,
    deadline: Instant,
    t: &TcpSpec,
    r: &mut CheckResult,
    d: &mut TcpDetail,
) -> Outcome {
    let addr = match resolve(&t.addr.host, t.addr.port, deadline).await {
        Ok(a) => a,
        Err(o) => return o,
    };
    r.resolved_address = addr.to_string();
    let t0 = Instant::now();
    let stream = match connect(addr, deadline, timeout).await {
        Ok(s) => s,
        Err(o) => return o,
    };
    let connect_time = t0.elapsed();
    d.connect_us = micros(connect_time);
    let mut notes = vec![format!("connected in {}", ms(connect_time))];
    let mut degraded = None;
    let mut io: Box<dyn Io> = Box::new(stream);
    if let Some(tls) = &t.tls {
        let name = tls.server_name.as_deref().unwrap_or(&t.addr.host);
        let server_name = match crate::tls::server_name(name) {
            Ok(n) => n,
            Err(e) => return Outcome::unknown(e.to_string()),
        };
        let config = match tls.client_config() {
            Ok(c) => c,
            Err(e) => return Outcome::unknown(format!("cannot set up TLS: {e}")),
        };
        let connector = tokio_rustls::TlsConnector::from(config);
        let t1 = Instant::now();
        let tls_stream = match tokio::time::timeout_at(
            deadline.into(),
            connector.connect(server_name, io),
        )
        .await
        {
            Err(_) => return Outcome::down(FailureClass::Timeout, "TLS handshake timed out"),
            Ok(Err(e)) => return crate::tls::tls_failure(&e),
            Ok(Ok(s)) => s,
        };
        d.tls_handshake_us = micros(t1.elapsed());
        let days = tls_stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| crate::tls::cert_days_left(c));
        d.cert_days_left = days;
        notes.push(format!("TLS in {}", ms(t1.elapsed())));
        if let Some(days) = days {
            if days < 0 {
                return Outcome::down(
                    FailureClass::CertExpiry,
                    format!("certificate expired {} day(s) ago", -days),
                );
            }
            if days < i64::from(tls.warn_days) {
                degraded = Some(format!("certificate expires in {days} day(s)"));
            }
        }
        if tls.insecure {
            notes.push("TLS verification DISABLED".into());
        }
        io = Box::new(tls_stream);
    }
    if let Some(send) = &t.send {
        match tokio::time::timeout_at(deadline.into(), async {
            io.write_all(send).await?;
            io.flush().await
        })
        .await
        {
            Err(_) => return Outcome::down(FailureClass::Timeout, "timed out sending data"),
            Ok(Err(e)) => return Outcome::failed(classify_io(&e), format!("sending failed: {e}")),
            Ok(Ok(())) => {}
        }
    }
    if let Some(expect) = &t.expect {
        let mut buf = Vec::with_capacity(512);
        let mut chunk = [0u8; 1024];
        let found = loop {
            if buf.windows(expect.len()).any(|w| w == expect.as_slice()) {
                break Ok(());
            }
            if buf.len() >= MAX_READ {
                break Err(false);
            }
            match tokio::time::timeout_at(deadline.into(), io.read(&mut chunk)).await {
                Err(_) => break Err(true),
                Ok(Err(e)) => {
                    d.banner = banner(&buf);
                    return Outcome::failed(classify_io(&e), format!("reading failed: {e}"));
                }
                Ok(Ok(0)) => break Err(false),
                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n.min(MAX_READ)]),
            }
        };
        d.banner = banner(&buf);
        let want = String::from_utf8_lossy(expect);
        match found {
            Ok(()) => notes.push(format!("got {want:?}")),
            Err(timed_out) if buf.is_empty() && timed_out => {
                return Outcome::down(
                    FailureClass::Timeout,
                    format!("no data within the timeout (expected {want:?})"),
                );
            }
            Err(_) => {
                return Outcome::down(
                    FailureClass::ContentMismatch,
                    format!("expected {want:?}, got {:?}", d.banner),
                );
            }
        }
    }
    let msg = notes.join(", ");
    match degraded {
        Some(w) => Outcome::degraded(FailureClass::CertExpiry, format!("{w}; {msg}")),
        None => Outcome::up(msg),
    }
}

fn banner(buf: &[u8]) -> String {
    String::from_utf8_lossy(&buf[..buf.len().min(BANNER_MAX)]).into_owned()
}
