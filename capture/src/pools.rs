//! Which addresses a client got from DNS answers for a mining-pool name, for
//! how long: the memory behind the `dns_answer` crypto-mining evidence.
//!
//! A pool name is never resolved by the sensor. What the sensor itself
//! would get for a name says nothing about a flow: pools sit behind shared
//! addresses (a CDN, a cloud load balancer), and matching every flow to
//! such an address would call every customer of that CDN a miner. Instead
//! the engine records what the traffic shows: a DNS response to *client*
//! whose question (or an answer's owner name, for a CNAME chain) is a pool
//! name binds each A / AAAA address in it to that client, for the answer's
//! TTL kept within [`WINDOW_MIN`]..=[`WINDOW_MAX`]. A flow from that client
//! to that address that starts inside the window is evidence; the same
//! address for another client, or later, is not.
//!
//! Guarantees:
//! * bounded: at most `max` bindings; a new one beyond that evicts the
//!   binding that expires first, and every eviction is counted (it is
//!   returned to the engine, which counts it in its stats);
//! * every binding expires: it is forgotten `keep` after its window closed
//!   (`keep` covers the engine's deferred look-up, at most one summary
//!   interval after a flow started), on the capture clock;
//! * shared: one table serves every worker engine of a capture (the kernel
//!   spreads a client's DNS flow and its pool flow over different
//!   workers); an empty table costs a look-up one atomic load, no lock;
//! * a poisoned lock (a worker panicked while holding it) is taken over,
//!   never propagated: the table is only ever left consistent between
//!   statements that cannot panic.
//!
//! It keeps addresses and names, never payload bytes.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Shortest time a binding holds, whatever the TTL (0 s answers are common:
/// a client connects at once, and dnsmasq's local answers say 0).
pub const WINDOW_MIN: Duration = Duration::from_secs(60);
/// Longest time a binding holds, whatever the TTL: a day-long TTL on a
/// shared address must not make a day of that client's traffic suspect.
pub const WINDOW_MAX: Duration = Duration::from_secs(3600);
/// Default bound on bindings (about 200 bytes each).
pub const DEFAULT_MAX: usize = 16_384;

type Key = ([u8; 16], [u8; 16]);

#[derive(Debug, Clone)]
struct Binding {
    name: String,
    seen_ns: u64,
    expires_ns: u64,
    seq: u64,
}

#[derive(Debug, Default)]
struct Table {
    map: HashMap<Key, Binding>,
    /// (expires, seq) → key: expiry in order, and the eviction victim first.
    by_expiry: BTreeMap<(u64, u64), Key>,
    seq: u64,
}

/// What [`DnsPools::learn`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Learned {
    /// Bindings made or renewed.
    pub bound: u64,
    /// Live bindings pushed out because the table was full.
    pub evicted: u64,
}

/// The bounded, expiring (client, address) → pool name table.
#[derive(Debug)]
pub struct DnsPools {
    table: Mutex<Table>,
    len: AtomicUsize,
    max: usize,
    keep_ns: u64,
}

fn ns(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

impl DnsPools {
    /// A table of at most `max` bindings (at least 1), each kept `keep`
    /// after its window closed.
    pub fn new(max: usize, keep: Duration) -> DnsPools {
        DnsPools {
            table: Mutex::new(Table::default()),
            len: AtomicUsize::new(0),
            max: max.max(1),
            keep_ns: ns(keep),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bindings held now.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// True when nothing is bound.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `client` got `addrs` (each with its TTL in seconds) in an answer for
    /// pool name `name` at `seen_ns`.
    pub fn learn(
        &self,
        client: [u8; 16],
        addrs: &[([u8; 16], u32)],
        name: &str,
        seen_ns: u64,
    ) -> Learned {
        let mut out = Learned::default();
        if addrs.is_empty() {
            return out;
        }
        let mut guard = self.lock();
        let t = &mut *guard;
        for &(addr, ttl_s) in addrs {
            let window = Duration::from_secs(ttl_s.into()).clamp(WINDOW_MIN, WINDOW_MAX);
            let expires_ns = seen_ns.saturating_add(ns(window));
            let key = (client, addr);
            if let Some(old) = t.map.get(&key) {
                let old_index = (old.expires_ns, old.seq);
                t.by_expiry.remove(&old_index);
            } else if t.map.len() >= self.max
                && let Some((_, victim)) = t.by_expiry.pop_first()
            {
                t.map.remove(&victim);
                out.evicted += 1;
            }
            t.seq += 1;
            let seq = t.seq;
            t.map.insert(
                key,
                Binding {
                    name: name.to_string(),
                    seen_ns,
                    expires_ns,
                    seq,
                },
            );
            t.by_expiry.insert((expires_ns, seq), key);
            out.bound += 1;
        }
        self.len.store(t.map.len(), Ordering::Relaxed);
        out
    }

    /// The pool name `client` had resolved to `addr` when a flow between
    /// them started at `start_ns`: the answer came first and its window
    /// was still open.
    pub fn lookup(&self, client: [u8; 16], addr: [u8; 16], start_ns: u64) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let t = self.lock();
        let b = t.map.get(&(client, addr))?;
        (b.seen_ns <= start_ns && start_ns <= b.expires_ns).then(|| b.name.clone())
    }

    /// Forget bindings whose window closed more than `keep` before `now_ns`;
    /// returns how many.
    pub fn purge(&self, now_ns: u64) -> u64 {
        if self.is_empty() {
            return 0;
        }
        let cutoff = now_ns.saturating_sub(self.keep_ns);
        let mut guard = self.lock();
        let t = &mut *guard;
        let mut gone = 0;
        while let Some(entry) = t.by_expiry.first_entry() {
            if entry.key().0 >= cutoff {
                break;
            }
            let key = entry.remove();
            t.map.remove(&key);
            gone += 1;
        }
        self.len.store(t.map.len(), Ordering::Relaxed);
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn a(last: u8) -> [u8; 16] {
        let mut x = [0u8; 16];
        x[10] = 0xFF;
        x[11] = 0xFF;
        x[12..].copy_from_slice(&[192, 0, 2, last]);
        x
    }

    #[test]
    fn a_binding_is_per_client_and_holds_for_its_window() {
        let t = DnsPools::new(16, Duration::from_secs(60));
        let l = t.learn(a(1), &[(a(7), 300)], "xmr.pool.example", 100 * S);
        assert_eq!(
            l,
            Learned {
                bound: 1,
                evicted: 0
            }
        );
        assert_eq!(
            t.lookup(a(1), a(7), 101 * S).as_deref(),
            Some("xmr.pool.example")
        );
        assert_eq!(t.lookup(a(2), a(7), 101 * S), None, "another client");
        assert_eq!(t.lookup(a(1), a(8), 101 * S), None, "another address");
        assert_eq!(t.lookup(a(1), a(7), 99 * S), None, "before the answer");
        assert_eq!(t.lookup(a(1), a(7), 401 * S), None, "after the TTL");
        // TTL 0 holds for the minimum window, a day for the maximum.
        t.learn(a(3), &[(a(7), 0), (a(8), 86_400)], "p", 0);
        assert!(t.lookup(a(3), a(7), 59 * S).is_some());
        assert!(t.lookup(a(3), a(7), 61 * S).is_none());
        assert!(t.lookup(a(3), a(8), 3599 * S).is_some());
        assert!(t.lookup(a(3), a(8), 3601 * S).is_none());
    }

    #[test]
    fn full_table_evicts_the_first_to_expire_and_counts_it() {
        let t = DnsPools::new(3, Duration::ZERO);
        for i in 0..3u8 {
            // Later answers with shorter TTLs expire first.
            let ttl = 1000 - u32::from(i) * 100;
            assert_eq!(t.learn(a(1), &[(a(10 + i), ttl)], "p", 0).evicted, 0);
        }
        let l = t.learn(a(1), &[(a(20), 1000), (a(21), 1000)], "p", 0);
        assert_eq!(
            l,
            Learned {
                bound: 2,
                evicted: 2
            }
        );
        assert_eq!(t.len(), 3);
        assert!(t.lookup(a(1), a(12), 1).is_none(), "expired first: evicted");
        assert!(t.lookup(a(1), a(11), 1).is_none());
        assert!(t.lookup(a(1), a(10), 1).is_some());
        // Renewing a binding does not evict.
        assert_eq!(t.learn(a(1), &[(a(10), 1000)], "p", 5).evicted, 0);
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn bindings_are_forgotten_keep_after_their_window() {
        let t = DnsPools::new(16, Duration::from_secs(60));
        t.learn(a(1), &[(a(7), 100), (a(8), 1000)], "p", 0);
        assert_eq!(
            t.purge(150 * S),
            0,
            "window closed, still kept for late look-ups"
        );
        assert_eq!(t.purge(161 * S), 1);
        assert_eq!(t.len(), 1);
        assert_eq!(t.purge(2000 * S), 1);
        assert!(t.is_empty());
        assert_eq!(t.lookup(a(1), a(8), 10 * S), None);
    }
}
