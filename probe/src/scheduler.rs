//! The check scheduler: one small task per check, a global concurrency
//! limit, damped state, events out, live reload.
//!
//! Each check runs every `interval` at a stable phase: FNV-1a(id) modulo the
//! interval, measured against the Unix clock, so checks spread over the
//! interval and keep their slot across restarts. A run holds one permit of
//! the global semaphore and is bounded by its timeout (plus a backstop in
//! [`crate::run_check`]), so a hanging target delays only its own check.
//! Missed slots (permits scarce) are skipped, never queued: each check has at
//! most one run in flight, so memory is bounded by the number of checks. The
//! run future is boxed only while it runs, keeping idle tasks small.
//!
//! Events go out with `send().await` on the caller's bounded channel
//! (backpressure slows checks down; nothing queues here). When the channel
//! closes, check tasks end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use owlet_proto::v1::{Alert, CheckResult, Event, Severity, State, event::Kind};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{CheckConfig, ProbeConfig};
use crate::memory::RunMemory;
use crate::spec::CheckSpec;
use crate::state::{Damper, Transition};

/// Handle to the running probe subsystem.
pub struct ProbeHandle {
    pending: Arc<PendingConfig>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for ProbeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeHandle").finish_non_exhaustive()
    }
}

impl ProbeHandle {
    /// Applies a new configuration: added checks start, removed ones stop,
    /// changed ones restart (keeping their damped state when type and target
    /// are unchanged); unchanged checks are not touched. Invalid checks are
    /// skipped with a warning (the old version keeps running); validate first.
    pub fn reload(&self, config: ProbeConfig) {
        if let Ok(mut slot) = self.pending.slot.lock() {
            *slot = Some(config);
        }
        self.pending.notify.notify_one();
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
    let (stop_tx, stop_rx) = oneshot::channel();
    let task = tokio::spawn(supervise(config, pending.clone(), stop_rx, events));
    ProbeHandle {
        pending,
        stop: stop_tx,
        task,
    }
}

/// The latest config handed to `reload`, taken by the supervisor (a slot,
/// not a queue: only the newest config matters, and none is kept around).
struct PendingConfig {
    slot: Mutex<Option<ProbeConfig>>,
    notify: Notify,
}

struct Shared {
    damper: Damper,
    memory: RunMemory,
}

struct Running {
    /// Hash of the check's config (a full copy per check would cost
    /// ~1 KB each; secrets are hashed, never kept).
    fingerprint: u64,
    check_type: crate::config::CheckTypeName,
    target: String,
    task: JoinHandle<()>,
    shared: Arc<Mutex<Shared>>,
}

async fn supervise(
    initial: ProbeConfig,
    pending: Arc<PendingConfig>,
    mut stop: oneshot::Receiver<()>,
    events: mpsc::Sender<Event>,
) {
    let limit = initial
        .max_concurrency
        .clamp(1, crate::config::MAX_CONCURRENCY);
    let sem = Arc::new(Semaphore::new(limit));
    let mut sup = Supervisor {
        sem,
        limit,
        running: HashMap::new(),
        events,
    };
    sup.apply(&initial);
    drop(initial);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = pending.notify.notified() => {
                let cfg = pending.slot.lock().ok().and_then(|mut s| s.take());
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
    sem: Arc<Semaphore>,
    limit: usize,
    running: HashMap<String, Running>,
    events: mpsc::Sender<Event>,
}

impl Supervisor {
    fn apply(&mut self, cfg: &ProbeConfig) {
        let want = cfg.max_concurrency.clamp(1, crate::config::MAX_CONCURRENCY);
        if want > self.limit {
            self.sem.add_permits(want - self.limit);
        } else if want < self.limit {
            // Take the surplus permits out as running checks return them.
            let n = u32::try_from(self.limit - want).unwrap_or(u32::MAX);
            let sem = self.sem.clone();
            tokio::spawn(async move {
                if let Ok(p) = sem.acquire_many_owned(n).await {
                    p.forget();
                }
            });
        }
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
            let shared = match self.running.remove(&check.id) {
                Some(old) => {
                    old.task.abort();
                    if old.check_type == check.check_type && old.target == check.target {
                        if let Ok(mut s) = old.shared.lock() {
                            s.damper.set_thresholds(check.down_after, check.up_after);
                        }
                        old.shared
                    } else {
                        new_shared(check)
                    }
                }
                None => new_shared(check),
            };
            let task = tokio::spawn(check_loop(
                spec,
                self.sem.clone(),
                self.events.clone(),
                shared.clone(),
            ));
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
        self.running.retain(|id, r| {
            let keep = seen.contains(id);
            if !keep {
                r.task.abort();
            }
            keep
        });
    }
}

fn new_shared(c: &CheckConfig) -> Arc<Mutex<Shared>> {
    Arc::new(Mutex::new(Shared {
        damper: Damper::new(c.down_after, c.up_after),
        memory: RunMemory::default(),
    }))
}

/// Change detection for reload: the config's Debug form (secrets redacted)
/// plus the secrets themselves, hashed.
fn fingerprint(c: &CheckConfig) -> u64 {
    let mut text = format!("{c:?}");
    for s in [&c.community, &c.auth_key, &c.priv_key]
        .into_iter()
        .flatten()
    {
        text.push('\0');
        text.push_str(s.expose());
    }
    let h = fnv1a(&text);
    text.clear();
    h
}

fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
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
    Duration::from_millis(fnv1a(id) % ms)
}

/// Time from now until the check's next slot.
fn delay_to_slot(id: &str, interval: Duration) -> Duration {
    let ms = u64::try_from(interval.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let offset = fnv1a(id) % ms;
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

/// The alert for a damped transition.
pub(crate) fn alert(spec: &CheckSpec, t: Transition, r: &CheckResult) -> Alert {
    let (name, severity) = match t.new {
        State::Down => ("check_down", Severity::Critical),
        State::Degraded => ("check_degraded", Severity::Warning),
        State::Up => ("check_up", Severity::Info),
        State::Unknown | State::Unspecified => ("check_unknown", Severity::Warning),
    };
    let mut labels = HashMap::new();
    labels.insert("target".to_string(), spec.target.clone());
    labels.insert("type".to_string(), spec.check_type.as_str().to_string());
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
        labels,
        last_result: Some(r.clone()),
    }
}

/// One run: permit, check, memory, damping, events. False when the event
/// channel is closed (the agent is shutting down).
async fn run_once(
    spec: &CheckSpec,
    sem: &Arc<Semaphore>,
    events: &mpsc::Sender<Event>,
    shared: &Mutex<Shared>,
) -> bool {
    let Ok(permit) = sem.clone().acquire_owned().await else {
        return false;
    };
    let mut result = Box::pin(crate::run_check(spec)).await;
    drop(permit);
    let transition = match shared.lock() {
        Ok(mut s) => {
            s.memory.apply(&mut result);
            let t = s.damper.observe(state_of(result.result));
            result.state = s.damper.state() as i32;
            t
        }
        Err(_) => None,
    };
    let alert = transition.map(|t| alert(spec, t, &result));
    if events.send(event(Kind::CheckResult(result))).await.is_err() {
        return false;
    }
    if let Some(a) = alert
        && events.send(event(Kind::Alert(a))).await.is_err()
    {
        return false;
    }
    true
}

async fn check_loop(
    spec: Arc<CheckSpec>,
    sem: Arc<Semaphore>,
    events: mpsc::Sender<Event>,
    shared: Arc<Mutex<Shared>>,
) {
    let interval = spec.interval;
    let mut next = Instant::now() + delay_to_slot(&spec.id, interval);
    loop {
        tokio::time::sleep_until(next).await;
        // Boxed: the run's state (result, alert, permit) exists only while
        // it runs, so ten thousand idle checks stay small.
        if !Box::pin(run_once(&spec, &sem, &events, &shared)).await {
            return;
        }
        next += interval;
        let now = Instant::now();
        if next <= now {
            let behind = now.duration_since(next).as_nanos();
            let skip = u32::try_from(behind / interval.as_nanos().max(1) + 1).unwrap_or(u32::MAX);
            next += interval.saturating_mul(skip);
        }
    }
}
