//! The store writer of the scaled-out SOC: a durable JetStream pull consumer
//! per tenant stream that commits events to PostgreSQL, then acks.
//!
//! PostgreSQL layout, per tenant (created by the writer, idempotently):
//! * schema `tenant_<tenant>`, table `events`: `agent`, `seq`,
//!   `stream_seq`, `received_us`, the typed columns of
//!   [`owlet_soc_store::Columns`] (same names and meaning as in
//!   `soc-store/SCHEMA.md`), `body bytea` (the `owlet.v1.Event` protobuf);
//!   `UNIQUE (agent, seq)`;
//! * role `owlet_tenant_<tenant>` (NOLOGIN; the operator gives it LOGIN and
//!   a password): USAGE on its schema and SELECT on its table only. Nothing
//!   is granted to PUBLIC, so no tenant's role can read another's schema.
//!
//! Guarantees:
//! * **Exactly once.** Inserts are `ON CONFLICT (agent, seq) DO NOTHING`, and
//!   a message is acknowledged (double ack: the server confirmed the ack)
//!   only after the transaction holding it committed. A writer killed
//!   between commit and ack gets the messages again and inserts nothing.
//! * **Nothing lost.** A message not acknowledged is redelivered after the
//!   consumer's `ack_wait`; a failed commit acks nothing.
//! * **Tenants apart**: one consumer, one connection, one schema per tenant.
//!
//! * **Reconnects by itself.** A lost PostgreSQL or NATS connection ends
//!   the tenant's consumer with the reason in the log; it starts again
//!   (new connection, same durable consumer) with a growing pause, and
//!   logs once when it stores again. What was fetched and not committed
//!   comes again after `ack_wait`.
//!
//! It never decides what is a duplicate by anything but (agent, seq), and
//! never acknowledges before the commit returned.
//!
//! Test builds only (feature `fault-hooks` and debug assertions, so never a
//! release binary): `OWLET_FAULT_WRITER_HOLD_ACK_AFTER_COMMIT=N` makes the
//! writer stop for good between the commit of its N-th batch and that
//! batch's acks, so a test can SIGKILL it exactly there ([`fault`]).

use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;
use owlet_soc_store::columns::{NAMES, Value};
use prost::Message as _;
use tokio_postgres::types::ToSql;

pub use tokio_postgres::Config as PgConfig;

use crate::{BusError, SEQ_HEADER, STREAM_PREFIX, agent_of, untoken};

/// How the writer consumes.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// libpq-style connection string (`host=… port=… user=… dbname=…`).
    pub postgres: String,
    /// The durable consumer's name (the same for every writer instance:
    /// several writers share the work).
    pub durable: String,
    /// Redelivery after this long without an ack.
    pub ack_wait: Duration,
    /// Most messages committed in one transaction.
    pub batch: usize,
}

impl WriterConfig {
    pub fn new(postgres: impl Into<String>) -> Self {
        Self {
            postgres: postgres.into(),
            durable: "owlet-writer".into(),
            ack_wait: Duration::from_secs(30),
            batch: 2048,
        }
    }
}

/// The schema of `tenant` (quoted identifier).
pub fn schema_of(tenant: &str) -> String {
    format!("\"tenant_{tenant}\"")
}

/// The read-only role of `tenant` (quoted identifier).
pub fn role_of(tenant: &str) -> String {
    format!("\"owlet_tenant_{tenant}\"")
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

fn ddl(tenant: &str) -> String {
    let schema = schema_of(tenant);
    let role = role_of(tenant);
    let columns: String = NAMES
        .iter()
        .map(|name| {
            let ty = match pg_type(name) {
                PgType::Int => "bigint",
                PgType::Real => "double precision",
                PgType::Text => "text",
            };
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
  id bigserial PRIMARY KEY,
  agent text NOT NULL,
  seq bigint NOT NULL,
  stream_seq bigint NOT NULL,
  received_us bigint NOT NULL,
{columns}  body bytea NOT NULL,
  UNIQUE (agent, seq)
);
CREATE INDEX IF NOT EXISTS events_time ON {schema}.events (time_us);
REVOKE ALL ON {schema}.events FROM PUBLIC;
DO $$ BEGIN CREATE ROLE {role} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
GRANT USAGE ON SCHEMA {schema} TO {role};
GRANT SELECT ON {schema}.events TO {role};"
    )
}

fn insert_sql(tenant: &str) -> String {
    let n = 5 + NAMES.len();
    let placeholders: Vec<String> = (1..=n).map(|i| format!("${i}")).collect();
    format!(
        "INSERT INTO {}.events (agent, seq, stream_seq, received_us, {}, body) VALUES ({}) ON CONFLICT (agent, seq) DO NOTHING",
        schema_of(tenant),
        NAMES.join(", "),
        placeholders.join(", ")
    )
}

type Param = Box<dyn ToSql + Sync + Send>;

/// One message made into insert parameters; `None` when it is not an
/// agent's sequenced event (acknowledged and skipped, with a warning).
fn params_of(message: &jetstream::Message, stream_seq: u64) -> Option<Vec<Param>> {
    let agent = agent_of(message.subject.as_str())?;
    let event = owlet_proto::v1::Event::decode(message.payload.clone()).ok()?;
    let seq = message
        .headers
        .as_ref()
        .and_then(|h| h.get(SEQ_HEADER))
        .and_then(|v| v.as_str().parse::<u64>().ok())
        .unwrap_or(event.seq);
    let seq = i64::try_from(seq).ok().filter(|&s| s > 0)?;
    let columns = owlet_soc_store::Columns::of(&event);
    let received_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    let mut params: Vec<Param> = vec![
        Box::new(agent),
        Box::new(seq),
        Box::new(stream_seq as i64),
        Box::new(received_us),
    ];
    for (name, value) in NAMES.iter().zip(columns.values()) {
        let param: Param = match (pg_type(name), value) {
            (PgType::Int, Value::Integer(v)) => Box::new(Some(v)),
            (PgType::Real, Value::Real(v)) => Box::new(Some(v)),
            (PgType::Real, Value::Integer(v)) => Box::new(Some(v as f64)),
            (PgType::Text, Value::Text(v)) => Box::new(Some(v)),
            (PgType::Int, _) => Box::new(None::<i64>),
            (PgType::Real, _) => Box::new(None::<f64>),
            (PgType::Text, _) => Box::new(None::<String>),
        };
        params.push(param);
    }
    params.push(Box::new(message.payload.to_vec()));
    Some(params)
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
fn pg_error(e: tokio_postgres::Error) -> BusError {
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

/// Creates (idempotently) the schema, table and role of `tenant`.
pub async fn prepare_tenant(pg: &tokio_postgres::Client, tenant: &str) -> Result<(), BusError> {
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
    drop(connect_postgres(&config.postgres).await?);
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
                if running.insert(tenant.clone()) {
                    tracing::info!(%tenant, "writer: consuming the tenant's stream");
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

/// Consumes one tenant's stream forever, reconnecting after failures
/// (pause 1 s, doubling to 30 s while the failures go on).
async fn tenant_loop(js: jetstream::Context, config: WriterConfig, tenant: String) {
    const FIRST_PAUSE: Duration = Duration::from_secs(1);
    let mut pause = FIRST_PAUSE;
    let mut failures = 0u32;
    loop {
        let stored = std::sync::atomic::AtomicBool::new(false);
        if let Err(e) = consume(&js, &config, &tenant, &stored, failures).await {
            if stored.load(std::sync::atomic::Ordering::Relaxed) {
                failures = 0;
                pause = FIRST_PAUSE;
            }
            failures += 1;
            tracing::warn!(%tenant, error = %e, failures, retry_in = ?pause,
                "writer: the tenant's consumer stopped; reconnecting (events not committed come again after ack_wait)");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(30));
        } else {
            tokio::time::sleep(FIRST_PAUSE).await;
        }
    }
}

/// Runs the tenant's consumer until something fails. `stored` is set once
/// a batch committed; `failures` is how many attempts failed before this
/// one (it logs that it stores again).
async fn consume(
    js: &jetstream::Context,
    config: &WriterConfig,
    tenant: &str,
    stored: &std::sync::atomic::AtomicBool,
    failures: u32,
) -> Result<(), BusError> {
    let stream_error = |reason: String| BusError::Stream {
        stream: crate::stream_name(tenant),
        reason,
    };
    let mut pg = connect_postgres(&config.postgres).await?;
    prepare_tenant(&pg, tenant).await?;
    let insert = pg.prepare(&insert_sql(tenant)).await.map_err(pg_error)?;
    let stream = js
        .get_stream(crate::stream_name(tenant))
        .await
        .map_err(|e| stream_error(e.to_string()))?;
    let consumer: jetstream::consumer::Consumer<pull::Config> = stream
        .get_or_create_consumer(
            &config.durable,
            pull::Config {
                durable_name: Some(config.durable.clone()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: config.ack_wait,
                max_ack_pending: (config.batch * 4) as i64,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| stream_error(format!("consumer {}: {e}", config.durable)))?;
    // The acks of the batch committed last, still being confirmed.
    let mut acking: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let mut batch = consumer
            .fetch()
            .max_messages(config.batch)
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .map_err(|e| stream_error(e.to_string()))?;
        let mut messages = Vec::new();
        while let Some(message) = batch.next().await {
            messages.push(message.map_err(|e| stream_error(e.to_string()))?);
        }
        if messages.is_empty() {
            continue;
        }
        let mut rows = Vec::with_capacity(messages.len());
        for message in &messages {
            let stream_seq = message
                .info()
                .map_err(|e| stream_error(e.to_string()))?
                .stream_sequence;
            match params_of(message, stream_seq) {
                Some(params) => rows.push(params),
                None => tracing::warn!(%tenant, subject = %message.subject, stream_seq,
                    "writer: not an agent's event; acknowledged without storing"),
            }
        }
        let tx = pg.transaction().await.map_err(pg_error)?;
        let inserts = rows.iter().map(|params| {
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
            let tx = &tx;
            let insert = &insert;
            async move { tx.execute(insert, &refs).await }
        });
        futures::future::try_join_all(inserts)
            .await
            .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        if !stored.swap(true, std::sync::atomic::Ordering::Relaxed) && failures > 0 {
            tracing::info!(%tenant, failures, "writer: storing again after reconnecting");
        }
        #[cfg(all(feature = "fault-hooks", debug_assertions))]
        fault::after_commit(tenant).await;
        // Committed: now (and only now) acknowledged, double acks (the
        // server confirms each). They are awaited while the next batch is
        // fetched and inserted, one batch of acks in flight at a time. A
        // crash before they land redelivers; the inserts then conflict and
        // store nothing.
        if let Some(previous) = acking.take() {
            let _ = previous.await;
        }
        let tenant_name = tenant.to_string();
        acking = Some(tokio::spawn(async move {
            let acks = messages.iter().map(|m| m.double_ack());
            for result in futures::future::join_all(acks).await {
                if let Err(e) = result {
                    tracing::debug!(tenant = %tenant_name, error = %e, "writer: ack not confirmed; the message comes again and is skipped");
                }
            }
        }));
    }
}

/// Faults placed where only a test can put them (feature `fault-hooks`,
/// debug builds): the writer's behaviour in a release binary never depends
/// on this module, which is not even compiled there.
#[cfg(all(feature = "fault-hooks", debug_assertions))]
pub mod fault {
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Stop between the commit of the N-th batch and its acks.
    pub const HOLD_ACK_AFTER_COMMIT: &str = "OWLET_FAULT_WRITER_HOLD_ACK_AFTER_COMMIT";

    static COMMITS: AtomicU64 = AtomicU64::new(0);

    fn hold_after() -> Option<u64> {
        std::env::var(HOLD_ACK_AFTER_COMMIT).ok()?.parse().ok()
    }

    /// Logs that the hook is armed (tests wait for this line, so a binary
    /// built without the hook fails loudly instead of passing vacuously).
    pub fn announce() {
        if let Some(n) = hold_after() {
            tracing::warn!("fault hook armed: {HOLD_ACK_AFTER_COMMIT}={n}");
        }
    }

    /// Never returns once the N-th batch (counted over all tenants) has
    /// committed: its acks are never sent.
    pub async fn after_commit(tenant: &str) {
        let Some(n) = hold_after() else { return };
        if COMMITS.fetch_add(1, Ordering::SeqCst) + 1 == n {
            tracing::warn!(%tenant, "fault hook: batch {n} committed; holding its acks until killed");
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
        assert!(insert_sql("a").contains("ON CONFLICT (agent, seq) DO NOTHING"));
        assert!(ddl("a.b").contains("\"tenant_a.b\".events"));
    }
}
