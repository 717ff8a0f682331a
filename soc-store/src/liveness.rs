//! The alerts the SOC raises about an agent's liveness, the same whichever
//! mode judges it (the embedded receiver's sink, the scaled-out writer):
//! `agent_silent` (no heartbeat within the window and no goodbye: a crash,
//! a power cut, a network down; Critical), `agent_stopped` (no heartbeat
//! since its goodbye: stopped on purpose; Info) and `agent_recovered`
//! (heartbeats again; Info). They are stored like any event, outside the
//! agent's sequence (seq NULL), so outputs, notifications and reports see
//! them as they see the agent's own alerts.

use std::time::Duration;

use owlet_proto::v1::{Alert, Event, Severity, State, event::Kind};

/// What a liveness alert says about an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Silent,
    Stopped,
    Recovered,
}

impl Liveness {
    /// The judgement on an agent quiet for `quiet`: stopped when its last
    /// heartbeat said goodbye, else silent.
    pub fn overdue(stopping: bool) -> Self {
        if stopping {
            Liveness::Stopped
        } else {
            Liveness::Silent
        }
    }

    /// The alert about `subject` (`tenant/agent`), `quiet` since its last
    /// heartbeat, judged with the window `silent_after`.
    pub fn alert(self, subject: &str, quiet: Duration, silent_after: Duration) -> Event {
        match self {
            Liveness::Silent => soc_alert(
                subject,
                "agent_silent",
                Severity::Critical,
                State::Down,
                format!(
                    "no heartbeat from {subject} for {}s (window {}s)",
                    quiet.as_secs(),
                    silent_after.as_secs()
                ),
            ),
            Liveness::Stopped => soc_alert(
                subject,
                "agent_stopped",
                Severity::Info,
                State::Down,
                format!(
                    "{subject} was stopped on purpose {}s ago (its last heartbeat said goodbye: \
                     systemctl stop, an upgrade); no data until it starts again",
                    quiet.as_secs()
                ),
            ),
            Liveness::Recovered => soc_alert(
                subject,
                "agent_recovered",
                Severity::Info,
                State::Up,
                format!("{subject} is sending heartbeats again"),
            ),
        }
    }
}

/// An alert the SOC raises about `subject` (`tenant/agent`), stored like
/// any event (seq 0 in the protobuf, NULL in the store).
pub fn soc_alert(
    subject: &str,
    name: &str,
    severity: Severity,
    new: State,
    message: String,
) -> Event {
    let old = if new == State::Up {
        State::Down
    } else {
        State::Up
    };
    Event {
        seq: 0,
        time: Some(owlet_proto::now()),
        kind: Some(Kind::Alert(Alert {
            source: "soc".into(),
            subject: subject.into(),
            name: name.into(),
            severity: severity as i32,
            old_state: old as i32,
            new_state: new as i32,
            message,
            ..Default::default()
        })),
    }
}
