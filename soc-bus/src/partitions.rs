//! The day partitions of a tenant's `events` in PostgreSQL: each created
//! before the first row of its day, and dropped whole by retention.
//!
//! `events` is partitioned by range of `received_us` (the writer's clock
//! when it took the batch), one partition per UTC day, named
//! `events_YYYYMMDD` like the embedded store's day partitions.
//!
//! Guarantees:
//! * **Every row has its partition.** The writer creates the partition of a
//!   batch's day ([`Days::ensure`]) before inserting the batch. There is no
//!   default partition that could fill up unnoticed.
//! * **Cheap, whole-day retention** ([`retain`]): partitions are dropped
//!   whole, oldest first, never today's — first those whose day ended more
//!   than `max_age` ago, then the oldest while the tenant's events take
//!   more than `max_bytes`. No `DELETE`, so no bloat and no vacuum debt.
//!   The limits are the tenant's retention settings, which the receivers
//!   write on the tenant's stream ([`crate::Retention::of_stream`]); the
//!   stream itself keeps only a buffer of them (`buffer_max_age`). Each
//!   drop is logged with its day and size.
//! * **No silent loss for readers.** Retention does not wait for the
//!   readers of the stored events (SIEM outputs, the notifier): the disk
//!   limit wins, as in the embedded store. But a day dropped while a
//!   reader's position was below its last event is an error, logged with
//!   the reader, the day and the events it had not read, and recorded on
//!   that reader's cursor (`errors`, `last_error`), so its `--status`
//!   shows the loss ([`Dropped::unread`]).

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use owlet_soc_store::Policy;
use owlet_soc_store::schema::partition_name;
use owlet_soc_store::time::utc_day;
use tokio_postgres::Client;

use crate::writer::{CURSOR_CONSUMER, pg_error, schema_of};
use crate::{BusError, cursor};

/// One UTC day in microseconds.
pub const DAY_US: i64 = 86_400_000_000;

/// The UTC day (days since the epoch) of a time in microseconds.
pub fn day_of(us: i64) -> i64 {
    us.div_euclid(DAY_US)
}

/// `YYYY-MM-DD` of a day number.
fn date_of(day: i64) -> String {
    let secs = u64::try_from(day.max(0) * 86_400).unwrap_or(0);
    utc_day(UNIX_EPOCH + Duration::from_secs(secs))
}

/// The days whose partitions one tenant connection knows exist.
#[derive(Debug, Default)]
pub struct Days {
    known: BTreeSet<i64>,
}

impl Days {
    /// Makes sure the partition of the day of `received_us` exists.
    pub async fn ensure(
        &mut self,
        pg: &Client,
        tenant: &str,
        received_us: i64,
    ) -> Result<(), BusError> {
        let day = day_of(received_us);
        if self.known.contains(&day) {
            return Ok(());
        }
        create_day(pg, tenant, day).await?;
        self.known.insert(day);
        Ok(())
    }

    /// Forgets dropped days (a later row of one creates it again).
    fn forget(&mut self, day: i64) {
        self.known.remove(&day);
    }
}

/// Creates the partition of `day` (idempotent).
pub async fn create_day(pg: &Client, tenant: &str, day: i64) -> Result<(), BusError> {
    let schema = schema_of(tenant);
    let name = partition_name(&date_of(day));
    pg.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {schema}.{name} PARTITION OF {schema}.events FOR VALUES FROM ({}) TO ({})",
        day * DAY_US,
        (day + 1) * DAY_US
    ))
    .await
    .map_err(pg_error)
}

/// A partition retention dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub bytes: u64,
    /// `max_age` or `max_bytes`.
    pub reason: &'static str,
    /// Readers (consumer names) that had not read every event of the day,
    /// with how many they had not read.
    pub unread: Vec<(String, i64)>,
}

/// The tenant's partitions, oldest first: (day number, name, bytes).
async fn partitions(pg: &Client, tenant: &str) -> Result<Vec<(i64, String, u64)>, BusError> {
    let schema = format!("{}{tenant}", crate::writer::SCHEMA_PREFIX);
    let rows = pg
        .query(
            "SELECT c.relname::text, pg_total_relation_size(c.oid)
               FROM pg_inherits i
               JOIN pg_class c ON c.oid = i.inhrelid
               JOIN pg_class p ON p.oid = i.inhparent
               JOIN pg_namespace n ON n.oid = p.relnamespace
              WHERE n.nspname = $1 AND p.relname = 'events'",
            &[&schema],
        )
        .await
        .map_err(pg_error)?;
    let mut out: Vec<(i64, String, u64)> = rows
        .iter()
        .filter_map(|r| {
            let name: String = r.get(0);
            let bytes: i64 = r.get(1);
            let date = day_of_name(name.strip_prefix("events_")?)?;
            Some((date, name, u64::try_from(bytes).unwrap_or(0)))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// The day number of `YYYYMMDD` (a partition's name), by the civil
/// calendar; `None` for anything else.
fn day_of_name(yyyymmdd: &str) -> Option<i64> {
    if yyyymmdd.len() != 8 || !yyyymmdd.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let y: i64 = yyyymmdd[..4].parse().ok()?;
    let m: i64 = yyyymmdd[4..6].parse().ok()?;
    let d: i64 = yyyymmdd[6..].parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// How many day partitions the tenant has, and their bytes.
pub async fn usage(pg: &Client, tenant: &str) -> Result<(usize, u64), BusError> {
    let all = partitions(pg, tenant).await?;
    Ok((all.len(), all.iter().map(|(_, _, bytes)| bytes).sum()))
}

/// The readers whose position is below the last event of partition
/// `name`, with how many of its events each has not read.
async fn unread(pg: &Client, tenant: &str, name: &str) -> Result<Vec<(String, i64)>, BusError> {
    let table = format!("{}.{name}", schema_of(tenant));
    let last = pg
        .query_one(&format!("SELECT max(id) FROM {table}"), &[])
        .await
        .map_err(pg_error)?
        .get::<_, Option<i64>>(0);
    let Some(last) = last else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for reader in cursor::readers_behind(pg, tenant, CURSOR_CONSUMER, last).await? {
        let events: i64 = pg
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE id > $1"),
                &[&reader.position],
            )
            .await
            .map_err(pg_error)?
            .get(0);
        out.push((reader.consumer, events));
    }
    Ok(out)
}

/// Applies `policy` to the tenant's partitions at `now`; returns what it
/// dropped, oldest first.
pub async fn retain(
    pg: &Client,
    tenant: &str,
    policy: Policy,
    now: SystemTime,
    days: &mut Days,
) -> Result<Vec<Dropped>, BusError> {
    let now_us = owlet_soc_store::time::micros(now);
    let today = day_of(now_us);
    let all = partitions(pg, tenant).await?;
    let mut total: u64 = all.iter().map(|(_, _, bytes)| bytes).sum();
    let mut dropped = Vec::new();
    for (day, name, bytes) in all {
        if day >= today {
            break;
        }
        let day_end_us = (day + 1) * DAY_US;
        let expired = policy.max_age.is_some_and(|age| {
            now_us - day_end_us > i64::try_from(age.as_micros()).unwrap_or(i64::MAX)
        });
        let over = policy.max_bytes.is_some_and(|max| total > max);
        let reason = match (expired, over) {
            (true, _) => "max_age",
            (false, true) => "max_bytes",
            (false, false) => break,
        };
        let date = date_of(day);
        let unread = unread(pg, tenant, &name).await?;
        // The states first: were the drop lost, the next run drops the
        // day again, and no state is left pointing at a day that is gone.
        crate::checks::forget(pg, tenant, day_end_us).await?;
        pg.batch_execute(&format!(
            "DROP TABLE IF EXISTS {}.{name}",
            schema_of(tenant)
        ))
        .await
        .map_err(pg_error)?;
        days.forget(day);
        total = total.saturating_sub(bytes);
        tracing::info!(%tenant, day = %date, bytes, reason, "writer: retention dropped a day of the tenant's events");
        for (consumer, events) in &unread {
            let error = format!(
                "retention ({reason}) dropped day {date} of tenant {tenant} with {events} events \
                 this reader had not read: they are lost to it. It lags behind the tenant's \
                 retention; see why it is slow or failing, or raise the tenant's max_age / max_bytes \
                 (a reader removed from the configuration leaves its cursor behind: delete its row \
                 of owlet_bus.cursors)"
            );
            tracing::error!(%tenant, day = %date, reader = %consumer, events, "writer: {error}");
            cursor::note_error(pg, consumer, tenant, &error).await?;
        }
        dropped.push(Dropped {
            day: date,
            bytes,
            reason,
            unread,
        });
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_numbers_and_partition_names_agree() {
        for day in [0, 1, 59, 60, 365, 10_957, 20_429, 20_794, 21_000] {
            let name = date_of(day).replace('-', "");
            assert_eq!(day_of_name(&name), Some(day), "{name}");
        }
        assert_eq!(date_of(20_429), "2025-12-07");
        assert_eq!(day_of(-1), -1);
        assert_eq!(day_of_name("default"), None);
        assert_eq!(day_of_name("20261399"), None);
    }
}
