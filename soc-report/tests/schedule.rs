//! The report schedule with a fake clock: a closed week and month give
//! exactly one report set each, a re-run gives none, expired ones are
//! deleted, and a set to be mailed is marked until it is.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use owlet_soc_export::Zone;
use owlet_soc_report::Lang;
use owlet_soc_report::pdf::PdfError;
use owlet_soc_report::schedule::{self, ReportsConfig, TenantPlan};

fn fake_pdf(html: &str, out: &Path) -> Result<(), PdfError> {
    assert!(html.starts_with("<!DOCTYPE html>"));
    std::fs::write(out, b"%PDF-fake").unwrap();
    Ok(())
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_closed_week_and_month_are_written_once_and_deleted_when_expired() {
    let (_dir, store) = filled();
    let config = ReportsConfig {
        mail_channel: Some("mail".into()),
        ..ReportsConfig::default()
    };
    assert_eq!(config.languages, [Lang::Ja, Lang::En]);
    let plan = TenantPlan {
        tenant: "acme".into(),
        zone: Zone::parse("Asia/Tokyo").unwrap(),
        max_age: Some(Duration::from_secs(90 * 86_400)),
        mail_to: vec!["customer@example.com".into()],
    };
    let reports = schedule::reports_dir(&store, "acme").unwrap();

    // Tuesday 2026-12-01 00:30 in Tokyo: the week W48 has closed, November
    // only 30 minutes ago (within the 1 h delay): October is the latest due.
    let early = schedule::due_periods(&config, &plan.zone, t(30 * DAY + 1800));
    let labels: Vec<_> = early.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(labels, ["2026-W48", "2026-10"]);

    // 02:00: W48 and November are due.
    let now = t(30 * DAY + 7200);
    let first = schedule::run_once(&store, &config, std::slice::from_ref(&plan), now, &fake_pdf);
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    assert_eq!(first.written.len(), 10, "{:?}", first.written);
    assert_eq!(
        files(&reports),
        [
            "2026-11.en.html",
            "2026-11.en.pdf",
            "2026-11.ja.html",
            "2026-11.ja.pdf",
            "2026-11.json",
            "2026-11.mail-pending",
            "2026-W48.en.html",
            "2026-W48.en.pdf",
            "2026-W48.ja.html",
            "2026-W48.ja.pdf",
            "2026-W48.json",
            "2026-W48.mail-pending",
        ]
    );
    let page = std::fs::read_to_string(reports.join("2026-11.ja.html")).unwrap();
    assert!(page.contains("監視レポート") && page.contains("90.000 %"));
    let listed = schedule::stored(&store, "acme").unwrap();
    let periods: Vec<_> = listed.iter().map(|r| r.period.as_str()).collect();
    assert_eq!(periods, ["2026-11", "2026-W48"]);
    assert_eq!(listed[0].files.len(), 5);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(reports.join("2026-11.json")).unwrap()).unwrap();
    assert_eq!(json["period"], "2026-11");

    // The same day again, and after a restart an hour later: nothing new.
    let again = schedule::run_once(&store, &config, std::slice::from_ref(&plan), now, &fake_pdf);
    assert!(
        again.written.is_empty() && again.deleted.is_empty(),
        "{again:?}"
    );
    let later = schedule::run_once(
        &store,
        &config,
        std::slice::from_ref(&plan),
        t(30 * DAY + 3 * 3600),
        &fake_pdf,
    );
    assert!(later.written.is_empty(), "{later:?}");

    // A deleted file (a PDF that failed) is made again, and only it.
    std::fs::remove_file(reports.join("2026-W48.en.pdf")).unwrap();
    let redo = schedule::run_once(&store, &config, std::slice::from_ref(&plan), now, &fake_pdf);
    assert_eq!(redo.written, [reports.join("2026-W48.en.pdf")]);

    // The pending mails: the Japanese page as the body, both PDFs attached.
    let mail = schedule::pending_mail(&store, &config, &plan);
    assert_eq!(mail.len(), 2);
    let november = mail.iter().find(|m| m.period == "2026-11").unwrap();
    assert!(november.html.contains("lang=\"ja\""));
    let names: Vec<_> = november.attachments.iter().map(|a| a.0.as_str()).collect();
    assert_eq!(names, ["acme-2026-11.ja.pdf", "acme-2026-11.en.pdf"]);

    // 100 days later November's and W48's reports are past max_age (90 d):
    // deleted, while the newly due week and month are written.
    let much_later = t(130 * DAY);
    let expire = schedule::run_once(
        &store,
        &config,
        std::slice::from_ref(&plan),
        much_later,
        &fake_pdf,
    );
    assert!(expire.errors.is_empty(), "{:?}", expire.errors);
    assert_eq!(expire.deleted.len(), 12, "{:?}", expire.deleted);
    let left = files(&reports);
    assert!(
        left.iter()
            .all(|f| !f.starts_with("2026-11") && !f.starts_with("2026-W48")),
        "{left:?}"
    );
    assert!(left.contains(&"2027-02.ja.html".to_string()), "{left:?}");
}

#[test]
fn a_tenant_without_mail_gets_no_mark_and_pdf_errors_do_not_stop_the_rest() {
    let (_dir, store) = filled();
    let config = ReportsConfig {
        weekly: false,
        languages: vec![Lang::En],
        ..ReportsConfig::default()
    };
    let plan = TenantPlan {
        tenant: "acme".into(),
        zone: Zone::Utc,
        max_age: None,
        mail_to: Vec::new(),
    };
    let broken = |_: &str, _: &Path| -> Result<(), PdfError> {
        Err(owlet_soc_report::pdf::locate(None, None).unwrap_err())
    };
    let out = schedule::run_once(&store, &config, &[plan], t(31 * DAY), &broken);
    assert_eq!(out.errors.len(), 1);
    assert!(
        out.errors[0].contains("apt-get install chromium"),
        "{:?}",
        out.errors
    );
    let reports = schedule::reports_dir(&store, "acme").unwrap();
    assert_eq!(files(&reports), ["2026-11.en.html", "2026-11.json"]);
}
