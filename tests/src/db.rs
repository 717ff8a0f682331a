//! Reading the SOC's SQLite file: stored events and agent rows.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use owlet_proto::v1::{Alert, CheckResult, Event, event::Kind};
use prost::Message;

/// Read-only view of the SOC's SQLite file. Each query opens the file anew
/// (read-only, WAL) so it sees the latest commits.
pub struct Db {
    pub path: PathBuf,
}

/// One row of `events`, body decoded.
#[derive(Debug, Clone)]
pub struct Stored {
    pub row: i64,
    pub tenant: String,
    pub agent: String,
    pub seq: Option<u64>,
    pub kind: String,
    pub event: Event,
}

impl Stored {
    /// The counter of a synthetic check result, `None` for other events.
    pub fn synthetic_counter(&self) -> Option<u64> {
        match &self.event.kind {
            Some(Kind::CheckResult(c)) if c.check_id == "synthetic" => Some(
                c.message
                    .parse()
                    .unwrap_or_else(|_| panic!("bad synthetic counter {:?}", c.message)),
            ),
            _ => None,
        }
    }

    /// The event's own time stamp (when the agent made it).
    pub fn time(&self) -> SystemTime {
        let t = self
            .event
            .time
            .as_ref()
            .unwrap_or_else(|| panic!("stored event without a time: {self:?}"));
        UNIX_EPOCH + Duration::new(t.seconds as u64, t.nanos as u32)
    }

    pub fn check_result(&self) -> Option<&CheckResult> {
        match &self.event.kind {
            Some(Kind::CheckResult(c)) => Some(c),
            _ => None,
        }
    }

    pub fn alert(&self) -> Option<&Alert> {
        match &self.event.kind {
            Some(Kind::Alert(a)) => Some(a),
            _ => None,
        }
    }

    pub fn alert_name(&self) -> Option<&str> {
        match &self.event.kind {
            Some(Kind::Alert(a)) => Some(&a.name),
            _ => None,
        }
    }
}

/// (tenant/agent, kind, count, min seq, max seq).
pub type SummaryRow = (String, String, i64, Option<i64>, Option<i64>);

/// One row of `agents`.
#[derive(Debug, Clone)]
pub struct AgentRow {
    pub tenant: String,
    pub agent_id: String,
    pub connected: bool,
    pub silent: bool,
    pub acked_seq: u64,
}

impl Db {
    fn open(&self) -> Option<rusqlite::Connection> {
        if !self.path.exists() {
            return None;
        }
        let db = rusqlite::Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .ok()?;
        db.busy_timeout(Duration::from_secs(5)).ok()?;
        // The SOC may not have created the tables yet.
        db.query_row(
            "SELECT 1 FROM sqlite_master WHERE name = 'events'",
            [],
            |_| Ok(()),
        )
        .ok()?;
        Some(db)
    }

    pub fn agents(&self) -> Vec<AgentRow> {
        let Some(db) = self.open() else {
            return Vec::new();
        };
        let mut stmt = db
            .prepare(
                "SELECT tenant, agent_id, connected, silent, acked_seq FROM agents ORDER BY id",
            )
            .unwrap();
        stmt.query_map([], |r| {
            Ok(AgentRow {
                tenant: r.get(0)?,
                agent_id: r.get(1)?,
                connected: r.get::<_, i64>(2)? != 0,
                silent: r.get::<_, i64>(3)? != 0,
                acked_seq: r.get::<_, i64>(4)? as u64,
            })
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    pub fn agent(&self, tenant: &str, agent: &str) -> Option<AgentRow> {
        self.agents()
            .into_iter()
            .find(|a| a.tenant == tenant && a.agent_id == agent)
    }

    /// All stored events in arrival order.
    pub fn events(&self) -> Vec<Stored> {
        let Some(db) = self.open() else {
            return Vec::new();
        };
        let mut stmt = db
            .prepare(
                "SELECT e.id, a.tenant, a.agent_id, e.seq, e.kind, e.body
                 FROM events e JOIN agents a ON a.id = e.agent ORDER BY e.id",
            )
            .unwrap();
        stmt.query_map([], |r| {
            let body: Vec<u8> = r.get(5)?;
            Ok(Stored {
                row: r.get(0)?,
                tenant: r.get(1)?,
                agent: r.get(2)?,
                seq: r.get::<_, Option<i64>>(3)?.map(|s| s as u64),
                kind: r.get(4)?,
                event: Event::decode(body.as_slice())
                    .expect("stored body is not an owlet.v1.Event"),
            })
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    /// Stored events of one agent, in arrival order.
    pub fn events_of(&self, tenant: &str, agent: &str) -> Vec<Stored> {
        self.events()
            .into_iter()
            .filter(|e| e.tenant == tenant && e.agent == agent)
            .collect()
    }

    /// Number of events in the database (any agent); 0 if none.
    pub fn count(&self) -> i64 {
        let Some(db) = self.open() else { return 0 };
        db.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
            .unwrap()
    }

    /// Takes the database's write lock (`BEGIN IMMEDIATE`) and holds it
    /// until the returned connection is dropped (rolled back, nothing
    /// written): the SOC's commits stall meanwhile, like on a stalled disk.
    pub fn hold_write_lock(&self) -> rusqlite::Connection {
        let db = rusqlite::Connection::open(&self.path).unwrap();
        db.busy_timeout(Duration::from_secs(30)).unwrap();
        db.execute_batch("BEGIN IMMEDIATE").unwrap();
        db
    }

    /// (tenant/agent, kind, count, min seq, max seq) for diagnostics.
    pub fn summary(&self) -> Vec<SummaryRow> {
        let Some(db) = self.open() else {
            return Vec::new();
        };
        let mut stmt = db
            .prepare(
                "SELECT a.tenant || '/' || a.agent_id, e.kind, COUNT(*), MIN(e.seq), MAX(e.seq)
                 FROM events e JOIN agents a ON a.id = e.agent GROUP BY 1, 2 ORDER BY 1, 2",
            )
            .unwrap();
        stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    /// Number of stored synthetic events (cheap enough to poll).
    pub fn synthetic_count(&self, tenant: &str, agent: &str) -> usize {
        self.events_of(tenant, agent)
            .iter()
            .filter(|e| e.synthetic_counter().is_some())
            .count()
    }

    /// The file changes among all stored events, in arrival order.
    pub fn file_changes(&self) -> Vec<owlet_proto::v1::FileChange> {
        self.events()
            .into_iter()
            .filter_map(|e| match e.event.kind {
                Some(Kind::FileChange(c)) => Some(c),
                _ => None,
            })
            .collect()
    }
}

// ----------------------------------------------------------------- checks
