//! The embedded SOC's source: a tenant's SQLite file, through its
//! read-only [`TenantReader`]; notification figures from the tenant's
//! notification record beside it (`crate::notified`).

use owlet_soc_export::Zone;
use owlet_soc_store::{Newest, TenantReader, newest_first};
use rusqlite::types::{ToSqlOutput, ValueRef};

use super::{Param, Row, Source, Value};
use crate::{Incident, ReportError};

/// The first schema version with the rollups.
const ROLLUP_VERSION: i64 = 2;

fn value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(r) => Value::Real(r),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
    }
}

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Param::Int(i) => ToSqlOutput::from(*i),
            Param::Text(t) => ToSqlOutput::from(*t),
        })
    }
}

fn row_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row((0..r.as_ref().column_count())
        .map(|i| r.get_ref(i).map(value))
        .collect::<rusqlite::Result<_>>()?))
}

impl Source for TenantReader {
    fn tenant(&self) -> &str {
        TenantReader::tenant(self)
    }

    fn ready(&self) -> Result<(), ReportError> {
        let found: i64 = self
            .connection()
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if found < ROLLUP_VERSION {
            return Err(ReportError::NotUpgraded {
                found,
                needed: ROLLUP_VERSION,
            });
        }
        Ok(())
    }

    fn has_events(&self) -> Result<bool, ReportError> {
        Ok(self.connection().query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'view' AND name = 'events')",
            [],
            |r| r.get(0),
        )?)
    }

    fn each_row(
        &self,
        sql: &str,
        params: &[Param<'_>],
        row: &mut dyn FnMut(&Row) -> Result<(), ReportError>,
    ) -> Result<(), ReportError> {
        let mut stmt = self.connection().prepare_cached(sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        while let Some(r) = rows.next()? {
            row(&row_of(r)?)?;
        }
        Ok(())
    }

    fn newest(
        &self,
        columns: &str,
        filter: &str,
        (from, to): (i64, i64),
        limit: usize,
    ) -> Result<Vec<Row>, ReportError> {
        let select = Newest {
            columns,
            filter,
            values: &[],
            from_us: Some(from),
            to_us: Some(to),
            limit,
        };
        Ok(newest_first(self.connection(), &select, row_of)?)
    }

    fn fill_notified(&self, zone: &Zone, incidents: &mut [Incident]) -> Result<(), ReportError> {
        crate::notified::fill(self, zone, incidents)
    }
}
