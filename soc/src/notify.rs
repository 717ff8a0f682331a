//! `owlet-soc notify`: the scaled-out SOC's incident notifications, a
//! process of its own beside the receivers, writers and outputs. It runs
//! the same notifier as the embedded SOC (`owlet_soc_notify::supervise`)
//! on the writer's tables in PostgreSQL, with the record in each tenant's
//! schema and the position in `owlet_bus.cursors` (consumer `notify`).
//!
//! Guarantees:
//! * **Fails at start, with the reason,** when PostgreSQL cannot be
//!   reached, the cursor table cannot be made, or a channel cannot be
//!   built (an unreadable secret file); systemd starts it again. Once
//!   running, a lost connection fails only the tenants it served, which
//!   are claimed again.
//! * **Several processes, one notifier per tenant.** A tenant is notified
//!   only under its cursor's lock; a second process with the same
//!   notify.toml stands by and takes over at the committed position when
//!   the holder dies.
//! * **Graceful stop.** SIGTERM or SIGINT stops every tenant's worker,
//!   records the deliveries that finish within 5 s and exits 0; the rest
//!   stay pending in the record and go out from whoever holds the tenant
//!   next.

use std::future::Future;

use anyhow::Context;
use owlet_soc_notify::{HistoryQuery, HistoryRow};
use tokio_util::sync::CancellationToken;

use crate::config::NotifyFile;

/// Runs `config`'s notifier on the PostgreSQL of `conninfo` until `stop`
/// resolves.
pub async fn run(
    conninfo: String,
    config: NotifyFile,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let contacts_root = config.contacts_root();
    let shutdown = CancellationToken::new();
    let run = owlet_soc_notify::ledger::postgres::run(
        conninfo,
        contacts_root,
        config.notify,
        config.paths.state_dir,
        shutdown.clone(),
    );
    tokio::pin!(run);
    tracing::info!("owlet-soc notify {} running", env!("CARGO_PKG_VERSION"));
    let ended = tokio::select! {
        () = stop => {
            shutdown.cancel();
            run.await
        }
        ended = &mut run => ended,
    };
    tracing::info!("owlet-soc notify stopped");
    ended.context("owlet-soc notify stopped")
}

/// A tenant's notifications from the record in PostgreSQL.
pub async fn history(
    conninfo: &str,
    tenant: &str,
    query: &HistoryQuery,
) -> anyhow::Result<Vec<HistoryRow>> {
    let pg = owlet_soc_bus::writer::connect_postgres(conninfo).await?;
    Ok(owlet_soc_notify::ledger::postgres::history(&pg, tenant, query).await?)
}

/// `owlet-soc notify --status`: per tenant with stored events, where the
/// notifier stands and what its record holds. Read-only.
pub async fn status(conninfo: &str) -> anyhow::Result<()> {
    use owlet_soc_notify::ledger::postgres::figures;
    let pg = owlet_soc_bus::writer::connect_postgres(conninfo).await?;
    let consumer = owlet_soc_notify::notifier::CONSUMER;
    println!("Notifications (consumer {consumer}):");
    let tenants = owlet_soc_bus::stored::tenants_with_events(&pg).await?;
    if tenants.is_empty() {
        println!("  no tenant stored yet (the writer makes a tenant's events table first)");
    }
    for tenant in tenants {
        let reader = owlet_soc_bus::status::reader(&pg, consumer, &tenant).await?;
        let f = figures(&pg, &tenant).await?;
        let last = f.last_delivered_us.map_or_else(
            || "none delivered yet".to_string(),
            |us| format!("last delivered {}", crate::query::rfc3339(us)),
        );
        println!(
            "{}\n  {:<20} {} open, {} deliveries waiting, {} failed; {last}",
            crate::analyst::reader_line(&reader, "owlet-soc notify"),
            "",
            f.open,
            f.waiting,
            f.failed
        );
    }
    Ok(())
}
