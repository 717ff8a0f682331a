//! The embedded SOC's data: a tenant's SQLite log (read-only, through
//! [`TenantReader`]) and its rows of the receiver's `soc.db` (sensors),
//! read by [`crate::data`]'s queries, and the kept reports in the tenant's
//! `reports/` directory.
//!
//! Guarantees: what [`super`] states; a tenant without a log file reads as
//! empty (sensors still come from `soc.db`).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use owlet_soc_export::{ExportError, Format, Summary, Zone};
use owlet_soc_report::Source;
use owlet_soc_report::schedule::{self, StoredReport};
use owlet_soc_store::{Filter, Store, StoredEvent, TenantReader};

use super::{TenantData, internal};
use crate::data::{self, AlertRow, ChangeRow, CheckRow, ListFilter, Sensor};
use crate::web::PageError;

/// The store root and the receiver's control database.
pub struct Embedded {
    pub store: Store,
    pub control_db: PathBuf,
}

impl Embedded {
    pub fn new(root: &std::path::Path, control_db: PathBuf) -> Self {
        Self {
            store: Store::existing(root),
            control_db,
        }
    }

    pub fn tenant(&self, tenant: &str) -> Result<EmbeddedTenant, PageError> {
        let reader = match self.store.reader(tenant) {
            Ok(r) => Some(r),
            Err(owlet_soc_store::StoreError::UnknownTenant { .. }) => None,
            Err(e) => return Err(internal(e)),
        };
        Ok(EmbeddedTenant {
            tenant: tenant.to_string(),
            reader,
            store: self.store.clone(),
            control_db: self.control_db.clone(),
        })
    }

    pub fn stores(&self, tenant: &str) -> bool {
        self.store.tenant_file(tenant).is_ok_and(|f| f.exists())
    }

    pub fn tenants(&self) -> Vec<String> {
        self.store.tenants().unwrap_or_default()
    }
}

/// One tenant of the embedded SOC.
pub struct EmbeddedTenant {
    tenant: String,
    reader: Option<TenantReader>,
    store: Store,
    control_db: PathBuf,
}

impl TenantData for EmbeddedTenant {
    fn has_events(&self) -> Result<bool, PageError> {
        Ok(self.reader.is_some())
    }

    fn sensors(&self, silent_after: Duration, now_us: i64) -> Result<Vec<Sensor>, PageError> {
        Ok(data::sensors(
            &self.control_db,
            &self.tenant,
            self.reader.as_ref(),
            silent_after,
            now_us,
        )?)
    }

    fn check_board(&self, now_us: i64, window_us: i64) -> Result<Vec<CheckRow>, PageError> {
        match &self.reader {
            Some(r) => Ok(data::check_board(r, now_us, window_us)?),
            None => Ok(Vec::new()),
        }
    }

    fn alerts(&self, filter: &ListFilter) -> Result<Vec<AlertRow>, PageError> {
        match &self.reader {
            Some(r) => Ok(data::alerts(r, filter)?),
            None => Ok(Vec::new()),
        }
    }

    fn changes(&self, filter: &ListFilter) -> Result<Vec<ChangeRow>, PageError> {
        match &self.reader {
            Some(r) => Ok(data::changes(r, filter)?),
            None => Ok(Vec::new()),
        }
    }

    fn event(&self, id: i64) -> Result<Option<StoredEvent>, PageError> {
        match &self.reader {
            Some(r) => Ok(data::event(r, id)?),
            None => Ok(None),
        }
    }

    fn last_id(&self) -> Result<i64, PageError> {
        match &self.reader {
            Some(r) => Ok(r.last_id()?),
            None => Ok(0),
        }
    }

    fn read_after(&self, after: i64, limit: usize) -> Result<Vec<StoredEvent>, PageError> {
        match &self.reader {
            Some(r) => Ok(r.read_after(after, limit)?),
            None => Ok(Vec::new()),
        }
    }

    fn export(
        &self,
        filter: &Filter,
        format: Format,
        zone: &Zone,
        mut out: &mut dyn Write,
    ) -> Result<Summary, ExportError> {
        match &self.reader {
            Some(r) => owlet_soc_export::export(r, filter, format, zone, &mut out),
            None => owlet_soc_export::export_from(|_| Ok(()), format, zone, &mut out),
        }
    }

    fn source(&self) -> Option<&dyn Source> {
        self.reader.as_ref().map(|r| r as &dyn Source)
    }

    fn reports(&self) -> Result<Vec<StoredReport>, PageError> {
        Ok(schedule::stored(&self.store, &self.tenant)?)
    }

    fn report_file(&self, name: &str) -> Result<Option<Vec<u8>>, PageError> {
        let listed = self
            .reports()?
            .into_iter()
            .any(|r| r.files.iter().any(|f| f == name));
        if !listed {
            return Ok(None);
        }
        let path = schedule::reports_dir(&self.store, &self.tenant)?.join(name);
        std::fs::read(&path)
            .map(Some)
            .map_err(|e| PageError::Internal(format!("reading {}: {e}", path.display())))
    }
}
