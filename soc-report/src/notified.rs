//! Time to notification per incident, from the tenant's notification
//! record: `notifications.db` of `owlet-soc-notify` beside `events.db` in
//! the embedded SOC ([`fill`]); the `notification_events` and
//! `deliveries` tables of the tenant's schema in the scaled-out SOC's
//! PostgreSQL (`source::postgres`, through [`FIRST_DELIVERY`] and
//! [`fill_each`]).
//!
//! The record keeps, per notification, the log ids of the events it
//! carries (`notification_events.log_id`: the row id in the tenant's
//! `events`, in either backend) and per channel when it was delivered
//! (`deliveries.delivered_us`; `sent_us` for channels without an
//! acknowledgement, SNMP traps). An incident's raise is such an event, so
//! its time to notification is the earliest delivery of a notification
//! carrying the raise's log id, minus the raise's own time.
//!
//! Guarantees: reads only, and only the tenant's own record (the file
//! beside the reader's database; the source's own schema); a tenant
//! without a record (no notifications configured, or no notifier ran yet)
//! leaves every incident "not notified".

use std::time::Duration;

use owlet_soc_export::Zone;
use owlet_soc_store::TenantReader;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::{Incident, ReportError};

/// The record's file name (`owlet_soc_notify::record::RECORD_FILE`).
use owlet_soc_notify::record::RECORD_FILE;

/// Fills `notified_at` and `time_to_notification_seconds` of `incidents`.
pub(crate) fn fill(
    reader: &TenantReader,
    zone: &Zone,
    incidents: &mut [Incident],
) -> Result<(), ReportError> {
    let Some(dir) = reader.path().parent() else {
        return Ok(());
    };
    let path = dir.join(RECORD_FILE);
    if !path.exists() || incidents.iter().all(|i| i.raised_log_id.is_none()) {
        return Ok(());
    }
    let err = |source| ReportError::Notifications {
        path: path.clone(),
        source,
    };
    let db = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(err)?;
    db.busy_timeout(Duration::from_secs(5)).map_err(err)?;
    let ready: bool = db
        .query_row(
            "SELECT COUNT(*) = 2 FROM sqlite_master WHERE type = 'table'
             AND name IN ('notification_events', 'deliveries')",
            [],
            |r| r.get(0),
        )
        .map_err(err)?;
    if !ready {
        return Ok(());
    }
    let mut stmt = db.prepare(FIRST_DELIVERY).map_err(err)?;
    fill_each(zone, incidents, |id| {
        stmt.query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(err)
    })
}

/// The raise's time and the earliest delivery (or send) of a notification
/// carrying log id `?1`; no row when none was delivered yet.
pub(crate) const FIRST_DELIVERY: &str = "SELECT e.time_us, MIN(COALESCE(d.delivered_us, d.sent_us))
     FROM notification_events e JOIN deliveries d ON d.notification_id = e.notification_id
     WHERE e.log_id = ?1 AND COALESCE(d.delivered_us, d.sent_us) IS NOT NULL
     GROUP BY e.log_id, e.time_us";

/// Fills each incident with a raise from `first_delivery(log id)`: the
/// `(detected, delivered)` times of [`FIRST_DELIVERY`], if any.
pub(crate) fn fill_each(
    zone: &Zone,
    incidents: &mut [Incident],
    mut first_delivery: impl FnMut(i64) -> Result<Option<(i64, i64)>, ReportError>,
) -> Result<(), ReportError> {
    for incident in incidents.iter_mut() {
        let Some(id) = incident.raised_log_id else {
            continue;
        };
        if let Some((detected, delivered)) = first_delivery(id)? {
            incident.notified_at = Some(zone.rfc3339(delivered));
            incident.time_to_notification_seconds = Some((delivered - detected).max(0) / 1_000_000);
        }
    }
    Ok(())
}
