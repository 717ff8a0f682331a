//! A tenant's rollup tables in PostgreSQL (`tenant_<t>.rollup_*`): the
//! same tables, columns and statements as the embedded SOC's
//! (`owlet_soc_store::rollup::sql`, PostgreSQL dialect), and the
//! [`RollupStore`] that runs them inside the rollup consumer's transaction.
//!
//! Never: commit on its own (the consumer's cursor moves in the same
//! transaction), or touch another tenant's schema (every statement names
//! the tenant's schema).

use owlet_soc_store::rollup::acc::Cell;
use owlet_soc_store::rollup::sql::{Dialect, HoursSql, TableSql, create_tables};
use owlet_soc_store::rollup::store::{Put, RollupStore};
use owlet_soc_store::rollup::{Merge, TABLES};
use tokio_postgres::Transaction;
use tokio_postgres::types::ToSql;

use crate::BusError;
use crate::writer::{pg_error, role_of, schema_of};

/// Every rollup table's name.
fn table_names() -> impl Iterator<Item = &'static str> {
    std::iter::once("rollup_hours").chain(TABLES.iter().map(|t| t.name))
}

/// The DDL of `tenant`'s rollup tables (idempotent), readable by the
/// tenant's role like its events.
pub fn ddl(tenant: &str) -> String {
    let schema = schema_of(tenant);
    let tables: Vec<String> = table_names().map(|t| format!("{schema}.{t}")).collect();
    format!(
        "{}REVOKE ALL ON {tables} FROM PUBLIC;\nGRANT SELECT ON {tables} TO {role};",
        create_tables(Dialect::Postgres, &format!("{schema}.")),
        tables = tables.join(", "),
        role = role_of(tenant),
    )
}

/// The statements of one tenant's rollup tables.
pub struct TenantSql {
    hours: HoursSql,
    tables: Vec<TableSql>,
}

impl TenantSql {
    pub fn new(tenant: &str) -> Self {
        let prefix = format!("{}.", schema_of(tenant));
        Self {
            hours: HoursSql::new(Dialect::Postgres, &prefix),
            tables: TableSql::all(Dialect::Postgres, &prefix),
        }
    }
}

/// A tenant's rollup tables inside one transaction.
pub struct Pg<'a, 't> {
    pub tx: &'a Transaction<'t>,
    pub sql: &'a TenantSql,
}

type Param = Box<dyn ToSql + Sync + Send>;

fn param(c: &Cell) -> Param {
    match c {
        Cell::Int(i) => Box::new(*i),
        Cell::Real(r) => Box::new(*r),
        Cell::Null => Box::new(None::<f64>),
        Cell::Text(t) => Box::new(t.clone()),
    }
}

/// `hour_us`, the keys, then the values, as statement parameters.
fn row(hour: i64, keys: &[String], values: &[Cell]) -> Vec<Param> {
    let mut params: Vec<Param> = vec![Box::new(hour)];
    params.extend(keys.iter().map(|k| Box::new(k.clone()) as Param));
    params.extend(values.iter().map(param));
    params
}

fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// The values of rollup table `table` (an index in [`TABLES`]) in `row`,
/// from its column `from` on.
pub fn values_of(row: &tokio_postgres::Row, table: usize, from: usize) -> Vec<Cell> {
    TABLES[table]
        .values
        .iter()
        .enumerate()
        .map(|(i, (_, m))| match m {
            Merge::Sum => Cell::Int(row.get(from + i)),
            Merge::SumReal => Cell::Real(row.get(from + i)),
            Merge::Min | Merge::Max => row
                .get::<_, Option<f64>>(from + i)
                .map_or(Cell::Null, Cell::Real),
            Merge::Hist(_) => Cell::Text(row.get(from + i)),
        })
        .collect()
}

impl Pg<'_, '_> {
    async fn execute(&self, sql: &str, params: &[Param]) -> Result<(), BusError> {
        self.tx
            .execute(sql, &refs(params))
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn query(
        &self,
        sql: &str,
        params: &[Param],
    ) -> Result<Vec<tokio_postgres::Row>, BusError> {
        self.tx.query(sql, &refs(params)).await.map_err(pg_error)
    }
}

impl RollupStore for Pg<'_, '_> {
    type Error = BusError;

    async fn add_events(&mut self, hour: i64, events: i64) -> Result<(), BusError> {
        self.execute(&self.sql.hours.add, &[Box::new(hour), Box::new(events)])
            .await
    }

    async fn is_pruned(&mut self, hour: i64) -> Result<bool, BusError> {
        let rows = self
            .query(&self.sql.hours.is_pruned, &[Box::new(hour)])
            .await?;
        Ok(rows.first().is_some_and(|r| r.get::<_, i64>(0) != 0))
    }

    async fn select(
        &mut self,
        table: usize,
        hour: i64,
        keys: &[String],
    ) -> Result<Option<Vec<Cell>>, BusError> {
        let rows = self
            .query(&self.sql.tables[table].select, &row(hour, keys, &[]))
            .await?;
        Ok(rows.first().map(|r| values_of(r, table, 0)))
    }

    async fn put(
        &mut self,
        how: Put,
        table: usize,
        hour: i64,
        keys: &[String],
        values: &[Cell],
    ) -> Result<(), BusError> {
        let sql = match how {
            Put::Add => self.sql.tables[table].upsert.as_ref(),
            Put::Replace => Some(&self.sql.tables[table].replace),
        };
        match sql {
            Some(sql) => self.execute(sql, &row(hour, keys, values)).await,
            None => Ok(()),
        }
    }

    async fn kept(&mut self, table: usize, hour: i64, group: &str) -> Result<i64, BusError> {
        let rows = self
            .query(
                &self.sql.tables[table].kept,
                &[Box::new(hour), Box::new(group.to_string())],
            )
            .await?;
        Ok(rows.first().map_or(0, |r| r.get(0)))
    }

    async fn open_hours(&mut self, until: i64) -> Result<Vec<i64>, BusError> {
        let rows = self.query(&self.sql.hours.open, &[Box::new(until)]).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn crowded(&mut self, table: usize, hour: i64) -> Result<Vec<String>, BusError> {
        let rows = self
            .query(&self.sql.tables[table].crowded, &[Box::new(hour)])
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn take_beyond(
        &mut self,
        table: usize,
        hour: i64,
        group: &str,
    ) -> Result<Vec<i64>, BusError> {
        let params: [Param; 2] = [Box::new(hour), Box::new(group.to_string())];
        let sql = &self.sql.tables[table];
        let rows = self.query(&sql.beyond_sums, &params).await?;
        let sums = rows.first().map_or_else(Vec::new, |r| {
            (0..TABLES[table].values.len())
                .map(|i| r.get::<_, Option<i64>>(i).unwrap_or(0))
                .collect()
        });
        self.execute(&sql.beyond_delete, &params).await?;
        Ok(sums)
    }

    async fn mark_pruned(&mut self, hour: i64) -> Result<(), BusError> {
        self.execute(&self.sql.hours.close, &[Box::new(hour)]).await
    }
}
