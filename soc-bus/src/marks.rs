//! The agents' marks as the writer that holds a tenant knows them: per
//! agent, the highest `seq` stored in `tenant_<t>.agents`.
//!
//! Guarantees:
//! * **Exact.** The marks are read from PostgreSQL when the writer claims
//!   the tenant, and only the writer holding the tenant's position (one
//!   connection at a time, [`crate::cursor`]) raises them, in the
//!   transaction that stores the batch; the copy here takes a raise only
//!   once that transaction committed ([`Marks::raise`]). A failed batch
//!   ends the consumer, and the next one reads the marks again.
//! * **Stored once.** An agent's events are on its subject once each, in
//!   ascending order (the receivers' guarantee), so an event at or below
//!   its agent's mark, or at or below an event of the same agent earlier
//!   in the batch, is stored already and is dropped ([`Marks::fresh`]).
//!   Records the SOC made about an agent (`seq` NULL) have no mark: the
//!   writer's position alone stores each once.

use std::collections::HashMap;

use crate::BusError;
use crate::writer::{Row, pg_error, schema_of};

/// The marks of one tenant's agents.
pub(crate) struct Marks {
    seq: HashMap<String, i64>,
}

/// The marks a batch raises, to write in its transaction and to take
/// into [`Marks`] once it committed.
#[derive(Default)]
pub(crate) struct Raised {
    pub(crate) agents: Vec<String>,
    pub(crate) seqs: Vec<i64>,
}

impl Marks {
    /// The tenant's marks as stored.
    pub(crate) async fn load(pg: &tokio_postgres::Client, tenant: &str) -> Result<Self, BusError> {
        let rows = pg
            .query(
                &format!("SELECT agent, seq FROM {}.agents", schema_of(tenant)),
                &[],
            )
            .await
            .map_err(pg_error)?;
        Ok(Self {
            seq: rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
        })
    }

    /// The rows of `rows` not stored yet, in their order, and the marks
    /// storing them raises.
    pub(crate) fn fresh<'r>(&self, rows: &'r [Row]) -> (Vec<&'r Row>, Raised) {
        let mut running: HashMap<&str, i64> = HashMap::new();
        let mut fresh = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(seq) = row.seq else {
                fresh.push(row);
                continue;
            };
            let stored = self.seq.get(&row.agent).copied().unwrap_or(0);
            let mark = running.entry(row.agent.as_str()).or_insert(stored);
            if seq > *mark {
                *mark = seq;
                fresh.push(row);
            }
        }
        let mut raised = Raised::default();
        for (agent, seq) in running {
            if self.seq.get(agent).is_none_or(|&stored| seq > stored) {
                raised.agents.push(agent.to_string());
                raised.seqs.push(seq);
            }
        }
        (fresh, raised)
    }

    /// Takes the marks a committed batch raised.
    pub(crate) fn raise(&mut self, raised: Raised) {
        for (agent, seq) in raised.agents.into_iter().zip(raised.seqs) {
            self.seq.insert(agent, seq);
        }
    }
}

/// The statement that writes a batch's [`Raised`] marks (`$1` agents, `$2`
/// their marks, `$3` when the batch was taken: an agent's `first_seen_us`
/// when it is new).
pub(crate) fn raise_sql(tenant: &str) -> String {
    format!(
        "INSERT INTO {}.agents AS a (agent, seq, first_seen_us)
  SELECT agent, seq, $3 FROM unnest($1::text[], $2::bigint[]) AS r(agent, seq)
ON CONFLICT (agent) DO UPDATE SET seq = GREATEST(a.seq, excluded.seq)",
        schema_of(tenant)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(rows: &[&Row]) -> Vec<(String, Option<i64>)> {
        rows.iter().map(|r| (r.agent.clone(), r.seq)).collect()
    }

    #[test]
    fn events_at_or_below_the_mark_or_seen_earlier_in_the_batch_are_dropped() {
        let mut marks = Marks {
            seq: HashMap::from([("a".to_string(), 10)]),
        };
        let rows = [
            Row::for_test("a", Some(9)),
            Row::for_test("a", Some(10)),
            Row::for_test("a", Some(11)),
            Row::for_test("b", Some(1)),
            Row::for_test("a", None),
            Row::for_test("a", Some(11)),
            Row::for_test("b", Some(2)),
            Row::for_test("a", Some(12)),
        ];
        let (fresh, raised) = marks.fresh(&rows);
        assert_eq!(
            seqs(&fresh),
            [
                ("a".into(), Some(11)),
                ("b".into(), Some(1)),
                ("a".into(), None),
                ("b".into(), Some(2)),
                ("a".into(), Some(12)),
            ],
            "in their order, records kept"
        );
        let mut raised_pairs: Vec<_> = raised
            .agents
            .iter()
            .cloned()
            .zip(raised.seqs.iter().copied())
            .collect();
        raised_pairs.sort();
        assert_eq!(raised_pairs, [("a".into(), 12), ("b".into(), 2)]);
        // Not taken before the commit: the same batch is fresh again.
        assert_eq!(marks.fresh(&rows).0.len(), 5);
        marks.raise(raised);
        let (fresh, raised) = marks.fresh(&rows);
        assert_eq!(seqs(&fresh), [("a".into(), None)], "only the record");
        assert!(raised.agents.is_empty(), "nothing raised twice");
    }
}
