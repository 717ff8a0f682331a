//! A tenant's contacts (`owlet_soc_notify::contacts`, written by the
//! portal) against a real SMTP server (aiosmtpd, STARTTLS and AUTH): a
//! contact added while the notifier runs gets the next notification, a
//! disabled one does not, a contact's minimum severity is honoured, each
//! address is sent once, one tenant's contacts never get another tenant's
//! notification, the record lists who it went to, and a damaged file keeps
//! the last good list and never costs the channel's own `to`.
//!
//! Broken once on purpose: with the contacts merge removed from the
//! notifier's compose step (`c.recipients(&[])`), the test failed at the
//! first contact assertion ("alice, added while the notifier ran, got the
//! next notification").

mod common;

use std::time::Duration;

use common::*;
use owlet_proto::v1::Severity;
use owlet_soc_notify::config::Severity as Level;
use owlet_soc_notify::contacts::{self, Contact, ContactsError};

const LIMIT: Duration = Duration::from_secs(60);

fn config(smtp: &SmtpServer) -> String {
    let mut c = r#"
[notify]
poll_interval = "100ms"
[notify.retry]
initial = "200ms"
max = "1s"
give_up_after = "5m"
"#
    .to_string();
    c += &smtp.channel("acme-mail", "acme", "noc@acme.test");
    c += &smtp.channel("globex-mail", "globex", "noc@globex.test");
    for tenant in ["acme", "globex"] {
        c += &format!(
            r#"
[[notify.rule]]
name = "{tenant}-all"
tenant = "{tenant}"
min_severity = "warning"
group_window = "500ms"
channels = ["{tenant}-mail"]
"#
        );
    }
    c
}

fn set(root: &std::path::Path, tenant: &str, list: &[(&str, Option<Level>, bool)]) {
    contacts::update(root, tenant, |l| {
        l.clear();
        for (email, min_severity, enabled) in list {
            l.push(Contact {
                id: contacts::next_id(l),
                name: email.split('@').next().unwrap().to_string(),
                email: email.to_string(),
                min_severity: *min_severity,
                enabled: *enabled,
            });
        }
        Ok::<_, ContactsError>(())
    })
    .unwrap();
}

/// Waits for mail number `n` (1-based) and gives its sorted envelope recipients.
async fn mail_to(smtp: &SmtpServer, n: usize, about: &str) -> Vec<String> {
    let mails = wait_for(&format!("mail {n} ({about})"), LIMIT, || {
        let m = smtp.mails();
        (m.len() >= n).then_some(m)
    })
    .await;
    let mail = &mails[n - 1];
    assert!(
        mail["data"].as_str().unwrap().contains(about),
        "mail {n} is not about {about}: {mail}"
    );
    let mut to: Vec<String> = mail["rcpt_tos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    to.sort();
    to
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_changed_while_running_get_the_next_notification_and_only_their_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let smtp = SmtpServer::start(dir.path(), free_port()).await;
    let alert_in = |tenant: &str, seq, severity, subject: &str| {
        store_events(
            &root,
            tenant,
            "fw1",
            &[alert(seq, "check_down", severity, subject)],
        )
    };
    alert_in("acme", 1, Severity::Critical, "before");
    let notifier = Notifier::start(&root, &config(&smtp));
    assert_eq!(
        mail_to(&smtp, 1, "acme/fw1/1").await,
        ["noc@acme.test"],
        "no contacts file: the channel's own `to` alone"
    );

    // Added while the notifier runs; NOC@acme.test repeats the channel's `to`.
    set(
        &root,
        "acme",
        &[
            ("alice@acme.test", None, true),
            ("bob@acme.test", None, false),
            ("carol@acme.test", Some(Level::Critical), true),
            ("NOC@acme.test", None, true),
        ],
    );
    set(&root, "globex", &[("gina@globex.test", None, true)]);
    alert_in("acme", 2, Severity::Warning, "second");
    assert_eq!(
        mail_to(&smtp, 2, "acme/fw1/2").await,
        ["alice@acme.test", "noc@acme.test"],
        "alice, added while the notifier ran, got the next notification; bob (disabled) and \
         carol (critical only) did not; the NOC once"
    );
    let rows = history(&root, "acme");
    assert_eq!(
        rows[0].deliveries[0].recipients, "noc@acme.test, alice@acme.test",
        "the record lists who it went to"
    );

    alert_in("globex", 1, Severity::Warning, "vault");
    assert_eq!(
        mail_to(&smtp, 3, "globex/fw1/1").await,
        ["gina@globex.test", "noc@globex.test"],
        "globex's contact, and none of acme's"
    );

    // Disable alice, enable bob; a critical alert reaches carol too.
    set(
        &root,
        "acme",
        &[
            ("alice@acme.test", None, false),
            ("bob@acme.test", None, true),
            ("carol@acme.test", Some(Level::Critical), true),
        ],
    );
    alert_in("acme", 3, Severity::Critical, "third");
    assert_eq!(
        mail_to(&smtp, 4, "acme/fw1/3").await,
        ["bob@acme.test", "carol@acme.test", "noc@acme.test"],
        "a disabled contact gets nothing"
    );

    // A damaged file: logged, the last good list kept, the NOC still told.
    let file = contacts::path(&root, "acme").unwrap();
    std::fs::write(&file, "{ damaged").unwrap();
    alert_in("acme", 4, Severity::Critical, "fourth");
    assert_eq!(
        mail_to(&smtp, 5, "acme/fw1/4").await,
        ["bob@acme.test", "carol@acme.test", "noc@acme.test"]
    );

    for m in smtp.mails() {
        let data = m["data"].as_str().unwrap();
        let to = m["rcpt_tos"].to_string();
        if data.contains("globex/") {
            assert!(
                !to.contains("acme.test"),
                "acme's contact got globex's: {to}"
            );
        } else {
            assert!(
                !to.contains("globex.test"),
                "globex's contact got acme's: {to}"
            );
        }
    }
    notifier.stop().await;
    smtp.stop().await;
}
