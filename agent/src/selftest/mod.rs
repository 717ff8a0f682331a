//! `owlet selftest`: the operation test of an installation, run end to end
//! before monitoring starts (and any time after), with one line per step and
//! a fix for every failure.
//!
//! Steps, in order: the configuration loads (errors name file:line:key); the
//! agent's certificate and key are readable, the key's permissions are strict,
//! the certificate chains to `soc.ca` and is not near its expiry; as whom the
//! next two steps run (`service_user`): run as root, as the service runs —
//! the `User=` / `Group=` of `owlet.service` with only its
//! `AmbientCapabilities=` (see [`service`] and `crate::unit`), else as this
//! process; every capture interface opens (the capture the service builds,
//! by the service's own function); every watched path (`[[fim.watch]]`) is
//! readable, each one that is not named; the spool directory is
//! writable and its file system has room; then, over a fresh connection with
//! the agent's own identity: the SOC is reachable and accepts the mTLS
//! handshake, the clocks agree, a test event is stored and acknowledged by
//! the SOC (round trip shown), and a deliberately failing check (TCP to a
//! closed loopback port) produces an alert the SOC acknowledges.
//!
//! Guarantees:
//! * it never changes the running agent's state: it does not open the spool
//!   (the running agent owns it), creates no directories, and its test events
//!   travel as `SelfTest` messages that the SOC stores as self-test records
//!   outside the agent's sequence (they never move the agent's acknowledged
//!   sequence number, so they cannot collide with the running agent's events);
//! * every step ends: network steps are bounded by `soc.connect_timeout`;
//! * a step that cannot run because an earlier one failed is reported as
//!   skipped with the reason, never as passed.
//!
//! Exit status (the CLI's conventions): 0 every step passed (or was not
//! configured), 1 warnings only, 2 a failure.

mod local;
mod service;
mod soc;

pub use service::child_main as as_service_main;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::config;

/// What `owlet selftest` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: PathBuf,
    pub json: bool,
    /// Largest clock offset against the SOC that passes.
    pub clock_tolerance: Duration,
    /// The service's unit file (default: the installed owlet.service, else
    /// the packaged one).
    pub service_unit: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    /// Works, but needs attention soon (e.g. a certificate near expiry).
    Warn,
    Fail,
    /// Not run: not configured, or an earlier step it needs failed.
    Skip,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Stable name (scripts match it): `config`, `certificate`, `key`,
    /// `chain`, `expiry`, `service_user`, `capture`, `watched_paths`,
    /// `spool`, `soc`, `clock`, `test_event`, `failure_test`.
    pub step: &'static str,
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about it ("" when nothing).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fix: String,
    /// Round trip to the SOC, for the steps that made one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub round_trip_ms: Option<f64>,
}

impl Step {
    fn new(step: &'static str, status: Status, detail: impl Into<String>) -> Self {
        Self {
            step,
            status,
            detail: detail.into(),
            fix: String::new(),
            round_trip_ms: None,
        }
    }

    pub fn pass(step: &'static str, detail: impl Into<String>) -> Self {
        Self::new(step, Status::Pass, detail)
    }

    pub fn skip(step: &'static str, detail: impl Into<String>) -> Self {
        Self::new(step, Status::Skip, detail)
    }

    pub fn warn(step: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(step, Status::Warn, detail).with_fix(fix)
    }

    pub fn fail(step: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(step, Status::Fail, detail).with_fix(fix)
    }

    fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = fix.into();
        self
    }

    fn with_round_trip(mut self, rtt: Duration) -> Self {
        self.round_trip_ms = Some(millis(rtt));
        self
    }
}

/// Milliseconds with a tenth, for reports.
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub config: PathBuf,
    /// The worst status of any step (`skip` counts as `pass`).
    pub result: Status,
    pub steps: Vec<Step>,
}

impl Report {
    fn new(config: &Path, steps: Vec<Step>) -> Self {
        let worst = |s: Status| steps.iter().any(|step| step.status == s);
        let result = if worst(Status::Fail) {
            Status::Fail
        } else if worst(Status::Warn) {
            Status::Warn
        } else {
            Status::Pass
        };
        Self {
            config: config.to_path_buf(),
            result,
            steps,
        }
    }

    /// 0 all passed, 1 warnings only, 2 a failure.
    pub fn exit_status(&self) -> i32 {
        match self.result {
            Status::Pass | Status::Skip => 0,
            Status::Warn => 1,
            Status::Fail => 2,
        }
    }

    /// The human report: one line per step, its fix indented below.
    pub fn text(&self) -> String {
        let width = self.steps.iter().map(|s| s.step.len()).max().unwrap_or(0);
        let mut out = format!("owlet selftest {}\n", self.config.display());
        for s in &self.steps {
            let _ = writeln!(out, "{} {:<width$}  {}", s.status.label(), s.step, s.detail);
            if !s.fix.is_empty() {
                let _ = writeln!(out, "     {:<width$}  fix: {}", "", s.fix);
            }
        }
        let count = |st: Status| self.steps.iter().filter(|s| s.status == st).count();
        let _ = writeln!(
            out,
            "{}: {} passed, {} warnings, {} failed, {} skipped",
            self.result.label(),
            count(Status::Pass),
            count(Status::Warn),
            count(Status::Fail),
            count(Status::Skip)
        );
        out
    }
}

/// Runs every step and returns the report.
pub async fn run(options: &Options) -> Report {
    let config = match config::load(&options.config) {
        Ok(config) => config,
        Err(errors) => {
            let mut steps = vec![Step::fail(
                "config",
                format!("{} error(s):\n{errors}", errors.0.len()),
                format!(
                    "correct each key named above, then `owlet check-config {}`",
                    options.config.display()
                ),
            )];
            steps.push(Step::skip(
                "all other steps",
                "they need a configuration that loads",
            ));
            return Report::new(&options.config, steps);
        }
    };
    let identity = config
        .certificate_identity()
        .map_or_else(|e| format!("unknown ({e})"), |id| id.to_string());
    let mut steps = vec![Step::pass(
        "config",
        format!(
            "{}: agent {identity}, SOC {}",
            options.config.display(),
            config.soc.address
        ),
    )];
    let unit = crate::unit::ServiceUnit::load(options.service_unit.as_deref());
    let service_user = unit.as_ref().map_or_else(
        |_| crate::unit::DEFAULT_USER.to_string(),
        |u| u.user_name().to_string(),
    );
    // Checked as this process, paths the unit hides are flagged only when
    // a unit is really there (installed, or named with --service-unit).
    let hides_home = unit
        .as_ref()
        .is_ok_and(|u| u.hides_home && matches!(u.origin, crate::unit::Origin::Files(_)));
    steps.extend(local::certificates(&config, &service_user));
    let (plan, as_whom) = service::plan(&unit);
    steps.push(as_whom);
    match plan {
        service::Plan::AsService => {
            steps.extend(service::run(&options.config, options.service_unit.as_deref()).await);
        }
        service::Plan::ThisProcess => {
            // Capture sockets are opened off the async workers (blocking syscalls).
            let capture_config = config.clone();
            match tokio::task::spawn_blocking(move || local::capture(&capture_config)).await {
                Ok(found) => steps.extend(found),
                Err(e) => steps.push(Step::fail(
                    "capture",
                    format!("the capture test did not finish: {e}"),
                    "report this as a bug",
                )),
            }
            steps.push(local::watched_paths(&config, &service_user, hides_home));
        }
    }
    steps.push(local::spool(&config, &service_user));
    let local_summary = summary(&steps);
    steps.extend(soc::run(&config, options.clock_tolerance, &local_summary).await);
    Report::new(&options.config, steps)
}

/// "7 passed, 1 failed (capture)": what the SOC's self-test record says
/// about the local steps.
fn summary(steps: &[Step]) -> String {
    let failed: Vec<&str> = steps
        .iter()
        .filter(|s| s.status == Status::Fail)
        .map(|s| s.step)
        .collect();
    let passed = steps.iter().filter(|s| s.status == Status::Pass).count();
    if failed.is_empty() {
        format!("local checks: {passed} passed, none failed")
    } else {
        format!(
            "local checks: {passed} passed, {} failed ({})",
            failed.len(),
            failed.join(", ")
        )
    }
}

/// `owlet selftest`: prints the report; returns the exit status.
pub async fn main(options: Options) -> anyhow::Result<i32> {
    let report = run(&options).await;
    if options.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
    }
    Ok(report.exit_status())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_step_decides_the_result_and_the_exit_status() {
        let steps = vec![
            Step::pass("config", "ok"),
            Step::skip("capture", "none configured"),
        ];
        assert_eq!(Report::new(Path::new("x"), steps).exit_status(), 0);
        let steps = vec![
            Step::pass("config", "ok"),
            Step::warn("expiry", "20 days left", "renew"),
        ];
        assert_eq!(Report::new(Path::new("x"), steps).exit_status(), 1);
        let steps = vec![
            Step::warn("expiry", "20 days left", "renew"),
            Step::fail("soc", "refused", "start it"),
        ];
        let report = Report::new(Path::new("x"), steps);
        assert_eq!(report.exit_status(), 2);
        let text = report.text();
        assert!(text.contains("FAIL soc"), "{text}");
        assert!(text.contains("fix: start it"), "{text}");
    }
}
