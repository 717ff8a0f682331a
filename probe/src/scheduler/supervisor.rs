//! The supervisor task: makes the running check tasks match the desired set
//! and owns them.
//!
//! Guarantees:
//! - Level-triggered: each wake-up compares every desired check with its
//!   running task by fingerprint, so coalesced reloads lose no change.
//! - A replaced task is aborted and its successor waits for it to end before
//!   running (never two runs of one check); a removed check's closing alert
//!   is sent by a small task that also waits for the old one first.
//! - When the supervisor ends, for any reason including a panic, every check
//!   task it started is aborted (its `Drop`), so a restarted scheduler never
//!   runs beside orphans.
//! - It ends by itself only when the event channel closes; the reason is
//!   reported through [`super::ProbeHandle::wait_ended`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use owlet_proto::v1::Event;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::run::{
    Ctx, Lanes, Predecessor, Retired, check_loop, default_runner, suspect_lane_size, take_over,
};
use super::{DesiredSet, Shared, relock};
use crate::spec::CheckSpec;

/// Why [`supervise`] returned.
pub(super) enum Exit {
    /// `shutdown()` asked for it.
    Shutdown,
    /// It ended by itself, for this reason.
    Ended(String),
}

struct Running {
    fingerprint: u64,
    spec: Arc<CheckSpec>,
    task: JoinHandle<()>,
    shared: Arc<Mutex<Shared>>,
}

struct Supervisor {
    lanes: Lanes,
    limit: usize,
    running: HashMap<String, Running>,
    events: mpsc::Sender<Event>,
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        for r in self.running.values() {
            r.task.abort();
        }
    }
}

pub(super) async fn supervise(
    desired: Arc<DesiredSet>,
    mut stop: oneshot::Receiver<()>,
    events: mpsc::Sender<Event>,
) -> Exit {
    let limit = relock(&desired.desired).limit.max(1);
    let mut sup = Supervisor {
        lanes: Lanes {
            all: Arc::new(Semaphore::new(limit)),
            suspect: Arc::new(Semaphore::new(suspect_lane_size(limit))),
        },
        limit,
        running: HashMap::new(),
        events: events.clone(),
    };
    sup.reconcile(&desired);
    let exit = loop {
        tokio::select! {
            _ = &mut stop => break Exit::Shutdown,
            _ = events.closed() => break Exit::Ended(
                "the probe scheduler stopped: its event channel was closed".into(),
            ),
            _ = desired.changed.notified() => sup.reconcile(&desired),
        }
    };
    let tasks: Vec<_> = sup.running.drain().map(|(_, r)| r.task).collect();
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        let _ = t.await;
    }
    exit
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

impl Supervisor {
    fn reconcile(&mut self, desired: &DesiredSet) {
        let d = relock(&desired.desired);
        #[cfg(test)]
        if d.panic_on_reconcile {
            panic!("injected supervisor panic");
        }
        let want = d.limit.max(1);
        resize(&self.lanes.all, self.limit, want);
        resize(
            &self.lanes.suspect,
            suspect_lane_size(self.limit),
            suspect_lane_size(want),
        );
        self.limit = want;

        for (id, slot) in &d.checks {
            let prev = match self.running.remove(id) {
                Some(r) if r.fingerprint == slot.fingerprint => {
                    self.running.insert(id.clone(), r);
                    continue;
                }
                Some(old) => {
                    old.task.abort();
                    let retired = (!Arc::ptr_eq(&old.shared, &slot.shared)).then(|| Retired {
                        spec: old.spec,
                        shared: old.shared,
                        reason: "check type or target changed",
                    });
                    Some(Predecessor {
                        task: old.task,
                        retired,
                    })
                }
                None => None,
            };
            let ctx = Ctx {
                spec: slot.spec.clone(),
                lanes: self.lanes.clone(),
                events: self.events.clone(),
                shared: slot.shared.clone(),
                counters: slot.counters.clone(),
            };
            let task = tokio::spawn(check_loop(ctx, default_runner, prev));
            self.running.insert(
                id.clone(),
                Running {
                    fingerprint: slot.fingerprint,
                    spec: slot.spec.clone(),
                    task,
                    shared: slot.shared.clone(),
                },
            );
        }
        let removed: Vec<String> = self
            .running
            .keys()
            .filter(|id| !d.checks.contains_key(*id))
            .cloned()
            .collect();
        drop(d);
        for id in removed {
            let Some(old) = self.running.remove(&id) else {
                continue;
            };
            old.task.abort();
            let prev = Predecessor {
                task: old.task,
                retired: Some(Retired {
                    spec: old.spec,
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
