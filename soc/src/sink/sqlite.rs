//! The embedded default sink: a control database (`soc.db`: agents and
//! certificates) and the tenants' event logs beside it (`owlet-soc-store`:
//! `tenants/TENANT/events.db`, one file per tenant).
//!
//! Durability and exactly once live in the tenant log (the control database
//! runs `synchronous = NORMAL`: it holds status, not acknowledged data): an agent's events and
//! its high-water mark are committed in one transaction of its tenant's file
//! (`synchronous = FULL`), before `store_batches` returns. The control
//! database then records what the batch said about the agent (last seen,
//! heartbeat, liveness, a mirror of the mark for `owlet-soc agents`). If the
//! SOC dies between the two commits, the events are stored and the agent's
//! resend is dropped as duplicates; at worst an `agent_recovered` alert is
//! recorded twice.
//!
//! Alerts the SOC raises about an agent (silent, stopped, recovered,
//! certificate revoked) and self-test records go to the agent's tenant log
//! outside its sequence (seq NULL), written before the control flag that
//! stops them repeating: a crash may repeat such an alert, never lose it.
//!
//! Control layout (also read by `owlet-soc agents`, see `crate::query`):
//! * `agents`: one row per (tenant, agent id) with version, profile, host,
//!   time zone, first/last seen, last heartbeat, clock offset, connection and
//!   liveness state, a mirror of its high-water mark, duplicates dropped
//!   (events), last self-test, serial and expiry of the certificate it last
//!   connected with;
//! * `revoked_certs`: the serials the CRL in force revokes (replaced whole
//!   on each CRL load), so the read side can tell a revoked agent.
//!
//! A `soc.db` of an earlier release kept every event in its own `events`
//! table; [`SqliteSink::open`] moves them into the tenants' logs (see
//! `super::legacy`).

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use owlet_proto::v1::{Event, Hello};
use owlet_soc_store::liveness::Liveness;
use owlet_soc_store::{Store, Writers};
use owlet_tls::{CertInfo, Identity, RevokedCert};
use rusqlite::{Connection, OptionalExtension, params};

use super::{LivenessChange, Prepared, Sink, SinkError, Stored};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS agents (
    id                   INTEGER PRIMARY KEY,
    tenant               TEXT NOT NULL,
    agent_id             TEXT NOT NULL,
    version              TEXT NOT NULL DEFAULT '',
    hw_profile           TEXT NOT NULL DEFAULT '',
    hostname             TEXT NOT NULL DEFAULT '',
    time_zone            TEXT NOT NULL DEFAULT '',
    os                   TEXT NOT NULL DEFAULT '',
    peer                 TEXT NOT NULL DEFAULT '',
    first_seen_us        INTEGER NOT NULL,
    last_seen_us         INTEGER NOT NULL,
    last_heartbeat_us    INTEGER,
    clock_offset_ms      INTEGER NOT NULL DEFAULT 0,
    -- open streams (an agent can reconnect before its old stream times out)
    connected            INTEGER NOT NULL DEFAULT 0,
    silent               INTEGER NOT NULL DEFAULT 0,
    -- mirror of the high-water mark kept in the tenant's log
    acked_seq            INTEGER NOT NULL DEFAULT 0,
    -- events received at or below acked_seq, dropped as duplicates
    duplicates_dropped   INTEGER NOT NULL DEFAULT 0,
    -- when the agent last stored a self-test record (`owlet selftest`)
    last_selftest_us     INTEGER,
    -- what it said: 'pass' or 'FAIL step, step'
    last_selftest_result TEXT,
    -- 1 when the agent's last heartbeat said it was stopping (a planned
    -- stop: its silence is `agent_stopped`, not `agent_silent`)
    stopping             INTEGER NOT NULL DEFAULT 0,
    -- the certificate of its last connection: serial (owlet_tls::serial_hex), expiry
    cert_serial          TEXT,
    cert_not_after_us    INTEGER,
    UNIQUE (tenant, agent_id)
);
CREATE TABLE IF NOT EXISTS revoked_certs (
    serial      TEXT PRIMARY KEY,
    revoked_us  INTEGER NOT NULL,
    reason      TEXT
);
";

pub struct SqliteSink {
    db: Connection,
    writers: Writers,
    /// Agents' time zones (from their hello), stored with each event.
    zones: HashMap<Identity, String>,
}

impl SqliteSink {
    /// Opens (creating if needed) the control database at `path` and the
    /// store beside it, moving an earlier release's events into the
    /// tenants' logs. Every agent starts disconnected: a restarted SOC has
    /// no streams yet.
    pub fn open(path: &Path) -> Result<Self, SinkError> {
        let db = Connection::open(path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        // Not FULL: nothing acknowledged rests on this file (the marks that
        // make exactly-once live in the tenants' logs, which sync every
        // commit). What it holds is status (last seen, heartbeats, the
        // mark's mirror) and registrations an agent's next hello rewrites;
        // WAL with NORMAL stays consistent across a crash and may lose only
        // the last moments of that status on power loss. It saves an fsync
        // per group commit, on the path the agents' acks wait on.
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.busy_timeout(Duration::from_secs(5))?;
        db.execute_batch(SCHEMA)?;
        migrate(&db)?;
        db.execute("UPDATE agents SET connected = 0", [])?;
        let store = Store::open(&store_root(path))?;
        let mut writers = Writers::new(store);
        super::legacy::import(&db, &mut writers)?;
        // Every tenant's file is brought to this release's schema now (a
        // writer migrates at open), so the portal, reports and `query`,
        // which read without migrating, never meet an older file while
        // this SOC serves. One tenant's unusable file does not keep the
        // others from being served: it is reported, and its own batches
        // are refused with the reason as before.
        for tenant in writers.store().tenants()? {
            if let Err(e) = writers.store().writer(&tenant) {
                tracing::error!(%tenant, error = %e, "cannot open the tenant's event store to migrate it; its batches are refused until it opens");
            }
        }
        Ok(Self {
            db,
            writers,
            zones: HashMap::new(),
        })
    }
}

/// The store's directory: the control database's directory.
pub fn store_root(control: &Path) -> std::path::PathBuf {
    control
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// Columns added after the first release; `CREATE TABLE IF NOT EXISTS` does
/// not add them to an existing database.
const ADDED_AGENT_COLUMNS: &[(&str, &str)] = &[
    (
        "duplicates_dropped",
        "ALTER TABLE agents ADD COLUMN duplicates_dropped INTEGER NOT NULL DEFAULT 0",
    ),
    (
        "last_selftest_us",
        "ALTER TABLE agents ADD COLUMN last_selftest_us INTEGER",
    ),
    (
        "stopping",
        "ALTER TABLE agents ADD COLUMN stopping INTEGER NOT NULL DEFAULT 0",
    ),
    (
        "cert_serial",
        "ALTER TABLE agents ADD COLUMN cert_serial TEXT",
    ),
    (
        "cert_not_after_us",
        "ALTER TABLE agents ADD COLUMN cert_not_after_us INTEGER",
    ),
    (
        "last_selftest_result",
        "ALTER TABLE agents ADD COLUMN last_selftest_result TEXT",
    ),
];

/// Brings a database written by an older owlet-soc up to [`SCHEMA`].
fn migrate(db: &Connection) -> Result<(), SinkError> {
    for (column, alter) in ADDED_AGENT_COLUMNS {
        if !crate::query::has_column(db, "agents", column)? {
            db.execute(alter, [])?;
        }
    }
    Ok(())
}

/// The agent's row id, control mark and liveness flag.
fn agent_row(db: &Connection, who: &Identity) -> Result<Option<(i64, u64, bool)>, SinkError> {
    Ok(db
        .query_row(
            "SELECT id, acked_seq, silent FROM agents WHERE tenant = ?1 AND agent_id = ?2",
            params![who.tenant, who.agent_id],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, bool>(2)?,
                ))
            },
        )
        .optional()?)
}

fn micros(t: SystemTime) -> i64 {
    owlet_proto::timestamp_micros(&owlet_proto::timestamp(t))
}

/// What one batch said about its agent, for the control database.
struct Seen {
    row: i64,
    heartbeat: bool,
    stopping: bool,
    recovered: bool,
}

impl SqliteSink {
    fn zone(&self, who: &Identity) -> Result<String, SinkError> {
        if let Some(zone) = self.zones.get(who) {
            return Ok(zone.clone());
        }
        Ok(self
            .db
            .query_row(
                "SELECT time_zone FROM agents WHERE tenant = ?1 AND agent_id = ?2",
                params![who.tenant, who.agent_id],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or_default())
    }

    /// Stores SOC records about `who` (outside its sequence), durably.
    fn store_soc_events(&mut self, who: &Identity, events: &[Event]) -> Result<(), SinkError> {
        let zone = self.zone(who)?;
        self.writers.get(&who.tenant)?.append(
            &[owlet_soc_store::Batch {
                agent: &who.agent_id,
                zone: &zone,
                events,
                sequenced: false,
            }],
            SystemTime::now(),
        )?;
        Ok(())
    }

    /// Stores the batches of one tenant in one transaction of its log.
    fn store_tenant(
        &mut self,
        tenant: &str,
        batches: &[&(Identity, Prepared)],
        seen: &[Seen],
        now: SystemTime,
    ) -> Result<Vec<owlet_soc_store::Appended>, SinkError> {
        let mut zones = Vec::with_capacity(batches.len());
        for (who, _) in batches {
            zones.push(self.zone(who)?);
        }
        let recovered: Vec<(usize, Event)> = batches
            .iter()
            .zip(seen)
            .enumerate()
            .filter(|(_, (_, s))| s.recovered)
            .map(|(i, ((who, _), _))| {
                let alert =
                    Liveness::Recovered.alert(&who.to_string(), Duration::ZERO, Duration::ZERO);
                (i, alert)
            })
            .collect();
        let recovered: Vec<(usize, owlet_soc_store::Row)> = recovered
            .iter()
            .map(|(i, alert)| (*i, owlet_soc_store::Row::of(alert)))
            .collect();
        let mut store: Vec<owlet_soc_store::RowBatch> = batches
            .iter()
            .zip(&zones)
            .map(|((who, batch), zone)| owlet_soc_store::RowBatch {
                agent: &who.agent_id,
                zone,
                rows: &batch.rows,
                sequenced: true,
            })
            .collect();
        for (i, alert) in &recovered {
            store.push(owlet_soc_store::RowBatch {
                agent: &batches[*i].0.agent_id,
                zone: &zones[*i],
                rows: std::slice::from_ref(alert),
                sequenced: false,
            });
        }
        let mut appended = self.writers.get(tenant)?.append_rows(&store, now)?;
        appended.truncate(batches.len());
        Ok(appended)
    }
}

impl Sink for SqliteSink {
    fn agent_connected(
        &mut self,
        who: &Identity,
        hello: &Hello,
        clock_offset_ms: i64,
        peer: &str,
        cert: &CertInfo,
    ) -> Result<u64, SinkError> {
        let now = micros(SystemTime::now());
        self.db.execute(
            "INSERT INTO agents (tenant, agent_id, version, hw_profile, hostname, time_zone, os, peer,
                                 first_seen_us, last_seen_us, clock_offset_ms, connected,
                                 cert_serial, cert_not_after_us)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10, 1, ?11, ?12)
             ON CONFLICT (tenant, agent_id) DO UPDATE SET
                version = excluded.version, hw_profile = excluded.hw_profile,
                hostname = excluded.hostname, time_zone = excluded.time_zone, os = excluded.os,
                peer = excluded.peer, last_seen_us = excluded.last_seen_us,
                clock_offset_ms = excluded.clock_offset_ms, connected = connected + 1,
                cert_serial = excluded.cert_serial, cert_not_after_us = excluded.cert_not_after_us",
            params![
                who.tenant,
                who.agent_id,
                hello.agent_version,
                hello.hw_profile,
                hello.hostname,
                hello.time_zone,
                hello.os,
                peer,
                now,
                clock_offset_ms,
                cert.serial,
                micros(cert.not_after)
            ],
        )?;
        self.zones.insert(who.clone(), hello.time_zone.clone());
        let control = agent_row(&self.db, who)?.map_or(0, |(_, acked, _)| acked);
        let log = self.writers.get(&who.tenant)?;
        // A mark only the control database knows (an older release's, whose
        // events were stored before the tenants' logs existed) still holds.
        log.raise_mark(&who.agent_id, control)?;
        Ok(log.acked_seq(&who.agent_id))
    }

    fn set_revoked(&mut self, revoked: &[RevokedCert]) -> Result<Vec<Identity>, SinkError> {
        // Agents whose last certificate was not revoked before this CRL.
        let before: Vec<(String, String, String)> = {
            let mut stmt = self.db.prepare(
                "SELECT tenant, agent_id, cert_serial FROM agents
                 WHERE cert_serial IS NOT NULL
                   AND cert_serial NOT IN (SELECT serial FROM revoked_certs)",
            )?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?
        };
        let mut newly = Vec::new();
        for (tenant, agent_id, serial) in before {
            let Some(cert) = revoked.iter().find(|c| c.serial == serial) else {
                continue;
            };
            let who = Identity { tenant, agent_id };
            self.store_soc_events(&who, &[super::revoked_alert(&who, cert)])?;
            newly.push(who);
        }
        let tx = self.db.transaction()?;
        tx.execute("DELETE FROM revoked_certs", [])?;
        {
            let mut insert = tx.prepare(
                "INSERT OR REPLACE INTO revoked_certs (serial, revoked_us, reason) VALUES (?1, ?2, ?3)",
            )?;
            for cert in revoked {
                insert.execute(params![cert.serial, micros(cert.revoked_at), cert.reason])?;
            }
        }
        tx.commit()?;
        Ok(newly)
    }

    fn store_batches(
        &mut self,
        batches: &[(Identity, Prepared)],
    ) -> Vec<Result<Stored, SinkError>> {
        let now = SystemTime::now();
        let mut results: Vec<Option<Result<Stored, SinkError>>> =
            (0..batches.len()).map(|_| None).collect();
        // What each batch says about its agent (above the mark only).
        let mut seen = Vec::with_capacity(batches.len());
        for (i, (who, batch)) in batches.iter().enumerate() {
            let row = match agent_row(&self.db, who) {
                Ok(Some(row)) => row,
                Ok(None) => {
                    results[i] = Some(Err(SinkError::Failed(format!(
                        "batch from {who} before its hello was recorded"
                    ))));
                    seen.push(None);
                    continue;
                }
                Err(e) => {
                    results[i] = Some(Err(e));
                    seen.push(None);
                    continue;
                }
            };
            let mark = match self.writers.get(&who.tenant) {
                Ok(log) => log.acked_seq(&who.agent_id),
                Err(e) => {
                    results[i] = Some(Err(e.into()));
                    seen.push(None);
                    continue;
                }
            };
            // The last heartbeat of the batch decides: a goodbye, or alive.
            let last_status = batch
                .rows
                .iter()
                .rev()
                .filter(|r| r.seq() > mark)
                .find_map(|r| {
                    let c = r.columns();
                    (c.kind == "agent_status").then_some(c.state == Some("stopping"))
                });
            seen.push(Some(Seen {
                row: row.0,
                heartbeat: last_status.is_some(),
                stopping: last_status.unwrap_or(false),
                recovered: row.2 && last_status.is_some(),
            }));
        }
        // One transaction per tenant, batches in arrival order.
        let mut tenants: Vec<&str> = Vec::new();
        for ((who, _), s) in batches.iter().zip(&seen) {
            if s.is_some() && !tenants.contains(&who.tenant.as_str()) {
                tenants.push(&who.tenant);
            }
        }
        let mut appended: Vec<Option<owlet_soc_store::Appended>> = vec![None; batches.len()];
        for tenant in tenants {
            let index: Vec<usize> = (0..batches.len())
                .filter(|&i| batches[i].0.tenant == tenant && seen[i].is_some())
                .collect();
            let group: Vec<&(Identity, Prepared)> = index.iter().map(|&i| &batches[i]).collect();
            // Rows of `seen` of this group, moved out and back.
            let group_seen: Vec<Seen> = index
                .iter()
                .map(|&i| seen[i].take().expect("checked"))
                .collect();
            match self.store_tenant(tenant, &group, &group_seen, now) {
                Ok(done) => {
                    for ((&i, s), a) in index.iter().zip(group_seen).zip(done) {
                        seen[i] = Some(s);
                        appended[i] = Some(a);
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    for &i in &index {
                        results[i] = Some(Err(SinkError::Failed(message.clone())));
                    }
                }
            }
        }
        if let Err(e) = self.note_batches(batches, &seen, &appended, now) {
            let message = e.to_string();
            for (i, a) in appended.iter().enumerate() {
                if a.is_some() {
                    results[i] = Some(Err(SinkError::Failed(message.clone())));
                }
            }
        }
        results
            .into_iter()
            .zip(batches.iter().zip(seen.iter().zip(appended)))
            .map(|(result, ((who, _), (s, a)))| match (result, s, a) {
                (Some(r), _, _) => r,
                (None, Some(s), Some(a)) => Ok(Stored {
                    acked_seq: a.acked_seq,
                    change: s.recovered.then(|| LivenessChange {
                        agent: who.clone(),
                        silent: false,
                        planned: false,
                    }),
                }),
                _ => Err(SinkError::Failed("the batch was not stored".into())),
            })
            .collect()
    }

    fn store_self_test(&mut self, who: &Identity, event: &Event) -> Result<(), SinkError> {
        let now = micros(SystemTime::now());
        let (agent, _, _) = agent_row(&self.db, who)?.ok_or_else(|| {
            SinkError::Failed(format!(
                "self-test from {who} before its hello was recorded"
            ))
        })?;
        // seq 0 in the body and NULL in the row: the record is outside the
        // agent's sequence, and the high-water mark is not read or moved.
        let event = Event {
            seq: 0,
            ..event.clone()
        };
        self.store_soc_events(who, std::slice::from_ref(&event))?;
        // Only the operation test's record says how the local steps went.
        self.db.execute(
            "UPDATE agents SET last_selftest_us = ?2, last_seen_us = ?2,
                    last_selftest_result = COALESCE(?3, last_selftest_result) WHERE id = ?1",
            params![agent, now, crate::query::self_test_result(&event)],
        )?;
        Ok(())
    }

    fn enforce_retention(
        &mut self,
        policy_of: &(dyn Fn(&str) -> owlet_soc_store::Policy + Send),
        now: SystemTime,
    ) -> Result<Vec<(String, owlet_soc_store::Deletion)>, SinkError> {
        let mut deleted = Vec::new();
        for tenant in self.writers.store().tenants()? {
            let policy = policy_of(&tenant);
            if policy == owlet_soc_store::Policy::default() {
                continue;
            }
            let done = self.writers.get(&tenant)?.enforce(&policy, now)?;
            deleted.extend(done.into_iter().map(|d| (tenant.clone(), d)));
        }
        Ok(deleted)
    }

    fn agent_disconnected(&mut self, who: &Identity) -> Result<(), SinkError> {
        self.db.execute(
            "UPDATE agents SET connected = MAX(connected - 1, 0), last_seen_us = ?3 WHERE tenant = ?1 AND agent_id = ?2",
            params![who.tenant, who.agent_id, micros(SystemTime::now())],
        )?;
        Ok(())
    }

    fn check_liveness(
        &mut self,
        now: SystemTime,
        silent_after: Duration,
    ) -> Result<Vec<LivenessChange>, SinkError> {
        let now_us = micros(now);
        let cutoff = now_us - i64::try_from(silent_after.as_micros()).unwrap_or(i64::MAX);
        type Overdue = (i64, String, String, i64, bool);
        let overdue: Vec<Overdue> = {
            // An agent that never sent a heartbeat is judged from when it was
            // first seen.
            let mut stmt = self.db.prepare(
                "SELECT id, tenant, agent_id, COALESCE(last_heartbeat_us, first_seen_us), stopping
                 FROM agents
                 WHERE silent = 0 AND COALESCE(last_heartbeat_us, first_seen_us) < ?1",
            )?;
            stmt.query_map(params![cutoff], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<Result<_, _>>()?
        };
        let mut changes = Vec::new();
        for (row, tenant, agent_id, last, stopping) in overdue {
            let who = Identity { tenant, agent_id };
            let quiet = Duration::from_micros(u64::try_from(now_us - last).unwrap_or(0));
            let alert = Liveness::overdue(stopping).alert(&who.to_string(), quiet, silent_after);
            // The alert first: a crash in between repeats it, never loses it.
            self.store_soc_events(&who, &[alert])?;
            self.db
                .execute("UPDATE agents SET silent = 1 WHERE id = ?1", params![row])?;
            changes.push(LivenessChange {
                agent: who,
                silent: true,
                planned: stopping,
            });
        }
        Ok(changes)
    }
}

impl SqliteSink {
    /// Records in the control database what the stored batches said about
    /// their agents, in one transaction.
    fn note_batches(
        &mut self,
        batches: &[(Identity, Prepared)],
        seen: &[Option<Seen>],
        appended: &[Option<owlet_soc_store::Appended>],
        now: SystemTime,
    ) -> Result<(), SinkError> {
        let now = micros(now);
        let tx = self.db.transaction()?;
        for (((_, _), s), a) in batches.iter().zip(seen).zip(appended) {
            let (Some(s), Some(a)) = (s, a) else { continue };
            tx.execute(
                "UPDATE agents SET acked_seq = MAX(acked_seq, ?2), last_seen_us = ?3,
                        last_heartbeat_us = CASE WHEN ?4 THEN ?3 ELSE last_heartbeat_us END,
                        silent = CASE WHEN ?4 THEN 0 ELSE silent END,
                        stopping = CASE WHEN ?4 THEN ?6 ELSE stopping END,
                        duplicates_dropped = duplicates_dropped + ?5
                 WHERE id = ?1",
                params![
                    s.row,
                    a.acked_seq as i64,
                    now,
                    s.heartbeat,
                    a.duplicates as i64,
                    s.stopping
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// A certificate for tests: serial "0a", valid for 30 more days.
#[cfg(test)]
pub(crate) fn test_cert() -> CertInfo {
    CertInfo {
        serial: "0a".into(),
        not_before: SystemTime::now(),
        not_after: SystemTime::now() + Duration::from_secs(30 * 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use owlet_proto::v1::{AgentStatus, Alert, Batch, event::Kind};

    fn event(seq: u64, status: bool) -> Event {
        let kind = if status {
            Kind::AgentStatus(AgentStatus::default())
        } else {
            Kind::Alert(Alert::default())
        };
        Event {
            seq,
            time: Some(owlet_proto::now()),
            kind: Some(kind),
        }
    }

    fn batch(seqs: &[u64]) -> Batch {
        Batch {
            first_seq: seqs[0],
            last_seq: *seqs.last().unwrap(),
            events: seqs.iter().map(|&s| event(s, false)).collect(),
        }
    }

    /// Every stored event of every tenant, in log order.
    fn all_stored(sink: &SqliteSink) -> Vec<owlet_soc_store::StoredEvent> {
        let store = sink.writers.store();
        store
            .tenants()
            .unwrap()
            .iter()
            .flat_map(|t| store.reader(t).unwrap().read_after(0, 1_000_000).unwrap())
            .collect()
    }

    fn count(sink: &SqliteSink) -> i64 {
        all_stored(sink).iter().filter(|e| e.seq.is_some()).count() as i64
    }

    fn store(sink: &mut SqliteSink, batches: &[(Identity, Batch)]) -> Vec<Stored> {
        let batches: Vec<(Identity, Prepared)> = batches
            .iter()
            .map(|(who, b)| (who.clone(), Prepared::of(b)))
            .collect();
        sink.store_batches(&batches)
            .into_iter()
            .map(|r| r.unwrap())
            .collect()
    }

    /// Names of the alerts stored outside agents' sequences.
    fn soc_alerts(sink: &SqliteSink) -> Vec<String> {
        all_stored(sink)
            .into_iter()
            .filter(|e| e.seq.is_none())
            .filter_map(|e| match e.event.and_then(|e| e.kind) {
                Some(Kind::Alert(a)) => Some(a.name),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn duplicates_are_dropped_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("soc.db");
        let who = Identity::new("acme", "s1").unwrap();
        let mut sink = SqliteSink::open(&path).unwrap();
        assert_eq!(
            sink.agent_connected(&who, &Hello::default(), 0, "p", &test_cert())
                .unwrap(),
            0
        );
        let stored = store(
            &mut sink,
            &[
                (who.clone(), batch(&[1, 2, 3])),
                (who.clone(), batch(&[2, 3, 4])),
            ],
        );
        assert_eq!(
            stored.iter().map(|s| s.acked_seq).collect::<Vec<_>>(),
            vec![3, 4]
        );
        drop(sink);
        let mut sink = SqliteSink::open(&path).unwrap();
        assert_eq!(
            sink.agent_connected(&who, &Hello::default(), 0, "p", &test_cert())
                .unwrap(),
            4
        );
        assert_eq!(
            store(&mut sink, &[(who.clone(), batch(&[1, 2, 3, 4, 5]))])[0].acked_seq,
            5
        );
        assert_eq!(count(&sink), 5);
    }

    fn test_store(control: &Path) -> Store {
        Store::open(&store_root(control)).unwrap()
    }

    fn duplicates_dropped(path: &Path) -> u64 {
        let db = crate::query::open_read_only(path).unwrap();
        let rows = crate::query::agents(&db, &test_store(path)).unwrap();
        assert_eq!(rows.len(), 1);
        // `owlet-soc agents --json` prints these rows; scripts and the e2e
        // tests read this exact key.
        let json = serde_json::to_value(&rows[0]).unwrap();
        json["duplicates_dropped"].as_u64().unwrap()
    }

    #[test]
    fn dropped_duplicates_are_counted_per_agent_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("soc.db");
        let who = Identity::new("acme", "s1").unwrap();
        let other = Identity::new("acme", "s2").unwrap();
        let mut sink = SqliteSink::open(&path).unwrap();
        for agent in [&who, &other] {
            sink.agent_connected(agent, &Hello::default(), 0, "p", &test_cert())
                .unwrap();
        }
        store(
            &mut sink,
            &[
                (who.clone(), batch(&[1, 2, 3])),
                (who.clone(), batch(&[2, 3, 4])),
                (other.clone(), batch(&[1, 2])),
            ],
        );
        drop(sink);
        // A resend after a reconnect to a restarted SOC: 1..=4 are stored.
        let mut sink = SqliteSink::open(&path).unwrap();
        sink.agent_connected(&who, &Hello::default(), 0, "p", &test_cert())
            .unwrap();
        store(&mut sink, &[(who.clone(), batch(&[1, 2, 3, 4, 5]))]);
        assert_eq!(count(&sink), 7, "duplicates were stored");
        let per_agent: Vec<(String, i64)> = sink
            .db
            .prepare("SELECT agent_id, duplicates_dropped FROM agents ORDER BY agent_id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(per_agent, vec![("s1".into(), 2 + 4), ("s2".into(), 0)]);
        drop(sink);
        let db = crate::query::open_read_only(&path).unwrap();
        let json =
            serde_json::to_value(crate::query::agents(&db, &test_store(&path)).unwrap()).unwrap();
        assert_eq!(json[0]["duplicates_dropped"], 6, "{json}");
    }

    /// A database of an older owlet-soc: the first release's agents table
    /// plus `columns`, with agent acme/s1 stored up to seq 3.
    fn old_database(path: &Path, columns: &str) {
        let old = Connection::open(path).unwrap();
        old.execute_batch(&format!(
            "CREATE TABLE agents (
                id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, agent_id TEXT NOT NULL,
                version TEXT NOT NULL DEFAULT '', hw_profile TEXT NOT NULL DEFAULT '',
                hostname TEXT NOT NULL DEFAULT '', time_zone TEXT NOT NULL DEFAULT '',
                os TEXT NOT NULL DEFAULT '', peer TEXT NOT NULL DEFAULT '',
                first_seen_us INTEGER NOT NULL, last_seen_us INTEGER NOT NULL,
                last_heartbeat_us INTEGER, clock_offset_ms INTEGER NOT NULL DEFAULT 0,
                connected INTEGER NOT NULL DEFAULT 0, silent INTEGER NOT NULL DEFAULT 0,
                acked_seq INTEGER NOT NULL DEFAULT 0, {columns} UNIQUE (tenant, agent_id));
             INSERT INTO agents (tenant, agent_id, first_seen_us, last_seen_us, acked_seq)
                VALUES ('acme', 's1', 1, 1, 3);"
        ))
        .unwrap();
    }

    #[test]
    fn an_older_database_gains_the_duplicates_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("soc.db");
        // The agents table as the first release wrote it.
        old_database(&path, "");
        // Before a serving SOC migrated it, the read side shows 0.
        assert_eq!(duplicates_dropped(&path), 0);
        let who = Identity::new("acme", "s1").unwrap();
        let mut sink = SqliteSink::open(&path).unwrap();
        assert_eq!(
            sink.agent_connected(&who, &Hello::default(), 0, "p", &test_cert())
                .unwrap(),
            3
        );
        store(&mut sink, &[(who, batch(&[3, 4]))]);
        drop(sink);
        assert_eq!(duplicates_dropped(&path), 1);
    }

    #[test]
    fn a_self_test_is_stored_outside_the_agents_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let who = Identity::new("acme", "s1").unwrap();
        let mut sink = SqliteSink::open(&dir.path().join("soc.db")).unwrap();
        sink.agent_connected(&who, &Hello::default(), 0, "p", &test_cert())
            .unwrap();
        store(&mut sink, &[(who.clone(), batch(&[1, 2]))]);
        // A self-test event whose seq would otherwise be above the mark.
        sink.store_self_test(&who, &event(9, false)).unwrap();
        assert_eq!(
            sink.agent_connected(&who, &Hello::default(), 0, "p", &test_cert())
                .unwrap(),
            2,
            "a self-test moved the high-water mark"
        );
        // The running agent's next events are stored, not dropped.
        let stored = store(&mut sink, &[(who.clone(), batch(&[3, 4, 5, 6, 7, 8, 9]))]);
        assert_eq!(stored[0].acked_seq, 9);
        assert_eq!(count(&sink), 9);
        let selftests = all_stored(&sink).iter().filter(|e| e.seq.is_none()).count();
        let last: Option<i64> = sink
            .db
            .query_row("SELECT last_selftest_us FROM agents", [], |r| r.get(0))
            .unwrap();
        assert_eq!(selftests, 1);
        assert!(last.is_some());
    }

    #[test]
    fn silence_and_recovery_raise_alerts_once() {
        let dir = tempfile::tempdir().unwrap();
        let who = Identity::new("acme", "s1").unwrap();
        let mut sink = SqliteSink::open(&dir.path().join("soc.db")).unwrap();
        sink.agent_connected(&who, &Hello::default(), 0, "p", &test_cert())
            .unwrap();
        let later = SystemTime::now() + Duration::from_secs(120);
        let changes = sink.check_liveness(later, Duration::from_secs(60)).unwrap();
        assert_eq!(
            changes,
            vec![LivenessChange {
                agent: who.clone(),
                silent: true,
                planned: false,
            }]
        );
        assert!(
            sink.check_liveness(later, Duration::from_secs(60))
                .unwrap()
                .is_empty()
        );
        let hb = Batch {
            first_seq: 1,
            last_seq: 1,
            events: vec![event(1, true)],
        };
        let stored = store(&mut sink, &[(who.clone(), hb)]);
        assert_eq!(
            stored[0].change,
            Some(LivenessChange {
                agent: who,
                silent: false,
                planned: false,
            })
        );
        assert_eq!(soc_alerts(&sink), ["agent_silent", "agent_recovered"]);
    }

    fn cert(serial: &str) -> CertInfo {
        CertInfo {
            serial: serial.into(),
            ..test_cert()
        }
    }

    fn revoked(serial: &str) -> RevokedCert {
        RevokedCert {
            serial: serial.into(),
            revoked_at: SystemTime::now(),
            reason: Some("KeyCompromise".into()),
        }
    }

    #[test]
    fn a_revoked_certificate_marks_its_agent_once_until_it_connects_with_another() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("soc.db");
        let (who, other) = (
            Identity::new("acme", "s1").unwrap(),
            Identity::new("acme", "s2").unwrap(),
        );
        let mut sink = SqliteSink::open(&path).unwrap();
        sink.agent_connected(&who, &Hello::default(), 0, "p", &cert("0a"))
            .unwrap();
        sink.agent_connected(&other, &Hello::default(), 0, "p", &cert("0b"))
            .unwrap();
        assert_eq!(
            sink.set_revoked(&[revoked("0a")]).unwrap(),
            vec![who.clone()]
        );
        // The same CRL again (a SIGHUP): no second alert.
        assert!(sink.set_revoked(&[revoked("0a")]).unwrap().is_empty());
        let rows = |path: &Path| {
            crate::query::agents(
                &crate::query::open_read_only(path).unwrap(),
                &test_store(path),
            )
            .unwrap()
        };
        let now = rows(&path);
        assert_eq!(
            (now[0].state.as_str(), now[0].cert_revoked),
            ("revoked", true)
        );
        assert_eq!(now[0].cert_serial.as_deref(), Some("0a"));
        assert!(now[0].cert_expires.is_some());
        assert_eq!(
            (now[1].state.as_str(), now[1].cert_revoked),
            ("connected", false)
        );
        assert_eq!(soc_alerts(&sink), vec!["certificate_revoked"]);
        // Renewed: the agent connects with a new serial and is not revoked.
        sink.agent_connected(&who, &Hello::default(), 0, "p", &cert("0c"))
            .unwrap();
        assert_eq!(rows(&path)[0].state, "connected");
        assert!(!rows(&path)[0].cert_revoked);
    }

    #[test]
    fn an_older_database_gains_the_certificate_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("soc.db");
        // The agents table before certificates were recorded.
        old_database(
            &path,
            "duplicates_dropped INTEGER NOT NULL DEFAULT 0, last_selftest_us INTEGER,",
        );
        // The read side copes before a serving SOC migrated it.
        let db = crate::query::open_read_only(&path).unwrap();
        let row = &crate::query::agents(&db, &test_store(&path)).unwrap()[0];
        assert_eq!(
            (row.cert_serial.as_deref(), row.cert_revoked),
            (None, false)
        );
        drop(db);
        let who = Identity::new("acme", "s1").unwrap();
        let mut sink = SqliteSink::open(&path).unwrap();
        assert_eq!(
            sink.agent_connected(&who, &Hello::default(), 0, "p", &cert("0d"))
                .unwrap(),
            3,
            "the migration lost the high-water mark"
        );
        drop(sink);
        let db = crate::query::open_read_only(&path).unwrap();
        let row = &crate::query::agents(&db, &test_store(&path)).unwrap()[0];
        assert_eq!(row.cert_serial.as_deref(), Some("0d"));
        assert!(row.cert_expires.is_some());
    }

    /// The previous release's `soc.db`: agents plus every event in one
    /// `events` table (its exact schema), upgraded in place at open.
    #[test]
    fn a_database_of_the_previous_release_moves_into_the_tenants_logs() {
        use prost::Message;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("soc.db");
        old_database(&path, "");
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(
                "INSERT INTO agents (tenant, agent_id, time_zone, first_seen_us, last_seen_us, acked_seq)
                    VALUES ('globex', 'g1', 'Europe/Berlin', 1, 1, 2);
                 CREATE TABLE events (
                    id INTEGER PRIMARY KEY, agent INTEGER NOT NULL REFERENCES agents(id),
                    seq INTEGER, kind TEXT NOT NULL, time_us INTEGER NOT NULL,
                    received_us INTEGER NOT NULL, body BLOB NOT NULL);",
            )
            .unwrap();
            let mut insert = old
                .prepare(
                    "INSERT INTO events (agent, seq, kind, time_us, received_us, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .unwrap();
            // acme/s1 (row 1): seq 1..=3; globex/g1 (row 2): seq 1..=2; and
            // one SOC alert about acme/s1, outside its sequence.
            for (agent, seq, received) in [
                (1, Some(1), 10),
                (2, Some(1), 10),
                (1, Some(2), 20),
                (1, None, 20),
                (1, Some(3), 30),
                (2, Some(2), 30),
            ] {
                let e = event(seq.unwrap_or(0), false);
                insert
                    .execute(params![
                        agent,
                        seq,
                        e.kind_name(),
                        5,
                        received,
                        e.encode_to_vec()
                    ])
                    .unwrap();
            }
        }
        let mut sink = SqliteSink::open(&path).unwrap();
        let all = all_stored(&sink);
        let by_tenant = |t: &str| -> Vec<(Option<u64>, i64)> {
            all.iter()
                .filter(|e| e.tenant == t)
                .map(|e| (e.seq, e.received_us))
                .collect()
        };
        assert_eq!(
            by_tenant("acme"),
            [(Some(1), 10), (Some(2), 20), (None, 20), (Some(3), 30)]
        );
        assert_eq!(by_tenant("globex"), [(Some(1), 10), (Some(2), 30)]);
        assert_eq!(
            all.iter().find(|e| e.tenant == "globex").unwrap().zone,
            "Europe/Berlin"
        );
        let old_table: Option<String> = sink
            .db
            .query_row(
                "SELECT name FROM sqlite_master WHERE name = 'events'",
                [],
                |r| r.get(0),
            )
            .optional()
            .unwrap();
        assert_eq!(old_table, None, "the old table is still there");
        // The marks hold: a resend of acme/s1 1..=4 stores only 4.
        let who = Identity::new("acme", "s1").unwrap();
        assert_eq!(
            sink.agent_connected(&who, &Hello::default(), 0, "p", &test_cert())
                .unwrap(),
            3
        );
        store(&mut sink, &[(who, batch(&[1, 2, 3, 4]))]);
        assert_eq!(count(&sink), 6);
        drop(sink);
        // Opening again moves nothing twice.
        let sink = SqliteSink::open(&path).unwrap();
        assert_eq!(count(&sink), 6);
    }
}
