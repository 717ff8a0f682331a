//! The optional Prometheus exposition (`control.prometheus_listen`): a real
//! agent with a check that is down serves `/metrics`, which Prometheus' own
//! `promtool check metrics` accepts and which says what `owlet health`
//! says; other paths are refused; a non-loopback address is a config error.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use owlet_tests::*;

/// `GET path` over plain HTTP/1.1; the whole response.
fn get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    response
}

/// Two TCP checks (so a metric family holds several samples): one to a
/// closed port, one to the SOC.
fn checks(closed: u16, soc: &str) -> toml::Value {
    toml::Value::Array(vec![
        tcp_check("closed-port", &format!("127.0.0.1:{closed}")),
        tcp_check("soc-port", soc),
    ])
}

#[test]
fn metrics_pass_promtool_and_agree_with_health() {
    let mut soc = Soc::init();
    soc.start();
    let mut agent = soc.issue("acme", "prom");
    let port = free_port();
    agent
        .set("control", "prometheus_listen", format!("127.0.0.1:{port}"))
        .set("probe", "check", checks(free_port(), &soc.address()));
    agent.start();
    wait_until("one check down, one up", Duration::from_secs(30), || {
        agent.health().is_some_and(|h| {
            h["reasons"]
                .to_string()
                .contains("1 check down: closed-port")
                && h["collectors"]["checks"]["detail"]
                    .to_string()
                    .contains("STATE_UP")
        })
    });

    let response = get(port, "/metrics");
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    for line in [
        "owlet_health_status 1",
        "owlet_soc_connected 1",
        "owlet_check_state{check=\"closed-port\",type=\"tcp\"} 3",
        "owlet_check_state{check=\"soc-port\",type=\"tcp\"} 1",
        "owlet_collector_running{collector=\"checks\"} 1",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "missing {line:?} in\n{body}"
        );
    }

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (apt-get install prometheus)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool: {}{}\n{body}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    assert!(get(port, "/").starts_with("HTTP/1.1 404"));
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "POST /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut refused = String::new();
    s.read_to_string(&mut refused).unwrap();
    assert!(refused.starts_with("HTTP/1.1 405"), "{refused}");
    agent.stop();
}

#[test]
fn a_network_address_is_refused_with_the_reason() {
    let soc = Soc::init();
    let mut agent = soc.issue("acme", "prom2");
    agent.set("control", "prometheus_listen", "0.0.0.0:9465");
    agent.write_config();
    let out = output(owlet().args(["check-config"]).arg(&agent.config_path));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("control.prometheus_listen") && err.contains("not a loopback address"),
        "{err}"
    );
}
