//! Times the plot series over 30 days of hourly rollups of 50 sensors (a
//! tenant of ~10 M events keeps about this much in its rollups), as the
//! issue's "a 30-day plot ≤ 300 ms" asks. Prints, does not assert.
//!
//! `cargo run --release -p owlet-soc-report --example series_bench`

use std::time::Instant;

use owlet_soc_export::Zone;
use owlet_soc_report::series::{self, Metric, Request};
use owlet_soc_store::Store;
use owlet_soc_store::rollup::{HOUR_US, Hist, Scale};

const AGENTS: usize = 50;
const CHECKS_PER_AGENT: usize = 4;
const HOURS: i64 = 37 * 24; // 30 days plotted + 7 days learned from.

fn main() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Store::open(dir.path()).expect("store");
    let path = store.writer("bench").expect("tenant").path().to_path_buf();
    let start = 1_793_458_800_000_000i64 - 7 * 24 * HOUR_US;
    let t = Instant::now();
    let mut db = rusqlite::Connection::open(&path).expect("open");
    let tx = db.transaction().expect("tx");
    {
        let mut host = tx
            .prepare(
                "INSERT INTO rollup_host (hour_us, agent, samples, cpu_n, cpu_sum, cpu_max, cpu_hist,
                   memory_n, memory_sum, memory_max, memory_hist, disk_n, disk_sum, disk_max, disk_hist)
                 VALUES (?1, ?2, 60, 60, ?3, ?4, ?5, 60, ?3, ?4, ?5, 60, ?3, ?4, ?5)",
            )
            .expect("prepare");
        let mut checks = tx
            .prepare(
                "INSERT INTO rollup_checks (hour_us, agent, check_id, results, up, degraded, down,
                   latency_n, latency_sum, latency_min, latency_max, latency_hist)
                 VALUES (?1, ?2, ?3, 60, 59, 0, 1, 59, 59000, 500, 3000, ?4)",
            )
            .expect("prepare");
        let mut talkers = tx
            .prepare(
                "INSERT INTO rollup_talkers (hour_us, dimension, key, bytes, packets, flows)
                 VALUES (?1, ?2, ?3, ?4, ?5, 10)",
            )
            .expect("prepare");
        let mut hours = tx
            .prepare("INSERT INTO rollup_hours (hour_us, events, pruned) VALUES (?1, 12000, 1)")
            .expect("prepare");
        for h in 0..HOURS {
            let hour = start + h * HOUR_US;
            hours.execute([hour]).expect("insert");
            for a in 0..AGENTS {
                let agent = format!("sensor-{a:02}");
                let mut hist = Hist::default();
                for v in 0..60 {
                    hist.add(Scale::Percent.bucket(20.0 + ((v + a as i64 + h) % 40) as f64));
                }
                host.execute(rusqlite::params![
                    hour,
                    agent,
                    60.0 * 40.0,
                    59.0,
                    hist.to_json()
                ])
                .expect("insert");
                let mut lat = Hist::default();
                for v in 0..59 {
                    lat.add(Scale::Log.bucket(500.0 + 40.0 * v as f64));
                }
                for c in 0..CHECKS_PER_AGENT {
                    checks
                        .execute(rusqlite::params![
                            hour,
                            agent,
                            format!("check-{c}"),
                            lat.to_json()
                        ])
                        .expect("insert");
                }
            }
            for dim in ["src", "dst", "dst_port"] {
                for k in 0..101 {
                    let key = if k == 100 {
                        String::new()
                    } else {
                        format!("10.0.{}.{}", k / 50, k)
                    };
                    talkers
                        .execute(rusqlite::params![
                            hour,
                            dim,
                            key,
                            1_000_000 - k * 1000,
                            1000
                        ])
                        .expect("insert");
                }
            }
        }
    }
    tx.commit().expect("commit");
    drop(db);
    println!(
        "filled {HOURS} hours x {AGENTS} sensors ({} check rows) in {:?}",
        HOURS as usize * AGENTS * CHECKS_PER_AGENT,
        t.elapsed()
    );
    let reader = store.reader("bench").expect("reader");
    let zone = Zone::parse("Asia/Tokyo").expect("zone");
    let req = Request {
        source: &reader,
        zone: &zone,
        from_us: start + 7 * 24 * HOUR_US,
        to_us: start + HOURS * HOUR_US,
    };
    let time = |name: &str, f: &dyn Fn() -> usize| {
        let t = Instant::now();
        let points = f();
        println!(
            "{name:<24} {:>8.1} ms  ({points} points)",
            t.elapsed().as_secs_f64() * 1e3
        );
    };
    let points = |s: &series::Series| s.lines.iter().map(|l| l.values.len()).sum::<usize>();
    time("check availability", &|| {
        points(&series::check_availability(&req).expect("series"))
    });
    time("check latency p50/p95", &|| {
        points(&series::check_latency(&req).expect("series"))
    });
    time("host cpu + normal", &|| {
        points(&series::host(&req, Metric::Cpu).expect("series"))
    });
    time("capture bytes/packets", &|| {
        points(&series::capture(&req).expect("series"))
    });
    time("tops", &|| {
        series::tops(&req, 10).expect("tops").sources.top.len()
    });
    time("alerts timeline", &|| {
        series::alerts(&req, 500).expect("alerts").alerts.len()
    });
    time("json of host cpu", &|| {
        serde_json::to_string(&series::host(&req, Metric::Cpu).expect("series"))
            .expect("json")
            .len()
    });
}
