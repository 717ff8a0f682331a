//! The seam between a report's assembly ([`crate::build`]) and where a
//! tenant's rollups and events live: the embedded SOC's SQLite file
//! ([`sqlite`], a [`TenantReader`]) or the scaled-out SOC's PostgreSQL
//! schema ([`postgres`]). Sections, figures and rendering are the same
//! code for both; a source only runs queries.
//!
//! What every source guarantees:
//! * it reads exactly one tenant's tables, named without a schema
//!   (`events`, `rollup_*`) and resolved to that tenant's own (SQLite: its
//!   file; PostgreSQL: its schema), so a report cannot reach another
//!   tenant's data;
//! * [`Source::each_row`] runs the portable SQL the report writes (`?N`
//!   parameters; integer sums cast to `BIGINT`) and hands the rows over
//!   one at a time: memory does not grow with the result;
//! * it never writes.
//!
//! [`TenantReader`]: owlet_soc_store::TenantReader

pub mod postgres;
pub mod sqlite;

use owlet_soc_export::Zone;

use crate::{Incident, ReportError};

/// A query parameter.
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    Int(i64),
    Text(&'a str),
}

/// A value of a result row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Bytes(Vec<u8>),
}

/// One result row. Getters are lenient the way the report needs: a NULL
/// integer or text is 0 or empty; `opt_*` keep NULL apart.
#[derive(Debug, Clone, Default)]
pub struct Row(pub Vec<Value>);

impl Row {
    fn at(&self, i: usize) -> &Value {
        self.0.get(i).unwrap_or(&Value::Null)
    }

    pub fn opt_int(&self, i: usize) -> Option<i64> {
        match self.at(i) {
            Value::Int(v) => Some(*v),
            Value::Real(v) => Some(*v as i64),
            _ => None,
        }
    }

    pub fn int(&self, i: usize) -> i64 {
        self.opt_int(i).unwrap_or(0)
    }

    pub fn opt_real(&self, i: usize) -> Option<f64> {
        match self.at(i) {
            Value::Int(v) => Some(*v as f64),
            Value::Real(v) => Some(*v),
            _ => None,
        }
    }

    pub fn real(&self, i: usize) -> f64 {
        self.opt_real(i).unwrap_or(0.0)
    }

    pub fn opt_text(&self, i: usize) -> Option<String> {
        match self.at(i) {
            Value::Text(v) => Some(v.clone()),
            _ => None,
        }
    }

    pub fn text(&self, i: usize) -> String {
        self.opt_text(i).unwrap_or_default()
    }

    pub fn bytes(&self, i: usize) -> &[u8] {
        match self.at(i) {
            Value::Bytes(v) => v,
            _ => &[],
        }
    }
}

/// Where a report reads one tenant's rollups and events.
pub trait Source {
    /// The tenant whose data this source reads.
    fn tenant(&self) -> &str;

    /// Fails, saying how to fix it, when the tenant's store lacks the
    /// tables reports read.
    fn ready(&self) -> Result<(), ReportError>;

    /// Whether the tenant has an `events` table yet (a tenant that never
    /// stored an event has none).
    fn has_events(&self) -> Result<bool, ReportError>;

    /// Runs `sql` with `params` and calls `row` for each result row, in
    /// order.
    fn each_row(
        &self,
        sql: &str,
        params: &[Param<'_>],
        row: &mut dyn FnMut(&Row) -> Result<(), ReportError>,
    ) -> Result<(), ReportError>;

    /// The newest `limit` events matching `filter` (SQL over `events`)
    /// with `time_us` in `[from, to)`, newest first (ties: newest `id`
    /// first), as `columns`.
    fn newest(
        &self,
        columns: &str,
        filter: &str,
        range: (i64, i64),
        limit: usize,
    ) -> Result<Vec<Row>, ReportError>;

    /// Fills each incident's notification figures from the tenant's
    /// notification record, where this backend keeps one.
    fn fill_notified(&self, zone: &Zone, incidents: &mut [Incident]) -> Result<(), ReportError>;

    /// Every row of `sql`, collected (for small results).
    fn rows(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, ReportError> {
        let mut out = Vec::new();
        self.each_row(sql, params, &mut |r| {
            out.push(r.clone());
            Ok(())
        })?;
        Ok(out)
    }

    /// The first row of `sql` (an empty row when there is none).
    fn row(&self, sql: &str, params: &[Param<'_>]) -> Result<Row, ReportError> {
        Ok(self
            .rows(sql, params)?
            .into_iter()
            .next()
            .unwrap_or_default())
    }
}
