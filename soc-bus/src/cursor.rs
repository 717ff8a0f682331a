//! Where a consumer of the scaled-out SOC stands in a tenant's events,
//! kept in PostgreSQL, and which process may move it.
//!
//! Table `owlet_bus.cursors`: one row per (consumer, tenant) — its
//! `position` (the writer: the stream sequence of the last message of the
//! tenant's stream it committed; a reader of the stored events: the last
//! `id` it has dealt with), for a stream's consumer when that stream was
//! created (a stream deleted and created again numbers its messages from 1
//! anew: a position in the old one means nothing there), and the row's
//! `id`, the key of its lock.
//!
//! Guarantees:
//! * **Moved with the data.** [`Claim::advance`] runs inside the caller's
//!   transaction, so what a batch wrote (the writer's rows, a notifier's
//!   record) and the position after it commit together or not at all. A consumer killed at any point resumes right
//!   after what it committed: no acknowledgement can be lost or come late,
//!   because there is none (JetStream's side is an ordered consumer without
//!   acks, single replica, in memory: nothing for the servers to replicate
//!   per message).
//! * **One holder at a time.** [`claim`] takes a session-level advisory
//!   lock on the row's `id` on the connection that then writes. Another
//!   process running the same consumer stands by; when the holder's
//!   connection ends (killed, host gone, network cut), PostgreSQL drops
//!   the lock and a standby takes over at the committed position. A lock
//!   key is a row's own `id`, never a hash of a name, so two tenants never
//!   share one.
//! * **Or moved on its own.** A consumer whose batch goes somewhere else
//!   (a SIEM output: the destination confirmed it) moves its position with
//!   [`Claim::advance_to`], a statement of its own that never moves it
//!   back, and keeps its delivery figures (`delivered`, `errors`,
//!   `last_error`, `updated_us`) on the same row for the operator.
//! * **The writer's own.** The schema grants nothing to PUBLIC, so no
//!   tenant role reads it.

use tokio_postgres::Client;

use crate::BusError;
use crate::writer::pg_error;

/// The first key of every owlet advisory lock ("owlt"), so the second,
/// the cursor row's `id`, cannot meet another application's locks.
const LOCK_CLASS: i32 = 0x6f77_6c74;

const DDL: &str = "CREATE SCHEMA IF NOT EXISTS owlet_bus;
REVOKE ALL ON SCHEMA owlet_bus FROM PUBLIC;
CREATE TABLE IF NOT EXISTS owlet_bus.cursors (
  id integer GENERATED ALWAYS AS IDENTITY UNIQUE,
  consumer text NOT NULL,
  tenant text NOT NULL,
  position bigint NOT NULL DEFAULT 0,
  stream_created_ns bigint,
  delivered bigint NOT NULL DEFAULT 0,
  errors bigint NOT NULL DEFAULT 0,
  last_error text,
  updated_us bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (consumer, tenant)
);
REVOKE ALL ON owlet_bus.cursors FROM PUBLIC;";

/// Creates the cursor table (idempotent). Run once per process before its
/// consumers start: concurrent `CREATE … IF NOT EXISTS` of one object can
/// fail in PostgreSQL.
pub async fn prepare(pg: &Client) -> Result<(), BusError> {
    pg.batch_execute(DDL).await.map_err(pg_error)
}

/// The consumer's position in one tenant stream, held by this connection.
#[derive(Debug, Clone, Copy)]
pub struct Claim {
    id: i32,
    /// What the holder committed last (0: nothing yet).
    pub position: u64,
    /// The creation time (ns since the epoch) of the stream `position`
    /// counts in; `None` before the first [`Claim::bind`].
    stream_created_ns: Option<i64>,
}

/// Takes the position of `consumer` in `tenant`'s stream for the session
/// of `pg`, creating it at 0 the first time; `None` when another session
/// holds it. The lock lasts as long as the connection.
pub async fn claim(pg: &Client, consumer: &str, tenant: &str) -> Result<Option<Claim>, BusError> {
    pg.execute(
        "INSERT INTO owlet_bus.cursors (consumer, tenant) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&consumer, &tenant],
    )
    .await
    .map_err(pg_error)?;
    let row = pg
        .query_one(
            "SELECT id FROM owlet_bus.cursors WHERE consumer = $1 AND tenant = $2",
            &[&consumer, &tenant],
        )
        .await
        .map_err(pg_error)?;
    let id: i32 = row.get(0);
    let locked: bool = pg
        .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&LOCK_CLASS, &id])
        .await
        .map_err(pg_error)?
        .get(0);
    if !locked {
        return Ok(None);
    }
    // Read under the lock: the last holder's final commit is visible.
    let row = pg
        .query_one(
            "SELECT position, stream_created_ns FROM owlet_bus.cursors WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(pg_error)?;
    let position: i64 = row.get(0);
    Ok(Some(Claim {
        id,
        position: u64::try_from(position).unwrap_or(0),
        stream_created_ns: row.get(1),
    }))
}

impl Claim {
    /// Moves the position to `to` inside `tx`: it commits with what the
    /// transaction wrote, or not at all.
    pub async fn advance(
        &mut self,
        tx: &tokio_postgres::Transaction<'_>,
        position: u64,
    ) -> Result<(), BusError> {
        let to = i64::try_from(position)
            .map_err(|_| BusError::Other(format!("position {position} out of range")))?;
        let moved = tx
            .execute(
                "UPDATE owlet_bus.cursors SET position = $2 WHERE id = $1",
                &[&self.id, &to],
            )
            .await
            .map_err(pg_error)?;
        self.gone_unless(moved)?;
        self.position = position;
        Ok(())
    }

    /// Moves the position to `position` on its own (autocommit; durable on
    /// return) and counts `delivered` more events, clearing `last_error`:
    /// for a consumer whose batch was confirmed elsewhere. Never moves the
    /// position back (`GREATEST`), so even a holder that lost its lock
    /// unnoticed cannot undo what the new holder confirmed.
    pub async fn advance_to(
        &mut self,
        pg: &Client,
        position: u64,
        delivered: u64,
    ) -> Result<(), BusError> {
        let to = i64::try_from(position)
            .map_err(|_| BusError::Other(format!("position {position} out of range")))?;
        let delivered = i64::try_from(delivered).unwrap_or(i64::MAX);
        let moved = pg
            .execute(
                "UPDATE owlet_bus.cursors SET position = GREATEST(position, $2), \
                 delivered = delivered + $3, last_error = NULL, updated_us = $4 WHERE id = $1",
                &[&self.id, &to, &delivered, &now_us()],
            )
            .await
            .map_err(pg_error)?;
        self.gone_unless(moved)?;
        self.position = self.position.max(position);
        Ok(())
    }

    /// Records a failed attempt (`errors` + 1, `last_error`); the position
    /// stays.
    pub async fn failed(&self, pg: &Client, error: &str) -> Result<(), BusError> {
        let moved = pg
            .execute(
                "UPDATE owlet_bus.cursors SET errors = errors + 1, last_error = $2, updated_us = $3 WHERE id = $1",
                &[&self.id, &error, &now_us()],
            )
            .await
            .map_err(pg_error)?;
        self.gone_unless(moved)
    }

    /// The error for an update that found no row.
    fn gone_unless(&self, moved: u64) -> Result<(), BusError> {
        if moved == 1 {
            return Ok(());
        }
        Err(BusError::Other(format!(
            "the cursor row {} is gone from owlet_bus.cursors (dropped by hand?)",
            self.id
        )))
    }

    /// For a stream's consumer: ties the position to the stream created at
    /// `created_ns` (ns since the epoch). When it counted in another stream
    /// of the same name (one deleted since), it starts over at 0 and this
    /// returns the old position.
    pub async fn bind(&mut self, pg: &Client, created_ns: i64) -> Result<Option<u64>, BusError> {
        if self.stream_created_ns == Some(created_ns) {
            return Ok(None);
        }
        let old = self.stream_created_ns.map(|_| self.position);
        pg.execute(
            "UPDATE owlet_bus.cursors SET position = 0, stream_created_ns = $2 WHERE id = $1",
            &[&self.id, &created_ns],
        )
        .await
        .map_err(pg_error)?;
        self.position = 0;
        self.stream_created_ns = Some(created_ns);
        Ok(old)
    }
}

/// The wall clock in µs since the epoch (UTC), for `updated_us`.
fn now_us() -> i64 {
    owlet_soc_store::time::micros(std::time::SystemTime::now())
}

/// One (consumer, tenant) position as [`positions`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub tenant: String,
    pub position: u64,
    /// A session holds it now (its lock is taken).
    pub held: bool,
}

/// A reader of a tenant's stored events (an output, the notifier) whose
/// position is below `id`: it has not yet dealt with every event up to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behind {
    pub consumer: String,
    pub position: i64,
}

/// The readers of `tenant`'s stored events (every consumer but the
/// writer, `writer_consumer`, whose position is in its stream) whose
/// position is below `id`. Takes no lock.
pub async fn readers_behind(
    pg: &Client,
    tenant: &str,
    writer_consumer: &str,
    id: i64,
) -> Result<Vec<Behind>, BusError> {
    let rows = pg
        .query(
            "SELECT consumer, position FROM owlet_bus.cursors
              WHERE tenant = $1 AND consumer <> $2 AND position < $3 ORDER BY consumer",
            &[&tenant, &writer_consumer, &id],
        )
        .await
        .map_err(pg_error)?;
    Ok(rows
        .iter()
        .map(|r| Behind {
            consumer: r.get(0),
            position: r.get(1),
        })
        .collect())
}

/// Records `error` on the cursor of (`consumer`, `tenant`) without holding
/// it (its holder's figures are shown by its `--status`): for a loss the
/// consumer itself cannot see, such as retention dropping events it had
/// not read.
pub async fn note_error(
    pg: &Client,
    consumer: &str,
    tenant: &str,
    error: &str,
) -> Result<(), BusError> {
    pg.execute(
        "UPDATE owlet_bus.cursors SET errors = errors + 1, last_error = $3, updated_us = $4
          WHERE consumer = $1 AND tenant = $2",
        &[&consumer, &tenant, &error, &now_us()],
    )
    .await
    .map_err(pg_error)?;
    Ok(())
}

/// A consumer's row for one tenant as the operator reads it: its
/// position, whether a session holds it now, and the delivery figures a
/// consumer keeps there (zero for those that keep none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Standing {
    pub position: i64,
    pub held: bool,
    pub delivered: u64,
    pub errors: u64,
    pub last_error: Option<String>,
    /// When the row last changed (UTC µs; 0: never).
    pub updated_us: i64,
}

/// `consumer`'s row for `tenant`; `None` when it has none yet (it never
/// claimed the tenant). Takes no lock.
pub async fn standing(
    pg: &Client,
    consumer: &str,
    tenant: &str,
) -> Result<Option<Standing>, BusError> {
    let row = pg
        .query_opt(
            "SELECT c.position, EXISTS (
                 SELECT 1 FROM pg_locks l
                  WHERE l.locktype = 'advisory' AND l.granted
                    AND l.classid::bigint = $3 AND l.objid::bigint = c.id AND l.objsubid = 2),
                    c.delivered, c.errors, c.last_error, c.updated_us
               FROM owlet_bus.cursors c WHERE c.consumer = $1 AND c.tenant = $2",
            &[&consumer, &tenant, &i64::from(LOCK_CLASS)],
        )
        .await
        .map_err(pg_error)?;
    let count = |r: &tokio_postgres::Row, i: usize| u64::try_from(r.get::<_, i64>(i)).unwrap_or(0);
    Ok(row.map(|r| Standing {
        position: r.get(0),
        held: r.get(1),
        delivered: count(&r, 2),
        errors: count(&r, 3),
        last_error: r.get(4),
        updated_us: r.get(5),
    }))
}

/// The positions of `consumer` in every tenant, by tenant name, and
/// whether a session holds each now. Takes no lock.
pub async fn positions(pg: &Client, consumer: &str) -> Result<Vec<Position>, BusError> {
    let rows = pg
        .query(
            "SELECT c.tenant, c.position, EXISTS (
                 SELECT 1 FROM pg_locks l
                  WHERE l.locktype = 'advisory' AND l.granted
                    AND l.classid::bigint = $2 AND l.objid::bigint = c.id AND l.objsubid = 2)
               FROM owlet_bus.cursors c WHERE c.consumer = $1 ORDER BY c.tenant",
            &[&consumer, &i64::from(LOCK_CLASS)],
        )
        .await
        .map_err(pg_error)?;
    Ok(rows
        .iter()
        .map(|r| Position {
            tenant: r.get(0),
            position: u64::try_from(r.get::<_, i64>(1)).unwrap_or(0),
            held: r.get(2),
        })
        .collect())
}
