//! What the scaled-out SOC's consumers are doing, per tenant, for the
//! operator. The writers ([`tenants`], `owlet-soc writer --status`): how
//! far the tenant's stream goes, where the writers' committed position is,
//! whether a writer holds the tenant now, how much PostgreSQL keeps, and
//! its agents' liveness. A reader of the stored events ([`reader`]: an
//! output, the notifier, the rollup consumer; their roles' `--status`):
//! its position, the stored events after it, whether it is held, its
//! delivery figures and last error.
//! Read-only: it takes no lock and moves nothing.

use std::time::Duration;

use async_nats::jetstream;
use tokio_postgres::Client;

use crate::cursor::Standing;
use crate::writer::{CURSOR_CONSUMER, pg_error, schema_of};
use crate::{BusError, cursor, partitions, stream_name};

/// One tenant as the writers have it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantStatus {
    pub tenant: String,
    /// The stream's last sequence (`None`: the stream is gone).
    pub stream_last: Option<u64>,
    /// The writers' committed position in it.
    pub position: u64,
    /// Messages in the stream not stored yet.
    pub lag: u64,
    /// A writer holds the tenant now (else none runs for it, or all stand
    /// by and one takes it within seconds).
    pub held: bool,
    /// Day partitions kept, and their bytes (tables and indexes).
    pub days: usize,
    pub bytes: u64,
    /// Agents seen, and those silent now.
    pub agents: u64,
    pub silent: u64,
    /// The tenant's retention (as its stream carries it).
    pub max_age: Option<Duration>,
}

/// Every tenant a writer has stored, by name.
pub async fn tenants(js: &jetstream::Context, pg: &Client) -> Result<Vec<TenantStatus>, BusError> {
    let mut out = Vec::new();
    for position in cursor::positions(pg, CURSOR_CONSUMER).await? {
        let tenant = position.tenant;
        let config = match js.get_stream(stream_name(&tenant)).await {
            Ok(mut stream) => Some(
                stream
                    .info()
                    .await
                    .map_err(|e| BusError::Stream {
                        stream: stream_name(&tenant),
                        reason: e.to_string(),
                    })?
                    .clone(),
            ),
            Err(_) => None,
        };
        let stream_last = config.as_ref().map(|info| info.state.last_sequence);
        let (days, bytes) = partitions::usage(pg, &tenant).await?;
        // The writer claims a tenant before it creates its tables: a tenant
        // claimed a moment ago may have none yet (no agents then).
        let counts = pg
            .query_one(
                &format!(
                    "SELECT count(*), count(*) FILTER (WHERE silent) FROM {}.agents",
                    schema_of(&tenant)
                ),
                &[],
            )
            .await;
        let (agents, silent): (i64, i64) = match counts {
            Ok(row) => (row.get(0), row.get(1)),
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => (0, 0),
            Err(e) => return Err(pg_error(e)),
        };
        out.push(TenantStatus {
            stream_last,
            position: position.position,
            lag: stream_last.unwrap_or(0).saturating_sub(position.position),
            held: position.held,
            days,
            bytes,
            agents: u64::try_from(agents).unwrap_or(0),
            silent: u64::try_from(silent).unwrap_or(0),
            max_age: config
                .as_ref()
                .and_then(|info| crate::Retention::of_stream(&info.config).max_age),
            tenant,
        });
    }
    Ok(out)
}

/// A reader of one tenant's stored events, as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderStatus {
    pub tenant: String,
    /// Its cursor's row (all zero when it never claimed the tenant).
    pub standing: Standing,
    /// Whether it ever claimed the tenant (has a cursor row).
    pub started: bool,
    /// The last id stored in the tenant's `events`.
    pub last_id: i64,
    /// Stored events after its position (ids have holes, so this is a
    /// count, not `last_id - position`).
    pub lag: i64,
}

/// Where `consumer` stands in `tenant`'s stored events (which must exist:
/// see [`crate::stored::tenants_with_events`]).
pub async fn reader(pg: &Client, consumer: &str, tenant: &str) -> Result<ReaderStatus, BusError> {
    let standing = cursor::standing(pg, consumer, tenant).await?;
    let started = standing.is_some();
    let standing = standing.unwrap_or_default();
    // Two index reads (the `id` index: its end, and the ids after the
    // position), not a scan of every stored event: the cost follows the
    // lag, not the tenant's size.
    let events = format!("{}.events", schema_of(tenant));
    let figures = pg
        .query_one(
            &format!(
                "SELECT (SELECT coalesce(max(id), 0) FROM {events}),
                        (SELECT count(*) FROM {events} WHERE id > $1)"
            ),
            &[&standing.position],
        )
        .await
        .map_err(pg_error)?;
    Ok(ReaderStatus {
        tenant: tenant.to_string(),
        standing,
        started,
        last_id: figures.get(0),
        lag: figures.get(1),
    })
}
