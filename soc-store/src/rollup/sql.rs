//! The SQL of the rollup tables, written once for both backends: the
//! embedded SOC's SQLite and the scaled-out SOC's PostgreSQL differ only
//! in placeholders, a few function names and column types ([`Dialect`]).
//! Every statement reads or writes one tenant's tables: `prefix` is empty
//! in SQLite (a file per tenant) and the tenant's schema in PostgreSQL.

use super::Merge::{Max, Min, Sum, SumReal};
use super::{Merge, TABLES, TOP_N, Table};

/// The database a statement is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The `i`-th (1-based) parameter.
    fn param(self, i: usize) -> String {
        match self {
            Dialect::Sqlite => format!("?{i}"),
            Dialect::Postgres => format!("${i}"),
        }
    }

    fn params(self, from: usize, n: usize) -> String {
        (from..from + n)
            .map(|i| self.param(i))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The column type of a value merged by `m`.
    fn value_type(self, m: Merge) -> &'static str {
        match (self, m) {
            (Dialect::Sqlite, Sum) => "INTEGER NOT NULL DEFAULT 0",
            (Dialect::Sqlite, SumReal) => "REAL NOT NULL DEFAULT 0",
            (Dialect::Sqlite, Min | Max) => "REAL",
            (Dialect::Postgres, Sum) => "bigint NOT NULL DEFAULT 0",
            (Dialect::Postgres, SumReal) => "double precision NOT NULL DEFAULT 0",
            (Dialect::Postgres, Min | Max) => "double precision",
            (_, Merge::Hist(_)) => "TEXT NOT NULL DEFAULT '{}'",
        }
    }
}

/// The `CREATE TABLE` of `rollup_hours` and of every rollup table.
pub fn create_tables(d: Dialect, prefix: &str) -> String {
    let (int, exists) = match d {
        Dialect::Sqlite => ("INTEGER", ""),
        Dialect::Postgres => ("bigint", "IF NOT EXISTS "),
    };
    let mut ddl = format!(
        "CREATE TABLE {exists}{prefix}rollup_hours (
    hour_us {int} PRIMARY KEY,
    events  {int} NOT NULL DEFAULT 0,
    pruned  {int} NOT NULL DEFAULT 0
);
CREATE INDEX {exists}rollup_hours_open ON {prefix}rollup_hours(hour_us) WHERE pruned = 0;
"
    );
    for t in &TABLES {
        ddl.push_str(&create_table(t, d, prefix));
    }
    ddl
}

/// The `CREATE TABLE` of `t`. Its primary key is the table's order on
/// disk: `hour_us` first, except in the bounded tables, whose readers ask
/// for one group (`dimension = 'src'`) over a range of hours and so read
/// the group's rows alone, not every group's.
pub fn create_table(t: &Table, d: Dialect, prefix: &str) -> String {
    let int = match d {
        Dialect::Sqlite => "INTEGER",
        Dialect::Postgres => "bigint",
    };
    let mut columns = vec![format!("    hour_us {int} NOT NULL")];
    columns.extend(t.keys.iter().map(|k| format!("    {k} TEXT NOT NULL")));
    columns.extend(
        t.values
            .iter()
            .map(|(v, m)| format!("    {v} {}", d.value_type(*m))),
    );
    let key = match (t.rank, t.keys) {
        (Some(_), [group, key]) => format!("{group}, hour_us, {key}"),
        _ => format!("hour_us, {}", t.keys.join(", ")),
    };
    columns.push(format!("    PRIMARY KEY ({key})"));
    let (exists, rowid) = match d {
        Dialect::Sqlite => ("", " WITHOUT ROWID"),
        Dialect::Postgres => ("IF NOT EXISTS ", ""),
    };
    format!(
        "CREATE TABLE {exists}{prefix}{} (\n{}\n){rowid};\n",
        t.name,
        columns.join(",\n")
    )
}

/// The statements of `rollup_hours`.
#[derive(Debug)]
pub struct HoursSql {
    /// Adds `?2` events to hour `?1`.
    pub add: String,
    /// Whether hour `?1` is closed.
    pub is_pruned: String,
    /// The open hours starting at or before `?1`.
    pub open: String,
    /// Marks hour `?1` closed.
    pub close: String,
}

impl HoursSql {
    pub fn new(d: Dialect, prefix: &str) -> Self {
        let p = |i| d.param(i);
        Self {
            add: format!(
                "INSERT INTO {prefix}rollup_hours AS r (hour_us, events) VALUES ({}, {})
                 ON CONFLICT (hour_us) DO UPDATE SET events = r.events + excluded.events",
                p(1),
                p(2)
            ),
            is_pruned: format!(
                "SELECT pruned FROM {prefix}rollup_hours WHERE hour_us = {}",
                p(1)
            ),
            open: format!(
                "SELECT hour_us FROM {prefix}rollup_hours WHERE pruned = 0 AND hour_us <= {} ORDER BY hour_us",
                p(1)
            ),
            close: format!(
                "UPDATE {prefix}rollup_hours SET pruned = 1 WHERE hour_us = {}",
                p(1)
            ),
        }
    }
}

/// The statements of one rollup table. Parameters: `hour_us` first, then
/// the key columns, then the values.
#[derive(Debug)]
pub struct TableSql {
    /// Selects the values of one key.
    pub select: String,
    /// Writes one whole row.
    pub replace: String,
    /// Adds to a row in one statement, for tables without histograms.
    pub upsert: Option<String>,
    /// Bounded tables: how many keys (not [`super::OTHER`]) group `?2`
    /// keeps in hour `?1`.
    pub kept: String,
    /// Bounded tables: the groups keeping more than [`TOP_N`] keys in hour `?1`.
    pub crowded: String,
    /// Bounded tables: the sums of every value of the keys of group `?2`
    /// in hour `?1` beyond its top [`TOP_N`].
    pub beyond_sums: String,
    /// Bounded tables: deletes those keys.
    pub beyond_delete: String,
}

impl TableSql {
    /// The statements of every table in [`TABLES`] order.
    pub fn all(d: Dialect, prefix: &str) -> Vec<TableSql> {
        TABLES.iter().map(|t| TableSql::new(t, d, prefix)).collect()
    }

    fn new(t: &Table, d: Dialect, prefix: &str) -> Self {
        let name = format!("{prefix}{}", t.name);
        let p = |i| d.param(i);
        let values: Vec<&str> = t.values.iter().map(|(v, _)| *v).collect();
        let key_terms: Vec<String> = t
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{k} = {}", p(i + 2)))
            .collect();
        let select = format!(
            "SELECT {} FROM {name} WHERE hour_us = {} AND {}",
            values.join(", "),
            p(1),
            key_terms.join(" AND ")
        );
        let insert = format!(
            "INTO {name} AS r (hour_us, {}, {}) VALUES ({})",
            t.keys.join(", "),
            values.join(", "),
            d.params(1, 1 + t.keys.len() + values.len())
        );
        let conflict = match (t.rank, t.keys) {
            (Some(_), [group, key]) => format!("{group}, hour_us, {key}"),
            _ => format!("hour_us, {}", t.keys.join(", ")),
        };
        let replace = match d {
            Dialect::Sqlite => format!("INSERT OR REPLACE {insert}"),
            Dialect::Postgres => format!(
                "INSERT {insert} ON CONFLICT ({conflict}) DO UPDATE SET {}",
                values
                    .iter()
                    .map(|v| format!("{v} = excluded.{v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let (least, greatest) = match d {
            Dialect::Sqlite => ("MIN", "MAX"),
            Dialect::Postgres => ("LEAST", "GREATEST"),
        };
        let set: Option<Vec<String>> = t
            .values
            .iter()
            .map(|(v, m)| match m {
                Sum | SumReal => Some(format!("{v} = r.{v} + excluded.{v}")),
                Min | Max => {
                    let f = if *m == Min { least } else { greatest };
                    Some(format!(
                        "{v} = {f}(COALESCE(r.{v}, excluded.{v}), COALESCE(excluded.{v}, r.{v}))"
                    ))
                }
                Merge::Hist(_) => None,
            })
            .collect();
        let upsert = set.map(|set| {
            format!(
                "INSERT {insert} ON CONFLICT ({conflict}) DO UPDATE SET {}",
                set.join(", ")
            )
        });
        let (group, key) = match t.keys {
            [group, key] => (*group, *key),
            _ => ("", ""),
        };
        let rank = t.rank.unwrap_or("");
        let crowded = match d {
            // The groups (a handful) by a skip through the key, each then
            // counted in the hour: a plain `GROUP BY` would scan every
            // hour of every group.
            Dialect::Sqlite => format!(
                "WITH RECURSIVE g(v) AS (
                 SELECT MIN({group}) FROM {name}
                 UNION ALL
                 SELECT (SELECT MIN({group}) FROM {name} WHERE {group} > g.v) FROM g
                 WHERE g.v IS NOT NULL)
             SELECT v FROM g WHERE v IS NOT NULL
               AND (SELECT COUNT(*) FROM {name}
                    WHERE {group} = g.v AND hour_us = ?1 AND {key} != '') > {TOP_N}"
            ),
            Dialect::Postgres => format!(
                "SELECT {group} FROM {name} WHERE hour_us = $1 AND {key} <> ''
                 GROUP BY {group} HAVING COUNT(*) > {TOP_N} ORDER BY {group}"
            ),
        };
        let all_rows = match d {
            Dialect::Sqlite => "LIMIT -1 ",
            Dialect::Postgres => "",
        };
        // Ties by key in byte order, as SQLite's BINARY collation.
        let by_key = match d {
            Dialect::Sqlite => key.to_string(),
            Dialect::Postgres => format!("{key} COLLATE \"C\""),
        };
        let beyond = format!(
            "SELECT {key} FROM {name} WHERE hour_us = {h} AND {group} = {g} AND {key} <> ''
         ORDER BY {rank} DESC, {by_key} {all_rows}OFFSET {TOP_N}",
            h = p(1),
            g = p(2)
        );
        let sum_cast = match d {
            Dialect::Sqlite => "",
            // PostgreSQL's SUM of bigint is numeric.
            Dialect::Postgres => "::bigint",
        };
        let sums = values
            .iter()
            .map(|v| format!("SUM({v}){sum_cast}"))
            .collect::<Vec<_>>()
            .join(", ");
        let in_group = format!(
            "hour_us = {} AND {group} = {} AND {key} IN ({beyond})",
            p(1),
            p(2)
        );
        Self {
            select,
            replace,
            upsert,
            kept: format!(
                "SELECT COUNT(*) FROM {name} WHERE hour_us = {} AND {group} = {} AND {key} <> ''",
                p(1),
                p(2)
            ),
            crowded,
            beyond_sums: format!("SELECT {sums} FROM {name} WHERE {in_group}"),
            beyond_delete: format!("DELETE FROM {name} WHERE {in_group}"),
        }
    }
}
