//! The self-test's checks as the service runs them. Run as root, `owlet
//! selftest` would otherwise open the capture and read the watched paths
//! with root's powers, and pass where the service (`User=owlet`, only
//! `CAP_NET_RAW`) fails. So it starts this binary again with the hidden
//! `owlet selftest-as-service`, which — a fresh, single-threaded process —
//! becomes the unit's user and group (with the user's supplementary groups,
//! as systemd gives them), keeps exactly the unit's capabilities (ambient
//! within the bounding set; the bounding set narrowed like the unit's),
//! then runs the `capture` and `watched_paths` steps and prints them as
//! JSON for the parent.
//!
//! Guarantees: the child checks its credentials after the switch and
//! refuses to run a step unless its user, group and effective capabilities
//! are exactly the planned ones; a child that fails or prints no report
//! fails the steps it owed, never passes them. No unsafe code: the
//! switch uses nix (`setresuid`, `setresgid`, `initgroups`) and the caps
//! crate (capability sets, keep-caps).

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use caps::{CapSet, CapsHashSet};
use serde::{Deserialize, Serialize};

use super::{Status, Step, local};
use crate::config;
use crate::unit::{Account, ServiceUnit, describe};

/// How the capture and watched-path steps are run.
pub enum Plan {
    /// In this process, with its own user and capabilities.
    ThisProcess,
    /// In a child that becomes the service's account (it resolves the same
    /// unit again itself).
    AsService,
}

/// Decides as whom the capture and watched-path steps run, with the
/// `service_user` step that says so.
pub fn plan(unit: &Result<ServiceUnit, crate::unit::UnitError>) -> (Plan, Step) {
    const STEP: &str = "service_user";
    let unit = match unit {
        Ok(unit) => unit,
        Err(e) => {
            return (
                Plan::ThisProcess,
                Step::fail(
                    STEP,
                    format!("{e}: capture and watched paths were checked as this process"),
                    "correct the unit file, or name the one the service uses with --service-unit FILE",
                ),
            );
        }
    };
    let user = unit.user_name();
    let me = nix::unistd::geteuid();
    if !me.is_root() {
        let who = nix::unistd::User::from_uid(me)
            .ok()
            .flatten()
            .map_or_else(|| format!("uid {me}"), |u| u.name);
        if who == user {
            return (
                Plan::ThisProcess,
                Step::pass(
                    STEP,
                    format!(
                        "checked as {who}, the service user of {}, with this process's capabilities",
                        unit.origin
                    ),
                ),
            );
        }
        return (
            Plan::ThisProcess,
            Step::skip(
                STEP,
                format!(
                    "not run as root: capture and watched paths were checked as {who}, not as the service user {user} ({}); \
                     `sudo owlet selftest` checks them as the service runs",
                    unit.origin
                ),
            ),
        );
    }
    match unit.account() {
        Err(e) => (
            Plan::ThisProcess,
            Step::fail(
                STEP,
                format!("{e}: capture and watched paths were checked as root"),
                "correct User= / Group= of the unit",
            ),
        ),
        Ok(None) if matches!(unit.origin, crate::unit::Origin::Packaged) => (
            Plan::ThisProcess,
            Step::skip(
                STEP,
                format!(
                    "no owlet.service is installed and there is no user {user} here: capture and watched paths were checked as root"
                ),
            ),
        ),
        Ok(None) => (
            Plan::ThisProcess,
            Step::fail(
                STEP,
                format!(
                    "User={user} of {} does not exist on this host: the service cannot start; capture and watched paths were checked as root",
                    unit.origin
                ),
                format!(
                    "create it (the package does): `useradd --system --user-group --no-create-home --shell /usr/sbin/nologin {user}`, or correct User="
                ),
            ),
        ),
        Ok(Some(account)) if account.uid.is_root() => (
            Plan::ThisProcess,
            Step::pass(
                STEP,
                format!(
                    "{} runs the agent as root: checked as this process",
                    unit.origin
                ),
            ),
        ),
        Ok(Some(account)) => {
            let step = Step::pass(
                STEP,
                format!(
                    "capture and watched paths checked as {} (uid {}, gid {}) with {}, as {} runs the agent",
                    account.name,
                    account.uid,
                    account.gid,
                    describe(&unit.capabilities()),
                    unit.origin
                ),
            );
            (Plan::AsService, step)
        }
    }
}

/// One step as the child reports it.
#[derive(Debug, Serialize, Deserialize)]
struct Outcome {
    status: Status,
    detail: String,
    #[serde(default)]
    fix: String,
}

impl Outcome {
    fn from_step(step: Step) -> Self {
        Self {
            status: step.status,
            detail: step.detail,
            fix: step.fix,
        }
    }

    fn into_step(self, name: &'static str) -> Step {
        let mut step = Step::new(name, self.status, self.detail);
        step.fix = self.fix;
        step
    }
}

/// What the child prints.
#[derive(Debug, Serialize, Deserialize)]
struct Report {
    capture: Vec<Outcome>,
    watched_paths: Outcome,
}

/// Runs the child (`owlet selftest-as-service`) and returns its `capture`
/// and `watched_paths` steps; a child that fails fails both.
pub async fn run(config: &Path, unit: Option<&Path>) -> Vec<Step> {
    let failed = |why: String| {
        let fix = "report this as a bug; meanwhile check capture and the watched paths with `runuser -u owlet -- owlet selftest`";
        vec![
            Step::fail("capture", why.clone(), fix),
            Step::fail("watched_paths", why, fix),
        ]
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            return failed(format!(
                "cannot find this program to run the checks as the service: {e}"
            ));
        }
    };
    let mut command = tokio::process::Command::new(exe);
    command
        .arg("selftest-as-service")
        .arg("--config")
        .arg(config)
        .kill_on_drop(true);
    if let Some(unit) = unit {
        command.arg("--service-unit").arg(unit);
    }
    let output = match tokio::time::timeout(Duration::from_secs(60), command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => return failed(format!("cannot run the checks as the service: {e}")),
        Err(_) => return failed("the checks as the service did not finish in 60s".to_string()),
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    match serde_json::from_slice::<Report>(&output.stdout) {
        Ok(report) if output.status.success() => {
            let mut steps: Vec<Step> = report
                .capture
                .into_iter()
                .map(|o| o.into_step("capture"))
                .collect();
            steps.push(report.watched_paths.into_step("watched_paths"));
            steps
        }
        _ => failed(format!(
            "the checks as the service failed ({}): {}",
            output.status,
            stderr.trim()
        )),
    }
}

/// `owlet selftest-as-service`: loads the configuration (as root), becomes
/// the unit's account with the unit's capabilities, runs the capture and
/// watched-path steps and prints them as JSON. Returns the exit status.
/// Must run before anything starts a thread (credentials are per thread).
pub fn child_main(config: &Path, unit: Option<&PathBuf>) -> i32 {
    let config = match config::load(config) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return 2;
        }
    };
    let unit = match ServiceUnit::load(unit.map(PathBuf::as_path)) {
        Ok(unit) => unit,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let account = match unit.account() {
        Ok(Some(account)) => account,
        Ok(None) => {
            eprintln!("the service user {} does not exist", unit.user_name());
            return 2;
        }
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    if let Err(e) = become_account(&account, &unit.capabilities(), unit.bounding.as_ref()) {
        eprintln!(
            "cannot become {} with the unit's capabilities: {e}",
            account.name
        );
        return 2;
    }
    let user = unit.user_name();
    let report = Report {
        capture: local::capture(&config)
            .into_iter()
            .map(Outcome::from_step)
            .collect(),
        watched_paths: Outcome::from_step(local::watched_paths(&config, user, unit.hides_home)),
    };
    match serde_json::to_string(&report) {
        Ok(text) => {
            println!("{text}");
            0
        }
        Err(e) => {
            eprintln!("cannot write the report: {e}");
            2
        }
    }
}

/// Switches this (single-threaded) process to `account`, keeping exactly
/// `keep` as permitted, effective, inheritable and ambient capabilities and
/// narrowing the bounding set to `bounding` — what systemd does for
/// `User=`, `Group=`, `AmbientCapabilities=` and `CapabilityBoundingSet=`.
/// Checks the result.
fn become_account(
    account: &Account,
    keep: &CapsHashSet,
    bounding: Option<&CapsHashSet>,
) -> Result<(), String> {
    let caps_error = |what: &str, e: caps::errors::CapsError| format!("{what}: {e}");
    // The bounding set first, while CAP_SETPCAP is still held.
    if let Some(bounding) = bounding {
        for cap in caps::runtime::thread_all_supported() {
            if !bounding.contains(&cap)
                && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false)
            {
                caps::drop(None, CapSet::Bounding, cap)
                    .map_err(|e| caps_error("narrowing the bounding set", e))?;
            }
        }
    }
    // Keep the permitted set across the switch of uid (else it is cleared).
    caps::securebits::set_keepcaps(true).map_err(|e| caps_error("keep-caps", e))?;
    let name = CString::new(account.name.as_str()).map_err(|e| e.to_string())?;
    nix::unistd::initgroups(&name, account.gid).map_err(|e| format!("initgroups: {e}"))?;
    nix::unistd::setresgid(account.gid, account.gid, account.gid)
        .map_err(|e| format!("setresgid: {e}"))?;
    nix::unistd::setresuid(account.uid, account.uid, account.uid)
        .map_err(|e| format!("setresuid: {e}"))?;
    caps::set(None, CapSet::Effective, keep).map_err(|e| caps_error("effective set", e))?;
    caps::set(None, CapSet::Permitted, keep).map_err(|e| caps_error("permitted set", e))?;
    caps::set(None, CapSet::Inheritable, keep).map_err(|e| caps_error("inheritable set", e))?;
    for cap in keep {
        caps::raise(None, CapSet::Ambient, *cap).map_err(|e| caps_error("ambient set", e))?;
    }
    caps::securebits::set_keepcaps(false).map_err(|e| caps_error("keep-caps", e))?;
    // Trust, but verify: a step run with more than the service has would
    // pass where the service fails.
    let effective = caps::read(None, CapSet::Effective).map_err(|e| caps_error("reading", e))?;
    let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    if uid != account.uid || gid != account.gid || &effective != keep {
        return Err(format!(
            "after the switch: uid {uid}, gid {gid}, {} (wanted uid {}, gid {}, {})",
            describe(&effective),
            account.uid,
            account.gid,
            describe(keep)
        ));
    }
    Ok(())
}
