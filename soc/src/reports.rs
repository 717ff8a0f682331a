//! `owlet-soc reports`: the scaled-out SOC's hourly rollups and periodic
//! reports, a process of its own beside the receivers, writers and
//! outputs. It runs the rollup consumer (`owlet_soc_bus::rollup`: each
//! tenant's `rollup_*` tables, exactly once, one holder per tenant and
//! standbys) and the report schedule (`owlet_soc_report::schedule::
//! run_postgres`: each due week and month built from the tenant's schema
//! and kept in its `reports` table, where a portal on any host reads it).
//!
//! Guarantees:
//! * **Fails at start, with the reason,** when PostgreSQL cannot be
//!   reached or the cursor table cannot be made (systemd starts it again).
//! * **Several processes.** Rollups: one holder per tenant, the others
//!   stand by. Reports: each file is inserted once (the first process to
//!   make it keeps it), so two schedules never keep two versions.
//! * **Graceful stop.** SIGTERM or SIGINT ends both; a rollup batch cut
//!   off was not committed, so its cursor did not move.

use std::future::Future;

use anyhow::Context;
use owlet_soc_bus::rollup::{self, Tenants};
use tokio_util::sync::CancellationToken;

use crate::config::ReportsFile;

/// Runs the rollups and the schedule on the PostgreSQL of `conninfo`
/// until `stop` resolves.
pub async fn run(
    conninfo: String,
    config: ReportsFile,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    crate::outputs::prepare_cursors(&conninfo).await?;
    let shutdown = CancellationToken::new();
    let rollups = tokio::spawn(rollup::run(
        conninfo.clone(),
        Tenants::default(),
        shutdown.clone().cancelled_owned(),
    ));
    let reports = config.reports.clone();
    let schedule = tokio::spawn(owlet_soc_report::schedule::run_postgres(
        conninfo,
        reports,
        move |tenant| config.plan(tenant),
        shutdown.clone(),
    ));
    tracing::info!("owlet-soc reports {} running", env!("CARGO_PKG_VERSION"));
    let (mut rollups, mut schedule) = (rollups, schedule);
    // Either half ending on its own is a failure: stop the process with
    // its reason (systemd starts it again) rather than run half of it.
    let (rolled, scheduled) = tokio::select! {
        () = stop => {
            shutdown.cancel();
            (rollups.await, schedule.await)
        }
        rolled = &mut rollups => {
            shutdown.cancel();
            (rolled, schedule.await)
        }
        scheduled = &mut schedule => {
            shutdown.cancel();
            (rollups.await, scheduled)
        }
    };
    tracing::info!("owlet-soc reports stopped");
    rolled.context("the rollup task failed")??;
    scheduled.context("the report schedule's task failed")??;
    Ok(())
}

/// `owlet-soc reports --status`: per tenant with stored events, where the
/// rollup consumer stands and which reports are kept. Read-only.
pub async fn status(conninfo: &str) -> anyhow::Result<()> {
    let pg = owlet_soc_bus::writer::connect_postgres(conninfo).await?;
    println!("Rollups (consumer {}) and reports kept:", rollup::CONSUMER);
    let tenants = owlet_soc_bus::stored::tenants_with_events(&pg).await?;
    if tenants.is_empty() {
        println!("  no tenant stored yet (the writer makes a tenant's events table first)");
    }
    for tenant in tenants {
        let reader = owlet_soc_bus::status::reader(&pg, rollup::CONSUMER, &tenant).await?;
        let (count, newest) = owlet_soc_report::shelf::postgres::kept(&pg, &tenant)
            .await
            .map_err(anyhow::Error::msg)?;
        println!(
            "{}\n  {:<20} {count} reports kept{}",
            crate::analyst::reader_line(&reader, "owlet-soc reports"),
            "",
            newest.map(|n| format!(", newest {n}")).unwrap_or_default()
        );
    }
    Ok(())
}
