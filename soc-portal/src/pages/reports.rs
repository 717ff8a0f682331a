//! Reports of one tenant: the kept ones (soc-report's schedule keeps them
//! in `tenants/T/reports/`, or in the scaled-out SOC in `tenant_T.reports`,
//! read through [`crate::backend`]) per period, each HTML page shown inside the
//! portal and each PDF / JSON downloaded (audited); and "render now" of a
//! chosen month or ISO week as HTML (no PDF on demand: printing through
//! headless Chromium takes seconds and a browser prints the page itself).
//!
//! Guarantees:
//! * a file is served only if its exact name is kept for the guard's
//!   tenant ([`crate::backend::TenantData::report_file`]: embedded, listed
//!   in the tenant's directory before it is read; scaled-out, a bound
//!   parameter on the tenant's own `reports` table);
//! * a kept page is self-contained (its stylesheet inline); the portal's
//!   CSP refuses inline style, so its `<style>` element is swapped for the
//!   same stylesheet linked from the portal's assets. Nothing else of the
//!   page is changed: its data was escaped by soc-report's template, and
//!   the page has no script;
//! * every view, download and rendering is in the audit log.

use askama::Template;
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use owlet_soc_export::Zone;
use owlet_soc_report::schedule::StoredReport;
use owlet_soc_report::{Options, Period, Style};
use serde::Deserialize;

use super::given;
use crate::i18n::Lang;
use crate::web::{AppState, Ctx, Frame, PageError, render};

/// Where the portal serves soc-report's stylesheet.
const REPORT_CSS: &str = "/assets/report.css";

fn report_lang(lang: Lang) -> owlet_soc_report::Lang {
    match lang {
        Lang::En => owlet_soc_report::Lang::En,
        Lang::Ja => owlet_soc_report::Lang::Ja,
    }
}

/// One file of a kept report, as a link.
struct FileLink {
    href: String,
    /// `HTML (ja)`, `PDF (en)`, `JSON`.
    label: String,
    /// Downloaded rather than shown.
    download: bool,
}

struct Row {
    period: String,
    files: Vec<FileLink>,
}

fn row(tenant: &str, r: StoredReport) -> Row {
    let files = r
        .files
        .into_iter()
        .filter_map(|name| {
            let parts: Vec<&str> = name.split('.').collect();
            let (lang, ext) = match parts.as_slice() {
                [_, ext] => (None, *ext),
                [_, lang, ext] => (Some(*lang), *ext),
                _ => return None,
            };
            let kind = match ext {
                "html" | "pdf" | "json" => ext.to_ascii_uppercase(),
                _ => return None,
            };
            Some(FileLink {
                href: format!("/t/{tenant}/reports/files/{name}"),
                label: lang.map_or_else(|| kind.clone(), |l| format!("{kind} ({l})")),
                download: ext != "html",
            })
        })
        .collect();
    Row {
        period: r.period,
        files,
    }
}

#[derive(Template)]
#[template(path = "reports.html")]
struct ReportsPage {
    f: Frame,
    zone: String,
    rows: Vec<Row>,
}

pub async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Response, PageError> {
    state
        .blocking(move |s| {
            let tenant = ctx.tenant()?;
            let rows = s
                .data(tenant)?
                .reports()?
                .into_iter()
                .map(|r| row(tenant, r))
                .collect();
            s.audit(&ctx, "view.reports", "");
            render(&ReportsPage {
                f: Frame::new(&ctx, "nav.reports"),
                zone: s.tenant_zone(tenant).name().to_string(),
                rows,
            })
        })
        .await
}

/// A kept page with its inline stylesheet swapped for the linked one.
pub fn linked_style(page: &str) -> String {
    let head = page.find("</head>").unwrap_or(0);
    let start = page[..head].find("<style>");
    let end = start.and_then(|st| page[st..head].find("</style>").map(|e| st + e + 8));
    match (start, end) {
        (Some(start), Some(end)) => format!(
            "{}<link rel=\"stylesheet\" href=\"{REPORT_CSS}\">{}",
            &page[..start],
            &page[end..]
        ),
        _ => page.to_string(),
    }
}

/// `GET /t/{tenant}/reports/files/{file}`: a kept page shown, or a kept
/// PDF / JSON downloaded.
pub async fn file(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path((_, name)): Path<(String, String)>,
) -> Result<Response, PageError> {
    state
        .blocking(move |s| {
            let tenant = ctx.tenant()?;
            let bytes = s
                .data(tenant)?
                .report_file(&name)?
                .ok_or(PageError::NotFound)?;
            if name.ends_with(".html") {
                let page = String::from_utf8(bytes)
                    .map_err(|e| PageError::Internal(format!("reading {name}: {e}")))?;
                s.audit(&ctx, "report.view", &name);
                return Ok(Html(linked_style(&page)).into_response());
            }
            let kind = if name.ends_with(".pdf") {
                "application/pdf"
            } else if name.ends_with(".json") {
                "application/json"
            } else {
                return Err(PageError::NotFound);
            };
            s.audit(&ctx, "report.download", &name);
            Ok((
                [
                    (header::CONTENT_TYPE, kind.to_string()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{tenant}-{name}\""),
                    ),
                ],
                bytes,
            )
                .into_response())
        })
        .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NowQuery {
    pub period: String,
}

/// `GET /t/{tenant}/reports/now?period=2026-11`: the report of a month or
/// ISO week made now, in the reader's language and the tenant's zone.
pub async fn now(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<NowQuery>,
) -> Result<Response, PageError> {
    let period = given(&q.period).ok_or_else(|| {
        PageError::BadRequest(
            "choose a period: a month as YYYY-MM (2026-11) or an ISO week as YYYY-Www (2026-W48)"
                .into(),
        )
    })?;
    let period = Period::parse(&period).map_err(|e| PageError::BadRequest(e.to_string()))?;
    state
        .blocking(move |s| {
            let tenant = ctx.tenant()?;
            let data = s.data(tenant)?;
            let source = data.source().ok_or_else(|| {
                PageError::BadRequest("this tenant has no stored events yet".into())
            })?;
            let zone = Zone::parse(s.tenant_zone(tenant).name()).unwrap_or(Zone::Utc);
            let report = owlet_soc_report::build(
                source,
                &period,
                &zone,
                std::time::SystemTime::now(),
                &Options::default(),
            )?;
            let page = owlet_soc_report::html::render(
                &report,
                report_lang(ctx.lang),
                &Style::Linked {
                    href: REPORT_CSS.into(),
                },
            )
            .map_err(|e| PageError::Internal(format!("report template: {e}")))?;
            s.audit(&ctx, "report.render", &period.label);
            Ok(Html(page).into_response())
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inline_stylesheet_becomes_a_link() {
        let page = "<html><head><title>&lt;style&gt;</title><style>p{}</style>\n</head><body><p>&lt;style&gt;x</p></body></html>";
        assert_eq!(
            linked_style(page),
            "<html><head><title>&lt;style&gt;</title><link rel=\"stylesheet\" href=\"/assets/report.css\">\n</head><body><p>&lt;style&gt;x</p></body></html>"
        );
        let plain = "<html><head></head><body><style>x</style></body></html>";
        assert_eq!(linked_style(plain), plain);
    }

    #[test]
    fn kept_files_become_links() {
        let r = row(
            "acme",
            StoredReport {
                period: "2026-11".into(),
                files: vec![
                    "2026-11.en.html".into(),
                    "2026-11.ja.pdf".into(),
                    "2026-11.json".into(),
                    "2026-11.other".into(),
                ],
            },
        );
        let labels: Vec<_> = r
            .files
            .iter()
            .map(|f| (f.label.as_str(), f.download))
            .collect();
        assert_eq!(
            labels,
            [("HTML (en)", false), ("PDF (ja)", true), ("JSON", true)]
        );
        assert_eq!(r.files[0].href, "/t/acme/reports/files/2026-11.en.html");
    }
}
