//! Where rollups are written, and the one algorithm that writes them: a
//! batch's accumulated rows ([`super::Rollup`]) merged into the stored
//! ones, keys of closed hours sent to [`OTHER`] when their group is full,
//! and hours closed ([`GRACE_US`]) and pruned to [`TOP_N`] + [`OTHER`].
//!
//! A backend ([`RollupStore`]) only runs statements inside the caller's
//! transaction (SQLite: [`super::sqlite`]; PostgreSQL: `owlet-soc-bus`'s
//! rollup consumer); every decision is made here, so both backends hold
//! the same figures for the same batches. The trait is async for
//! PostgreSQL's client; SQLite's futures are ready when first polled.
//!
//! Never: write outside the caller's transaction (the rollups commit or
//! roll back with what the caller moves: SQLite's events, PostgreSQL's
//! consumer cursor).

use std::collections::HashMap;
use std::future::Future;

use super::acc::{Acc, Cell};
use super::{GRACE_US, HOUR_US, NAMES, OTHER, Rollup, TABLES, TALKERS, TOP_N};

/// How [`RollupStore::put`] writes a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Add,
    Replace,
}

/// The statements a backend runs, each inside the caller's transaction.
/// `table` is an index in [`TABLES`]; keys and values are in its column
/// order.
pub trait RollupStore {
    type Error;

    /// Adds `events` to hour `hour`'s count in `rollup_hours`.
    fn add_events(
        &mut self,
        hour: i64,
        events: i64,
    ) -> impl Future<Output = Result<(), Self::Error>>;
    /// Whether `hour` is closed (pruned).
    fn is_pruned(&mut self, hour: i64) -> impl Future<Output = Result<bool, Self::Error>>;
    /// The stored values of one row.
    fn select(
        &mut self,
        table: usize,
        hour: i64,
        keys: &[String],
    ) -> impl Future<Output = Result<Option<Vec<Cell>>, Self::Error>>;
    /// Writes one row: [`Put::Add`] adds `values` to it in one statement
    /// (tables without histograms: sums, min, max), [`Put::Replace`]
    /// writes it whole.
    fn put(
        &mut self,
        how: Put,
        table: usize,
        hour: i64,
        keys: &[String],
        values: &[Cell],
    ) -> impl Future<Output = Result<(), Self::Error>>;
    /// How many keys (not [`OTHER`]) `group` of bounded `table` keeps in `hour`.
    fn kept(
        &mut self,
        table: usize,
        hour: i64,
        group: &str,
    ) -> impl Future<Output = Result<i64, Self::Error>>;
    /// The open hours starting at or before `until`.
    fn open_hours(&mut self, until: i64) -> impl Future<Output = Result<Vec<i64>, Self::Error>>;
    /// The groups of bounded `table` keeping more than [`TOP_N`] keys in `hour`.
    fn crowded(
        &mut self,
        table: usize,
        hour: i64,
    ) -> impl Future<Output = Result<Vec<String>, Self::Error>>;
    /// Deletes the keys of `group` in `hour` beyond its top [`TOP_N`] and
    /// returns the sums of their values.
    fn take_beyond(
        &mut self,
        table: usize,
        hour: i64,
        group: &str,
    ) -> impl Future<Output = Result<Vec<i64>, Self::Error>>;
    /// Marks `hour` closed.
    fn mark_pruned(&mut self, hour: i64) -> impl Future<Output = Result<(), Self::Error>>;
}

impl Rollup {
    /// Writes what was accumulated into `store`, then closes the hours
    /// that ended more than [`GRACE_US`] before `received_us` (the arrival
    /// time of the batch).
    pub async fn write_to<S: RollupStore>(
        self,
        store: &mut S,
        received_us: i64,
    ) -> Result<(), S::Error> {
        for (hour, n) in &self.hours {
            store.add_events(*hour, *n).await?;
        }
        let mut pruned: HashMap<i64, bool> = HashMap::new();
        for ((table, hour, keys), accs) in self.rows {
            let closed = if TABLES[table].rank.is_some() {
                match pruned.get(&hour) {
                    Some(p) => *p,
                    None => {
                        let p = store.is_pruned(hour).await?;
                        pruned.insert(hour, p);
                        p
                    }
                }
            } else {
                false
            };
            write(store, table, hour, keys, accs, closed).await?;
        }
        close_hours(store, received_us).await
    }
}

/// Merges `accs` into the stored row of `(hour, keys)` of `table`. In a
/// closed hour of a bounded table, a key without a row goes to [`OTHER`].
async fn write<S: RollupStore>(
    store: &mut S,
    table: usize,
    hour: i64,
    mut keys: Vec<String>,
    mut accs: Vec<Acc>,
    closed: bool,
) -> Result<(), S::Error> {
    let sums_only = TABLES[table]
        .values
        .iter()
        .all(|(_, m)| !matches!(m, super::Merge::Hist(_)));
    let values = |accs: &[Acc]| accs.iter().map(Acc::value).collect::<Vec<_>>();
    // The common case, one statement: an open hour (or a table without a
    // bound) and values SQL can add up.
    if sums_only && !closed {
        return store
            .put(Put::Add, table, hour, &keys, &values(&accs))
            .await;
    }
    loop {
        match store.select(table, hour, &keys).await? {
            Some(stored) => {
                for (acc, v) in accs.iter_mut().zip(&stored) {
                    acc.merge_stored(v);
                }
            }
            None if closed
                && keys.last().is_some_and(|k| k != OTHER)
                && store.kept(table, hour, &keys[0]).await? >= TOP_N as i64 =>
            {
                if let Some(k) = keys.last_mut() {
                    *k = OTHER.to_string();
                }
                continue;
            }
            None => {}
        }
        return store
            .put(Put::Replace, table, hour, &keys, &values(&accs))
            .await;
    }
}

/// Prunes the bounded tables of every open hour that ended more than
/// [`GRACE_US`] before `now_us`, and marks it closed.
async fn close_hours<S: RollupStore>(store: &mut S, now_us: i64) -> Result<(), S::Error> {
    for hour in store.open_hours(now_us - HOUR_US - GRACE_US).await? {
        for table in [TALKERS, NAMES] {
            prune(store, table, hour).await?;
        }
        store.mark_pruned(hour).await?;
    }
    Ok(())
}

/// Keeps the top [`TOP_N`] keys of each group of `table` in `hour` and
/// folds the rest into [`OTHER`].
async fn prune<S: RollupStore>(store: &mut S, table: usize, hour: i64) -> Result<(), S::Error> {
    for group in store.crowded(table, hour).await? {
        let sums = store.take_beyond(table, hour, &group).await?;
        let accs = sums.into_iter().map(Acc::Int).collect();
        write(
            store,
            table,
            hour,
            vec![group, OTHER.to_string()],
            accs,
            true,
        )
        .await?;
    }
    Ok(())
}
