//! Reading what the writer stored, for the consumers of the scaled-out
//! SOC's PostgreSQL (SIEM outputs, notifications): which tenants it
//! stores, whether a tenant's `events` table exists yet, and the events
//! after a position, in batches.
//!
//! Guarantees:
//! * [`events_after`] returns `tenant_<t>.events` rows with `id > after`
//!   in `id` order, at most `limit` of them (memory stays bounded). `id`
//!   follows commit order (one writer per tenant, one transaction at a
//!   time), so nothing committed later can appear below a position once
//!   read past.
//! * It never writes: a reader's position lives in [`crate::cursor`].
//! * **Zone**: the bus carries only the event's protobuf, so the agent's
//!   zone is not stored in this mode; events carry [`ZONE`] (`UTC`).
//!   Event times are UTC in both modes.

use owlet_proto::v1::Event;
use owlet_soc_store::StoredEvent;
use prost::Message as _;
use tokio_postgres::GenericClient;

use crate::BusError;
use crate::writer::{CURSOR_CONSUMER, pg_error, schema_of};

/// The zone stored events carry in this mode (see the module doc).
pub const ZONE: &str = "UTC";

/// The tenants the writer stores (it keeps a cursor for each), by name.
pub async fn tenants(pg: &impl GenericClient) -> Result<Vec<String>, BusError> {
    let rows = pg
        .query(
            "SELECT tenant FROM owlet_bus.cursors WHERE consumer = $1 ORDER BY tenant",
            &[&CURSOR_CONSUMER],
        )
        .await
        .map_err(pg_error)?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// The tenants whose `events` table the writer made, by name: those a
/// reader of the stored events can read.
pub async fn tenants_with_events(pg: &impl GenericClient) -> Result<Vec<String>, BusError> {
    let mut out = Vec::new();
    for tenant in tenants(pg).await? {
        if table_exists(pg, &tenant).await? {
            out.push(tenant);
        }
    }
    Ok(out)
}

/// Whether the writer made `tenant`'s `events` table yet (it claims the
/// tenant's stream just before).
pub async fn table_exists(pg: &impl GenericClient, tenant: &str) -> Result<bool, BusError> {
    let table = format!("{}.events", schema_of(tenant));
    Ok(pg
        .query_one("SELECT to_regclass($1::text) IS NOT NULL", &[&table])
        .await
        .map_err(pg_error)?
        .get(0))
}

/// Up to `limit` of `tenant`'s stored events with `id > after`, in `id`
/// order.
pub async fn events_after(
    pg: &impl GenericClient,
    tenant: &str,
    after: i64,
    limit: usize,
) -> Result<Vec<StoredEvent>, BusError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let sql = format!(
        "SELECT id, agent, seq, kind, time_us, received_us, body FROM {}.events WHERE id > $1 ORDER BY id LIMIT $2",
        schema_of(tenant)
    );
    let rows = pg.query(&sql, &[&after, &limit]).await.map_err(pg_error)?;
    Ok(rows
        .iter()
        .map(|r| {
            let body: &[u8] = r.get(6);
            StoredEvent {
                id: r.get(0),
                tenant: tenant.to_string(),
                agent: r.get(1),
                // NULL for the SOC's own records (liveness alerts).
                seq: r
                    .get::<_, Option<i64>>(2)
                    .and_then(|s| u64::try_from(s).ok()),
                kind: r.get(3),
                time_us: r.get(4),
                received_us: r.get(5),
                zone: ZONE.to_string(),
                event: Event::decode(body).ok(),
            }
        })
        .collect())
}
