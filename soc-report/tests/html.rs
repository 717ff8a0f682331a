//! The HTML and PDF report: hostile sensor data is escaped, both languages
//! render every section, a quiet period says "nothing found" plainly, the
//! time to notification comes from the notification record, and the PDF
//! of a Japanese report holds its Japanese heading and its figures.

mod common;

use common::*;
use owlet_proto::v1::{FileChange, FlowRecord, Severity, State, event::Kind};
use owlet_soc_export::Zone;
use owlet_soc_report::{Lang, Options, Period, Report, Style, build, html};
use owlet_soc_store::Store;

fn report(store: &Store, period: &str) -> Report {
    let reader = store.reader("acme").unwrap();
    let zone = Zone::parse("Asia/Tokyo").unwrap();
    build(
        &reader,
        &Period::parse(period).unwrap(),
        &zone,
        t(40 * DAY),
        &Options::default(),
    )
    .unwrap()
}

const SCRIPT: &str = "/etc/<script>alert(1)</script>";
const IMG: &str = "<img src=x onerror=alert(2)>.example";
const SVG: &str = "\"><svg onload=alert(3)>";

fn hostile_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut events = known_events();
    events.push(ev(
        4 * DAY,
        Kind::FileChange(FileChange {
            path: SCRIPT.into(),
            change: 1,
            changed_by: "<b>mallory</b>".into(),
            severity: Severity::Critical as i32,
            ..Default::default()
        }),
    ));
    events.push(ev(
        4 * DAY,
        Kind::FlowRecord(FlowRecord {
            src_addr: "10.0.0.9".into(),
            dst_addr: "192.0.2.9".into(),
            dst_port: 53,
            protocol: 17,
            bytes_out: 100,
            packets_out: 1,
            dns_query: IMG.into(),
            tls_sni: SVG.into(),
            ..Default::default()
        }),
    ));
    events.push(alert(5 * DAY, "<i>db</i>", State::Down, Severity::Critical));
    append(&store, "acme", "s1", events);
    (dir, store)
}

#[test]
fn hostile_sensor_data_is_escaped_in_both_languages_and_both_styles() {
    let (_dir, store) = hostile_store();
    let r = report(&store, "2026-11");
    // The data did reach the report unaltered.
    assert!(r.config_changes.latest.iter().any(|c| c.path == SCRIPT));
    assert!(r.names.dns.iter().any(|n| n.name == IMG));
    let linked = Style::Linked {
        href: "/static/report.css".into(),
    };
    for lang in Lang::ALL {
        for style in [&linked, &Style::Inline] {
            let page = html::render(&r, lang, style).unwrap();
            for raw in [SCRIPT, IMG, SVG, "<b>mallory", "<i>db"] {
                assert!(!page.contains(raw), "{raw} unescaped in {lang}");
            }
            assert!(
                page.contains("/etc/&#60;script&#62;alert(1)&#60;/script&#62;"),
                "{page}"
            );
            assert!(page.contains("&#60;img src=x onerror=alert(2)&#62;.example"));
            // No script at all, and no inline style attribute (CSP).
            assert!(!page.contains("<script"), "script element in {lang}");
            assert!(!page.contains("style=\""), "style attribute in {lang}");
        }
        let page = html::render(&r, lang, &linked).unwrap();
        assert!(page.contains("<link rel=\"stylesheet\" href=\"/static/report.css\">"));
        assert!(!page.contains("<style>"));
        let page = html::render(&r, lang, &Style::Inline).unwrap();
        assert_eq!(page.matches("<style>").count(), 1);
        assert!(!page.contains("<link"));
    }
}

#[test]
fn both_languages_show_every_section_with_offsets_and_figures() {
    let (_dir, store) = filled();
    let r = report(&store, "2026-11");
    let en = html::render(&r, Lang::En, &Style::Inline).unwrap();
    let ja = html::render(&r, Lang::Ja, &Style::Inline).unwrap();
    for id in [
        "summary",
        "availability",
        "alerts",
        "incidents",
        "changes",
        "sources",
        "destinations",
        "ports",
        "dns",
        "sni",
        "http",
        "host",
        "sensors",
        "notes",
    ] {
        let anchor = format!("<section id=\"{id}\"");
        assert!(en.contains(&anchor) && ja.contains(&anchor), "{id}");
    }
    for page in [&en, &ja] {
        assert!(page.contains("2026-11-01 00:00:00 +09:00"));
        assert!(page.contains("90.000 %"));
        assert!(page.contains("/etc/ssh/sshd_config"));
        assert!(page.contains("<svg class=\"bar\""));
        // The period had alerts and down time: no "nothing found" headline.
        assert!(!page.contains("class=\"nothing-found headline\""));
    }
    assert!(en.contains("<html lang=\"en\">") && en.contains("Availability per check (SLA)"));
    assert!(ja.contains("<html lang=\"ja\">") && ja.contains("監視項目ごとの稼働率（SLA）"));
    assert!(ja.contains("検知事項なし：この期間の DNS 問い合わせはありません。"));
    assert!(en.contains("Nothing found: no DNS queries in this period."));
}

#[test]
fn a_quiet_period_says_nothing_found_first_in_both_languages() {
    let (_dir, store) = filled();
    let r = report(&store, "2027-W10");
    let en = html::render(&r, Lang::En, &Style::Inline).unwrap();
    assert!(en.contains(
        "<p class=\"nothing-found headline\">Nothing found: no alerts, no incidents and no down time in this period.</p>"
    ));
    assert!(en.contains("No events were received for this period (168 hours)."));
    // Every section but the summary and the notes says it found nothing.
    assert_eq!(en.matches("<p class=\"nothing\">").count(), 12, "{en}");
    let ja = html::render(&r, Lang::Ja, &Style::Inline).unwrap();
    assert!(
        ja.contains("検知事項なし：この期間にアラート、インシデント、停止はありませんでした。")
    );
    assert_eq!(ja.matches("<p class=\"nothing\">").count(), 12);
}

#[test]
fn time_to_notification_comes_from_the_notification_record() {
    let (dir, store) = filled();
    let before = report(&store, "2026-11");
    let web = before
        .incidents
        .iter()
        .find(|i| i.subject == "web")
        .unwrap();
    assert_eq!(web.notified_at, None);
    let raise = web.raised_log_id.unwrap();
    // The raise of "web" was at DAY + 240 s; its mail was delivered 95 s later
    // (a trap through a second channel was sent after 200 s).
    let raised_us = (NOV_TOKYO as i64 + DAY + 240) * 1_000_000;
    let path = owlet_soc_notify::record_path(dir.path(), "acme");
    let record = owlet_soc_notify::record::Record::open(path.parent().unwrap(), "acme").unwrap();
    drop(record);
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch(&format!(
        "INSERT INTO notifications (id, rule, group_key, status, severity, severity_rank, zone,
             opened_us, due_us, first_detected_us, last_detected_us, event_count)
         VALUES (1, 'all', 'k', 'delivered', 'critical', 3, 'Asia/Tokyo', {raised_us}, {raised_us},
                 {raised_us}, {raised_us}, 1);
         INSERT INTO notification_events VALUES (1, {raise}, 'acme/s1/x', {raised_us}, '{{}}');
         INSERT INTO deliveries (notification_id, channel, channel_type, recipients, status,
             sent_us, delivered_us, next_attempt_us)
         VALUES (1, 'mail', 'smtp', 'soc@example.com', 'delivered', {sent}, {sent}, 0),
                (1, 'trap', 'snmp', 'nms', 'sent', {trap}, NULL, 0);",
        sent = raised_us + 95_000_000,
        trap = raised_us + 200_000_000,
    ))
    .unwrap();
    drop(db);
    let after = report(&store, "2026-11");
    let web = after.incidents.iter().find(|i| i.subject == "web").unwrap();
    assert_eq!(web.time_to_notification_seconds, Some(95));
    assert_eq!(
        web.notified_at.as_deref(),
        Some("2026-11-02T00:05:35.000+09:00")
    );
    // The others were not notified.
    assert_eq!(
        after
            .incidents
            .iter()
            .filter(|i| i.notified_at.is_none())
            .count(),
        2
    );
    let en = html::render(&after, Lang::En, &Style::Inline).unwrap();
    assert!(en.contains("2026-11-02 00:05:35 +09:00"), "{en}");
    assert!(en.contains("1m 35s"));
    assert!(en.contains("not notified"));
    // The text form says it too.
    let text = after.to_text();
    assert!(
        text.contains("NOTIFIED AFTER") && text.contains("1m 35s"),
        "{text}"
    );
}

#[test]
fn a_japanese_report_prints_to_a_pdf_with_its_heading_and_figures() {
    let (dir, store) = filled();
    let r = report(&store, "2026-11");
    let page = html::render(&r, Lang::Ja, &Style::Inline).unwrap();
    let out = dir.path().join("report.ja.pdf");
    owlet_soc_report::pdf::html_to_pdf(&page, &out, owlet_soc_report::pdf::DEFAULT_TIMEOUT)
        .unwrap_or_else(|e| {
            panic!("{e} (dev/packages.txt lists the packages; dev/test installs them)")
        });
    let bytes = std::fs::read(&out).unwrap();
    // For a person to look at: OWLET_REPORT_ARTIFACTS=DIR keeps the page
    // and the PDF.
    if let Some(keep) = std::env::var_os("OWLET_REPORT_ARTIFACTS") {
        let keep = std::path::PathBuf::from(keep);
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::write(keep.join("report.ja.html"), &page).unwrap();
        std::fs::write(keep.join("report.ja.pdf"), &bytes).unwrap();
    }
    assert!(bytes.starts_with(b"%PDF-"));
    assert!(bytes.len() > 10_000, "{} bytes", bytes.len());
    // pdftotext (poppler-utils) reads the text back.
    let text = std::process::Command::new("pdftotext")
        .args(["-enc", "UTF-8"])
        .arg(&out)
        .arg("-")
        .output()
        .expect("pdftotext (Debian package poppler-utils, in dev/packages.txt)");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("監視レポート"), "{text}");
    assert!(text.contains("90.000 %"), "{text}");
    assert!(text.contains("sshd_config"), "{text}");
}

#[test]
fn a_missing_chromium_names_the_package_to_install() {
    let empty = tempfile::tempdir().unwrap();
    let e = owlet_soc_report::pdf::locate(None, Some(empty.path().into()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("apt-get install chromium fonts-noto-cjk"), "{e}");
    let e = owlet_soc_report::pdf::locate(Some("/nonexistent/chromium".into()), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("OWLET_CHROMIUM=/nonexistent/chromium"), "{e}");
}
