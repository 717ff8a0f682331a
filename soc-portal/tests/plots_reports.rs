//! Plots and reports in the portal: the plots page with the tenant's zone
//! and offset, the series JSON (own tenant only, ranges checked), the
//! kept reports listed, opened and downloaded (audited), "render now",
//! and hostile sensor data escaped in the served report.

mod common;

use chrono::Utc;
use common::*;
use owlet_soc_portal::audit;
use owlet_soc_portal::pages::plots::PLOTS;

/// The month of now in Tokyo (acme's zone): its events are in it.
fn this_month() -> String {
    Utc::now()
        .with_timezone(&chrono_tz::Asia::Tokyo)
        .format("%Y-%m")
        .to_string()
}

/// What the report schedule would keep for acme's current month: the
/// JSON and the self-contained English page of soc-report, a PDF stand-in.
fn keep_real_report(fx: &Fixture) -> String {
    let label = this_month();
    let period = owlet_soc_report::Period::parse(&label).unwrap();
    let zone = owlet_soc_export::Zone::parse("Asia/Tokyo").unwrap();
    let reader = fx.store.reader("acme").unwrap();
    let report = owlet_soc_report::build(
        &reader,
        &period,
        &zone,
        std::time::SystemTime::now(),
        &owlet_soc_report::Options::default(),
    )
    .unwrap();
    let html = owlet_soc_report::html::render(
        &report,
        owlet_soc_report::Lang::En,
        &owlet_soc_report::Style::Inline,
    )
    .unwrap();
    let json = serde_json::to_vec(&report).unwrap();
    keep_reports(
        &fx.store,
        "acme",
        &[
            (&format!("{label}.json"), &json),
            (&format!("{label}.en.html"), html.as_bytes()),
            (&format!("{label}.en.pdf"), b"%PDF-1.4 stand-in"),
        ],
    );
    label
}

/// A report page is soc-report's: no script at all, no handler, no
/// inline style, none of the hostile values as markup.
fn assert_report_inert(page: &str, body: &str) {
    assert!(!body.contains("<script"), "{page}: a script\n{body}");
    assert!(!body.contains("<style"), "{page}: inline style");
    assert!(!body.contains("style="), "{page}: inline style attribute");
    let handler = regex::Regex::new(r#"<[^>]*\son[a-z]+\s*="#).unwrap();
    assert!(!handler.is_match(body), "{page}: an event handler");
    for hostile in [XSS_PATH, XSS_DIFF, XSS_SNI, XSS_DNS] {
        assert!(!body.contains(hostile), "{page}: {hostile} unescaped");
    }
    assert!(
        body.contains("<link rel=\"stylesheet\" href=\"/assets/report.css\">"),
        "{page}: the report's stylesheet is linked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plots_page_shows_the_tenants_zone_and_a_panel_per_series() {
    let fx = Fixture::new();
    let (cookie, _) = fx.login("customer-viewer");
    let (s, body, _) = fx.get("/t/acme/plots", Some(&cookie)).await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("Asia/Tokyo (UTC+09:00)"), "{body}");
    assert!(body.contains("+09:00 – "), "the range carries its offset");
    for (name, _) in PLOTS {
        assert!(
            body.contains(&format!("data-series=\"/t/acme/series/{name}?from=")),
            "{name}"
        );
    }
    for asset in ["uPlot.min.css", "uPlot.iife.min.js", "plots.js"] {
        assert!(body.contains(&format!("/assets/{asset}")), "{asset}");
    }
    assert_inert("plots", &body);
    // Top lists and alerts are server-side tables, their data escaped.
    assert!(body.contains("10.0.0.5"), "the top talker is listed");
    assert!(body.contains("203.0.113.9"));
    assert!(body.contains("check_down"), "the alert is listed");
    // A preset and a chosen range; a bad one is a readable 400.
    let (s, _, _) = fx.get("/t/acme/plots?range=30d", Some(&cookie)).await;
    assert_eq!(s, 200);
    let (s, body, _) = fx
        .get(
            "/t/acme/plots?from=2026-11-01T00%3A00&to=2026-11-08",
            Some(&cookie),
        )
        .await;
    assert_eq!(s, 200);
    assert!(body.contains("2026-11-01 00:00:00 +09:00 – 2026-11-08 00:00:00 +09:00"));
    assert!(body.contains("value=\"2026-11-01T00:00\""));
    let (s, body, _) = fx.get("/t/acme/plots?range=99y", Some(&cookie)).await;
    assert_eq!(s, 400);
    assert!(body.contains("choose 24h, 7d or 30d"), "{body}");
    // In Japanese.
    fx.user("kenji", owlet_soc_portal::Role::CustomerViewer, "ja");
    let (cookie, _) = fx.login("kenji");
    let (_, body, _) = fx.get("/t/acme/plots", Some(&cookie)).await;
    assert!(body.contains("タイムゾーン") && body.contains("監視の稼働率"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plot_files_are_served_compiled_in_with_long_cache() {
    let fx = Fixture::new();
    for (name, kind) in [
        ("uPlot.iife.min.js", "text/javascript"),
        ("uPlot.min.css", "text/css"),
        ("plots.js", "text/javascript"),
        ("report.css", "text/css"),
        ("htmx.min.js", "text/javascript"),
    ] {
        let (s, body, r) = fx.get(&format!("/assets/{name}"), None).await;
        assert_eq!(s, 200, "{name}");
        assert!(!body.is_empty());
        let h = |k| r.headers().get(k).unwrap().to_str().unwrap().to_string();
        assert!(h("content-type").starts_with(kind), "{name}");
        assert!(h("cache-control").contains("immutable"), "{name}");
    }
    let (s, _, _) = fx.get("/assets/..%2FCargo.toml", None).await;
    assert_eq!(s, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_are_json_for_the_own_tenant_and_404_for_a_foreign_one() {
    let fx = Fixture::new();
    let (cookie, _) = fx.login("customer-viewer");
    for (name, _) in PLOTS.iter().chain(&[("tops", "")]) {
        let (s, body, r) = fx
            .get(&format!("/t/acme/series/{name}"), Some(&cookie))
            .await;
        assert_eq!(s, 200, "{name}: {body}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if *name != "tops" {
            assert_eq!(v["time_zone"], "Asia/Tokyo", "{name}");
            assert!(v["t"].is_array() && v["lines"].is_array(), "{name}");
        }
    }
    let (_, body, _) = fx.get("/t/acme/series/availability", Some(&cookie)).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["lines"].as_array().unwrap().iter().any(|l| l["values"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| !x.is_null())),
        "acme's checks are in the series: {body}"
    );
    let (_, body, _) = fx.get("/t/acme/series/alerts", Some(&cookie)).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["alerts"][0]["subject"], "web", "{body}");
    assert!(v["t"].is_array(), "the timeline is a series plots.js draws");
    let (_, body, _) = fx.get("/t/acme/series/tops", Some(&cookie)).await;
    assert!(body.contains("10.0.0.5"), "{body}");

    // Another tenant's, or one that does not exist: 404, nothing of it.
    for path in [
        "/t/beta/series/availability",
        "/t/beta/series/tops",
        "/t/nosuch/series/alerts",
    ] {
        let (s, body, _) = fx.get(path, Some(&cookie)).await;
        assert_eq!(s, 404, "{path}");
        assert!(!body.contains(BETA_MARK), "{path}");
    }
    let (s, _, _) = fx.get("/t/acme/series/nosuch", Some(&cookie)).await;
    assert_eq!(s, 404);

    // Ranges: readable 400s, never a 500.
    let long = format!(
        "from={}&to={}",
        urlencode("2024-01-01T00:00:00Z"),
        urlencode("2025-02-05T00:00:00Z")
    );
    for (query, says) in [
        ("from=yesterday", "RFC 3339"),
        (
            &format!("from={}", urlencode("'; DROP TABLE events; --")),
            "is not a time",
        ),
        ("from=2026-12-07&to=2026-12-01", "from must be before to"),
        ("from=2026-12-07&to=2026-12-07", "from must be before to"),
        (long.as_str(), "longer than 400 days"),
        ("range=1y", "choose 24h, 7d or 30d"),
        (
            &format!("to={}", urlencode("99999-01-01T00:00:00Z")),
            "is not a time",
        ),
    ] {
        let (s, body, _) = fx
            .get(&format!("/t/acme/series/cpu?{query}"), Some(&cookie))
            .await;
        assert_eq!(s, 400, "{query}: {body}");
        assert!(body.contains(says), "{query}: {body}");
    }
    let ok = format!(
        "from={}&to={}",
        urlencode("2026-11-01T00:00:00+09:00"),
        urlencode("2026-12-01T00:00:00+09:00")
    );
    let (s, body, _) = fx
        .get(&format!("/t/acme/series/memory?{ok}"), Some(&cookie))
        .await;
    assert_eq!(s, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["source"], "rollups", "30 days read the rollups");
    assert_eq!(v["t"].as_array().unwrap().len(), 30 * 24);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_report_is_listed_opened_and_downloaded_audited() {
    let fx = Fixture::new();
    let label = keep_real_report(&fx);
    let (cookie, _) = fx.login("customer-viewer");
    let (s, list, _) = fx.get("/t/acme/reports", Some(&cookie)).await;
    assert_eq!(s, 200);
    for file in [
        format!("{label}.en.html"),
        format!("{label}.en.pdf"),
        format!("{label}.json"),
    ] {
        assert!(
            list.contains(&format!("href=\"/t/acme/reports/files/{file}\"")),
            "{file}\n{list}"
        );
    }
    assert!(
        list.contains("2026-11"),
        "the fixture's kept JSON is listed"
    );
    assert!(!list.contains(BETA_MARK));
    assert_inert("reports", &list);

    // The page, inside the portal: its stylesheet linked (CSP), escaped.
    let page = format!("/t/acme/reports/files/{label}.en.html");
    let (s, body, r) = fx.get(&page, Some(&cookie)).await;
    assert_eq!(s, 200);
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("style-src 'self'")
    );
    assert_report_inert(&page, &body);
    assert!(
        body.contains("/etc/&lt;script&gt;alert(1)&lt;/script&gt;")
            || body.contains("/etc/&#60;script&#62;alert(1)&#60;/script&#62;"),
        "the hostile path is shown as text\n{body}"
    );

    // Downloads: attachments, the bytes kept.
    let (s, pdf, r) = fx
        .get(
            &format!("/t/acme/reports/files/{label}.en.pdf"),
            Some(&cookie),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(pdf, "%PDF-1.4 stand-in");
    assert_eq!(r.headers()["content-type"], "application/pdf");
    assert_eq!(
        r.headers()["content-disposition"],
        format!("attachment; filename=\"acme-{label}.en.pdf\"").as_str()
    );
    let (s, json, _) = fx
        .get(
            &format!("/t/acme/reports/files/{label}.json"),
            Some(&cookie),
        )
        .await;
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["tenant"], "acme");

    let log = audit::list(&fx.state.0.db.lock(), Some("acme"), 50).unwrap();
    let of = |action: &str| {
        log.iter()
            .filter(|e| e.action == action && e.user == "customer-viewer")
            .count()
    };
    assert_eq!(of("report.download"), 2);
    assert_eq!(of("report.view"), 1);

    // Only listed names, only the own tenant's.
    for path in [
        format!("/t/acme/reports/files/{label}.ja.html"),
        "/t/acme/reports/files/..%2F..%2Fportal.db".to_string(),
        "/t/acme/reports/files/.report.part".to_string(),
        "/t/beta/reports/files/2026-11.json".to_string(),
        "/t/beta/reports/files/2026-11.en.html".to_string(),
        "/t/beta/reports".to_string(),
    ] {
        let (s, body, _) = fx.get(&path, Some(&cookie)).await;
        assert_eq!(s, 404, "{path}");
        assert!(!body.contains(BETA_MARK), "{path}");
    }
    let log = audit::list(&fx.state.0.db.lock(), None, 100).unwrap();
    assert_eq!(
        log.iter().filter(|e| e.action == "report.download").count(),
        2,
        "refusals download nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_is_rendered_now_and_says_nothing_found_when_nothing_happened() {
    let fx = Fixture::new();
    let (cookie, _) = fx.login("customer-viewer");
    let page = format!("/t/acme/reports/now?period={}", this_month());
    let (s, body, _) = fx.get(&page, Some(&cookie)).await;
    assert_eq!(s, 200, "{body}");
    assert_report_inert(&page, &body);
    assert!(body.contains("Monitoring report"), "{body}");
    assert!(body.contains("check_down") || body.contains("web"));

    // A quiet week: soc-report says so plainly.
    let (s, body, _) = fx
        .get("/t/acme/reports/now?period=2020-W10", Some(&cookie))
        .await;
    assert_eq!(s, 200);
    assert!(body.contains("Nothing found"), "{body}");

    for bad in ["2026-13", "next-week", "2026-W60"] {
        let (s, body, _) = fx
            .get(&format!("/t/acme/reports/now?period={bad}"), Some(&cookie))
            .await;
        assert_eq!(s, 400, "{bad}");
        assert!(body.contains("YYYY-MM"), "{bad}: {body}");
    }
    let (s, _, _) = fx.get("/t/acme/reports/now", Some(&cookie)).await;
    assert_eq!(s, 400);
    let (s, body, _) = fx
        .get("/t/beta/reports/now?period=2026-11", Some(&cookie))
        .await;
    assert_eq!(s, 404);
    assert!(!body.contains(BETA_MARK));
    let log = audit::list(&fx.state.0.db.lock(), Some("acme"), 50).unwrap();
    assert_eq!(
        log.iter().filter(|e| e.action == "report.render").count(),
        2
    );
}
