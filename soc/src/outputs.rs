//! `owlet-soc outputs`: the scaled-out SOC's SIEM outputs, a process of
//! their own beside the receivers and writers. Each `[[output]]` of
//! `outputs.toml` runs the same loop as in the embedded SOC
//! (`owlet_soc_outputs::run_postgres`), reading the writer's tables in
//! PostgreSQL with its cursors in `owlet_bus.cursors`.
//!
//! Guarantees:
//! * **Fails at start, with the reason,** when PostgreSQL cannot be
//!   reached or the cursor table cannot be made (systemd starts it again);
//!   once running, a lost connection is retried by each output, which
//!   claims its tenants again.
//! * **Several processes, one sender per (output, tenant).** Every output
//!   claims a tenant's cursor lock before sending it; a second process
//!   with the same `[[output]]` stands by and takes over when the holder
//!   dies.
//! * **Graceful stop.** SIGTERM or SIGINT stops every output between two
//!   steps (a batch cut off was not confirmed, so its cursor did not move
//!   and whoever sends next sends it again) and the process exits 0.
//! * An output that cannot start (an unreadable CA or token file) stops
//!   the process with the output's name and the reason: a half-working
//!   process would hide it.

use std::future::Future;

use anyhow::Context;
use owlet_soc_outputs::OutputConfig;
use tokio_util::sync::CancellationToken;

/// Connects to PostgreSQL and makes the cursor table, so that a role
/// fails at start, with the reason, when it cannot run.
pub(crate) async fn prepare_cursors(conninfo: &str) -> anyhow::Result<()> {
    let pg = owlet_soc_bus::writer::connect_postgres(conninfo).await?;
    owlet_soc_bus::cursor::prepare(&pg)
        .await
        .context("creating owlet_bus.cursors (connect as the writer's PostgreSQL role: it owns the table and the tenants' schemas)")?;
    Ok(())
}

/// Runs `outputs` on the PostgreSQL of `conninfo` until `stop` resolves.
pub async fn run(
    conninfo: String,
    outputs: Vec<OutputConfig>,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    prepare_cursors(&conninfo).await?;
    let shutdown = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    for output in outputs {
        let name = output.name.clone();
        let run = owlet_soc_outputs::run_postgres(conninfo.clone(), output, shutdown.clone());
        tasks.spawn(async move {
            run.await.with_context(|| {
                format!("output {name:?} stopped; fix its [[output]] entry and start again")
            })
        });
    }
    tracing::info!(
        outputs = tasks.len(),
        "owlet-soc outputs {} running",
        env!("CARGO_PKG_VERSION")
    );
    let ended_early = tokio::select! {
        () = stop => None,
        Some(ended) = tasks.join_next() => Some(ended),
    };
    shutdown.cancel();
    let mut ended: Vec<_> = ended_early.into_iter().collect();
    while let Some(task) = tasks.join_next().await {
        ended.push(task);
    }
    let mut result = Ok(());
    for ended in ended {
        let outcome = ended.context("an output's task failed").and_then(|r| r);
        if let Err(e) = outcome {
            tracing::error!(error = %format!("{e:#}"), "output stopped");
            result = result.and(Err(e));
        }
    }
    tracing::info!("owlet-soc outputs stopped");
    result
}
