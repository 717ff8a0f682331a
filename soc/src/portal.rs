//! `owlet-soc portal`: the web portal, a process of its own beside the
//! receivers (embedded SOC: soc.toml) or beside the writer and the other
//! roles (scaled-out SOC: portal.toml, [`crate::portal_config`]).
//!
//! Guarantees:
//! * **Fails at start, with the reason,** when the scaled-out SOC's
//!   PostgreSQL cannot be reached or its role cannot read the tenant list
//!   (`owlet_bus.cursors`); systemd starts it again. Once running, a page
//!   whose PostgreSQL read fails is a 500 and the log says why; the next
//!   request takes another of the pool's connections (one that ended is
//!   never reused: owlet_soc_portal's `backend::pool`).
//! * **Graceful stop.** SIGTERM or SIGINT stops accepting and exits 0.

use std::future::Future;

use anyhow::Context;
use owlet_soc_portal::{DataSettings, Settings};

/// Serves `settings`' portal until `stop` resolves.
pub async fn run(settings: Settings, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
    if let DataSettings::Postgres { conninfo, .. } = &settings.data {
        let pg = owlet_soc_bus::writer::connect_postgres(conninfo).await?;
        owlet_soc_bus::stored::tenants(&pg).await.context(
            "the portal's PostgreSQL role cannot read the tenant list: grant it USAGE on schema owlet_bus and SELECT on owlet_bus.cursors (the writer makes them at its first start), and the tenants' roles owlet_tenant_<name>",
        )?;
    }
    owlet_soc_portal::serve(settings, stop).await?;
    Ok(())
}
