//! IP fragments: a direct-mapped, bounded table of first fragments, so
//! later fragments join their first fragment's flow (its ports). A flood
//! of fragments only replaces entries (counted); the table never grows.

use super::*;

#[derive(Clone, Copy, Default)]
pub(super) struct FragEntry {
    src: [u8; 16],
    dst: [u8; 16],
    id: u32,
    proto: u8,
    ports: (u16, u16),
    ts: u64,
    live: bool,
}

impl Engine {
    pub(super) fn frag_slot(&self, p: &Packet<'_>, id: u32) -> usize {
        use std::hash::BuildHasher;
        (self.hasher.hash_one((p.src, p.dst, p.proto, id)) as usize) % FRAG_SLOTS
    }

    pub(super) fn fragment(&mut self, p: &Packet<'_>, f: decode::Fragment) -> (u16, u16) {
        self.stats.fragments += 1;
        self.agg.fragments[0] += 1;
        let slot = self.frag_slot(p, f.id);
        let e = &mut self.frags[slot];
        let same = e.live && e.src == p.src && e.dst == p.dst && e.proto == p.proto && e.id == f.id;
        if f.offset == 0 {
            if e.live && !same && self.now_ns.saturating_sub(e.ts) < FRAG_TTL_NS {
                self.stats.fragment_table_overwrites += 1;
            }
            *e = FragEntry {
                src: p.src,
                dst: p.dst,
                id: f.id,
                proto: p.proto,
                ports: (p.src_port, p.dst_port),
                ts: self.now_ns,
                live: true,
            };
            return (p.src_port, p.dst_port);
        }
        if same && self.now_ns.saturating_sub(e.ts) < FRAG_TTL_NS {
            let ports = e.ports;
            if !f.more {
                e.live = false;
            }
            self.stats.fragments_attributed += 1;
            self.agg.fragments[1] += 1;
            ports
        } else {
            self.stats.fragments_unattributed += 1;
            self.agg.fragments[2] += 1;
            (0, 0)
        }
    }
}
