//! Runs the collectors: start, watch, restart with backoff, reload, stop.
//!
//! Guarantees:
//! * one collector failing never stops, restarts or delays another;
//! * every failure is logged with its reason, shown by `owlet health` until
//!   the collector runs again, and sent to the SOC as a `collector_failed`
//!   alert (and `collector_recovered` once a restart holds);
//! * restarts back off exponentially with jitter (1 s up to 5 min), and the
//!   backoff resets only after a start that ran for [`HEALTHY_RUN`];
//! * [`Supervisor::tend`] is cancel-safe, so the service's main loop can
//!   race it against signals and control requests.

use std::collections::BTreeMap;
use std::time::Duration;

use owlet_proto::v1::{Alert, Event, Severity, State, event::Kind};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, info};

use super::{Collector, CollectorHealth, OPTIONAL, Reload, ReloadReport};
use crate::config::Config;
use crate::pipeline::bus::EventSender;
use crate::uplink::Backoff;
use crate::verdict::Verdict;

/// First and longest wait before a failed collector is started again.
const RESTART_MIN: Duration = Duration::from_secs(1);
const RESTART_MAX: Duration = Duration::from_secs(300);
/// A start that ran this long without failing resets the backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// A failure notice: (slot, generation of the start that failed, reason).
type Notice = (usize, u64, String);

pub struct Supervisor {
    slots: Vec<Slot>,
    bus: EventSender,
    notices_tx: mpsc::Sender<Notice>,
    notices_rx: mpsc::Receiver<Notice>,
}

struct Slot {
    collector: Box<dyn Collector>,
    /// Bumped at every start, so a late notice from an old run is ignored.
    generation: u64,
    watcher: Option<JoinHandle<()>>,
    state: SlotState,
    backoff: Backoff,
}

enum SlotState {
    Running {
        since: Instant,
    },
    Restarting {
        reason: String,
        at: Instant,
        attempts: u32,
    },
    Stopped,
    /// Not asked for by the configuration (since a reload).
    Off,
}

/// One collector as `owlet health` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CollectorReport {
    /// "running", "restarting" or "stopped".
    pub state: &'static str,
    #[serde(flatten)]
    pub health: CollectorHealth,
}

impl Supervisor {
    pub fn new(bus: EventSender) -> Self {
        let (notices_tx, notices_rx) = mpsc::channel(16);
        Self {
            slots: Vec::new(),
            bus,
            notices_tx,
            notices_rx,
        }
    }

    /// Adds a collector and starts it (a failed start is retried like any
    /// other failure).
    pub fn add(&mut self, collector: Box<dyn Collector>) {
        self.slots.push(Slot {
            collector,
            generation: 0,
            watcher: None,
            state: SlotState::Stopped,
            backoff: Backoff::new(RESTART_MIN, RESTART_MAX),
        });
        self.start(self.slots.len() - 1);
    }

    fn start(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        slot.generation += 1;
        let generation = slot.generation;
        let was_failing = matches!(slot.state, SlotState::Restarting { .. });
        match slot.collector.start(self.bus.clone()) {
            Ok(failure) => {
                let notices = self.notices_tx.clone();
                slot.watcher = Some(tokio::spawn(async move {
                    let reason = failure.await;
                    let _ = notices.send((index, generation, reason)).await;
                }));
                slot.state = SlotState::Running {
                    since: Instant::now(),
                };
                let name = slot.collector.name();
                if was_failing {
                    info!(collector = name, "collector restarted");
                    self.alert(name, "collector_recovered", State::Up, "restarted".into());
                }
            }
            Err(e) => self.failed(index, e.to_string()),
        }
    }

    /// Records a failure and schedules the restart.
    fn failed(&mut self, index: usize, reason: String) {
        let slot = &mut self.slots[index];
        if let Some(watcher) = slot.watcher.take() {
            watcher.abort();
        }
        if let SlotState::Running { since } = slot.state
            && since.elapsed() >= HEALTHY_RUN
        {
            slot.backoff.reset();
        }
        let attempts = match &slot.state {
            SlotState::Restarting { attempts, .. } => attempts + 1,
            _ => 1,
        };
        let delay = slot.backoff.next_delay();
        let name = slot.collector.name();
        error!(collector = name, attempt = attempts, retry_in = ?delay,
               "collector failed: {reason}; restarting it (other collectors and the pipeline are unaffected)");
        slot.state = SlotState::Restarting {
            reason: reason.clone(),
            at: Instant::now() + delay,
            attempts,
        };
        self.alert(name, "collector_failed", State::Down, reason);
    }

    fn alert(&self, collector: &'static str, name: &str, new_state: State, message: String) {
        let alert = Alert {
            source: "agent".into(),
            subject: format!("collector:{collector}"),
            name: name.into(),
            severity: if new_state == State::Up {
                Severity::Info
            } else {
                Severity::Critical
            } as i32,
            new_state: new_state as i32,
            message: format!("{collector}: {message}"),
            ..Default::default()
        };
        // Never wait on the bus from the supervisor: the log and health
        // already carry the failure if the bus is full.
        let _ = self.bus.try_send(Event {
            seq: 0,
            time: Some(owlet_proto::now()),
            kind: Some(Kind::Alert(alert)),
        });
    }

    /// Waits for the next failure or due restart and handles it. Cancel-safe:
    /// nothing is taken before the handling, which does not await.
    pub async fn tend(&mut self) {
        let next_restart = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s.state {
                SlotState::Restarting { at, .. } => Some((at, i)),
                _ => None,
            })
            .min();
        let restart_due = async {
            match next_restart {
                Some((at, _)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some((index, generation, reason)) = self.notices_rx.recv() => {
                let current = self.slots.get(index).is_some_and(|s| {
                    s.generation == generation && matches!(s.state, SlotState::Running { .. })
                });
                if current {
                    // Record the failure before awaiting anything: if the
                    // caller's select! drops this future during the stop,
                    // the restart is still scheduled.
                    self.failed(index, reason);
                    self.slots[index].collector.stop().await;
                }
            }
            () = restart_due => {
                if let Some((_, index)) = next_restart {
                    self.start(index);
                }
            }
        }
    }

    /// Applies a new configuration: each collector takes its part, live or
    /// by a stop and a start done here at once; collectors the
    /// configuration newly asks for start, those it no longer asks for
    /// stop. A start that fails is reported like any collector failure
    /// (log, alert, CRITICAL health, restart with backoff) and named in the
    /// report's `failed`.
    pub async fn reload(&mut self, config: &Config) -> ReloadReport {
        let mut report = ReloadReport::default();
        for index in 0..self.slots.len() {
            let name = self.slots[index].collector.name();
            let kind = OPTIONAL.iter().find(|k| k.name == name);
            let wanted = kind.is_none_or(|k| (k.wanted)(config));
            let off = matches!(self.slots[index].state, SlotState::Off);
            match (wanted, off, kind) {
                (false, false, _) => {
                    self.halt(index).await;
                    self.slots[index].state = SlotState::Off;
                    report.removed.push(name.to_string());
                }
                (true, true, Some(kind)) => {
                    self.slots[index].collector = (kind.build)(config);
                    self.slots[index].backoff.reset();
                    self.start(index);
                    report.added.push(name.to_string());
                    report.failed.extend(self.start_failure(index));
                }
                (true, false, _) => match self.slots[index].collector.reload(config) {
                    Reload::Applied(r) => report.merge(r),
                    Reload::Restart(r) => {
                        report.merge(r);
                        if matches!(self.slots[index].state, SlotState::Stopped) {
                            continue;
                        }
                        self.halt(index).await;
                        self.start(index);
                        match self.start_failure(index) {
                            Some(why) => report.failed.push(why),
                            None => report.restarted.push(name.to_string()),
                        }
                    }
                },
                _ => {}
            }
        }
        for kind in &OPTIONAL {
            let present = self.slots.iter().any(|s| s.collector.name() == kind.name);
            if !present && (kind.wanted)(config) {
                self.add((kind.build)(config));
                report.added.push(kind.name.to_string());
                report
                    .failed
                    .extend(self.start_failure(self.slots.len() - 1));
            }
        }
        report
    }

    /// Stops a running collector for a restart or for good; a collector
    /// waiting for its restart has nothing running.
    async fn halt(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        if let Some(watcher) = slot.watcher.take() {
            watcher.abort();
        }
        if matches!(slot.state, SlotState::Running { .. }) {
            slot.collector.stop().await;
            slot.state = SlotState::Stopped;
        }
    }

    /// Why the last start of slot `index` failed, if it did.
    fn start_failure(&self, index: usize) -> Option<String> {
        match &self.slots[index].state {
            SlotState::Restarting { reason, .. } => {
                Some(format!("{}: {reason}", self.slots[index].collector.name()))
            }
            _ => None,
        }
    }

    /// Stops every collector (at shutdown, before the bus drains).
    pub async fn stop_all(&mut self) {
        for slot in &mut self.slots {
            if let Some(watcher) = slot.watcher.take() {
                watcher.abort();
            }
            if matches!(slot.state, SlotState::Running { .. }) {
                slot.collector.stop().await;
            }
            slot.state = SlotState::Stopped;
        }
    }

    /// Every collector's state for `owlet health`, by name.
    pub fn reports(&self) -> BTreeMap<&'static str, CollectorReport> {
        self.slots
            .iter()
            .filter(|slot| !matches!(slot.state, SlotState::Off))
            .map(|slot| {
                let report = match &slot.state {
                    SlotState::Running { .. } => CollectorReport {
                        state: "running",
                        health: slot.collector.health(),
                    },
                    SlotState::Restarting {
                        reason,
                        at,
                        attempts,
                    } => CollectorReport {
                        state: "restarting",
                        health: CollectorHealth {
                            verdict: Verdict::Critical,
                            reasons: vec![format!(
                                "{} failed ({attempts}x): {reason}; next start in {}s",
                                slot.collector.name(),
                                at.saturating_duration_since(Instant::now()).as_secs()
                            )],
                            detail: serde_json::Value::Null,
                        },
                    },
                    SlotState::Stopped | SlotState::Off => CollectorReport {
                        state: "stopped",
                        health: CollectorHealth::ok(serde_json::Value::Null),
                    },
                };
                (slot.collector.name(), report)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::collect::{CaptureStartError, Failure, StartError};

    /// A collector whose runs fail when the test says so.
    struct Flaky {
        name: &'static str,
        starts: Arc<AtomicU32>,
        fail_start: bool,
        /// `stop` never finishes (a collector stuck in its shutdown).
        stop_hangs: bool,
        /// Sending on it makes the current run fail; shared with the test.
        trigger: Arc<Mutex<Option<tokio::sync::oneshot::Sender<()>>>>,
    }

    struct Handles {
        starts: Arc<AtomicU32>,
        trigger: Arc<Mutex<Option<tokio::sync::oneshot::Sender<()>>>>,
    }

    impl Handles {
        fn fail(&self) {
            let tx = self.trigger.lock().unwrap().take().expect("running");
            tx.send(()).unwrap();
        }
        fn starts(&self) -> u32 {
            self.starts.load(Ordering::SeqCst)
        }
    }

    fn flaky(name: &'static str, fail_start: bool) -> (Box<dyn Collector>, Handles) {
        let handles = Handles {
            starts: Arc::default(),
            trigger: Arc::default(),
        };
        let flaky = Flaky {
            name,
            starts: handles.starts.clone(),
            fail_start,
            stop_hangs: false,
            trigger: handles.trigger.clone(),
        };
        (Box::new(flaky), handles)
    }

    impl Collector for Flaky {
        fn name(&self) -> &'static str {
            self.name
        }
        fn start(&mut self, _bus: EventSender) -> Result<Failure, StartError> {
            self.starts.fetch_add(1, Ordering::SeqCst);
            if self.fail_start {
                return Err(CaptureStartError::Open {
                    interface: "eth9".into(),
                    source: owlet_capture::live::CaptureError::NoInterface {
                        name: "eth9".into(),
                        available: vec!["lo".into()],
                    },
                }
                .into());
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            *self.trigger.lock().unwrap() = Some(tx);
            Ok(Box::pin(async move {
                match rx.await {
                    Ok(()) => "worker panicked: boom".to_string(),
                    Err(_) => std::future::pending().await,
                }
            }))
        }
        fn reload(&mut self, _config: &Config) -> Reload {
            Reload::Applied(ReloadReport::default())
        }
        fn stop(&mut self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
            let hangs = self.stop_hangs;
            Box::pin(async move {
                if hangs {
                    std::future::pending::<()>().await;
                }
            })
        }
        fn health(&self) -> CollectorHealth {
            CollectorHealth::ok(serde_json::Value::Null)
        }
    }

    fn alerts(rx: &mut mpsc::Receiver<Event>) -> Vec<String> {
        let mut names = Vec::new();
        while let Ok(event) = rx.try_recv() {
            if let Some(Kind::Alert(a)) = event.kind {
                names.push(format!("{} {}", a.name, a.subject));
            }
        }
        names
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_collector_is_reported_and_restarted_without_touching_the_other() {
        let (bus, mut rx) = mpsc::channel(16);
        let mut supervisor = Supervisor::new(bus);
        let (a, a_handles) = flaky("a", false);
        let (b, b_handles) = flaky("b", false);
        supervisor.add(a);
        supervisor.add(b);
        assert_eq!(supervisor.reports()["a"].state, "running");

        // "a" fails: reported, alerted, restart scheduled; "b" untouched.
        a_handles.fail();
        supervisor.tend().await;
        let reports = supervisor.reports();
        assert_eq!(reports["a"].state, "restarting");
        assert_eq!(reports["a"].health.verdict, Verdict::Critical);
        assert!(
            reports["a"].health.reasons[0].contains("worker panicked: boom"),
            "{:?}",
            reports["a"].health.reasons
        );
        assert_eq!(reports["b"].state, "running");
        assert_eq!(alerts(&mut rx), vec!["collector_failed collector:a"]);

        // The restart comes after the backoff; "b" was never restarted.
        supervisor.tend().await;
        assert_eq!(supervisor.reports()["a"].state, "running");
        assert_eq!(a_handles.starts(), 2);
        assert_eq!(b_handles.starts(), 1);
        assert_eq!(alerts(&mut rx), vec!["collector_recovered collector:a"]);

        // A second failure of the restarted run is noticed too.
        a_handles.fail();
        supervisor.tend().await;
        assert_eq!(supervisor.reports()["a"].state, "restarting");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_is_kept_when_tend_is_cancelled_during_the_stop() {
        let (bus, _rx) = mpsc::channel(16);
        let mut supervisor = Supervisor::new(bus);
        let handles = Handles {
            starts: Arc::default(),
            trigger: Arc::default(),
        };
        supervisor.add(Box::new(Flaky {
            name: "stuck",
            starts: handles.starts.clone(),
            fail_start: false,
            stop_hangs: true,
            trigger: handles.trigger.clone(),
        }));
        handles.fail();
        // The main loop's select! drops tend() while the stop hangs.
        let cancelled = tokio::time::timeout(Duration::from_millis(10), supervisor.tend()).await;
        assert!(cancelled.is_err());
        assert_eq!(supervisor.reports()["stuck"].state, "restarting");
    }

    #[tokio::test(start_paused = true)]
    async fn a_start_that_fails_is_retried_after_a_backoff() {
        let (bus, _rx) = mpsc::channel(16);
        let mut supervisor = Supervisor::new(bus);
        let (capture, handles) = flaky("capture", true);
        supervisor.add(capture);
        let report = &supervisor.reports()["capture"];
        assert_eq!(report.state, "restarting");
        assert!(report.health.reasons[0].contains("eth9 does not exist"));
        // Nothing is retried before the backoff (at least RESTART_MIN / 2).
        let early = tokio::time::timeout(RESTART_MIN / 4, supervisor.tend()).await;
        assert!(early.is_err());
        assert_eq!(handles.starts(), 1);
        let begin = Instant::now();
        for _ in 0..4 {
            supervisor.tend().await;
        }
        assert_eq!(handles.starts(), 5);
        assert!(begin.elapsed() >= (RESTART_MIN / 2) * 4);
        assert!(supervisor.reports()["capture"].health.reasons[0].contains("(5x)"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_notice_from_a_stopped_run_is_ignored() {
        let (bus, _rx) = mpsc::channel(16);
        let mut supervisor = Supervisor::new(bus);
        let (a, handles) = flaky("a", false);
        supervisor.add(a);
        supervisor.stop_all().await;
        // The watcher was aborted with the stop: nothing arrives.
        if let Some(tx) = handles.trigger.lock().unwrap().take() {
            let _ = tx.send(());
        }
        let waited = tokio::time::timeout(Duration::from_secs(3600), supervisor.tend()).await;
        assert!(waited.is_err(), "a stopped collector must not be restarted");
        assert_eq!(supervisor.reports()["a"].state, "stopped");
    }
}
