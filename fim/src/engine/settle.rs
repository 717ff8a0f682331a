//! Pending paths: coalescing, the rate limit and when a path is settled.
//!
//! Guarantees:
//! * a pending path is settled once it has been quiet for `coalesce` (or
//!   `2 × coalesce` after its first notification), so a burst of writes is
//!   one change with a `coalesced` count;
//! * a rename's source waits for its target, whose settle consumes it;
//! * a path changes at most `rate_limit_per_minute` times a minute on the
//!   wire (burst of [`RATE_BURST`]); further changes fold into the next
//!   allowed event; the buckets are bounded;
//! * with `large_files = background`, files too large to hash inline are
//!   hashed on a background thread through a bounded queue.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::config::LargeFiles;
use crate::state::{IoBudget, Limits, Observed, observe};

use super::apply::Settle;
use super::{Engine, Msg, RATE_BURST};

/// Large files waiting for the background hasher.
const HASH_QUEUE: usize = 64;

/// A path with notifications not yet settled.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) first: Instant,
    pub(super) last: Instant,
    pub(super) count: u32,
    pub(super) renamed_from: Option<PathBuf>,
}

/// Token bucket of one path.
#[derive(Debug)]
pub(super) struct Bucket {
    pub(super) tokens: f64,
    pub(super) last: Instant,
}

impl Engine {
    pub(super) fn touch(&mut self, path: PathBuf, now: Instant) {
        let p = self.pending.entry(path).or_insert(Pending {
            first: now,
            last: now,
            count: 0,
            renamed_from: None,
        });
        p.last = now;
        p.count = p.count.saturating_add(1);
    }

    /// Whether `path` may send an event now (takes a token if so).
    fn allow(&mut self, path: &Path, now: Instant) -> bool {
        let per_sec = f64::from(self.cfg.rate_limit_per_minute) / 60.0;
        let cap = f64::from(RATE_BURST.min(self.cfg.rate_limit_per_minute));
        let b = self.buckets.entry(path.to_path_buf()).or_insert(Bucket {
            tokens: cap,
            last: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * per_sec).min(cap);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Settles every pending path that is due. Returns when the next one is.
    pub(super) fn flush(&mut self, now: Instant, all: bool) -> Option<Instant> {
        let quiet = self.cfg.coalesce;
        let mut due: Vec<PathBuf> = Vec::new();
        let mut next: Option<Instant> = None;
        // A rename's source waits for its target (notify may deliver the
        // two halves in different batches): the target's settle consumes it.
        let sources: HashSet<&PathBuf> = self
            .pending
            .values()
            .filter_map(|p| p.renamed_from.as_ref())
            .collect();
        for (path, p) in &self.pending {
            let at = (p.last + quiet).min(p.first + quiet * 2);
            if !all && sources.contains(path) {
                continue;
            }
            if all || at <= now {
                due.push(path.clone());
            } else {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        // Renames first: the target's settle consumes the source.
        due.sort_by_key(|p| self.pending.get(p).is_none_or(|x| x.renamed_from.is_none()));
        for path in due {
            if !all && !self.allow(&path, now) {
                // Over the rate: keep folding; retry in a second.
                if let Some(p) = self.pending.get_mut(&path) {
                    p.first = now + Duration::from_secs(1) - quiet * 2;
                    p.last = p.first;
                }
                next = Some(next.map_or(now + Duration::from_secs(1), |n| {
                    n.min(now + Duration::from_secs(1))
                }));
                continue;
            }
            let Some(p) = self.pending.remove(&path) else {
                continue; // consumed by a rename
            };
            self.settle_event(&path, p);
        }
        if self.buckets.len() > 4096 {
            // Full buckets carry no information.
            let cap = f64::from(RATE_BURST.min(self.cfg.rate_limit_per_minute));
            let per_sec = f64::from(self.cfg.rate_limit_per_minute) / 60.0;
            self.buckets
                .retain(|_, b| b.tokens + now.duration_since(b.last).as_secs_f64() * per_sec < cap);
        }
        next
    }

    fn settle_event(&mut self, path: &Path, p: Pending) {
        let Some(rule) = self.rules.rule_for(path) else {
            if self.baseline.entries.remove(path).is_some() {
                self.baseline_dirty = true;
            }
            return;
        };
        let limits = self.limits(rule.diff);
        let prev = self.baseline.entries.get(path);
        let observed = observe(
            path,
            prev.as_ref(),
            false,
            limits,
            &mut IoBudget::unlimited(),
        );
        if let Observed::Entry { entry, .. } = &observed
            && entry.hash_skipped == "too_large"
            && self.cfg.large_files == LargeFiles::Background
            && self.queue_background_hash(path)
        {
            return;
        }
        let ctx = Settle {
            while_stopped: false,
            report: true,
            coalesced: p.count.max(1),
            renamed_from: p.renamed_from,
        };
        self.apply(path, observed, ctx);
    }

    fn queue_background_hash(&mut self, path: &Path) -> bool {
        if self.hasher.is_none()
            && let Some(tx) = self.tx.clone()
        {
            let (jobs_tx, jobs_rx) = mpsc::sync_channel::<PathBuf>(HASH_QUEUE);
            let budget = self.cfg.baseline_io_budget.as_u64();
            let started = std::thread::Builder::new()
                .name("fim-hash".into())
                .spawn(move || {
                    let mut budget = IoBudget::new(budget);
                    let limits = Limits {
                        max_hash_bytes: u64::MAX,
                        max_content: 0,
                    };
                    while let Ok(path) = jobs_rx.recv() {
                        let observed = observe(&path, None, false, limits, &mut budget);
                        if tx.send(Msg::Hashed(path, observed)).is_err() {
                            break;
                        }
                    }
                });
            if started.is_ok() {
                self.hasher = Some(jobs_tx);
            }
        }
        self.hasher
            .as_ref()
            .is_some_and(|h| h.try_send(path.to_path_buf()).is_ok())
    }
}
