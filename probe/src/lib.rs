//! owlet-probe: uptime monitoring — ICMP echo, TCP port (+TLS, banner), URL
//! (HTTP/1.1, HTTP/2, HTTPS, proxies) and SNMP (v2c, v3 USM) checks, their
//! scheduler, and up/down state with flap damping.
//!
//! Entry points:
//! - [`ProbeConfig`] — the agent's `[probe]` table, with [`ProbeConfig::validate`].
//! - [`spawn`] — runs the configured checks and sends [`Event`]s
//!   (`CheckResult` for every run, `Alert` for every damped state change
//!   except the quiet first UNKNOWN → UP, for a DOWN check removed by reload,
//!   and for an SNMP device reboot) to a bounded channel;
//!   [`ProbeHandle::reload`] applies config changes and returns what was
//!   added / changed / removed ([`ReloadOutcome`]; added checks are announced
//!   with a `check_added` alert), [`ProbeHandle::states`] gives every
//!   check's damped state ([`CheckStatus`]) without waiting,
//!   [`ProbeHandle::wait_ended`] resolves with a reason if the scheduler
//!   stops unexpectedly (a panic, the channel closing), and
//!   [`ProbeHandle::run_stats`] gives per-check skipped / late run counts.
//! - [`run_check`] — one run of one check; the scheduler and `owlet probe`
//!   ([`cli`]) both use it, so what an operator sees on site is what the SOC
//!   gets.
//!
//! Invariants: a check never runs longer than its timeout (plus a small
//! grace backstop); a panic in a check is an UNKNOWN (LOCAL) result, never a
//! dead check; malformed replies are classified (`PROTOCOL`), never a
//! panic; failures on the agent's side (`LOCAL`: permissions, out of file
//! descriptors or buffers, no socket) are UNKNOWN, never DOWN (`owlet probe`
//! exits 3); bad config is a validation error, never a panic; secrets never
//! appear in results, alerts, logs or `Debug`; every queue is bounded, and
//! name lookups occupy at most [`MAX_CONCURRENT_LOOKUPS`] blocking threads.
//! No unsafe code: raw ICMP sockets come from `socket2`.
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
mod http;
mod icmp;
mod memory;
mod redact;
mod scheduler;
pub mod snmp;
pub mod spec;
mod state;
mod tcp;
mod tls;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

pub use config::{CheckConfig, CheckTypeName, ConfigIssue, IcmpSocketMode, ProbeConfig, Secret};

/// The ICMP wire parser (public for the fuzz targets).
pub use icmp::packet as icmp_packet;
pub use memory::RunMemory;
pub use owlet_proto::v1::Event;
use owlet_proto::v1::{CheckResult, FailureClass};
pub use owlet_proto::v1::{CheckType, State};
pub use scheduler::{
    CheckSet, CheckStatus, ProbeHandle, ReloadOutcome, RunStats, phase_offset, spawn, spawn_set,
};
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
    /// The check could not run because of the agent itself (LOCAL class:
    /// permissions, out of file descriptors or buffers, no socket): says
    /// nothing about the target, so it is UNKNOWN, never DOWN.
    pub fn unknown(message: impl Into<String>) -> Self {
        Outcome {
            state: State::Unknown,
            failure: FailureClass::Local,
            message: message.into(),
        }
    }
    /// A failed run: DOWN, or UNKNOWN when `failure` is LOCAL (agent-side).
    pub fn failed(failure: FailureClass, message: impl Into<String>) -> Self {
        if failure == FailureClass::Local {
            Outcome::unknown(message)
        } else {
            Outcome::down(failure, message)
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
        // WouldBlock: our own send buffer is full (sends are non-blocking).
        K::PermissionDenied | K::AddrNotAvailable | K::AddrInUse | K::WouldBlock => {
            FailureClass::Local
        }
        _ => match e.raw_os_error() {
            // EHOSTUNREACH, ENETUNREACH, EHOSTDOWN, ENETDOWN (Linux numbers)
            Some(113) | Some(101) | Some(112) | Some(100) => FailureClass::Unreachable,
            Some(1) | Some(13) | Some(24) | Some(23) | Some(105) => FailureClass::Local,
            _ => FailureClass::Protocol,
        },
    }
}

/// Most name lookups running at once, process-wide. Lookups run
/// `getaddrinfo` on tokio's blocking pool, which the agent shares with other
/// work (the spool); a hung resolver can occupy at most this many threads.
pub const MAX_CONCURRENT_LOOKUPS: usize = 16;

fn lookup_slots() -> &'static Arc<Semaphore> {
    static SLOTS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    SLOTS.get_or_init(|| Arc::new(Semaphore::new(MAX_CONCURRENT_LOOKUPS)))
}

fn getaddrinfo(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    use std::net::ToSocketAddrs;
    Ok((host, port).to_socket_addrs()?.collect())
}

/// Resolves `host` (IP literals without a lookup). Failures are DNS class.
pub(crate) async fn resolve(
    host: &str,
    port: u16,
    deadline: Instant,
) -> Result<SocketAddr, Outcome> {
    resolve_with(lookup_slots(), getaddrinfo, host, port, deadline).await
}

/// [`resolve`] with the slot pool and the blocking lookup as parameters.
///
/// The permit is moved into the blocking closure, so a lookup that outlives
/// its caller's deadline keeps its slot until getaddrinfo really returns:
/// the cap holds for threads, not just for waiting callers.
pub(crate) async fn resolve_with(
    slots: &Arc<Semaphore>,
    lookup: fn(&str, u16) -> std::io::Result<Vec<SocketAddr>>,
    host: &str,
    port: u16,
    deadline: Instant,
) -> Result<SocketAddr, Outcome> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let timed_out = || Outcome::down(FailureClass::Dns, format!("DNS lookup of {host} timed out"));
    let permit = match tokio::time::timeout_at(deadline.into(), slots.clone().acquire_owned()).await
    {
        Err(_) => {
            return Err(Outcome::down(
                FailureClass::Dns,
                format!(
                    "DNS lookup of {host} timed out waiting for a resolver slot \
                     (all {MAX_CONCURRENT_LOOKUPS} busy: the resolver is slow or hanging)"
                ),
            ));
        }
        Ok(Err(_)) => return Err(Outcome::unknown("DNS resolver pool is closed")),
        Ok(Ok(p)) => p,
    };
    let name = host.to_string();
    let task = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        lookup(&name, port)
    });
    match tokio::time::timeout_at(deadline.into(), task).await {
        Err(_) => Err(timed_out()),
        Ok(Err(e)) => Err(Outcome::unknown(format!(
            "DNS lookup of {host} did not complete: {e}"
        ))),
        Ok(Ok(Err(e))) => Err(Outcome::down(
            FailureClass::Dns,
            format!("cannot resolve {host}: {e}"),
        )),
        Ok(Ok(Ok(addrs))) => addrs.into_iter().next().ok_or_else(|| {
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
    let mut outcome = match tokio::time::timeout(spec.timeout + BACKSTOP_GRACE, work).await {
        Ok(o) => o,
        Err(_) => Outcome::down(
            FailureClass::Timeout,
            format!(
                "check did not finish within its timeout of {}",
                humantime::format_duration(spec.timeout)
            ),
        ),
    };
    if outcome.failure == FailureClass::Local && outcome.state == State::Down {
        // Agent-side failures say nothing about the target.
        outcome.state = State::Unknown;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn slow_lookup(_: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        std::thread::sleep(Duration::from_millis(400));
        Ok(vec![SocketAddr::from(([192, 0, 2, 1], port))])
    }

    fn fast_lookup(_: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        Ok(vec![SocketAddr::from(([192, 0, 2, 7], port))])
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hung_lookups_hold_at_most_the_cap_of_blocking_threads() {
        let slots = Arc::new(Semaphore::new(1));
        let soon = || Instant::now() + Duration::from_millis(50);
        // The lookup hangs past the deadline: DNS timeout, slot still taken.
        let o = resolve_with(&slots, slow_lookup, "hung.example", 80, soon())
            .await
            .unwrap_err();
        assert_eq!((o.state, o.failure), (State::Down, FailureClass::Dns));
        assert_eq!(
            slots.available_permits(),
            0,
            "permit must stay with the thread"
        );
        // A second lookup cannot start another thread: it times out waiting.
        let calls = Instant::now();
        let o = resolve_with(&slots, fast_lookup, "other.example", 80, soon())
            .await
            .unwrap_err();
        assert_eq!(o.failure, FailureClass::Dns);
        assert!(calls.elapsed() < Duration::from_millis(300));
        // Once the hung lookup returns, the slot is free again.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(slots.available_permits(), 1);
        let a = resolve_with(&slots, fast_lookup, "other.example", 81, soon())
            .await
            .unwrap();
        assert_eq!(a, SocketAddr::from(([192, 0, 2, 7], 81)));
        // IP literals never take a slot.
        let _p = slots.clone().acquire_owned().await.unwrap();
        let a = resolve_with(&slots, slow_lookup, "::1", 5, soon())
            .await
            .unwrap();
        assert_eq!(a.port(), 5);
    }

    #[test]
    fn local_failures_are_unknown_not_down() {
        let o = Outcome::failed(FailureClass::Local, "EMFILE");
        assert_eq!((o.state, o.failure), (State::Unknown, FailureClass::Local));
        let o = Outcome::failed(FailureClass::Refused, "refused");
        assert_eq!(o.state, State::Down);
        let emfile = std::io::Error::from_raw_os_error(24);
        assert_eq!(classify_io(&emfile), FailureClass::Local);
        let enobufs = std::io::Error::from_raw_os_error(105);
        assert_eq!(classify_io(&enobufs), FailureClass::Local);
        assert_eq!(
            exit_code(Outcome::failed(classify_io(&emfile), "x").state),
            3
        );
    }
}
