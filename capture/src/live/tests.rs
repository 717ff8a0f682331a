use super::*;

const IV: u64 = 60_000_000_000;

fn merger(workers: usize) -> Merger {
    Merger {
        workers,
        interval_ns: IV,
        cfg: SummaryConfig::default(),
        pending: BTreeMap::new(),
        flushed_until: 0,
    }
}

fn agg(start: u64, packets: u64) -> IntervalAgg {
    let mut a = IntervalAgg {
        start_ns: start,
        ..IntervalAgg::default()
    };
    a.frames.packets = packets;
    a
}

fn summaries(v: &[Output]) -> Vec<(u64, u64)> {
    v.iter()
        .filter_map(|o| match o {
            Output::Summary(s) => Some((s.packets, s.active_flows)),
            _ => None,
        })
        .collect()
}

#[test]
fn one_summary_once_every_worker_reported() {
    let mut m = merger(2);
    assert!(
        m.add(agg(IV, 5), 1).is_empty(),
        "waits for the other worker"
    );
    let out = m.add(agg(IV, 7), 2);
    assert_eq!(summaries(&out), vec![(12, 3)]);
    assert!(m.flush().is_empty());
}

#[test]
fn an_idle_worker_does_not_hold_summaries_back() {
    let mut m = merger(2);
    assert!(m.add(agg(IV, 5), 0).is_empty());
    // Worker 0 moves two intervals on; worker 1 never reported interval 1.
    let out = m.add(agg(3 * IV, 1), 0);
    assert_eq!(summaries(&out), vec![(5, 0)]);
    // Worker 1's late aggregate of interval 1 comes out on its own.
    let out = m.add(agg(IV, 4), 0);
    assert_eq!(summaries(&out), vec![(4, 0)]);
    // At stop, what is pending is flushed.
    assert_eq!(summaries(&m.flush()), vec![(1, 0)]);
}

/// A worker that never saw a packet still reports each interval from its
/// clock ticks, so the merger never waits for it.
#[test]
fn a_worker_without_packets_reports_intervals_from_ticks() {
    let cfg = Config {
        emit_partials: true,
        summary_interval: Duration::from_nanos(IV),
        ..Config::default()
    };
    let mut e = Engine::new(LinkType::Ethernet, cfg);
    e.tick(10 * IV + 5);
    assert_eq!(e.drain().count(), 0);
    e.tick(11 * IV + 5);
    let starts: Vec<u64> = e
        .drain()
        .filter_map(|o| match o {
            Output::Partial(a, _) => Some(a.start_ns),
            _ => None,
        })
        .collect();
    assert_eq!(starts, vec![10 * IV]);
    let mut m = merger(2);
    assert!(m.add(agg(10 * IV, 3), 0).is_empty());
    let out = m.add(agg(starts[0], 0), 0);
    assert_eq!(summaries(&out), vec![(3, 0)], "complete at once");
}
