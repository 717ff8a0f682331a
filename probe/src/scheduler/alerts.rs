//! The alerts the scheduler raises, and their delivery.
//!
//! Every alert has source `check`, the check id as subject and the labels
//! `type` and `target`. Names: `check_down` / `check_degraded` / `check_up` /
//! `check_unknown` for a damped transition, `device_rebooted` for an SNMP
//! reboot, `check_added` for a check a reload added, and `check_removed` for
//! a DOWN / DEGRADED check whose state a reload dropped.
//!
//! Delivery guarantee: an alert a run committed sits in the check's
//! [`Shared::pending_alerts`] until the channel took it; [`flush_pending`]
//! removes it only after a completed send (no await between the send and
//! the removal), so an abort never loses or duplicates it.

use std::collections::HashMap;
use std::sync::Mutex;

use owlet_proto::v1::{Alert, CheckResult, Event, FailureClass, Severity, State, event::Kind};
use tokio::sync::mpsc;

use super::{Shared, relock};
use crate::config::CheckTypeName;
use crate::spec::CheckSpec;
use crate::state::Transition;

pub(super) fn state_name(s: State) -> &'static str {
    match s {
        State::Up => "up",
        State::Down => "down",
        State::Degraded => "degraded",
        State::Unknown | State::Unspecified => "unknown",
    }
}

pub(super) fn event(kind: Kind) -> Event {
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

/// An alert about `spec` with the fields every check alert shares.
fn base(spec: &CheckSpec, name: &str, severity: Severity, old: State, new: State) -> Alert {
    Alert {
        source: "check".into(),
        subject: spec.id.clone(),
        name: name.into(),
        severity: severity as i32,
        old_state: old as i32,
        new_state: new as i32,
        failure: FailureClass::Unspecified as i32,
        message: String::new(),
        labels: labels(spec.check_type, &spec.target),
        last_result: None,
    }
}

/// `"tcp check web (10.0.0.1:80)"`
fn subject(spec: &CheckSpec) -> String {
    format!(
        "{} check {} ({})",
        spec.check_type.as_str(),
        spec.id,
        spec.target
    )
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
        failure: r.failure,
        message: format!(
            "{} is {} (was {}): {}",
            subject(spec),
            state_name(t.new),
            state_name(t.old),
            r.message
        ),
        last_result: Some(r.clone()),
        ..base(spec, name, severity, t.old, t.new)
    }
}

/// The alert for an SNMP device reboot (sysUpTime went back, see
/// [`crate::RunMemory`]); the check's state does not change.
pub(super) fn reboot_alert(spec: &CheckSpec, r: &CheckResult) -> Alert {
    let s = State::try_from(r.state).unwrap_or(State::Unknown);
    Alert {
        message: format!("{}: {}", subject(spec), r.message),
        last_result: Some(r.clone()),
        ..base(spec, "device_rebooted", Severity::Warning, s, s)
    }
}

/// The closing alert for a DOWN / DEGRADED check whose state is dropped.
pub(super) fn closing_alert(spec: &CheckSpec, old: State, reason: &str) -> Alert {
    Alert {
        message: format!(
            "{} is unknown (was {}): {reason}",
            subject(spec),
            state_name(old)
        ),
        ..base(spec, "check_removed", Severity::Info, old, State::Unknown)
    }
}

/// The announcement of a check a reload added (its state starts UNKNOWN).
pub(super) fn added_alert(spec: &CheckSpec) -> Alert {
    Alert {
        message: format!(
            "{} added by a configuration reload (every {})",
            subject(spec),
            humantime::format_duration(spec.interval)
        ),
        ..base(
            spec,
            "check_added",
            Severity::Info,
            State::Unspecified,
            State::Unknown,
        )
    }
}

/// Sends the alerts a run committed and not yet delivered, in order. False
/// when the channel is closed.
pub(super) async fn flush_pending(shared: &Mutex<Shared>, events: &mpsc::Sender<Event>) -> bool {
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
