//! Against a real PostgreSQL: a tenant's `events` in day partitions, and
//! retention that drops whole days by age and by size, never today's, and
//! says on a reader's cursor what it dropped before the reader read it.

use std::time::{Duration, SystemTime};

use owlet_soc_bus::cursor;
use owlet_soc_bus::partitions::{DAY_US, Days, create_day, day_of, retain};
use owlet_soc_bus::testkit::{Postgres, ints};
use owlet_soc_bus::writer::{CURSOR_CONSUMER, prepare_tenant};
use owlet_soc_store::Policy;

/// Tenant `acme` with one row on each of the 6 days up to today (day
/// numbers returned, oldest first), and the cursor table a writer makes.
async fn six_days(admin: &tokio_postgres::Client, now: SystemTime) -> Vec<i64> {
    cursor::prepare(admin).await.unwrap();
    prepare_tenant(admin, "acme").await.unwrap();
    let today = day_of(owlet_soc_store::time::micros(now));
    let days: Vec<i64> = (today - 5..=today).collect();
    for (i, day) in days.iter().enumerate() {
        create_day(admin, "acme", *day).await.unwrap();
        admin
            .execute(
                "INSERT INTO tenant_acme.events (agent, seq, stream_seq, received_us, kind, time_us, body)
                 VALUES ('fw-1', $1, $1, $2, 'check_result', $2, '\\x00')",
                &[&(i as i64 + 1), &(day * DAY_US + 3_600_000_000)],
            )
            .await
            .unwrap();
    }
    days
}

async fn stored_days(admin: &tokio_postgres::Client) -> Vec<i64> {
    ints(
        admin,
        "SELECT DISTINCT received_us / 86400000000 FROM tenant_acme.events ORDER BY 1",
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn days_older_than_max_age_are_dropped_whole_and_the_rest_kept() {
    let pg = Postgres::start();
    let admin = pg.client("owlet").await;
    let now = SystemTime::now();
    let days = six_days(&admin, now).await;
    // A check whose latest result arrived on the oldest day, and one of today.
    for (check, day) in [("old", days[0]), ("new", days[5])] {
        admin
            .execute(
                "INSERT INTO tenant_acme.check_state (agent, check_id, state, time_us, received_us)
                 VALUES ('fw-1', $1, 'up', $2, $2)",
                &[&check, &(day * DAY_US + 3_600_000_000)],
            )
            .await
            .unwrap();
    }
    let policy = Policy {
        max_age: Some(Duration::from_secs(2 * 86_400)),
        max_bytes: None,
    };
    let dropped = retain(&admin, "acme", policy, now, &mut Days::default())
        .await
        .unwrap();
    // A day goes once it ended more than max_age ago: today-3 ended 2 days
    // and some hours ago, today-2 one day and some hours ago.
    assert_eq!(dropped.len(), 3, "{dropped:?}");
    assert!(dropped.iter().all(|d| d.reason == "max_age" && d.bytes > 0));
    assert_eq!(stored_days(&admin).await, days[3..]);
    // The check that stopped reporting left the board with its day.
    let checks: Vec<String> = admin
        .query("SELECT check_id FROM tenant_acme.check_state", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(checks, ["new"]);
    // Applied again: nothing more to drop.
    let again = retain(&admin, "acme", policy, now, &mut Days::default())
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_day_a_reader_had_not_read_is_an_error_on_its_cursor() {
    let pg = Postgres::start();
    let admin = pg.client("owlet").await;
    let now = SystemTime::now();
    six_days(&admin, now).await; // ids 1..=6, one per day, oldest first
    // A slow output has dealt with the first day's event only; the
    // notifier with all of them; the writer's own cursor (a stream
    // sequence, not an id) is not a reader.
    let reader = pg.client("owlet").await;
    let mut slow = cursor::claim(&reader, "output:siem", "acme")
        .await
        .unwrap()
        .unwrap();
    slow.advance_to(&reader, 1, 1).await.unwrap();
    let mut fast = cursor::claim(&reader, "notify", "acme")
        .await
        .unwrap()
        .unwrap();
    fast.advance_to(&reader, 6, 6).await.unwrap();
    cursor::claim(&reader, CURSOR_CONSUMER, "acme")
        .await
        .unwrap()
        .unwrap();

    let policy = Policy {
        max_age: Some(Duration::from_secs(2 * 86_400)),
        max_bytes: None,
    };
    let dropped = retain(&admin, "acme", policy, now, &mut Days::default())
        .await
        .unwrap();
    let unread: Vec<_> = dropped.iter().map(|d| d.unread.clone()).collect();
    let siem = || vec![("output:siem".to_string(), 1)];
    assert_eq!(unread, [vec![], siem(), siem()], "{dropped:?}");
    let row = admin
        .query_one(
            "SELECT errors, last_error FROM owlet_bus.cursors WHERE consumer = 'output:siem'",
            &[],
        )
        .await
        .unwrap();
    let (errors, last_error): (i64, String) = (row.get(0), row.get(1));
    assert_eq!(errors, 2, "one error per day it lost");
    assert!(
        last_error.contains(&format!(
            "dropped day {} of tenant acme with 1 events",
            dropped[2].day
        )) && last_error.contains("lost to it"),
        "{last_error}"
    );
    let clean: i64 = admin
        .query_one(
            "SELECT errors FROM owlet_bus.cursors WHERE consumer = 'notify'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(clean, 0, "a reader that had read every event lost nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn over_max_bytes_the_oldest_days_go_first_but_never_today() {
    let pg = Postgres::start();
    let admin = pg.client("owlet").await;
    let now = SystemTime::now();
    let days = six_days(&admin, now).await;
    let policy = Policy {
        max_age: None,
        max_bytes: Some(1),
    };
    let dropped = retain(&admin, "acme", policy, now, &mut Days::default())
        .await
        .unwrap();
    assert_eq!(dropped.len(), 5, "{dropped:?}");
    assert!(dropped.iter().all(|d| d.reason == "max_bytes"));
    assert!(
        dropped.windows(2).all(|w| w[0].day < w[1].day),
        "oldest first"
    );
    assert_eq!(stored_days(&admin).await, days[5..], "today's is kept");
    // No limits: nothing is dropped.
    let none = retain(&admin, "acme", Policy::default(), now, &mut Days::default())
        .await
        .unwrap();
    assert!(none.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_of_a_day_without_a_partition_is_refused_so_the_writer_creates_it_first() {
    let pg = Postgres::start();
    let admin = pg.client("owlet").await;
    prepare_tenant(&admin, "acme").await.unwrap();
    let now_us = owlet_soc_store::time::micros(SystemTime::now());
    let insert = format!(
        "INSERT INTO tenant_acme.events (agent, seq, stream_seq, received_us, kind, time_us, body)
         VALUES ('fw-1', 1, 1, {now_us}, 'check_result', 0, '\\x00')"
    );
    // No default partition: a row cannot slip into one unnoticed.
    let e = admin.batch_execute(&insert).await.unwrap_err();
    assert!(
        format!("{e:?}").contains("no partition"),
        "expected PostgreSQL to refuse a row without its day's partition: {e:?}"
    );
    let mut days = Days::default();
    days.ensure(&admin, "acme", now_us).await.unwrap();
    // Idempotent, also from a second connection's cache.
    Days::default()
        .ensure(&admin, "acme", now_us)
        .await
        .unwrap();
    admin.batch_execute(&insert).await.unwrap();
}
