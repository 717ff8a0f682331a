//! The notification flow end to end (the guideline's pre-service test): a
//! real agent's check goes down, the real `owlet-soc serve` with a
//! `[notify]` section mails it through a real SMTP server (Debian's
//! aiosmtpd, STARTTLS and AUTH required), and `owlet-soc notifications`
//! lists it with its time from detection to delivery.

use std::io::BufRead;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use owlet_tests::*;

#[test]
fn a_check_going_down_is_mailed_and_listed() {
    let mut soc = Soc::init();
    let mails = soc.tmp.path().join("mails");
    std::fs::create_dir_all(&mails).unwrap();
    let smtp_port = free_port();
    let server = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../soc-notify/tests/smtp_server.py"
    );
    // Debian's python3, where python3-aiosmtpd lives (not a pyenv in PATH).
    let mut smtp = Command::new("/usr/bin/python3")
        .arg(server)
        .arg(smtp_port.to_string())
        .arg(soc.ca_dir.join("soc.pem"))
        .arg(soc.ca_dir.join("soc.key"))
        .arg(&mails)
        .args(["owlet", "s3cret-mail-pass"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with aiosmtpd (apt-get install python3-aiosmtpd)");
    let mut ready = String::new();
    std::io::BufReader::new(smtp.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(
        ready.trim(),
        "ready",
        "the SMTP server did not start (apt-get install python3-aiosmtpd)"
    );

    let password = soc.ca_dir.join("smtp.pass");
    std::fs::write(&password, "s3cret-mail-pass").unwrap();
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut text = std::fs::read_to_string(&soc.config).unwrap();
    text.push_str(&format!(
        r#"
[notify]
poll_interval = "100ms"

[[notify.rule]]
name = "acme-all"
tenant = "acme"
min_severity = "info"
kinds = ["alert"]
sources = ["check"]
group_window = "0s"
channels = ["acme-mail"]

[[notify.channel]]
name = "acme-mail"
tenants = ["acme"]
type = "smtp"
server = "localhost"
port = {smtp_port}
user = "owlet"
password_file = "smtp.pass"
from = "owlet SOC <soc@example.net>"
to = ["noc@acme.example"]
ca_file = "ca.pem"
"#
    ));
    std::fs::write(&soc.config, text).unwrap();
    soc.set(
        "tenants",
        "acme",
        toml::Value::Table({
            let mut t = toml::Table::new();
            t.insert("time_zone".into(), "Asia/Tokyo".into());
            t
        }),
    );
    soc.start();

    let mut agent = soc.issue("acme", "fw1");
    let mut check = toml::Table::new();
    check.insert("id".into(), "db-port".into());
    check.insert("type".into(), "tcp".into());
    check.insert("target".into(), format!("127.0.0.1:{}", free_port()).into());
    check.insert("interval".into(), "1s".into());
    check.insert("timeout".into(), "1s".into());
    agent.set("probe", "check", toml::Value::Array(vec![check.into()]));
    agent.start();

    wait_until("a mail about db-port", DEADLINE, || {
        std::fs::read_dir(&mails).unwrap().any(|m| {
            std::fs::read_to_string(m.unwrap().path()).is_ok_and(|t| t.contains("db-port"))
        })
    });
    let mail = std::fs::read_dir(&mails)
        .unwrap()
        .map(|m| std::fs::read_to_string(m.unwrap().path()).unwrap())
        .find(|t| t.contains("db-port"))
        .unwrap();
    let mail: serde_json::Value = serde_json::from_str(&mail).unwrap();
    assert_eq!(mail["rcpt_tos"][0], "noc@acme.example", "{mail}");
    assert_eq!(mail["tls"], true, "the mail went without STARTTLS: {mail}");
    assert!(
        mail["data"].as_str().unwrap().contains("+09:00"),
        "the mail's times are not in the tenant's zone: {mail}"
    );

    wait_until("the notification recorded delivered", DEADLINE, || {
        let out = output(
            owlet_soc()
                .args(["notifications", "--tenant", "acme", "--json", "--config"])
                .arg(&soc.config),
        );
        String::from_utf8_lossy(&out.stdout).contains("\"delivered\"")
    });
    let listing = run_ok(
        owlet_soc()
            .args(["notifications", "--tenant", "acme", "--config"])
            .arg(&soc.config),
    );
    assert!(listing.contains("noc@acme.example"), "{listing}");
    // The SMTP password never reaches the SOC's stores or logs.
    for path in [soc.db.clone(), soc.db().tenant_file("acme")] {
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("s3cret-mail-pass"),
            "{path:?}"
        );
    }
    assert!(!soc.log().contains("s3cret-mail-pass"));
    agent.stop();
    drop(smtp.stdin.take());
    let _ = smtp.wait();
}
