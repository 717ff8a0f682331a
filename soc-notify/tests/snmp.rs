//! SNMP notifications against Debian's snmptrapd on loopback: a v2c trap, a
//! v2c inform, a v3 (authPriv, SHA-256 + AES) trap with owlet's engine id,
//! and a v3 inform with engine discovery. snmptrapd logs only what it
//! authenticated, so a trap in its log proves the community or the USM
//! keys, the HMAC and the encryption were right.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use owlet_proto::v1::Severity;
use tokio::process::{Child, Command};

const SNMPTRAPD: &str = "/usr/sbin/snmptrapd";
const COMMUNITY: &str = "owlet-test-community";
const V3_USER: &str = "owletv3";
const AUTH_KEY: &str = "owlet-auth-key-1";
const PRIV_KEY: &str = "owlet-priv-key-1";
/// owlet's default engine id (channel::snmp::default_engine_id) in hex.
const OWLET_ENGINE: &str = "0x80007ED9046F776C65742D736F63";

struct Snmptrapd {
    port: u16,
    log: std::path::PathBuf,
    child: Child,
}

impl Snmptrapd {
    async fn start(dir: &Path) -> Self {
        require(SNMPTRAPD, "snmptrapd");
        let port = free_udp_port();
        let conf = dir.join("snmptrapd.conf");
        // Traps are authenticated with the sender's engine id (-e); informs
        // with snmptrapd's own (the user without -e).
        std::fs::write(
            &conf,
            format!(
                "authCommunity log {COMMUNITY}\n\
                 createUser -e {OWLET_ENGINE} {V3_USER} SHA-256 {AUTH_KEY} AES {PRIV_KEY}\n\
                 createUser {V3_USER} SHA-256 {AUTH_KEY} AES {PRIV_KEY}\n\
                 authUser log {V3_USER} priv\n"
            ),
        )
        .unwrap();
        let log = dir.join("snmptrapd.log");
        let child = Command::new(SNMPTRAPD)
            .env("SNMP_PERSISTENT_DIR", dir.join("persist"))
            .env("MIBS", "")
            .args(["-f", "-C", "-On", "-m", ""])
            .arg("-c")
            .arg(&conf)
            .arg("-Lf")
            .arg(&log)
            .arg(format!("udp:127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let me = Snmptrapd { port, log, child };
        wait_for("snmptrapd to start", Duration::from_secs(30), || {
            me.text().contains("NET-SNMP version").then_some(())
        })
        .await;
        me
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

fn channel(name: &str, port: u16, body: &str) -> String {
    format!(
        r#"
[[notify.channel]]
name = "{name}"
tenants = ["acme"]
type = "snmp_trap"
target = "127.0.0.1:{port}"
timeout = "2s"
{body}
[[notify.rule]]
name = "to-{name}"
tenant = "acme"
group_window = "500ms"
channels = ["{name}"]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traps_and_informs_v2c_and_v3_reach_snmptrapd_with_their_varbinds() {
    // Broken once on purpose: with the v3 HMAC left zero (not written into
    // msgAuthenticationParameters), snmptrapd dropped the v3 messages and
    // the test failed waiting for "four notifications out".
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let trapd = Snmptrapd::start(dir.path()).await;
    let community = secret(dir.path(), "community", COMMUNITY);
    let auth = secret(dir.path(), "auth", AUTH_KEY);
    let privacy = secret(dir.path(), "priv", PRIV_KEY);
    let v2c = format!(
        "version = \"v2c\"\ncommunity_file = \"{}\"",
        community.display()
    );
    let v3 = format!(
        "version = \"v3\"\nuser = \"{V3_USER}\"\nauth_protocol = \"sha256\"\n\
         auth_key_file = \"{}\"\npriv_protocol = \"aes\"\npriv_key_file = \"{}\"",
        auth.display(),
        privacy.display()
    );
    let config =
        "[notify]\npoll_interval = \"100ms\"\n[notify.retry]\ninitial = \"200ms\"\nmax = \"1s\"\n"
            .to_string()
            + &channel("v2c-trap", trapd.port, &v2c)
            + &channel("v2c-inform", trapd.port, &format!("{v2c}\ninform = true"))
            + &channel("v3-trap", trapd.port, &v3)
            + &channel("v3-inform", trapd.port, &format!("{v3}\ninform = true"));
    store_events(
        &root,
        "acme",
        "fw1",
        &[file_change(1, "/etc/nftables.conf", Severity::Critical)],
    );
    let notifier = Notifier::start(&root, &config);
    let rows = wait_for("four notifications out", Duration::from_secs(60), || {
        let rows = history(&root, "acme");
        (rows.len() == 4 && rows.iter().all(|r| r.status == "delivered")).then_some(rows)
    })
    .await;
    for r in &rows {
        let d = &r.deliveries[0];
        let expect = if d.channel.ends_with("inform") {
            // An inform is delivered only on snmptrapd's Response.
            "delivered"
        } else {
            "sent"
        };
        assert_eq!(d.status, expect, "{}: {d:?}", d.channel);
        assert_eq!(d.attempts, 1, "{}: {d:?}", d.channel);
        let id = format!(".1.3.6.1.4.1.32473.1.1.2 = INTEGER: {}", r.notification_id);
        let text = wait_for(
            &format!("snmptrapd to log the {} notification", d.channel),
            Duration::from_secs(10),
            || {
                let t = trapd.text();
                t.contains(&id).then_some(t)
            },
        )
        .await;
        let entry = text.lines().find(|l| l.contains(&id)).unwrap().to_string();
        for want in [
            ".1.3.6.1.6.3.1.1.4.1.0 = OID: .1.3.6.1.4.1.32473.1.0.1",
            ".1.3.6.1.4.1.32473.1.1.1 = STRING: \"acme\"",
            ".1.3.6.1.4.1.32473.1.1.3 = INTEGER: 3",
            ".1.3.6.1.4.1.32473.1.1.4 = STRING: \"[owlet acme] CRITICAL: file_modified on /etc/nftables.conf (sensor fw1)\"",
            ".1.3.6.1.4.1.32473.1.1.5 = STRING: \"/etc/nftables.conf (sensor fw1)\"",
            ".1.3.6.1.4.1.32473.1.1.8 = Gauge32: 1",
            ".1.3.6.1.4.1.32473.1.1.11 = STRING: \"acme/fw1/1\"",
        ] {
            assert!(
                entry.contains(want),
                "{}: no `{want}` in\n{entry}",
                d.channel
            );
        }
        assert!(
            entry.contains(".1.3.6.1.4.1.32473.1.1.7 = STRING: \"20"),
            "{entry}"
        );
        assert!(entry.contains("changed by uid=0(root)"), "{entry}");
    }
    notifier.stop().await;
    trapd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v3_inform_with_a_wrong_key_is_not_recorded_delivered() {
    // The inform's acknowledgement is what makes it `delivered`: with a
    // wrong auth key snmptrapd drops the inform and the delivery retries.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let trapd = Snmptrapd::start(dir.path()).await;
    let auth = secret(dir.path(), "auth", "not-the-right-key");
    let privacy = secret(dir.path(), "priv", PRIV_KEY);
    let v3 = format!(
        "version = \"v3\"\nuser = \"{V3_USER}\"\nauth_key_file = \"{}\"\npriv_key_file = \"{}\"\ninform = true",
        auth.display(),
        privacy.display()
    );
    let config =
        "[notify]\npoll_interval = \"100ms\"\n[notify.retry]\ninitial = \"200ms\"\nmax = \"1s\"\n"
            .to_string()
            + &channel("v3-inform", trapd.port, &v3);
    store_events(
        &root,
        "acme",
        "fw1",
        &[alert(1, "check_down", Severity::Critical, "shop")],
    );
    let notifier = Notifier::start(&root, &config);
    let d = wait_for("a failed inform attempt", Duration::from_secs(60), || {
        let rows = history(&root, "acme");
        let d = rows.first()?.deliveries.first()?.clone();
        (d.attempts >= 1 && d.status == "retrying").then_some(d)
    })
    .await;
    assert!(d.delivered_us.is_none());
    assert!(d.last_error.is_some());
    assert!(
        !trapd.text().contains("32473.1.1.2"),
        "snmptrapd accepted a wrong key"
    );
    notifier.stop().await;
    trapd.stop().await;
}
