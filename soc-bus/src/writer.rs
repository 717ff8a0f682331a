//! The store writer of the scaled-out SOC: per tenant stream, an ordered
//! JetStream consumer from the position committed in PostgreSQL, and one
//! transaction per batch that stores the events and moves the position.
//!
//! PostgreSQL layout, per tenant (created by the writer, idempotently):
//! * schema `tenant_<tenant>`, table `events`: `id` (the readers' cursor),
//!   `agent`, `seq`, `stream_seq`, `received_us`, the typed columns of
//!   [`owlet_soc_store::Columns`] (same names and meaning as in
//!   `soc-store/SCHEMA.md`), `body bytea` (the `owlet.v1.Event` protobuf);
//!   partitioned by day of `received_us` ([`crate::partitions`]: retention
//!   drops whole days); indexes on `id` and `time_us`, and partial ones
//!   on `time_us` of alerts and file changes (the portal's lists, as in
//!   the embedded store);
//! * table `agents`: per agent, its mark (the highest `seq` stored) and
//!   its liveness ([`crate::liveness`]);
//! * table `check_state`: each check's latest result ([`crate::checks`]);
//! * role `owlet_tenant_<tenant>` (NOLOGIN; the operator gives it LOGIN and
//!   a password): USAGE on its schema and SELECT on its tables only.
//!   Nothing is granted to PUBLIC, so no tenant's role can read another's
//!   schema.
//! * the writer's position in each tenant stream: [`crate::cursor`]
//!   (schema `owlet_bus`, the writer's own).
//!
//! How a batch is stored (one transaction, on the tenant's own connection):
//! the messages above their agent's mark ([`crate::marks`]: the writer
//! holding the tenant keeps the marks it stored) are written, in stream
//! order, with one `COPY … FROM STDIN (FORMAT binary)` into `events`; one
//! statement raises the marks of the batch's agents, one notes its checks'
//! latest results; the tenant's cursor is set to the batch's last stream
//! sequence. A batch is what the consumer has delivered, up to
//! [`WriterConfig::batch`] messages or [`LINGER`] after the first,
//! whichever comes first.
//!
//! Guarantees:
//! * **Exactly once.** The position moves in the transaction that stores
//!   the rows, so a writer killed anywhere resumes right after what it
//!   committed, and there is no acknowledgement to lose. (This replaces
//!   the double acks of a durable consumer: the same guarantee without a
//!   window between commit and ack, and without the JetStream cluster
//!   replicating an ack per event, which cost it more CPU than storing
//!   the event; see bench/RESULTS.md.) The agents' marks, raised in the
//!   same transaction, still drop whatever comes twice anyway: a position
//!   set back by a database restore, or a tenant stream deleted and
//!   created again (its sequences start over, and the writer reads it
//!   from its start). An agent's events are on its subject once each, in
//!   ascending order (the receivers' guarantee), so "at or below the mark"
//!   is exactly "stored already"; a unique index on (agent, seq) is not
//!   needed, which a table partitioned by day could not enforce anyway.
//! * **One writer per tenant, any number of standbys.** The tenant's
//!   position is held by one connection at a time ([`crate::cursor`]).
//!   Writers on the same PostgreSQL split the tenants between them; when
//!   one dies, another takes its tenants over within [`STANDBY_POLL`].
//! * **Stream order.** Rows get their `id` in stream sequence order, and
//!   one transaction at a time per tenant commits, so `id` is a cursor for
//!   readers.
//! * **Nothing lost, or the loss named.** A failed commit moves nothing;
//!   the consumer starts again from the committed position. Messages that
//!   JetStream's own limits (`max_age`, `max_bytes`) removed before the
//!   writer stored them are logged as an error with their count.
//! * **Tenants apart**: one consumer, one connection, one schema per tenant.
//!   A tenant name longer than [`MAX_TENANT_BYTES`] is refused (its stream
//!   is not stored, with an error in the log): PostgreSQL would cut its
//!   schema and role names, and two tenants could share them.
//! * **Reconnects by itself.** A lost PostgreSQL or NATS connection ends
//!   the tenant's consumer with the reason in the log; it starts again
//!   (new connection, from the committed position) with a growing pause,
//!   and logs once when it stores again.
//!
//! It never decides what is a duplicate by anything but (agent, seq).
//! Retention: [`crate::partitions`], every [`RETENTION_EVERY`] and when a
//! tenant's consumer starts.
//!
//! Test builds only (feature `fault-hooks` and debug assertions, so never a
//! release binary): `OWLET_FAULT_WRITER_HOLD_AFTER_COMMIT=N` makes the
//! writer stop for good right after the commit of its N-th batch, so a
//! test can SIGKILL it exactly there ([`fault`]).

use std::collections::HashSet;
use std::pin::pin;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use owlet_soc_store::columns::{NAMES, Value};
use prost::Message as _;
use tokio_postgres::Statement;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

pub use tokio_postgres::Config as PgConfig;

use crate::checks;
use crate::cursor::{self, Claim};
use crate::liveness::{self, LivenessConfig};
use crate::marks::{self, Marks};
use crate::partitions;
use crate::{BusError, Origin, SEQ_HEADER, STREAM_PREFIX, origin_of, untoken};

/// How the writer consumes.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// libpq-style connection string (`host=… port=… user=… dbname=…`).
    pub postgres: String,
    /// Most messages committed in one transaction.
    pub batch: usize,
    /// When agents are judged silent ([`liveness`]).
    pub liveness: LivenessConfig,
}

impl WriterConfig {
    pub fn new(postgres: impl Into<String>) -> Self {
        Self {
            postgres: postgres.into(),
            batch: 2048,
            liveness: LivenessConfig::default(),
        }
    }
}

/// The writer's name in `owlet_bus.cursors`.
pub const CURSOR_CONSUMER: &str = "store";

/// How long a batch waits for more messages after its first.
pub const LINGER: Duration = Duration::from_millis(5);

/// Messages asked for in one pull request, in batches: the client asks
/// again when half are delivered, but only while the writer reads from it,
/// not while it stores a batch. Two batches' worth in flight keep the next
/// batch whole and waiting when a commit returns.
const PULL_BATCHES: usize = 2;

/// How often the tenant's retention is applied to its partitions.
pub const RETENTION_EVERY: Duration = Duration::from_secs(600);

/// How often a standby writer tries to take over a tenant another writer
/// holds.
pub const STANDBY_POLL: Duration = Duration::from_secs(3);

pub(crate) const SCHEMA_PREFIX: &str = "tenant_";
const ROLE_PREFIX: &str = "owlet_tenant_";

/// PostgreSQL's longest identifier in bytes (`NAMEDATALEN` - 1). It cuts
/// a longer one to this length with only a notice, so two tenants whose
/// names differ only after the cut would share a schema and a role.
pub const PG_MAX_IDENTIFIER: usize = 63;

/// The longest tenant name (bytes) the scaled-out SOC takes: its role name
/// (the longer prefix) still fits [`PG_MAX_IDENTIFIER`].
pub const MAX_TENANT_BYTES: usize = PG_MAX_IDENTIFIER - ROLE_PREFIX.len();
const _: () = assert!(ROLE_PREFIX.len() >= SCHEMA_PREFIX.len());

/// Refuses a tenant whose schema or role name PostgreSQL would cut.
pub fn check_tenant(tenant: &str) -> Result<(), BusError> {
    if tenant.len() > MAX_TENANT_BYTES {
        return Err(BusError::TenantTooLong {
            tenant: tenant.to_string(),
            bytes: tenant.len(),
        });
    }
    Ok(())
}

/// The schema of `tenant` (quoted identifier).
pub fn schema_of(tenant: &str) -> String {
    format!("\"{SCHEMA_PREFIX}{tenant}\"")
}

/// The read-only role of `tenant` (quoted identifier).
pub fn role_of(tenant: &str) -> String {
    format!("\"{ROLE_PREFIX}{tenant}\"")
}

#[derive(Clone, Copy)]
enum PgType {
    Int,
    Real,
    Text,
}

/// PostgreSQL type of a typed column (SCHEMA.md: INTEGER, REAL or TEXT).
fn pg_type(column: &str) -> PgType {
    match column {
        "time_us" | "latency_us" | "src_port" | "dst_port" | "protocol" | "bytes" | "packets" => {
            PgType::Int
        }
        "cpu_percent" | "memory_percent" | "disk_percent" | "load1" => PgType::Real,
        _ => PgType::Text,
    }
}

impl PgType {
    /// The type's name in the table's DDL.
    fn sql(self) -> &'static str {
        match self {
            PgType::Int => "bigint",
            PgType::Real => "double precision",
            PgType::Text => "text",
        }
    }

    /// The type on the wire (COPY's binary format).
    fn wire(self) -> Type {
        match self {
            PgType::Int => Type::INT8,
            PgType::Real => Type::FLOAT8,
            PgType::Text => Type::TEXT,
        }
    }
}

fn ddl(tenant: &str) -> String {
    let schema = schema_of(tenant);
    let role = role_of(tenant);
    let columns: String = NAMES
        .iter()
        .map(|name| {
            let ty = pg_type(name).sql();
            let null = if matches!(*name, "kind" | "time_us") {
                " NOT NULL"
            } else {
                ""
            };
            format!("  {name} {ty}{null},\n")
        })
        .collect();
    format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
REVOKE ALL ON SCHEMA {schema} FROM PUBLIC;
CREATE TABLE IF NOT EXISTS {schema}.events (
  id bigserial NOT NULL,
  agent text NOT NULL,
  seq bigint,
  stream_seq bigint,
  received_us bigint NOT NULL,
{columns}  body bytea NOT NULL
) PARTITION BY RANGE (received_us);
CREATE INDEX IF NOT EXISTS events_id ON {schema}.events (id);
CREATE INDEX IF NOT EXISTS events_time ON {schema}.events (time_us);
CREATE INDEX IF NOT EXISTS events_alerts ON {schema}.events (time_us) WHERE kind = 'alert';
CREATE INDEX IF NOT EXISTS events_changes ON {schema}.events (time_us) WHERE kind = 'file_change';
CREATE TABLE IF NOT EXISTS {schema}.agents (
  agent text PRIMARY KEY,
  seq bigint NOT NULL,
  first_seen_us bigint NOT NULL,
  last_heartbeat_us bigint,
  stopping boolean NOT NULL DEFAULT false,
  silent boolean NOT NULL DEFAULT false
);
REVOKE ALL ON {schema}.events, {schema}.agents FROM PUBLIC;
DO $$ BEGIN CREATE ROLE {role} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
GRANT USAGE ON SCHEMA {schema} TO {role};
GRANT SELECT ON {schema}.events, {schema}.agents TO {role};
{checks}",
        checks = checks::ddl(tenant, &role)
    )
}

/// The columns a batch writes: every column of `events` but `id`, in
/// table order.
fn stored_columns() -> Vec<&'static str> {
    let mut columns = vec!["agent", "seq", "stream_seq", "received_us"];
    columns.extend_from_slice(NAMES);
    columns.push("body");
    columns
}

/// The PostgreSQL types of [`stored_columns`], in the same order.
fn stored_types() -> Vec<Type> {
    let mut types = vec![Type::TEXT, Type::INT8, Type::INT8, Type::INT8];
    types.extend(NAMES.iter().map(|name| pg_type(name).wire()));
    types.push(Type::BYTEA);
    types
}

/// Writes a batch's rows into the tenant's `events` (PostgreSQL routes
/// each to its day's partition; `id` is given in the order of the rows).
fn copy_sql(tenant: &str) -> String {
    format!(
        "COPY {}.events ({}) FROM STDIN (FORMAT binary)",
        schema_of(tenant),
        stored_columns().join(", ")
    )
}

/// The statements of one tenant connection, prepared once.
struct Statements {
    copy: Statement,
    raise: Statement,
    checks: Statement,
}

impl Statements {
    async fn prepare(pg: &tokio_postgres::Client, tenant: &str) -> Result<Self, BusError> {
        Ok(Self {
            copy: pg.prepare(&copy_sql(tenant)).await.map_err(pg_error)?,
            raise: pg
                .prepare(&marks::raise_sql(tenant))
                .await
                .map_err(pg_error)?,
            checks: pg
                .prepare(&checks::upsert_sql(tenant))
                .await
                .map_err(pg_error)?,
        })
    }
}

/// One agent's event as it is stored: every column of `events` but `id`.
pub(crate) struct Row {
    pub(crate) agent: String,
    /// The agent's sequence number; `None` for a record the SOC made (a
    /// liveness alert).
    pub(crate) seq: Option<i64>,
    stream_seq: Option<i64>,
    received_us: i64,
    /// The typed columns.
    pub(crate) columns: owlet_soc_store::Columns,
    /// The `owlet.v1.Event` protobuf, unaltered.
    body: Bytes,
    /// For an agent's heartbeat (`agent_status`): whether it said goodbye.
    pub(crate) heartbeat: Option<bool>,
}

impl Row {
    /// One message as a row: an agent's sequenced event, or a record a
    /// receiver made about the agent (`seq` NULL); `None` for anything
    /// else (skipped, with a warning).
    fn of(message: &jetstream::Message, stream_seq: u64, received_us: i64) -> Option<Self> {
        let origin = origin_of(message.subject.as_str())?;
        let event = owlet_proto::v1::Event::decode(message.payload.clone()).ok()?;
        let stream_seq = Some(i64::try_from(stream_seq).ok()?);
        let columns = owlet_soc_store::Columns::of(&event);
        let (agent, seq, heartbeat) = match origin {
            Origin::Agent(agent) => {
                let seq = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(SEQ_HEADER))
                    .and_then(|v| v.as_str().parse::<u64>().ok())
                    .unwrap_or(event.seq);
                let seq = i64::try_from(seq).ok().filter(|&s| s > 0)?;
                let heartbeat =
                    (columns.kind == "agent_status").then_some(columns.state == Some("stopping"));
                (agent, Some(seq), heartbeat)
            }
            Origin::Record(agent) => (agent, None, None),
        };
        Some(Self {
            agent,
            seq,
            stream_seq,
            received_us,
            heartbeat,
            columns,
            body: message.payload.clone(),
        })
    }

    /// A record the SOC makes about `agent` (outside its sequence).
    pub(crate) fn soc_record(
        agent: &str,
        event: &owlet_proto::v1::Event,
        received_us: i64,
    ) -> Self {
        Self {
            agent: agent.to_string(),
            seq: None,
            stream_seq: None,
            received_us,
            heartbeat: None,
            columns: owlet_soc_store::Columns::of(event),
            body: Bytes::from(event.encode_to_vec()),
        }
    }

    /// A row of `agent` with `seq` (`None`: a record the SOC made) and
    /// no typed columns.
    #[cfg(test)]
    pub(crate) fn for_test(agent: &str, seq: Option<i64>) -> Self {
        Self {
            agent: agent.to_string(),
            seq,
            stream_seq: None,
            received_us: 0,
            columns: owlet_soc_store::Columns::default(),
            body: Bytes::new(),
            heartbeat: None,
        }
    }

    /// The row's cells in [`stored_columns`] order; `values` are its
    /// typed columns' (`self.columns.values()`).
    fn cells<'v>(&'v self, values: &'v [Value]) -> Vec<Cell<'v>> {
        let int = |v: Option<i64>| v.map_or(Cell::Null, Cell::Int);
        let mut cells = vec![
            Cell::Text(&self.agent),
            int(self.seq),
            int(self.stream_seq),
            Cell::Int(self.received_us),
        ];
        cells.extend(
            NAMES
                .iter()
                .zip(values)
                .map(|(name, value)| Cell::of(pg_type(name), value)),
        );
        cells.push(Cell::Bytes(&self.body));
        cells
    }
}

/// Inserts records the SOC made (no COPY: a few rows at a time).
pub(crate) async fn insert_records(
    tx: &tokio_postgres::Transaction<'_>,
    tenant: &str,
    rows: &[Row],
) -> Result<(), BusError> {
    if rows.is_empty() {
        return Ok(());
    }
    let columns = stored_columns();
    let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
    let insert = tx
        .prepare_typed(
            &format!(
                "INSERT INTO {}.events ({}) VALUES ({})",
                schema_of(tenant),
                columns.join(", "),
                placeholders.join(", ")
            ),
            &stored_types(),
        )
        .await
        .map_err(pg_error)?;
    for row in rows {
        let values = row.columns.values();
        let cells = row.cells(&values);
        let params: Vec<&(dyn ToSql + Sync)> =
            cells.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
        tx.execute(&insert, &params).await.map_err(pg_error)?;
    }
    Ok(())
}

/// One value as COPY writes it.
#[derive(Debug)]
enum Cell<'a> {
    Int(i64),
    Real(f64),
    Text(&'a str),
    Bytes(&'a [u8]),
    Null,
}

impl<'a> Cell<'a> {
    /// A typed column's value as a cell of its PostgreSQL type; NULL when
    /// the value does not fit the type (never, for the columns of
    /// `soc-store/SCHEMA.md`: a unit test holds it).
    fn of(ty: PgType, value: &'a Value) -> Self {
        match (ty, value) {
            (PgType::Int, Value::Integer(v)) => Cell::Int(*v),
            (PgType::Real, Value::Real(v)) => Cell::Real(*v),
            (PgType::Real, Value::Integer(v)) => Cell::Real(*v as f64),
            (PgType::Text, Value::Text(v)) => Cell::Text(v),
            _ => Cell::Null,
        }
    }
}

impl ToSql for Cell<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Cell::Int(v) => v.to_sql(ty, out),
            Cell::Real(v) => v.to_sql(ty, out),
            Cell::Text(v) => v.to_sql(ty, out),
            Cell::Bytes(v) => v.to_sql(ty, out),
            Cell::Null => Ok(IsNull::Yes),
        }
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::INT8 | Type::FLOAT8 | Type::TEXT | Type::BYTEA)
    }

    to_sql_checked!();
}

/// One batch as it is stored.
struct Stored {
    rows: Vec<Row>,
    /// When the writer took it (every row's `received_us`).
    received_us: i64,
    /// Its last stream sequence: the tenant's position after it.
    last: u64,
}

/// Stores a batch and moves the tenant's position past it in one
/// transaction: the rows above their agents' marks COPY'd into `events`,
/// the marks raised, the agents' heartbeats ([`liveness`]), the cursor.
/// Returns when the transaction committed (and `marks` took the raise).
async fn store(
    pg: &mut tokio_postgres::Client,
    statements: &Statements,
    tenant: &str,
    batch: &Stored,
    claim: &mut Claim,
    marks: &mut Marks,
) -> Result<(), BusError> {
    let rows = &batch.rows;
    let (fresh, raised) = marks.fresh(rows);
    let tx = pg.transaction().await.map_err(pg_error)?;
    if !fresh.is_empty() {
        let sink = tx.copy_in(&statements.copy).await.map_err(pg_error)?;
        let mut copy = pin!(BinaryCopyInWriter::new(sink, &stored_types()));
        for row in &fresh {
            let values = row.columns.values();
            copy.as_mut()
                .write_raw(row.cells(&values))
                .await
                .map_err(pg_error)?;
        }
        copy.finish().await.map_err(pg_error)?;
    }
    if !raised.agents.is_empty() {
        tx.execute(
            &statements.raise,
            &[&raised.agents, &raised.seqs, &batch.received_us],
        )
        .await
        .map_err(pg_error)?;
    }
    checks::note(&tx, &statements.checks, &fresh, batch.received_us).await?;
    liveness::note_heartbeats(&tx, tenant, rows, batch.received_us).await?;
    let before = claim.position;
    claim.advance(&tx, batch.last).await?;
    tx.commit().await.map_err(|e| {
        claim.position = before;
        pg_error(e)
    })?;
    marks.raise(raised);
    Ok(())
}

/// Connects to PostgreSQL; the connection's task runs on the runtime.
pub async fn connect_postgres(conninfo: &str) -> Result<tokio_postgres::Client, BusError> {
    let (client, connection) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls)
        .await
        .map_err(|e| {
            BusError::Other(format!(
                "cannot connect to PostgreSQL ({}): {}; check [postgres] connect and that the server runs",
                redact(conninfo),
                with_causes(&e)
            ))
        })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %with_causes(&e), "PostgreSQL connection ended");
        }
    });
    // The idempotent DDL's "already exists, skipping" notices are not news.
    client
        .batch_execute("SET client_min_messages TO warning")
        .await
        .map_err(pg_error)?;
    Ok(client)
}

/// The connection string without its password.
fn redact(conninfo: &str) -> String {
    conninfo
        .split_whitespace()
        .filter(|kv| !kv.starts_with("password="))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A PostgreSQL error with its causes: tokio-postgres shows a server's
/// refusal as just "db error" and keeps the server's words in the source.
pub(crate) fn pg_error(e: tokio_postgres::Error) -> BusError {
    BusError::Other(format!("PostgreSQL: {}", with_causes(&e)))
}

/// `e: cause: cause…`.
fn with_causes(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Creates (idempotently) the schema, table and role of `tenant`; refuses
/// a tenant whose names PostgreSQL would cut ([`check_tenant`]).
pub async fn prepare_tenant(pg: &tokio_postgres::Client, tenant: &str) -> Result<(), BusError> {
    check_tenant(tenant)?;
    pg.batch_execute(&ddl(tenant)).await.map_err(pg_error)?;
    Ok(())
}

/// Runs the writer until `stop` resolves: discovers tenant streams
/// (`OWLET_*`, rescanned every few seconds) and runs one consumer each.
pub async fn run(
    js: jetstream::Context,
    config: WriterConfig,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), BusError> {
    // Fail early, with the reason, when PostgreSQL is not reachable.
    cursor::prepare(&connect_postgres(&config.postgres).await?).await?;
    #[cfg(all(feature = "fault-hooks", debug_assertions))]
    fault::announce();
    let mut running = HashSet::new();
    let mut tasks = tokio::task::JoinSet::new();
    let discover = async {
        loop {
            let names = js.stream_names().collect::<Vec<_>>().await;
            for name in names.into_iter().flatten() {
                let Some(tenant) = name.strip_prefix(STREAM_PREFIX).map(untoken) else {
                    continue;
                };
                if !running.insert(tenant.clone()) {
                    continue;
                }
                if let Err(e) = check_tenant(&tenant) {
                    tracing::error!(%tenant, error = %e, "writer: the tenant's stream is not stored");
                } else {
                    tasks.spawn(tenant_loop(js.clone(), config.clone(), tenant));
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    };
    tokio::select! {
        () = stop => {}
        () = discover => {}
    }
    tasks.abort_all();
    Ok(())
}

/// How a tenant's consumer ended without an error.
enum Ended {
    /// Another writer holds the tenant's position.
    Standby,
}

/// Consumes one tenant's stream forever, reconnecting after failures
/// (pause 1 s, doubling to 30 s while the failures go on), standing by
/// while another writer holds it.
async fn tenant_loop(js: jetstream::Context, config: WriterConfig, tenant: String) {
    const FIRST_PAUSE: Duration = Duration::from_secs(1);
    let mut pause = FIRST_PAUSE;
    let mut failures = 0u32;
    let mut standing_by = false;
    loop {
        let stored = std::sync::atomic::AtomicBool::new(false);
        match consume(&js, &config, &tenant, &stored, failures).await {
            Err(e) => {
                if stored.load(std::sync::atomic::Ordering::Relaxed) {
                    failures = 0;
                    pause = FIRST_PAUSE;
                }
                failures += 1;
                standing_by = false;
                tracing::warn!(%tenant, error = %e, failures, retry_in = ?pause,
                    "writer: the tenant's consumer stopped; reconnecting (it resumes after the last committed batch)");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(30));
            }
            Ok(Ended::Standby) => {
                if !standing_by {
                    tracing::info!(%tenant, "writer: another writer stores this tenant; standing by to take over");
                    standing_by = true;
                }
                tokio::time::sleep(STANDBY_POLL).await;
            }
        }
    }
}

/// Runs the tenant's consumer until something fails, or returns at once
/// when another writer holds the tenant. `stored` is set once a batch
/// committed; `failures` is how many attempts failed before this one (it
/// logs that it stores again).
async fn consume(
    js: &jetstream::Context,
    config: &WriterConfig,
    tenant: &str,
    stored: &std::sync::atomic::AtomicBool,
    failures: u32,
) -> Result<Ended, BusError> {
    let stream_error = |reason: String| BusError::Stream {
        stream: crate::stream_name(tenant),
        reason,
    };
    let mut pg = connect_postgres(&config.postgres).await?;
    let Some(mut claim) = cursor::claim(&pg, CURSOR_CONSUMER, tenant).await? else {
        return Ok(Ended::Standby);
    };
    prepare_tenant(&pg, tenant).await?;
    let statements = Statements::prepare(&pg, tenant).await?;
    let mut marks = Marks::load(&pg, tenant).await?;
    let mut stream = js
        .get_stream(crate::stream_name(tenant))
        .await
        .map_err(|e| stream_error(e.to_string()))?;
    let info = stream
        .info()
        .await
        .map_err(|e| stream_error(e.to_string()))?;
    let created_ns = i64::try_from(info.created.unix_timestamp_nanos()).unwrap_or(i64::MAX);
    let state = info.state.clone();
    if let Some(old) = claim.bind(&pg, created_ns).await?
        && old > 0
    {
        tracing::warn!(%tenant, old_position = old,
            "writer: the tenant's stream was deleted and created again since the writer stored from it; reading the new one from its start (what is stored already is skipped)");
    }
    let start = claim.position + 1;
    if state.messages > 0 && state.first_sequence > start {
        tracing::error!(%tenant, lost = state.first_sequence - start, from = start, to = state.first_sequence - 1,
            "writer: JetStream's limits on the tenant's stream (the receivers' [sink] buffer_max_age, the tenant's max_age or max_bytes) removed these messages before they were stored: they are lost; keep a writer running, or raise buffer_max_age above the longest writer or PostgreSQL outage");
    }
    // Ephemeral, unacknowledged, one replica in memory: nothing for the
    // servers to replicate per delivered message. Any disruption (a lost
    // heartbeat, the consumer gone with its server, a gap) ends this
    // attempt, and the next one starts again from the committed position,
    // checking first that the stream is still the one it counts in.
    let consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            ack_policy: jetstream::consumer::AckPolicy::None,
            num_replicas: 1,
            memory_storage: true,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .map_err(|e| stream_error(format!("cannot create the writer's consumer: {e}")))?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(config.batch.saturating_mul(PULL_BATCHES))
        .heartbeat(Duration::from_secs(5))
        .messages()
        .await
        .map_err(|e| stream_error(e.to_string()))?;
    // The consumer sequence of the last message delivered: each next one
    // must be one more (without acks nothing is delivered twice).
    let mut delivered = 0u64;
    tracing::info!(%tenant, from = start, "writer: storing the tenant's stream");
    let mut days = partitions::Days::default();
    let mut retention_due = tokio::time::Instant::now();
    let mut liveness_due = tokio::time::Instant::now();
    // Everything in the stream is stored: agents may be judged.
    let mut caught_up = false;
    loop {
        let now = tokio::time::Instant::now();
        if now >= retention_due {
            let policy = stream_policy(&mut stream).await.map_err(stream_error)?;
            partitions::retain(&pg, tenant, policy, std::time::SystemTime::now(), &mut days)
                .await?;
            retention_due = now + RETENTION_EVERY;
        }
        if now >= liveness_due {
            if caught_up {
                liveness::judge(
                    &mut pg,
                    tenant,
                    config.liveness,
                    std::time::SystemTime::now(),
                    &mut days,
                )
                .await?;
            }
            liveness_due = now + config.liveness.check_every;
        }
        let batch = next_batch(&mut messages, config.batch, retention_due.min(liveness_due))
            .await
            .map_err(stream_error)?;
        let Some(newest) = batch.last() else {
            caught_up = true;
            continue;
        };
        caught_up = newest.info().is_ok_and(|info| info.pending == 0);
        let received_us = owlet_soc_store::time::micros(std::time::SystemTime::now());
        days.ensure(&pg, tenant, received_us).await?;
        let mut rows = Vec::with_capacity(batch.len());
        let mut last = claim.position;
        for message in &batch {
            let info = message.info().map_err(|e| stream_error(e.to_string()))?;
            if info.consumer_sequence != delivered + 1 || info.stream_sequence <= last {
                return Err(stream_error(format!(
                    "delivery out of order (consumer sequence {} after {delivered}, stream sequence {} after {last}); starting again from the committed position",
                    info.consumer_sequence, info.stream_sequence
                )));
            }
            delivered = info.consumer_sequence;
            let stream_seq = info.stream_sequence;
            last = stream_seq;
            match Row::of(message, stream_seq, received_us) {
                Some(row) => rows.push(row),
                None => tracing::warn!(%tenant, subject = %message.subject, stream_seq,
                    "writer: not an agent's event; skipped"),
            }
        }
        let stored_batch = Stored {
            rows,
            received_us,
            last,
        };
        store(
            &mut pg,
            &statements,
            tenant,
            &stored_batch,
            &mut claim,
            &mut marks,
        )
        .await?;
        if !stored.swap(true, std::sync::atomic::Ordering::Relaxed) && failures > 0 {
            tracing::info!(%tenant, failures, "writer: storing again after reconnecting");
        }
        #[cfg(all(feature = "fault-hooks", debug_assertions))]
        fault::after_commit(tenant).await;
    }
}

/// The tenant's retention, as the receivers wrote it on its stream.
async fn stream_policy(
    stream: &mut jetstream::stream::Stream,
) -> Result<owlet_soc_store::Policy, String> {
    let config = &stream.info().await.map_err(|e| e.to_string())?.config;
    let retention = crate::Retention::of_stream(config);
    Ok(owlet_soc_store::Policy {
        max_age: retention.max_age,
        max_bytes: retention.max_bytes,
    })
}

/// The next batch: the first message, then what comes within [`LINGER`],
/// at most `max`; empty when no message came before `until`.
async fn next_batch(
    messages: &mut pull::Stream,
    max: usize,
    until: tokio::time::Instant,
) -> Result<Vec<jetstream::Message>, String> {
    let ended = || "the consumer ended".to_string();
    let first = match tokio::time::timeout_at(until, messages.next()).await {
        Err(_) => return Ok(Vec::new()),
        Ok(first) => first.ok_or_else(ended)?.map_err(|e| e.to_string())?,
    };
    let mut batch = vec![first];
    let deadline = tokio::time::Instant::now() + LINGER;
    while batch.len() < max {
        match tokio::time::timeout_at(deadline, messages.next()).await {
            Ok(Some(message)) => batch.push(message.map_err(|e| e.to_string())?),
            Ok(None) => return Err(ended()),
            Err(_) => break,
        }
    }
    Ok(batch)
}

/// Faults placed where only a test can put them (feature `fault-hooks`,
/// debug builds): the writer's behaviour in a release binary never depends
/// on this module, which is not even compiled there.
#[cfg(all(feature = "fault-hooks", debug_assertions))]
pub mod fault {
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Stop right after the commit of the N-th batch.
    pub const HOLD_AFTER_COMMIT: &str = "OWLET_FAULT_WRITER_HOLD_AFTER_COMMIT";

    static COMMITS: AtomicU64 = AtomicU64::new(0);

    fn hold_after() -> Option<u64> {
        std::env::var(HOLD_AFTER_COMMIT).ok()?.parse().ok()
    }

    /// Logs that the hook is armed (tests wait for this line, so a binary
    /// built without the hook fails loudly instead of passing vacuously).
    pub fn announce() {
        if let Some(n) = hold_after() {
            tracing::warn!("fault hook armed: {HOLD_AFTER_COMMIT}={n}");
        }
    }

    /// Never returns once the N-th batch (counted over all tenants) has
    /// committed: the writer does nothing more for that tenant.
    pub async fn after_commit(tenant: &str) {
        let Some(n) = hold_after() else { return };
        if COMMITS.fetch_add(1, Ordering::SeqCst) + 1 == n {
            tracing::warn!(%tenant, "fault hook: batch {n} committed; holding here until killed");
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_typed_column_has_its_postgres_type() {
        use owlet_proto::v1::{FlowRecord, HostMetrics, event::Kind};
        for event in [
            owlet_proto::v1::Event {
                seq: 1,
                time: Some(owlet_proto::now()),
                kind: Some(Kind::FlowRecord(FlowRecord {
                    src_addr: "10.0.0.1".into(),
                    ..Default::default()
                })),
            },
            owlet_proto::v1::Event {
                seq: 2,
                time: None,
                kind: Some(Kind::HostMetrics(HostMetrics {
                    memory_total_bytes: 2,
                    ..Default::default()
                })),
            },
        ] {
            let columns = owlet_soc_store::Columns::of(&event);
            for (name, value) in NAMES.iter().zip(columns.values()) {
                let fits = matches!(
                    (pg_type(name), &value),
                    (_, Value::Null)
                        | (PgType::Int, Value::Integer(_))
                        | (PgType::Real, Value::Real(_))
                        | (PgType::Text, Value::Text(_))
                );
                assert!(fits, "{name}: {value:?} does not fit its PostgreSQL type");
            }
        }
        assert_eq!(stored_columns().len(), stored_types().len());
        assert!(ddl("a.b").contains("\"tenant_a.b\".events"));
    }

    #[test]
    fn a_tenant_name_postgres_would_cut_is_refused_naming_the_tenant_and_the_limit() {
        let longest = "t".repeat(MAX_TENANT_BYTES);
        check_tenant(&longest).unwrap();
        assert_eq!(role_of(&longest).len(), PG_MAX_IDENTIFIER + 2, "quoted");
        assert!(schema_of(&longest).len() <= PG_MAX_IDENTIFIER + 2);
        let too_long = format!("{longest}x");
        let e = check_tenant(&too_long).unwrap_err().to_string();
        for part in [too_long.as_str(), "51 bytes", "63", "at most 50"] {
            assert!(e.contains(part), "{part:?} missing: {e}");
        }
    }
}
