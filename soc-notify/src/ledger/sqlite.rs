//! The embedded SOC's ledger: the tenant's log in the store
//! (`events.db`), its record (`notifications.db`, [`crate::record`]) and
//! the store's `notify` cursor, all SQLite, every call on the blocking
//! pool.
//!
//! The position is the record's `progress`, moved in the record's
//! transaction with the groups; the store's cursor follows it afterwards
//! for `owlet-soc status`, and a restart resumes at the later of the two.
//! One `owlet-soc serve` owns the store, so [`Ledgers::open`] never stands
//! by.

use std::collections::HashSet;

use owlet_soc_store::{Cursors, Store, StoredEvent, TenantReader};

use super::{Ledger, Ledgers, Target, on_blocking};
use crate::contacts::{Contact, Watch};
use crate::error::{NotifyError, Result};
use crate::notifier::CONSUMER;
use crate::record::{Attempt, DueGroup, Job, Join, Record};

/// The store's tenants.
pub struct SqliteLedgers {
    store: Store,
}

impl SqliteLedgers {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

impl Ledgers for SqliteLedgers {
    type Ledger = SqliteLedger;

    async fn tenants(&self) -> Result<Vec<String>> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.tenants())
            .await
            .map_err(|e| NotifyError::Join(e.to_string()))?
            .map_err(NotifyError::from)
    }

    async fn open(&self, tenant: &str) -> Result<Option<SqliteLedger>> {
        let store = self.store.clone();
        let tenant = tenant.to_string();
        let files = tokio::task::spawn_blocking(move || -> Result<Files> {
            let dir = store.tenant_dir(&tenant)?;
            Ok(Files {
                reader: store.reader(&tenant)?,
                record: Record::open(&dir, &tenant)?,
                cursors: Cursors::open(store.root())?,
                contacts: Watch::new(store.root(), &tenant),
                tenant,
            })
        })
        .await
        .map_err(|e| NotifyError::Join(e.to_string()))??;
        Ok(Some(SqliteLedger { files: Some(files) }))
    }
}

/// One tenant's files.
struct Files {
    tenant: String,
    reader: TenantReader,
    record: Record,
    cursors: Cursors,
    contacts: Watch,
}

pub struct SqliteLedger {
    files: Option<Files>,
}

impl Ledger for SqliteLedger {
    async fn events(&mut self, limit: usize) -> Result<Vec<StoredEvent>> {
        on_blocking(&mut self.files, move |f| {
            let position = f
                .record
                .progress()?
                .max(f.cursors.get(CONSUMER, &f.tenant)?);
            Ok(f.reader.read_after(position, limit)?)
        })
        .await
    }

    async fn ingest(
        &mut self,
        last_id: i64,
        joins: Vec<Join>,
        zone: &'static str,
        now_us: i64,
    ) -> Result<()> {
        on_blocking(&mut self.files, move |f| {
            f.record.ingest(last_id, &joins, zone, now_us)?;
            f.cursors
                .advance(CONSUMER, &f.tenant, last_id, joins.len() as u64)?;
            Ok(())
        })
        .await
    }

    async fn due_groups(&mut self, now_us: i64) -> Result<Vec<DueGroup>> {
        on_blocking(&mut self.files, move |f| f.record.due_groups(now_us)).await
    }

    async fn hold(&mut self, id: i64, until_us: i64) -> Result<()> {
        on_blocking(&mut self.files, move |f| f.record.hold(id, until_us)).await
    }

    async fn compose(
        &mut self,
        id: i64,
        subject: String,
        body: String,
        targets: Vec<Target>,
        now_us: i64,
    ) -> Result<()> {
        on_blocking(&mut self.files, move |f| {
            f.record.compose(id, &subject, &body, &targets, now_us)
        })
        .await
    }

    async fn due_jobs(
        &mut self,
        now_us: i64,
        busy: HashSet<(i64, String)>,
        limit: usize,
    ) -> Result<Vec<Job>> {
        on_blocking(&mut self.files, move |f| {
            f.record.due_jobs(now_us, &busy, limit)
        })
        .await
    }

    async fn attempted(
        &mut self,
        job: &Job,
        started_us: i64,
        ended_us: i64,
        outcome: Attempt,
    ) -> Result<()> {
        let (nid, channel) = (job.notification_id, job.channel.clone());
        on_blocking(&mut self.files, move |f| {
            f.record
                .attempted(nid, &channel, started_us, ended_us, &outcome)
        })
        .await
    }

    async fn failed(&mut self, error: String) -> Result<()> {
        on_blocking(&mut self.files, move |f| {
            Ok(f.cursors.failed(CONSUMER, &f.tenant, &error)?)
        })
        .await
    }

    async fn next_due(&mut self, now_us: i64) -> Result<Option<i64>> {
        on_blocking(&mut self.files, move |f| f.record.next_due(now_us)).await
    }

    async fn contacts(&mut self) -> Result<Vec<Contact>> {
        on_blocking(&mut self.files, |f| Ok(f.contacts.current().to_vec())).await
    }

    async fn forget_expired(&mut self) -> Result<usize> {
        // The embedded SOC forgets in the same step as its retention
        // deletes the events (`owlet-soc serve`, `record::forget_through`),
        // with the deleted ids in hand.
        Ok(0)
    }
}
