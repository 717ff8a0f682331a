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

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use prost::Message;
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, Transaction, params, params_from_iter};

use crate::columns::Columns;

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

/// How a histogram column buckets its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// µs, 8 buckets per doubling.
    Log,
    /// 0–100 %, half-point buckets.
    Percent,
}

impl Scale {
    /// The bucket of `v`.
    pub fn bucket(self, v: f64) -> u16 {
        match self {
            Scale::Log if v < 1.0 || v.is_nan() => 0,
            Scale::Log => (1.0 + (v.log2() * 8.0).floor()).min(600.0) as u16,
            // `as` maps NaN to 0.
            Scale::Percent => (v * 2.0).floor().clamp(0.0, 200.0) as u16,
        }
    }

    /// The values bucket `b` holds: `[low, high)`.
    pub fn bounds(self, b: u16) -> (f64, f64) {
        let b = f64::from(b);
        match self {
            Scale::Log if b == 0.0 => (0.0, 1.0),
            Scale::Log => (((b - 1.0) / 8.0).exp2(), (b / 8.0).exp2()),
            Scale::Percent => (b / 2.0, (b + 1.0) / 2.0),
        }
    }

    /// The value a percentile falling in bucket `b` is reported as.
    pub fn middle(self, b: u16) -> f64 {
        let (low, high) = self.bounds(b);
        match self {
            Scale::Log if b > 0 => (low * high).sqrt(),
            _ => (low + high) / 2.0,
        }
    }
}

/// A histogram: counts per bucket of a [`Scale`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hist(pub BTreeMap<u16, u64>);

impl Hist {
    pub fn add(&mut self, bucket: u16) {
        *self.0.entry(bucket).or_default() += 1;
    }

    pub fn merge(&mut self, other: &Hist) {
        for (b, n) in &other.0 {
            *self.0.entry(*b).or_default() += n;
        }
    }

    pub fn count(&self) -> u64 {
        self.0.values().sum()
    }

    /// Parses a stored `{"bucket": count}` object; anything else is an
    /// empty histogram (the column is derived, never evidence).
    pub fn parse(text: &str) -> Hist {
        let mut h = Hist::default();
        let inner = text.trim().trim_start_matches('{').trim_end_matches('}');
        for pair in inner.split(',').filter(|p| !p.trim().is_empty()) {
            let Some((b, n)) = pair.split_once(':') else {
                return Hist::default();
            };
            let (Ok(b), Ok(n)) = (
                b.trim().trim_matches('"').parse::<u16>(),
                n.trim().parse::<u64>(),
            ) else {
                return Hist::default();
            };
            *h.0.entry(b).or_default() += n;
        }
        h
    }

    /// The stored form: `{"12":3,"13":5}`.
    pub fn to_json(&self) -> String {
        let pairs: Vec<String> = self.0.iter().map(|(b, n)| format!("\"{b}\":{n}")).collect();
        format!("{{{}}}", pairs.join(","))
    }

    /// The `p`-th percentile (0–100, nearest rank) as the middle of its
    /// bucket, clamped to the exact `[min, max]` observed.
    pub fn percentile(&self, scale: Scale, p: f64, min: f64, max: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((p / 100.0 * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (b, c) in &self.0 {
            seen += c;
            if seen >= rank {
                return Some(scale.middle(*b).clamp(min.min(max), max));
            }
        }
        Some(max)
    }
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

/// Creates the rollup tables (schema step 1 → 2) and backfills them from
/// the events already stored.
pub fn migrate(tx: &Transaction) -> rusqlite::Result<()> {
    let mut ddl = String::from(
        "CREATE TABLE rollup_hours (
    hour_us INTEGER PRIMARY KEY,
    events  INTEGER NOT NULL DEFAULT 0,
    pruned  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX rollup_hours_open ON rollup_hours(hour_us) WHERE pruned = 0;
",
    );
    for t in &TABLES {
        ddl.push_str(&create_table(t, t.name));
    }
    tx.execute_batch(&ddl)?;
    backfill(tx)
}

/// The `CREATE TABLE` of `t`, named `name`. Its primary key is the table's
/// order on disk: `hour_us` first, except in the bounded tables, whose
/// readers ask for one group (`dimension = 'src'`) over a range of hours
/// and so read the group's rows alone, not every group's.
fn create_table(t: &Table, name: &str) -> String {
    let mut columns = vec!["    hour_us INTEGER NOT NULL".to_string()];
    columns.extend(t.keys.iter().map(|k| format!("    {k} TEXT NOT NULL")));
    columns.extend(t.values.iter().map(|(v, m)| {
        let ty = match m {
            Sum => "INTEGER NOT NULL DEFAULT 0",
            SumReal => "REAL NOT NULL DEFAULT 0",
            Min | Max => "REAL",
            Merge::Hist(_) => "TEXT NOT NULL DEFAULT '{}'",
        };
        format!("    {v} {ty}")
    }));
    let key = match (t.rank, t.keys) {
        (Some(_), [group, key]) => format!("{group}, hour_us, {key}"),
        _ => format!("hour_us, {}", t.keys.join(", ")),
    };
    columns.push(format!("    PRIMARY KEY ({key})"));
    format!(
        "CREATE TABLE {name} (\n{}\n) WITHOUT ROWID;\n",
        columns.join(",\n")
    )
}

/// Schema step 4 → 5: the bounded tables of a file made before step 5
/// were keyed `hour_us` first; they are copied into their current order
/// (a month's top list read 3 groups' rows for one).
pub fn group_first(tx: &Transaction) -> rusqlite::Result<()> {
    for t in TABLES.iter().filter(|t| t.rank.is_some()) {
        let old = format!("{}_before_v5", t.name);
        tx.execute_batch(&format!(
            "ALTER TABLE {name} RENAME TO {old};
             {create}
             INSERT INTO {name} SELECT * FROM {old};
             DROP TABLE {old};",
            name = t.name,
            create = create_table(t, t.name),
        ))?;
    }
    Ok(())
}

/// Rolls up every event already stored (a database from schema version 1),
/// partition by partition, flushing every 50,000 events to bound memory.
fn backfill(tx: &Transaction) -> rusqlite::Result<()> {
    let tables: Vec<String> = tx
        .prepare("SELECT name FROM partitions ORDER BY day")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let now = crate::time::micros(std::time::SystemTime::now());
    let mut rollup = Rollup::default();
    let mut pending = 0;
    for table in tables {
        let mut stmt = tx.prepare(&format!("SELECT agent, body FROM {table} ORDER BY id"))?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let agent: String = row.get(0)?;
            let body: Vec<u8> = row.get(1)?;
            // A body that does not decode was never written so; its typed
            // columns were stored from the same bytes, so skip it here too.
            let Ok(event) = owlet_proto::v1::Event::decode(body.as_slice()) else {
                continue;
            };
            rollup.add(&agent, &Columns::of(&event));
            pending += 1;
            if pending == 50_000 {
                std::mem::take(&mut rollup).flush(tx, now)?;
                pending = 0;
            }
        }
    }
    rollup.flush(tx, now)
}

/// One value being accumulated.
#[derive(Debug, Clone)]
enum Acc {
    Int(i64),
    Real(f64),
    Min(Option<f64>),
    Max(Option<f64>),
    Hist(Hist),
}

impl Acc {
    fn new(m: Merge) -> Self {
        match m {
            Sum => Acc::Int(0),
            SumReal => Acc::Real(0.0),
            Min => Acc::Min(None),
            Max => Acc::Max(None),
            Merge::Hist(_) => Acc::Hist(Hist::default()),
        }
    }

    /// Adds one observation (`None`: nothing to add).
    fn observe(&mut self, m: Merge, v: Option<f64>) {
        let Some(v) = v else { return };
        match (self, m) {
            (Acc::Int(s), _) => *s = s.saturating_add(v as i64),
            (Acc::Real(s), _) => *s += v,
            (Acc::Min(s), _) => *s = Some(s.map_or(v, |s| s.min(v))),
            (Acc::Max(s), _) => *s = Some(s.map_or(v, |s| s.max(v))),
            (Acc::Hist(h), Merge::Hist(scale)) => h.add(scale.bucket(v)),
            (Acc::Hist(_), _) => {}
        }
    }

    /// Adds a stored value.
    fn merge_stored(&mut self, v: &Value) {
        let real = match v {
            Value::Integer(i) => Some(*i as f64),
            Value::Real(r) => Some(*r),
            _ => None,
        };
        match self {
            Acc::Int(s) => {
                if let Value::Integer(i) = v {
                    *s = s.saturating_add(*i);
                }
            }
            Acc::Real(s) => *s += real.unwrap_or(0.0),
            Acc::Min(s) => {
                if let Some(r) = real {
                    *s = Some(s.map_or(r, |s| s.min(r)));
                }
            }
            Acc::Max(s) => {
                if let Some(r) = real {
                    *s = Some(s.map_or(r, |s| s.max(r)));
                }
            }
            Acc::Hist(h) => {
                if let Value::Text(t) = v {
                    h.merge(&Hist::parse(t));
                }
            }
        }
    }

    fn value(&self) -> Value {
        match self {
            Acc::Int(i) => Value::Integer(*i),
            Acc::Real(r) => Value::Real(*r),
            Acc::Min(o) | Acc::Max(o) => o.map_or(Value::Null, Value::Real),
            Acc::Hist(h) => Value::Text(h.to_json()),
        }
    }
}

/// The rollup rows of one append, accumulated in memory and written once
/// per `(table, hour, key)` by [`Rollup::flush`].
#[derive(Debug, Default)]
pub struct Rollup {
    rows: HashMap<(usize, i64, Vec<String>), Vec<Acc>>,
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

    /// Writes what was accumulated into the rollup tables, then closes the
    /// hours that ended more than [`GRACE_US`] before `received_us` (the
    /// arrival time of the batch).
    pub fn flush(self, tx: &Transaction, received_us: i64) -> rusqlite::Result<()> {
        if !self.hours.is_empty() {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO rollup_hours (hour_us, events) VALUES (?1, ?2)
                 ON CONFLICT (hour_us) DO UPDATE SET events = events + excluded.events",
            )?;
            for (hour, n) in &self.hours {
                stmt.execute(params![hour, n])?;
            }
        }
        let mut pruned: HashMap<i64, bool> = HashMap::new();
        for ((table, hour, keys), accs) in self.rows {
            let closed = if TABLES[table].rank.is_some() {
                match pruned.get(&hour) {
                    Some(p) => *p,
                    None => {
                        let p = is_pruned(tx, hour)?;
                        pruned.insert(hour, p);
                        p
                    }
                }
            } else {
                false
            };
            write(tx, table, hour, keys, accs, closed)?;
        }
        close_hours(tx, received_us)
    }
}

fn is_pruned(tx: &Transaction, hour: i64) -> rusqlite::Result<bool> {
    Ok(tx
        .prepare_cached("SELECT pruned FROM rollup_hours WHERE hour_us = ?1")?
        .query_row(params![hour], |r| r.get::<_, i64>(0))
        .optional()?
        .is_some_and(|p| p != 0))
}

/// The SQL of each table.
struct Sql {
    /// Selects the values of one key.
    select: String,
    /// Writes one whole row.
    replace: String,
    /// Adds to a row in one statement, for tables without histograms.
    upsert: Option<String>,
}

static SQL: LazyLock<Vec<Sql>> = LazyLock::new(|| {
    TABLES
        .iter()
        .map(|t| {
            let values: Vec<&str> = t.values.iter().map(|(v, _)| *v).collect();
            let key_terms: Vec<String> = t
                .keys
                .iter()
                .enumerate()
                .map(|(i, k)| format!("{k} = ?{}", i + 2))
                .collect();
            let select = format!(
                "SELECT {} FROM {} WHERE hour_us = ?1 AND {}",
                values.join(", "),
                t.name,
                key_terms.join(" AND ")
            );
            let n = 1 + t.keys.len() + values.len();
            let insert = format!(
                "INTO {} (hour_us, {}, {}) VALUES ({})",
                t.name,
                t.keys.join(", "),
                values.join(", "),
                vec!["?"; n].join(", ")
            );
            let set: Option<Vec<String>> = t
                .values
                .iter()
                .map(|(v, m)| match m {
                    Sum | SumReal => Some(format!("{v} = {v} + excluded.{v}")),
                    Min | Max => {
                        let f = if *m == Min { "MIN" } else { "MAX" };
                        Some(format!(
                            "{v} = {f}(COALESCE({v}, excluded.{v}), COALESCE(excluded.{v}, {v}))"
                        ))
                    }
                    Merge::Hist(_) => None,
                })
                .collect();
            Sql {
                select,
                replace: format!("INSERT OR REPLACE {insert}"),
                upsert: set.map(|set| {
                    format!(
                        "INSERT {insert} ON CONFLICT (hour_us, {}) DO UPDATE SET {}",
                        t.keys.join(", "),
                        set.join(", ")
                    )
                }),
            }
        })
        .collect()
});

/// Merges `accs` into the stored row of `(hour, keys)` of `table`. In a
/// closed hour of a bounded table, a key without a row goes to [`OTHER`].
fn write(
    tx: &Transaction,
    t: usize,
    hour: i64,
    mut keys: Vec<String>,
    mut accs: Vec<Acc>,
    closed: bool,
) -> rusqlite::Result<()> {
    let table = &TABLES[t];
    let sql = &SQL[t];
    let head = || std::iter::once(Value::Integer(hour));
    let row = |keys: Vec<String>, accs: &[Acc]| {
        params_from_iter(
            head()
                .chain(keys.into_iter().map(Value::Text))
                .chain(accs.iter().map(Acc::value))
                .collect::<Vec<_>>(),
        )
    };
    // The common case, one statement: an open hour (or a table without a
    // bound) and values SQL can add up.
    if let Some(upsert) = sql.upsert.as_ref().filter(|_| !closed) {
        tx.prepare_cached(upsert)?.execute(row(keys, &accs))?;
        return Ok(());
    }
    let stored: Option<Vec<Value>> = tx
        .prepare_cached(&sql.select)?
        .query_row(
            params_from_iter(head().chain(keys.iter().map(|k| Value::Text(k.clone())))),
            |r| {
                (0..table.values.len())
                    .map(|i| r.get::<_, Value>(i))
                    .collect()
            },
        )
        .optional()?;
    match stored {
        Some(stored) => {
            for (acc, v) in accs.iter_mut().zip(&stored) {
                acc.merge_stored(v);
            }
        }
        None if closed
            && keys.last().is_some_and(|k| k != OTHER)
            && full(tx, t, hour, &keys[0])? =>
        {
            if let Some(k) = keys.last_mut() {
                *k = OTHER.to_string();
            }
            return write(tx, t, hour, keys, accs, closed);
        }
        None => {}
    }
    tx.prepare_cached(&sql.replace)?.execute(row(keys, &accs))?;
    Ok(())
}

/// Whether `group` of bounded table `t` in `hour` already keeps [`TOP_N`] keys.
fn full(tx: &Transaction, t: usize, hour: i64, group: &str) -> rusqlite::Result<bool> {
    let table = &TABLES[t];
    let kept: i64 = tx
        .prepare_cached(&format!(
            "SELECT COUNT(*) FROM {} WHERE hour_us = ?1 AND {} = ?2 AND {} != ''",
            table.name, table.keys[0], table.keys[1]
        ))?
        .query_row(params![hour, group], |r| r.get(0))?;
    Ok(kept >= TOP_N as i64)
}

/// Prunes the bounded tables of every open hour that ended more than
/// [`GRACE_US`] before `now_us`, and marks it closed.
fn close_hours(tx: &Transaction, now_us: i64) -> rusqlite::Result<()> {
    let hours: Vec<i64> = tx
        .prepare_cached("SELECT hour_us FROM rollup_hours WHERE pruned = 0 AND hour_us <= ?1")?
        .query_map(params![now_us - HOUR_US - GRACE_US], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for hour in hours {
        for t in [TALKERS, NAMES] {
            prune(tx, t, hour)?;
        }
        tx.prepare_cached("UPDATE rollup_hours SET pruned = 1 WHERE hour_us = ?1")?
            .execute(params![hour])?;
    }
    Ok(())
}

/// Keeps the top [`TOP_N`] keys of each group of `table` in `hour` and
/// folds the rest into [`OTHER`].
fn prune(tx: &Transaction, t: usize, hour: i64) -> rusqlite::Result<()> {
    let table = &TABLES[t];
    let (Some(rank), [group, key]) = (table.rank, table.keys) else {
        return Ok(());
    };
    let name = table.name;
    // The groups (a handful) by a skip through the key, each then counted
    // in `hour`: a plain `GROUP BY` would scan every hour of every group.
    let groups: Vec<String> = tx
        .prepare_cached(&format!(
            "WITH RECURSIVE g(v) AS (
                 SELECT MIN({group}) FROM {name}
                 UNION ALL
                 SELECT (SELECT MIN({group}) FROM {name} WHERE {group} > g.v) FROM g
                 WHERE g.v IS NOT NULL)
             SELECT v FROM g WHERE v IS NOT NULL
               AND (SELECT COUNT(*) FROM {name}
                    WHERE {group} = g.v AND hour_us = ?1 AND {key} != '') > ?2"
        ))?
        .query_map(params![hour, TOP_N as i64], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let values: Vec<&str> = table.values.iter().map(|(v, _)| *v).collect();
    let beyond = format!(
        "SELECT {key} FROM {name} WHERE hour_us = ?1 AND {group} = ?2 AND {key} != ''
         ORDER BY {rank} DESC, {key} LIMIT -1 OFFSET {TOP_N}"
    );
    for g in groups {
        let sums: Vec<Option<i64>> = tx.query_row(
            &format!(
                "SELECT {} FROM {name} WHERE hour_us = ?1 AND {group} = ?2 AND {key} IN ({beyond})",
                values
                    .iter()
                    .map(|v| format!("SUM({v})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            params![hour, g],
            |r| (0..values.len()).map(|i| r.get(i)).collect(),
        )?;
        tx.execute(
            &format!(
                "DELETE FROM {name} WHERE hour_us = ?1 AND {group} = ?2 AND {key} IN ({beyond})"
            ),
            params![hour, g],
        )?;
        let accs = sums.iter().map(|s| Acc::Int(s.unwrap_or(0))).collect();
        write(tx, t, hour, vec![g, OTHER.to_string()], accs, true)?;
    }
    Ok(())
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
