//! The check scheduler: one small task per check, a global concurrency
//! limit, damped state, events out, live reload.
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
//!   late. The counts are readable with [`ProbeHandle::run_stats`], and the
//!   next result's message says how many runs were skipped before it.
//!
//! So a hanging target never makes work queue up: another check's run waits
//! at most one of its own intervals, then is skipped and counted. Only until
//! the hanging checks' first runs have timed out (one timeout of theirs) can
//! they hold every slot; after that they hold at most half of them.
//!
//! A panic in a run (check code, run memory) is caught: the run reports
//! UNKNOWN with class LOCAL and an error is logged; the check keeps running
//! and its state lock is recovered if it was poisoned.
//!
//! Alerts: a damped transition is stored in the check's shared state before
//! it is sent and cleared only once the channel took it, so a reload that
//! restarts the task mid-send does not lose it (the next task sends it
//! first, after the old task has ended). The first transition out of the
//! initial UNKNOWN into UP is not alerted (every agent restart would
//! otherwise raise a `check_up` per check); UNKNOWN → DOWN / DEGRADED is.
//! A check that is DOWN or DEGRADED when a reload removes it (or gives it a
//! new type or target, which starts a fresh state) gets a closing
//! `check_removed` alert to UNKNOWN. An SNMP device reboot detected by
//! [`RunMemory`] (sysUpTime went back) raises a `device_rebooted` warning
//! through the same path.
//!
//! Events go out with `send().await` on the caller's bounded channel
//! (backpressure slows checks down; nothing queues here). When the channel
//! closes, check tasks end.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use owlet_proto::v1::{
    Alert, CheckResult, Event, FailureClass, Severity, State, check_result::Detail, event::Kind,
};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{CheckConfig, CheckTypeName, ProbeConfig};
use crate::memory::RunMemory;
use crate::spec::CheckSpec;
use crate::state::{Damper, Transition};

/// Handle to the running probe subsystem.
pub struct ProbeHandle {
    pending: Arc<PendingConfig>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    stats: Arc<StatsMap>,
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

#[derive(Debug, Default)]
struct RunCounters {
    skipped: AtomicU64,
    late: AtomicU64,
}

type StatsMap = Mutex<HashMap<String, Arc<RunCounters>>>;

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| {
        m.clear_poison();
        p.into_inner()
    })
}

impl ProbeHandle {
    /// Applies a new configuration: added checks start, removed ones stop,
    /// changed ones restart (keeping their damped state when type and target
    /// are unchanged); unchanged checks are not touched. Invalid checks are
    /// skipped with a warning (the old version keeps running); validate first.
    pub fn reload(&self, config: ProbeConfig) {
        *relock(&self.pending.slot) = Some(config);
        self.pending.notify.notify_one();
    }

    /// Skipped / late run counts of every configured check.
    pub fn run_stats(&self) -> HashMap<String, RunStats> {
        relock(&self.stats)
            .iter()
            .map(|(id, c)| {
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

    /// Stops every check and waits for the tasks to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Starts the checks in `config`; results and alerts go to `events`.
/// Must be called inside a tokio runtime.
pub fn spawn(config: ProbeConfig, events: mpsc::Sender<Event>) -> ProbeHandle {
    let pending = Arc::new(PendingConfig {
        slot: Mutex::new(None),
        notify: Notify::new(),
    });
    let stats = Arc::new(StatsMap::default());
    let (stop_tx, stop_rx) = oneshot::channel();
    let task = tokio::spawn(supervise(
        config,
        pending.clone(),
        stop_rx,
        events,
        stats.clone(),
    ));
    ProbeHandle {
        pending,
        stop: stop_tx,
        task,
        stats,
    }
}

/// The latest config handed to `reload`, taken by the supervisor (a slot,
/// not a queue: only the newest config matters, and none is kept around).
struct PendingConfig {
    slot: Mutex<Option<ProbeConfig>>,
    notify: Notify,
}

#[derive(Debug)]
struct Shared {
    damper: Damper,
    memory: RunMemory,
    /// Alerts of a committed run not yet taken by the channel (at most a
    /// transition and a reboot: sent before the next run starts).
    pending_alerts: Vec<Alert>,
    /// Set by the first damped transition; before it, UNKNOWN -> UP is quiet.
    settled: bool,
    /// The last run timed out: runs need a permit of the suspect lane too.
    suspect: bool,
    /// Runs skipped since the last result (reported in its message).
    unreported_skips: u64,
}

struct Running {
    /// Hash of the check's config (a full copy per check would cost
    /// ~1 KB each; secrets are hashed, never kept).
    fingerprint: u64,
    check_type: CheckTypeName,
    target: String,
    task: JoinHandle<()>,
    shared: Arc<Mutex<Shared>>,
}

/// The semaphores every permit-taking run uses.
#[derive(Clone)]
struct Lanes {
    /// The global limit.
    all: Arc<Semaphore>,
    /// Held in addition by suspect checks (last run timed out).
    suspect: Arc<Semaphore>,
}

fn suspect_lane_size(limit: usize) -> usize {
    (limit / 2).max(1)
}

async fn supervise(
    initial: ProbeConfig,
    pending: Arc<PendingConfig>,
    mut stop: oneshot::Receiver<()>,
    events: mpsc::Sender<Event>,
    stats: Arc<StatsMap>,
) {
    let limit = initial
        .max_concurrency
        .clamp(1, crate::config::MAX_CONCURRENCY);
    let mut sup = Supervisor {
        lanes: Lanes {
            all: Arc::new(Semaphore::new(limit)),
            suspect: Arc::new(Semaphore::new(suspect_lane_size(limit))),
        },
        limit,
        running: HashMap::new(),
        events,
        stats,
    };
    sup.apply(&initial);
    drop(initial);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = pending.notify.notified() => {
                let cfg = relock(&pending.slot).take();
                if let Some(cfg) = cfg {
                    sup.apply(&cfg);
                }
            }
        }
    }
    let tasks: Vec<_> = sup.running.drain().map(|(_, r)| r.task).collect();
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        let _ = t.await;
    }
}

struct Supervisor {
    lanes: Lanes,
    limit: usize,
    running: HashMap<String, Running>,
    events: mpsc::Sender<Event>,
    stats: Arc<StatsMap>,
}

/// Grows or shrinks a semaphore's capacity from `old` to `new` permits.
fn resize(sem: &Arc<Semaphore>, old: usize, new: usize) {
    if new > old {
        sem.add_permits(new - old);
    } else if new < old {
        // Take the surplus permits out as running checks return them.
        let n = u32::try_from(old - new).unwrap_or(u32::MAX);
        let sem = sem.clone();
        tokio::spawn(async move {
            if let Ok(p) = sem.acquire_many_owned(n).await {
                p.forget();
            }
        });
    }
}

/// What a new check task takes over from the one it replaces.
struct Predecessor {
    task: JoinHandle<()>,
    /// The old state, when it is dropped (type or target changed): closed
    /// with a `check_removed` alert if it was DOWN or DEGRADED.
    retired: Option<Retired>,
}

struct Retired {
    id: String,
    check_type: CheckTypeName,
    target: String,
    shared: Arc<Mutex<Shared>>,
    reason: &'static str,
}

impl Supervisor {
    fn apply(&mut self, cfg: &ProbeConfig) {
        let want = cfg.max_concurrency.clamp(1, crate::config::MAX_CONCURRENCY);
        resize(&self.lanes.all, self.limit, want);
        resize(
            &self.lanes.suspect,
            suspect_lane_size(self.limit),
            suspect_lane_size(want),
        );
        self.limit = want;

        let mut seen = std::collections::HashSet::new();
        for check in &cfg.checks {
            if !seen.insert(check.id.clone()) {
                tracing::warn!(check = %check.id, "duplicate check id in [probe]; only the first is run");
                continue;
            }
            let fp = fingerprint(check);
            if let Some(r) = self.running.get(&check.id)
                && r.fingerprint == fp
            {
                continue;
            }
            let spec = match CheckSpec::from_config(check) {
                Ok(s) => Arc::new(s),
                Err(errs) => {
                    for e in errs {
                        tracing::warn!(check = %check.id, key = e.field, "invalid check skipped: {}", e.message);
                    }
                    continue;
                }
            };
            let (shared, prev) = match self.running.remove(&check.id) {
                Some(old) => {
                    old.task.abort();
                    if old.check_type == check.check_type && old.target == check.target {
                        relock(&old.shared)
                            .damper
                            .set_thresholds(check.down_after, check.up_after);
                        let prev = Predecessor {
                            task: old.task,
                            retired: None,
                        };
                        (old.shared, Some(prev))
                    } else {
                        let prev = Predecessor {
                            task: old.task,
                            retired: Some(Retired {
                                id: check.id.clone(),
                                check_type: old.check_type,
                                target: old.target,
                                shared: old.shared,
                                reason: "check type or target changed",
                            }),
                        };
                        (new_shared(check), Some(prev))
                    }
                }
                None => (new_shared(check), None),
            };
            let counters = relock(&self.stats)
                .entry(check.id.clone())
                .or_default()
                .clone();
            let ctx = Ctx {
                spec,
                lanes: self.lanes.clone(),
                events: self.events.clone(),
                shared: shared.clone(),
                counters,
            };
            let task = tokio::spawn(check_loop(ctx, default_runner, prev));
            self.running.insert(
                check.id.clone(),
                Running {
                    fingerprint: fp,
                    check_type: check.check_type,
                    target: check.target.clone(),
                    task,
                    shared,
                },
            );
        }
        let removed: Vec<String> = self
            .running
            .keys()
            .filter(|id| !seen.contains(*id))
            .cloned()
            .collect();
        for id in removed {
            let Some(old) = self.running.remove(&id) else {
                continue;
            };
            old.task.abort();
            relock(&self.stats).remove(&id);
            let prev = Predecessor {
                task: old.task,
                retired: Some(Retired {
                    id,
                    check_type: old.check_type,
                    target: old.target,
                    shared: old.shared,
                    reason: "check removed",
                }),
            };
            let events = self.events.clone();
            tokio::spawn(async move {
                take_over(prev, &events).await;
            });
        }
    }
}

fn new_shared(c: &CheckConfig) -> Arc<Mutex<Shared>> {
    Arc::new(Mutex::new(Shared {
        damper: Damper::new(c.down_after, c.up_after),
        memory: RunMemory::default(),
        pending_alerts: Vec::new(),
        settled: false,
        suspect: false,
        unreported_skips: 0,
    }))
}

/// Change detection for reload: the config's Debug form (secrets redacted)
/// plus the secrets themselves and the CA file's contents (read now, so an
/// edited CA file is picked up), hashed.
fn fingerprint(c: &CheckConfig) -> u64 {
    let mut text = format!("{c:?}");
    for s in [&c.community, &c.auth_key, &c.priv_key]
        .into_iter()
        .flatten()
    {
        text.push('\0');
        text.push_str(s.expose());
    }
    let mut h = fnv1a(text.as_bytes(), FNV_OFFSET);
    text.clear();
    if let Some(ca) = &c.ca {
        h = match std::fs::read(ca) {
            Ok(bytes) => fnv1a(&bytes, h ^ 0x01),
            // Differs from any readable state: the check is rebuilt and its
            // build reports the error.
            Err(e) => fnv1a(
                format!("\0unreadable CA: {:?}", e.kind()).as_bytes(),
                h ^ 0x02,
            ),
        };
    }
    h
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The check's stable phase within its interval (offset from interval
/// boundaries of the Unix clock).
pub fn phase_offset(id: &str, interval: Duration) -> Duration {
    let ms = u64::try_from(interval.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    Duration::from_millis(fnv1a(id.as_bytes(), FNV_OFFSET) % ms)
}

/// Time from now until the check's next slot.
fn delay_to_slot(id: &str, interval: Duration) -> Duration {
    let ms = u64::try_from(interval.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let offset = fnv1a(id.as_bytes(), FNV_OFFSET) % ms;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(0))
        .unwrap_or(0);
    let pos = now % ms;
    Duration::from_millis((offset + ms - pos) % ms)
}

fn state_of(v: i32) -> State {
    State::try_from(v).unwrap_or(State::Unknown)
}

fn state_name(s: State) -> &'static str {
    match s {
        State::Up => "up",
        State::Down => "down",
        State::Degraded => "degraded",
        State::Unknown | State::Unspecified => "unknown",
    }
}

fn event(kind: Kind) -> Event {
    Event {
        seq: 0,
        time: Some(owlet_proto::now()),
        kind: Some(kind),
    }
}

fn labels(check_type: CheckTypeName, target: &str) -> HashMap<String, String> {
    let mut labels = HashMap::new();
    labels.insert("target".to_string(), target.to_string());
    labels.insert("type".to_string(), check_type.as_str().to_string());
    labels
}

/// The alert for a damped transition.
pub(crate) fn alert(spec: &CheckSpec, t: Transition, r: &CheckResult) -> Alert {
    let (name, severity) = match t.new {
        State::Down => ("check_down", Severity::Critical),
        State::Degraded => ("check_degraded", Severity::Warning),
        State::Up => ("check_up", Severity::Info),
        State::Unknown | State::Unspecified => ("check_unknown", Severity::Warning),
    };
    Alert {
        source: "check".into(),
        subject: spec.id.clone(),
        name: name.into(),
        severity: severity as i32,
        old_state: t.old as i32,
        new_state: t.new as i32,
        failure: r.failure,
        message: format!(
            "{} check {} ({}) is {} (was {}): {}",
            spec.check_type.as_str(),
            spec.id,
            spec.target,
            state_name(t.new),
            state_name(t.old),
            r.message
        ),
        labels: labels(spec.check_type, &spec.target),
        last_result: Some(r.clone()),
    }
}

/// The alert for an SNMP device reboot (sysUpTime went back, see
/// [`RunMemory`]); the check's state does not change.
fn reboot_alert(spec: &CheckSpec, r: &CheckResult) -> Alert {
    Alert {
        source: "check".into(),
        subject: spec.id.clone(),
        name: "device_rebooted".into(),
        severity: Severity::Warning as i32,
        old_state: r.state,
        new_state: r.state,
        failure: FailureClass::Unspecified as i32,
        message: format!(
            "{} check {} ({}): {}",
            spec.check_type.as_str(),
            spec.id,
            spec.target,
            r.message
        ),
        labels: labels(spec.check_type, &spec.target),
        last_result: Some(r.clone()),
    }
}

/// The closing alert for a DOWN / DEGRADED check whose state is dropped.
fn closing_alert(r: &Retired, old: State) -> Alert {
    Alert {
        source: "check".into(),
        subject: r.id.clone(),
        name: "check_removed".into(),
        severity: Severity::Info as i32,
        old_state: old as i32,
        new_state: State::Unknown as i32,
        failure: FailureClass::Unspecified as i32,
        message: format!(
            "{} check {} ({}) is unknown (was {}): {}",
            r.check_type.as_str(),
            r.id,
            r.target,
            state_name(old),
            r.reason
        ),
        labels: labels(r.check_type, &r.target),
        last_result: None,
    }
}

/// Everything one check task needs.
struct Ctx {
    spec: Arc<CheckSpec>,
    lanes: Lanes,
    events: mpsc::Sender<Event>,
    shared: Arc<Mutex<Shared>>,
    counters: Arc<RunCounters>,
}

type RunFuture<'a> = Pin<Box<dyn Future<Output = CheckResult> + Send + 'a>>;
/// Runs one check once ([`crate::run_check`]; tests substitute their own).
type Runner = for<'a> fn(&'a CheckSpec) -> RunFuture<'a>;

fn default_runner(spec: &CheckSpec) -> RunFuture<'_> {
    Box::pin(crate::run_check(spec))
}

/// Polls a future, turning a panic into `Err(message)`.
struct CatchUnwind<'a>(RunFuture<'a>);

impl Future for CatchUnwind<'_> {
    type Output = Result<CheckResult, String>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = self.0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Ready(r)) => Poll::Ready(Ok(r)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(p) => Poll::Ready(Err(panic_message(p.as_ref()))),
        }
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

/// The result of a run that panicked: says nothing about the target.
fn panic_result(spec: &CheckSpec, msg: &str) -> CheckResult {
    CheckResult {
        check_id: spec.id.clone(),
        check_type: crate::check_type_proto(spec.check_type) as i32,
        target: spec.target.clone(),
        result: State::Unknown as i32,
        state: State::Unknown as i32,
        failure: FailureClass::Local as i32,
        message: format!("internal error: the check panicked: {msg}"),
        ..Default::default()
    }
}

/// Whether a run of this check holds a permit of the global limit.
fn takes_permit(spec: &CheckSpec) -> bool {
    spec.check_type != CheckTypeName::Icmp
}

fn late_after(interval: Duration) -> Duration {
    (interval / 2).min(Duration::from_secs(1))
}

/// Sends the alerts a run committed and not yet delivered, in order. False
/// when the channel is closed.
async fn flush_pending(shared: &Mutex<Shared>, events: &mpsc::Sender<Event>) -> bool {
    loop {
        let Some(a) = relock(shared).pending_alerts.first().cloned() else {
            return true;
        };
        if events.send(event(Kind::Alert(a))).await.is_err() {
            return false;
        }
        // No await since the send completed: an abort cannot land between.
        relock(shared).pending_alerts.remove(0);
    }
}

/// Waits for the replaced task to end, delivers its undelivered alert and,
/// for a dropped state, the closing alert. False when the channel is closed.
async fn take_over(prev: Predecessor, events: &mpsc::Sender<Event>) -> bool {
    let _ = prev.task.await;
    let Some(r) = prev.retired else {
        return true;
    };
    if !flush_pending(&r.shared, events).await {
        return false;
    }
    let old = relock(&r.shared).damper.state();
    if matches!(old, State::Down | State::Degraded) {
        return events
            .send(event(Kind::Alert(closing_alert(&r, old))))
            .await
            .is_ok();
    }
    true
}

/// Permits a run holds; dropped when the run ends.
type Permits = Option<(Option<OwnedSemaphorePermit>, OwnedSemaphorePermit)>;

/// Acquires the run's permits, waiting until `deadline` at most. `Err(true)`:
/// skipped; `Err(false)`: the semaphores are closed.
async fn acquire(ctx: &Ctx, deadline: Instant) -> Result<Permits, bool> {
    if !takes_permit(&ctx.spec) {
        return Ok(None);
    }
    let suspect = relock(&ctx.shared).suspect;
    let slow = if suspect {
        match tokio::time::timeout_at(deadline, ctx.lanes.suspect.clone().acquire_owned()).await {
            Ok(Ok(p)) => Some(p),
            Ok(Err(_)) => return Err(false),
            Err(_) => return Err(true),
        }
    } else {
        None
    };
    match tokio::time::timeout_at(deadline, ctx.lanes.all.clone().acquire_owned()).await {
        Ok(Ok(p)) => Ok(Some((slow, p))),
        Ok(Err(_)) => Err(false),
        Err(_) => Err(true),
    }
}

/// One run for the slot at `slot`: permits, check, memory, damping, events.
/// False when the event channel is closed (the agent is shutting down).
async fn run_once(ctx: &Ctx, runner: Runner, slot: Instant) -> bool {
    if !flush_pending(&ctx.shared, &ctx.events).await {
        return false;
    }
    let spec = &*ctx.spec;
    let permits = match acquire(ctx, slot + spec.interval).await {
        Ok(p) => p,
        Err(false) => return false,
        Err(true) => {
            ctx.counters.skipped.fetch_add(1, Ordering::Relaxed);
            let mut s = relock(&ctx.shared);
            s.unreported_skips = s.unreported_skips.saturating_add(1);
            tracing::debug!(check = %spec.id, "run skipped: no free concurrency slot before the next slot");
            return true;
        }
    };
    if Instant::now().saturating_duration_since(slot) > late_after(spec.interval) {
        ctx.counters.late.fetch_add(1, Ordering::Relaxed);
    }
    let mut result = match CatchUnwind(runner(spec)).await {
        Ok(r) => r,
        Err(msg) => {
            tracing::error!(check = %spec.id, "check run panicked (reported as UNKNOWN): {msg}");
            panic_result(spec, &msg)
        }
    };
    drop(permits);
    {
        let mut s = relock(&ctx.shared);
        let applied =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.memory.apply(&mut result)));
        if let Err(p) = applied {
            let msg = panic_message(p.as_ref());
            tracing::error!(check = %spec.id, "run memory panicked (memory reset): {msg}");
            s.memory = RunMemory::default();
        }
        if s.unreported_skips > 0 {
            result.message = format!(
                "{} ({} run(s) skipped before this one: no free concurrency slot)",
                result.message, s.unreported_skips
            );
            s.unreported_skips = 0;
        }
        let transition = s.damper.observe(state_of(result.result));
        result.state = s.damper.state() as i32;
        s.suspect = result.failure == FailureClass::Timeout as i32;
        let alert = transition.and_then(|t| {
            let quiet = !s.settled && t.old == State::Unknown && t.new == State::Up;
            s.settled = true;
            (!quiet).then(|| alert(spec, t, &result))
        });
        s.pending_alerts.extend(alert);
        if let Some(Detail::Snmp(d)) = &result.detail
            && d.reboot_detected
        {
            s.pending_alerts.push(reboot_alert(spec, &result));
        }
    };
    if ctx
        .events
        .send(event(Kind::CheckResult(result)))
        .await
        .is_err()
    {
        return false;
    }
    flush_pending(&ctx.shared, &ctx.events).await
}

async fn check_loop(ctx: Ctx, runner: Runner, prev: Option<Predecessor>) {
    // Boxed like the runs: awaited once, they must not size the idle loop.
    if let Some(prev) = prev
        && !Box::pin(take_over(prev, &ctx.events)).await
    {
        return;
    }
    if !Box::pin(flush_pending(&ctx.shared, &ctx.events)).await {
        return;
    }
    let interval = ctx.spec.interval;
    let mut next = Instant::now() + delay_to_slot(&ctx.spec.id, interval);
    loop {
        tokio::time::sleep_until(next).await;
        // Boxed: the run's state (result, alert, permit) exists only while
        // it runs, so ten thousand idle checks stay small.
        if !Box::pin(run_once(&ctx, runner, next)).await {
            return;
        }
        next += interval;
        let now = Instant::now();
        // A skipped run waited up to the next slot, which then runs at once;
        // slots already missed by more than the lateness bound are skipped.
        if now.saturating_duration_since(next) > late_after(interval) {
            let behind = now.duration_since(next).as_nanos();
            let skip = u32::try_from(behind / interval.as_nanos().max(1) + 1).unwrap_or(u32::MAX);
            next += interval.saturating_mul(skip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    fn make_spec(id: &str, interval_ms: u64, down_after: u32) -> (Arc<CheckSpec>, CheckConfig) {
        let mut c = CheckConfig::new(id, CheckTypeName::Tcp, "127.0.0.1:9");
        c.interval = Duration::from_millis(interval_ms);
        c.timeout = Duration::from_millis(interval_ms);
        c.down_after = down_after;
        c.up_after = 1;
        (Arc::new(CheckSpec::from_config(&c).unwrap()), c)
    }

    fn make_ctx(spec: Arc<CheckSpec>, c: &CheckConfig, events: mpsc::Sender<Event>) -> Ctx {
        Ctx {
            spec,
            lanes: Lanes {
                all: Arc::new(Semaphore::new(4)),
                suspect: Arc::new(Semaphore::new(2)),
            },
            events,
            shared: new_shared(c),
            counters: Arc::default(),
        }
    }

    fn fake(spec: &CheckSpec, state: State) -> CheckResult {
        CheckResult {
            check_id: spec.id.clone(),
            result: state as i32,
            state: state as i32,
            failure: if state == State::Down {
                FailureClass::Refused as i32
            } else {
                FailureClass::Unspecified as i32
            },
            message: "fake".into(),
            ..Default::default()
        }
    }

    fn up_runner(spec: &CheckSpec) -> RunFuture<'_> {
        Box::pin(async move { fake(spec, State::Up) })
    }

    fn down_runner(spec: &CheckSpec) -> RunFuture<'_> {
        Box::pin(async move { fake(spec, State::Down) })
    }

    static PANICS: AtomicU32 = AtomicU32::new(0);
    /// Panics on its first two calls, then reports UP.
    fn panicky_runner(spec: &CheckSpec) -> RunFuture<'_> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            if PANICS.fetch_add(1, Ordering::SeqCst) < 2 {
                panic!("boom in check code");
            }
            fake(spec, State::Up)
        })
    }

    async fn recv(rx: &mut mpsc::Receiver<Event>) -> Kind {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("no event within 10s")
            .expect("channel closed")
            .kind
            .unwrap()
    }

    #[tokio::test]
    async fn panicking_run_reports_unknown_and_the_check_keeps_running() {
        let (spec, c) = make_spec("panicky", 50, 2);
        let (tx, mut rx) = mpsc::channel(16);
        let ctx = make_ctx(spec, &c, tx);
        let shared = ctx.shared.clone();
        let task = tokio::spawn(check_loop(ctx, panicky_runner, None));
        let mut panicked = 0;
        let mut up = 0;
        while up < 2 {
            match recv(&mut rx).await {
                Kind::CheckResult(r) if r.result() == State::Unknown => {
                    assert_eq!(r.failure(), FailureClass::Local);
                    assert!(r.message.contains("boom in check code"), "{}", r.message);
                    panicked += 1;
                }
                Kind::CheckResult(r) => {
                    assert_eq!(r.result(), State::Up);
                    up += 1;
                }
                Kind::Alert(a) => panic!("unexpected alert {a:?}"),
                _ => {}
            }
        }
        assert_eq!(panicked, 2);
        assert!(!task.is_finished(), "the check task must survive a panic");
        assert!(!shared.is_poisoned());
        task.abort();
    }

    #[tokio::test]
    async fn poisoned_state_lock_is_recovered_and_damping_still_works() {
        let (spec, c) = make_spec("poisoned", 50, 2);
        let (tx, mut rx) = mpsc::channel(16);
        let ctx = make_ctx(spec, &c, tx);
        let shared = ctx.shared.clone();
        let s2 = shared.clone();
        let _ = std::thread::spawn(move || {
            let _g = s2.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(shared.is_poisoned());
        let task = tokio::spawn(check_loop(ctx, down_runner, None));
        // down_after = 2: the second DOWN result raises the alert.
        let mut results = 0;
        loop {
            match recv(&mut rx).await {
                Kind::CheckResult(_) => results += 1,
                Kind::Alert(a) => {
                    assert_eq!(a.name, "check_down");
                    assert_eq!(
                        (a.old_state(), a.new_state()),
                        (State::Unknown, State::Down)
                    );
                    break;
                }
                _ => {}
            }
        }
        assert_eq!(results, 2);
        assert!(!shared.is_poisoned());
        task.abort();
    }

    #[tokio::test]
    async fn first_up_after_start_is_quiet_but_later_changes_alert() {
        let (spec, c) = make_spec("quiet", 50, 1);
        let (tx, mut rx) = mpsc::channel(16);
        let ctx = make_ctx(spec, &c, tx);
        let shared = ctx.shared.clone();
        let task = tokio::spawn(check_loop(ctx, up_runner, None));
        for _ in 0..3 {
            match recv(&mut rx).await {
                Kind::CheckResult(r) => assert_eq!(r.state(), State::Up),
                other => panic!("startup UNKNOWN -> UP must not alert: {other:?}"),
            }
        }
        task.abort();
        let _ = task.await;
        assert_eq!(relock(&shared).damper.state(), State::Up);
        // A fresh check that starts DOWN does alert.
        let (spec2, c) = make_spec("startdown", 50, 1);
        let (tx, mut rx) = mpsc::channel(16);
        let task = tokio::spawn(check_loop(make_ctx(spec2, &c, tx), down_runner, None));
        assert!(matches!(recv(&mut rx).await, Kind::CheckResult(_)));
        match recv(&mut rx).await {
            Kind::Alert(a) => assert_eq!(
                (a.name.as_str(), a.old_state(), a.new_state()),
                ("check_down", State::Unknown, State::Down)
            ),
            other => panic!("{other:?}"),
        }
        task.abort();
    }

    #[tokio::test]
    async fn alert_survives_a_reload_that_aborts_the_task_mid_send() {
        let (spec, c) = make_spec("reloaded", 50, 1);
        // Capacity 1, already full: the run blocks sending its result after
        // the damper has moved to DOWN.
        let (tx, mut rx) = mpsc::channel(1);
        tx.send(event(Kind::Alert(Alert::default()))).await.unwrap();
        let ctx1 = make_ctx(spec.clone(), &c, tx.clone());
        let shared = ctx1.shared.clone();
        let old = tokio::spawn(check_loop(ctx1, down_runner, None));
        let t0 = Instant::now();
        while relock(&shared).damper.state() != State::Down {
            assert!(t0.elapsed() < Duration::from_secs(10));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The reload: abort, and start the new task on the same state.
        old.abort();
        let ctx2 = Ctx {
            shared: shared.clone(),
            ..make_ctx(spec, &c, tx)
        };
        let new = tokio::spawn(check_loop(
            ctx2,
            down_runner,
            Some(Predecessor {
                task: old,
                retired: None,
            }),
        ));
        let _filler = recv(&mut rx).await;
        let mut downs = 0;
        let until = Instant::now() + Duration::from_millis(600);
        while let Ok(Some(ev)) = tokio::time::timeout_at(until, rx.recv()).await {
            if let Some(Kind::Alert(a)) = ev.kind {
                assert_eq!(a.name, "check_down");
                downs += 1;
            }
        }
        assert_eq!(
            downs, 1,
            "the committed DOWN alert must arrive exactly once"
        );
        assert!(relock(&shared).pending_alerts.is_empty());
        new.abort();
    }

    static UPTIME_CALLS: AtomicU32 = AtomicU32::new(0);
    /// SNMP results whose sysUpTime goes back on the third call.
    fn rebooting_runner(spec: &CheckSpec) -> RunFuture<'_> {
        Box::pin(async move {
            let n = UPTIME_CALLS.fetch_add(1, Ordering::SeqCst);
            let ticks = if n < 2 { 500_000 + n * 100 } else { 10 + n };
            let mut r = fake(spec, State::Up);
            r.detail = Some(Detail::Snmp(owlet_proto::v1::SnmpDetail {
                varbinds: vec![owlet_proto::v1::SnmpVarBind {
                    oid: crate::snmp::SYS_UPTIME.into(),
                    value: ticks.to_string(),
                    value_type: "TimeTicks".into(),
                }],
                ..Default::default()
            }));
            r
        })
    }

    #[tokio::test]
    async fn device_reboot_raises_a_warning_alert() {
        let (spec, c) = make_spec("rebooter", 50, 1);
        let (tx, mut rx) = mpsc::channel(16);
        let task = tokio::spawn(check_loop(make_ctx(spec, &c, tx), rebooting_runner, None));
        let mut results = 0;
        let a = loop {
            match recv(&mut rx).await {
                Kind::CheckResult(_) => results += 1,
                Kind::Alert(a) => break a,
                _ => {}
            }
        };
        task.abort();
        assert_eq!(results, 3, "alert follows the result that saw the reboot");
        assert_eq!(a.name, "device_rebooted");
        assert_eq!(a.severity(), Severity::Warning);
        assert_eq!((a.old_state(), a.new_state()), (State::Up, State::Up));
        assert!(a.message.contains("device rebooted"), "{}", a.message);
        let last = a.last_result.unwrap();
        assert!(matches!(last.detail, Some(Detail::Snmp(d)) if d.reboot_detected));
    }

    #[test]
    fn fingerprint_follows_ca_file_contents() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "one").unwrap();
        let mut c = CheckConfig::new("tls", CheckTypeName::Tcp, "127.0.0.1:443");
        c.ca = Some(ca.clone());
        let a = fingerprint(&c);
        assert_eq!(a, fingerprint(&c));
        std::fs::write(&ca, "two").unwrap();
        let b = fingerprint(&c);
        assert_ne!(a, b, "edited CA file must change the fingerprint");
        std::fs::remove_file(&ca).unwrap();
        let gone = fingerprint(&c);
        assert_ne!(gone, a);
        assert_ne!(gone, b);
    }
}
