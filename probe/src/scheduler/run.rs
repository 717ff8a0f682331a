//! The run loop of one check: wait for the slot, take permits, run, damp,
//! send. One task per check; at most one run of it in flight.
//!
//! Guarantees:
//! - A run waits for its permits at most until the check's next slot; if it
//!   gets none by then it is skipped (never queued) and counted, and the
//!   next result's message says how many runs were skipped before it.
//! - A panic in a run (check code, run memory) becomes an UNKNOWN (LOCAL)
//!   result; the check keeps running and a poisoned state lock is recovered.
//! - Alerts of a run are committed to the check's shared state before they
//!   are sent (see [`super::alerts`]), so an abort by a reload loses none.
//! - A task replacing another (reload) first waits for the old one to end
//!   and delivers what it left: its undelivered alerts and, when the state
//!   is dropped, a closing `check_removed` alert.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use owlet_proto::v1::{CheckResult, Event, FailureClass, State, check_result::Detail, event::Kind};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::alerts::{alert, closing_alert, event, flush_pending, reboot_alert};
use super::phase::delay_to_slot;
use super::{RunCounters, Shared, relock};
use crate::config::CheckTypeName;
use crate::spec::CheckSpec;

/// The semaphores every permit-taking run uses.
#[derive(Clone)]
pub(super) struct Lanes {
    /// The global limit.
    pub all: Arc<Semaphore>,
    /// Held in addition by suspect checks (last run timed out).
    pub suspect: Arc<Semaphore>,
}

pub(super) fn suspect_lane_size(limit: usize) -> usize {
    (limit / 2).max(1)
}

/// Everything one check task needs.
pub(super) struct Ctx {
    pub spec: Arc<CheckSpec>,
    pub lanes: Lanes,
    pub events: mpsc::Sender<Event>,
    pub shared: Arc<Mutex<Shared>>,
    pub counters: Arc<RunCounters>,
}

/// What a new check task takes over from the one it replaces.
pub(super) struct Predecessor {
    pub task: JoinHandle<()>,
    /// The old state, when it is dropped (removed, or type or target
    /// changed): closed with a `check_removed` alert if DOWN or DEGRADED.
    pub retired: Option<Retired>,
}

pub(super) struct Retired {
    pub spec: Arc<CheckSpec>,
    pub shared: Arc<Mutex<Shared>>,
    pub reason: &'static str,
}

pub(super) type RunFuture<'a> = Pin<Box<dyn Future<Output = CheckResult> + Send + 'a>>;
/// Runs one check once ([`crate::run_check`]; tests substitute their own).
pub(super) type Runner = for<'a> fn(&'a CheckSpec) -> RunFuture<'a>;

pub(super) fn default_runner(spec: &CheckSpec) -> RunFuture<'_> {
    Box::pin(crate::run_check(spec))
}

/// Polls a future, turning a panic into `Err(Panicked)`.
struct CatchUnwind<'a>(RunFuture<'a>);

/// A check run that panicked, with the panic's message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Panicked(String);

impl Future for CatchUnwind<'_> {
    type Output = Result<CheckResult, Panicked>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = self.0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Ready(r)) => Poll::Ready(Ok(r)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(p) => Poll::Ready(Err(Panicked(panic_message(p.as_ref())))),
        }
    }
}

pub(super) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
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

fn state_of(v: i32) -> State {
    State::try_from(v).unwrap_or(State::Unknown)
}

/// Waits for the replaced task to end, delivers its undelivered alert and,
/// for a dropped state, the closing alert. False when the channel is closed.
pub(super) async fn take_over(prev: Predecessor, events: &mpsc::Sender<Event>) -> bool {
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
            .send(event(Kind::Alert(closing_alert(&r.spec, old, r.reason))))
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
        Err(Panicked(msg)) => {
            tracing::error!(check = %spec.id, "check run panicked (reported as UNKNOWN): {msg}");
            panic_result(spec, &msg)
        }
    };
    drop(permits);
    {
        let mut s = relock(&ctx.shared);
        if matches!(result.detail, Some(Detail::Snmp(_))) {
            let memory = s.memory.get_or_insert_with(Box::default);
            let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                memory.apply(&mut result)
            }));
            if let Err(p) = applied {
                let msg = panic_message(p.as_ref());
                tracing::error!(check = %spec.id, "run memory panicked (memory reset): {msg}");
                s.memory = None;
            }
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
        s.set_message(&result.message);
        if transition.is_some() {
            s.since = Some(SystemTime::now());
        }
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

pub(super) async fn check_loop(ctx: Ctx, runner: Runner, prev: Option<Predecessor>) {
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
    use crate::config::CheckConfig;
    use owlet_proto::v1::{Alert, Severity};
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
            shared: Arc::new(Mutex::new(Shared::new(&CheckSpec::from_config(c).unwrap()))),
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

    #[tokio::test(start_paused = true)]
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

    #[tokio::test(start_paused = true)]
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

    #[tokio::test(start_paused = true)]
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

    #[tokio::test(start_paused = true)]
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

    #[tokio::test(start_paused = true)]
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
}
