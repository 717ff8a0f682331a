//! The seam between the output loop ([`crate::runner`]) and where the
//! events and the cursors live: the embedded SOC's SQLite store
//! ([`sqlite`]) or the scaled-out SOC's PostgreSQL ([`postgres`]). The
//! loop — batching, per-tenant backoff, confirm-then-advance — is the same
//! code for both; only the cursor differs.
//!
//! What every source guarantees to the loop:
//! * [`Source::tenants`] names only tenants the output wants and this
//!   process may read now (PostgreSQL: the ones whose cursor lock it
//!   holds; another process running the same output stands by for the
//!   rest);
//! * [`Source::next_batch`] returns the events after the cursor, in log
//!   order, at most `limit` of them (memory stays bounded);
//! * [`Source::advance`] is durable on return and never moves a cursor
//!   back; nothing else moves it.
//!
//! A source never decides that a batch is delivered: only the loop calls
//! `advance`, after the destination confirmed.

pub mod postgres;
pub mod sqlite;

use std::future::Future;

use owlet_soc_store::StoredEvent;

use crate::OutputError;

/// Where an output reads its tenants' events and keeps its cursors.
pub trait Source: Send {
    /// True when a tenant's ids are 1, 2, 3… without holes, so that a hole
    /// after the cursor can only be retention deleting undelivered events
    /// (SQLite). PostgreSQL's `bigserial` leaves holes of its own (a rolled
    /// back insert, a skipped duplicate), so there a hole says nothing.
    const CONTIGUOUS_IDS: bool;

    /// The tenants the output wants that this process may read now.
    fn tenants(&mut self) -> impl Future<Output = Result<Vec<String>, OutputError>> + Send;

    /// The cursor's position in `tenant`'s log and up to `limit` events
    /// after it, in log order.
    fn next_batch(
        &mut self,
        tenant: &str,
        limit: usize,
    ) -> impl Future<Output = Result<(i64, Vec<StoredEvent>), OutputError>> + Send;

    /// Moves the cursor to `last_id` after the destination confirmed
    /// `delivered` events (durable on return; never backwards).
    fn advance(
        &mut self,
        tenant: &str,
        last_id: i64,
        delivered: u64,
    ) -> impl Future<Output = Result<(), OutputError>> + Send;

    /// Records a failed attempt on the cursor (`errors`, `last_error`).
    fn failed(
        &mut self,
        tenant: &str,
        error: &str,
    ) -> impl Future<Output = Result<(), OutputError>> + Send;
}
