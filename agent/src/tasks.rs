//! The pipeline's own tasks — spool writer, uplink, heartbeat, control
//! socket — are critical: without any one of them the agent is a live
//! process that delivers nothing, which systemd cannot see.
//!
//! So each runs under [`spawn_critical`]: when it ends — returns early or
//! panics — a [`TaskEnd`] naming it (with the panic message) reaches the
//! service's main loop, which stops the agent with a non-zero exit status so
//! the service manager restarts it. Collectors are different: they are
//! restarted in place by the [`crate::collect::Supervisor`].

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

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
