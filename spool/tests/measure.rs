//! Cost of the durability policies: appends/s of 1000-event batches.
//! Not a test of behaviour (no timing assertions); run it by hand:
//! `cargo test -p owlet-spool --test measure -- --ignored --nocapture`
mod common;

use std::time::{Duration, Instant};

use common::{config, event};
use owlet_spool::{Durability, Spool};

#[test]
#[ignore = "measurement, run by hand"]
fn measure_fsync_cost() {
    let big: Vec<_> = (0..1000u32)
        .map(|i| event((i % 9) as u8, 60, 1_700_000_000_000_000))
        .collect();
    let small = vec![event(0, 60, 1_700_000_000_000_000)];
    for (name, durability, batch) in [
        ("EveryBatch", Durability::EveryBatch, &big),
        (
            "Interval(100ms)",
            Durability::Interval(Duration::from_millis(100)),
            &big,
        ),
        (
            "Interval(1h) ~ no fsync",
            Durability::Interval(Duration::from_secs(3600)),
            &big,
        ),
        ("EveryBatch, 1-event", Durability::EveryBatch, &small),
        (
            "Interval(1h), 1-event",
            Durability::Interval(Duration::from_secs(3600)),
            &small,
        ),
    ] {
        let per = batch.len() as f64;
        let dir = tempfile::tempdir_in(
            std::env::var("OWLET_SPOOL_MEASURE_DIR").unwrap_or_else(|_| "/var/tmp".into()),
        )
        .unwrap();
        let mut cfg = config(dir.path(), 16 << 20, 4 << 30);
        cfg.durability = durability;
        let (mut spool, _) = Spool::open(cfg).unwrap();
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_secs(3) {
            spool.append(batch.clone()).unwrap();
            n += 1;
        }
        spool.sync().unwrap();
        let secs = start.elapsed().as_secs_f64();
        let bytes = spool.stats().bytes as f64;
        println!(
            "{name:>24}: {:>8.1} batches/s {:>10.0} events/s {:>7.1} MB/s ({} B/batch)",
            n as f64 / secs,
            n as f64 * per / secs,
            bytes / secs / 1e6,
            (bytes / n as f64) as u64
        );
    }
}
