//! One rollup value being accumulated, and the merge rules that combine
//! it with what a store already holds: the one place both backends (the
//! embedded SOC's SQLite, the scaled-out SOC's PostgreSQL) take them from.
//!
//! A value crosses to and from a store as a [`Cell`], so the rules never
//! depend on a database's types. Merging is commutative and associative
//! (sums, min, max, histogram addition): a batch's value merged into the
//! stored one equals the value of both batches' events together.

use super::Merge::{self, Max, Min, Sum, SumReal};
use super::hist::Hist;

/// A stored rollup value, as a backend reads or writes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Int(i64),
    Real(f64),
    /// A `Min`/`Max` column with nothing observed.
    Null,
    /// A histogram's JSON text.
    Text(String),
}

/// One value being accumulated.
#[derive(Debug, Clone)]
pub enum Acc {
    Int(i64),
    Real(f64),
    Min(Option<f64>),
    Max(Option<f64>),
    Hist(Hist),
}

impl Acc {
    pub fn new(m: Merge) -> Self {
        match m {
            Sum => Acc::Int(0),
            SumReal => Acc::Real(0.0),
            Min => Acc::Min(None),
            Max => Acc::Max(None),
            Merge::Hist(_) => Acc::Hist(Hist::default()),
        }
    }

    /// Adds one observation (`None`: nothing to add).
    pub fn observe(&mut self, m: Merge, v: Option<f64>) {
        let Some(v) = v else { return };
        match (self, m) {
            (Acc::Int(s), _) => *s = s.saturating_add(v as i64),
            (Acc::Real(s), _) => *s += v,
            (Acc::Min(s), _) => *s = Some(s.map_or(v, |s| s.min(v))),
            (Acc::Max(s), _) => *s = Some(s.map_or(v, |s| s.max(v))),
            (Acc::Hist(h), Merge::Hist(scale)) => h.add(scale.bucket(v)),
            (Acc::Hist(_), _) => {}
        }
    }

    /// Adds a stored value.
    pub fn merge_stored(&mut self, v: &Cell) {
        let real = match v {
            Cell::Int(i) => Some(*i as f64),
            Cell::Real(r) => Some(*r),
            _ => None,
        };
        match self {
            Acc::Int(s) => {
                if let Cell::Int(i) = v {
                    *s = s.saturating_add(*i);
                }
            }
            Acc::Real(s) => *s += real.unwrap_or(0.0),
            Acc::Min(s) => {
                if let Some(r) = real {
                    *s = Some(s.map_or(r, |s| s.min(r)));
                }
            }
            Acc::Max(s) => {
                if let Some(r) = real {
                    *s = Some(s.map_or(r, |s| s.max(r)));
                }
            }
            Acc::Hist(h) => {
                if let Cell::Text(t) = v {
                    h.merge(&Hist::parse(t));
                }
            }
        }
    }

    /// The value as it is stored.
    pub fn value(&self) -> Cell {
        match self {
            Acc::Int(i) => Cell::Int(*i),
            Acc::Real(r) => Cell::Real(*r),
            Acc::Min(o) | Acc::Max(o) => o.map_or(Cell::Null, Cell::Real),
            Acc::Hist(h) => Cell::Text(h.to_json()),
        }
    }
}
