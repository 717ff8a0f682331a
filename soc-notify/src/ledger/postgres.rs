//! The scaled-out SOC's ledger: the events the writer stored
//! (`tenant_<t>.events`), the record in the same schema
//! (`tenant_<t>.notifications`, `notification_events`, `deliveries`: the
//! columns of [`crate::record`]) and the `notify` cursor of
//! `owlet_bus.cursors`.
//!
//! Guarantees:
//! * **One notifier per tenant.** [`Ledgers::open`] takes the tenant's
//!   cursor under its advisory lock ([`owlet_soc_bus::cursor::claim`]) on
//!   a connection of the tenant's own, which then does every read and
//!   write of that tenant. Another process with the same config stands by
//!   (the supervisor tries again every `STANDBY_POLL`) and takes over at
//!   the committed position when the holder's connection ends. A lost
//!   connection fails the worker, so it never writes without the lock; it
//!   is restarted and claims again.
//! * **The position moves with the record.** [`Ledger::ingest`] writes the
//!   groups and moves the cursor ([`owlet_soc_bus::cursor::Claim::advance`])
//!   in one PostgreSQL transaction: nothing grouped twice, nothing lost.
//! * **Retry state survives** a restart and a takeover: it is the
//!   `deliveries` rows. A delivery acknowledged by its peer but not yet
//!   recorded when the holder died is sent again (at-least-once, as in
//!   the embedded SOC; receivers dedupe on the notification id).
//! * **Tenant separation**: a ledger reads and writes one schema only; the
//!   record's tables are readable (`SELECT`) by the tenant's own read-only
//!   role only, like its events (a portal reads reports' notification
//!   figures through it).
//! * **Kept as long as their events.** [`Ledger::forget_expired`] forgets
//!   the finished notifications all of whose events are older than the
//!   oldest event the writer's retention left; open ones stay.
//! * Contacts are read from `CONTACTS_ROOT/contacts/TENANT.json` when the
//!   role is given a contacts directory ([`crate::contacts`]); none
//!   otherwise.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use owlet_soc_bus::BusError;
use owlet_soc_bus::cursor::{self, Claim};
use owlet_soc_bus::stored;
use owlet_soc_bus::writer::{connect_postgres, schema_of};
use owlet_soc_store::StoredEvent;
use tokio::sync::Mutex;
use tokio_postgres::{Client, GenericClient};

use super::{Ledger, Ledgers, Target, on_blocking};
use crate::config::Severity;
use crate::contacts::{Contact, Watch};
use crate::error::Result;
use crate::message::Incident;
use crate::notifier::CONSUMER;
use crate::record::{
    Attempt, DUE_JOBS_COLUMNS, DeliveryRow, DueGroup, HistoryQuery, HistoryRow, Job, JobRow, Join,
};

/// The record's tables in `tenant`'s schema (idempotent), readable by the
/// tenant's read-only role like its events. Public so that a reader of the
/// record (soc-report's notification figures) can be tested against the
/// very tables the ledger makes.
pub fn ddl(tenant: &str) -> String {
    let schema = schema_of(tenant);
    let role = owlet_soc_bus::writer::role_of(tenant);
    format!(
        "CREATE TABLE IF NOT EXISTS {schema}.notifications (
    id               bigserial PRIMARY KEY,
    rule             text NOT NULL,
    group_key        text NOT NULL,
    status           text NOT NULL,
    severity         text NOT NULL,
    severity_rank    bigint NOT NULL,
    zone             text NOT NULL,
    opened_us        bigint NOT NULL,
    due_us           bigint NOT NULL,
    held_until_us    bigint,
    composed_us      bigint,
    first_detected_us bigint NOT NULL,
    last_detected_us bigint NOT NULL,
    event_count      bigint NOT NULL DEFAULT 0,
    subject          text,
    body             text
);
CREATE INDEX IF NOT EXISTS notifications_open ON {schema}.notifications (status, due_us);
CREATE TABLE IF NOT EXISTS {schema}.notification_events (
    notification_id bigint NOT NULL REFERENCES {schema}.notifications (id),
    log_id          bigint NOT NULL,
    event_id        text NOT NULL,
    time_us         bigint NOT NULL,
    incident        text NOT NULL,
    PRIMARY KEY (notification_id, log_id)
);
CREATE TABLE IF NOT EXISTS {schema}.deliveries (
    notification_id  bigint NOT NULL REFERENCES {schema}.notifications (id),
    channel          text NOT NULL,
    channel_type     text NOT NULL,
    recipients       text NOT NULL,
    status           text NOT NULL,
    attempts         bigint NOT NULL DEFAULT 0,
    first_attempt_us bigint,
    last_attempt_us  bigint,
    sent_us          bigint,
    delivered_us     bigint,
    next_attempt_us  bigint NOT NULL,
    last_error       text,
    PRIMARY KEY (notification_id, channel)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON {schema}.deliveries (status, next_attempt_us);
REVOKE ALL ON {schema}.notifications, {schema}.notification_events, {schema}.deliveries FROM PUBLIC;
GRANT SELECT ON {schema}.notifications, {schema}.notification_events, {schema}.deliveries TO {role};"
    )
}

/// The tenants of the scaled-out store.
pub struct PgLedgers {
    conninfo: String,
    contacts_root: Option<PathBuf>,
    /// The connection that lists the tenants (no lock on it).
    lister: Mutex<Option<Client>>,
    /// The connections of tenants another process holds, kept for the next
    /// try (a standby tries every few seconds, not with a new connection
    /// each time): at most one per tenant with rules.
    standby: Mutex<HashMap<String, Client>>,
}

impl PgLedgers {
    /// Ledgers on the PostgreSQL of `conninfo`; contacts under
    /// `contacts_root/contacts/` when given.
    pub fn new(conninfo: String, contacts_root: Option<PathBuf>) -> Self {
        Self {
            conninfo,
            contacts_root,
            lister: Mutex::new(None),
            standby: Mutex::new(HashMap::new()),
        }
    }
}

impl Ledgers for PgLedgers {
    type Ledger = PgLedger;

    async fn tenants(&self) -> Result<Vec<String>> {
        let mut lister = self.lister.lock().await;
        if lister.as_ref().is_none_or(Client::is_closed) {
            *lister = Some(connect_postgres(&self.conninfo).await?);
        }
        let Some(pg) = lister.as_ref() else {
            return Ok(Vec::new());
        };
        let listed = async {
            let mut tenants = Vec::new();
            for tenant in stored::tenants(pg).await? {
                if stored::table_exists(pg, &tenant).await? {
                    tenants.push(tenant);
                }
            }
            Ok::<_, BusError>(tenants)
        }
        .await;
        if listed.is_err() && pg.is_closed() {
            *lister = None;
        }
        Ok(listed?)
    }

    async fn open(&self, tenant: &str) -> Result<Option<PgLedger>> {
        let kept = self.standby.lock().await.remove(tenant);
        let pg = match kept.filter(|pg| !pg.is_closed()) {
            Some(pg) => pg,
            None => connect_postgres(&self.conninfo).await?,
        };
        let Some(claim) = cursor::claim(&pg, CONSUMER, tenant).await? else {
            self.standby.lock().await.insert(tenant.to_string(), pg);
            return Ok(None);
        };
        let schema = schema_of(tenant);
        pg.batch_execute(&ddl(tenant))
            .await
            .map_err(BusError::from_postgres)?;
        tracing::info!(%tenant, position = claim.position,
            "notify: holding the tenant's cursor; notifying from there");
        Ok(Some(PgLedger {
            pg,
            claim,
            tenant: tenant.to_string(),
            schema,
            contacts: self
                .contacts_root
                .as_ref()
                .map(|root| Watch::new(root, tenant)),
        }))
    }
}

/// One tenant, held by this process.
pub struct PgLedger {
    /// The connection holding the cursor's lock: every query of the tenant.
    pg: Client,
    claim: Claim,
    tenant: String,
    schema: String,
    /// `None` without a contacts directory.
    contacts: Option<Watch>,
}

fn pg_err(e: tokio_postgres::Error) -> crate::error::NotifyError {
    BusError::from_postgres(e).into()
}

impl PgLedger {
    async fn incidents(&self, id: i64) -> Result<Vec<Incident>> {
        incidents(&self.pg, &self.schema, id).await
    }
}

/// The incidents of notification `id`, in detection order.
async fn incidents(pg: &impl GenericClient, schema: &str, id: i64) -> Result<Vec<Incident>> {
    let rows = pg
        .query(
            &format!(
                "SELECT incident FROM {schema}.notification_events WHERE notification_id = $1 ORDER BY time_us, log_id"
            ),
            &[&id],
        )
        .await
        .map_err(pg_err)?;
    // The record is ours; a row that does not parse is skipped rather than
    // stopping every later notification (as in the SQLite record).
    Ok(rows
        .iter()
        .filter_map(|r| serde_json::from_str(r.get::<_, &str>(0)).ok())
        .collect())
}

impl Ledger for PgLedger {
    async fn events(&mut self, limit: usize) -> Result<Vec<StoredEvent>> {
        let after = i64::try_from(self.claim.position).unwrap_or(i64::MAX);
        Ok(stored::events_after(&self.pg, &self.tenant, after, limit).await?)
    }

    async fn ingest(
        &mut self,
        last_id: i64,
        joins: Vec<Join>,
        zone: &'static str,
        now_us: i64,
    ) -> Result<()> {
        let s = &self.schema;
        let before = self.claim.position;
        let tx = self.pg.transaction().await.map_err(pg_err)?;
        for j in &joins {
            let open = tx
                .query_opt(
                    &format!(
                        "SELECT id FROM {s}.notifications WHERE rule = $1 AND group_key = $2
                         AND status IN ('grouping', 'held') ORDER BY id DESC LIMIT 1"
                    ),
                    &[&j.rule, &j.group_key],
                )
                .await
                .map_err(pg_err)?;
            let id: i64 = match open {
                Some(row) => row.get(0),
                None => tx
                    .query_one(
                        &format!(
                            "INSERT INTO {s}.notifications (rule, group_key, status, severity, severity_rank,
                                zone, opened_us, due_us, first_detected_us, last_detected_us)
                             VALUES ($1, $2, 'grouping', $3, $4, $5, $6, $7, $8, $8) RETURNING id"
                        ),
                        &[
                            &j.rule,
                            &j.group_key,
                            &j.severity.name(),
                            &(j.severity as i64),
                            &zone,
                            &now_us,
                            &j.due_us,
                            &j.incident.detected_us,
                        ],
                    )
                    .await
                    .map_err(pg_err)?
                    .get(0),
            };
            let incident = serde_json::to_string(&j.incident).unwrap_or_default();
            let added = tx
                .execute(
                    &format!(
                        "INSERT INTO {s}.notification_events (notification_id, log_id, event_id, time_us, incident)
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"
                    ),
                    &[&id, &j.log_id, &j.incident.event_id, &j.incident.detected_us, &incident],
                )
                .await
                .map_err(pg_err)?;
            tx.execute(
                &format!(
                    "UPDATE {s}.notifications SET event_count = event_count + $2,
                        first_detected_us = LEAST(first_detected_us, $3),
                        last_detected_us = GREATEST(last_detected_us, $3),
                        severity = CASE WHEN $4 > severity_rank THEN $5 ELSE severity END,
                        severity_rank = GREATEST(severity_rank, $4)
                     WHERE id = $1"
                ),
                &[
                    &id,
                    &(added as i64),
                    &j.incident.detected_us,
                    &(j.severity as i64),
                    &j.severity.name(),
                ],
            )
            .await
            .map_err(pg_err)?;
        }
        // The position moves in this transaction: it commits with the
        // groups or not at all.
        let to = u64::try_from(last_id).unwrap_or(0);
        self.claim.advance(&tx, to).await?;
        if let Err(e) = tx.commit().await {
            self.claim.position = before;
            return Err(pg_err(e));
        }
        Ok(())
    }

    async fn due_groups(&mut self, now_us: i64) -> Result<Vec<DueGroup>> {
        let rows = self
            .pg
            .query(
                &format!(
                    "SELECT id, rule, status, severity, held_until_us FROM {}.notifications
                     WHERE status IN ('grouping', 'held') AND due_us <= $1 ORDER BY id",
                    self.schema
                ),
                &[&now_us],
            )
            .await
            .map_err(pg_err)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: i64 = r.get(0);
            out.push(DueGroup {
                id,
                rule: r.get(1),
                status: r.get(2),
                severity: Severity::parse(r.get(3)).unwrap_or(Severity::Info),
                held_until_us: r.get(4),
                incidents: self.incidents(id).await?,
            });
        }
        Ok(out)
    }

    async fn hold(&mut self, id: i64, until_us: i64) -> Result<()> {
        self.pg
            .execute(
                &format!(
                    "UPDATE {}.notifications SET status = 'held', due_us = $2, held_until_us = $2 WHERE id = $1",
                    self.schema
                ),
                &[&id, &until_us],
            )
            .await
            .map_err(pg_err)?;
        Ok(())
    }

    async fn compose(
        &mut self,
        id: i64,
        subject: String,
        body: String,
        targets: Vec<Target>,
        now_us: i64,
    ) -> Result<()> {
        let s = &self.schema;
        let tx = self.pg.transaction().await.map_err(pg_err)?;
        // Without a channel (its rule was removed from the config) there is
        // nothing to send through: recorded `dropped`, not left `sending`.
        let status = if targets.is_empty() {
            "dropped"
        } else {
            "sending"
        };
        tx.execute(
            &format!(
                "UPDATE {s}.notifications SET status = $5, subject = $2, body = $3, composed_us = $4 WHERE id = $1"
            ),
            &[&id, &subject, &body, &now_us, &status],
        )
        .await
        .map_err(pg_err)?;
        for (channel, kind, recipients) in &targets {
            tx.execute(
                &format!(
                    "INSERT INTO {s}.deliveries (notification_id, channel, channel_type, recipients, status, next_attempt_us)
                     VALUES ($1, $2, $3, $4, 'pending', $5) ON CONFLICT DO NOTHING"
                ),
                &[&id, channel, kind, recipients, &now_us],
            )
            .await
            .map_err(pg_err)?;
        }
        tx.commit().await.map_err(pg_err)
    }

    async fn due_jobs(
        &mut self,
        now_us: i64,
        busy: HashSet<(i64, String)>,
        limit: usize,
    ) -> Result<Vec<Job>> {
        let rows = self
            .pg
            .query(
                &format!(
                    "SELECT {DUE_JOBS_COLUMNS}
                     FROM {s}.deliveries d JOIN {s}.notifications n ON n.id = d.notification_id
                     WHERE d.status IN ('pending', 'retrying') AND d.next_attempt_us <= $1
                     ORDER BY d.next_attempt_us LIMIT $2",
                    s = self.schema
                ),
                &[&now_us, &((limit + busy.len()) as i64)],
            )
            .await
            .map_err(pg_err)?;
        let mut out = Vec::new();
        for r in rows {
            let row: JobRow = (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
                r.get(7),
                r.get(8),
                r.get(9),
                r.get(10),
            );
            if out.len() >= limit || busy.contains(&(row.0, row.1.clone())) {
                continue;
            }
            let incidents = self.incidents(row.0).await?;
            out.push(Job::of_row(&self.tenant, row, incidents));
        }
        Ok(out)
    }

    async fn attempted(
        &mut self,
        job: &Job,
        started_us: i64,
        now_us: i64,
        outcome: Attempt,
    ) -> Result<()> {
        let s = &self.schema;
        let (nid, channel) = (job.notification_id, &job.channel);
        let tx = self.pg.transaction().await.map_err(pg_err)?;
        match &outcome {
            Attempt::Delivered | Attempt::Sent => {
                let (status, delivered) = match outcome {
                    Attempt::Delivered => ("delivered", Some(now_us)),
                    _ => ("sent", None),
                };
                tx.execute(
                    &format!(
                        "UPDATE {s}.deliveries SET status = $3, attempts = attempts + 1,
                            first_attempt_us = COALESCE(first_attempt_us, $4), last_attempt_us = $4,
                            sent_us = $4, delivered_us = $5
                         WHERE notification_id = $1 AND channel = $2"
                    ),
                    &[&nid, channel, &status, &started_us, &delivered],
                )
                .await
                .map_err(pg_err)?;
            }
            Attempt::Failed { error, retry_at_us } => {
                let status = if retry_at_us.is_some() {
                    "retrying"
                } else {
                    "failed"
                };
                tx.execute(
                    &format!(
                        "UPDATE {s}.deliveries SET status = $3, attempts = attempts + 1,
                            first_attempt_us = COALESCE(first_attempt_us, $4), last_attempt_us = $4,
                            next_attempt_us = $5, last_error = $6
                         WHERE notification_id = $1 AND channel = $2"
                    ),
                    &[
                        &nid,
                        channel,
                        &status,
                        &started_us,
                        &retry_at_us.unwrap_or(now_us),
                        error,
                    ],
                )
                .await
                .map_err(pg_err)?;
            }
        }
        let row = tx
            .query_one(
                &format!(
                    "SELECT count(*) FILTER (WHERE status IN ('pending', 'retrying')),
                            count(*) FILTER (WHERE status = 'failed')
                     FROM {s}.deliveries WHERE notification_id = $1"
                ),
                &[&nid],
            )
            .await
            .map_err(pg_err)?;
        let (open, failed): (i64, i64) = (row.get(0), row.get(1));
        if open == 0 {
            let status = if failed > 0 { "failed" } else { "delivered" };
            tx.execute(
                &format!("UPDATE {s}.notifications SET status = $2 WHERE id = $1"),
                &[&nid, &status],
            )
            .await
            .map_err(pg_err)?;
        }
        tx.commit().await.map_err(pg_err)
    }

    async fn failed(&mut self, error: String) -> Result<()> {
        Ok(self.claim.failed(&self.pg, &error).await?)
    }

    async fn next_due(&mut self, now_us: i64) -> Result<Option<i64>> {
        let row = self
            .pg
            .query_one(
                &format!(
                    "SELECT MIN(t) FROM (
                        SELECT MIN(due_us) AS t FROM {s}.notifications WHERE status IN ('grouping', 'held')
                        UNION ALL
                        SELECT MIN(next_attempt_us) FROM {s}.deliveries
                        WHERE status IN ('pending', 'retrying') AND next_attempt_us > $1) AS due",
                    s = self.schema
                ),
                &[&now_us],
            )
            .await
            .map_err(pg_err)?;
        Ok(row.get(0))
    }

    async fn contacts(&mut self) -> Result<Vec<Contact>> {
        if self.contacts.is_none() {
            return Ok(Vec::new());
        }
        on_blocking(&mut self.contacts, |w| Ok(w.current().to_vec())).await
    }

    async fn forget_expired(&mut self) -> Result<usize> {
        // The writer's retention drops whole days of events: what is left
        // starts at the oldest id still stored. Nothing stored: nothing
        // to compare with, so nothing is forgotten.
        let s = &self.schema;
        let oldest: Option<i64> = self
            .pg
            .query_one(&format!("SELECT min(id) FROM {s}.events"), &[])
            .await
            .map_err(pg_err)?
            .get(0);
        let Some(oldest) = oldest else {
            return Ok(0);
        };
        let tx = self.pg.transaction().await.map_err(pg_err)?;
        let gone: Vec<i64> = tx
            .query(
                &format!(
                    "SELECT n.id FROM {s}.notifications n
                      WHERE n.status IN ('delivered', 'failed', 'dropped')
                        AND NOT EXISTS (SELECT 1 FROM {s}.notification_events e
                                         WHERE e.notification_id = n.id AND e.log_id >= $1)"
                ),
                &[&oldest],
            )
            .await
            .map_err(pg_err)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if gone.is_empty() {
            return Ok(0);
        }
        for table in ["deliveries", "notification_events"] {
            tx.execute(
                &format!("DELETE FROM {s}.{table} WHERE notification_id = ANY($1)"),
                &[&gone],
            )
            .await
            .map_err(pg_err)?;
        }
        tx.execute(
            &format!("DELETE FROM {s}.notifications WHERE id = ANY($1)"),
            &[&gone],
        )
        .await
        .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)?;
        Ok(gone.len())
    }
}

/// What a tenant's record holds now, for `owlet-soc notify --status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    /// Notifications still grouping or held by quiet hours.
    pub open: i64,
    /// Deliveries pending or waiting to be tried again.
    pub waiting: i64,
    /// Notifications none of whose deliveries can succeed any more.
    pub failed: i64,
    /// When the newest delivery was confirmed (or sent), UTC µs.
    pub last_delivered_us: Option<i64>,
}

/// `tenant`'s record figures; all zero while the notifier made no record
/// there yet. Read-only.
pub async fn figures(pg: &Client, tenant: &str) -> Result<Figures> {
    let s = schema_of(tenant);
    let row = pg
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM {s}.notifications WHERE status IN ('grouping', 'held')),
                        (SELECT count(*) FROM {s}.deliveries WHERE status IN ('pending', 'retrying')),
                        (SELECT count(*) FROM {s}.notifications WHERE status = 'failed'),
                        (SELECT max(COALESCE(delivered_us, sent_us)) FROM {s}.deliveries)"
            ),
            &[],
        )
        .await;
    match row {
        Ok(r) => Ok(Figures {
            open: r.get(0),
            waiting: r.get(1),
            failed: r.get(2),
            last_delivered_us: r.get(3),
        }),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
            Ok(Figures::default())
        }
        Err(e) => Err(pg_err(e)),
    }
}

/// The notifications of `tenant` in PostgreSQL, newest first, with their
/// deliveries (`owlet-soc notifications --notify-config`): the rows of
/// [`crate::record::history`]. A tenant the writer does not store is an
/// error; one without a record yet has had no notification (empty).
pub async fn history(pg: &Client, tenant: &str, query: &HistoryQuery) -> Result<Vec<HistoryRow>> {
    if !stored::table_exists(pg, tenant).await? {
        return Err(crate::error::NotifyError::Config(format!(
            "tenant {tenant:?} has no events in this PostgreSQL (no table {}.events): check the name with `owlet-soc writer --status`",
            schema_of(tenant)
        )));
    }
    let s = schema_of(tenant);
    let table = format!("{s}.deliveries");
    let ready: bool = pg
        .query_one("SELECT to_regclass($1::text) IS NOT NULL", &[&table])
        .await
        .map_err(pg_err)?
        .get(0);
    if !ready {
        return Ok(Vec::new());
    }
    let limit = if query.limit == 0 { 100 } else { query.limit } as i64;
    let rows = pg
        .query(
            &format!(
                "SELECT id, rule, status, severity, subject, body, event_count, first_detected_us,
                        composed_us, held_until_us
                 FROM {s}.notifications WHERE first_detected_us >= $1 ORDER BY id DESC LIMIT $2"
            ),
            &[&query.since_us.unwrap_or(i64::MIN), &limit],
        )
        .await
        .map_err(pg_err)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id: i64 = r.get(0);
        let event_ids = pg
            .query(
                &format!(
                    "SELECT event_id FROM {s}.notification_events WHERE notification_id = $1 ORDER BY time_us, log_id"
                ),
                &[&id],
            )
            .await
            .map_err(pg_err)?
            .iter()
            .map(|e| e.get(0))
            .collect();
        let deliveries = pg
            .query(
                &format!(
                    "SELECT channel, channel_type, recipients, status, attempts, first_attempt_us, sent_us,
                            delivered_us, last_error
                     FROM {s}.deliveries WHERE notification_id = $1 ORDER BY channel"
                ),
                &[&id],
            )
            .await
            .map_err(pg_err)?
            .iter()
            .map(|d| DeliveryRow {
                channel: d.get(0),
                channel_type: d.get(1),
                recipients: d.get(2),
                status: d.get(3),
                attempts: d.get(4),
                first_attempt_us: d.get(5),
                sent_us: d.get(6),
                delivered_us: d.get(7),
                last_error: d.get(8),
            })
            .collect();
        out.push(HistoryRow {
            notification_id: id,
            rule: r.get(1),
            status: r.get(2),
            severity: r.get(3),
            subject: r.get(4),
            body: r.get(5),
            event_count: r.get(6),
            event_ids,
            first_detected_us: r.get(7),
            composed_us: r.get(8),
            held_until_us: r.get(9),
            deliveries,
        });
    }
    Ok(out)
}

/// Runs the scaled-out notifier until `shutdown` (`owlet-soc notify`):
/// creates `owlet_bus.cursors` if needed, then [`crate::supervise`] on
/// this PostgreSQL. `state_dir` keeps the SNMP engine's boot counter.
pub async fn run(
    conninfo: String,
    contacts_root: Option<PathBuf>,
    config: crate::NotifyConfig,
    state_dir: PathBuf,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<()> {
    config.validate()?;
    let pg = connect_postgres(&conninfo).await?;
    cursor::prepare(&pg).await.map_err(|e| {
        BusError::Other(format!(
            "creating owlet_bus.cursors: {e} (connect as the writer's PostgreSQL role: it owns the table and the tenants' schemas)"
        ))
    })?;
    drop(pg);
    crate::supervise(
        std::sync::Arc::new(PgLedgers::new(conninfo, contacts_root)),
        config,
        &state_dir,
        shutdown,
    )
    .await
}
