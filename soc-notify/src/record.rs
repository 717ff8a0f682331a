//! The per-tenant record of notifications: `ROOT/tenants/TENANT/notifications.db`,
//! beside the tenant's `events.db`, so a tenant's notifications are as
//! separate as its events and leave with them at the contract's end.
//!
//! ```text
//! progress        (last_id)           the notifier's own position in the log, written in
//!                                     the same transaction as the groups the events joined
//! notifications   one message: rule, group, status, severity, subject, body, zone,
//!                 opened / due / composed times, first and last detection time
//! notification_events   the events a notification covers (event id, log id, the
//!                 event's own time, and the Incident it is told as, JSON)
//! deliveries      one notification through one channel: recipients, status,
//!                 attempts, first / last attempt, sent, delivered, next attempt, error
//! ```
//!
//! Notification status: `grouping` (window open) → `held` (quiet hours) →
//! `sending` → `delivered` (every channel delivered or, for unacknowledged
//! traps, sent) or `failed` (some channel gave up); `dropped` when its rule
//! was removed from the config before it was sent.
//! Delivery status: `pending` → `retrying` … → `delivered` | `sent` | `failed`.
//!
//! Guarantees: `progress` moves in the transaction that records what the
//! events joined, so after a crash no event is grouped twice and none is
//! lost; a delivery is marked `delivered` only after its peer acknowledged
//! it (SMTP 250, inform response, HTTP 2xx). A crash between a peer's
//! acknowledgement and the write sends that one delivery again
//! (at-least-once; receivers dedupe on the notification id).
//! Times are UTC µs.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::config::Severity;
use crate::error::{NotifyError, Result};
use crate::message::Incident;

pub const RECORD_FILE: &str = "notifications.db";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS progress (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    last_id INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS notifications (
    id               INTEGER PRIMARY KEY,
    rule             TEXT NOT NULL,
    group_key        TEXT NOT NULL,
    status           TEXT NOT NULL,
    severity         TEXT NOT NULL,
    severity_rank    INTEGER NOT NULL,
    zone             TEXT NOT NULL,
    opened_us        INTEGER NOT NULL,
    due_us           INTEGER NOT NULL,
    held_until_us    INTEGER,
    composed_us      INTEGER,
    first_detected_us INTEGER NOT NULL,
    last_detected_us INTEGER NOT NULL,
    event_count      INTEGER NOT NULL DEFAULT 0,
    subject          TEXT,
    body             TEXT
);
CREATE INDEX IF NOT EXISTS notifications_open ON notifications (status, due_us);
CREATE TABLE IF NOT EXISTS notification_events (
    notification_id INTEGER NOT NULL REFERENCES notifications (id),
    log_id          INTEGER NOT NULL,
    event_id        TEXT NOT NULL,
    time_us         INTEGER NOT NULL,
    incident        TEXT NOT NULL,
    PRIMARY KEY (notification_id, log_id)
);
CREATE TABLE IF NOT EXISTS deliveries (
    notification_id  INTEGER NOT NULL REFERENCES notifications (id),
    channel          TEXT NOT NULL,
    channel_type     TEXT NOT NULL,
    recipients       TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    first_attempt_us INTEGER,
    last_attempt_us  INTEGER,
    sent_us          INTEGER,
    delivered_us     INTEGER,
    next_attempt_us  INTEGER NOT NULL,
    last_error       TEXT,
    PRIMARY KEY (notification_id, channel)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_attempt_us);
";

/// One event joining a group.
#[derive(Debug, Clone)]
pub struct Join {
    pub rule: String,
    pub group_key: String,
    pub severity: Severity,
    pub log_id: i64,
    pub incident: Incident,
    /// When a new group opened by this event is due (window end).
    pub due_us: i64,
}

/// A group whose window has ended.
#[derive(Debug, Clone)]
pub struct DueGroup {
    pub id: i64,
    pub rule: String,
    pub status: String,
    pub severity: Severity,
    pub held_until_us: Option<i64>,
    pub incidents: Vec<Incident>,
}

/// A due delivery row as both records select it ([`DUE_JOBS_COLUMNS`]),
/// before its incidents are loaded.
pub(crate) type JobRow = (
    i64,
    String,
    String,
    i64,
    Option<i64>,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    i64,
);

/// The columns of a [`JobRow`], from `deliveries d JOIN notifications n`.
pub(crate) const DUE_JOBS_COLUMNS: &str =
    "d.notification_id, d.channel, d.recipients, d.attempts, d.first_attempt_us,
     n.rule, n.severity, n.subject, n.body, n.zone, n.first_detected_us";

impl Job {
    /// The job of a due delivery `row` of `tenant`, carrying `incidents`.
    pub(crate) fn of_row(tenant: &str, row: JobRow, incidents: Vec<Incident>) -> Job {
        let (
            nid,
            channel,
            recipients,
            attempts,
            first,
            rule,
            severity,
            subject,
            body,
            zone,
            detected,
        ) = row;
        Job {
            notification_id: nid,
            channel,
            recipients,
            attempts: attempts as u32,
            first_attempt_us: first,
            message: Outgoing {
                notification_id: nid,
                tenant: tenant.to_string(),
                rule,
                severity,
                subject: subject.unwrap_or_default(),
                body: body.unwrap_or_default(),
                zone,
                first_detected_us: detected,
                incidents,
            },
        }
    }
}

/// One delivery to attempt now, with what it carries.
#[derive(Debug, Clone)]
pub struct Job {
    pub notification_id: i64,
    pub channel: String,
    /// Who it goes to, as recorded when the notification was composed
    /// (a mail channel's `to` and the tenant's contacts then): a retry,
    /// after a restart too, goes to the same people.
    pub recipients: String,
    pub attempts: u32,
    pub first_attempt_us: Option<i64>,
    pub message: Outgoing,
}

/// A composed notification, as every channel sends it.
#[derive(Debug, Clone, Serialize)]
pub struct Outgoing {
    pub notification_id: i64,
    pub tenant: String,
    pub rule: String,
    pub severity: String,
    pub subject: String,
    pub body: String,
    pub zone: String,
    pub first_detected_us: i64,
    pub incidents: Vec<Incident>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// The peer acknowledged it.
    Delivered,
    /// Handed to the network; the channel has no acknowledgement (a trap).
    Sent,
    /// Failed; retried at `retry_at_us`, or given up when `None`.
    Failed {
        error: String,
        retry_at_us: Option<i64>,
    },
}

/// One row of [`history`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryRow {
    pub notification_id: i64,
    pub rule: String,
    pub status: String,
    pub severity: String,
    pub subject: Option<String>,
    pub body: Option<String>,
    pub event_count: i64,
    pub event_ids: Vec<String>,
    pub first_detected_us: i64,
    pub composed_us: Option<i64>,
    pub held_until_us: Option<i64>,
    pub deliveries: Vec<DeliveryRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryRow {
    pub channel: String,
    pub channel_type: String,
    pub recipients: String,
    pub status: String,
    pub attempts: i64,
    pub first_attempt_us: Option<i64>,
    pub sent_us: Option<i64>,
    pub delivered_us: Option<i64>,
    pub last_error: Option<String>,
}

fn severity_from(name: &str) -> Severity {
    Severity::parse(name).unwrap_or(Severity::Info)
}

/// The path of `tenant`'s record under the store root.
pub fn record_path(store_root: &Path, tenant: &str) -> PathBuf {
    store_root.join("tenants").join(tenant).join(RECORD_FILE)
}

/// One tenant's record, open for writing (the notifier's).
pub struct Record {
    db: Connection,
    path: PathBuf,
    tenant: String,
}

trait At<T> {
    fn at(self, path: &Path) -> Result<T>;
}
impl<T> At<T> for rusqlite::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|source| NotifyError::Record {
            path: path.to_path_buf(),
            source,
        })
    }
}

impl Record {
    /// Opens (creating) the record of `tenant`, whose directory the store
    /// made (the caller checked the name through the store).
    pub fn open(tenant_dir: &Path, tenant: &str) -> Result<Self> {
        let path = tenant_dir.join(RECORD_FILE);
        let db = Connection::open(&path).at(&path)?;
        db.pragma_update(None, "journal_mode", "WAL").at(&path)?;
        db.pragma_update(None, "synchronous", "FULL").at(&path)?;
        db.busy_timeout(Duration::from_secs(5)).at(&path)?;
        db.execute_batch(SCHEMA).at(&path)?;
        Ok(Record {
            db,
            path,
            tenant: tenant.to_string(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last log id whose event was looked at (0: none).
    pub fn progress(&self) -> Result<i64> {
        Ok(self
            .db
            .query_row("SELECT last_id FROM progress WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()
            .at(&self.path)?
            .unwrap_or(0))
    }

    /// Adds `joins` to their open groups (opening groups as needed) and moves
    /// the progress to `last_id`, in one transaction.
    pub fn ingest(&mut self, last_id: i64, joins: &[Join], zone: &str, now_us: i64) -> Result<()> {
        let path = self.path.clone();
        let tx = self.db.transaction().at(&path)?;
        for j in joins {
            let open: Option<i64> = tx
                .query_row(
                    "SELECT id FROM notifications WHERE rule = ?1 AND group_key = ?2
                     AND status IN ('grouping', 'held') ORDER BY id DESC LIMIT 1",
                    params![j.rule, j.group_key],
                    |r| r.get(0),
                )
                .optional()
                .at(&path)?;
            let id = match open {
                Some(id) => id,
                None => {
                    tx.execute(
                        "INSERT INTO notifications (rule, group_key, status, severity, severity_rank,
                            zone, opened_us, due_us, first_detected_us, last_detected_us)
                         VALUES (?1, ?2, 'grouping', ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
                        params![
                            j.rule,
                            j.group_key,
                            j.severity.name(),
                            j.severity as i64,
                            zone,
                            now_us,
                            j.due_us,
                            j.incident.detected_us
                        ],
                    )
                    .at(&path)?;
                    tx.last_insert_rowid()
                }
            };
            let incident = serde_json::to_string(&j.incident).unwrap_or_default();
            let added = tx
                .execute(
                    "INSERT OR IGNORE INTO notification_events (notification_id, log_id, event_id, time_us, incident)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id, j.log_id, j.incident.event_id, j.incident.detected_us, incident],
                )
                .at(&path)?;
            tx.execute(
                "UPDATE notifications SET event_count = event_count + ?2,
                    first_detected_us = MIN(first_detected_us, ?3),
                    last_detected_us = MAX(last_detected_us, ?3),
                    severity = CASE WHEN ?4 > severity_rank THEN ?5 ELSE severity END,
                    severity_rank = MAX(severity_rank, ?4)
                 WHERE id = ?1",
                params![
                    id,
                    added as i64,
                    j.incident.detected_us,
                    j.severity as i64,
                    j.severity.name()
                ],
            )
            .at(&path)?;
        }
        tx.execute(
            "INSERT INTO progress (id, last_id) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET last_id = MAX(last_id, ?1)",
            params![last_id],
        )
        .at(&path)?;
        tx.commit().at(&path)
    }

    /// Groups whose window (or quiet hours) ended by `now_us`.
    pub fn due_groups(&self, now_us: i64) -> Result<Vec<DueGroup>> {
        let mut stmt = self
            .db
            .prepare_cached(
                "SELECT id, rule, status, severity, held_until_us FROM notifications
                 WHERE status IN ('grouping', 'held') AND due_us <= ?1 ORDER BY id",
            )
            .at(&self.path)?;
        let heads: Vec<(i64, String, String, String, Option<i64>)> = stmt
            .query_map(params![now_us], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .at(&self.path)?
            .collect::<rusqlite::Result<_>>()
            .at(&self.path)?;
        let mut out = Vec::with_capacity(heads.len());
        for (id, rule, status, severity, held_until_us) in heads {
            out.push(DueGroup {
                id,
                rule,
                status,
                severity: severity_from(&severity),
                held_until_us,
                incidents: self.incidents(id)?,
            });
        }
        Ok(out)
    }

    fn incidents(&self, id: i64) -> Result<Vec<Incident>> {
        let mut stmt = self
            .db
            .prepare_cached(
                "SELECT incident FROM notification_events WHERE notification_id = ?1 ORDER BY time_us, log_id",
            )
            .at(&self.path)?;
        let rows: Vec<String> = stmt
            .query_map(params![id], |r| r.get(0))
            .at(&self.path)?
            .collect::<rusqlite::Result<_>>()
            .at(&self.path)?;
        // The record is ours; a row that does not parse (a damaged file) is
        // skipped rather than stopping every later notification.
        Ok(rows
            .iter()
            .filter_map(|s| serde_json::from_str(s).ok())
            .collect())
    }

    /// Quiet hours: the group waits until `until_us`, still open to events.
    pub fn hold(&self, id: i64, until_us: i64) -> Result<()> {
        self.db
            .execute(
                "UPDATE notifications SET status = 'held', due_us = ?2, held_until_us = ?2 WHERE id = ?1",
                params![id, until_us],
            )
            .at(&self.path)?;
        Ok(())
    }

    /// Closes a group: its message is fixed and one delivery per channel is
    /// queued for now.
    pub fn compose(
        &mut self,
        id: i64,
        subject: &str,
        body: &str,
        channels: &[(String, &'static str, String)],
        now_us: i64,
    ) -> Result<()> {
        let path = self.path.clone();
        let tx = self.db.transaction().at(&path)?;
        // Without a channel (its rule was removed from the config) there is
        // nothing to send through: recorded `dropped`, not left `sending`.
        let status = if channels.is_empty() {
            "dropped"
        } else {
            "sending"
        };
        tx.execute(
            "UPDATE notifications SET status = ?5, subject = ?2, body = ?3, composed_us = ?4 WHERE id = ?1",
            params![id, subject, body, now_us, status],
        )
        .at(&path)?;
        for (channel, kind, recipients) in channels {
            tx.execute(
                "INSERT OR IGNORE INTO deliveries (notification_id, channel, channel_type, recipients, status, next_attempt_us)
                 VALUES (?1, ?2, ?3, ?4, 'pending', ?5)",
                params![id, channel, kind, recipients, now_us],
            )
            .at(&path)?;
        }
        tx.commit().at(&path)
    }

    /// Deliveries due by `now_us`, not in `busy`, at most `limit`.
    pub fn due_jobs(
        &self,
        now_us: i64,
        busy: &HashSet<(i64, String)>,
        limit: usize,
    ) -> Result<Vec<Job>> {
        let mut stmt = self
            .db
            .prepare_cached(&format!(
                "SELECT {DUE_JOBS_COLUMNS}
                 FROM deliveries d JOIN notifications n ON n.id = d.notification_id
                 WHERE d.status IN ('pending', 'retrying') AND d.next_attempt_us <= ?1
                 ORDER BY d.next_attempt_us LIMIT ?2"
            ))
            .at(&self.path)?;
        let rows: Vec<JobRow> = stmt
            .query_map(params![now_us, (limit + busy.len()) as i64], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                    r.get(10)?,
                ))
            })
            .at(&self.path)?
            .collect::<rusqlite::Result<_>>()
            .at(&self.path)?;
        let mut out = Vec::new();
        for row in rows {
            if out.len() >= limit || busy.contains(&(row.0, row.1.clone())) {
                continue;
            }
            let incidents = self.incidents(row.0)?;
            out.push(Job::of_row(&self.tenant, row, incidents));
        }
        Ok(out)
    }

    /// Records one attempt of a delivery (started at `started_us`, ended at
    /// `now_us`) and settles the notification's status.
    pub fn attempted(
        &mut self,
        nid: i64,
        channel: &str,
        started_us: i64,
        now_us: i64,
        outcome: &Attempt,
    ) -> Result<()> {
        let path = self.path.clone();
        let tx = self.db.transaction().at(&path)?;
        match outcome {
            Attempt::Delivered | Attempt::Sent => {
                let (status, delivered) = match outcome {
                    Attempt::Delivered => ("delivered", Some(now_us)),
                    _ => ("sent", None),
                };
                tx.execute(
                    "UPDATE deliveries SET status = ?3, attempts = attempts + 1,
                        first_attempt_us = COALESCE(first_attempt_us, ?4), last_attempt_us = ?4,
                        sent_us = ?4, delivered_us = ?5
                     WHERE notification_id = ?1 AND channel = ?2",
                    params![nid, channel, status, started_us, delivered],
                )
                .at(&path)?;
            }
            Attempt::Failed { error, retry_at_us } => {
                tx.execute(
                    "UPDATE deliveries SET status = ?3, attempts = attempts + 1,
                        first_attempt_us = COALESCE(first_attempt_us, ?4), last_attempt_us = ?4,
                        next_attempt_us = ?5, last_error = ?6
                     WHERE notification_id = ?1 AND channel = ?2",
                    params![
                        nid,
                        channel,
                        if retry_at_us.is_some() {
                            "retrying"
                        } else {
                            "failed"
                        },
                        started_us,
                        retry_at_us.unwrap_or(now_us),
                        error
                    ],
                )
                .at(&path)?;
            }
        }
        let (open, failed): (i64, i64) = tx
            .query_row(
                "SELECT COALESCE(SUM(status IN ('pending', 'retrying')), 0), COALESCE(SUM(status = 'failed'), 0)
                 FROM deliveries WHERE notification_id = ?1",
                params![nid],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .at(&path)?;
        if open == 0 {
            tx.execute(
                "UPDATE notifications SET status = ?2 WHERE id = ?1",
                params![nid, if failed > 0 { "failed" } else { "delivered" }],
            )
            .at(&path)?;
        }
        tx.commit().at(&path)
    }

    /// The earliest time after `now_us` something falls due (a group or a
    /// delivery). Deliveries already due are in flight or wait for a free
    /// slot, which the end of an attempt signals: counting them would make
    /// the worker spin while a slow peer holds an attempt.
    pub fn next_due(&self, now_us: i64) -> Result<Option<i64>> {
        self.db
            .query_row(
                "SELECT MIN(t) FROM (
                    SELECT MIN(due_us) AS t FROM notifications WHERE status IN ('grouping', 'held')
                    UNION ALL
                    SELECT MIN(next_attempt_us) FROM deliveries
                    WHERE status IN ('pending', 'retrying') AND next_attempt_us > ?1)",
                params![now_us],
                |r| r.get(0),
            )
            .at(&self.path)
    }
}

/// Retention: deletes the finished notifications (`delivered`, `failed`,
/// `dropped`) all of whose events had log ids up to `last_log_id`, which
/// the tenant's retention deleted, with their events and deliveries, in one
/// transaction; notifications still open stay. Returns how many went.
/// Does nothing for a tenant without a record (it had no notification).
pub fn forget_through(store_root: &Path, tenant: &str, last_log_id: i64) -> Result<usize> {
    let path = record_path(store_root, tenant);
    if !path.exists() {
        return Ok(0);
    }
    let mut record = Record::open(path.parent().unwrap_or(store_root), tenant)?;
    let tx = record.db.transaction().at(&path)?;
    tx.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS forgotten (id INTEGER PRIMARY KEY);
         DELETE FROM temp.forgotten;",
    )
    .at(&path)?;
    let gone = tx
        .execute(
            "INSERT INTO temp.forgotten
             SELECT n.id FROM notifications n
             WHERE n.status IN ('delivered', 'failed', 'dropped')
               AND NOT EXISTS (SELECT 1 FROM notification_events e
                               WHERE e.notification_id = n.id AND e.log_id > ?1)",
            params![last_log_id],
        )
        .at(&path)?;
    tx.execute_batch(
        "DELETE FROM deliveries WHERE notification_id IN temp.forgotten;
         DELETE FROM notification_events WHERE notification_id IN temp.forgotten;
         DELETE FROM notifications WHERE id IN temp.forgotten;",
    )
    .at(&path)?;
    tx.commit().at(&path)?;
    Ok(gone)
}

/// What [`history`] selects.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    /// Notifications whose first detection is at or after this (UTC µs).
    pub since_us: Option<i64>,
    /// Most rows, newest first (0: 100).
    pub limit: usize,
}

/// The notifications of one tenant, newest first, with their deliveries:
/// for `owlet-soc notifications --tenant T` and reports. Opens the record
/// read-only; a tenant without one has had no notification (empty list).
pub fn history(store_root: &Path, tenant: &str, query: &HistoryQuery) -> Result<Vec<HistoryRow>> {
    let store = owlet_soc_store::Store::existing(store_root);
    // Checks the name like the store does, so `../x` cannot escape.
    let dir = store.tenant_dir(tenant)?;
    if !dir.join(owlet_soc_store::store::EVENTS_FILE).exists() {
        return Err(store.unknown(tenant).into());
    }
    let path = dir.join(RECORD_FILE);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let db =
        Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).at(&path)?;
    db.busy_timeout(Duration::from_secs(5)).at(&path)?;
    // The notifier creates the file, then its tables: between the two there
    // is nothing to list yet.
    let ready: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'deliveries'",
            [],
            |r| r.get(0),
        )
        .at(&path)?;
    if ready == 0 {
        return Ok(Vec::new());
    }
    let limit = if query.limit == 0 { 100 } else { query.limit };
    let mut stmt = db
        .prepare(
            "SELECT id, rule, status, severity, subject, body, event_count, first_detected_us,
                    composed_us, held_until_us
             FROM notifications WHERE first_detected_us >= ?1 ORDER BY id DESC LIMIT ?2",
        )
        .at(&path)?;
    let mut rows: Vec<HistoryRow> = stmt
        .query_map(
            params![query.since_us.unwrap_or(i64::MIN), limit as i64],
            |r| {
                Ok(HistoryRow {
                    notification_id: r.get(0)?,
                    rule: r.get(1)?,
                    status: r.get(2)?,
                    severity: r.get(3)?,
                    subject: r.get(4)?,
                    body: r.get(5)?,
                    event_count: r.get(6)?,
                    event_ids: Vec::new(),
                    first_detected_us: r.get(7)?,
                    composed_us: r.get(8)?,
                    held_until_us: r.get(9)?,
                    deliveries: Vec::new(),
                })
            },
        )
        .at(&path)?
        .collect::<rusqlite::Result<_>>()
        .at(&path)?;
    let mut events = db
        .prepare("SELECT event_id FROM notification_events WHERE notification_id = ?1 ORDER BY time_us, log_id")
        .at(&path)?;
    let mut deliveries = db
        .prepare(
            "SELECT channel, channel_type, recipients, status, attempts, first_attempt_us, sent_us,
                    delivered_us, last_error
             FROM deliveries WHERE notification_id = ?1 ORDER BY channel",
        )
        .at(&path)?;
    for row in &mut rows {
        row.event_ids = events
            .query_map(params![row.notification_id], |r| r.get(0))
            .at(&path)?
            .collect::<rusqlite::Result<_>>()
            .at(&path)?;
        row.deliveries = deliveries
            .query_map(params![row.notification_id], |r| {
                Ok(DeliveryRow {
                    channel: r.get(0)?,
                    channel_type: r.get(1)?,
                    recipients: r.get(2)?,
                    status: r.get(3)?,
                    attempts: r.get(4)?,
                    first_attempt_us: r.get(5)?,
                    sent_us: r.get(6)?,
                    delivered_us: r.get(7)?,
                    last_error: r.get(8)?,
                })
            })
            .at(&path)?
            .collect::<rusqlite::Result<_>>()
            .at(&path)?;
    }
    Ok(rows)
}

/// [`history`] as text for the analyst on call: one line per notification
/// and one per delivery, times in `zone` with their offset, and each
/// delivery's detection-to-delivery latency (what the customer's contract
/// measures).
pub fn render_history(rows: &[HistoryRow], zone: chrono_tz::Tz) -> String {
    use crate::message::local_time;
    let mut out = String::new();
    for r in rows {
        out.push_str(&format!(
            "#{} {} {} detected {} events {} rule {}\n  {}\n",
            r.notification_id,
            r.status,
            r.severity,
            local_time(r.first_detected_us, zone),
            r.event_count,
            r.rule,
            r.subject.as_deref().unwrap_or("(not composed yet)"),
        ));
        if let Some(until) = r.held_until_us {
            out.push_str(&format!(
                "  held by quiet hours until {}\n",
                local_time(until, zone)
            ));
        }
        for d in &r.deliveries {
            let done = d.delivered_us.or(d.sent_us);
            out.push_str(&format!(
                "  {} ({}) to {}: {}, {} attempt(s){}{}\n",
                d.channel,
                d.channel_type,
                d.recipients,
                d.status,
                d.attempts,
                done.map_or(String::new(), |t| format!(
                    ", at {} ({:.1} s after detection)",
                    local_time(t, zone),
                    (t - r.first_detected_us) as f64 / 1e6
                )),
                d.last_error
                    .as_ref()
                    .map_or(String::new(), |e| format!(", last error: {e}")),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(group: &str, log_id: i64) -> Join {
        Join {
            rule: "urgent".into(),
            group_key: group.into(),
            severity: Severity::Critical,
            log_id,
            incident: Incident {
                event_id: format!("acme/fw1/{log_id}"),
                detected_us: log_id,
                ..Default::default()
            },
            due_us: 0,
        }
    }

    #[test]
    fn retention_forgets_finished_notifications_of_deleted_events_only() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("tenants").join("acme");
        std::fs::create_dir_all(&dir).unwrap();
        let mut record = Record::open(&dir, "acme").unwrap();
        // Groups: "gone" (ids 1, 2: deleted), "straddles" (ids 3 and 20),
        // "open" (id 4: not yet sent), "kept" (id 30).
        let joins = [
            join("gone", 1),
            join("gone", 2),
            join("straddles", 3),
            join("open", 4),
            join("straddles", 20),
            join("kept", 30),
        ];
        record.ingest(30, &joins, "UTC", 0).unwrap();
        record
            .db
            .execute_batch(
                "UPDATE notifications SET status = 'delivered' WHERE group_key != 'open';
                 INSERT INTO deliveries (notification_id, channel, channel_type, recipients, status, attempts, next_attempt_us)
                 SELECT id, 'mail', 'smtp', 'noc@acme.test', 'delivered', 1, 0 FROM notifications;",
            )
            .unwrap();
        let gone = forget_through(root.path(), "acme", 10).unwrap();
        assert_eq!(gone, 1);
        let left = |sql: &str| -> Vec<String> {
            let mut stmt = record.db.prepare(sql).unwrap();
            let rows = stmt.query_map([], |r| r.get(0)).unwrap();
            rows.collect::<rusqlite::Result<_>>().unwrap()
        };
        let groups = left("SELECT group_key FROM notifications ORDER BY group_key");
        assert_eq!(groups, ["kept", "open", "straddles"]);
        let events = left("SELECT event_id FROM notification_events ORDER BY log_id");
        assert!(
            !events
                .iter()
                .any(|e| e.ends_with("/1") || e.ends_with("/2")),
            "{events:?}"
        );
        let deliveries = left(
            "SELECT n.group_key FROM deliveries d JOIN notifications n ON n.id = d.notification_id ORDER BY 1",
        );
        assert_eq!(deliveries, ["kept", "open", "straddles"]);
        // A tenant without a record gets none.
        assert_eq!(forget_through(root.path(), "nobody", 10).unwrap(), 0);
        assert!(!record_path(root.path(), "nobody").exists());
    }

    #[test]
    fn the_listing_shows_offsets_latency_and_errors() {
        let rows = [HistoryRow {
            notification_id: 7,
            rule: "urgent".into(),
            status: "delivered".into(),
            severity: "critical".into(),
            subject: Some("[owlet acme] CRITICAL: check_down on shop".into()),
            body: None,
            event_count: 1,
            event_ids: vec!["acme/fw1/1".into()],
            first_detected_us: 1_796_000_000_000_000,
            composed_us: None,
            held_until_us: None,
            deliveries: vec![DeliveryRow {
                channel: "mail".into(),
                channel_type: "smtp".into(),
                recipients: "noc@acme.test".into(),
                status: "delivered".into(),
                attempts: 3,
                first_attempt_us: Some(1_796_000_000_500_000),
                sent_us: Some(1_796_000_004_000_000),
                delivered_us: Some(1_796_000_004_200_000),
                last_error: Some("connection refused".into()),
            }],
        }];
        let text = render_history(&rows, "Asia/Tokyo".parse().unwrap());
        assert!(
            text.contains("#7 delivered critical detected 2026-"),
            "{text}"
        );
        assert!(text.contains("+09:00 (Asia/Tokyo)"), "{text}");
        assert!(text.contains("3 attempt(s)"), "{text}");
        assert!(text.contains("(4.2 s after detection)"), "{text}");
        assert!(text.contains("last error: connection refused"), "{text}");
    }
}
