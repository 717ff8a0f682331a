//! The webhook against a real HTTP server (hyper's, in the test) that
//! checks `X-Owlet-Signature` over the exact body and answers 503 to the
//! first attempts, so the notification is retried and recorded delivered
//! with its attempts.

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use hmac::{KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use owlet_proto::v1::Severity;

const SECRET: &str = "webhook-shared-secret";

#[derive(Default)]
struct Seen {
    /// (status answered, signature valid, body)
    requests: Vec<(u16, bool, serde_json::Value)>,
}

fn valid(signature: Option<&str>, body: &[u8]) -> bool {
    let Some(hex) = signature.and_then(|s| s.strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(tag) = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<Vec<u8>, _>>()
    else {
        return false;
    };
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

/// Serves on loopback: 401 for a bad signature, 503 for the first
/// `fail_first` good ones, 200 after. With `stall_first`, the first
/// request is answered only after 3 s (past the channel's timeout).
async fn serve(fail_first: usize, stall_first: bool) -> (u16, Arc<Mutex<Seen>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let shared = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let seen = shared.clone();
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let seen = seen.clone();
                async move {
                    let signature = req
                        .headers()
                        .get("x-owlet-signature")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let first = seen.lock().unwrap().requests.is_empty();
                    if stall_first && first {
                        seen.lock()
                            .unwrap()
                            .requests
                            .push((0, true, serde_json::Value::Null));
                        tokio::time::sleep(Duration::from_secs(3)).await;
                    }
                    let ok = valid(signature.as_deref(), &body);
                    let mut seen = seen.lock().unwrap();
                    let good_so_far = seen.requests.iter().filter(|r| r.1 && r.0 != 0).count();
                    let status = if !ok {
                        401
                    } else if good_so_far < fail_first {
                        503
                    } else {
                        200
                    };
                    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                    seen.requests.push((status, ok, json));
                    Ok::<_, Infallible>(
                        Response::builder()
                            .status(StatusCode::from_u16(status).unwrap())
                            .body(Full::new(Bytes::from_static(b"")))
                            .unwrap(),
                    )
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (port, seen)
}

fn config(port: u16, secret_file: &std::path::Path) -> String {
    config_with_timeout(port, secret_file, "5s")
}

fn config_with_timeout(port: u16, secret_file: &std::path::Path, timeout: &str) -> String {
    format!(
        r#"
[notify]
poll_interval = "100ms"
[notify.retry]
initial = "200ms"
max = "1s"
[[notify.tenant]]
name = "acme"
zone = "Europe/Berlin"
[[notify.channel]]
name = "hook"
tenants = ["acme"]
type = "webhook"
url = "http://127.0.0.1:{port}/owlet?token=abc"
secret_file = "{}"
timeout = "{timeout}"
[[notify.rule]]
name = "all"
tenant = "acme"
group_window = "300ms"
channels = ["hook"]
"#,
        secret_file.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_webhook_is_retried_on_503_and_recorded_delivered_with_its_attempts() {
    // Broken once on purpose: with the signature computed over a different
    // body than the one sent (a trailing newline added after signing), every
    // request got 401 and the test failed waiting for delivery.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let (port, seen) = serve(2, false).await;
    let secret_file = secret(dir.path(), "hook-secret", SECRET);
    store_events(
        &root,
        "acme",
        "fw1",
        &[alert(1, "scan_detected", Severity::Critical, "10.0.0.66")],
    );
    let notifier = Notifier::start(&root, &config(port, &secret_file));
    let rows = wait_for("the webhook delivered", Duration::from_secs(60), || {
        let rows = history(&root, "acme");
        (rows.first()?.status == "delivered").then_some(rows)
    })
    .await;
    let d = &rows[0].deliveries[0];
    assert_eq!(d.attempts, 3, "{d:?}");
    assert_eq!(
        d.last_error.as_deref(),
        Some("HTTP 503 Service Unavailable")
    );
    assert_eq!(
        d.recipients,
        "http://127.0.0.1:{port}/owlet".replace("{port}", &port.to_string())
    );
    {
        let seen = seen.lock().unwrap();
        let statuses: Vec<u16> = seen.requests.iter().map(|r| r.0).collect();
        assert_eq!(statuses, [503, 503, 200]);
        assert!(
            seen.requests.iter().all(|r| r.1),
            "a request had a bad signature"
        );
        let body = &seen.requests[2].2;
        assert_eq!(body["tenant"], "acme");
        assert_eq!(body["notification_id"], 1);
        assert_eq!(body["severity"], "critical");
        let event = &body["events"][0];
        assert_eq!(event["event_id"], "acme/fw1/1");
        assert_eq!(event["name"], "scan_detected");
        assert!(
            event["expected_damage"]
                .as_str()
                .unwrap()
                .contains("reconnaissance")
        );
        assert!(
            event["recommended_response"]
                .as_str()
                .unwrap()
                .contains("block")
        );
        // RFC 3339 with Berlin's offset (+01:00 in winter, +02:00 in summer).
        let at = event["detected_at"].as_str().unwrap();
        assert!(at.ends_with("+01:00") || at.ends_with("+02:00"), "{at}");
    }
    notifier.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_refusing_the_signature_is_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let (port, seen) = serve(0, false).await;
    let wrong = secret(dir.path(), "hook-secret", "not-the-shared-secret");
    store_events(
        &root,
        "acme",
        "fw1",
        &[alert(1, "check_down", Severity::Critical, "shop")],
    );
    let notifier = Notifier::start(&root, &config(port, &wrong));
    let rows = wait_for("the delivery to fail", Duration::from_secs(60), || {
        let rows = history(&root, "acme");
        (rows.first()?.status == "failed").then_some(rows)
    })
    .await;
    let d = &rows[0].deliveries[0];
    assert_eq!((d.status.as_str(), d.attempts), ("failed", 1));
    assert!(d.last_error.as_deref().unwrap().contains("401"), "{d:?}");
    assert_eq!(seen.lock().unwrap().requests.len(), 1);
    notifier.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_does_not_answer_in_time_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let (port, seen) = serve(0, true).await;
    let secret_file = secret(dir.path(), "hook-secret", SECRET);
    store_events(
        &root,
        "acme",
        "fw1",
        &[alert(1, "check_down", Severity::Critical, "shop")],
    );
    let notifier = Notifier::start(&root, &config_with_timeout(port, &secret_file, "1s"));
    let rows = wait_for("the webhook delivered", Duration::from_secs(60), || {
        let rows = history(&root, "acme");
        (rows.first()?.status == "delivered").then_some(rows)
    })
    .await;
    let d = &rows[0].deliveries[0];
    assert_eq!(d.attempts, 2, "{d:?}");
    assert!(
        d.last_error
            .as_deref()
            .unwrap()
            .contains("no answer within 1s"),
        "{d:?}"
    );
    assert!(seen.lock().unwrap().requests.iter().any(|r| r.0 == 200));
    notifier.stop().await;
}
