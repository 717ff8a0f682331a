//! What `owlet-soc ca issue` writes works as written: the SOC's name (the
//! host of `--soc` must be a name the SOC's certificate carries — else
//! `server_name` is written when the certificate has exactly one name, and
//! the issue is refused with the fix when it has several), caught again by
//! `owlet check-config` on the sensor from the `soc.pem` copied beside
//! `ca.pem`; and the hardware profile (`small` unless `--hw-profile`).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use owlet_tests::*;

/// `owlet-soc ca init` with `names` as the SOC's names, listening on a
/// free loopback port.
fn init(dir: &Path, names: &[&str]) -> (PathBuf, u16) {
    let ca = dir.join("ca");
    let port = free_port();
    let mut cmd = owlet_soc();
    cmd.args(["ca", "init", "--dir"]).arg(&ca);
    for name in names {
        cmd.args(["--soc-name", name]);
    }
    cmd.args(["--listen", &format!("127.0.0.1:{port}")]);
    run_ok(&mut cmd);
    (ca, port)
}

/// `owlet-soc ca issue --layout user` for agent `id` with `extra` arguments.
fn issue(ca: &Path, out: &Path, id: &str, extra: &[&str]) -> std::process::Output {
    output(
        owlet_soc()
            .args([
                "ca", "issue", "--layout", "user", "--tenant", "acme", "--agent", id,
            ])
            .arg("--dir")
            .arg(ca)
            .arg("--out")
            .arg(out)
            .args(extra),
    )
}

fn config(out: &Path) -> toml::Table {
    fs::read_to_string(out.join("owlet.toml"))
        .unwrap()
        .parse()
        .unwrap()
}

/// The case that used to pass every check and then fail at every connect:
/// `ca init --soc-name soc.test`, `ca issue --soc 127.0.0.1:PORT`.
#[test]
fn a_soc_certificate_with_one_other_name_gets_server_name_and_the_agent_connects() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, port) = init(tmp.path(), &["soc.test"]);
    let out = tmp.path().join("agent");
    let address = format!("127.0.0.1:{port}");
    let issued = issue(&ca, &out, "one", &["--soc", &address]);
    assert!(issued.status.success(), "{}", combined(&issued));
    assert!(
        combined(&issued).contains("server_name = \"soc.test\" written"),
        "{}",
        combined(&issued)
    );
    let written = config(&out);
    assert_eq!(written["soc"]["address"].as_str(), Some(address.as_str()));
    assert_eq!(written["soc"]["server_name"].as_str(), Some("soc.test"));
    assert!(
        out.join("soc.pem").is_file(),
        "soc.pem not copied beside ca.pem"
    );
    let check = output(owlet().arg("check-config").arg(out.join("owlet.toml")));
    assert_eq!(check.status.code(), Some(0), "{}", combined(&check));
    assert!(
        !combined(&check).contains("warning"),
        "{}",
        combined(&check)
    );

    // And it works: the agent connects and is stored.
    let mut cmd = owlet_soc();
    cmd.args(["serve", "--config"]).arg(ca.join("soc.toml"));
    let mut soc = Proc::spawn("owlet-soc", cmd, tmp.path());
    let mut cmd = owlet();
    cmd.args(["run", "--config"]).arg(out.join("owlet.toml"));
    let mut agent = Proc::spawn("owlet", cmd, tmp.path());
    let db = Db {
        path: ca.join("soc.db"),
    };
    wait_until(
        "the agent's events stored at the SOC",
        Duration::from_secs(60),
        || {
            if let Some(status) = agent.try_wait() {
                panic!("the agent exited with {status}:\n{}", agent.log());
            }
            !db.events_of("acme", "one").is_empty()
        },
    );
    assert!(
        !agent.log().contains("tls_name_mismatch"),
        "{}",
        agent.log()
    );
    agent.kill9();
    soc.kill9();
}

#[test]
fn several_soc_names_none_of_them_the_host_are_refused_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, port) = init(tmp.path(), &["soc.test", "soc2.test"]);
    let address = format!("127.0.0.1:{port}");
    let refused_dir = tmp.path().join("refused");
    let refused = issue(&ca, &refused_dir, "two", &["--soc", &address]);
    assert_eq!(refused.status.code(), Some(2), "{}", combined(&refused));
    for needle in [
        "is for soc.test, soc2.test, not 127.0.0.1",
        "tls_name_mismatch",
        "--server-name NAME",
    ] {
        assert!(
            combined(&refused).contains(needle),
            "`{needle}` missing:\n{}",
            combined(&refused)
        );
    }
    assert!(
        !refused_dir.join("agent.key").exists(),
        "a refused issue wrote a key"
    );

    // A name the certificate does not carry is refused too.
    let wrong = issue(
        &ca,
        &tmp.path().join("wrong"),
        "two",
        &["--soc", &address, "--server-name", "soc3.test"],
    );
    assert_eq!(wrong.status.code(), Some(2), "{}", combined(&wrong));

    let out = tmp.path().join("chosen");
    let chosen = issue(
        &ca,
        &out,
        "two",
        &["--soc", &address, "--server-name", "soc2.test"],
    );
    assert!(chosen.status.success(), "{}", combined(&chosen));
    assert_eq!(
        config(&out)["soc"]["server_name"].as_str(),
        Some("soc2.test")
    );
}

/// On the sensor: after a hand edit, `check-config` compares the name the
/// agent will check with the SOC certificate beside `ca.pem`; without that
/// certificate, an IP address without `server_name` is a warning.
#[test]
fn check_config_catches_a_name_the_soc_certificate_lacks() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, port) = init(tmp.path(), &["soc.test", "soc2.test"]);
    let out = tmp.path().join("agent");
    let issued = issue(
        &ca,
        &out,
        "edit",
        &[
            "--soc",
            &format!("127.0.0.1:{port}"),
            "--server-name",
            "soc.test",
        ],
    );
    assert!(issued.status.success(), "{}", combined(&issued));
    let file = out.join("owlet.toml");
    let original = fs::read_to_string(&file).unwrap();
    let edited: String = original
        .lines()
        .filter(|l| !l.starts_with("server_name"))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&file, &edited).unwrap();
    let line = edited
        .lines()
        .position(|l| l.starts_with("address = \"127.0.0.1:"))
        .unwrap()
        + 1;
    let check = output(owlet().arg("check-config").arg(&file));
    assert_eq!(check.status.code(), Some(2), "{}", combined(&check));
    let stderr = String::from_utf8_lossy(&check.stderr);
    let prefix = format!("{}:{line}:", file.display());
    assert!(
        stderr.lines().any(|l| l.starts_with(&prefix)
            && l.contains("soc.address: the SOC's certificate")
            && l.contains("is for soc.test, soc2.test, not 127.0.0.1")
            && l.contains("tls_name_mismatch")),
        "no `{prefix}COL: soc.address: ...` error:\n{stderr}"
    );
    // A server_name the certificate lacks: located at soc.server_name.
    fs::write(
        &file,
        original.replace("server_name = \"soc.test\"", "server_name = \"soc9.test\""),
    )
    .unwrap();
    let check = output(owlet().arg("check-config").arg(&file));
    assert_eq!(check.status.code(), Some(2), "{}", combined(&check));
    assert!(
        combined(&check).contains("soc.server_name: the SOC's certificate"),
        "{}",
        combined(&check)
    );

    // Without the SOC's certificate the name cannot be checked here: an IP
    // address without server_name is a warning, not an error.
    fs::write(&file, &edited).unwrap();
    fs::remove_file(out.join("soc.pem")).unwrap();
    let check = output(owlet().arg("check-config").arg(&file));
    assert_eq!(check.status.code(), Some(0), "{}", combined(&check));
    assert!(
        combined(&check).contains(&format!(
            "warning: soc.address 127.0.0.1:{port} is an IP address and soc.server_name is unset"
        )),
        "{}",
        combined(&check)
    );
}

/// The issued config selects the small profile (the packaged unit's
/// MemoryMax= budget), so an agent installed per the README does not run
/// on the built-in defaults (a 1 GiB spool) under MemoryMax=128M.
#[test]
fn ca_issue_selects_a_hardware_profile() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, _) = init(tmp.path(), &["localhost"]);
    let out = tmp.path().join("agent");
    let issued = issue(&ca, &out, "hw", &[]);
    assert!(issued.status.success(), "{}", combined(&issued));
    assert_eq!(config(&out)["agent"]["hw_profile"].as_str(), Some("small"));
    let shown = profile_shown("small", &out.join("owlet.toml"));
    for s in shown["settings"].as_array().unwrap() {
        assert_eq!(s["from"], "profile", "{s}");
        assert_eq!(s["value"], s["profile_value"], "{s}");
    }
    let large = tmp.path().join("large");
    let issued = issue(&ca, &large, "big", &["--hw-profile", "large"]);
    assert!(issued.status.success(), "{}", combined(&issued));
    assert_eq!(
        config(&large)["agent"]["hw_profile"].as_str(),
        Some("large")
    );
}
