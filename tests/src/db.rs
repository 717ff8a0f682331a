//! Reading the SOC's storage: agent rows from its control database
//! (`soc.db`) and stored events from the tenants' logs beside it
//! (`tenants/TENANT/events.db`, read with `owlet-soc-store`).

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use owlet_proto::v1::{Alert, CheckResult, Event, event::Kind};

/// Read-only view of the SOC's storage. Each query opens the files anew
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
            "SELECT 1 FROM sqlite_master WHERE name = 'agents'",
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

    fn store(&self) -> Option<owlet_soc_store::Store> {
        let root = self.path.parent()?;
        root.join("tenants")
            .exists()
            .then(|| owlet_soc_store::Store::open(root).ok())?
    }

    /// All stored events in arrival order (per tenant: log order; across
    /// tenants: by receive time).
    pub fn events(&self) -> Vec<Stored> {
        let Some(store) = self.store() else {
            return Vec::new();
        };
        let mut all: Vec<(i64, Stored)> = Vec::new();
        for tenant in store.tenants().unwrap() {
            let reader = store.reader(&tenant).unwrap();
            for e in reader.read_after(0, usize::MAX).unwrap() {
                all.push((
                    e.received_us,
                    Stored {
                        row: e.id,
                        tenant: e.tenant,
                        agent: e.agent,
                        seq: e.seq,
                        kind: e.kind,
                        event: e.event.expect("stored body is not an owlet.v1.Event"),
                    },
                ));
            }
        }
        all.sort_by(|a, b| (a.0, &a.1.tenant, a.1.row).cmp(&(b.0, &b.1.tenant, b.1.row)));
        all.into_iter().map(|(_, e)| e).collect()
    }

    /// Stored events of one agent, in arrival order.
    pub fn events_of(&self, tenant: &str, agent: &str) -> Vec<Stored> {
        self.events()
            .into_iter()
            .filter(|e| e.tenant == tenant && e.agent == agent)
            .collect()
    }

    /// Number of events stored (any tenant); 0 if none.
    pub fn count(&self) -> i64 {
        let Some(store) = self.store() else { return 0 };
        store
            .tenants()
            .unwrap()
            .iter()
            .map(|t| {
                let (_, rows) = store
                    .reader(t)
                    .unwrap()
                    .sql("SELECT COALESCE(SUM(events), 0) FROM partitions")
                    .unwrap();
                rows[0][0].parse::<i64>().unwrap()
            })
            .sum()
    }

    /// The database file of `tenant`'s event log.
    pub fn tenant_file(&self, tenant: &str) -> PathBuf {
        self.path
            .parent()
            .unwrap()
            .join("tenants")
            .join(tenant)
            .join("events.db")
    }

    /// Takes the write lock of `tenant`'s log (`BEGIN IMMEDIATE`) and holds
    /// it until the returned connection is dropped (rolled back, nothing
    /// written): the SOC's commits of that tenant stall meanwhile, like on a
    /// stalled disk.
    pub fn hold_write_lock(&self, tenant: &str) -> rusqlite::Connection {
        let db = rusqlite::Connection::open(self.tenant_file(tenant)).unwrap();
        db.busy_timeout(Duration::from_secs(30)).unwrap();
        db.execute_batch("BEGIN IMMEDIATE").unwrap();
        db
    }

    /// (tenant/agent, kind, count, min seq, max seq) for diagnostics.
    pub fn summary(&self) -> Vec<SummaryRow> {
        // (agent, kind) -> (count, min seq, max seq)
        type Counts = (i64, Option<i64>, Option<i64>);
        let mut rows: std::collections::BTreeMap<(String, String), Counts> = Default::default();
        for e in self.events() {
            let row = rows
                .entry((format!("{}/{}", e.tenant, e.agent), e.kind.clone()))
                .or_insert((0, None, None));
            row.0 += 1;
            if let Some(seq) = e.seq.map(|s| s as i64) {
                row.1 = Some(row.1.map_or(seq, |m: i64| m.min(seq)));
                row.2 = Some(row.2.map_or(seq, |m: i64| m.max(seq)));
            }
        }
        rows.into_iter()
            .map(|((agent, kind), (n, min, max))| (agent, kind, n, min, max))
            .collect()
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
