//! Detection-to-notification latency (bench/notify/run.sh): stores alerts
//! into a store at a steady rate (one append, fsync'd, per alert, as the
//! receiver does) while the notifier runs against a real SMTP server, then
//! prints the latency from each alert's own time to the SMTP server's
//! receipt of its mail.
//!
//! Usage: latency ROOT SMTP_PORT CA_FILE PASSWORD_FILE MAIL_DIR RATE SECS WINDOW POLL
//!        latency cert DIR   (writes DIR/cert.pem and DIR/key.pem for localhost)
//! (RATE alerts per second for SECS seconds; WINDOW and POLL as humantime).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use owlet_proto::v1::{Alert, Event, Severity, event::Kind};
use owlet_soc_notify::{HistoryQuery, NotifyConfig};
use owlet_soc_store::{Batch, Store};
use tokio_util::sync::CancellationToken;

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() == 2 && a[0] == "cert" {
        // `latency cert DIR`: a self-signed end-entity certificate for
        // localhost (webpki refuses a CA certificate as a server's).
        let dir = PathBuf::from(&a[1]);
        let key = rcgen::KeyPair::generate().expect("key");
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("names");
        let cert = params.self_signed(&key).expect("certificate");
        std::fs::write(dir.join("cert.pem"), cert.pem()).expect("cert.pem");
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("key.pem");
        return;
    }
    assert!(
        a.len() == 9,
        "usage: latency ROOT SMTP_PORT CA_FILE PASSWORD_FILE MAIL_DIR RATE SECS WINDOW POLL"
    );
    let root = PathBuf::from(&a[0]);
    let (port, ca, password, maildir) = (&a[1], &a[2], &a[3], PathBuf::from(&a[4]));
    let rate: f64 = a[5].parse().expect("RATE: alerts per second");
    let secs: f64 = a[6].parse().expect("SECS: seconds");
    let (window, poll) = (&a[7], &a[8]);
    let toml = format!(
        r#"
[notify]
poll_interval = "{poll}"
[[notify.tenant]]
name = "bench"
zone = "Asia/Tokyo"
[[notify.channel]]
name = "mail"
tenants = ["bench"]
type = "smtp"
server = "localhost"
port = {port}
user = "owlet"
password_file = "{password}"
from = "owlet SOC <soc@owlet.test>"
to = ["noc@bench.test"]
ca_file = "{ca}"
[[notify.rule]]
name = "every-alert"
tenant = "bench"
min_severity = "warning"
group_by = "subject"
group_window = "{window}"
channels = ["mail"]
"#
    );
    let config = NotifyConfig::from_toml(&toml).expect("bench config");
    let store = Store::open(&root).expect("store");
    // The tenant's log exists before the notifier looks for tenants.
    drop(store.writer("bench").expect("tenant log"));
    let token = CancellationToken::new();
    let notifier = tokio::spawn(owlet_soc_notify::run(root.clone(), config, token.clone()));

    let total = (rate * secs).round() as u64;
    let writer = std::thread::spawn(move || {
        let mut log = store.writer("bench").expect("tenant log");
        let start = Instant::now();
        let step = Duration::from_secs_f64(1.0 / rate);
        for i in 0..total {
            let due = start + step * i as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let event = Event {
                seq: i + 1,
                time: Some(owlet_proto::timestamp(SystemTime::now())),
                kind: Some(Kind::Alert(Alert {
                    source: "check".into(),
                    subject: format!("svc{i}"),
                    name: "check_down".into(),
                    severity: Severity::Critical as i32,
                    message: "connection refused".into(),
                    ..Default::default()
                })),
            };
            log.append(
                &[Batch {
                    agent: "fw1",
                    zone: "Asia/Tokyo",
                    events: std::slice::from_ref(&event),
                    sequenced: true,
                }],
                SystemTime::now(),
            )
            .expect("append");
        }
    });
    tokio::task::spawn_blocking(move || writer.join().expect("writer"))
        .await
        .expect("writer");

    // Wait for every notification to be delivered (bounded).
    let query = HistoryQuery {
        since_us: None,
        limit: usize::MAX >> 1,
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let rows = loop {
        let rows = owlet_soc_notify::history(&root, "bench", &query).expect("history");
        let delivered = rows.iter().filter(|r| r.status == "delivered").count();
        if delivered as u64 >= total || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    token.cancel();
    notifier.await.expect("notifier").expect("notifier run");

    let detected: HashMap<i64, i64> = rows
        .iter()
        .map(|r| (r.notification_id, r.first_detected_us))
        .collect();
    let mut latency_ms = Vec::new();
    for entry in std::fs::read_dir(&maildir).expect("mail dir") {
        let path = entry.expect("mail").path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let mail: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("mail")).expect("json");
        let data = mail["data"].as_str().unwrap_or("");
        let Some(id) = data
            .lines()
            .find_map(|l| l.strip_prefix("X-Owlet-Notification: bench/"))
            .and_then(|s| s.trim().parse::<i64>().ok())
        else {
            continue;
        };
        if let (Some(det), Some(rx)) = (detected.get(&id), mail["received_us"].as_i64()) {
            latency_ms.push((rx - det) / 1000);
        }
    }
    latency_ms.sort_unstable();
    let delivered = rows.iter().filter(|r| r.status == "delivered").count();
    println!("alerts stored: {total} at {rate}/s over {secs} s (one fsync'd append each)");
    println!(
        "notifications: {} recorded, {delivered} delivered, {} mails received",
        rows.len(),
        latency_ms.len()
    );
    println!("grouping window {window}, poll interval {poll}");
    let mut statuses: HashMap<String, usize> = HashMap::new();
    for r in &rows {
        for d in &r.deliveries {
            *statuses.entry(d.status.clone()).or_default() += 1;
        }
    }
    println!("deliveries by status: {statuses:?}");
    if let Some(e) = rows
        .iter()
        .flat_map(|r| &r.deliveries)
        .find_map(|d| d.last_error.as_ref())
    {
        println!("an error seen: {e}");
    }
    println!(
        "detection -> SMTP receipt (ms): p50 {}  p90 {}  p99 {}  max {}",
        percentile(&latency_ms, 0.50),
        percentile(&latency_ms, 0.90),
        percentile(&latency_ms, 0.99),
        latency_ms.last().copied().unwrap_or(0)
    );
    let p99 = percentile(&latency_ms, 0.99);
    println!(
        "goal p99 <= 5000 ms: {}",
        if p99 <= 5000 && latency_ms.len() as u64 == total {
            "met"
        } else {
            "NOT met"
        }
    );
}
