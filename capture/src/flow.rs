//! The bounded bidirectional flow table.
//!
//! Layout: flows live in a slab (`Vec<Flow>`, about 140 bytes each) and a
//! `hashbrown::HashTable<u32>` maps a flow's key to its slab slot (5 bytes
//! per bucket), so the per-flow cost stays far under the 256-byte goal with
//! a million flows. The key is canonical (lower endpoint first) so both
//! directions of a conversation find the same flow; the flow remembers which
//! endpoint sent first (the initiator).
//!
//! Invariants:
//! - at most `max_flows` flows are live; a new flow beyond that evicts the
//!   least recently seen of a small random sample (approximate LRU, as
//!   Redis does), and the eviction is reported, never silent;
//! - the table does not allocate per packet: the slab and index grow (by
//!   doubling) only when the number of live flows reaches a new high, and
//!   reuse freed slots; only a flow that yields application names gets a
//!   boxed [`AppMeta`].

use hashbrown::HashTable;
use serde::Serialize;

/// Canonical flow key: `a` is the lower (address, port) endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Key {
    /// Lower endpoint address (IPv4-mapped for IPv4).
    pub a: [u8; 16],
    /// Higher endpoint address.
    pub b: [u8; 16],
    /// Port of `a`.
    pub a_port: u16,
    /// Port of `b`.
    pub b_port: u16,
    /// Outermost VLAN id.
    pub vlan: u16,
    /// IP protocol.
    pub proto: u8,
}

impl Key {
    /// Build the canonical key for a packet from `src:sport` to `dst:dport`;
    /// the bool is true when the packet was sent by endpoint `a`.
    #[inline(always)]
    pub fn new(
        vlan: u16,
        proto: u8,
        src: [u8; 16],
        sport: u16,
        dst: [u8; 16],
        dport: u16,
    ) -> (Key, bool) {
        if (src, sport) <= (dst, dport) {
            (
                Key {
                    a: src,
                    b: dst,
                    a_port: sport,
                    b_port: dport,
                    vlan,
                    proto,
                },
                true,
            )
        } else {
            (
                Key {
                    a: dst,
                    b: src,
                    a_port: dport,
                    b_port: sport,
                    vlan,
                    proto,
                },
                false,
            )
        }
    }
}

/// Flow state bits.
pub mod state {
    /// Slot holds a live flow.
    pub const LIVE: u8 = 0x01;
    /// `a` sent a FIN.
    pub const FIN_A: u8 = 0x02;
    /// `b` sent a FIN.
    pub const FIN_B: u8 = 0x04;
    /// Someone sent a RST.
    pub const RST: u8 = 0x08;
    /// The initiator's first packet was a SYN (initiator is certain).
    pub const SYN_SEEN: u8 = 0x10;
    /// Created during the current summary interval (scan accounting pending).
    pub const NEW: u8 = 0x20;
    /// Application parsing is finished for this flow.
    pub const APP_DONE: u8 = 0x40;
}

/// One flow. Index 0 of the per-direction arrays is "sent by `a`".
#[derive(Debug, Default)]
pub struct Flow {
    /// The canonical key.
    pub key: Key,
    /// Packets per direction in the current slice.
    pub pkts: [u32; 2],
    /// Frame bytes (wire length) per direction.
    pub frame_bytes: [u64; 2],
    /// IP bytes per direction.
    pub ip_bytes: [u64; 2],
    /// Capture time of the slice's first packet, ns since the epoch.
    pub first_ns: u64,
    /// Capture time of the last packet, ns.
    pub last_ns: u64,
    /// Packets already counted into the interval summary.
    pub sum_pkts: [u32; 2],
    /// Frame bytes already counted into the interval summary.
    pub sum_bytes: [u64; 2],
    /// TCP flags union per direction.
    pub flags: [u8; 2],
    /// 0 when `a` initiated, 1 when `b` did.
    pub initiator: u8,
    /// [`state`] bits.
    pub state: u8,
    /// First ICMP type / code seen.
    pub icmp: [u8; 2],
    /// Initiator payload segments looked at by the application parsers.
    pub app_tries: u8,
    /// Application names, when any were found.
    pub app: Option<Box<AppMeta>>,
}

impl Flow {
    /// True when the initiator is endpoint `a`.
    pub fn a_initiated(&self) -> bool {
        self.initiator == 0
    }
}

/// Result of [`FlowTable::lookup_or_insert`].
pub enum Slot {
    /// An existing flow at this slab index.
    Found(u32),
    /// A new flow was created at this index.
    Created(u32),
}

/// The bounded flow table.
pub struct FlowTable {
    index: HashTable<u32>,
    slab: Vec<Flow>,
    free: Vec<u32>,
    hasher: foldhash::fast::FixedState,
    max: usize,
    rng: u64,
}

impl FlowTable {
    /// A table for at most `max` live flows (at least 1).
    pub fn new(max: usize) -> FlowTable {
        let max = max.max(1);
        FlowTable {
            // Both grow with use: a table sized for the maximum up front
            // spreads a few flows over megabytes and misses the caches.
            index: HashTable::new(),
            slab: Vec::new(),
            free: Vec::new(),
            hasher: foldhash::fast::FixedState::with_seed(0x6f776c6574),
            max,
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    #[inline(always)]
    fn hash(&self, k: &Key) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(k)
    }

    /// Live flows.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when no flow is live.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The configured maximum.
    pub fn capacity(&self) -> usize {
        self.max
    }

    /// True when a new flow would need an eviction first.
    pub fn is_full(&self) -> bool {
        self.index.len() >= self.max
    }

    /// The flow at a slab index.
    #[inline(always)]
    pub fn get_mut(&mut self, i: u32) -> &mut Flow {
        &mut self.slab[i as usize]
    }

    /// The flow at a slab index.
    pub fn get(&self, i: u32) -> &Flow {
        &self.slab[i as usize]
    }

    /// Slab indices that hold live flows (for sweeps).
    pub fn slab_len(&self) -> u32 {
        self.slab.len() as u32
    }

    /// Find the flow for `key`, or create it. The caller must make room
    /// first ([`FlowTable::is_full`] / [`FlowTable::eviction_candidate`]).
    #[inline(always)]
    pub fn lookup_or_insert(&mut self, key: &Key) -> Slot {
        let h = self.hash(key);
        let slab = &self.slab;
        if let Some(&i) = self.index.find(h, |&i| slab[i as usize].key == *key) {
            return Slot::Found(i);
        }
        let flow = Flow {
            key: *key,
            state: state::LIVE,
            ..Flow::default()
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = flow;
                i
            }
            None => {
                self.slab.push(flow);
                (self.slab.len() - 1) as u32
            }
        };
        let slab = &self.slab;
        let hasher = &self.hasher;
        self.index.insert_unique(h, i, |&j| {
            use std::hash::BuildHasher;
            hasher.hash_one(slab[j as usize].key)
        });
        Slot::Created(i)
    }

    /// Look a key up without creating it.
    pub fn find(&self, key: &Key) -> Option<u32> {
        let h = self.hash(key);
        self.index
            .find(h, |&i| self.slab[i as usize].key == *key)
            .copied()
    }

    /// Remove the flow at `i`; returns it (its slot is reused later).
    pub fn remove(&mut self, i: u32) -> Flow {
        let key = self.slab[i as usize].key;
        let h = self.hash(&key);
        if let Ok(e) = self.index.find_entry(h, |&j| j == i) {
            e.remove();
        }
        self.free.push(i);
        std::mem::take(&mut self.slab[i as usize])
    }

    /// The least recently seen of 8 sampled live flows.
    pub fn eviction_candidate(&mut self) -> Option<u32> {
        let n = self.slab.len() as u64;
        if n == 0 || self.index.is_empty() {
            return None;
        }
        let mut best: Option<(u64, u32)> = None;
        let mut probes = 0;
        while probes < 64 {
            // xorshift64: cheap, deterministic sampling
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let i = (self.rng % n) as u32;
            probes += 1;
            let f = &self.slab[i as usize];
            if f.state & state::LIVE == 0 {
                continue;
            }
            if best.is_none_or(|(t, _)| f.last_ns < t) {
                best = Some((f.last_ns, i));
            }
            if probes >= 8 && best.is_some() {
                break;
            }
        }
        // A nearly empty slab full of free slots: fall back to a scan.
        best.map(|(_, i)| i).or_else(|| {
            (0..self.slab.len() as u32).find(|&i| self.slab[i as usize].state & state::LIVE != 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(n: u32) -> Key {
        let mut a = [0u8; 16];
        a[12..].copy_from_slice(&n.to_be_bytes());
        Key::new(0, 6, a, 1000, [9; 16], 80).0
    }

    #[test]
    fn both_directions_share_a_key() {
        let (k1, from_a1) = Key::new(1, 17, [1; 16], 53, [2; 16], 9999);
        let (k2, from_a2) = Key::new(1, 17, [2; 16], 9999, [1; 16], 53);
        assert_eq!(k1, k2);
        assert_ne!(from_a1, from_a2);
    }

    #[test]
    fn insert_find_remove_reuses_slots() {
        let mut t = FlowTable::new(4);
        let Slot::Created(i) = t.lookup_or_insert(&k(1)) else {
            panic!()
        };
        assert!(matches!(t.lookup_or_insert(&k(1)), Slot::Found(j) if j == i));
        for n in 2..=4 {
            t.lookup_or_insert(&k(n));
        }
        assert!(t.is_full());
        let f = t.remove(i);
        assert_eq!(f.key, k(1));
        assert_eq!(t.find(&k(1)), None);
        assert!(matches!(t.lookup_or_insert(&k(5)), Slot::Created(j) if j == i));
        assert_eq!(t.slab_len(), 4);
        for n in 2..=5 {
            assert!(t.find(&k(n)).is_some(), "flow {n} lost");
        }
    }

    #[test]
    fn eviction_prefers_old_flows() {
        let mut t = FlowTable::new(64);
        for n in 0..64 {
            let Slot::Created(i) = t.lookup_or_insert(&k(n)) else {
                panic!()
            };
            t.get_mut(i).last_ns = if n == 0 { 0 } else { 1_000 + n as u64 };
        }
        // The sample is 8 of 64, so the oldest is not always picked, but the
        // candidate is always live and older than the newest.
        let c = t.eviction_candidate().unwrap();
        assert!(t.get(c).state & state::LIVE != 0);
        assert!(t.get(c).last_ns < 1_063);
    }
}

/// Application names found in a flow. Boxed in the flow only when present.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AppMeta {
    /// First DNS query name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_query: Option<String>,
    /// Its query type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_qtype: Option<u16>,
    /// Response code of the first response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_rcode: Option<u8>,
    /// Answers as "TYPE value" (A / AAAA address, CNAME target) or "TYPE name".
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_answers: Vec<String>,
    /// TLS server name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_sni: Option<String>,
    /// TLS ALPN protocols offered.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tls_alpn: Vec<String>,
    /// HTTP method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_method: Option<String>,
    /// HTTP Host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_host: Option<String>,
    /// HTTP path (no query string, truncated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_path: Option<String>,
    /// Stratum methods seen.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stratum_methods: Vec<&'static str>,
    #[serde(skip)]
    pub(crate) buf: Vec<u8>,
    #[serde(skip)]
    pub(crate) next_seq: u32,
}
