//! The portal benchmark's data (bench/portal/run.sh), not a test:
//!
//! * `fill ROOT EVENTS SENSORS DAYS`: tenant `bench` of the store at ROOT
//!   gets EVENTS events from SENSORS sensors spread over the last DAYS days,
//!   appended day by day as the receiver would (check results of 4 checks per
//!   sensor, flows, host metrics, file changes, a few alerts); then a
//!   customer viewer `bench-viewer` with a session. Prints the session's
//!   cookie value.
//! * `poke ROOT`: appends one check result to `bench` now and prints the
//!   time it was committed (µs since the epoch), for the live test.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use owlet_proto::v1::{
    Alert, CheckResult, Event, FileChange, FlowRecord, HostMetrics, Severity, State, event::Kind,
};
use owlet_soc_portal::i18n::Lang;
use owlet_soc_portal::session::{self, Stage};
use owlet_soc_portal::users::{self, NewUser};
use owlet_soc_portal::{Db, Role};
use owlet_soc_store::{Batch, Store};

const TENANT: &str = "bench";
const CHECKS: u64 = 4;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["fill", root, events, sensors, days] => fill(
            root,
            events.parse().expect("EVENTS"),
            sensors.parse().expect("SENSORS"),
            days.parse().expect("DAYS"),
        ),
        ["poke", root] => poke(root),
        _ => {
            eprintln!("usage: portal_bench fill ROOT EVENTS SENSORS DAYS | poke ROOT");
            std::process::exit(2);
        }
    }
}

fn event(seq: u64, time: SystemTime, kind: Kind) -> Event {
    Event {
        seq,
        time: Some(owlet_proto::timestamp(time)),
        kind: Some(kind),
    }
}

/// The `n`-th event of a sensor: mostly check results, then flows, host
/// metrics, a file change now and then, an alert rarely.
fn kind_of(n: u64, sensor: u64) -> Kind {
    match n % 100 {
        0 => Kind::Alert(Alert {
            name: "check_down".into(),
            severity: Severity::Critical as i32,
            new_state: State::Down as i32,
            subject: format!("check-{}", n % CHECKS),
            source: "check".into(),
            message: "TCP connect refused".into(),
            ..Default::default()
        }),
        1..=3 => Kind::FileChange(FileChange {
            path: format!("/etc/fw/rules-{}.conf", n % 7),
            severity: Severity::Warning as i32,
            new_sha256: format!("{n:064x}"),
            ..Default::default()
        }),
        4..=13 => Kind::HostMetrics(HostMetrics {
            cpu_percent: (n % 37) as f64 + 5.0,
            memory_used_bytes: 2 << 30,
            memory_total_bytes: 8 << 30,
            load1: 0.5,
            ..Default::default()
        }),
        14..=39 => Kind::FlowRecord(FlowRecord {
            src_addr: format!("10.{}.{}.{}", sensor % 250, (n / 7) % 250, n % 250),
            dst_addr: format!("192.0.2.{}", n % 200),
            src_port: 40_000 + (n % 20_000) as u32,
            dst_port: [443, 53, 80, 22][(n % 4) as usize],
            protocol: 6,
            bytes_out: 1_000 + n % 50_000,
            packets_out: 10,
            tls_sni: if n.is_multiple_of(4) {
                format!("site{}.example", n % 300)
            } else {
                String::new()
            },
            ..Default::default()
        }),
        _ => {
            let up = !n.is_multiple_of(53);
            let state = if up { State::Up } else { State::Down } as i32;
            Kind::CheckResult(CheckResult {
                check_id: format!("check-{}", n % CHECKS),
                state,
                result: state,
                duration_us: 300 + n % 5_000,
                target: format!("10.0.0.{}:443", n % CHECKS),
                ..Default::default()
            })
        }
    }
}

fn fill(root: &str, total: u64, sensors: u64, days: u64) {
    let store = Store::open(root.as_ref()).expect("store");
    let mut log = store.writer(TENANT).expect("tenant log");
    let now = SystemTime::now();
    let start = now - Duration::from_secs(days * 86_400);
    let step = Duration::from_secs(days * 86_400).as_nanos() / u128::from(total.max(1));
    let names: Vec<String> = (0..sensors).map(|s| format!("sensor-{s:02}")).collect();
    let mut seqs = vec![0u64; sensors as usize];
    let per_batch = 2_000u64;
    let mut n = 0u64;
    let begun = std::time::Instant::now();
    while n < total {
        let batch_start = n;
        // One group commit: a batch per sensor, events in time order.
        let mut per_sensor: Vec<Vec<Event>> = vec![Vec::new(); sensors as usize];
        while n < total && n - batch_start < per_batch * sensors {
            let sensor = n % sensors;
            let time = start + Duration::from_nanos((step * u128::from(n)) as u64);
            let s = sensor as usize;
            seqs[s] += 1;
            per_sensor[s].push(event(seqs[s], time, kind_of(n / sensors, sensor)));
            n += 1;
        }
        let received = start + Duration::from_nanos((step * u128::from(n - 1)) as u64);
        let batches: Vec<Batch> = per_sensor
            .iter()
            .zip(&names)
            .filter(|(events, _)| !events.is_empty())
            .map(|(events, agent)| Batch {
                agent,
                zone: "Asia/Tokyo",
                events,
                sequenced: true,
            })
            .collect();
        log.append(&batches, received).expect("append");
    }
    eprintln!(
        "filled {total} events from {sensors} sensors over {days} days in {:.1} s",
        begun.elapsed().as_secs_f64()
    );
    drop(log);

    let db = Db::open(&std::path::Path::new(root).join("portal.db")).expect("portal.db");
    let conn = db.lock();
    users::add(
        &conn,
        &NewUser {
            name: "bench-viewer".into(),
            role: Role::CustomerViewer,
            tenants: vec![TENANT.into()],
            lang: Lang::En,
            time_zone: "Asia/Tokyo".into(),
            totp: false,
        },
    )
    .expect("user");
    let user = users::find(&conn, "bench-viewer")
        .expect("user")
        .expect("user");
    users::set_password(&conn, user.id, "bench-password-long").expect("password");
    println!(
        "{}",
        session::create(&conn, user.id, Stage::Full).expect("session")
    );
}

fn poke(root: &str) {
    let store = Store::open(root.as_ref()).expect("store");
    let mut log = store.writer(TENANT).expect("tenant log");
    let now = SystemTime::now();
    let state = State::Down as i32;
    let events = [event(
        0,
        now,
        Kind::CheckResult(CheckResult {
            check_id: "check-poke".into(),
            state,
            result: state,
            ..Default::default()
        }),
    )];
    log.append(
        &[Batch {
            agent: "sensor-poke",
            zone: "UTC",
            events: &events,
            sequenced: false,
        }],
        now,
    )
    .expect("append");
    let committed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_micros();
    println!("{committed}");
}
