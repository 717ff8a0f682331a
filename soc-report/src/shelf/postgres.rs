//! The scaled-out SOC's report shelf: table `tenant_<t>.reports` in the
//! PostgreSQL the writer fills, one row per file (`name`, its `period`,
//! the `body` as `bytea`, `created_us`), readable by the tenant's role
//! like its events.
//!
//! Why a table and not a directory: the scaled-out SOC's processes share
//! no disk, and a portal on another host already reads this PostgreSQL
//! for the tenant's events; a table puts the reports beside them, under
//! the same tenant separation (a schema per tenant), the same backups and
//! the same credentials, with no shared file system to set up.
//!
//! Guarantees: a file is inserted once (`ON CONFLICT DO NOTHING`: a second
//! process with the same schedule keeps the first one's); deletion names
//! only rows of expired periods. No mail: the scaled-out SOC keeps the
//! files only (`mark_for_mail` is false).

use std::path::PathBuf;

use owlet_soc_bus::writer::{role_of, schema_of};
use tokio::runtime::Handle;
use tokio_postgres::Client;

use super::{Shelf, period_of};
use crate::Period;

/// The DDL of `tenant`'s report table (idempotent).
pub fn ddl(tenant: &str) -> String {
    let table = format!("{}.reports", schema_of(tenant));
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (
  name text PRIMARY KEY,
  period text NOT NULL,
  body bytea NOT NULL,
  created_us bigint NOT NULL
);
REVOKE ALL ON {table} FROM PUBLIC;
GRANT SELECT ON {table} TO {role};",
        role = role_of(tenant)
    )
}

/// One tenant's `reports` table, through a connection of the schedule's.
pub struct Table<'a> {
    pub pg: &'a Client,
    pub tenant: &'a str,
    pub runtime: &'a Handle,
}

impl Table<'_> {
    fn table(&self) -> String {
        format!("{}.reports", schema_of(self.tenant))
    }

    fn place(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("postgres:{}/{name}", self.table()))
    }

    fn error(&self, what: &str, e: tokio_postgres::Error) -> String {
        format!(
            "{what} {}: {}",
            self.table(),
            owlet_soc_bus::BusError::from_postgres(e)
        )
    }
}

impl Shelf for Table<'_> {
    fn has(&self, name: &str) -> Result<bool, String> {
        self.runtime.block_on(async {
            let sql = format!(
                "SELECT EXISTS (SELECT 1 FROM {} WHERE name = $1)",
                self.table()
            );
            let row = self.pg.query_one(&sql, &[&name]).await;
            row.map(|r| r.get(0)).map_err(|e| self.error("reading", e))
        })
    }

    fn put(&self, name: &str, bytes: &[u8]) -> Result<Option<PathBuf>, String> {
        let period = period_of(name).map(|p| p.label).unwrap_or_default();
        let now = owlet_soc_store::time::micros(std::time::SystemTime::now());
        let inserted = self.runtime.block_on(async {
            let sql = format!(
                "INSERT INTO {} (name, period, body, created_us) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name) DO NOTHING",
                self.table()
            );
            self.pg
                .execute(&sql, &[&name, &period, &bytes, &now])
                .await
                .map_err(|e| self.error("writing into", e))
        })?;
        Ok((inserted == 1).then(|| self.place(name)))
    }

    fn delete_expired(&self, expired: &dyn Fn(&Period) -> bool) -> Result<Vec<PathBuf>, String> {
        self.runtime.block_on(async {
            let sql = format!("SELECT DISTINCT period FROM {}", self.table());
            let rows = self
                .pg
                .query(&sql, &[])
                .await
                .map_err(|e| self.error("reading", e))?;
            let mut deleted = Vec::new();
            for row in rows {
                let label: String = row.get(0);
                if !Period::parse(&label).is_ok_and(|p| expired(&p)) {
                    continue;
                }
                let sql = format!(
                    "DELETE FROM {} WHERE period = $1 RETURNING name",
                    self.table()
                );
                let gone = self
                    .pg
                    .query(&sql, &[&label])
                    .await
                    .map_err(|e| self.error("deleting from", e))?;
                deleted.extend(gone.iter().map(|r| self.place(r.get(0))));
            }
            Ok(deleted)
        })
    }

    fn mark_for_mail(&self, _: &str) -> Result<bool, String> {
        Ok(false)
    }
}

/// How many files `tenant`'s `reports` table keeps and the newest one's
/// name (by when it was made), for `owlet-soc reports --status`; none
/// while the schedule made no table there yet. Read-only.
pub async fn kept(pg: &Client, tenant: &str) -> Result<(i64, Option<String>), String> {
    let table = format!("{}.reports", schema_of(tenant));
    let row = pg
        .query_one(
            &format!(
                "SELECT count(*), (SELECT name FROM {table} ORDER BY created_us DESC, name LIMIT 1) FROM {table}"
            ),
            &[],
        )
        .await;
    match row {
        Ok(r) => Ok((r.get(0), r.get(1))),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
            Ok((0, None))
        }
        Err(e) => Err(format!(
            "reading {table}: {}",
            owlet_soc_bus::BusError::from_postgres(e)
        )),
    }
}
