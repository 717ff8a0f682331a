//! SNMP checks against a real net-snmp snmpd: values equal snmpget /
//! snmpwalk output, v3 authPriv and authNoPriv, wrong credentials
//! classified, presets, reboot detection across a restart, and malformed
//! replies from a fake agent.
mod common;

use std::time::Duration;

use common::*;
use owlet_probe::{CheckConfig, CheckTypeName, ProbeConfig, Secret, run_check};
use owlet_proto::v1::{
    CheckResult, FailureClass, SnmpDetail, State, check_result::Detail, event::Kind,
};

fn snmp(r: &CheckResult) -> &SnmpDetail {
    match &r.detail {
        Some(Detail::Snmp(d)) => d,
        other => panic!("no snmp detail: {other:?}"),
    }
}

fn v2c(target: &str) -> CheckConfig {
    let mut c = check(CheckTypeName::Snmp, target);
    c.community = Some(Secret::new(COMMUNITY));
    c
}

fn v3(target: &str, user: &str, auth: &str, privacy: Option<&str>) -> CheckConfig {
    let mut c = check(CheckTypeName::Snmp, target);
    c.version = Some("3".into());
    c.user = Some(user.into());
    c.auth_proto = Some("sha256".into());
    c.auth_key = Some(Secret::new(auth));
    if let Some(p) = privacy {
        c.priv_proto = Some("aes".into());
        c.priv_key = Some(Secret::new(p));
    }
    c
}

fn pairs(d: &SnmpDetail) -> Vec<(String, String)> {
    d.varbinds
        .iter()
        .map(|v| (v.oid.clone(), v.value.clone()))
        .collect()
}

const SYSTEM: [&str; 6] = [
    "1.3.6.1.2.1.1.1.0",
    "1.3.6.1.2.1.1.2.0",
    "1.3.6.1.2.1.1.4.0",
    "1.3.6.1.2.1.1.5.0",
    "1.3.6.1.2.1.1.6.0",
    "1.3.6.1.2.1.1.8.0",
];

#[tokio::test]
async fn v2c_get_and_walk_equal_net_snmp_tools() {
    let d = Snmpd::start();
    let mut c = v2c(&d.target());
    c.oids = Some(SYSTEM.iter().map(|s| s.to_string()).collect());
    let r = run_check(&spec(&c)).await;
    assert_result(&r, State::Up, FailureClass::Unspecified);
    assert_eq!(pairs(snmp(&r)), d.snmpget(&SYSTEM).unwrap());
    assert_eq!(snmp(&r).version, "v2c");

    // A table walk (ifTable: strings, integers, hex MAC addresses, counters
    // excluded because they move) and the system group.
    for root in [
        "1.3.6.1.2.1.2.2.1.2",
        "1.3.6.1.2.1.2.2.1.6",
        "1.3.6.1.2.1.2.2.1.8",
        "1.3.6.1.2.1.1.9.1.3",
    ] {
        let mut c = v2c(&d.target());
        c.walk = Some(root.into());
        let r = run_check(&spec(&c)).await;
        assert_result(&r, State::Up, FailureClass::Unspecified);
        assert_eq!(pairs(snmp(&r)), d.snmpwalk(root).unwrap(), "walk {root}");
    }

    // A long walk that needs many GETBULK round trips.
    let mut c = v2c(&d.target());
    c.walk = Some("1.3.6.1.2.1.1".into());
    let r = run_check(&spec(&c)).await;
    let ours = pairs(snmp(&r));
    let theirs = d.snmpwalk("1.3.6.1.2.1.1").unwrap();
    assert_eq!(ours.len(), theirs.len());
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(a.0, b.0);
        if a.0 != "1.3.6.1.2.1.1.3.0" {
            assert_eq!(a.1, b.1, "{}", a.0);
        }
    }

    // Missing object.
    let mut c = v2c(&d.target());
    c.oids = Some(vec!["1.3.6.1.2.1.1.99.0".into()]);
    let r = run_check(&spec(&c)).await;
    assert_result(&r, State::Down, FailureClass::SnmpError);
}

#[tokio::test]
async fn v3_auth_priv_and_auth_no_priv() {
    let d = Snmpd::start();
    let want = d.snmpget(&SYSTEM).unwrap();
    for c in [
        v3(&d.target(), V3_USER, V3_AUTH, Some(V3_PRIV)),
        v3(&d.target(), V3_AUTH_ONLY_USER, V3_AUTH, None),
    ] {
        let mut c = c;
        c.oids = Some(SYSTEM.iter().map(|s| s.to_string()).collect());
        let r = run_check(&spec(&c)).await;
        assert_result(&r, State::Up, FailureClass::Unspecified);
        assert_eq!(pairs(snmp(&r)), want);
        assert_eq!(snmp(&r).version, "v3");
        let json = serde_json::to_string(&r).unwrap();
        assert!(
            !json.contains(V3_AUTH) && !json.contains(V3_PRIV),
            "no secrets in results"
        );
    }
    // GETBULK walk over v3 authPriv.
    let mut c = v3(&d.target(), V3_USER, V3_AUTH, Some(V3_PRIV));
    c.walk = Some("1.3.6.1.2.1.2.2.1.2".into());
    let r = run_check(&spec(&c)).await;
    assert_eq!(pairs(snmp(&r)), d.snmpwalk("1.3.6.1.2.1.2.2.1.2").unwrap());
}

#[tokio::test]
async fn wrong_credentials_are_classified() {
    let d = Snmpd::start();
    // v3 wrong auth key: the agent answers with a usmStatsWrongDigests report.
    let mut c = v3(&d.target(), V3_USER, "not-the-key", Some(V3_PRIV));
    c.oids = Some(vec!["1.3.6.1.2.1.1.5.0".into()]);
    let r = run_check(&spec(&c)).await;
    assert_result(&r, State::Down, FailureClass::SnmpAuth);
    assert!(r.message.contains("authentication key"), "{}", r.message);
    assert!(!r.message.contains("not-the-key"));

    // v3 unknown user.
    let mut c = v3(&d.target(), "nobody-here", V3_AUTH, None);
    c.oids = Some(vec!["1.3.6.1.2.1.1.5.0".into()]);
    let r = run_check(&spec(&c)).await;
    assert_result(&r, State::Down, FailureClass::SnmpAuth);

    // authPriv user asked without privacy: unsupported security level.
    let mut c = v3(&d.target(), V3_USER, V3_AUTH, None);
    c.oids = Some(vec!["1.3.6.1.2.1.1.5.0".into()]);
    let r = run_check(&spec(&c)).await;
    assert_eq!(state(&r), State::Down);
    assert!(
        matches!(failure(&r), FailureClass::SnmpAuth),
        "VACM/USM refusal is an auth failure: {r:?}"
    );

    // v2c wrong community: v2c agents drop the request silently, so this is
    // a timeout whose message points at the community.
    let mut c = v2c(&d.target());
    c.community = Some(Secret::new("wrong-community"));
    c.oids = Some(vec!["1.3.6.1.2.1.1.5.0".into()]);
    c.timeout = Duration::from_millis(600);
    let r = run_check(&spec(&c)).await;
    assert_result(&r, State::Down, FailureClass::Timeout);
    assert!(r.message.contains("community"), "{}", r.message);
    assert!(!r.message.contains("wrong-community"));

    // Nothing listening: ICMP port unreachable -> refused.
    let mut c = v2c(&format!("127.0.0.1:{}", free_udp_port()));
    c.oids = Some(vec!["1.3.6.1.2.1.1.5.0".into()]);
    c.timeout = Duration::from_millis(600);
    let r = run_check(&spec(&c)).await;
    assert_result(&r, State::Down, FailureClass::Refused);
}

#[tokio::test]
async fn presets_report_health_metrics() {
    let d = Snmpd::start();
    for (preset, metric) in [
        ("uptime", "uptime_seconds"),
        ("interfaces", "interfaces.up"),
        ("cpu", "cpu.load1"),
        ("memory", "mem.total_bytes"),
    ] {
        let mut c = v2c(&d.target());
        c.preset = Some(preset.into());
        let r = run_check(&spec(&c)).await;
        assert_result(&r, State::Up, FailureClass::Unspecified);
        assert_eq!(snmp(&r).preset, preset);
        assert!(
            snmp(&r).metrics.contains_key(metric),
            "{preset}: {:?}",
            snmp(&r).metrics
        );
        if preset == "interfaces" {
            assert!(
                snmp(&r)
                    .varbinds
                    .iter()
                    .any(|v| v.oid == "1.3.6.1.2.1.1.3.0" && v.value_type == "TimeTicks"),
                "interfaces preset without sysUpTime.0"
            );
        }
    }
}

#[tokio::test]
async fn memory_preset_falls_back_to_hr_storage_without_ucd() {
    // UCD-SNMP-MIB hidden: the preset must use hrStorageRam instead.
    let d = Snmpd::start_hiding(Some(".1.3.6.1.4.1.2021"));
    let hidden = d.snmpget(&["1.3.6.1.4.1.2021.4.5.0"]);
    assert!(
        hidden
            .as_ref()
            .is_none_or(|o| o.iter().all(|(_, v)| v.contains("No Such"))),
        "UCD memory must be hidden for this test: {hidden:?}"
    );
    let mut c = v2c(&d.target());
    c.preset = Some("memory".into());
    let r = run_check(&spec(&c)).await;
    assert_result(&r, State::Up, FailureClass::Unspecified);
    let m = &snmp(&r).metrics;
    let total = m["mem.total_bytes"];
    let avail = m["mem.available_bytes"];
    let used = m["mem.used_percent"];
    assert!(total > 1e6, "{m:?}");
    assert!(avail >= 0.0 && avail <= total, "{m:?}");
    assert!((0.0..=100.0).contains(&used), "{m:?}");
    assert!(
        snmp(&r)
            .varbinds
            .iter()
            .any(|v| v.oid.starts_with("1.3.6.1.2.1.25.2.3.1.5.")),
        "hrStorageSize varbind missing: {:?}",
        snmp(&r).varbinds
    );
    // With UCD visible the preset keeps using it (no hrStorage varbinds).
    let full = Snmpd::start();
    let r = run_check(&spec(&v2c_preset(&full.target(), "memory"))).await;
    assert_result(&r, State::Up, FailureClass::Unspecified);
    assert!(
        snmp(&r)
            .varbinds
            .iter()
            .all(|v| !v.oid.starts_with("1.3.6.1.2.1.25.2.3.1.")),
        "{:?}",
        snmp(&r).varbinds
    );
}

fn v2c_preset(target: &str, preset: &str) -> owlet_probe::CheckConfig {
    let mut c = v2c(target);
    c.preset = Some(preset.into());
    c
}

#[tokio::test]
async fn restart_is_detected_as_reboot_and_rates_are_computed() {
    let mut d = Snmpd::start();
    // Let sysUpTime grow past a few seconds so the restart makes it go back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut up = v2c(&d.target());
    up.id = "uptime".into();
    up.preset = Some("uptime".into());
    up.interval = Duration::from_secs(1);
    up.timeout = Duration::from_millis(900);
    let mut ifs = v2c(&d.target());
    ifs.id = "ifs".into();
    ifs.preset = Some("interfaces".into());
    ifs.interval = Duration::from_secs(1);
    ifs.timeout = Duration::from_millis(900);
    let config = ProbeConfig {
        max_concurrency: 4,
        checks: vec![up, ifs],
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let handle = owlet_probe::spawn(config, tx);

    let mut uptime_results = 0;
    let mut saw_rate = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut restarted = false;
    let mut rebooted = false;
    let mut ifs_rebooted = false;
    let mut reboot_alerts = std::collections::HashSet::new();
    while tokio::time::Instant::now() < deadline
        && !(rebooted && saw_rate && ifs_rebooted && reboot_alerts.len() == 2)
    {
        let ev = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap()
            .unwrap();
        if let Some(Kind::Alert(a)) = &ev.kind
            && a.name == "device_rebooted"
        {
            assert!(restarted, "reboot alert before the restart");
            assert_eq!(a.severity(), owlet_proto::v1::Severity::Warning);
            assert!(a.message.contains("rebooted"), "{}", a.message);
            reboot_alerts.insert(a.subject.clone());
        }
        let Some(Kind::CheckResult(r)) = ev.kind else {
            continue;
        };
        if r.check_id == "ifs" {
            saw_rate |= snmp(&r).metrics.keys().any(|k| k.ends_with(".in_bps"));
            // The interfaces preset carries sysUpTime.0 too, so its rates
            // are guarded against the reboot as well.
            if snmp(&r).reboot_detected {
                assert!(restarted, "ifs: reboot reported before the restart");
                ifs_rebooted = true;
            }
            continue;
        }
        if state(&r) != State::Up {
            continue;
        }
        uptime_results += 1;
        if snmp(&r).reboot_detected {
            assert!(restarted, "reboot reported before the restart");
            assert!(r.message.contains("rebooted"), "{}", r.message);
            rebooted = true;
        }
        if uptime_results == 2 && !restarted {
            d.restart();
            restarted = true;
        }
    }
    handle.shutdown().await;
    assert!(rebooted, "snmpd restart was not detected as a reboot");
    assert!(saw_rate, "interface rates were never computed");
    assert!(ifs_rebooted, "interfaces preset did not see the reboot");
    assert_eq!(
        reboot_alerts.len(),
        2,
        "each check raises a device_rebooted alert: {reboot_alerts:?}"
    );
}

#[tokio::test]
async fn malformed_replies_are_protocol_errors() {
    // A fake agent answering every request with junk or a truncated message.
    for junk in [
        &b"\x30\x82\xff\xff\x02\x01"[..],
        &b"hello, not BER"[..],
        &b"\x30\x03\x02\x01\x01"[..],
    ] {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = sock.local_addr().unwrap().port();
        let junk = junk.to_vec();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok((_, from)) = sock.recv_from(&mut buf).await {
                let _ = sock.send_to(&junk, from).await;
            }
        });
        for c in [
            v2c(&format!("127.0.0.1:{port}")),
            v3(&format!("127.0.0.1:{port}"), "u", V3_AUTH, None),
        ] {
            let mut c = c;
            c.oids = Some(vec!["1.3.6.1.2.1.1.5.0".into()]);
            c.timeout = Duration::from_millis(500);
            let r = run_check(&spec(&c)).await;
            assert_result(&r, State::Down, FailureClass::Protocol);
        }
        task.abort();
    }
}
