//! The store: a directory with one database file per tenant.
//!
//! ```text
//! ROOT/tenants/TENANT/events.db   the tenant's log (see SCHEMA.md)
//! ROOT/cursors.db                 consumers' positions (crate::cursor)
//! ```
//!
//! Tenant names are checked like certificate identities (letters, digits,
//! `. _ -`, not starting with `.` or `-`), so a name is always one plain
//! directory below `tenants/`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Result, StoreError};
use crate::read::TenantReader;
use crate::tenant::TenantLog;

/// File name of a tenant's database inside its directory.
pub const EVENTS_FILE: &str = "events.db";

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens the store at `root`, creating its directories.
    pub fn open(root: &Path) -> Result<Self> {
        let tenants = root.join("tenants");
        std::fs::create_dir_all(&tenants).map_err(|source| StoreError::Io {
            path: tenants.clone(),
            source,
        })?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// The store at `root` for reading, creating nothing: the read-side
    /// commands run as any user (root, too) and must not leave directories
    /// or files the receiver's user cannot write.
    pub fn existing(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Tenants with a database, sorted.
    pub fn tenants(&self) -> Result<Vec<String>> {
        let dir = self.root.join("tenants");
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            // Nothing stored yet (the receiver creates it).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StoreError::Io { path: dir, source }),
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter(|e| e.path().join(EVENTS_FILE).exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        Ok(names)
    }

    /// The directory of `tenant` (checked name; may not exist yet).
    pub fn tenant_dir(&self, tenant: &str) -> Result<PathBuf> {
        owlet_tls::Identity::new(tenant, "x").map_err(|e| StoreError::InvalidTenant {
            name: tenant.to_string(),
            reason: e.to_string(),
        })?;
        Ok(self.root.join("tenants").join(tenant))
    }

    /// The database file of `tenant`.
    pub fn tenant_file(&self, tenant: &str) -> Result<PathBuf> {
        Ok(self.tenant_dir(tenant)?.join(EVENTS_FILE))
    }

    /// Opens `tenant`'s log for writing, creating it. A new tenant's
    /// database is made complete (schema and all) in a hidden directory and
    /// then renamed into place, so a reader never sees a half-made one.
    pub fn writer(&self, tenant: &str) -> Result<TenantLog> {
        let dir = self.tenant_dir(tenant)?;
        if !dir.join(EVENTS_FILE).exists() {
            let io = |path: &Path| {
                let path = path.to_path_buf();
                move |source| StoreError::Io { path, source }
            };
            let new = self.root.join("tenants").join(format!(".new-{tenant}"));
            if new.exists() {
                std::fs::remove_dir_all(&new).map_err(io(&new))?;
            }
            std::fs::create_dir_all(&new).map_err(io(&new))?;
            let log = TenantLog::open(&new.join(EVENTS_FILE), tenant)?;
            log.checkpoint()?;
            drop(log);
            std::fs::rename(&new, &dir).map_err(io(&dir))?;
        }
        TenantLog::open(&dir.join(EVENTS_FILE), tenant)
    }

    /// Opens `tenant`'s log read-only; an unknown tenant is an error that
    /// lists the known ones.
    pub fn reader(&self, tenant: &str) -> Result<TenantReader> {
        let file = self.tenant_file(tenant)?;
        if !file.exists() {
            return Err(self.unknown(tenant));
        }
        TenantReader::open(&file, tenant)
    }

    /// The error for a tenant that has no database.
    pub fn unknown(&self, tenant: &str) -> StoreError {
        let known = self.tenants().unwrap_or_default();
        StoreError::UnknownTenant {
            name: tenant.to_string(),
            known: if known.is_empty() {
                "none yet".to_string()
            } else {
                known.join(", ")
            },
        }
    }

    /// Writes a consistent copy of `tenant`'s database to `dest` (SQLite's
    /// `VACUUM INTO`: a snapshot, compact, readable by any sqlite3),
    /// beside a serving receiver.
    pub fn snapshot(&self, tenant: &str, dest: &Path) -> Result<()> {
        let file = self.tenant_file(tenant)?;
        if !file.exists() {
            return Err(self.unknown(tenant));
        }
        let db = rusqlite::Connection::open_with_flags(
            &file,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::sqlite(&file, e))?;
        db.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| StoreError::sqlite(&file, e))?;
        db.execute("VACUUM INTO ?1", [dest.to_string_lossy()])
            .map_err(|e| StoreError::sqlite(dest, e))?;
        Ok(())
    }

    /// Deletes `tenant`'s database and directory (the end of a contract;
    /// export first). The receiver must not be serving the tenant.
    pub fn delete_tenant(&self, tenant: &str) -> Result<()> {
        let dir = self.tenant_dir(tenant)?;
        if !dir.join(EVENTS_FILE).exists() {
            return Err(self.unknown(tenant));
        }
        std::fs::remove_dir_all(&dir).map_err(|source| StoreError::Io { path: dir, source })
    }
}

/// The open writers of a receiver, one per tenant seen.
pub struct Writers {
    store: Store,
    open: HashMap<String, TenantLog>,
}

impl Writers {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            open: HashMap::new(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The writer of `tenant`, opened on first use, and opened again when
    /// its file was deleted meanwhile (`owlet-soc tenant delete` while the
    /// receiver runs): writing on into the unlinked file would acknowledge
    /// events that no one can ever read.
    pub fn get(&mut self, tenant: &str) -> Result<&mut TenantLog> {
        if self
            .open
            .get(tenant)
            .is_some_and(|log| !log.path().exists())
        {
            tracing::info!(%tenant, "the tenant's database was deleted; a new one is started");
            self.open.remove(tenant);
        }
        if !self.open.contains_key(tenant) {
            let log = self.store.writer(tenant)?;
            self.open.insert(tenant.to_string(), log);
        }
        Ok(self.open.get_mut(tenant).expect("inserted above"))
    }
}
