//! Notifications on the scaled-out SOC's store: a real 3-node JetStream
//! cluster and a real PostgreSQL (owlet-soc-bus's testkit), events
//! published as a receiver does and stored by the real writer, the same
//! notifier as the embedded SOC on its PostgreSQL ledger
//! (`ledger::postgres::run`), and a real SMTP server (aiosmtpd, STARTTLS
//! and AUTH). Every figure asserted comes from the mails or from
//! PostgreSQL itself. A missing peer (nats-server, PostgreSQL, python3
//! with aiosmtpd) fails the test with the install command.
//!
//! Each guarantee test says in a comment which break of the guarded code
//! was tried and how the test failed.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use owlet_proto::v1::{Event, Severity};
use owlet_soc_bus::Retention;
use owlet_soc_bus::testkit::WriterStack;
use owlet_soc_bus::writer::schema_of;
use owlet_soc_notify::ledger::postgres;
use owlet_soc_notify::ledger::{Ledger, Ledgers};
use owlet_soc_notify::{HistoryQuery, HistoryRow, NotifyConfig};
use prost::Message;
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(90);

/// The scaled-out SOC's servers, its writer (a task) and an SMTP server.
struct Scaled {
    stack: WriterStack,
    smtp: SmtpServer,
    dir: tempfile::TempDir,
}

impl Scaled {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let smtp = SmtpServer::start(dir.path(), free_port()).await;
        let stack = WriterStack::start().await;
        Self { stack, smtp, dir }
    }

    /// Publishes `events` as agent `agent` of `tenant` as a receiver does,
    /// and waits until the writer stored them all.
    async fn publish(&self, tenant: &str, agent: &str, events: &[Event]) {
        let batch: Vec<(u64, Bytes)> = events
            .iter()
            .map(|e| (e.seq, Bytes::from(e.encode_to_vec())))
            .collect();
        let mut log = self
            .stack
            .bus
            .agent(tenant, agent, Retention::default())
            .await
            .unwrap();
        log.append(&batch).await.unwrap();
        let last = events.last().unwrap().seq as i64;
        let sql = format!(
            "SELECT coalesce(max(seq), 0) FROM {}.events WHERE agent = $1",
            schema_of(tenant)
        );
        let started = std::time::Instant::now();
        loop {
            let stored: i64 = match self.stack.admin.query_one(&sql, &[&agent]).await {
                Ok(row) => row.get(0),
                Err(_) => 0, // the writer has not made the table yet
            };
            if stored >= last {
                return;
            }
            assert!(
                started.elapsed() < LIMIT,
                "the writer did not store {tenant}/{agent} up to {last}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The directory holding `contacts/` (the portal's store root).
    fn contacts_root(&self) -> std::path::PathBuf {
        self.dir.path().join("portal")
    }

    /// Starts the notifier of `toml` (a `[notify]` document) on this
    /// PostgreSQL, with the contacts under [`Scaled::contacts_root`].
    fn notifier(&self, toml: &str) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let config = NotifyConfig::from_toml(toml).unwrap();
        let token = CancellationToken::new();
        let run = postgres::run(
            self.stack.pg.conninfo("owlet"),
            Some(self.contacts_root()),
            config,
            self.dir.path().join("state"),
            token.clone(),
        );
        (token, tokio::spawn(async move { run.await.unwrap() }))
    }

    async fn history(&self, tenant: &str) -> Vec<HistoryRow> {
        postgres::history(&self.stack.admin, tenant, &HistoryQuery::default())
            .await
            .unwrap()
    }

    /// The `notify` cursor's position in `tenant` and its highest stored id.
    async fn position_and_last_id(&self, tenant: &str) -> (i64, i64) {
        let last: i64 = self
            .stack
            .admin
            .query_one(
                &format!("SELECT max(id) FROM {}.events", schema_of(tenant)),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let position: i64 = self
            .stack
            .admin
            .query_one(
                "SELECT position FROM owlet_bus.cursors WHERE consumer = 'notify' AND tenant = $1",
                &[&tenant],
            )
            .await
            .unwrap()
            .get(0);
        (position, last)
    }

    /// acme's rule mailing each subject, its notifier running and its
    /// first alert mailed: where the fault tests start.
    async fn first_mail(&self) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let config = head("100ms")
            + &self.smtp.channel("mail", "acme", "noc@acme.test")
            + &rule("urgent", "acme", "mail", "group_by = \"subject\"");
        self.publish(
            "acme",
            "fw1",
            &[alert(1, "check_down", Severity::Critical, "shop")],
        )
        .await;
        let notifier = self.notifier(&config);
        self.record_ready("acme").await;
        until("the first mail", || async {
            (self.smtp.mails().len() == 1).then_some(())
        })
        .await;
        notifier
    }

    /// Waits for `n` mails and gives a wrong extra one time to show: one
    /// mail per event, no event of acme's grouped twice, the position past
    /// every stored event.
    async fn each_mailed_once(&self, n: usize) {
        until("every event mailed", || async {
            (self.smtp.mails().len() >= n).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(self.smtp.mails().len(), n, "one mail per event");
        let twice: Vec<i64> = self
            .stack
            .admin
            .query(
                &format!(
                    "SELECT log_id FROM {}.notification_events GROUP BY log_id HAVING count(*) > 1",
                    schema_of("acme")
                ),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(twice.is_empty(), "grouped twice: {twice:?}");
        let (position, last) = self.position_and_last_id("acme").await;
        assert_eq!(position, last);
    }

    /// Waits until `tenant`'s record tables exist (the notifier claimed it).
    async fn record_ready(&self, tenant: &str) {
        let table = format!("{}.deliveries", schema_of(tenant));
        let started = std::time::Instant::now();
        loop {
            let ready: bool = self
                .stack
                .admin
                .query_one("SELECT to_regclass($1::text) IS NOT NULL", &[&table])
                .await
                .unwrap()
                .get(0);
            if ready {
                return;
            }
            assert!(started.elapsed() < LIMIT, "{tenant}'s record was not made");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Waits for the async condition `f` (polled every 100 ms) up to LIMIT.
async fn until<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    let started = std::time::Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(started.elapsed() < LIMIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A mail's raw message (headers and body).
fn data(mail: &serde_json::Value) -> &str {
    mail["data"].as_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_the_writer_stored_are_mailed_as_one_group_and_recorded_delivered_in_postgres() {
    let s = Scaled::start().await;
    let config = head("100ms")
        + &s.smtp.channel("mail", "acme", "noc@acme.test")
        + &rule("urgent", "acme", "mail", "");
    s.publish(
        "acme",
        "fw1",
        &[
            alert(1, "check_down", Severity::Critical, "shop"),
            alert(2, "check_down", Severity::Warning, "api"),
            // Below the rule's severity: stored, never notified.
            alert(3, "check_up", Severity::Info, "shop"),
            alert(4, "check_down", Severity::Warning, "db"),
        ],
    )
    .await;
    // A contact the tenant's admin keeps in the portal gets it too.
    owlet_soc_notify::contacts::update(&s.contacts_root(), "acme", |list| {
        list.push(owlet_soc_notify::contacts::Contact {
            id: 1,
            name: "on call".into(),
            email: "oncall@acme.test".into(),
            min_severity: None,
            enabled: true,
        });
        Ok::<_, owlet_soc_notify::contacts::ContactsError>(())
    })
    .unwrap();
    let (token, task) = s.notifier(&config);
    let rows = until("the notification recorded delivered", || async {
        let rows = s.history("acme").await;
        (rows.first()?.status == "delivered").then_some(rows)
    })
    .await;
    assert_eq!(rows.len(), 1, "one group: {rows:?}");
    let n = &rows[0];
    assert_eq!(n.event_ids, ["acme/fw1/1", "acme/fw1/2", "acme/fw1/4"]);
    assert_eq!(n.event_count, 3);
    assert_eq!(n.severity, "critical");
    let d = &n.deliveries[0];
    assert_eq!(
        (d.channel.as_str(), d.status.as_str()),
        ("mail", "delivered")
    );
    assert!(
        d.recipients.contains("noc@acme.test") && d.recipients.contains("oncall@acme.test"),
        "{}",
        d.recipients
    );
    assert_eq!(d.attempts, 1);
    assert!(d.delivered_us.is_some());
    let mails = s.smtp.mails();
    assert_eq!(mails.len(), 1, "one mail for the group");
    let text = data(&mails[0]);
    assert_eq!(mails[0]["tls"], true);
    let to = mails[0]["rcpt_tos"].to_string();
    assert!(
        to.contains("noc@acme.test") && to.contains("oncall@acme.test"),
        "{to}"
    );
    for id in ["acme/fw1/1", "acme/fw1/2", "acme/fw1/4"] {
        assert!(text.contains(id), "{id} missing: {text}");
    }
    assert!(!text.contains("acme/fw1/3"), "the info alert was notified");
    assert!(text.contains(&format!("X-Owlet-Notification: acme/{}", n.notification_id)));
    // The position is past every stored event, in the same table the
    // writer's and the outputs' cursors are.
    let (position, last) = s.position_and_last_id("acme").await;
    assert_eq!(position, last);
    token.cancel();
    task.await.unwrap();

    // Retention: the writer dropped the events the notification covers
    // (here: deleted, one newer event left). The record forgets it.
    s.publish(
        "acme",
        "fw1",
        &[alert(5, "check_up", Severity::Info, "shop")],
    )
    .await;
    s.stack
        .admin
        .execute("DELETE FROM tenant_acme.events WHERE seq <= 4", &[])
        .await
        .unwrap();
    let ledgers = postgres::PgLedgers::new(s.stack.pg.conninfo("owlet"), None);
    let mut ledger = ledgers
        .open("acme")
        .await
        .unwrap()
        .expect("no other holder");
    assert_eq!(ledger.forget_expired().await.unwrap(), 1);
    assert!(
        s.history("acme").await.is_empty(),
        "forgotten with its events"
    );
    assert_eq!(ledger.forget_expired().await.unwrap(), 0, "once");
}

/// Seen failing: with `Ledger::ingest` of the PostgreSQL ledger moving the
/// cursor with `Claim::advance_to` (its own statement, committed before
/// the record's transaction), the injected failure of the record's write
/// lost both events: "timed out waiting for every event mailed".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_record_write_moves_no_position_so_nothing_is_lost_or_grouped_twice() {
    let s = Scaled::start().await;
    let (token, task) = s.first_mail().await;
    // The next write of an event into the record fails once (a sequence is
    // not rolled back with the transaction that called it).
    let schema = schema_of("acme");
    s.stack
        .admin
        .batch_execute(&format!(
            "CREATE SEQUENCE {schema}.fault;
             CREATE FUNCTION {schema}.fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF nextval('{schema}.fault') = 1 THEN RAISE EXCEPTION 'injected fault'; END IF;
               RETURN NEW;
             END $$;
             CREATE TRIGGER fail_once BEFORE INSERT ON {schema}.notification_events
               FOR EACH ROW EXECUTE FUNCTION {schema}.fail_once();"
        ))
        .await
        .unwrap();
    s.publish(
        "acme",
        "fw1",
        &[
            alert(2, "check_down", Severity::Critical, "api"),
            alert(3, "check_down", Severity::Critical, "db"),
        ],
    )
    .await;
    s.each_mailed_once(3).await;
    let faults: i64 = s
        .stack
        .admin
        .query_one(&format!("SELECT last_value FROM {schema}.fault"), &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        faults >= 2,
        "the fault was not hit: the test proves nothing"
    );
    token.cancel();
    task.await.unwrap();
}

/// The other half of "the position moves with the record": while the
/// cursor's row cannot be updated (an injected fault on
/// `owlet_bus.cursors`), nothing of the new events is recorded or mailed;
/// once it can, each is mailed once.
///
/// Seen failing: with `Ledger::ingest` committing the record first and
/// moving the cursor in a transaction of its own afterwards, "recorded
/// while the cursor could not move: 3 rows".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_that_cannot_move_records_nothing_and_then_each_event_is_mailed_once() {
    let s = Scaled::start().await;
    let (token, task) = s.first_mail().await;
    // Every update of acme's notify cursor fails while `cursor_fault` has
    // a row; `cursor_faults` counts the failures.
    s.stack
        .admin
        .batch_execute(
            "CREATE TABLE public.cursor_fault (on_ boolean);
             INSERT INTO public.cursor_fault VALUES (true);
             CREATE SEQUENCE public.cursor_faults;
             CREATE FUNCTION public.fail_cursor() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF NEW.consumer = 'notify' AND NEW.tenant = 'acme'
                  AND EXISTS (SELECT 1 FROM public.cursor_fault) THEN
                 PERFORM nextval('public.cursor_faults');
                 RAISE EXCEPTION 'injected fault';
               END IF;
               RETURN NEW;
             END $$;
             CREATE TRIGGER fail_cursor BEFORE UPDATE ON owlet_bus.cursors
               FOR EACH ROW EXECUTE FUNCTION public.fail_cursor();",
        )
        .await
        .unwrap();
    s.publish(
        "acme",
        "fw1",
        &[
            alert(2, "check_down", Severity::Critical, "api"),
            alert(3, "check_down", Severity::Critical, "db"),
        ],
    )
    .await;
    until("the fault hit twice", || async {
        let hits: i64 = s
            .stack
            .admin
            .query_one(
                "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM public.cursor_faults",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (hits >= 2).then_some(())
    })
    .await;
    // Longer than the group window: a group recorded anyway would be
    // composed and mailed by now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let schema = schema_of("acme");
    let recorded: i64 = s
        .stack
        .admin
        .query_one(
            &format!("SELECT count(*) FROM {schema}.notification_events"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        recorded, 1,
        "recorded while the cursor could not move: {recorded} rows"
    );
    assert_eq!(
        s.smtp.mails().len(),
        1,
        "mailed while the cursor could not move"
    );

    s.stack
        .admin
        .batch_execute("DELETE FROM public.cursor_fault")
        .await
        .unwrap();
    s.each_mailed_once(3).await;
    token.cancel();
    task.await.unwrap();
}

/// Seen failing: with `owlet_soc_bus::stored::events_after` reading
/// `tenant_acme.events` for every tenant (the schema fixed instead of
/// `schema_of(tenant)`), globex's mail carried acme's two fw1 alerts
/// ("[owlet globex] CRITICAL: 2 events: check_down x2 on fw1") and not
/// globex's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_rule_never_sees_another_tenants_events() {
    let s = Scaled::start().await;
    let config = head("100ms")
        + &s.smtp.channel("acme-mail", "acme", "noc@acme.test")
        + &s.smtp.channel("globex-mail", "globex", "noc@globex.test")
        + &rule("acme-urgent", "acme", "acme-mail", "")
        + &rule("globex-urgent", "globex", "globex-mail", "");
    s.publish(
        "acme",
        "fw1",
        &[
            alert(1, "check_down", Severity::Critical, "shop"),
            alert(2, "check_down", Severity::Critical, "api"),
        ],
    )
    .await;
    s.publish(
        "globex",
        "gw1",
        &[alert(1, "check_down", Severity::Critical, "bank")],
    )
    .await;
    let (token, task) = s.notifier(&config);
    let mails = until("a mail to each tenant", || async {
        let mails = s.smtp.mails();
        (mails.len() >= 2).then_some(mails)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(s.smtp.mails().len(), 2, "one group per tenant");
    let to = |who: &str| {
        mails
            .iter()
            .find(|m| m["rcpt_tos"][0] == who)
            .map(|m| data(m).to_string())
            .unwrap_or_else(|| panic!("no mail to {who}"))
    };
    let (acme, globex) = (to("noc@acme.test"), to("noc@globex.test"));
    assert!(
        acme.contains("acme/fw1/1") && acme.contains("acme/fw1/2"),
        "{acme}"
    );
    assert!(!acme.contains("globex"), "acme's mail names globex: {acme}");
    assert!(globex.contains("globex/gw1/1"), "{globex}");
    assert!(
        !globex.contains("acme"),
        "globex's mail names acme: {globex}"
    );
    // Each record lists its own tenant's events only.
    for (tenant, other) in [("acme", "globex"), ("globex", "acme")] {
        let rows = until("the deliveries recorded", || async {
            let rows = s.history(tenant).await;
            rows.iter().all(|r| r.status == "delivered").then_some(rows)
        })
        .await;
        assert_eq!(rows.len(), 1, "{tenant}: {rows:?}");
        for id in &rows[0].event_ids {
            assert!(
                id.starts_with(&format!("{tenant}/")),
                "{tenant} records {id}"
            );
            assert!(!id.starts_with(&format!("{other}/")));
        }
    }
    token.cancel();
    task.await.unwrap();
}
