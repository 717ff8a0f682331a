//! owlet-probe: uptime monitoring — ICMP echo, TCP port (+TLS, banner), URL
//! (HTTP/1.1, HTTP/2, HTTPS, proxies) and SNMP (v2c, v3 USM) checks, their
//! scheduler, and up/down state with flap damping.
//!
//! Entry points:
//! - [`ProbeConfig`] — the agent's `[probe]` table, with [`ProbeConfig::validate`].
//! - [`spawn`] — runs the configured checks and sends [`Event`]s
//!   (`CheckResult` for every run, `Alert` for every damped state change) to a
//!   bounded channel; [`ProbeHandle::reload`] applies config changes.
//! - [`run_check`] — one run of one check; the scheduler and `owlet probe`
//!   ([`cli`]) both use it, so what an operator sees on site is what the SOC
//!   gets.
//!
//! Invariants: a check never runs longer than its timeout (plus a small
//! grace backstop); malformed replies are classified (`PROTOCOL`), never a
//! panic; secrets never appear in results, alerts, logs or `Debug`; every
//! queue is bounded. No unsafe code: raw ICMP sockets come from `socket2`.
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
mod http;
mod icmp;
mod memory;
mod scheduler;
pub mod snmp;
pub mod spec;
mod state;
mod tcp;
mod tls;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

pub use config::{CheckConfig, CheckTypeName, ConfigIssue, IcmpSocketMode, ProbeConfig, Secret};
/// The ICMP wire parser (public for the fuzz targets).
pub use icmp::packet as icmp_packet;
pub use memory::RunMemory;
pub use owlet_proto::v1::Event;
use owlet_proto::v1::{CheckResult, CheckType, FailureClass, State};
pub use scheduler::{ProbeHandle, phase_offset, spawn};
pub use spec::{CheckKind, CheckSpec};
pub use state::{Damper, Transition};

/// How long past its timeout a check may run before the backstop cuts it off.
const BACKSTOP_GRACE: Duration = Duration::from_secs(1);

/// Result of one run before it is put into a `CheckResult`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    pub state: State,
    pub failure: FailureClass,
    pub message: String,
}

impl Outcome {
    pub fn up(message: impl Into<String>) -> Self {
        Outcome {
            state: State::Up,
            failure: FailureClass::Unspecified,
            message: message.into(),
        }
    }
    pub fn down(failure: FailureClass, message: impl Into<String>) -> Self {
        Outcome {
            state: State::Down,
            failure,
            message: message.into(),
        }
    }
    pub fn degraded(failure: FailureClass, message: impl Into<String>) -> Self {
        Outcome {
            state: State::Degraded,
            failure,
            message: message.into(),
        }
    }
}

/// A byte stream a check talks over (TCP, TLS over TCP, a proxy tunnel).
pub(crate) trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

pub(crate) fn check_type_proto(t: CheckTypeName) -> CheckType {
    match t {
        CheckTypeName::Icmp => CheckType::Icmp,
        CheckTypeName::Tcp => CheckType::Tcp,
        CheckTypeName::Http => CheckType::Http,
        CheckTypeName::Snmp => CheckType::Snmp,
    }
}

/// Classifies a socket error.
pub(crate) fn classify_io(e: &std::io::Error) -> FailureClass {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => FailureClass::Refused,
        K::HostUnreachable | K::NetworkUnreachable => FailureClass::Unreachable,
        K::TimedOut => FailureClass::Timeout,
        K::PermissionDenied | K::AddrNotAvailable | K::AddrInUse => FailureClass::Local,
        _ => match e.raw_os_error() {
            // EHOSTUNREACH, ENETUNREACH, EHOSTDOWN, ENETDOWN (Linux numbers)
            Some(113) | Some(101) | Some(112) | Some(100) => FailureClass::Unreachable,
            Some(1) | Some(13) | Some(24) | Some(23) | Some(105) => FailureClass::Local,
            _ => FailureClass::Protocol,
        },
    }
}

/// Resolves `host` (IP literals without a lookup). Failures are DNS class.
pub(crate) async fn resolve(
    host: &str,
    port: u16,
    deadline: Instant,
) -> Result<SocketAddr, Outcome> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    match tokio::time::timeout_at(deadline.into(), tokio::net::lookup_host((host, port))).await {
        Err(_) => Err(Outcome::down(
            FailureClass::Dns,
            format!("DNS lookup of {host} timed out"),
        )),
        Ok(Err(e)) => Err(Outcome::down(
            FailureClass::Dns,
            format!("cannot resolve {host}: {e}"),
        )),
        Ok(Ok(mut addrs)) => addrs.next().ok_or_else(|| {
            Outcome::down(FailureClass::Dns, format!("{host} resolved to no address"))
        }),
    }
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1000.0)
}

pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Runs one check once and returns its result. `state` is set equal to
/// `result` (no damping); the scheduler replaces it with the damped state.
pub async fn run_check(spec: &CheckSpec) -> CheckResult {
    let start = Instant::now();
    let mut r = CheckResult {
        check_id: spec.id.clone(),
        check_type: check_type_proto(spec.check_type) as i32,
        target: spec.target.clone(),
        ..Default::default()
    };
    let work = async {
        match &spec.kind {
            CheckKind::Icmp(s) => icmp::run(spec, s, &mut r).await,
            CheckKind::Tcp(s) => tcp::run(spec, s, &mut r).await,
            CheckKind::Http(s) => http::run(spec, s, &mut r).await,
            CheckKind::Snmp(s) => snmp::run(spec, s, &mut r).await,
        }
    };
    let outcome = match tokio::time::timeout(spec.timeout + BACKSTOP_GRACE, work).await {
        Ok(o) => o,
        Err(_) => Outcome::down(
            FailureClass::Timeout,
            format!(
                "check did not finish within its timeout of {}",
                humantime::format_duration(spec.timeout)
            ),
        ),
    };
    r.result = outcome.state as i32;
    r.state = outcome.state as i32;
    r.failure = outcome.failure as i32;
    r.message = outcome.message;
    r.duration_us = micros(start.elapsed());
    r
}

/// Nagios-style exit code for a result state: 0 up, 1 degraded, 2 down, 3 unknown.
pub fn exit_code(state: State) -> i32 {
    match state {
        State::Up => 0,
        State::Degraded => 1,
        State::Down => 2,
        State::Unknown | State::Unspecified => 3,
    }
}
