//! Reports made on schedule and kept by retention: after an ISO week or a
//! month closes in a tenant's zone, its report is written once into the
//! tenant's directory, mailed if asked, and deleted with the tenant's
//! retention.
//!
//! ```text
//! ROOT/tenants/T/reports/2026-W48.json        the figures (language-free)
//! ROOT/tenants/T/reports/2026-W48.ja.html     self-contained page (inline style)
//! ROOT/tenants/T/reports/2026-W48.ja.pdf      printed by Chromium (if `pdf = true`)
//! ROOT/tenants/T/reports/2026-W48.en.html …   one pair per configured language
//! ROOT/tenants/T/reports/2026-W48.mail-pending  until the mail went out
//! ```
//!
//! Guarantees:
//! * **Once.** A file is written only when it is missing, so a re-run (or a
//!   restart) writes nothing new; a crash in the middle writes the rest
//!   at the next run.
//! * **Whole or absent.** Each file is written to a temporary name in the
//!   same directory, synced, then renamed.
//! * **After the period, with a margin.** A period is due `delay` after its
//!   end in the tenant's zone (late events from the sensors' spools); the
//!   latest closed week and month are due, never the running one.
//! * **Kept as long as the events.** Reports of a period that ended more
//!   than the tenant's `max_age` ago are deleted (and not written).
//! * Mail: a newly written set is marked `mail-pending`; the mailer sends
//!   each pending set (the HTML as the body, the PDFs attached) and removes
//!   the mark after the server accepted it, so a failed send is tried again
//!   at the next run.
//!
//! Never: write outside `ROOT/tenants/T/reports/` of a tenant that has a
//! store (names are checked by the store), or delete a file it did not
//! name (only `PERIOD.*` files whose period parses).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{Datelike, Days, TimeZone};
use owlet_soc_export::Zone;
use owlet_soc_store::Store;
use serde::Deserialize;

use crate::i18n::Lang;
use crate::pdf::PdfError;
use crate::shelf::{Dir, Shelf};
use crate::{Options, Period, ReportError, Source, Style, html};

/// `[reports]` of the SOC configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportsConfig {
    /// A report per ISO week (Monday to Monday in the tenant's zone).
    #[serde(default = "yes")]
    pub weekly: bool,
    /// A report per calendar month.
    #[serde(default = "yes")]
    pub monthly: bool,
    /// The languages written (`"ja"`, `"en"`).
    #[serde(default = "default_languages")]
    pub languages: Vec<Lang>,
    /// Also print each page to PDF (needs Debian's `chromium` and
    /// `fonts-noto-cjk`).
    #[serde(default = "yes")]
    pub pdf: bool,
    /// How long after a period's end its report is made.
    #[serde(default = "default_delay", with = "humantime_serde")]
    pub delay: Duration,
    /// How often due reports are looked for.
    #[serde(default = "default_every", with = "humantime_serde")]
    pub check_every: Duration,
    /// The `[[notify.channel]]` (type `smtp`) reports are mailed through,
    /// to each tenant's `report_mail_to`; unset: reports are not mailed.
    #[serde(default)]
    pub mail_channel: Option<String>,
}

fn yes() -> bool {
    true
}
fn default_languages() -> Vec<Lang> {
    vec![Lang::Ja, Lang::En]
}
fn default_delay() -> Duration {
    Duration::from_secs(3600)
}
fn default_every() -> Duration {
    Duration::from_secs(600)
}

impl Default for ReportsConfig {
    fn default() -> Self {
        ReportsConfig {
            weekly: true,
            monthly: true,
            languages: default_languages(),
            pdf: true,
            delay: default_delay(),
            check_every: default_every(),
            mail_channel: None,
        }
    }
}

impl ReportsConfig {
    /// What is wrong with this section, for the config loader (key, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.languages.is_empty() {
            out.push((
                "reports.languages",
                "list at least one of \"ja\", \"en\"".to_string(),
            ));
        }
        if self.check_every.is_zero() {
            out.push(("reports.check_every", "must be longer than 0s".to_string()));
        }
        out
    }
}

/// What the schedule needs to know of one tenant.
#[derive(Debug, Clone)]
pub struct TenantPlan {
    pub tenant: String,
    pub zone: Zone,
    /// The tenant's retention by age: older reports are deleted.
    pub max_age: Option<Duration>,
    /// Where its reports are mailed (empty: not mailed).
    pub mail_to: Vec<String>,
}

/// What one run did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub written: Vec<PathBuf>,
    pub deleted: Vec<PathBuf>,
    /// Per tenant and period, what failed (the run goes on with the rest).
    pub errors: Vec<String>,
}

impl Outcome {
    /// Logs what the run did.
    pub fn log(&self) {
        for path in &self.written {
            tracing::info!(file = %path.display(), "report written");
        }
        for path in &self.deleted {
            tracing::info!(file = %path.display(), "expired report deleted (tenant retention max_age)");
        }
        for e in &self.errors {
            tracing::warn!(error = %e, "report not made; tried again at the next interval");
        }
    }
}

/// Prints an HTML page to a PDF file (real: [`crate::pdf::html_to_pdf`]).
pub type PdfPrinter<'a> = &'a (dyn Fn(&str, &Path) -> Result<(), PdfError> + Sync);

/// The directory of `tenant`'s reports.
pub fn reports_dir(store: &Store, tenant: &str) -> Result<PathBuf, ReportError> {
    Ok(store.tenant_dir(tenant)?.join("reports"))
}

/// The periods due at `now` in `zone`: the latest closed ISO week and
/// month that ended at least `delay` ago.
pub fn due_periods(config: &ReportsConfig, zone: &Zone, now: SystemTime) -> Vec<Period> {
    let at = now
        .checked_sub(config.delay)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let utc = chrono::DateTime::<chrono::Utc>::from(at);
    let today = match zone {
        Zone::Utc => utc.date_naive(),
        Zone::Named(tz) => tz.from_utc_datetime(&utc.naive_utc()).date_naive(),
    };
    let mut out = Vec::new();
    if config.weekly
        && let Some(d) = today.checked_sub_days(Days::new(7))
    {
        let w = d.iso_week();
        out.extend(Period::parse(&format!("{}-W{:02}", w.year(), w.week())).ok());
    }
    if config.monthly
        && let Some(d) = today
            .with_day(1)
            .and_then(|d| d.checked_sub_days(Days::new(1)))
    {
        out.extend(Period::parse(&format!("{}-{:02}", d.year(), d.month())).ok());
    }
    let at_us = chrono::DateTime::<chrono::Utc>::from(at).timestamp_micros();
    out.retain(|p| p.bounds(zone).1 <= at_us);
    out
}

/// Whether `period` ended more than `max_age` before `now`.
fn expired(period: &Period, zone: &Zone, max_age: Option<Duration>, now: SystemTime) -> bool {
    let Some(age) = max_age else { return false };
    let now_us = owlet_soc_store::time::micros(now);
    period.bounds(zone).1 < now_us - age.as_micros() as i64
}

/// One pass over `tenants` at `now`: writes the due reports that are
/// missing and deletes the expired ones.
pub fn run_once(
    store: &Store,
    config: &ReportsConfig,
    tenants: &[TenantPlan],
    now: SystemTime,
    print: PdfPrinter,
) -> Outcome {
    let mut out = Outcome::default();
    for plan in tenants {
        let done = reports_dir(store, &plan.tenant).and_then(|dir| {
            let open = || -> Result<Box<dyn Source>, ReportError> {
                Ok(Box::new(store.reader(&plan.tenant)?))
            };
            tenant_once(&Dir(dir), &open, config, plan, now, print, &mut out)
        });
        if let Err(e) = done {
            out.errors.push(format!("tenant {}: {e}", plan.tenant));
        }
    }
    out
}

/// Opens the source of a tenant's report, only when one is missing.
pub type Open<'a> = &'a dyn Fn() -> Result<Box<dyn Source>, ReportError>;

/// One tenant's pass: deletes what expired from `shelf`, then builds the
/// due reports from the source `open` gives and keeps the files `shelf`
/// lacks. Both SOCs run it: the embedded one with the tenant's directory
/// and file, the scaled-out one with its `reports` table and schema.
pub fn tenant_once(
    shelf: &dyn Shelf,
    open: Open,
    config: &ReportsConfig,
    plan: &TenantPlan,
    now: SystemTime,
    print: PdfPrinter,
    out: &mut Outcome,
) -> Result<(), ReportError> {
    let fail = |e: String| format!("tenant {}: {e}", plan.tenant);
    let expired_period = |p: &Period| expired(p, &plan.zone, plan.max_age, now);
    match shelf.delete_expired(&expired_period) {
        Ok(deleted) => out.deleted.extend(deleted),
        Err(e) => out.errors.push(fail(e)),
    }
    for period in due_periods(config, &plan.zone, now) {
        if expired(&period, &plan.zone, plan.max_age, now) {
            continue;
        }
        let label = &period.label;
        let json = format!("{label}.json");
        let mut wanted = vec![json.clone()];
        for lang in &config.languages {
            wanted.push(format!("{label}.{lang}.html"));
            if config.pdf {
                wanted.push(format!("{label}.{lang}.pdf"));
            }
        }
        let mut missing = Vec::new();
        for name in wanted {
            match shelf.has(&name) {
                Ok(true) => {}
                Ok(false) => missing.push(name),
                Err(e) => {
                    out.errors.push(fail(e));
                    return Ok(());
                }
            }
        }
        if missing.is_empty() {
            continue;
        }
        let source = open()?;
        let report = crate::build(&*source, &period, &plan.zone, now, &Options::default())?;
        let mut wrote = false;
        let mut keep = |name: &str, bytes: &[u8], out: &mut Outcome| {
            if missing.iter().any(|m| m == name) {
                match shelf.put(name, bytes) {
                    Ok(Some(place)) => {
                        out.written.push(place);
                        wrote = true;
                    }
                    Ok(None) => {}
                    Err(e) => out.errors.push(fail(e)),
                }
            }
        };
        let body = serde_json::to_vec_pretty(&report).unwrap_or_default();
        keep(&json, &body, out);
        for lang in &config.languages {
            let page = match html::render(&report, *lang, &Style::Inline) {
                Ok(page) => page,
                Err(e) => {
                    out.errors.push(format!(
                        "tenant {} {label} {lang}: rendering: {e}",
                        plan.tenant
                    ));
                    continue;
                }
            };
            keep(&format!("{label}.{lang}.html"), page.as_bytes(), out);
            let pdf = format!("{label}.{lang}.pdf");
            if config.pdf && missing.contains(&pdf) {
                match printed(print, &page) {
                    Ok(bytes) => keep(&pdf, &bytes, out),
                    Err(e) => out
                        .errors
                        .push(format!("tenant {} {label}: {e}", plan.tenant)),
                }
            }
        }
        if wrote
            && config.mail_channel.is_some()
            && !plan.mail_to.is_empty()
            && let Err(e) = shelf.mark_for_mail(label)
        {
            out.errors.push(fail(e));
        }
    }
    Ok(())
}

/// `page` printed to PDF, through a temporary file.
fn printed(print: PdfPrinter, page: &str) -> Result<Vec<u8>, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("a temporary directory for the PDF: {e}"))?;
    let path = dir.path().join("report.pdf");
    print(page, &path).map_err(|e| e.to_string())?;
    std::fs::read(&path).map_err(|e| format!("reading the printed PDF: {e}"))
}

/// The period a report file belongs to: the name up to its first dot.
fn period_of(path: &Path) -> Option<Period> {
    crate::shelf::period_of(path.file_name()?.to_str()?)
}

/// The report files of one period in a tenant's `reports/` directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredReport {
    pub period: String,
    /// File names (`2026-11.ja.html`, …), sorted; join them to
    /// [`reports_dir`] to read one.
    pub files: Vec<String>,
}

/// The reports kept for `tenant`, newest period first (for the portal's
/// list). Marks and temporary files are not listed.
pub fn stored(store: &Store, tenant: &str) -> Result<Vec<StoredReport>, ReportError> {
    let dir = reports_dir(store, tenant)?;
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    Ok(crate::shelf::listing::periods(
        entries.filter_map(|e| e.ok()?.file_name().into_string().ok()),
    ))
}

/// A report set waiting to be mailed.
#[derive(Debug, Clone)]
pub struct PendingMail {
    pub tenant: String,
    pub period: String,
    pub mark: PathBuf,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// `(file name, content type, bytes)`: the PDFs.
    pub attachments: Vec<(String, String, Vec<u8>)>,
}

/// The pending mails of `plan`'s tenant: the first configured language's
/// page is the body, every PDF is attached.
pub fn pending_mail(store: &Store, config: &ReportsConfig, plan: &TenantPlan) -> Vec<PendingMail> {
    let Ok(dir) = reports_dir(store, &plan.tenant) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for mark in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
        if mark.extension().is_none_or(|x| x != "mail-pending") {
            continue;
        }
        let Some(period) = period_of(&mark) else {
            continue;
        };
        let label = period.label;
        let Some(first) = config.languages.first() else {
            continue;
        };
        let Ok(html) = std::fs::read_to_string(dir.join(format!("{label}.{first}.html"))) else {
            continue;
        };
        let attachments = config
            .languages
            .iter()
            .filter_map(|lang| {
                let name = format!("{}-{label}.{lang}.pdf", plan.tenant);
                std::fs::read(dir.join(format!("{label}.{lang}.pdf")))
                    .ok()
                    .map(|b| (name, "application/pdf".to_string(), b))
            })
            .collect();
        let subject = format!(
            "{} / {}: {} {label}",
            first.text("title"),
            Lang::En.text("title"),
            plan.tenant
        );
        out.push(PendingMail {
            tenant: plan.tenant.clone(),
            period: label.clone(),
            mark,
            text: format!(
                "{subject}\n\nThe report is in the HTML part of this mail and attached as PDF.\n{}\n",
                first.text("confidential")
            ),
            subject,
            html,
            attachments,
        });
    }
    out
}

/// The receiver's loop: [`run_once`] now and every `check_every`, then the
/// pending mails through `mailer`, until `stop`. `plans` is asked for the
/// tenants at every run (a tenant added to the store is picked up).
pub async fn run(
    store: Store,
    config: ReportsConfig,
    plans: impl Fn(&Store) -> Vec<TenantPlan> + Send + Sync + 'static,
    mailer: Option<owlet_soc_notify::channel::smtp::SmtpChannel>,
    stop: tokio_util::sync::CancellationToken,
) {
    let plans = std::sync::Arc::new(plans);
    let mut ticker = tokio::time::interval(config.check_every);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return,
        }
        let (store2, config2, plans2) = (store.clone(), config.clone(), plans.clone());
        let done = tokio::task::spawn_blocking(move || {
            let tenants = plans2(&store2);
            let printer = |html: &str, out: &Path| {
                crate::pdf::html_to_pdf(html, out, crate::pdf::DEFAULT_TIMEOUT)
            };
            let outcome = run_once(&store2, &config2, &tenants, SystemTime::now(), &printer);
            let mail: Vec<_> = tenants
                .iter()
                .flat_map(|p| {
                    pending_mail(&store2, &config2, p)
                        .into_iter()
                        .map(|m| (p.mail_to.clone(), m))
                })
                .collect();
            (outcome, mail)
        })
        .await;
        let Ok((outcome, mail)) = done else {
            tracing::error!(
                "the report schedule's worker panicked; tried again at the next interval"
            );
            continue;
        };
        outcome.log();
        let Some(mailer) = &mailer else { continue };
        for (to, m) in mail {
            match mailer
                .send_report(&to, &m.subject, m.text, m.html, m.attachments)
                .await
            {
                Ok(()) => {
                    let _ = std::fs::remove_file(&m.mark);
                    tracing::info!(tenant = %m.tenant, period = %m.period, "report mailed");
                }
                Err(e) => {
                    tracing::warn!(tenant = %m.tenant, period = %m.period, error = %e.message,
                    "report mail failed; tried again at the next interval")
                }
            }
        }
    }
}

/// The scaled-out SOC's pass over `tenants` at `now`: the same as
/// [`run_once`], each tenant's report built from its PostgreSQL schema
/// ([`crate::source::postgres`]) and kept in its `reports` table
/// ([`crate::shelf::postgres`]). Runs on a blocking thread; `runtime` runs
/// the queries.
pub fn run_once_postgres(
    pg: &tokio_postgres::Client,
    conninfo: &str,
    runtime: &tokio::runtime::Handle,
    config: &ReportsConfig,
    tenants: &[TenantPlan],
    now: SystemTime,
    print: PdfPrinter,
) -> Outcome {
    let mut out = Outcome::default();
    for plan in tenants {
        let tenant = plan.tenant.as_str();
        let made = runtime.block_on(pg.batch_execute(&crate::shelf::postgres::ddl(tenant)));
        if let Err(e) = made {
            out.errors.push(format!(
                "tenant {tenant}: creating its reports table: {}",
                owlet_soc_bus::BusError::from_postgres(e)
            ));
            continue;
        }
        let shelf = crate::shelf::postgres::Table {
            pg,
            tenant,
            runtime,
        };
        let open = || -> Result<Box<dyn Source>, ReportError> {
            let source = crate::source::postgres::Postgres::connect(conninfo, tenant);
            Ok(Box::new(runtime.block_on(source)?))
        };
        if let Err(e) = tenant_once(&shelf, &open, config, plan, now, print, &mut out) {
            out.errors.push(format!("tenant {tenant}: {e}"));
        }
    }
    out
}

/// `owlet-soc reports`' loop: [`run_once_postgres`] now and every
/// `check_every` over the tenants the writer stores (`plan` gives each
/// one's zone and retention), until `stop`. Fails at start when
/// PostgreSQL cannot be reached.
pub async fn run_postgres(
    conninfo: String,
    config: ReportsConfig,
    plan: impl Fn(&str) -> TenantPlan + Send + Sync + 'static,
    stop: tokio_util::sync::CancellationToken,
) -> Result<(), ReportError> {
    let connect = || async {
        owlet_soc_bus::writer::connect_postgres(&conninfo)
            .await
            .map(std::sync::Arc::new)
            .map_err(|e| ReportError::Postgres(e.to_string()))
    };
    let mut pg = connect().await?;
    let plan = std::sync::Arc::new(plan);
    let mut ticker = tokio::time::interval(config.check_every);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return Ok(()),
        }
        if pg.is_closed() {
            match connect().await {
                Ok(again) => pg = again,
                Err(e) => {
                    tracing::warn!(error = %e, "reports: PostgreSQL connection lost; tried again at the next interval");
                    continue;
                }
            }
        }
        let tenants = match owlet_soc_bus::stored::tenants(&*pg).await {
            Ok(tenants) => tenants,
            Err(e) => {
                tracing::warn!(error = %e, "reports: cannot list the stored tenants; tried again at the next interval");
                continue;
            }
        };
        let (pg2, conninfo2, config2, plan2) =
            (pg.clone(), conninfo.clone(), config.clone(), plan.clone());
        let runtime = tokio::runtime::Handle::current();
        let done = tokio::task::spawn_blocking(move || {
            let plans: Vec<TenantPlan> = tenants.iter().map(|t| plan2(t)).collect();
            let printer = |html: &str, out: &Path| {
                crate::pdf::html_to_pdf(html, out, crate::pdf::DEFAULT_TIMEOUT)
            };
            run_once_postgres(
                &pg2,
                &conninfo2,
                &runtime,
                &config2,
                &plans,
                SystemTime::now(),
                &printer,
            )
        })
        .await;
        match done {
            Ok(outcome) => outcome.log(),
            Err(_) => tracing::error!(
                "the report schedule's worker panicked; tried again at the next interval"
            ),
        }
    }
}
