//! Host health in the real agent, seen at the real SOC: metrics agree with
//! `/proc` read directly here; a CPU burner trips a short CPU threshold and
//! is named in the alert; an interface set down inside a network namespace
//! this test creates trips `interface_down` (the agent and the SOC run in
//! that namespace; the root namespace's interfaces are never touched).

use std::fs;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{SystemTime, UNIX_EPOCH};

use owlet_proto::v1::{Alert, HostMetrics, event::Kind};
use owlet_tests::*;

/// Samples every second; learning off (its period would not end anyway).
fn fast(agent: &mut Agent) {
    agent
        .set("host", "interval", "1s")
        .set("host", "top_processes", 5);
    let mut learning = toml::Table::new();
    learning.insert("enabled".into(), false.into());
    agent.set("host", "learning", learning);
}

/// A started SOC, its database, and an agent issued by it (not started).
fn soc_and_agent() -> (Soc, Db, Agent) {
    let mut soc = Soc::init();
    soc.start();
    let db = soc.db();
    let agent = soc.issue("acme", "h");
    (soc, db, agent)
}

fn threshold(pairs: &[(&str, toml::Value)]) -> toml::Value {
    let mut t = toml::Table::new();
    for (k, v) in pairs {
        t.insert((*k).to_string(), v.clone());
    }
    t.into()
}

fn host_metrics(db: &Db) -> Vec<(i64, HostMetrics)> {
    db.events()
        .into_iter()
        .filter_map(|e| match e.event.kind {
            Some(Kind::HostMetrics(m)) => Some((e.event.time.map_or(0, |t| t.seconds), m)),
            _ => None,
        })
        .collect()
}

fn host_alerts(db: &Db, name: &str) -> Vec<Alert> {
    db.events()
        .into_iter()
        .filter_map(|e| match e.event.kind {
            Some(Kind::Alert(a)) if a.source == "host" && a.name == name => Some(a),
            _ => None,
        })
        .collect()
}

fn meminfo(key: &str) -> u64 {
    let text = fs::read_to_string("/proc/meminfo").unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{key}:")))
        .unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

fn proc_count() -> usize {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .count()
}

#[test]
fn metrics_agree_with_proc() {
    let (_soc, db, mut agent) = soc_and_agent();
    agent.set("host", "interval", "1s");
    // The host "rebooted" since the agent last ran: its persisted boot time
    // is an hour older than the kernel's.
    let btime = boot_time();
    fs::create_dir_all(agent.state_dir.join("host")).unwrap();
    fs::write(
        agent.state_dir.join("host/boot_time"),
        (btime - 3600).to_string(),
    )
    .unwrap();
    agent.start();
    wait_until("three host metrics at the SOC", DEADLINE, || {
        host_metrics(&db).len() >= 3
    });
    let (stamp, m) = host_metrics(&db).pop().unwrap();

    assert_eq!(m.memory_total_bytes, meminfo("MemTotal"));
    assert_eq!(m.swap_total_bytes, meminfo("SwapTotal"));
    assert!(m.memory_used_bytes <= m.memory_total_bytes);
    let stat = fs::read_to_string("/proc/stat").unwrap();
    let cores = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .count();
    assert_eq!(m.cpu_core_percent.len(), cores);
    assert!((0.0..=100.0).contains(&m.cpu_percent), "{}", m.cpu_percent);
    assert_eq!(m.boot_time.as_ref().unwrap().seconds, btime);
    let rebooted = host_alerts(&db, "host_rebooted");
    assert_eq!(rebooted.len(), 1, "{rebooted:?}");
    assert_eq!(
        rebooted[0].labels["previous_boot_time"],
        (btime - 3600).to_string()
    );
    // Uptime: what /proc says now, less the time since the sample.
    let uptime_now: f64 = first_field(&fs::read_to_string("/proc/uptime").unwrap());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let expected = uptime_now - (now - stamp) as f64;
    assert!(
        (m.uptime_seconds as f64 - expected).abs() <= 5.0,
        "uptime {} vs /proc {expected}",
        m.uptime_seconds
    );
    // Process count: close (processes come and go between the two reads).
    let count = proc_count() as f64;
    assert!(
        (f64::from(m.process_count) - count).abs() <= 10.0 + count * 0.2,
        "process_count {} vs /proc {count}",
        m.process_count
    );
    // The root file system, as statvfs (df) sees it.
    let df = String::from_utf8(
        Command::new("df")
            .args(["-B1", "--output=size", "/"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let size: u64 = df.lines().nth(1).unwrap().trim().parse().unwrap();
    let root = m
        .disks
        .iter()
        .find(|d| d.mount_point == "/")
        .unwrap_or_else(|| panic!("no / in {:?}", m.disks));
    assert_eq!(root.total_bytes, size);
    // Loopback counters never run ahead of the kernel's.
    let lo = m.networks.iter().find(|n| n.interface == "lo").unwrap();
    let net_dev = fs::read_to_string("/proc/net/dev").unwrap();
    let lo_rx: u64 = first_field(
        net_dev
            .lines()
            .find_map(|l| l.trim().strip_prefix("lo:"))
            .unwrap(),
    );
    assert!(lo.rx_bytes > 0 && lo.rx_bytes <= lo_rx, "{lo:?} vs {lo_rx}");
    assert!(lo.rx_bytes_per_second >= 0.0 && m.interval_seconds > 0.0);
    assert!(!m.top_processes.is_empty() && m.top_processes.len() <= 5);
    assert!(m.agent_rss_bytes > 0);
    // Health shows the collector and how far learning has come.
    let health = agent.health().unwrap();
    let host = &health["collectors"]["host"];
    assert_eq!(host["state"], "running", "{health}");
    let learning = &host["detail"]["host"]["learning"];
    assert!(learning["percent"].as_f64().is_some(), "{health}");
    assert!(
        learning["ready_slots"]["cpu_percent"].as_u64().is_some(),
        "{health}"
    );
    // And the one-line form carries it as perfdata.
    let line = output(owlet().arg("health").arg("--socket").arg(&agent.socket));
    let line = String::from_utf8_lossy(&line.stdout);
    assert!(line.contains(" host_learning="), "{line}");
    agent.drain_and_stop(DEADLINE);
    // The learned state was saved at stop, for the next run.
    let saved: serde_json::Value =
        serde_json::from_slice(&fs::read(agent.state_dir.join("host/learning")).unwrap()).unwrap();
    assert_eq!(
        saved["metrics"]["cpu_percent"].as_array().unwrap().len(),
        168
    );
}

/// The first whitespace-separated field of `text`, parsed.
fn first_field<T: std::str::FromStr>(text: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    text.split_whitespace().next().unwrap().parse().unwrap()
}

fn boot_time() -> i64 {
    fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A copy of `sha256sum` named like a miner, hashing /dev/zero forever.
struct Burner(Child);

impl Burner {
    fn start(dir: &Path) -> Burner {
        let exe = dir.join("owlminer");
        fs::copy("/usr/bin/sha256sum", &exe).unwrap();
        Burner(Command::new(&exe).arg("/dev/zero").spawn().unwrap())
    }
}

impl Drop for Burner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_cpu_burner_trips_the_threshold_and_is_named() {
    let (_soc, db, mut agent) = soc_and_agent();
    fast(&mut agent);
    // One busy core of this host's cores is well above 100 / (2 × cores) %.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let limit = 100.0 / (2.0 * cores as f64);
    agent.set(
        "host",
        "threshold",
        vec![threshold(&[
            ("metric", "cpu_percent".into()),
            ("above", limit.into()),
            ("for", "2s".into()),
            ("severity", "critical".into()),
        ])],
    );
    // The miner runs before the agent starts, as on a compromised host.
    let burner = Burner::start(&agent.dir);
    agent.start();
    wait_until("a cpu_high alert at the SOC", DEADLINE, || {
        !host_alerts(&db, "cpu_high").is_empty()
    });
    let alert = host_alerts(&db, "cpu_high").remove(0);
    assert!(alert.message.contains("owlminer"), "{}", alert.message);
    assert!(
        alert.labels["top_processes"].contains("owlminer /dev/zero"),
        "{alert:?}"
    );
    assert_eq!(alert.labels["threshold"], format!("above {limit}"));
    assert!(alert.labels["observed"].parse::<f64>().unwrap() > limit);
    wait_until("health to show the active threshold", DEADLINE, || {
        agent.health().is_some_and(|h| {
            h["collectors"]["host"]["verdict"] == "WARNING"
                && h["collectors"]["host"]["reasons"]
                    .to_string()
                    .contains("cpu_high")
        })
    });
    drop(burner);
    agent.drain_and_stop(DEADLINE);
}

/// Set by the outer test: the inner run is inside this namespace.
const NETNS_ENV: &str = "OWLET_HOST_TEST_NETNS";

/// Deletes the test namespace however the test ends.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_interface_down_in_a_namespace_trips_interface_down() {
    let ns = format!("owlet-host-{}", std::process::id());
    ip(&["netns", "add", &ns]);
    let _guard = Netns(ns.clone());
    // `ip netns exec` also mounts the namespace's own /sys, where the agent
    // reads operstate. Both ends of the veth pair live in the namespace.
    let status = Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "interface_down_inside_the_namespace",
            "--include-ignored",
            "--nocapture",
        ])
        .env(NETNS_ENV, &ns)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "the run inside namespace {ns} failed (its output is above)"
    );
}

/// The body of the test above, run by it inside its namespace.
#[test]
#[ignore = "run by an_interface_down_in_a_namespace_trips_interface_down inside its namespace"]
fn interface_down_inside_the_namespace() {
    if std::env::var_os(NETNS_ENV).is_none() {
        return;
    }
    ip(&["link", "set", "lo", "up"]);
    ip(&[
        "link", "add", "owv0", "type", "veth", "peer", "name", "owv1",
    ]);
    ip(&["link", "set", "owv0", "up"]);
    ip(&["link", "set", "owv1", "up"]);
    let (_soc, db, mut agent) = soc_and_agent();
    fast(&mut agent);
    agent.set(
        "host",
        "threshold",
        vec![threshold(&[
            ("metric", "interface_down".into()),
            ("interface", "owv0".into()),
            ("severity", "critical".into()),
        ])],
    );
    agent.start();
    wait_until("owv0 up in the host metrics", DEADLINE, || {
        host_metrics(&db).iter().any(|(_, m)| {
            m.networks
                .iter()
                .any(|n| n.interface == "owv0" && n.oper_state == "up")
        })
    });
    assert!(host_alerts(&db, "interface_down").is_empty());
    ip(&["link", "set", "owv0", "down"]);
    wait_until("an interface_down alert at the SOC", DEADLINE, || {
        !host_alerts(&db, "interface_down").is_empty()
    });
    let down = host_alerts(&db, "interface_down").remove(0);
    assert_eq!(down.subject, "interface_down:owv0");
    assert_eq!(down.labels["oper_state"], "down");
    assert!(down.message.contains("owv0"), "{}", down.message);
    ip(&["link", "set", "owv0", "up"]);
    wait_until("the interface_down alert to clear", DEADLINE, || {
        host_alerts(&db, "interface_down").len() >= 2
    });
    let up = host_alerts(&db, "interface_down").remove(1);
    assert_eq!(up.new_state, owlet_proto::v1::State::Up as i32);
    agent.drain_and_stop(DEADLINE);
}
