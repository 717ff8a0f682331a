//! owlet-capture: packet *metadata* from mirror ports.
//!
//! Pipeline (one [`engine::Engine`] per capture worker):
//! [`decode`] (zero-copy headers) → fragment attribution → [`flow`] table
//! (bounded, bidirectional) → [`app`] names (DNS, TLS SNI / ALPN, HTTP,
//! Stratum) → [`summary`] per interval (top talkers, protocol mix, DNS
//! names, scan and crypto-mining signatures with alerts). Crypto-mining
//! evidence is what the traffic says (DNS questions and answers per client
//! with [`pools`], SNI, HTTP Host, Stratum logins) and configured pool
//! addresses; pool names are never resolved by the sensor.
//!
//! Sources: [`pcap`] replays pcap / pcapng files through the same engine; a
//! live AF_PACKET source ([`live`]) feeds [`engine::Engine::process_as`]
//! the same way, one engine per worker thread, and merges their interval
//! aggregates with [`summary::IntervalAgg::merge`] (set `emit_partials`).
//! [`config`] is the agent's `[capture]` table: its defaults, its validation
//! and the one translation into a live capture's settings.
//!
//! What is kept of a packet: addresses, ports, protocol, VLAN, lengths, TCP
//! flags, ICMP type / code, timestamps, and the names listed above (DNS
//! query / answer names and types, SNI, ALPN, HTTP method / Host / path
//! without its query string, Stratum method names). No other payload byte
//! leaves [`decode`] / [`app`]. [`proto`] turns records, summaries and
//! alerts into `owlet.v1` messages.
#![deny(unsafe_code)]

pub mod app;
pub mod cli;
pub mod config;
pub mod decode;
pub mod engine;
pub mod filter;
pub mod flow;
pub mod ipfix;
pub mod live;
pub mod pcap;
pub mod pools;
pub mod proto;
pub mod summary;

pub use config::CaptureConfig;
pub use decode::{DecodeError, ErrorClass, LinkType};
pub use engine::{Config, EndReason, Engine, FlowRecord, Output, Stats};
pub use summary::{CaptureAlert, IntervalAgg, Summary, SummaryConfig};
