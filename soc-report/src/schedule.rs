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
use crate::{Options, Period, ReportError, Style, html};

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

/// Writes `bytes` to `path` whole or not at all.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".report")
        .suffix(".part")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
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
        if let Err(e) = tenant_once(store, config, plan, now, print, &mut out) {
            out.errors.push(format!("tenant {}: {e}", plan.tenant));
        }
    }
    out
}

fn tenant_once(
    store: &Store,
    config: &ReportsConfig,
    plan: &TenantPlan,
    now: SystemTime,
    print: PdfPrinter,
    out: &mut Outcome,
) -> Result<(), ReportError> {
    let dir = reports_dir(store, &plan.tenant)?;
    let io = |what: &str, path: &Path, e: std::io::Error| {
        format!("tenant {}: {what} {}: {e}", plan.tenant, path.display())
    };
    delete_expired(&dir, plan, now, out);
    for period in due_periods(config, &plan.zone, now) {
        if expired(&period, &plan.zone, plan.max_age, now) {
            continue;
        }
        let label = &period.label;
        let json = dir.join(format!("{label}.json"));
        let mut wanted = vec![json.clone()];
        for lang in &config.languages {
            wanted.push(dir.join(format!("{label}.{lang}.html")));
            if config.pdf {
                wanted.push(dir.join(format!("{label}.{lang}.pdf")));
            }
        }
        if wanted.iter().all(|p| p.exists()) {
            continue;
        }
        if let Err(e) = std::fs::create_dir_all(&dir) {
            out.errors.push(io("creating", &dir, e));
            return Ok(());
        }
        let reader = store.reader(&plan.tenant)?;
        let report = crate::build(&reader, &period, &plan.zone, now, &Options::default())?;
        let mut wrote = false;
        if !json.exists() {
            let body = serde_json::to_vec_pretty(&report).unwrap_or_default();
            match write_atomic(&json, &body) {
                Ok(()) => {
                    out.written.push(json.clone());
                    wrote = true;
                }
                Err(e) => out.errors.push(io("writing", &json, e)),
            }
        }
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
            let path = dir.join(format!("{label}.{lang}.html"));
            if !path.exists() {
                match write_atomic(&path, page.as_bytes()) {
                    Ok(()) => {
                        out.written.push(path);
                        wrote = true;
                    }
                    Err(e) => out.errors.push(io("writing", &path, e)),
                }
            }
            let pdf = dir.join(format!("{label}.{lang}.pdf"));
            if config.pdf && !pdf.exists() {
                match print(&page, &pdf) {
                    Ok(()) => {
                        out.written.push(pdf);
                        wrote = true;
                    }
                    Err(e) => out
                        .errors
                        .push(format!("tenant {} {label}: {e}", plan.tenant)),
                }
            }
        }
        if wrote && config.mail_channel.is_some() && !plan.mail_to.is_empty() {
            let mark = dir.join(format!("{label}.mail-pending"));
            if let Err(e) = write_atomic(&mark, b"") {
                out.errors.push(io("writing", &mark, e));
            }
        }
    }
    Ok(())
}

/// The period a report file belongs to: the name up to its first dot.
fn period_of(path: &Path) -> Option<Period> {
    let name = path.file_name()?.to_str()?;
    if name.starts_with('.') {
        return None;
    }
    Period::parse(name.split('.').next()?).ok()
}

fn delete_expired(dir: &Path, plan: &TenantPlan, now: SystemTime, out: &mut Outcome) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for path in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
        let Some(period) = period_of(&path) else {
            continue;
        };
        if expired(&period, &plan.zone, plan.max_age, now) {
            match std::fs::remove_file(&path) {
                Ok(()) => out.deleted.push(path),
                Err(e) => out.errors.push(format!(
                    "tenant {}: deleting the expired report {}: {e}",
                    plan.tenant,
                    path.display()
                )),
            }
        }
    }
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
    let mut by: std::collections::BTreeMap<(i64, String), Vec<String>> = Default::default();
    for path in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
        let Some(period) = period_of(&path) else {
            continue;
        };
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.ends_with(".mail-pending") {
            continue;
        }
        let end = period.bounds(&Zone::Utc).1;
        by.entry((end, period.label))
            .or_default()
            .push(name.to_string());
    }
    Ok(by
        .into_iter()
        .rev()
        .map(|((_, period), mut files)| {
            files.sort();
            StoredReport { period, files }
        })
        .collect())
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
        for path in &outcome.written {
            tracing::info!(file = %path.display(), "report written");
        }
        for path in &outcome.deleted {
            tracing::info!(file = %path.display(), "expired report deleted (tenant retention max_age)");
        }
        for e in &outcome.errors {
            tracing::warn!(error = %e, "report not made; tried again at the next interval");
        }
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
