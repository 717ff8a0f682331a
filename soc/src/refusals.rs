//! Refused connections: counted by class, logged without flooding.
//!
//! A scanner or a misconfigured agent can open thousands of connections a
//! minute. Each refusal is counted (by class, since start); the first
//! [`BURST`] of each [`WINDOW`] are logged one by one ("connection
//! refused", with the address and reason), the rest are summed into one
//! line per window with their counts by class. The counters appear in
//! systemd's `STATUS=` and in `owlet-soc status` (via the receiver's status
//! file, [`crate::status_file`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::warn;

/// Refusals logged one by one per window.
pub const BURST: u32 = 10;
/// The window of the burst and of each summary line.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// No complete TLS handshake within the deadline.
    HandshakeTimeout,
    /// The handshake failed: no client certificate, an unknown CA, an
    /// expired or revoked certificate, a non-TLS client.
    Tls,
    /// A valid chain without a usable `owlet://TENANT/AGENT` identity.
    Identity,
}

impl Class {
    const ALL: [Class; 3] = [Class::HandshakeTimeout, Class::Tls, Class::Identity];

    pub fn name(self) -> &'static str {
        match self {
            Class::HandshakeTimeout => "handshake_timeout",
            Class::Tls => "tls",
            Class::Identity => "identity",
        }
    }
}

#[derive(Debug)]
struct Window {
    start: Instant,
    logged: u32,
    suppressed: BTreeMap<Class, u64>,
}

/// The receiver's refusal counters and log limiter.
#[derive(Debug)]
pub struct Refusals {
    counts: [AtomicU64; 3],
    window: Mutex<Window>,
}

impl Default for Refusals {
    fn default() -> Self {
        Self {
            counts: Default::default(),
            window: Mutex::new(Window {
                start: Instant::now(),
                logged: 0,
                suppressed: BTreeMap::new(),
            }),
        }
    }
}

impl Refusals {
    /// Counts a refusal; logs it unless this window's burst is spent.
    pub fn record(&self, addr: SocketAddr, class: Class, reason: &str) {
        self.counts[class as usize].fetch_add(1, Ordering::Relaxed);
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if w.start.elapsed() >= WINDOW {
            summarize(&mut w);
        }
        if w.logged < BURST {
            w.logged += 1;
            warn!(%addr, class = class.name(), %reason, "connection refused");
        } else {
            *w.suppressed.entry(class).or_default() += 1;
        }
    }

    /// Ends the window if it is over, logging what it suppressed; the
    /// receiver calls it every [`WINDOW`], so a summary never waits for the
    /// next refusal.
    pub fn tick(&self) {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if w.start.elapsed() >= WINDOW {
            summarize(&mut w);
        }
    }

    /// Refusals since start, by class.
    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        Class::ALL
            .iter()
            .map(|c| (c.name(), self.counts[*c as usize].load(Ordering::Relaxed)))
            .collect()
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

fn summarize(w: &mut Window) {
    let suppressed: u64 = w.suppressed.values().sum();
    if suppressed > 0 {
        let by_class: Vec<String> = w
            .suppressed
            .iter()
            .map(|(c, n)| format!("{} {n}", c.name()))
            .collect();
        warn!(
            suppressed,
            by_class = %by_class.join(", "),
            "{suppressed} more connections refused in the last {}s, not logged one by one",
            WINDOW.as_secs()
        );
    }
    w.start = Instant::now();
    w.logged = 0;
    w.suppressed.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_counted_in_full_and_logged_in_part() {
        let r = Refusals::default();
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for _ in 0..3000 {
            r.record(addr, Class::Tls, "no client certificate");
        }
        r.record(addr, Class::Identity, "no owlet:// URI");
        assert_eq!(r.total(), 3001);
        assert_eq!(r.counts()["tls"], 3000);
        let w = r.window.lock().unwrap();
        assert_eq!(w.logged, BURST);
        assert_eq!(w.suppressed.values().sum::<u64>(), 3001 - u64::from(BURST));
    }
}
