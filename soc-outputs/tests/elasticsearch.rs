//! The `elasticsearch` output against a test server that implements the
//! documented `_bulk` API: NDJSON action/document pairs, `create` that
//! answers 201 for a new `_id` and 409 `version_conflict_engine_exception`
//! for an existing one, per-item statuses and `errors` in the answer, and
//! an `Authorization` header check (`common::bulk`). The server stands in
//! for Elasticsearch and OpenSearch, which Debian does not package.

mod common;

use std::time::Duration;

use common::bulk::*;
use common::*;
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(60);

/// Seen failing: with `OutputConfig::wants` returning true for every
/// tenant, globex's events reached the acme output's index.
#[tokio::test]
async fn only_the_named_tenants_arrive_in_order_with_their_event_ids() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    fill(&root, "acme", 1..=230);
    fill(&root, "globex", 1..=70);
    let ca = test_ca(dir.path());
    let index = Shared::default();
    let server = HttpsServer::start(&ca, 0, bulk_handler(index.clone())).await;
    let c = config(&server.url(), &ca, dir.path(), &["acme"]);
    let out = spawn(&root, &c);
    wait_for("230 documents", LIMIT, || {
        index.lock().unwrap().created.len() >= 230
    })
    .await;
    // Give a wrong tenant filter the time to show itself.
    tokio::time::sleep(Duration::from_millis(500)).await;
    wait_for("lag 0", LIMIT, || rows(&root, &c)[0].lag == 0).await;
    out.shutdown().await;
    let ix = index.lock().unwrap();
    assert_complete_and_ordered(&ix.created, &ids("acme", 1..=230));
    assert!(ix.docs.keys().all(|(name, _)| name == "owlet-acme"));
    assert!(ix.bad_requests.is_empty(), "{:?}", ix.bad_requests);
    let doc = &ix.docs[&("owlet-acme".to_string(), "acme/s1/2".to_string())];
    assert_eq!(doc["organization"]["id"], "acme");
    assert_eq!(doc["tls"]["client"]["server_name"], "acme.example");
    let rows = rows(&root, &c);
    assert_eq!(rows.len(), 1, "only acme is this output's: {rows:?}");
    assert_eq!((rows[0].tenant.as_str(), rows[0].lag), ("acme", 0));
    assert_eq!(rows[0].delivered, 230);
}

/// The output is stopped while a request is in flight (the node hangs on
/// the fourth batch), then started again.
///
/// Seen failing: with the cursor advanced before `deliver` (not after), the
/// position read 200 with 150 delivered: the batch cut off by the shutdown
/// would never have been sent.
#[tokio::test]
async fn a_restart_resumes_where_it_stopped_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    fill(&root, "acme", 1..=300);
    let ca = test_ca(dir.path());
    let index = Shared::default();
    index.lock().unwrap().stall_on = Some("acme/s1/151".into());
    let server = HttpsServer::start(&ca, 0, bulk_handler(index.clone())).await;
    let c = config(&server.url(), &ca, dir.path(), &["acme"]);
    let out = spawn(&root, &c);
    wait_for("the hung request", LIMIT, || index.lock().unwrap().stalled).await;
    out.shutdown().await;
    assert_eq!(index.lock().unwrap().created.len(), 150);
    assert_eq!(
        rows(&root, &c)[0].position,
        150,
        "only confirmed batches count"
    );
    index.lock().unwrap().stall_on = None;
    fill(&root, "acme", 301..=400);
    let out = spawn(&root, &c);
    wait_for("all 400", LIMIT, || {
        index.lock().unwrap().created.len() >= 400
    })
    .await;
    wait_for("lag 0", LIMIT, || rows(&root, &c)[0].lag == 0).await;
    out.shutdown().await;
    let ix = index.lock().unwrap();
    assert_complete_and_ordered(&ix.created, &ids("acme", 1..=400));
    // At least once, not "everything again".
    assert!(
        ix.attempts <= 400 + c.batch_size,
        "{} create actions for 400 events",
        ix.attempts
    );
    assert_eq!(rows(&root, &c)[0].lag, 0);
}

/// The issue asks for a destination down 10 minutes; this test takes it
/// down for 30 s (the output's behaviour is the same past its first
/// `retry_max`: a retry every `retry_max` until the destination answers).
///
/// Seen failing: with a failed batch skipped (the round going on to the
/// next batch after an error), the backlog never arrived whole.
#[tokio::test]
async fn a_destination_down_30s_loses_nothing_and_the_backlog_arrives_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    fill(&root, "acme", 1..=50);
    let ca = test_ca(dir.path());
    let index = Shared::default();
    let server = HttpsServer::start(&ca, 0, bulk_handler(index.clone())).await;
    let port = server.addr.port();
    let c = config(&server.url(), &ca, dir.path(), &["acme"]);
    let out = spawn(&root, &c);
    wait_for("the first 50", LIMIT, || {
        index.lock().unwrap().created.len() >= 50
    })
    .await;
    server.stop();
    drop(server);
    let down = std::time::Instant::now();
    // Events keep arriving while the SIEM is down.
    let mut seq = 50;
    while down.elapsed() < Duration::from_secs(30) {
        fill(&root, "acme", seq + 1..=seq + 20);
        seq += 20;
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let during = rows(&root, &c).remove(0);
    assert!(during.errors > 0, "{during:?}");
    assert!(during.lag >= seq as i64 - 50, "{during:?}");
    let last_error = during.last_error.clone().unwrap_or_default();
    assert!(
        last_error.contains("_bulk") || last_error.contains("onnect"),
        "{last_error}"
    );
    assert_eq!(index.lock().unwrap().created.len(), 50);
    let _server = HttpsServer::start(&ca, port, bulk_handler(index.clone())).await;
    wait_for("the backlog", LIMIT, || {
        index.lock().unwrap().created.len() as u64 >= seq
    })
    .await;
    wait_for("lag 0", LIMIT, || rows(&root, &c)[0].lag == 0).await;
    out.shutdown().await;
    assert_complete_and_ordered(&index.lock().unwrap().created, &ids("acme", 1..=seq));
    let after = rows(&root, &c).remove(0);
    assert_eq!((after.lag, after.last_error), (0, None));
}

/// Seen failing: with every item status taken as success, the rejected
/// items were never sent again (timed out waiting for all 120).
#[tokio::test]
async fn rejected_items_are_sent_again_and_existing_ones_count_as_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    fill(&root, "acme", 1..=120);
    let ca = test_ca(dir.path());
    let index = Shared::default();
    {
        let mut ix = index.lock().unwrap();
        // Busy for three items of the second batch.
        for s in [55, 60, 99] {
            ix.reject_once.insert(format!("acme/s1/{s}"));
        }
        // And already holding one (an earlier run delivered it).
        ix.docs
            .insert(("owlet-acme".into(), "acme/s1/7".into()), json!({}));
    }
    let server = HttpsServer::start(&ca, 0, bulk_handler(index.clone())).await;
    let c = config(&server.url(), &ca, dir.path(), &["acme"]);
    let out = spawn(&root, &c);
    wait_for("all 120", LIMIT, || index.lock().unwrap().docs.len() >= 120).await;
    wait_for("lag 0", LIMIT, || rows(&root, &c)[0].lag == 0).await;
    out.shutdown().await;
    let ix = index.lock().unwrap();
    assert!(ix.reject_once.is_empty());
    for s in 1..=120 {
        assert!(
            ix.docs
                .contains_key(&("owlet-acme".into(), format!("acme/s1/{s}")))
        );
    }
    let row = rows(&root, &c).remove(0);
    assert!(row.errors >= 1, "{row:?}");
}

/// Seen failing: without the hole check, the output delivered what was
/// left and recorded no error (errors 0): the loss was silent.
#[tokio::test]
async fn events_retention_deleted_before_delivery_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let day = Duration::from_secs(86_400);
    let now = std::time::SystemTime::now();
    fill_at(&root, "acme", 1..=10, now - day * 3);
    fill_at(&root, "acme", 11..=20, now - day * 2);
    fill_at(&root, "acme", 21..=30, now);
    let store = owlet_soc_store::Store::open(&root).unwrap();
    let gone = store
        .writer("acme")
        .unwrap()
        .enforce(
            &owlet_soc_store::Policy {
                max_age: Some(day),
                max_bytes: None,
            },
            now,
        )
        .unwrap();
    assert_eq!(gone.iter().map(|d| d.events).sum::<u64>(), 20);
    let ca = test_ca(dir.path());
    let index = Shared::default();
    let server = HttpsServer::start(&ca, 0, bulk_handler(index.clone())).await;
    let c = config(&server.url(), &ca, dir.path(), &["acme"]);
    let out = spawn(&root, &c);
    wait_for("lag 0", LIMIT, || rows(&root, &c)[0].lag == 0).await;
    out.shutdown().await;
    assert_complete_and_ordered(&index.lock().unwrap().created, &ids("acme", 21..=30));
    let row = rows(&root, &c).remove(0);
    assert_eq!(row.errors, 1, "{row:?}");
}

/// acme (first in the round) has a document the index refuses for good;
/// globex must flow regardless.
///
/// Seen failing: with a failed batch ending the round and tenants in
/// backoff tried again anyway (one backoff for the whole output), globex
/// waited behind acme's refused document (timed out after 60 s).
#[tokio::test]
async fn one_tenants_refused_document_does_not_hold_back_another_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    fill(&root, "acme", 1..=20);
    fill(&root, "globex", 1..=100);
    let ca = test_ca(dir.path());
    let index = Shared::default();
    index
        .lock()
        .unwrap()
        .reject_always
        .insert("acme/s1/5".into());
    let server = HttpsServer::start(&ca, 0, bulk_handler(index.clone())).await;
    let mut c = config(&server.url(), &ca, dir.path(), &["acme", "globex"]);
    c.batch_size = 4;
    let out = spawn(&root, &c);
    wait_for("globex delivered", LIMIT, || {
        rows(&root, &c)
            .iter()
            .any(|r| r.tenant == "globex" && r.lag == 0)
    })
    .await;
    out.shutdown().await;
    let rows = rows(&root, &c);
    let acme = rows.iter().find(|r| r.tenant == "acme").unwrap();
    assert_eq!(
        acme.position, 4,
        "acme stops before the refused event: {acme:?}"
    );
    let error = acme.last_error.as_deref().unwrap_or_default();
    assert!(
        error.contains("acme/s1/5") && error.contains("document_parsing_exception"),
        "{error}"
    );
    let ix = index.lock().unwrap();
    let globex: Vec<String> = ix
        .created
        .iter()
        .filter(|id| id.starts_with("globex/"))
        .cloned()
        .collect();
    assert_complete_and_ordered(&globex, &ids("globex", 1..=100));
}
