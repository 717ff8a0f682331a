//! The embedded SOC's source: each tenant's SQLite log
//! (`owlet-soc-store`) and the store's cursor file, the consumer named
//! after the output. Every call runs on a blocking thread
//! (`spawn_blocking`): SQLite never blocks the async workers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use owlet_soc_store::{Cursors, Store, StoreError, StoredEvent, TenantReader};

use super::Source;
use crate::{OutputConfig, OutputError};

/// The store side of one output: its cursors and open tenant readers.
struct Side {
    store: Store,
    cursors: Cursors,
    readers: HashMap<String, TenantReader>,
    consumer: String,
    config: OutputConfig,
}

/// One output's view of the embedded store.
pub struct Sqlite {
    side: Arc<Mutex<Side>>,
}

impl Sqlite {
    /// Opens the store at `root` (creating its cursor file) for `config`.
    pub async fn open(root: PathBuf, config: &OutputConfig) -> Result<Self, OutputError> {
        let config = config.clone();
        let side = tokio::task::spawn_blocking(move || -> Result<Side, StoreError> {
            Ok(Side {
                store: Store::open(&root)?,
                cursors: Cursors::open(&root)?,
                readers: HashMap::new(),
                consumer: config.name.clone(),
                config,
            })
        })
        .await
        .map_err(|e| OutputError::Delivery(format!("store task failed: {e}")))??;
        Ok(Self {
            side: Arc::new(Mutex::new(side)),
        })
    }

    /// Runs `f` on the store side on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Side) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, OutputError> {
        let side = self.side.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = side.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| OutputError::Delivery(format!("store task failed: {e}")))?
        .map_err(OutputError::from)
    }
}

impl Source for Sqlite {
    const CONTIGUOUS_IDS: bool = true;

    async fn tenants(&mut self) -> Result<Vec<String>, OutputError> {
        self.blocking(|s| {
            let tenants: Vec<String> = s
                .store
                .tenants()?
                .into_iter()
                .filter(|t| s.config.wants(t))
                .collect();
            // Close the readers of tenants that are gone (contract ended).
            s.readers.retain(|t, _| tenants.contains(t));
            Ok(tenants)
        })
        .await
    }

    async fn next_batch(
        &mut self,
        tenant: &str,
        limit: usize,
    ) -> Result<(i64, Vec<StoredEvent>), OutputError> {
        let tenant = tenant.to_string();
        self.blocking(move |s| {
            let after = s.cursors.get(&s.consumer, &tenant)?;
            if !s.readers.contains_key(&tenant) {
                let reader = s.store.reader(&tenant)?;
                s.readers.insert(tenant.clone(), reader);
            }
            let events = s.readers[&tenant].read_after(after, limit);
            if events.is_err() {
                // Reopen next time (the tenant's file may have been replaced).
                s.readers.remove(&tenant);
            }
            Ok((after, events?))
        })
        .await
    }

    async fn advance(
        &mut self,
        tenant: &str,
        last_id: i64,
        delivered: u64,
    ) -> Result<(), OutputError> {
        let tenant = tenant.to_string();
        self.blocking(move |s| s.cursors.advance(&s.consumer, &tenant, last_id, delivered))
            .await
    }

    async fn failed(&mut self, tenant: &str, error: &str) -> Result<(), OutputError> {
        let (tenant, error) = (tenant.to_string(), error.to_string());
        self.blocking(move |s| s.cursors.failed(&s.consumer, &tenant, &error))
            .await
    }
}
