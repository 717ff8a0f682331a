//! Moves the events of an earlier release's `soc.db` into the tenants'
//! logs. That release kept every event in one `events` table (agent row,
//! seq, kind, event time, receive time, protobuf body).
//!
//! Guarantees: every event moves to its tenant's log with its sequence
//! number, event time and receive time unchanged; progress is committed
//! with each run (`legacy_import.last_id`), so an interrupted import resumes
//! where it stopped (a run interrupted between the tenant's commit and the
//! progress commit is read again: its sequenced events are dropped as
//! duplicates by the mark, its SOC records are stored twice). The old table
//! is dropped once everything moved.

use std::time::{Duration, UNIX_EPOCH};

use owlet_proto::v1::Event;
use owlet_soc_store::{Batch, Writers};
use prost::Message;
use rusqlite::{Connection, OptionalExtension, params};

use super::SinkError;

/// Rows read per step.
const CHUNK: i64 = 10_000;

struct Row {
    id: i64,
    tenant: String,
    agent: String,
    zone: String,
    seq: Option<i64>,
    received_us: i64,
    event: Event,
}

/// Imports the old `events` table, if any; returns the events moved.
pub fn import(db: &Connection, writers: &mut Writers) -> Result<u64, SinkError> {
    let exists = db
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'",
            [],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if !exists {
        return Ok(0);
    }
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS legacy_import (last_id INTEGER NOT NULL);
         INSERT INTO legacy_import (last_id) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM legacy_import);",
    )?;
    let mut last: i64 = db.query_row("SELECT last_id FROM legacy_import", [], |r| r.get(0))?;
    let (mut moved, mut undecodable) = (0u64, 0u64);
    loop {
        let rows: Vec<(Row, Option<prost::DecodeError>)> = db
            .prepare(
                "SELECT e.id, a.tenant, a.agent_id, a.time_zone, e.seq, e.received_us, e.body
                 FROM events e JOIN agents a ON a.id = e.agent WHERE e.id > ?1 ORDER BY e.id LIMIT ?2",
            )?
            .query_map(params![last, CHUNK], |r| {
                let body: Vec<u8> = r.get(6)?;
                let (event, error) = match Event::decode(body.as_slice()) {
                    Ok(event) => (event, None),
                    Err(e) => (Event::default(), Some(e)),
                };
                let row = Row {
                    id: r.get(0)?,
                    tenant: r.get(1)?,
                    agent: r.get(2)?,
                    zone: r.get(3)?,
                    seq: r.get(4)?,
                    received_us: r.get(5)?,
                    event,
                };
                Ok((row, error))
            })?
            .collect::<Result<_, _>>()?;
        let Some(end) = rows.last().map(|(r, _)| r.id) else {
            break;
        };
        let mut decoded = Vec::with_capacity(rows.len());
        for (row, error) in rows {
            match error {
                None => decoded.push(row),
                Some(e) => {
                    undecodable += 1;
                    tracing::warn!(row = row.id, error = %e, "an old event does not decode; not moved");
                }
            }
        }
        // Runs of one tenant and one receive time: one transaction each.
        let mut start = 0;
        while start < decoded.len() {
            let first = &decoded[start];
            let len = decoded[start..]
                .iter()
                .take_while(|r| r.tenant == first.tenant && r.received_us == first.received_us)
                .count();
            let run = &decoded[start..start + len];
            moved += store_run(writers, run)?;
            db.execute(
                "UPDATE legacy_import SET last_id = ?1",
                params![run[len - 1].id],
            )?;
            start += len;
        }
        last = end;
        db.execute("UPDATE legacy_import SET last_id = ?1", params![last])?;
    }
    db.execute_batch("DROP TABLE events; DROP TABLE legacy_import;")?;
    tracing::info!(
        moved,
        undecodable,
        "moved the events of an earlier release into the tenants' logs"
    );
    Ok(moved)
}

/// Stores one run (one tenant, one receive time) as consecutive batches of
/// one agent and one kind of record (sequenced or not).
fn store_run(writers: &mut Writers, run: &[Row]) -> Result<u64, SinkError> {
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for (i, row) in run.iter().enumerate() {
        match groups.last_mut() {
            Some((s, n))
                if run[*s].agent == row.agent && run[*s].seq.is_some() == row.seq.is_some() =>
            {
                *n += 1
            }
            _ => groups.push((i, 1)),
        }
    }
    let events: Vec<Event> = run
        .iter()
        .map(|r| Event {
            seq: r.seq.unwrap_or(0) as u64,
            ..r.event.clone()
        })
        .collect();
    let batches: Vec<Batch> = groups
        .iter()
        .map(|&(s, n)| Batch {
            agent: &run[s].agent,
            zone: &run[s].zone,
            events: &events[s..s + n],
            sequenced: run[s].seq.is_some(),
        })
        .collect();
    let received = UNIX_EPOCH + Duration::from_micros(run[0].received_us.max(0) as u64);
    let done = writers.get(&run[0].tenant)?.append(&batches, received)?;
    Ok(done.iter().map(|d| d.stored).sum())
}
