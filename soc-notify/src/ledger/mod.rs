//! The seam between the notifier's worker ([`crate::notifier`]) and where
//! a tenant's events, record and cursor live: the embedded SOC's SQLite
//! files ([`sqlite`]: the store's log, `notifications.db`, the store's
//! cursors) or the scaled-out SOC's PostgreSQL ([`postgres`]: the writer's
//! `tenant_<t>.events`, the record's tables in the same schema,
//! `owlet_bus.cursors`). Grouping, quiet hours, composing, retries and
//! backoff are the worker's, one code for both.
//!
//! What every ledger guarantees to the worker:
//! * [`Ledgers::open`] gives a tenant's ledger only to one process at a
//!   time where several may run (PostgreSQL: the `notify` cursor's
//!   advisory lock, held by the ledger's own connection); `None` means
//!   another process holds it and this one stands by;
//! * [`Ledger::events`] returns the events after the position, in log
//!   order, at most `limit` (memory stays bounded);
//! * [`Ledger::ingest`] stores the groups the events joined and moves the
//!   position past them in one transaction: after a crash nothing is
//!   grouped twice and nothing is lost;
//! * retry state (deliveries, attempts, next attempt) is in the record, so
//!   a restart or a takeover resumes it where it was;
//! * a ledger holds one tenant only: its events, record and contacts.
//!
//! SQLite calls run on the blocking pool; PostgreSQL's are async.

pub mod postgres;
pub mod sqlite;

use std::collections::HashSet;
use std::future::Future;

use owlet_soc_store::StoredEvent;

use crate::contacts::Contact;
use crate::error::{NotifyError, Result};
use crate::record::{Attempt, DueGroup, Job, Join};

/// Where the tenants' ledgers come from.
pub trait Ledgers: Send + Sync + 'static {
    type Ledger: Ledger;

    /// The tenants whose events exist now (whether this process may read
    /// them is [`Ledgers::open`]'s answer).
    fn tenants(&self) -> impl Future<Output = Result<Vec<String>>> + Send;

    /// `tenant`'s ledger, or `None` while another process holds it.
    fn open(&self, tenant: &str) -> impl Future<Output = Result<Option<Self::Ledger>>> + Send;
}

/// One delivery channel as a composed notification lists it: (name,
/// type, recipients).
pub type Target = (String, &'static str, String);

/// One tenant's events, record and cursor.
pub trait Ledger: Send + 'static {
    /// Up to `limit` events after the position, in log order.
    fn events(&mut self, limit: usize) -> impl Future<Output = Result<Vec<StoredEvent>>> + Send;

    /// Adds `joins` to their open groups (opening groups as needed) and
    /// moves the position to `last_id`, in one transaction.
    fn ingest(
        &mut self,
        last_id: i64,
        joins: Vec<Join>,
        zone: &'static str,
        now_us: i64,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Groups whose window (or quiet hours) ended by `now_us`.
    fn due_groups(&mut self, now_us: i64) -> impl Future<Output = Result<Vec<DueGroup>>> + Send;

    /// Quiet hours: group `id` waits until `until_us`, still open.
    fn hold(&mut self, id: i64, until_us: i64) -> impl Future<Output = Result<()>> + Send;

    /// Closes group `id` with its message and queues one delivery per
    /// target (none: `dropped`).
    fn compose(
        &mut self,
        id: i64,
        subject: String,
        body: String,
        targets: Vec<Target>,
        now_us: i64,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Deliveries due by `now_us`, not in `busy`, at most `limit`.
    fn due_jobs(
        &mut self,
        now_us: i64,
        busy: HashSet<(i64, String)>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Job>>> + Send;

    /// Records one attempt of `job` and settles its notification.
    fn attempted(
        &mut self,
        job: &Job,
        started_us: i64,
        ended_us: i64,
        outcome: Attempt,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Counts a failed delivery on the tenant's `notify` cursor (for the
    /// operator's status).
    fn failed(&mut self, error: String) -> impl Future<Output = Result<()>> + Send;

    /// The earliest time after `now_us` something falls due.
    fn next_due(&mut self, now_us: i64) -> impl Future<Output = Result<Option<i64>>> + Send;

    /// The tenant's contacts now (re-read when their file changed).
    fn contacts(&mut self) -> impl Future<Output = Result<Vec<Contact>>> + Send;

    /// Retention of the record: forgets the finished notifications all of
    /// whose events the store's retention deleted, with their events and
    /// deliveries (as [`crate::record::forget_through`]); returns how many.
    fn forget_expired(&mut self) -> impl Future<Output = Result<usize>> + Send;
}

/// Runs `f` on `slot`'s value on the blocking pool and puts the value
/// back. A panic in `f` loses the value: every later call then fails and
/// the worker is restarted, opening the tenant again.
pub(crate) async fn on_blocking<S, T>(
    slot: &mut Option<S>,
    f: impl FnOnce(&mut S) -> Result<T> + Send + 'static,
) -> Result<T>
where
    S: Send + 'static,
    T: Send + 'static,
{
    let mut value = slot.take().ok_or_else(|| {
        NotifyError::Join("an earlier task on this tenant's files failed; reopening".into())
    })?;
    let (value, out) = tokio::task::spawn_blocking(move || {
        let out = f(&mut value);
        (value, out)
    })
    .await
    .map_err(|e| NotifyError::Join(e.to_string()))?;
    *slot = Some(value);
    out
}
