//! Hourly rollups of a tenant's events: the numbers periodic reports and the
//! portal show, kept up to date on ingest so that a month's report reads a
//! few thousand rows instead of every event.
//!
//! # Tables
//!
//! Documented for analysts, with example queries, in `SCHEMA.md`.
//!
//! Every table lives in the tenant's own database file, is keyed by
//! `hour_us` (the start of the UTC hour of the event's own time, in µs) and
//! its key columns (`TEXT NOT NULL`; a value an event lacks is the empty
//! string), in that order on disk except in the bounded tables, which are
//! ordered by their group first (`dimension, hour_us, key`), so a month of
//! one dimension is read without the others:
//!
//! | table | key | values |
//! |---|---|---|
//! | `rollup_hours` | — | `events` (stored events of that hour), `pruned` (1 once the hour is closed, see below) |
//! | `rollup_checks` | `agent, check_id` | `results`, `up`, `degraded`, `down` (each probe's raw `result`); `latency_n`, `latency_sum`, `latency_min`, `latency_max`, `latency_hist` (µs, answered probes only: `up` or `degraded`) |
//! | `rollup_talkers` | `dimension` (`src`, `dst`, `dst_port`), `key` | `bytes`, `packets`, `flows` of flow records |
//! | `rollup_names` | `kind` (`dns`, `sni`, `http`), `name` | `flows`, `bytes` of flow records naming it |
//! | `rollup_changes` | `agent, action` | `changes` (file changes: `created`, `modified`, …) |
//! | `rollup_host` | `agent` | `samples`; per metric `cpu`, `memory`, `disk`: `_n`, `_sum`, `_max`, `_hist` (percent) |
//! | `rollup_alerts` | `agent, alert_name, severity` | `alerts`, `raised` (new state not `up`), `cleared` (new state `up`) |
//!
//! Availability of a check is `up / results`. The `dst_port` key is
//! `PORT/tcp`, `PORT/udp`, `PORT/sctp`, or `proto N` for protocols without
//! ports (ICMP is `proto 1`).
//!
//! `*_hist` columns are histograms as JSON objects `{"bucket": count, …}`
//! (readable with SQLite's `json_each`), merged by [`Hist`]:
//! * latency ([`Scale::Log`]): bucket 0 holds values below 1 µs, bucket
//!   `b ≥ 1` holds `[2^((b-1)/8), 2^(b/8))`: 8 buckets per doubling, so a
//!   percentile read from it is within 9 % of the exact one;
//! * percent ([`Scale::Percent`]): bucket `b` holds `[b/2, (b+1)/2)`, so a
//!   percentile is within 0.5 percentage points.
//!
//! # Bounded cardinality
//!
//! `rollup_talkers` and `rollup_names` could grow with every address and
//! name seen (a scan touches thousands). An hour is *closed* once the SOC
//! stores a batch [`GRACE_US`] (one hour) after the hour ended; at that
//! moment each `(hour, dimension)` (and `(hour, kind)`) keeps its top
//! [`TOP_N`] keys by `bytes` (names: by `flows`; ties by key) and folds the
//! rest into one row whose key is [`OTHER`] (the empty string). Events that
//! arrive later for a closed hour add to their key's row if it has one, get
//! a row of their own while the dimension keeps fewer than [`TOP_N`] keys,
//! and go to the [`OTHER`] row otherwise. So:
//! * totals per hour and dimension stay exact (sum every row, `OTHER`
//!   included);
//! * every kept key's figures are exact;
//! * a closed hour holds at most `TOP_N + 1` rows per dimension; an open
//!   hour (at most the current one and the one before) is unbounded;
//! * a period's top list built from hourly top lists can miss a key that
//!   was just below the cut in every hour: the report says so.
//!
//! # Guarantees
//! * One piece of code for both backends: the per-batch aggregation
//!   ([`Rollup::add`]), the merge rules ([`acc`]), the write, OTHER and
//!   closing algorithm ([`store`]) and the statements ([`sql`]) serve the
//!   embedded SOC's SQLite (`sqlite`, below) and the scaled-out SOC's
//!   PostgreSQL (`owlet-soc-bus`'s rollup consumer) alike: the same
//!   batches give the same rows in both.
//! * Updated inside [`crate::TenantLog::append`]'s transaction, from the
//!   events it actually stores (duplicates dropped by exactly-once never
//!   count), so rollups and events commit or roll back together.
//! * Cheap per event: [`Rollup::add`] only accumulates in memory; [`Rollup::flush`]
//!   writes each `(table, hour, key)` touched by the call once: one upsert
//!   for tables without histograms, a read and a write for the others (and
//!   for late keys of closed hours, which may go to [`OTHER`]).
//! * A database upgraded from schema version 1 gets its rollups backfilled
//!   from the stored events ([`migrate`]), through the same code as ingest.
//!
//! # Retention
//! Retention drops day partitions of raw events but leaves rollups alone:
//! they are small (bounded as above: a few hundred rows per hour for a busy
//! tenant; the test workload takes about 27 KB an hour, ~240 MB a year), and they let a report of an old month still show its numbers
//! after its raw events expired. They go with the tenant's file (`tenant
//! delete`). Their rows count towards the file's size, so a capacity limit
//! sees them.
//!
//! Never: read another tenant's data, store anything not derived from the
//! stored events, or fail an append for a reason other than SQLite's.

pub mod acc;
pub mod hist;
pub mod sql;
mod sqlite;
pub mod store;

use std::collections::BTreeMap;

use crate::columns::Columns;
use acc::Acc;
pub use hist::{Hist, Scale};
pub use sqlite::{group_first, migrate};
pub use store::RollupStore;

/// One hour in µs.
pub const HOUR_US: i64 = 3_600_000_000;
/// How long after its end an hour stays open (its bounded tables unpruned).
pub const GRACE_US: i64 = HOUR_US;
/// Keys kept per closed hour and dimension in the bounded tables.
pub const TOP_N: usize = 100;
/// The key of the row holding what the kept keys do not.
pub const OTHER: &str = "";

/// Start of the UTC hour of `time_us`.
pub fn hour_of(time_us: i64) -> i64 {
    time_us.div_euclid(HOUR_US) * HOUR_US
}

/// How a value column combines what a batch brings with what is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Integer sum (`INTEGER NOT NULL`).
    Sum,
    /// Real sum (`REAL NOT NULL`).
    SumReal,
    /// Smallest (`REAL`, NULL when nothing was observed).
    Min,
    /// Largest (`REAL`, NULL when nothing was observed).
    Max,
    /// A histogram (`TEXT`, JSON).
    Hist(Scale),
}

/// One rollup table: its key and value columns.
#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    /// Key columns after `hour_us`.
    pub keys: &'static [&'static str],
    pub values: &'static [(&'static str, Merge)],
    /// Bounded tables: the value column keys are ranked by. Their keys are
    /// `(group, key)` and their values all [`Merge::Sum`].
    pub rank: Option<&'static str>,
}

use Merge::{Max, Min, Sum, SumReal};

/// The rollup tables (the index in this list is the table's id in [`Rollup`]).
pub const TABLES: [Table; 6] = [
    Table {
        name: "rollup_checks",
        keys: &["agent", "check_id"],
        values: &[
            ("results", Sum),
            ("up", Sum),
            ("degraded", Sum),
            ("down", Sum),
            ("latency_n", Sum),
            ("latency_sum", Sum),
            ("latency_min", Min),
            ("latency_max", Max),
            ("latency_hist", Merge::Hist(Scale::Log)),
        ],
        rank: None,
    },
    Table {
        name: "rollup_talkers",
        keys: &["dimension", "key"],
        values: &[("bytes", Sum), ("packets", Sum), ("flows", Sum)],
        rank: Some("bytes"),
    },
    Table {
        name: "rollup_names",
        keys: &["kind", "name"],
        values: &[("flows", Sum), ("bytes", Sum)],
        rank: Some("flows"),
    },
    Table {
        name: "rollup_changes",
        keys: &["agent", "action"],
        values: &[("changes", Sum)],
        rank: None,
    },
    Table {
        name: "rollup_host",
        keys: &["agent"],
        values: &[
            ("samples", Sum),
            ("cpu_n", Sum),
            ("cpu_sum", SumReal),
            ("cpu_max", Max),
            ("cpu_hist", Merge::Hist(Scale::Percent)),
            ("memory_n", Sum),
            ("memory_sum", SumReal),
            ("memory_max", Max),
            ("memory_hist", Merge::Hist(Scale::Percent)),
            ("disk_n", Sum),
            ("disk_sum", SumReal),
            ("disk_max", Max),
            ("disk_hist", Merge::Hist(Scale::Percent)),
        ],
        rank: None,
    },
    Table {
        name: "rollup_alerts",
        keys: &["agent", "alert_name", "severity"],
        values: &[("alerts", Sum), ("raised", Sum), ("cleared", Sum)],
        rank: None,
    },
];

const CHECKS: usize = 0;
const TALKERS: usize = 1;
const NAMES: usize = 2;
const CHANGES: usize = 3;
const HOST: usize = 4;
const ALERTS: usize = 5;

/// The rollup rows of one append, accumulated in memory and written once
/// per `(table, hour, key)` by [`Rollup::write_to`] (SQLite: [`Rollup::flush`]).
#[derive(Debug, Default)]
pub struct Rollup {
    /// In key order: a closed hour's new keys take its free rows in that
    /// order (the rest go to OTHER), so the same batches give the same
    /// rows in every run and in both backends.
    rows: BTreeMap<(usize, i64, Vec<String>), Vec<Acc>>,
    hours: BTreeMap<i64, i64>,
}

fn text(s: &Option<String>) -> String {
    s.clone().unwrap_or_default()
}

fn flag(b: bool) -> Option<f64> {
    Some(if b { 1.0 } else { 0.0 })
}

/// The `dst_port` dimension's key of a flow.
pub fn port_key(port: i64, protocol: i64) -> String {
    match protocol {
        6 => format!("{port}/tcp"),
        17 => format!("{port}/udp"),
        132 => format!("{port}/sctp"),
        p => format!("proto {p}"),
    }
}

impl Rollup {
    /// Accumulates one stored event of `agent`.
    pub fn add(&mut self, agent: &str, c: &Columns) {
        let hour = hour_of(c.time_us);
        *self.hours.entry(hour).or_default() += 1;
        // Allocated only for the kinds keyed by agent (not flows).
        let agent = || agent.to_string();
        match c.kind {
            "check_result" => {
                let result = c.result.unwrap_or("");
                let answered = matches!(result, "up" | "degraded");
                let latency = c.latency_us.filter(|_| answered).map(|l| l as f64);
                self.observe(
                    CHECKS,
                    hour,
                    vec![agent(), text(&c.check_id)],
                    &[
                        Some(1.0),
                        flag(result == "up"),
                        flag(result == "degraded"),
                        flag(result == "down"),
                        flag(answered),
                        latency,
                        latency,
                        latency,
                        latency,
                    ],
                );
            }
            "flow_record" => {
                let bytes = c.bytes.map(|b| b as f64);
                let packets = c.packets.map(|p| p as f64);
                let port = port_key(c.dst_port.unwrap_or(0), c.protocol.unwrap_or(0));
                for (dimension, key) in [
                    ("src", text(&c.src_addr)),
                    ("dst", text(&c.dst_addr)),
                    ("dst_port", port),
                ] {
                    self.observe(
                        TALKERS,
                        hour,
                        vec![dimension.to_string(), key],
                        &[bytes, packets, Some(1.0)],
                    );
                }
                for (kind, name) in [
                    ("dns", &c.dns_name),
                    ("sni", &c.tls_sni),
                    ("http", &c.http_host),
                ] {
                    if let Some(name) = name {
                        self.observe(
                            NAMES,
                            hour,
                            vec![kind.to_string(), name.clone()],
                            &[Some(1.0), bytes],
                        );
                    }
                }
            }
            "file_change" => {
                let action = c.file_action.unwrap_or("").to_string();
                self.observe(CHANGES, hour, vec![agent(), action], &[Some(1.0)]);
            }
            "host_metrics" => {
                let (cpu, mem, disk) = (c.cpu_percent, c.memory_percent, c.disk_percent);
                self.observe(
                    HOST,
                    hour,
                    vec![agent()],
                    &[
                        Some(1.0),
                        flag(cpu.is_some()),
                        cpu,
                        cpu,
                        cpu,
                        flag(mem.is_some()),
                        mem,
                        mem,
                        mem,
                        flag(disk.is_some()),
                        disk,
                        disk,
                        disk,
                    ],
                );
            }
            "alert" => {
                let cleared = c.state == Some("up");
                self.observe(
                    ALERTS,
                    hour,
                    vec![
                        agent(),
                        text(&c.alert_name),
                        c.severity.unwrap_or("").to_string(),
                    ],
                    &[Some(1.0), flag(!cleared), flag(cleared)],
                );
            }
            _ => {}
        }
    }

    fn observe(&mut self, table: usize, hour: i64, keys: Vec<String>, values: &[Option<f64>]) {
        let merges = TABLES[table].values;
        let accs = self
            .rows
            .entry((table, hour, keys))
            .or_insert_with(|| merges.iter().map(|(_, m)| Acc::new(*m)).collect());
        for ((acc, (_, m)), v) in accs.iter_mut().zip(merges).zip(values) {
            acc.observe(*m, *v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_buckets_hold_their_values_within_nine_percent() {
        for v in [1.0, 1.5, 2.0, 999.0, 1024.0, 1500.0, 123_456.0, 5e9] {
            let b = Scale::Log.bucket(v);
            let (low, high) = Scale::Log.bounds(b);
            assert!(
                low <= v && v < high,
                "{v} not in bucket {b} [{low}, {high})"
            );
            assert!(high / low < 1.091);
            let mid = Scale::Log.middle(b);
            assert!((mid - v).abs() / v < 0.091, "{v} → {mid}");
        }
        assert_eq!(Scale::Log.bucket(0.0), 0);
        assert_eq!(Scale::Percent.bucket(37.3), 74);
        assert_eq!(Scale::Percent.bucket(250.0), 200);
        assert_eq!(Scale::Percent.bounds(74), (37.0, 37.5));
    }

    #[test]
    fn a_histogram_round_trips_merges_and_reads_percentiles() {
        let mut h = Hist::default();
        for v in 1..=100 {
            h.add(Scale::Percent.bucket(v as f64));
        }
        let back = Hist::parse(&h.to_json());
        assert_eq!(back, h);
        assert_eq!(Hist::parse("garbage"), Hist::default());
        assert_eq!(Hist::parse("{}"), Hist::default());
        let p95 = h.percentile(Scale::Percent, 95.0, 1.0, 100.0).unwrap();
        assert!((p95 - 95.0).abs() <= 0.5, "{p95}");
        assert_eq!(h.percentile(Scale::Percent, 100.0, 1.0, 100.0), Some(100.0));
        let mut twice = h.clone();
        twice.merge(&h);
        assert_eq!(twice.count(), 200);
        assert_eq!(Hist::default().percentile(Scale::Log, 50.0, 0.0, 0.0), None);
    }

    #[test]
    fn ports_are_keyed_with_their_protocol() {
        assert_eq!(port_key(443, 6), "443/tcp");
        assert_eq!(port_key(53, 17), "53/udp");
        assert_eq!(port_key(0, 1), "proto 1");
    }
}
