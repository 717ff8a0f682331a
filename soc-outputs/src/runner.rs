//! The loop every output runs, whatever its destination and whatever its
//! [`Source`] (the embedded store or the scaled-out SOC's PostgreSQL), and
//! the figures `owlet-soc status` shows for the embedded store.
//!
//! One round visits each wanted tenant once and sends at most one batch of
//! it (so a tenant with a backlog cannot starve the others); rounds repeat
//! at once while there is work, and every `poll` when caught up. Backoff is
//! per tenant: after a failed batch the tenant is skipped until its delay
//! (`retry_min` doubling up to `retry_max`) has passed, so one customer's
//! batch that a SIEM refuses (a mapping error) does not hold back the
//! other customers of the same output. When the destination is down every
//! tenant backs off, and the retries settle at one per tenant per
//! `retry_max`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use owlet_soc_store::{Cursors, Store, StoredEvent};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::source::{Source, postgres::Postgres, sqlite::Sqlite};
use crate::{OutputConfig, OutputError, OutputType, http, syslog};

/// The destinations, one per output type.
enum Sink {
    Elastic(http::Elastic),
    Hec(http::Hec),
    Webhook(http::Webhook),
    // Boxed: a TLS stream's buffers dwarf the HTTP clients.
    Syslog(Box<syslog::Syslog>),
}

impl Sink {
    fn new(config: &OutputConfig) -> Result<Self, OutputError> {
        Ok(match config.kind {
            OutputType::Elasticsearch => Sink::Elastic(http::Elastic::new(config)?),
            OutputType::SplunkHec => Sink::Hec(http::Hec::new(config)?),
            OutputType::Webhook => Sink::Webhook(http::Webhook::new(config)?),
            OutputType::Syslog => Sink::Syslog(Box::new(syslog::Syslog::new(config)?)),
        })
    }

    /// Ends open connections politely (TLS close_notify), so the
    /// receiver logs a clean close, not a broken one.
    async fn close(&mut self) {
        if let Sink::Syslog(s) = self {
            s.close().await;
        }
    }

    /// Sends `events` (one tenant's, in log order); `Ok` only when the
    /// destination confirmed every one of them.
    async fn deliver(&mut self, tenant: &str, events: &[StoredEvent]) -> Result<(), String> {
        match self {
            Sink::Elastic(s) => s.deliver(tenant, events).await,
            Sink::Hec(s) => s.deliver(events).await,
            Sink::Webhook(s) => s.deliver(events).await,
            Sink::Syslog(s) => s.deliver(events).await,
        }
    }
}

/// Runs one output on the embedded store at `store_root` until `shutdown`
/// is cancelled (see [`run_on`]; the cursor file is the store's).
pub async fn run(
    store_root: PathBuf,
    config: OutputConfig,
    shutdown: CancellationToken,
) -> Result<(), OutputError> {
    // A wrong entry is named before the store is opened (or created).
    config.validate()?;
    let source = Sqlite::open(store_root, &config).await?;
    run_on(source, config, shutdown).await
}

/// Runs one output on the scaled-out SOC's PostgreSQL (`conninfo`, a
/// libpq connection string) until `shutdown` is cancelled (see
/// [`run_on`]; cursors in `owlet_bus.cursors`, consumer `output:<name>`).
pub async fn run_postgres(
    conninfo: String,
    config: OutputConfig,
    shutdown: CancellationToken,
) -> Result<(), OutputError> {
    let source = Postgres::new(conninfo, &config);
    run_on(source, config, shutdown).await
}

/// Runs one output until `shutdown` is cancelled: reads each wanted
/// tenant's log after the output's cursor in `source`, sends, and
/// advances the cursor once the destination confirmed. Returns `Err` only
/// for a setup problem (a wrong entry, an unreadable CA or token file);
/// delivery failures, and a store that cannot be read for a while, are
/// retried for as long as it runs, and recorded on the cursor.
///
/// Cancel-safe: a batch cut off by `shutdown` was not confirmed, so its
/// cursor did not move and the next start sends it again.
pub async fn run_on<S: Source>(
    mut source: S,
    config: OutputConfig,
    shutdown: CancellationToken,
) -> Result<(), OutputError> {
    config.validate()?;
    let mut sink = Sink::new(&config)?;
    let name = config.name.clone();
    tracing::info!(output = %name, kind = config.kind.as_str(), "output started");
    let mut backoff: HashMap<String, Backoff> = HashMap::new();
    loop {
        let sent = tokio::select! {
            _ = shutdown.cancelled() => break,
            sent = round(&config, &mut source, &mut sink, &mut backoff) => sent,
        };
        if shutdown.is_cancelled() {
            break;
        }
        if sent {
            continue;
        }
        let now = Instant::now();
        let wait = backoff
            .values()
            .map(|b| b.next.saturating_duration_since(now))
            .fold(config.poll, Duration::min);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    sink.close().await;
    tracing::info!(output = %name, "output stopped");
    Ok(())
}

/// A tenant's retry state after a failure.
struct Backoff {
    /// The delay the next failure waits.
    delay: Duration,
    /// Not tried again before this.
    next: Instant,
}

fn back_off(config: &OutputConfig, backoff: &mut HashMap<String, Backoff>, tenant: &str) {
    let now = Instant::now();
    let b = backoff.entry(tenant.to_string()).or_insert(Backoff {
        delay: config.retry_min,
        next: now,
    });
    b.next = now + b.delay;
    b.delay = b.delay.saturating_mul(2).min(config.retry_max);
}

/// One round over the wanted tenants; true when a batch was confirmed.
/// Cancel-safe: dropped mid-delivery, the batch was not confirmed and its
/// cursor did not move.
async fn round<S: Source>(
    config: &OutputConfig,
    source: &mut S,
    sink: &mut Sink,
    backoff: &mut HashMap<String, Backoff>,
) -> bool {
    let name = config.name.as_str();
    let tenants = match source.tenants().await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(output = name, error = %e, "cannot list the store's tenants");
            return false;
        }
    };
    backoff.retain(|t, _| tenants.contains(t));
    let mut sent = false;
    for tenant in tenants {
        if backoff
            .get(&tenant)
            .is_some_and(|b| b.next > Instant::now())
        {
            continue;
        }
        let (after, events) = match source.next_batch(&tenant, config.batch_size).await {
            Ok(batch) => batch,
            Err(e) => {
                record_failure(source, name, &tenant, &format!("reading the store: {e}")).await;
                back_off(config, backoff, &tenant);
                continue;
            }
        };
        let Some(last) = events.last().map(|e| e.id) else {
            continue;
        };
        // Where ids are contiguous in a tenant's log, a hole after the
        // cursor is retention deleting what this output had not delivered.
        // Said, then the output goes on with what remains (loss is never
        // silent).
        let first = events[0].id;
        if S::CONTIGUOUS_IDS && first > after + 1 {
            let message = format!(
                "retention deleted ids {}..={} ({} events) before this output delivered them; keep data longer or bring the destination back sooner",
                after + 1,
                first - 1,
                first - 1 - after
            );
            record_failure(source, name, &tenant, &message).await;
        }
        // Kinds this output does not send are passed over: the cursor moves
        // past them with the batch.
        let n = events.len() as u64;
        let events: Vec<StoredEvent> = events
            .into_iter()
            .filter(|e| config.sends(&e.kind))
            .collect();
        let delivery = if events.is_empty() {
            Ok(())
        } else {
            sink.deliver(&tenant, &events).await
        };
        if let Err(error) = delivery {
            record_failure(source, name, &tenant, &error).await;
            back_off(config, backoff, &tenant);
            continue;
        }
        let sent_now = events.len() as u64;
        if let Err(e) = source.advance(&tenant, last, sent_now).await {
            // Delivered but not recorded: the batch is sent again (at
            // least once), never skipped.
            record_failure(source, name, &tenant, &format!("recording the cursor: {e}")).await;
            back_off(config, backoff, &tenant);
            continue;
        }
        backoff.remove(&tenant);
        tracing::debug!(output = name, tenant = %tenant, read = n, sent = sent_now, last_id = last, "delivered");
        sent = true;
    }
    sent
}

async fn record_failure<S: Source>(source: &mut S, output: &str, tenant: &str, error: &str) {
    tracing::warn!(output, tenant, error, "delivery failed; will retry");
    if let Err(e) = source.failed(tenant, error).await {
        tracing::warn!(output, tenant, error = %e, "cannot record the failure on the cursor");
    }
}

/// One output's position in one tenant's log, for `owlet-soc status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutputStatus {
    pub output: String,
    /// `elasticsearch`, `splunk_hec` or `syslog`.
    pub kind: &'static str,
    pub tenant: String,
    /// Last log id the destination confirmed (the cursor).
    pub position: i64,
    /// Last id in the tenant's log.
    pub last_id: i64,
    /// Events stored but not yet confirmed: `last_id - position`.
    pub lag: i64,
    /// Events confirmed since the cursor was created.
    pub delivered: u64,
    /// Failed delivery attempts since the cursor was created.
    pub errors: u64,
    /// The last failure, cleared by the next confirmed batch.
    pub last_error: Option<String>,
    /// When the cursor last changed (UTC µs; 0: never).
    pub updated_us: i64,
}

/// Every configured output's lag and errors in every tenant it forwards
/// (blocking: reads SQLite). Tenants without events yet are left out.
pub fn status(
    store_root: &Path,
    outputs: &[OutputConfig],
) -> Result<Vec<OutputStatus>, OutputError> {
    // Read side: creates nothing (status runs as any user).
    let store = Store::existing(store_root);
    let positions = match Cursors::existing(store_root)? {
        Some(cursors) => cursors.all()?,
        None => Vec::new(),
    };
    let tenants = store.tenants()?;
    let mut last_ids = HashMap::new();
    for tenant in &tenants {
        last_ids.insert(tenant.as_str(), store.reader(tenant)?.last_id()?);
    }
    let mut out = Vec::new();
    for output in outputs {
        for tenant in tenants.iter().filter(|t| output.wants(t)) {
            let position = positions
                .iter()
                .find(|p| p.consumer == output.name && &p.tenant == tenant);
            let last_id = last_ids[tenant.as_str()];
            let at = position.map_or(0, |p| p.last_id);
            out.push(OutputStatus {
                output: output.name.clone(),
                kind: output.kind.as_str(),
                tenant: tenant.clone(),
                position: at,
                last_id,
                lag: (last_id - at).max(0),
                delivered: position.map_or(0, |p| p.delivered),
                errors: position.map_or(0, |p| p.errors),
                last_error: position.and_then(|p| p.last_error.clone()),
                updated_us: position.map_or(0, |p| p.updated_us),
            });
        }
    }
    Ok(out)
}
