//! Escalation: an analyst's "escalate" sends the alert through the
//! tenant's notification channels of `[notify]` (soc-notify's own
//! channels, one attempt each), and says what happened per channel.
//!
//! Guarantees: only channels that list the tenant are used (a channel
//! serves named tenants; another tenant's contacts never hear of it); mail
//! goes to the channel's `to` and the tenant's own contacts that want the
//! alert's severity (`owlet_soc_notify::contacts`), as notifications do; the
//! message is plain text built from the alert (never HTML); a failed
//! channel is reported, not retried here (the analyst sees it and the
//! audit log records it).

use std::path::Path;

use owlet_soc_notify::NotifyConfig;
use owlet_soc_notify::channel::{Channel, Sent};
use owlet_soc_notify::config::Severity;
use owlet_soc_notify::contacts;
use owlet_soc_notify::message::Incident;
use owlet_soc_notify::record::Outgoing;

/// The alert being escalated.
#[derive(Debug, Clone)]
pub struct Escalation {
    pub tenant: String,
    pub event_id: i64,
    pub stable_id: String,
    pub agent: String,
    pub name: String,
    pub subject: String,
    pub severity: String,
    pub message: String,
    pub detected_us: i64,
    pub zone: String,
    pub analyst: String,
    pub comment: String,
}

/// Sends `e` through every channel of its tenant, to the tenant's contacts
/// (`contacts_root/contacts/TENANT.json`), keeping the channels' state
/// under `portal_root`; one line per channel. `None` when `[notify]` is not
/// configured or has no channel for the tenant.
pub async fn send(
    notify: Option<&NotifyConfig>,
    contacts_root: &Path,
    portal_root: &Path,
    e: &Escalation,
) -> Option<Vec<String>> {
    let notify = notify?;
    let configs: Vec<_> = notify
        .channels
        .iter()
        .filter(|c| c.tenants().contains(&e.tenant))
        .collect();
    if configs.is_empty() {
        return None;
    }
    let subject = format!(
        "[owlet {}] ESCALATED by {}: {} on {}",
        e.tenant, e.analyst, e.name, e.subject
    )
    .replace(['\r', '\n'], " ");
    let body = format!(
        "An analyst escalated this alert.\n\nAlert: {}\nSubject: {}\nSensor: {}\nSeverity: {}\nDetected: {}\nWhat it said: {}\nAnalyst: {}\nComment: {}\nEvent id: {}\n",
        e.name,
        e.subject,
        e.agent,
        e.severity,
        crate::timefmt::show(e.detected_us, crate::timefmt::zone(&e.zone)),
        e.message,
        e.analyst,
        e.comment,
        e.stable_id
    );
    let message = Outgoing {
        notification_id: e.event_id,
        tenant: e.tenant.clone(),
        rule: "portal-escalation".into(),
        severity: e.severity.clone(),
        subject,
        body,
        zone: e.zone.clone(),
        first_detected_us: e.detected_us,
        incidents: vec![Incident {
            event_id: e.stable_id.clone(),
            agent: e.agent.clone(),
            kind: "alert".into(),
            source: String::new(),
            name: e.name.clone(),
            subject: e.subject.clone(),
            severity: e.severity.clone(),
            detected_us: e.detected_us,
            target: e.subject.clone(),
            detected: e.message.clone(),
            damage: String::new(),
            response: e.comment.clone(),
        }],
    };
    let mut out = Vec::new();
    let contacts = match contacts::load(contacts_root, &e.tenant) {
        Ok(list) => list,
        Err(err) => {
            // Said to the analyst; the channels' own recipients still get it.
            out.push(format!("contacts: {err}"));
            Vec::new()
        }
    };
    let severity = Severity::parse(&e.severity).unwrap_or(Severity::Critical);
    let contacts = contacts::recipients(&contacts, severity);
    // The portal's own SNMP engine state, apart from the receiver's.
    let state_dir = portal_root.join("portal-notify");
    for config in configs {
        let name = config.name().to_string();
        let line = match Channel::build(config, &state_dir) {
            Err(err) => format!("{name}: cannot set up the channel: {err}"),
            Ok(channel) => match channel.send(&message, &channel.recipients(&contacts)).await {
                Ok(Sent::Delivered) => format!("{name}: delivered"),
                Ok(Sent::Unacknowledged) => format!("{name}: sent"),
                Err(err) => format!("{name}: failed: {}", err.message),
            },
        };
        out.push(line);
    }
    Some(out)
}
