//! The check scheduler: one small task per check, a global concurrency
//! limit, damped state, events out, live reload, supervision.
//!
//! Layout:
//! - this module: the public handle ([`ProbeHandle`], [`spawn`]) and the
//!   desired set of checks that [`ProbeHandle::reload`] edits;
//! - [`supervisor`]: the task that makes the running check tasks match the
//!   desired set, and reports why it ended;
//! - [`run`]: the run loop of one check (slots, permits, damping, events);
//! - [`alerts`]: the alerts raised and their delivery;
//! - [`phase`]: stable phases and reload fingerprints.
//!
//! Each check runs every `interval` at a stable phase: FNV-1a(id) modulo the
//! interval, measured against the Unix clock, so checks spread over the
//! interval and keep their slot across restarts. Each check has at most one
//! run in flight, so memory is bounded by the number of checks.
//!
//! Concurrency limit and isolation from hanging targets:
//! - TCP, HTTP and SNMP runs hold one permit of the global semaphore
//!   (`max_concurrency`) for the whole run, which is bounded by the check's
//!   timeout (plus a backstop in [`crate::run_check`]).
//! - ICMP runs take no permit: their echoes go out on the shared raw socket
//!   and a waiting echo costs one map entry, not a socket or a thread.
//! - A check whose last run timed out is "suspect" and must also hold a
//!   permit of a second semaphore sized half the limit, so hanging targets
//!   can hold at most half the global permits (all of them only when the
//!   limit is 1); the other half stays free for healthy checks.
//! - A run waits for its permits at most until its next slot. If it gets
//!   none by then, that run is skipped (never queued) and counted; a run that
//!   starts more than min(interval / 2, 1 s) after its slot is counted as
//!   late. The counts are readable with [`ProbeHandle::run_stats`].
//!
//! So a hanging target never makes work queue up: another check's run waits
//! at most one of its own intervals, then is skipped and counted. Only until
//! the hanging checks' first runs have timed out (one timeout of theirs) can
//! they hold every slot; after that they hold at most half of them.
//!
//! Alerts: the first transition out of the initial UNKNOWN into UP is not
//! alerted (every agent restart would otherwise raise a `check_up` per
//! check); UNKNOWN → DOWN / DEGRADED is. A check added by a reload is
//! announced with `check_added`. A check that is DOWN or DEGRADED when a
//! reload removes it (or gives it a new type or target, which starts a fresh
//! state) gets a closing `check_removed` alert to UNKNOWN. An SNMP device
//! reboot raises `device_rebooted`.
//!
//! Reload is synchronous for the caller: [`ProbeHandle::reload`] computes
//! the added / changed / removed checks against the previous desired set
//! and returns them at once; the supervisor applies the newest desired set
//! (level-triggered, so reloads in quick succession coalesce without losing
//! a change). [`ProbeHandle::states`] reads the damped state of every
//! desired check without waiting for the supervisor.
//!
//! Events go out with `send().await` on the caller's bounded channel
//! (backpressure slows checks down; nothing queues here). When the channel
//! closes, check tasks and the supervisor end.

mod alerts;
mod phase;
mod run;
mod supervisor;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use owlet_proto::v1::{Alert, CheckType, Event, State};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::{MAX_CONCURRENCY, ProbeConfig};
use crate::memory::RunMemory;
use crate::spec::CheckSpec;
use crate::state::Damper;

pub use phase::phase_offset;

/// Handle to the running probe subsystem.
pub struct ProbeHandle {
    desired: Arc<DesiredSet>,
    stop: oneshot::Sender<()>,
    monitor: JoinHandle<()>,
    ended: watch::Receiver<Option<String>>,
}

impl std::fmt::Debug for ProbeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeHandle").finish_non_exhaustive()
    }
}

/// Per-check scheduling counters since the check was first started (kept
/// across reloads of the same id).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Runs skipped because no concurrency slot was free before the next
    /// slot of the check.
    pub skipped: u64,
    /// Runs that started more than min(interval / 2, 1 s) after their slot.
    pub late: u64,
}

/// What a reload changed: check ids, each list sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// Checks that were not configured before (announced with `check_added`).
    pub added: Vec<String>,
    /// Checks whose configuration changed (restarted; their damped state is
    /// kept when type and target are unchanged).
    pub changed: Vec<String>,
    /// Checks no longer configured (stopped; `check_removed` if they were
    /// DOWN or DEGRADED).
    pub removed: Vec<String>,
}

/// The current damped state of one configured check.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckStatus {
    pub id: String,
    pub check_type: CheckType,
    /// UNKNOWN until the check has a result (and after agent-side failures).
    pub state: State,
    /// When the check entered `state`; `None` while it has no result yet.
    pub since: Option<SystemTime>,
    /// The message of the check's last result (empty before the first).
    pub message: String,
}

#[derive(Debug, Default)]
struct RunCounters {
    skipped: AtomicU64,
    late: AtomicU64,
}

/// A check's state shared between its task, its successor after a reload
/// and [`ProbeHandle::states`].
#[derive(Debug)]
struct Shared {
    damper: Damper,
    /// Only SNMP results use it: allocated by the first one (most checks
    /// never pay its ~170 bytes).
    memory: Option<Box<RunMemory>>,
    /// Alerts committed and not yet taken by the channel (sent before the
    /// next run starts).
    pending_alerts: Vec<Alert>,
    /// Set by the first damped transition; before it, UNKNOWN -> UP is quiet.
    settled: bool,
    /// The last run timed out: runs need a permit of the suspect lane too.
    suspect: bool,
    /// Runs skipped since the last result (reported in its message).
    unreported_skips: u64,
    /// When the damped state last changed.
    since: Option<SystemTime>,
    /// The last result's message.
    message: Box<str>,
}

impl Shared {
    fn new(spec: &CheckSpec) -> Self {
        Shared {
            damper: Damper::new(spec.down_after, spec.up_after),
            memory: None,
            pending_alerts: Vec::new(),
            settled: false,
            suspect: false,
            unreported_skips: 0,
            since: None,
            message: Box::from(""),
        }
    }

    fn set_message(&mut self, m: &str) {
        if *self.message != *m {
            self.message = Box::from(m);
        }
    }
}

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| {
        m.clear_poison();
        p.into_inner()
    })
}

/// One desired check: what its task runs, and the state it keeps.
#[derive(Clone)]
struct Slot {
    fingerprint: u64,
    spec: Arc<CheckSpec>,
    shared: Arc<Mutex<Shared>>,
    counters: Arc<RunCounters>,
}

#[derive(Default)]
struct Desired {
    limit: usize,
    checks: BTreeMap<String, Slot>,
    /// Test seam: the supervisor panics at its next reconcile.
    #[cfg(test)]
    panic_on_reconcile: bool,
}

/// The checks that should run; edited by reload, applied by the supervisor.
struct DesiredSet {
    desired: Mutex<Desired>,
    changed: Notify,
}

impl Desired {
    /// Makes `cfg` the desired set and returns what changed. Invalid checks
    /// are skipped with a warning (a previous valid version stays); only the
    /// first of duplicate ids counts. With `announce`, added checks get a
    /// `check_added` alert queued for their task to send first.
    fn plan(&mut self, cfg: &ProbeConfig, announce: bool) -> ReloadOutcome {
        self.limit = cfg.max_concurrency.clamp(1, MAX_CONCURRENCY);
        let mut out = ReloadOutcome::default();
        let mut next = BTreeMap::new();
        let mut seen = HashSet::new();
        for check in &cfg.checks {
            if !seen.insert(check.id.as_str()) {
                tracing::warn!(check = %check.id, "duplicate check id in [probe]; only the first is run");
                continue;
            }
            let fp = phase::fingerprint(check);
            let old = self.checks.remove(&check.id);
            if let Some(slot) = &old
                && slot.fingerprint == fp
            {
                next.insert(check.id.clone(), slot.clone());
                continue;
            }
            let spec = match CheckSpec::from_config(check) {
                Ok(s) => Arc::new(s),
                Err(errs) => {
                    for e in errs {
                        tracing::warn!(check = %check.id, key = e.field, "invalid check skipped: {}", e.message);
                    }
                    if let Some(slot) = old {
                        next.insert(check.id.clone(), slot);
                    }
                    continue;
                }
            };
            let slot = match old {
                Some(old) => {
                    out.changed.push(check.id.clone());
                    let shared = if old.spec.check_type == spec.check_type
                        && old.spec.target == spec.target
                    {
                        relock(&old.shared)
                            .damper
                            .set_thresholds(spec.down_after, spec.up_after);
                        old.shared
                    } else {
                        Arc::new(Mutex::new(Shared::new(&spec)))
                    };
                    Slot {
                        fingerprint: fp,
                        spec,
                        shared,
                        counters: old.counters,
                    }
                }
                None => {
                    out.added.push(check.id.clone());
                    let mut shared = Shared::new(&spec);
                    if announce {
                        shared.pending_alerts.push(alerts::added_alert(&spec));
                    }
                    Slot {
                        fingerprint: fp,
                        spec,
                        shared: Arc::new(Mutex::new(shared)),
                        counters: Arc::default(),
                    }
                }
            };
            next.insert(check.id.clone(), slot);
        }
        out.removed = std::mem::replace(&mut self.checks, next)
            .into_keys()
            .collect();
        out.added.sort();
        out.changed.sort();
        out
    }
}

impl ProbeHandle {
    /// Applies a new configuration and returns what changed: added checks
    /// start (announced with a `check_added` alert), removed ones stop,
    /// changed ones restart (keeping their damped state when type and
    /// target are unchanged); unchanged checks are not touched. Invalid
    /// checks are skipped with a warning (the old version keeps running);
    /// validate first. Returns at once; the tasks follow shortly. After the
    /// scheduler has ended (see [`wait_ended`](Self::wait_ended)) nothing
    /// runs the new set: spawn a new scheduler instead.
    pub fn reload(&self, config: ProbeConfig) -> ReloadOutcome {
        let out = relock(&self.desired.desired).plan(&config, true);
        self.desired.changed.notify_one();
        out
    }

    /// The damped state of every configured check, sorted by id. Reads
    /// shared state only: never waits for the scheduler or a running check.
    pub fn states(&self) -> Vec<CheckStatus> {
        let d = relock(&self.desired.desired);
        d.checks
            .iter()
            .map(|(id, slot)| {
                let s = relock(&slot.shared);
                CheckStatus {
                    id: id.clone(),
                    check_type: crate::check_type_proto(slot.spec.check_type),
                    state: s.damper.state(),
                    since: s.since,
                    message: s.message.to_string(),
                }
            })
            .collect()
    }

    /// Skipped / late run counts of every configured check.
    pub fn run_stats(&self) -> HashMap<String, RunStats> {
        relock(&self.desired.desired)
            .checks
            .iter()
            .map(|(id, slot)| {
                let c = &slot.counters;
                (
                    id.clone(),
                    RunStats {
                        skipped: c.skipped.load(Ordering::Relaxed),
                        late: c.late.load(Ordering::Relaxed),
                    },
                )
            })
            .collect()
    }

    /// Resolves when the scheduler has stopped for any reason other than
    /// [`shutdown`](Self::shutdown) — a panic (its message is in the
    /// reason), the event channel closing, the task being cancelled — with a
    /// human-readable reason. Its check tasks have been aborted by then (they
    /// stop at their next wake-up and send nothing more), so the caller can
    /// spawn a new scheduler. Cancel-safe: the future holds no
    /// state but a receiver; call it again any time (it resolves at once
    /// once the scheduler has ended). Never resolves after a shutdown.
    pub fn wait_ended(&self) -> impl Future<Output = String> + Send + 'static {
        let mut rx = self.ended.clone();
        async move {
            let reason = rx
                .wait_for(Option::is_some)
                .await
                .map(|r| r.clone().unwrap_or_default());
            match reason {
                Ok(reason) => reason,
                // Sender gone without a reason: ended by shutdown.
                Err(_) => std::future::pending().await,
            }
        }
    }

    /// The checks as configured now (the last reload included), with fresh
    /// state: [`spawn_set`] with it starts what a [`spawn`] of the current
    /// configuration would, e.g. after this scheduler has ended.
    pub fn check_set(&self) -> CheckSet {
        CheckSet {
            desired: relock(&self.desired.desired).fresh(),
        }
    }

    /// Stops every check and waits for the tasks to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.monitor.await;
    }

    #[cfg(test)]
    fn poison_supervisor(&self) {
        relock(&self.desired.desired).panic_on_reconcile = true;
        self.desired.changed.notify_one();
    }
}

/// The checks a scheduler runs, planned from a [`ProbeConfig`] (invalid
/// checks skipped with a warning, duplicate ids after the first ignored),
/// each with a fresh state: what [`spawn_set`] starts. It shares the parsed
/// checks ([`CheckSpec`]) with the scheduler it came from, so keeping one to
/// restart a scheduler costs a map of ids, not a copy of the configuration.
#[derive(Default)]
pub struct CheckSet {
    desired: Desired,
}

impl CheckSet {
    /// Plans `config`.
    pub fn new(config: &ProbeConfig) -> CheckSet {
        let mut desired = Desired::default();
        desired.plan(config, false);
        CheckSet { desired }
    }

    /// Number of checks in the set.
    pub fn len(&self) -> usize {
        self.desired.checks.len()
    }

    /// Whether the set has no check.
    pub fn is_empty(&self) -> bool {
        self.desired.checks.is_empty()
    }
}

impl Desired {
    /// The same checks with fresh state (UNKNOWN, no counts), as a new plan
    /// of the configuration they came from would have.
    fn fresh(&self) -> Desired {
        Desired {
            limit: self.limit,
            checks: self
                .checks
                .iter()
                .map(|(id, slot)| {
                    let fresh = Slot {
                        fingerprint: slot.fingerprint,
                        spec: slot.spec.clone(),
                        shared: Arc::new(Mutex::new(Shared::new(&slot.spec))),
                        counters: Arc::default(),
                    };
                    (id.clone(), fresh)
                })
                .collect(),
            #[cfg(test)]
            panic_on_reconcile: false,
        }
    }
}

/// Starts the checks in `config`; results and alerts go to `events`.
/// Must be called inside a tokio runtime.
pub fn spawn(config: ProbeConfig, events: mpsc::Sender<Event>) -> ProbeHandle {
    spawn_set(CheckSet::new(&config), events)
}

/// Starts the checks of `set` (see [`spawn`]).
pub fn spawn_set(set: CheckSet, events: mpsc::Sender<Event>) -> ProbeHandle {
    let desired = set.desired;
    let desired = Arc::new(DesiredSet {
        desired: Mutex::new(desired),
        changed: Notify::new(),
    });
    let (stop_tx, stop_rx) = oneshot::channel();
    let (ended_tx, ended_rx) = watch::channel(None);
    let task = tokio::spawn(supervisor::supervise(desired.clone(), stop_rx, events));
    let monitor = tokio::spawn(async move {
        let reason = match task.await {
            Ok(supervisor::Exit::Shutdown) => return,
            Ok(supervisor::Exit::Ended(reason)) => reason,
            Err(e) if e.is_panic() => format!(
                "the probe scheduler panicked: {}",
                run::panic_message(e.into_panic().as_ref())
            ),
            Err(_) => "the probe scheduler task was cancelled".to_string(),
        };
        let _ = ended_tx.send(Some(reason));
    });
    ProbeHandle {
        desired,
        stop: stop_tx,
        monitor,
        ended: ended_rx,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CheckConfig, CheckTypeName};
    use std::time::Duration;

    /// Every configured check holds one `Shared` for its lifetime: ten
    /// thousand checks must not pay for what only SNMP checks use.
    #[test]
    fn per_check_state_stays_small() {
        let size = std::mem::size_of::<Shared>();
        assert!(size <= 128, "Shared is {size} bytes");
    }

    /// A restart from `check_set` runs what is configured now (the reload
    /// included) as a fresh spawn would: same parsed checks (shared, not
    /// copied), new state and counts, no alert left over.
    #[test]
    fn a_check_set_has_the_reloaded_checks_with_fresh_state() {
        let cfg = |ids: &[&str]| ProbeConfig {
            max_concurrency: 3,
            checks: ids
                .iter()
                .map(|id| CheckConfig::new(*id, CheckTypeName::Tcp, "127.0.0.1:9"))
                .collect(),
        };
        let mut d = Desired::default();
        d.plan(&cfg(&["a"]), false);
        d.plan(&cfg(&["a", "b"]), true);
        assert_eq!(relock(&d.checks["b"].shared).pending_alerts.len(), 1);
        relock(&d.checks["a"].shared).since = Some(SystemTime::now());
        d.checks["a"].counters.skipped.store(5, Ordering::Relaxed);
        let fresh = d.fresh();
        assert_eq!(fresh.limit, 3);
        assert_eq!(fresh.checks.keys().collect::<Vec<_>>(), vec!["a", "b"]);
        for (id, slot) in &fresh.checks {
            let old = &d.checks[id];
            assert!(Arc::ptr_eq(&slot.spec, &old.spec), "{id}: spec copied");
            assert_eq!(slot.fingerprint, old.fingerprint);
            assert!(
                !Arc::ptr_eq(&slot.shared, &old.shared),
                "{id}: state shared"
            );
            let shared = relock(&slot.shared);
            assert_eq!(shared.damper.state(), State::Unknown);
            assert!(shared.since.is_none() && shared.pending_alerts.is_empty());
            assert_eq!(slot.counters.skipped.load(Ordering::Relaxed), 0);
        }
    }

    #[tokio::test]
    async fn a_panicking_supervisor_is_reported_and_its_check_tasks_stop() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut c = CheckConfig::new("c", CheckTypeName::Tcp, format!("127.0.0.1:{port}"));
        c.interval = Duration::from_millis(50);
        c.timeout = Duration::from_millis(50);
        let (tx, mut rx) = mpsc::channel(4);
        let h = spawn(
            ProbeConfig {
                max_concurrency: 4,
                checks: vec![c],
            },
            tx,
        );
        // Running: results arrive.
        let first = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
        assert!(matches!(first, Ok(Some(_))));
        h.poison_supervisor();
        let reason = tokio::time::timeout(Duration::from_secs(10), h.wait_ended())
            .await
            .expect("wait_ended did not resolve after a panic");
        assert!(reason.contains("panicked"), "{reason}");
        assert!(reason.contains("injected supervisor panic"), "{reason}");
        // Every sender (supervisor, check tasks) is gone: no orphan task
        // keeps running beside a restarted scheduler.
        let drained = tokio::time::timeout(Duration::from_secs(10), async {
            while rx.recv().await.is_some() {}
        })
        .await;
        assert!(drained.is_ok(), "a check task outlived its supervisor");
    }
}
