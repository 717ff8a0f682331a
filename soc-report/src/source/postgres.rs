//! The scaled-out SOC's source: a tenant's schema in PostgreSQL
//! (`tenant_<t>`: `events` written by `owlet-soc writer`, `rollup_*` by
//! the rollup consumer, `owlet_soc_bus::rollup`).
//!
//! * **One tenant per connection.** [`Postgres::connect`] opens a
//!   connection of its own whose `search_path` is the tenant's schema
//!   alone, read-only (`default_transaction_read_only`): the report's
//!   unqualified `events` and `rollup_*` are that tenant's and nothing
//!   else's, and nothing can be written through it.
//! * **Blocking, like the report.** The report is built on a blocking
//!   thread (`spawn_blocking`); each query runs on the runtime of the
//!   handle given at connect time, rows streamed one at a time.
//! * **Backend-specific**: incidents' `raised_log_id` is the PostgreSQL
//!   row id; notification figures come from the record `owlet-soc notify`
//!   keeps in the same schema (`notification_events`, `deliveries`), none
//!   while it has made no record there.

use futures::StreamExt;
use owlet_soc_bus::writer::{connect_postgres, schema_of};
use owlet_soc_export::Zone;
use tokio::runtime::Handle;
use tokio_postgres::Client;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::{Param, Row, Source, Value};
use crate::{Incident, ReportError, notified};

/// One tenant's schema, read-only.
pub struct Postgres {
    pg: Client,
    tenant: String,
    runtime: Handle,
}

fn pg(e: impl std::fmt::Display) -> ReportError {
    ReportError::Postgres(e.to_string())
}

impl Postgres {
    /// Connects to the PostgreSQL of `conninfo` for `tenant`'s schema.
    pub async fn connect(conninfo: &str, tenant: &str) -> Result<Self, ReportError> {
        let client = connect_postgres(conninfo).await.map_err(pg)?;
        client
            .batch_execute(&format!(
                "SET search_path TO {}; SET default_transaction_read_only TO on",
                schema_of(tenant)
            ))
            .await
            .map_err(|e| pg(owlet_soc_bus::BusError::from_postgres(e)))?;
        Ok(Self {
            pg: client,
            tenant: tenant.to_string(),
            runtime: Handle::current(),
        })
    }

    /// Whether the connection ended (the server closed it, restarted,
    /// or terminated its backend): nothing can be read through it again.
    pub fn is_closed(&self) -> bool {
        self.pg.is_closed()
    }

    fn exists(&self, table: &str) -> Result<bool, ReportError> {
        Ok(self
            .row("SELECT to_regclass(?1) IS NOT NULL", &[Param::Text(table)])?
            .int(0)
            != 0)
    }
}

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Param::Int(i) => i.to_sql(ty, out),
            Param::Text(t) => t.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as ToSql>::accepts(ty) || <&str as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

/// The report's `?N` parameters as PostgreSQL's `$N`.
fn dollars(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

fn value(r: &tokio_postgres::Row, i: usize) -> Result<Value, ReportError> {
    let ty = r.columns()[i].type_();
    let v = match *ty {
        Type::INT8 => r.try_get::<_, Option<i64>>(i).map(|v| v.map(Value::Int)),
        Type::INT4 => r
            .try_get::<_, Option<i32>>(i)
            .map(|v| v.map(|v| Value::Int(v.into()))),
        Type::BOOL => r
            .try_get::<_, Option<bool>>(i)
            .map(|v| v.map(|v| Value::Int(v.into()))),
        Type::FLOAT8 => r.try_get::<_, Option<f64>>(i).map(|v| v.map(Value::Real)),
        Type::BYTEA => r
            .try_get::<_, Option<Vec<u8>>>(i)
            .map(|v| v.map(Value::Bytes)),
        _ => r
            .try_get::<_, Option<String>>(i)
            .map(|v| v.map(Value::Text)),
    };
    Ok(v.map_err(|e| pg(format!("column {i} ({ty}): {e}")))?
        .unwrap_or(Value::Null))
}

impl Source for Postgres {
    fn tenant(&self) -> &str {
        &self.tenant
    }

    fn ready(&self) -> Result<(), ReportError> {
        if self.exists("rollup_hours")? {
            return Ok(());
        }
        Err(ReportError::Postgres(format!(
            "schema {} has no rollup tables yet: the rollup consumer (consumer \"rollup\" in owlet_bus.cursors) makes them once the writer stored the tenant's first events; check that it runs against this PostgreSQL, then build the report again",
            schema_of(&self.tenant)
        )))
    }

    fn has_events(&self) -> Result<bool, ReportError> {
        self.exists("events")
    }

    fn each_row(
        &self,
        sql: &str,
        params: &[Param<'_>],
        row: &mut dyn FnMut(&Row) -> Result<(), ReportError>,
    ) -> Result<(), ReportError> {
        let sql = dollars(sql);
        self.runtime.block_on(async {
            let rows = self
                .pg
                .query_raw(&sql, params.iter())
                .await
                .map_err(|e| pg(owlet_soc_bus::BusError::from_postgres(e)))?;
            let mut rows = std::pin::pin!(rows);
            while let Some(r) = rows.next().await {
                let r = r.map_err(|e| pg(owlet_soc_bus::BusError::from_postgres(e)))?;
                let values = (0..r.len())
                    .map(|i| value(&r, i))
                    .collect::<Result<Vec<_>, _>>()?;
                row(&Row(values))?;
            }
            Ok(())
        })
    }

    fn newest(
        &self,
        columns: &str,
        filter: &str,
        (from, to): (i64, i64),
        limit: usize,
    ) -> Result<Vec<Row>, ReportError> {
        self.rows(
            &format!(
                "SELECT {columns} FROM events WHERE {filter} AND time_us >= ?1 AND time_us < ?2
                 ORDER BY time_us DESC, id DESC LIMIT {limit}"
            ),
            &[Param::Int(from), Param::Int(to)],
        )
    }

    fn fill_notified(&self, zone: &Zone, incidents: &mut [Incident]) -> Result<(), ReportError> {
        if incidents.iter().all(|i| i.raised_log_id.is_none())
            || !(self.exists("notification_events")? && self.exists("deliveries")?)
        {
            return Ok(());
        }
        notified::fill_each(zone, incidents, |id| {
            let r = self.row(notified::FIRST_DELIVERY, &[Param::Int(id)])?;
            Ok(r.opt_int(0).zip(r.opt_int(1)))
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parameters_become_dollars() {
        assert_eq!(
            super::dollars("a = ?1 AND b < ?12 AND c = '?'"),
            "a = $1 AND b < $12 AND c = '?'"
        );
    }
}
