//! The pipeline's own tasks — spool writer, uplink, heartbeat, control
//! socket — are critical: without any one of them the agent is a live
//! process that delivers nothing, which systemd cannot see.
//!
//! So each runs under [`spawn_critical`]: when it ends — returns early or
//! panics — a [`TaskEnd`] naming it (with the panic message) reaches the
//! service's main loop, which stops the agent with a non-zero exit status so
//! the service manager restarts it. Collectors are different: they are
//! restarted in place by the [`crate::collect::Supervisor`].
//!
//! A task that is alive but stuck (an fsync that never returns, a spool lock
//! never released) is the other failure systemd cannot see. Tasks spawned
//! with [`spawn_watched`] carry a liveness beat: while one is inside work —
//! every [`crate::pipeline::store::Store`] call and every send into the bus
//! marks it with [`busy`] — it counts as busy; waiting for input, a timer or
//! a channel it counts as idle. The service feeds systemd's watchdog only
//! while no beat has been busy for longer than the watchdog period
//! (`crate::notify`).

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use std::sync::Arc;

use futures::FutureExt;
use owlet_sdnotify::{Beat, Busy, Liveness};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

tokio::task_local! {
    /// The liveness beat of the watched task this code runs in.
    static BEAT: Arc<Beat>;
}

/// Marks the current watched task busy until the guard drops (`None`
/// outside a watched task: nothing to mark).
pub fn busy() -> Option<Busy> {
    BEAT.try_with(|beat| beat.busy()).ok()
}

/// [`spawn_critical`] for a task whose liveness `liveness` watches (see the
/// module doc).
pub fn spawn_watched<F>(
    name: &'static str,
    task: F,
    ends: mpsc::Sender<TaskEnd>,
    liveness: &Liveness,
) -> JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    spawn_critical(name, BEAT.scope(liveness.register(name), task), ends)
}

/// A critical task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskEnd {
    pub name: &'static str,
    /// The panic message, if it panicked.
    pub panic: Option<String>,
}

impl std::fmt::Display for TaskEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.panic {
            Some(message) => write!(f, "the {} task panicked: {message}", self.name),
            None => write!(f, "the {} task ended", self.name),
        }
    }
}

/// Spawns `task`; when it ends, for any reason, its [`TaskEnd`] is sent on
/// `ends`. The returned handle always completes normally.
pub fn spawn_critical<F>(name: &'static str, task: F, ends: mpsc::Sender<TaskEnd>) -> JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let outcome = AssertUnwindSafe(task).catch_unwind().await;
        let panic = outcome.err().map(|payload| panic_message(payload.as_ref()));
        // The receiver is gone only when the service is already stopping.
        let _ = ends.send(TaskEnd { name, panic }).await;
    })
}

/// The text of a panic payload (`panic!` with a message gives a `&str` or a
/// `String`).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_reported_with_its_message() {
        let (tx, mut rx) = mpsc::channel(4);
        let handle = spawn_critical("spool writer", async { panic!("disk on fire") }, tx.clone());
        handle.await.expect("the handle itself never fails");
        let end = rx.recv().await.unwrap();
        assert_eq!(end.name, "spool writer");
        assert_eq!(end.panic.as_deref(), Some("disk on fire"));
        assert_eq!(
            end.to_string(),
            "the spool writer task panicked: disk on fire"
        );
    }

    #[tokio::test]
    async fn a_watched_task_is_stuck_only_while_inside_work() {
        let liveness = Liveness::default();
        let (tx, _rx) = mpsc::channel(4);
        let (inside_tx, inside_rx) = tokio::sync::oneshot::channel::<()>();
        let (leave_tx, leave_rx) = tokio::sync::oneshot::channel::<()>();
        let handle = spawn_watched(
            "spool writer",
            async move {
                let _busy = busy();
                let _ = inside_tx.send(());
                let _ = leave_rx.await;
            },
            tx,
            &liveness,
        );
        inside_rx.await.unwrap();
        let later = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let limit = std::time::Duration::from_secs(1);
        let stuck = liveness.stuck_at(later, limit);
        assert_eq!(stuck.len(), 1);
        assert_eq!(stuck[0].task, "spool writer");
        leave_tx.send(()).unwrap();
        handle.await.unwrap();
        assert!(liveness.stuck_at(later, limit).is_empty());
        assert!(busy().is_none(), "outside a watched task nothing is marked");
    }

    #[tokio::test]
    async fn a_task_that_returns_is_reported_too() {
        let (tx, mut rx) = mpsc::channel(4);
        spawn_critical("uplink", async {}, tx).await.unwrap();
        let end = rx.recv().await.unwrap();
        assert_eq!(
            end,
            TaskEnd {
                name: "uplink",
                panic: None
            }
        );
    }
}
