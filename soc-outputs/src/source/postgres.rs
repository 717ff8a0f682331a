//! The scaled-out SOC's source: the tenants' `events` tables in PostgreSQL
//! (written by `owlet-soc writer`) and the cursors of `owlet_bus.cursors`
//! (`owlet_soc_bus::cursor`), consumer `output:<name>`.
//!
//! * **Tenants**: those the writer stores (it keeps a cursor per tenant,
//!   consumer `store`) whose `events` table exists, filtered
//!   by the output's `tenants`.
//! * **One process per (output, tenant).** A tenant is read only under its
//!   cursor's advisory lock, held by this source's connection. Several
//!   `owlet-soc outputs` processes with the same output split the tenants;
//!   the others stand by and try again every [`STANDBY_POLL`], and take a
//!   tenant over at its committed position when the holder's connection
//!   ends (process killed, host gone).
//! * **A lost connection loses every claim.** After any failure with the
//!   connection closed, the source forgets its claims and connects again
//!   on the next round, so it never advances a cursor it no longer holds;
//!   the cursor never moves back either way (`GREATEST`).
//! * **Reads** are `owlet_soc_bus::stored::events_after`: the events after
//!   the cursor in `id` (commit) order, so nothing committed later can
//!   appear below the cursor.
//! * **Zone**: the bus carries only the event's protobuf, so the agent's
//!   zone is not stored in this mode; events carry `UTC` (`event.timezone`
//!   in ECS). Event times are UTC in both modes.

use std::collections::HashMap;
use std::time::Instant;

use owlet_soc_bus::cursor::{self, Claim};
use owlet_soc_bus::stored::{self, events_after, table_exists};
use owlet_soc_bus::writer::{STANDBY_POLL, connect_postgres};
use owlet_soc_store::StoredEvent;
use tokio_postgres::Client;

use super::Source;
use crate::{OutputConfig, OutputError, OutputStatus};

/// The zone stored events carry in this mode (see the module doc).
pub use owlet_soc_bus::stored::ZONE;

/// The cursor name of output `name` in `owlet_bus.cursors`.
pub fn consumer_of(output: &str) -> String {
    format!("output:{output}")
}

/// One output's view of the scaled-out store.
pub struct Postgres {
    conninfo: String,
    consumer: String,
    config: OutputConfig,
    pg: Option<Client>,
    /// The tenants this connection holds, with their positions.
    claims: HashMap<String, Claim>,
    /// Tenants another process holds: not tried again before this.
    standby: HashMap<String, Instant>,
}

impl Postgres {
    /// A source for `config` on the PostgreSQL of `conninfo`; connects on
    /// first use (and again after losing the connection).
    pub fn new(conninfo: String, config: &OutputConfig) -> Self {
        Self {
            conninfo,
            consumer: consumer_of(&config.name),
            config: config.clone(),
            pg: None,
            claims: HashMap::new(),
            standby: HashMap::new(),
        }
    }

    /// Connects again when there is no connection or it closed (then
    /// every claim went with the old one).
    async fn ensure_connected(&mut self) -> Result<(), OutputError> {
        if self.pg.as_ref().is_none_or(Client::is_closed) {
            self.forget();
            self.pg = Some(connect_postgres(&self.conninfo).await?);
        }
        Ok(())
    }

    /// Drops the connection's claims (it is closed or about to be).
    fn forget(&mut self) {
        if !self.claims.is_empty() {
            tracing::warn!(output = %self.config.name, tenants = self.claims.len(),
                "PostgreSQL connection lost: its tenants' locks went with it; claiming them again");
        }
        self.pg = None;
        self.claims.clear();
        self.standby.clear();
    }

    /// `e` as the loop's error; forgets the claims when the connection
    /// closed with it.
    fn failure(&mut self, e: impl Into<OutputError>) -> OutputError {
        if self.pg.as_ref().is_none_or(Client::is_closed) {
            self.forget();
        }
        e.into()
    }

    /// The wanted tenants the writer stores.
    async fn stored_tenants(&mut self) -> Result<Vec<String>, OutputError> {
        self.ensure_connected().await?;
        let pg = self.pg.as_ref().ok_or_else(lost)?;
        let mut tenants = stored::tenants(pg).await?;
        tenants.retain(|tenant| self.config.wants(tenant));
        Ok(tenants)
    }

    /// Tries to take `tenant` (unless it stood by less than
    /// [`STANDBY_POLL`] ago, or its table is not made yet); true when this
    /// connection holds it.
    async fn hold(&mut self, tenant: &str) -> Result<bool, OutputError> {
        if self.claims.contains_key(tenant) {
            return Ok(true);
        }
        let now = Instant::now();
        if self.standby.get(tenant).is_some_and(|at| *at > now) {
            return Ok(false);
        }
        let pg = self.pg.as_ref().ok_or_else(lost)?;
        if !table_exists(pg, tenant).await? {
            return Ok(false);
        }
        match cursor::claim(pg, &self.consumer, tenant).await? {
            Some(claim) => {
                tracing::info!(output = %self.config.name, %tenant, position = claim.position,
                    "output: holding the tenant's cursor; sending from there");
                self.standby.remove(tenant);
                self.claims.insert(tenant.to_string(), claim);
                Ok(true)
            }
            None => {
                if !self.standby.contains_key(tenant) {
                    tracing::info!(output = %self.config.name, %tenant,
                        "output: another process sends this tenant; standing by to take over");
                }
                self.standby.insert(tenant.to_string(), now + STANDBY_POLL);
                Ok(false)
            }
        }
    }

    async fn held_tenants(&mut self) -> Result<Vec<String>, OutputError> {
        let mut held = Vec::new();
        for tenant in self.stored_tenants().await? {
            if self.hold(&tenant).await? {
                held.push(tenant);
            }
        }
        Ok(held)
    }

    async fn read(
        &mut self,
        tenant: &str,
        limit: usize,
    ) -> Result<(i64, Vec<StoredEvent>), OutputError> {
        let after = self
            .claims
            .get(tenant)
            .ok_or_else(|| not_held(tenant))?
            .position;
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let pg = self.pg.as_ref().ok_or_else(lost)?;
        let events = events_after(pg, tenant, after, limit).await?;
        Ok((after, events))
    }
}

/// Every configured output's position, lag and errors in every tenant it
/// sends, read from `owlet_bus.cursors` and the tenants' tables (for
/// `owlet-soc outputs --status`). `lag` counts the stored events after the
/// position (ids have holes here, so it is not `last_id - position`).
pub async fn status(
    conninfo: &str,
    outputs: &[OutputConfig],
) -> Result<Vec<OutputStatus>, OutputError> {
    let pg = connect_postgres(conninfo).await?;
    let tenants = stored::tenants_with_events(&pg).await?;
    let mut out = Vec::new();
    for output in outputs {
        for tenant in tenants.iter().filter(|t| output.wants(t)) {
            let r = owlet_soc_bus::status::reader(&pg, &consumer_of(&output.name), tenant).await?;
            out.push(OutputStatus {
                output: output.name.clone(),
                kind: output.kind.as_str(),
                tenant: r.tenant,
                position: r.standing.position,
                last_id: r.last_id,
                lag: r.lag,
                delivered: r.standing.delivered,
                errors: r.standing.errors,
                last_error: r.standing.last_error,
                updated_us: r.standing.updated_us,
            });
        }
    }
    Ok(out)
}

fn lost() -> OutputError {
    OutputError::Delivery("not connected to PostgreSQL (connecting again)".into())
}

fn not_held(tenant: &str) -> OutputError {
    OutputError::Delivery(format!(
        "this process no longer holds tenant {tenant:?}'s cursor (its PostgreSQL connection was lost); the batch is sent again by whoever holds it"
    ))
}

impl Source for Postgres {
    const CONTIGUOUS_IDS: bool = false;

    async fn tenants(&mut self) -> Result<Vec<String>, OutputError> {
        let held = self.held_tenants().await;
        held.map_err(|e| self.failure(e))
    }

    async fn next_batch(
        &mut self,
        tenant: &str,
        limit: usize,
    ) -> Result<(i64, Vec<StoredEvent>), OutputError> {
        let batch = self.read(tenant, limit).await;
        batch.map_err(|e| self.failure(e))
    }

    async fn advance(
        &mut self,
        tenant: &str,
        last_id: i64,
        delivered: u64,
    ) -> Result<(), OutputError> {
        let to = u64::try_from(last_id).unwrap_or(0);
        let moved = match (self.pg.as_ref(), self.claims.get_mut(tenant)) {
            (Some(pg), Some(claim)) => claim
                .advance_to(pg, to, delivered)
                .await
                .map_err(OutputError::from),
            (None, _) => Err(lost()),
            (_, None) => Err(not_held(tenant)),
        };
        moved.map_err(|e| self.failure(e))
    }

    async fn failed(&mut self, tenant: &str, error: &str) -> Result<(), OutputError> {
        let Some(pg) = self.pg.as_ref() else {
            return Err(lost());
        };
        let Some(claim) = self.claims.get(tenant) else {
            return Ok(()); // not ours: its holder records its own failures
        };
        let recorded = claim.failed(pg, error).await.map_err(OutputError::from);
        recorded.map_err(|e| self.failure(e))
    }
}
