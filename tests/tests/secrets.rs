//! Nothing secret leaves the sensor or rests on it in clear, proven with the
//! real agent and the real SOC: secrets are planted in watched files (a
//! shadow file, a private key, an IKE PSK file, a config with a password, a
//! bearer token and an SNMP community) and in the command line of a busy
//! process. The files are edited while the agent runs and while it is
//! stopped, the agent is restarted, and then every byte of the agent's
//! state directory, its log and the SOC's database files is searched for
//! every planted value. None may be found; the changes themselves must
//! still arrive (hashes, and redacted diffs where diffs are allowed).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use owlet_proto::v1::event::Kind;
use owlet_tests::*;

/// Every regular file under `dir`, with its bytes.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            match fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => stack.push(p),
                Ok(m) if m.is_file() => out.push((p.clone(), fs::read(&p).unwrap_or_default())),
                _ => {}
            }
        }
    }
    out
}

/// A process that keeps a core busy (so it tops the CPU list), with a
/// password in its command line.
struct Burner(Child);

impl Burner {
    fn start(secret: &str) -> Burner {
        let child = Command::new("sh")
            .arg("-c")
            .arg("while :; do :; done")
            .arg("burner")
            .arg(format!("--password={secret}"))
            .spawn()
            .unwrap();
        Burner(child)
    }
}

impl Drop for Burner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn no_planted_secret_reaches_the_soc_or_rests_on_the_sensor() {
    let mut soc = Soc::init();
    soc.start();
    let db = soc.db();
    let mut agent = soc.issue("acme", "secrets");
    let tree = agent.dir.join("etc");
    fs::create_dir_all(&tree).unwrap();
    // Each planted value is unique, so a hit names what leaked.
    let planted: Vec<String> = [
        "ShadowHashOne0123456789abcdefABCDEFghij",
        "ShadowHashTwo9876543210zyxwvuZYXWVUtsrq",
        "ConfPasswordOne-Xq7",
        "ConfPasswordTwo-Zr9",
        "ConfPasswordStopped-Wp3",
        "PskValueOne-Lm4",
        "PskValueStopped-Kn5",
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjPlantedKeyLine",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwbGFudGVkIn0.PlantedJwtSig",
        "CommunityPlanted77",
        "CmdLinePlantedSecret",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let p = |i: usize| planted[i].as_str();
    let shadow = tree.join("shadow");
    let conf = tree.join("app.conf");
    let psk = tree.join("ipsec.secrets");
    let key = tree.join("tls.pem");
    let nginx = tree.join("nginx.conf");
    let snmpd = tree.join("snmpd.conf");
    fs::write(
        &shadow,
        format!("root:$6$saltsalt${}:19000:0:99999:7:::\n", p(0)),
    )
    .unwrap();
    fs::write(&conf, format!("listen = 443\npassword = {}\n", p(2))).unwrap();
    fs::write(&psk, format!("%any : PSK \"{}\"\n", p(5))).unwrap();
    fs::write(
        &key,
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            p(7)
        ),
    )
    .unwrap();
    fs::write(&nginx, "server { listen 80; }\n").unwrap();
    fs::write(&snmpd, "sysLocation lab\n").unwrap();

    let mut rule = toml::Table::new();
    rule.insert("path".into(), tree.display().to_string().into());
    agent
        .set("fim", "watch", vec![toml::Value::Table(rule)])
        .set("host", "interval", "1s");
    let _burner = Burner::start(p(10));
    agent.start();
    wait_until("the first baseline at the SOC", DEADLINE, || {
        db.events().iter().any(
            |e| matches!(&e.event.kind, Some(Kind::Alert(a)) if a.name == "fim_baseline_ready"),
        )
    });

    // Edits while the agent runs.
    fs::write(
        &shadow,
        format!("root:$6$othersal${}:19001:0:99999:7:::\n", p(1)),
    )
    .unwrap();
    fs::write(&conf, format!("listen = 8443\npassword = {}\n", p(3))).unwrap();
    fs::write(
        &nginx,
        format!(
            "server {{ listen 80; proxy_set_header Authorization \"Bearer {}\"; }}\n",
            p(8)
        ),
    )
    .unwrap();
    fs::write(
        &snmpd,
        format!("sysLocation lab\nrocommunity {} default\n", p(9)),
    )
    .unwrap();
    let path = |f: &Path| f.display().to_string();
    wait_until("four changes at the SOC", DEADLINE, || {
        let seen = db.file_changes();
        [&shadow, &conf, &nginx, &snmpd]
            .iter()
            .all(|f| seen.iter().any(|c| c.path == path(f)))
    });
    wait_until("host health naming the busy process", DEADLINE, || {
        db.events().iter().any(|e| match &e.event.kind {
            Some(Kind::HostMetrics(m)) => m
                .top_processes
                .iter()
                .any(|t| t.command_line.contains("burner")),
            _ => false,
        })
    });

    // Edits while it is stopped, then a restart.
    agent.stop();
    fs::write(&conf, format!("listen = 8443\npassword = {}\n", p(4))).unwrap();
    fs::write(&psk, format!("%any : PSK \"{}\"\n", p(6))).unwrap();
    agent.start();
    wait_until("the changes made while stopped", DEADLINE, || {
        let seen = db.file_changes();
        seen.iter()
            .any(|c| c.path == path(&psk) && c.while_agent_stopped)
            && seen
                .iter()
                .any(|c| c.path == path(&conf) && c.while_agent_stopped)
    });
    agent.stop();
    soc.stop();

    // The changes arrived, as hashes or redacted diffs.
    let changes = db.file_changes();
    for f in [&shadow, &psk] {
        let c = changes.iter().find(|c| c.path == path(f)).unwrap();
        assert_eq!(
            (c.diff.as_str(), c.diff_skipped.as_str()),
            ("", "secret_file"),
            "{c:?}"
        );
        assert!(!c.new_sha256.is_empty(), "{c:?}");
    }
    let c = changes.iter().find(|c| c.path == path(&conf)).unwrap();
    assert!(c.diff.contains("+listen = 8443"), "{c:?}");
    assert!(c.diff.contains("+password = [redacted:"), "{c:?}");
    let c = changes.iter().find(|c| c.path == path(&snmpd)).unwrap();
    assert!(c.diff.contains("+rocommunity [redacted"), "{c:?}");

    // Not one planted value in anything stored or logged.
    let mut stored = files_under(&agent.state_dir);
    stored.extend(files_under(soc.db.parent().unwrap()));
    stored.push((PathBuf::from("agent log"), agent.log().into_bytes()));
    stored.push((PathBuf::from("SOC log"), soc.log().into_bytes()));
    assert!(
        stored.iter().any(|(p, _)| p.ends_with("fim/content/pack")),
        "the content store was searched too"
    );
    assert!(
        stored.iter().any(|(p, _)| p == &soc.db),
        "the SOC database was searched"
    );
    let mut leaks = Vec::new();
    for secret in &planted {
        for (p, bytes) in &stored {
            if bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
                leaks.push(format!("{secret} in {}", p.display()));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "planted secrets found:\n{}",
        leaks.join("\n")
    );
}
