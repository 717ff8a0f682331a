//! The embedded default sink: one SQLite file in WAL mode.
//!
//! Durability: `synchronous = FULL`, so a committed transaction survives power
//! loss; one transaction per batch, committed before `store_batch` returns.
//! Exactly once: `agents.acked_seq` is the per-agent high-water mark, read and
//! advanced inside the same transaction as the inserts; only events above it
//! are inserted. The receiver has already checked that sequence numbers
//! increase strictly within a batch (`crate::service`), so the mark alone
//! excludes every duplicate, across reconnects and SOC restarts. (A unique
//! index on `events(agent, seq)` used to double-check this; it cost a quarter
//! of the SOC's throughput for no case the mark does not already cover.)
//!
//! Duplicates are counted, not silently ignored: every event received at or
//! below the mark is added to `agents.duplicates_dropped` in the same
//! transaction, so an operator (and a test) can see that resends after a
//! reconnect reached the SOC and were dropped.
//!
//! Layout (the `agents` and `events` tables are also read by `owlet-soc agents`
//! and `owlet-soc tail`, see `crate::query`):
//! * `agents`: one row per (tenant, agent id) with version, profile, host,
//!   time zone, first/last seen, last heartbeat, clock offset, connection and
//!   liveness state, high-water mark, duplicates dropped (events), last
//!   self-test, serial and expiry of the certificate it last connected with;
//! * `revoked_certs`: the serials the CRL in force revokes (replaced whole
//!   on each CRL load), so the read side can tell a revoked agent;
//! * `events`: one row per event in arrival order (`id`), with the agent row,
//!   sequence number (NULL for alerts the SOC raised itself and for self-test
//!   records of `owlet selftest`, which are outside the agent's sequence), kind name, event
//!   time, receive time and the protobuf-encoded `owlet.v1.Event`.

use std::path::Path;
use std::time::{Duration, SystemTime};

use owlet_proto::v1::{Alert, Batch, Event, Hello, Severity, State, event::Kind};
use owlet_tls::{CertInfo, Identity, RevokedCert};
use prost::Message;
use rusqlite::{Connection, OptionalExtension, params};

use super::{LivenessChange, Sink, SinkError, Stored};

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
    acked_seq            INTEGER NOT NULL DEFAULT 0,
    -- events received at or below acked_seq, dropped as duplicates
    duplicates_dropped   INTEGER NOT NULL DEFAULT 0,
    -- when the agent last stored a self-test record (`owlet selftest`)
    last_selftest_us     INTEGER,
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
CREATE TABLE IF NOT EXISTS events (
    id          INTEGER PRIMARY KEY,
    agent       INTEGER NOT NULL REFERENCES agents(id),
    seq         INTEGER,
    kind        TEXT NOT NULL,
    time_us     INTEGER NOT NULL,
    received_us INTEGER NOT NULL,
    body        BLOB NOT NULL
);
";

pub struct SqliteSink {
    db: Connection,
}

impl SqliteSink {
    /// Opens (creating if needed) the database. Every agent starts
    /// disconnected: a restarted SOC has no streams yet.
    pub fn open(path: &Path) -> Result<Self, SinkError> {
        let db = Connection::open(path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.busy_timeout(Duration::from_secs(5))?;
        db.execute_batch(SCHEMA)?;
        migrate(&db)?;
        db.execute("UPDATE agents SET connected = 0", [])?;
        Ok(Self { db })
    }
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

/// The agent's row id, high-water mark and liveness flag.
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

/// What a liveness alert says about an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Liveness {
    /// No heartbeat within the window, and no goodbye: a crash, a power
    /// cut, a network down (Critical).
    Silent,
    /// No heartbeat since its goodbye: stopped on purpose (Info).
    Stopped,
    /// Heartbeats again.
    Recovered,
}

/// An alert the SOC raises about an agent, stored like any event (seq NULL).
fn soc_alert(who: &Identity, name: &str, severity: Severity, new: State, message: String) -> Event {
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
            subject: who.to_string(),
            name: name.into(),
            severity: severity as i32,
            old_state: old as i32,
            new_state: new as i32,
            message,
            ..Default::default()
        })),
    }
}

/// `agent_silent`, `agent_stopped` or `agent_recovered`.
fn liveness_alert(who: &Identity, liveness: Liveness, detail: String) -> Event {
    match liveness {
        Liveness::Silent => soc_alert(who, "agent_silent", Severity::Critical, State::Down, detail),
        Liveness::Stopped => soc_alert(who, "agent_stopped", Severity::Info, State::Down, detail),
        Liveness::Recovered => soc_alert(who, "agent_recovered", Severity::Info, State::Up, detail),
    }
}

/// The alert the SOC records when the CRL it enforces revokes an agent's
/// certificate.
fn revoked_alert(who: &Identity, cert: &RevokedCert) -> Event {
    let message = format!(
        "the certificate {} of {who} is revoked ({}): its streams are ended and its connections refused",
        cert.serial,
        cert.reason.as_deref().unwrap_or("no reason given")
    );
    soc_alert(
        who,
        "certificate_revoked",
        Severity::Warning,
        State::Down,
        message,
    )
}

fn insert_soc_event(
    db: &Connection,
    agent_row: i64,
    event: &Event,
    now_us: i64,
) -> Result<(), SinkError> {
    db.execute(
        "INSERT INTO events (agent, seq, kind, time_us, received_us, body) VALUES (?1, NULL, ?2, ?3, ?3, ?4)",
        params![agent_row, event.kind_name(), now_us, event.encode_to_vec()],
    )?;
    Ok(())
}

/// Stores one batch inside the caller's transaction.
fn store_one(
    tx: &Connection,
    who: &Identity,
    batch: &Batch,
    now: i64,
) -> Result<Stored, SinkError> {
    let (agent, acked, silent) = agent_row(tx, who)?.ok_or_else(|| {
        SinkError::Failed(format!("batch from {who} before its hello was recorded"))
    })?;
    let mut heartbeat = false;
    // The last heartbeat of the batch decides: a goodbye, or alive.
    let mut stopping = false;
    let duplicates = batch.events.iter().filter(|e| e.seq <= acked).count();
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (agent, seq, kind, time_us, received_us, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut body = Vec::with_capacity(256);
        for event in batch.events.iter().filter(|e| e.seq > acked) {
            if let Some(Kind::AgentStatus(status)) = &event.kind {
                heartbeat = true;
                stopping = status.stopping;
            }
            body.clear();
            event
                .encode(&mut body)
                .map_err(|e| SinkError::Failed(e.to_string()))?;
            let time = event
                .time
                .as_ref()
                .map_or(now, owlet_proto::timestamp_micros);
            insert.execute(params![
                agent,
                event.seq as i64,
                event.kind_name(),
                time,
                now,
                body
            ])?;
        }
    }
    let acked_seq = acked.max(batch.last_seq);
    tx.execute(
        "UPDATE agents SET acked_seq = ?2, last_seen_us = ?3,
                last_heartbeat_us = CASE WHEN ?4 THEN ?3 ELSE last_heartbeat_us END,
                silent = CASE WHEN ?4 THEN 0 ELSE silent END,
                stopping = CASE WHEN ?4 THEN ?6 ELSE stopping END,
                duplicates_dropped = duplicates_dropped + ?5
         WHERE id = ?1",
        params![
            agent,
            acked_seq as i64,
            now,
            heartbeat,
            duplicates as i64,
            stopping
        ],
    )?;
    let recovered = silent && heartbeat;
    if recovered {
        let alert = liveness_alert(
            who,
            Liveness::Recovered,
            format!("{who} is sending heartbeats again"),
        );
        insert_soc_event(tx, agent, &alert, now)?;
    }
    Ok(Stored {
        acked_seq,
        change: recovered.then(|| LivenessChange {
            agent: who.clone(),
            silent: false,
            planned: false,
        }),
    })
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
        Ok(agent_row(&self.db, who)?.map_or(0, |(_, acked, _)| acked))
    }

    fn set_revoked(&mut self, revoked: &[RevokedCert]) -> Result<Vec<Identity>, SinkError> {
        let now = micros(SystemTime::now());
        let tx = self.db.transaction()?;
        // Agents whose last certificate was not revoked before this CRL.
        let before: Vec<(i64, String, String, String)> = {
            let mut stmt = tx.prepare(
                "SELECT id, tenant, agent_id, cert_serial FROM agents
                 WHERE cert_serial IS NOT NULL
                   AND cert_serial NOT IN (SELECT serial FROM revoked_certs)",
            )?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<Result<_, _>>()?
        };
        tx.execute("DELETE FROM revoked_certs", [])?;
        {
            let mut insert = tx.prepare(
                "INSERT OR REPLACE INTO revoked_certs (serial, revoked_us, reason) VALUES (?1, ?2, ?3)",
            )?;
            for cert in revoked {
                insert.execute(params![cert.serial, micros(cert.revoked_at), cert.reason])?;
            }
        }
        let mut newly = Vec::new();
        for (row, tenant, agent_id, serial) in before {
            let Some(cert) = revoked.iter().find(|c| c.serial == serial) else {
                continue;
            };
            let who = Identity { tenant, agent_id };
            insert_soc_event(&tx, row, &revoked_alert(&who, cert), now)?;
            newly.push(who);
        }
        tx.commit()?;
        Ok(newly)
    }

    fn store_batches(&mut self, batches: &[(Identity, Batch)]) -> Result<Vec<Stored>, SinkError> {
        let now = micros(SystemTime::now());
        let tx = self.db.transaction()?;
        let mut results = Vec::with_capacity(batches.len());
        for (who, batch) in batches {
            results.push(store_one(&tx, who, batch, now)?);
        }
        tx.commit()?;
        Ok(results)
    }

    fn store_self_test(&mut self, who: &Identity, event: &Event) -> Result<(), SinkError> {
        let now = micros(SystemTime::now());
        let tx = self.db.transaction()?;
        let (agent, _, _) = agent_row(&tx, who)?.ok_or_else(|| {
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
        insert_soc_event(&tx, agent, &event, now)?;
        tx.execute(
            "UPDATE agents SET last_selftest_us = ?2, last_seen_us = ?2 WHERE id = ?1",
            params![agent, now],
        )?;
        tx.commit()?;
        Ok(())
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
        let tx = self.db.transaction()?;
        type Overdue = (i64, String, String, i64, bool);
        let overdue: Vec<Overdue> = {
            // An agent that never sent a heartbeat is judged from when it was
            // first seen.
            let mut stmt = tx.prepare(
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
            let (liveness, detail) = if stopping {
                (
                    Liveness::Stopped,
                    format!(
                        "{who} was stopped on purpose {}s ago (its last heartbeat said goodbye: \
                         systemctl stop, an upgrade); no data until it starts again",
                        quiet.as_secs()
                    ),
                )
            } else {
                (
                    Liveness::Silent,
                    format!(
                        "no heartbeat from {who} for {}s (window {}s)",
                        quiet.as_secs(),
                        silent_after.as_secs()
                    ),
                )
            };
            tx.execute("UPDATE agents SET silent = 1 WHERE id = ?1", params![row])?;
            insert_soc_event(&tx, row, &liveness_alert(&who, liveness, detail), now_us)?;
            changes.push(LivenessChange {
                agent: who,
                silent: true,
                planned: stopping,
            });
        }
        tx.commit()?;
        Ok(changes)
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
    use owlet_proto::v1::AgentStatus;

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

    fn count(sink: &SqliteSink) -> i64 {
        sink.db
            .query_row(
                "SELECT COUNT(*) FROM events WHERE seq IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .unwrap()
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
        let stored = sink
            .store_batches(&[
                (who.clone(), batch(&[1, 2, 3])),
                (who.clone(), batch(&[2, 3, 4])),
            ])
            .unwrap();
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
            sink.store_batches(&[(who.clone(), batch(&[1, 2, 3, 4, 5]))])
                .unwrap()[0]
                .acked_seq,
            5
        );
        assert_eq!(count(&sink), 5);
    }

    fn duplicates_dropped(path: &Path) -> u64 {
        let db = crate::query::open_read_only(path).unwrap();
        let rows = crate::query::agents(&db).unwrap();
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
        sink.store_batches(&[
            (who.clone(), batch(&[1, 2, 3])),
            (who.clone(), batch(&[2, 3, 4])),
            (other.clone(), batch(&[1, 2])),
        ])
        .unwrap();
        drop(sink);
        // A resend after a reconnect to a restarted SOC: 1..=4 are stored.
        let mut sink = SqliteSink::open(&path).unwrap();
        sink.agent_connected(&who, &Hello::default(), 0, "p", &test_cert())
            .unwrap();
        sink.store_batches(&[(who.clone(), batch(&[1, 2, 3, 4, 5]))])
            .unwrap();
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
        let json = serde_json::to_value(crate::query::agents(&db).unwrap()).unwrap();
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
        sink.store_batches(&[(who, batch(&[3, 4]))]).unwrap();
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
        sink.store_batches(&[(who.clone(), batch(&[1, 2]))])
            .unwrap();
        // A self-test event whose seq would otherwise be above the mark.
        sink.store_self_test(&who, &event(9, false)).unwrap();
        assert_eq!(
            sink.agent_connected(&who, &Hello::default(), 0, "p", &test_cert())
                .unwrap(),
            2,
            "a self-test moved the high-water mark"
        );
        // The running agent's next events are stored, not dropped.
        let stored = sink
            .store_batches(&[(who.clone(), batch(&[3, 4, 5, 6, 7, 8, 9]))])
            .unwrap();
        assert_eq!(stored[0].acked_seq, 9);
        assert_eq!(count(&sink), 9);
        let (selftests, last): (i64, Option<i64>) = sink
            .db
            .query_row(
                "SELECT (SELECT COUNT(*) FROM events WHERE seq IS NULL), last_selftest_us FROM agents",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
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
        let stored = sink.store_batches(&[(who.clone(), hb)]).unwrap();
        assert_eq!(
            stored[0].change,
            Some(LivenessChange {
                agent: who,
                silent: false,
                planned: false,
            })
        );
        let alerts: i64 = sink
            .db
            .query_row(
                "SELECT COUNT(*) FROM events WHERE seq IS NULL AND kind = 'alert'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(alerts, 2);
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
            crate::query::agents(&crate::query::open_read_only(path).unwrap()).unwrap()
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
        let alerts: Vec<String> = sink
            .db
            .prepare("SELECT body FROM events WHERE kind = 'alert'")
            .unwrap()
            .query_map([], |r| r.get::<_, Vec<u8>>(0))
            .unwrap()
            .map(
                |b| match Event::decode(b.unwrap().as_slice()).unwrap().kind {
                    Some(Kind::Alert(a)) => a.name,
                    other => panic!("{other:?}"),
                },
            )
            .collect();
        assert_eq!(alerts, vec!["certificate_revoked"]);
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
        let row = &crate::query::agents(&db).unwrap()[0];
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
        let row = &crate::query::agents(&db).unwrap()[0];
        assert_eq!(row.cert_serial.as_deref(), Some("0d"));
        assert!(row.cert_expires.is_some());
    }
}
