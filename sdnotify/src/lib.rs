//! systemd's service notification protocol (`sd_notify(3)`) for both owlet
//! binaries, and the liveness record that decides whether the watchdog may
//! be fed.
//!
//! # The protocol
//! A service started with `Type=notify` finds `NOTIFY_SOCKET` in its
//! environment: a Unix datagram socket, either a path or (leading `@`) an
//! abstract-namespace name. Each datagram holds newline-separated
//! `KEY=VALUE` assignments: `READY=1` (start-up finished), `STATUS=…` (the
//! line `systemctl status` shows), `WATCHDOG=1` (keep-alive),
//! `STOPPING=1` (shutdown began). With `WatchdogSec=` systemd also sets
//! `WATCHDOG_USEC` (the period) and `WATCHDOG_PID` (which process it is
//! meant for) and kills the service when no `WATCHDOG=1` arrives within the
//! period.
//!
//! Written here rather than taken from the `sd-notify` crate: the protocol
//! is one `sendto` on a socket std already speaks (abstract addresses
//! included, without `unsafe`), and what owlet needs around it — send a
//! status only when it changed, feed the watchdog only while the service's
//! tasks turn — is this crate's real content.
//!
//! # Guarantees
//! * Without `NOTIFY_SOCKET` every call is a no-op: no error, no log line
//!   (a service run by hand or by tests behaves as before).
//! * A failed send is logged once at warning level and never stops the
//!   service: the notification channel is advisory; systemd's own timeouts
//!   are the backstop.
//! * [`Systemd::status`] sends a line only when it differs from the last one
//!   sent and at most once per [`STATUS_MIN_GAP`].
//! * [`Liveness`] reports a task as stuck only while it is *inside* work
//!   (a [`Busy`] guard is alive) for longer than the limit; a task waiting
//!   for input holds no guard and is idle by design, never stuck.
//!
//! Never: the environment is not modified (`unset_environment` in
//! `sd_notify(3)` terms is false) — changing the environment of a running
//! multi-threaded process is unsound.
#![forbid(unsafe_code)]

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::warn;

/// Status lines are sent at most this often (a flapping uplink must not
/// flood the service manager).
pub const STATUS_MIN_GAP: Duration = Duration::from_secs(1);

/// Why `NOTIFY_SOCKET` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(
        "NOTIFY_SOCKET={0:?} is neither an absolute path nor an abstract name (@name); \
         systemd sets it for Type=notify services, unset it when running by hand"
    )]
    BadAddress(String),
    #[error("cannot use NOTIFY_SOCKET={0:?}: {1}")]
    Socket(String, io::Error),
}

/// The notification socket named by `NOTIFY_SOCKET`.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// The notifier for `NOTIFY_SOCKET`; `Ok(None)` when it is unset or
    /// empty.
    pub fn from_env() -> Result<Option<Self>, NotifyError> {
        match std::env::var("NOTIFY_SOCKET") {
            Ok(value) if !value.is_empty() => Self::new(&value).map(Some),
            _ => Ok(None),
        }
    }

    /// A notifier for `address` (a path, or `@name` in the abstract
    /// namespace).
    pub fn new(address: &str) -> Result<Self, NotifyError> {
        let socket_error = |e| NotifyError::Socket(address.to_string(), e);
        let addr = if let Some(name) = address.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes()).map_err(socket_error)?
        } else if address.starts_with('/') {
            SocketAddr::from_pathname(address).map_err(socket_error)?
        } else {
            return Err(NotifyError::BadAddress(address.to_string()));
        };
        let socket = UnixDatagram::unbound().map_err(socket_error)?;
        Ok(Self { socket, addr })
    }

    /// Sends one datagram of `KEY=VALUE` lines.
    pub fn send(&self, state: &str) -> io::Result<()> {
        let sent = self.socket.send_to_addr(state.as_bytes(), &self.addr)?;
        if sent == state.len() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("sent {sent} of {} bytes", state.len()),
            ))
        }
    }
}

/// The watchdog period systemd asks this process to honour: `WATCHDOG_USEC`
/// when set, positive and (if `WATCHDOG_PID` is set) meant for this process.
pub fn watchdog_period() -> Option<Duration> {
    parse_watchdog(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

fn parse_watchdog(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok()? != me
    {
        return None;
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// A service's side of the protocol, as the binaries use it: every method is
/// a no-op without `NOTIFY_SOCKET`.
#[derive(Debug)]
pub struct Systemd {
    notifier: Option<Notifier>,
    watchdog: Option<Duration>,
    last_status: String,
    last_status_at: Option<Instant>,
    warned: bool,
}

impl Systemd {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`. A broken
    /// `NOTIFY_SOCKET` is logged and notification is off.
    pub fn from_env() -> Self {
        let notifier = match Notifier::from_env() {
            Ok(n) => n,
            Err(e) => {
                warn!("systemd notification off: {e}");
                None
            }
        };
        let watchdog = notifier.as_ref().and_then(|_| watchdog_period());
        Self::with(notifier, watchdog)
    }

    /// A service talking to `notifier` with the given watchdog period.
    pub fn with(notifier: Option<Notifier>, watchdog: Option<Duration>) -> Self {
        Self {
            notifier,
            watchdog,
            last_status: String::new(),
            last_status_at: None,
            warned: false,
        }
    }

    /// Whether a service manager listens.
    pub fn active(&self) -> bool {
        self.notifier.is_some()
    }

    /// The watchdog period, when systemd set one for this process.
    pub fn watchdog_period(&self) -> Option<Duration> {
        self.watchdog
    }

    /// How often to feed the watchdog: half its period (what `sd_notify(3)`
    /// recommends), so one late turn does not kill the service.
    pub fn feed_every(&self) -> Option<Duration> {
        self.watchdog.map(|p| (p / 2).max(Duration::from_millis(1)))
    }

    /// `READY=1` with the first status line.
    pub fn ready(&mut self, status: &str) {
        self.last_status = status.to_string();
        self.last_status_at = Some(Instant::now());
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// `STATUS=…`, only when `status` differs from the last line sent and
    /// the last one is at least [`STATUS_MIN_GAP`] old. Returns whether it
    /// was sent (call again later with the current line otherwise).
    pub fn status(&mut self, status: &str) -> bool {
        if status == self.last_status
            || self
                .last_status_at
                .is_some_and(|at| at.elapsed() < STATUS_MIN_GAP)
        {
            return false;
        }
        self.last_status = status.to_string();
        self.last_status_at = Some(Instant::now());
        self.send(&format!("STATUS={}", one_line(status)));
        true
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&mut self) {
        if self.watchdog.is_some() {
            self.send("WATCHDOG=1");
        }
    }

    /// `STOPPING=1` with a last status line.
    pub fn stopping(&mut self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={}", one_line(status)));
    }

    fn send(&mut self, state: &str) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        if let Err(e) = notifier.send(state)
            && !std::mem::replace(&mut self.warned, true)
        {
            warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET); the service keeps running");
        }
    }
}

/// A status is one line: newlines would start new assignments.
fn one_line(status: &str) -> String {
    status.replace(['\n', '\r'], " ")
}

/// The critical tasks of a service and whether each is stuck inside work.
/// Clones share the record.
#[derive(Debug, Clone)]
pub struct Liveness {
    beats: Arc<Mutex<Vec<Arc<Beat>>>>,
    base: Instant,
}

impl Default for Liveness {
    fn default() -> Self {
        Self {
            beats: Arc::default(),
            base: Instant::now(),
        }
    }
}

/// A stuck task: its name and how long it has been inside one piece of work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck {
    pub task: &'static str,
    pub busy_for: Duration,
}

impl std::fmt::Display for Stuck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the {} task has been inside one piece of work (disk or network I/O) for {}s",
            self.task,
            self.busy_for.as_secs()
        )
    }
}

impl Liveness {
    /// Registers a task; it reports through the returned beat.
    pub fn register(&self, task: &'static str) -> Arc<Beat> {
        let beat = Arc::new(Beat {
            task,
            base: self.base,
            busy_since: AtomicU64::new(IDLE),
        });
        self.beats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Arc::clone(&beat));
        beat
    }

    /// The tasks that have been inside work for longer than `limit` now.
    pub fn stuck(&self, limit: Duration) -> Vec<Stuck> {
        self.stuck_at(Instant::now(), limit)
    }

    /// [`Liveness::stuck`] as of `now`.
    pub fn stuck_at(&self, now: Instant, limit: Duration) -> Vec<Stuck> {
        let beats = self
            .beats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        beats
            .iter()
            .filter_map(|beat| {
                let busy_for = beat.busy_for(now)?;
                (busy_for > limit).then_some(Stuck {
                    task: beat.task,
                    busy_for,
                })
            })
            .collect()
    }
}

/// `busy_since` when the task is idle.
const IDLE: u64 = 0;

/// One task's liveness: idle (waiting for input) or busy since an instant.
#[derive(Debug)]
pub struct Beat {
    task: &'static str,
    base: Instant,
    /// Nanoseconds after `base` (plus one, so 0 means idle) when the current
    /// piece of work began.
    busy_since: AtomicU64,
}

impl Beat {
    pub fn task(&self) -> &'static str {
        self.task
    }

    /// Marks the task busy until the guard drops. Nested guards are fine:
    /// the outermost one decides.
    pub fn busy(self: &Arc<Self>) -> Busy {
        let now = u64::try_from(self.base.elapsed().as_nanos())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1);
        let outermost = self
            .busy_since
            .compare_exchange(IDLE, now, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        Busy {
            beat: outermost.then(|| Arc::clone(self)),
        }
    }

    fn busy_for(&self, now: Instant) -> Option<Duration> {
        match self.busy_since.load(Ordering::Acquire) {
            IDLE => None,
            since => {
                let since = self.base + Duration::from_nanos(since - 1);
                Some(now.saturating_duration_since(since))
            }
        }
    }
}

/// The task is inside work while this lives (see [`Beat::busy`]).
#[must_use = "the task counts as busy only while the guard lives"]
#[derive(Debug)]
pub struct Busy {
    beat: Option<Arc<Beat>>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(beat) = &self.beat {
            beat.busy_since.store(IDLE, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_period_is_for_this_process_only() {
        assert_eq!(
            parse_watchdog(Some("2000000"), None, 7),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            parse_watchdog(Some("2000000"), Some("7"), 7),
            Some(Duration::from_secs(2))
        );
        assert_eq!(parse_watchdog(Some("2000000"), Some("8"), 7), None);
        assert_eq!(parse_watchdog(Some("0"), None, 7), None);
        assert_eq!(parse_watchdog(Some("soon"), None, 7), None);
        assert_eq!(parse_watchdog(None, Some("7"), 7), None);
    }

    #[test]
    fn a_relative_address_is_refused_with_the_reason() {
        let e = Notifier::new("notify.sock").unwrap_err();
        assert!(e.to_string().contains("absolute path"), "{e}");
    }

    fn receive(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn messages_reach_a_path_socket_and_an_abstract_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        let mut systemd = Systemd::with(
            Some(Notifier::new(path.to_str().unwrap()).unwrap()),
            Some(Duration::from_secs(4)),
        );
        systemd.ready("up\nand running");
        assert_eq!(receive(&listener), "READY=1\nSTATUS=up and running");
        systemd.watchdog();
        assert_eq!(receive(&listener), "WATCHDOG=1");
        assert_eq!(systemd.feed_every(), Some(Duration::from_secs(2)));

        use std::os::linux::net::SocketAddrExt;
        let name = format!("owlet-sdnotify-test-{}", std::process::id());
        let abstract_listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let mut systemd = Systemd::with(Some(Notifier::new(&format!("@{name}")).unwrap()), None);
        systemd.stopping("draining");
        assert_eq!(receive(&abstract_listener), "STOPPING=1\nSTATUS=draining");
        // No watchdog period: no WATCHDOG=1.
        systemd.watchdog();
        systemd.stopping("again");
        assert_eq!(receive(&abstract_listener), "STOPPING=1\nSTATUS=again");
    }

    #[test]
    fn a_status_is_sent_once_and_not_too_often() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let mut systemd = Systemd::with(Some(Notifier::new(path.to_str().unwrap()).unwrap()), None);
        systemd.ready("a");
        assert_eq!(receive(&listener), "READY=1\nSTATUS=a");
        assert!(!systemd.status("a"), "an unchanged line was sent again");
        assert!(!systemd.status("b"), "a change within the gap was sent");
        systemd.last_status_at = Some(Instant::now() - STATUS_MIN_GAP);
        assert!(systemd.status("b"));
        assert_eq!(receive(&listener), "STATUS=b");
    }

    #[test]
    fn without_a_socket_nothing_happens() {
        let mut systemd = Systemd::with(None, Some(Duration::from_secs(1)));
        assert!(!systemd.active());
        systemd.ready("x");
        systemd.watchdog();
        systemd.stopping("y");
    }

    #[test]
    fn only_a_task_inside_work_for_too_long_is_stuck() {
        let liveness = Liveness::default();
        let writer = liveness.register("spool writer");
        let _uplink = liveness.register("uplink");
        let limit = Duration::from_secs(10);
        let later = Instant::now() + Duration::from_secs(60);
        assert!(liveness.stuck_at(later, limit).is_empty(), "idle is alive");
        {
            let _outer = writer.busy();
            {
                let _inner = writer.busy();
            }
            let stuck = liveness.stuck_at(later, limit);
            assert_eq!(stuck.len(), 1, "the inner guard cleared the outer one");
            assert_eq!(stuck[0].task, "spool writer");
            assert!(stuck[0].to_string().contains("spool writer"));
            assert!(liveness.stuck_at(Instant::now(), limit).is_empty());
        }
        assert!(liveness.stuck_at(later, limit).is_empty());
    }
}
