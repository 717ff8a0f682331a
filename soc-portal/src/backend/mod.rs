//! The one seam between the pages and where a tenant's data lives: the
//! embedded SOC's files ([`embedded`]: the tenant's SQLite log and the
//! receiver's `soc.db`) or the scaled-out SOC's PostgreSQL ([`postgres`]:
//! the tenant's schema `tenant_<t>`). Pages ask [`Backend::tenant`] for a
//! [`TenantData`] of the guard's tenant and read every row they show
//! through it: sensors, the check board, alerts, changes, single events,
//! the live feed, downloads, plots' and reports' [`Source`], kept reports.
//!
//! What every backend guarantees:
//! * **One tenant per [`TenantData`].** It is made for one tenant name
//!   (the guard's, from the session) and can read only that tenant's rows:
//!   embedded, the tenant's own file and `WHERE tenant = ?` on `soc.db`;
//!   PostgreSQL, a connection opened for that tenant alone (pooled per
//!   tenant, [`pool`]) whose `search_path` is the tenant's schema alone and
//!   whose transactions are read-only (soc-report's
//!   [`owlet_soc_report::source::postgres::Postgres`]), so every query names
//!   its tables unqualified and cannot reach another schema's.
//! * **Read-only.** Nothing here writes a tenant's data.
//! * **Nothing stored yet is empty, not an error**: a tenant without
//!   events lists nothing and its single events are 404.
//! * Blocking: call from blocking threads ([`crate::web::AppState::blocking`]).
//!
//! What stays local in both modes: users, sessions, the audit log and the
//! alert workflow (`portal.db`, [`crate::db`]) and the contacts files.

pub mod embedded;
pub mod pool;
pub mod postgres;

use std::io::Write;
use std::time::Duration;

use owlet_soc_export::{ExportError, Format, Summary, Zone};
use owlet_soc_report::Source;
use owlet_soc_report::schedule::StoredReport;
use owlet_soc_store::{Filter, StoredEvent};

use crate::data::{AlertRow, ChangeRow, CheckRow, ListFilter, Sensor};
use crate::web::PageError;

/// One tenant's data, read-only (see the module doc).
pub trait TenantData: Send {
    /// Whether the tenant stored any events yet.
    fn has_events(&self) -> Result<bool, PageError>;
    /// The tenant's sensors, with their state as of `now_us`.
    fn sensors(&self, silent_after: Duration, now_us: i64) -> Result<Vec<Sensor>, PageError>;
    /// Each check that reported within `window_us` before `now_us`, latest state.
    fn check_board(&self, now_us: i64, window_us: i64) -> Result<Vec<CheckRow>, PageError>;
    /// Raised alerts, newest first.
    fn alerts(&self, filter: &ListFilter) -> Result<Vec<AlertRow>, PageError>;
    /// File changes, newest first.
    fn changes(&self, filter: &ListFilter) -> Result<Vec<ChangeRow>, PageError>;
    /// The stored event `id`, if kept.
    fn event(&self, id: i64) -> Result<Option<StoredEvent>, PageError>;
    /// The highest event id stored (0: none).
    fn last_id(&self) -> Result<i64, PageError>;
    /// Up to `limit` events with `id > after`, in id order.
    fn read_after(&self, after: i64, limit: usize) -> Result<Vec<StoredEvent>, PageError>;
    /// Streams the events `filter` selects to `out` (constant memory).
    fn export(
        &self,
        filter: &Filter,
        format: Format,
        zone: &Zone,
        out: &mut dyn Write,
    ) -> Result<Summary, ExportError>;
    /// Where plots and reports read rollups and events; `None` before the
    /// tenant's first event.
    fn source(&self) -> Option<&dyn Source>;
    /// The kept (scheduled) reports, newest period first.
    fn reports(&self) -> Result<Vec<StoredReport>, PageError>;
    /// One kept report file's bytes, `None` when it is not kept.
    fn report_file(&self, name: &str) -> Result<Option<Vec<u8>>, PageError>;
}

/// Where the portal reads tenants' data.
pub enum Backend {
    Embedded(embedded::Embedded),
    Postgres(postgres::Postgres),
}

impl Backend {
    /// The data of `tenant` (a name the guard checked against the session).
    pub fn tenant(&self, tenant: &str) -> Result<Box<dyn TenantData>, PageError> {
        match self {
            Backend::Embedded(b) => Ok(Box::new(b.tenant(tenant)?)),
            Backend::Postgres(b) => Ok(Box::new(b.tenant(tenant)?)),
        }
    }

    /// Whether the SOC stores anything of `tenant`.
    pub fn stores(&self, tenant: &str) -> bool {
        match self {
            Backend::Embedded(b) => b.stores(tenant),
            Backend::Postgres(b) => b.stores(tenant),
        }
    }

    /// Every tenant the SOC stores.
    pub fn tenants(&self) -> Vec<String> {
        match self {
            Backend::Embedded(b) => b.tenants(),
            Backend::Postgres(b) => b.tenants(),
        }
    }
}

/// A PostgreSQL or store error as a page's 500 (the log says what).
pub(crate) fn internal(e: impl std::fmt::Display) -> PageError {
    PageError::Internal(e.to_string())
}
