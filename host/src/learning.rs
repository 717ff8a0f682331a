//! Learned normal ranges: for each learned metric, a running mean and
//! variance per hour of the week (168 slots), and `anomaly` alerts when a
//! metric stays outside its slot's range for `learning.min_duration`.
//!
//! Why mean / variance (Welford) rather than a quantile sketch: three numbers
//! per slot (168 × 8 metrics ≈ 32 KB of state), exact under merging and
//! restarts, cheap to persist and to check for damage; a sketch would cost
//! tens of times more for a range that `mean ± tolerance·σ` (with a floor,
//! so a flat slot does not alarm on noise) describes well enough for "this
//! host is not doing what it usually does at this hour". The count is
//! capped ([`MAX_WEIGHT`]) so old weeks fade and a lasting legitimate
//! change becomes normal within a few weeks.
//!
//! Guarantees:
//! * a slot judges nothing before it holds `min_samples` samples, and no
//!   anomaly alert is raised before `period` has passed since learning began
//!   (the start time is persisted: restarts do not restart the period);
//! * a sample is judged against the slot *before* it is added to it;
//! * the state lives in `<state_dir>/host/learning`, written crash-safe
//!   ([`crate::persist`]); a file that cannot be read back (damaged, wrong
//!   version, wrong shape, non-finite numbers) is moved aside to
//!   `learning.damaged` and learning starts over — said in health, never a
//!   crash and never a silent reset.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use owlet_proto::v1::{HostMetrics, Severity, State};
use serde::{Deserialize, Serialize};

use crate::config::LearningConfig;
use crate::evidence::{self, Draft, Rank};
use crate::hold::{Hold, Transition};

/// Hour-of-week slots.
pub const SLOTS: usize = 168;
/// Samples beyond this weigh as if the slot held this many.
pub const MAX_WEIGHT: u32 = 2000;
const VERSION: u32 = 1;

/// One learned metric: its name, its value in a sample, and the smallest
/// half-width its normal range has (in the metric's unit).
pub struct Learned {
    pub name: &'static str,
    pub value: fn(&HostMetrics) -> f64,
    pub floor: f64,
}

const fn learned(name: &'static str, value: fn(&HostMetrics) -> f64, floor: f64) -> Learned {
    Learned { name, value, floor }
}

/// The learned metrics.
pub const LEARNED: &[Learned] = &[
    learned("cpu_percent", |m| m.cpu_percent, 10.0),
    learned("memory_used_percent", memory_percent, 5.0),
    learned("load1", |m| m.load1, 1.0),
    learned("process_count", |m| f64::from(m.process_count), 20.0),
    learned(
        "net_rx_bytes_per_second",
        |m| net(m, |n| n.rx_bytes_per_second),
        100_000.0,
    ),
    learned(
        "net_tx_bytes_per_second",
        |m| net(m, |n| n.tx_bytes_per_second),
        100_000.0,
    ),
    learned(
        "disk_read_bytes_per_second",
        |m| m.disk_io.iter().map(|d| d.read_bytes_per_second).sum(),
        1_000_000.0,
    ),
    learned(
        "disk_write_bytes_per_second",
        |m| m.disk_io.iter().map(|d| d.write_bytes_per_second).sum(),
        1_000_000.0,
    ),
];

fn memory_percent(m: &HostMetrics) -> f64 {
    if m.memory_total_bytes == 0 {
        return 0.0;
    }
    m.memory_used_bytes as f64 * 100.0 / m.memory_total_bytes as f64
}

/// Sum over interfaces other than loopback.
fn net(m: &HostMetrics, f: fn(&owlet_proto::v1::NetworkCounters) -> f64) -> f64 {
    m.networks
        .iter()
        .filter(|n| n.interface != "lo")
        .map(f)
        .sum()
}

/// Running mean and variance of one slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Slot {
    pub n: u32,
    pub mean: f64,
    /// Sum of squared differences from the mean (Welford).
    pub m2: f64,
}

impl Slot {
    pub fn add(&mut self, x: f64) {
        if self.n >= MAX_WEIGHT {
            // Keep the variance estimate while making room for the new one.
            self.m2 *= f64::from(MAX_WEIGHT - 1) / f64::from(self.n);
            self.n = MAX_WEIGHT - 1;
        }
        self.n += 1;
        let delta = x - self.mean;
        self.mean += delta / f64::from(self.n);
        self.m2 += delta * (x - self.mean);
    }

    pub fn std_dev(&self) -> f64 {
        if self.n < 2 {
            return 0.0;
        }
        (self.m2 / f64::from(self.n - 1)).max(0.0).sqrt()
    }

    /// Normal range: mean ± max(tolerance·σ, floor + 5 % of the mean).
    pub fn range(&self, tolerance: f64, floor: f64) -> (f64, f64) {
        let half = (tolerance * self.std_dev()).max(floor + 0.05 * self.mean.abs());
        (self.mean - half, self.mean + half)
    }

    fn is_sane(&self) -> bool {
        self.mean.is_finite() && self.m2.is_finite() && self.m2 >= 0.0 && self.n <= MAX_WEIGHT
    }
}

/// What is persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Stored {
    version: u32,
    /// When learning began, Unix seconds.
    started: u64,
    metrics: HashMap<String, Vec<Slot>>,
}

/// Learning progress for health and `HostMetrics.learning_percent`.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    /// Share of slots (all metrics) holding enough samples, 0..100.
    pub percent: f64,
    /// Unix seconds when anomaly alerts may begin (period end).
    pub alerts_from: u64,
    /// Slots ready per metric, out of 168.
    pub ready_slots: HashMap<String, usize>,
    /// Anomalies active now.
    pub active: Vec<String>,
}

pub struct Learning {
    config: LearningConfig,
    path: PathBuf,
    stored: Stored,
    holds: Vec<Hold>,
    /// Something health must say (a damaged file moved aside).
    pub note: Option<String>,
}

/// Hour of week (0 = Monday 00:00–01:00) in the host's local time: business
/// hours follow the local clock. A DST change shifts one hour's pattern.
pub fn hour_of_week(unix: i64) -> usize {
    use chrono::{Datelike, Local, TimeZone, Timelike};
    match Local.timestamp_opt(unix, 0).single() {
        Some(t) => t.weekday().num_days_from_monday() as usize * 24 + t.hour() as usize,
        None => 0,
    }
}

impl Learning {
    /// Loads the state from `path` or starts learning at `now_unix`.
    pub fn open(path: &Path, config: LearningConfig, now_unix: u64) -> Self {
        let fresh = || Stored {
            version: VERSION,
            started: now_unix,
            metrics: HashMap::new(),
        };
        let mut note = None;
        let stored = match std::fs::read(path) {
            Ok(bytes) => match decode(&bytes) {
                Ok(stored) => stored,
                Err(why) => {
                    let aside = path.with_file_name("learning.damaged");
                    let moved = std::fs::rename(path, &aside);
                    note = Some(format!(
                        "learning state {} could not be read ({why}); {} and learning started over",
                        path.display(),
                        match moved {
                            Ok(()) => format!("kept it as {}", aside.display()),
                            Err(e) => format!("could not move it aside ({e})"),
                        }
                    ));
                    fresh()
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => fresh(),
            Err(e) => {
                note = Some(format!(
                    "learning state {} could not be read ({e}); learning started over (fix the state directory's permissions)",
                    path.display()
                ));
                fresh()
            }
        };
        Self {
            config,
            path: path.to_path_buf(),
            stored,
            holds: vec![Hold::default(); LEARNED.len()],
            note,
        }
    }

    pub fn set_config(&mut self, config: LearningConfig) {
        self.config = config;
    }

    /// Judges `m` against the slot of `unix` (anomaly alerts on entering and
    /// leaving), then learns it.
    pub fn observe(
        &mut self,
        m: &HostMetrics,
        unix: u64,
        now: Instant,
    ) -> Vec<owlet_proto::v1::Alert> {
        let slot = hour_of_week(i64::try_from(unix).unwrap_or(0));
        let judging = unix >= self.alerts_from();
        let mut alerts = Vec::new();
        for (i, Learned { name, value, floor }) in LEARNED.iter().enumerate() {
            let x = value(m);
            if !x.is_finite() {
                continue;
            }
            let slots = self
                .stored
                .metrics
                .entry((*name).to_string())
                .or_insert_with(|| vec![Slot::default(); SLOTS]);
            let learned = slots[slot];
            let (low, high) = learned.range(self.config.tolerance, *floor);
            let outside = judging && learned.n >= self.config.min_samples && (x < low || x > high);
            if let Some(t) = self.holds[i].update(outside, now, self.config.min_duration) {
                alerts.push(anomaly(
                    name,
                    x,
                    &learned,
                    (low, high),
                    slot,
                    t,
                    m,
                    self.config.min_duration,
                ));
            }
            slots[slot].add(x);
        }
        alerts
    }

    fn alerts_from(&self) -> u64 {
        self.stored
            .started
            .saturating_add(self.config.period.as_secs())
    }

    pub fn progress(&self) -> Progress {
        let ready_slots: HashMap<String, usize> = LEARNED
            .iter()
            .map(|Learned { name, .. }| {
                let ready = self.stored.metrics.get(*name).map_or(0, |slots| {
                    slots
                        .iter()
                        .filter(|s| s.n >= self.config.min_samples)
                        .count()
                });
                ((*name).to_string(), ready)
            })
            .collect();
        let total: usize = ready_slots.values().sum();
        Progress {
            percent: total as f64 * 100.0 / (SLOTS * LEARNED.len()) as f64,
            alerts_from: self.alerts_from(),
            ready_slots,
            active: LEARNED
                .iter()
                .zip(&self.holds)
                .filter(|(_, h)| h.is_active())
                .map(|(l, _)| l.name.to_string())
                .collect(),
        }
    }

    /// Writes the state crash-safe.
    pub fn save(&self) -> io::Result<()> {
        let bytes = serde_json::to_vec(&self.stored).map_err(io::Error::other)?;
        crate::persist::write_atomic(&self.path, &bytes)
    }
}

/// Why a saved learning state cannot be read (it is moved aside and
/// learning starts over).
#[derive(Debug, thiserror::Error)]
pub enum StateDamage {
    #[error("not valid: {0}")]
    NotValid(serde_json::Error),
    #[error("version {0} where {VERSION} was expected")]
    Version(u32),
    #[error("{name} has {slots} slots, not {SLOTS}")]
    Slots { name: String, slots: usize },
    #[error("{name} holds impossible numbers")]
    Impossible { name: String },
}

fn decode(bytes: &[u8]) -> Result<Stored, StateDamage> {
    let stored: Stored = serde_json::from_slice(bytes).map_err(StateDamage::NotValid)?;
    if stored.version != VERSION {
        return Err(StateDamage::Version(stored.version));
    }
    for (name, slots) in &stored.metrics {
        if slots.len() != SLOTS {
            return Err(StateDamage::Slots {
                name: name.clone(),
                slots: slots.len(),
            });
        }
        if !slots.iter().all(Slot::is_sane) {
            return Err(StateDamage::Impossible { name: name.clone() });
        }
    }
    Ok(stored)
}

#[allow(clippy::too_many_arguments)]
fn anomaly(
    name: &str,
    x: f64,
    learned: &Slot,
    (low, high): (f64, f64),
    slot: usize,
    t: Transition,
    m: &HostMetrics,
    min_duration: Duration,
) -> owlet_proto::v1::Alert {
    let entered = t == Transition::Entered;
    let mut labels = HashMap::new();
    labels.insert("metric".to_string(), name.to_string());
    labels.insert("observed".to_string(), format!("{x:.2}"));
    labels.insert("expected_low".to_string(), format!("{low:.2}"));
    labels.insert("expected_high".to_string(), format!("{high:.2}"));
    labels.insert("learned_mean".to_string(), format!("{:.2}", learned.mean));
    labels.insert("learned_samples".to_string(), learned.n.to_string());
    labels.insert("hour_of_week".to_string(), slot.to_string());
    labels.insert(
        "for".to_string(),
        humantime::format_duration(min_duration).to_string(),
    );
    let message = if entered {
        format!(
            "{name} is {x:.1}, outside its usual range {low:.1}..{high:.1} for this hour of the week for {}",
            humantime::format_duration(min_duration)
        )
    } else {
        format!("{name} is {x:.1}, back within its usual range {low:.1}..{high:.1}")
    };
    let rank = if name == "memory_used_percent" {
        Rank::Memory
    } else {
        Rank::Cpu
    };
    let (old_state, new_state, severity) = if entered {
        (State::Up, State::Degraded, Severity::Warning)
    } else {
        (State::Degraded, State::Up, Severity::Info)
    };
    evidence::alert(
        Draft {
            name: "anomaly".into(),
            subject: name.to_string(),
            severity,
            old_state,
            new_state,
            message,
            labels,
        },
        m,
        rank,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LearningConfig {
        LearningConfig {
            enabled: true,
            period: Duration::from_secs(3600),
            tolerance: 3.0,
            min_duration: Duration::from_secs(60),
            min_samples: 10,
        }
    }

    fn cpu(v: f64) -> HostMetrics {
        HostMetrics {
            cpu_percent: v,
            ..Default::default()
        }
    }

    #[test]
    fn welford_matches_the_textbook_and_caps_its_weight() {
        let mut s = Slot::default();
        for x in [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0] {
            s.add(x);
        }
        assert!((s.mean - 5.0).abs() < 1e-12);
        assert!((s.std_dev() - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        for _ in 0..3 * MAX_WEIGHT {
            s.add(5.0);
        }
        assert_eq!(s.n, MAX_WEIGHT);
        assert!(s.is_sane());
    }

    #[test]
    fn anomaly_only_after_the_period_and_enough_samples_and_the_duration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("learning");
        let t0 = 1_700_000_000u64;
        let mut l = Learning::open(&path, config(), t0);
        let now = Instant::now();
        let s = Duration::from_secs;
        // Learning period: a wild value raises nothing.
        for i in 0..20 {
            assert!(
                l.observe(&cpu(5.0 + (i % 3) as f64), t0 + i, now)
                    .is_empty()
            );
        }
        // The slot is ready, the value is out of range and holds for the
        // duration: still nothing, the period is not over.
        assert!(l.observe(&cpu(30.0), t0 + 30, now).is_empty());
        assert!(l.observe(&cpu(30.0), t0 + 100, now + s(70)).is_empty());
        // After the period, same hour slot: outside the range for 60 s.
        let later = t0 + 3600 * 168; // one week on: same hour of week
        assert!(l.observe(&cpu(100.0), later, now).is_empty());
        let alerts = l.observe(&cpu(100.0), later + 60, now + s(60));
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].name, "anomaly");
        assert_eq!(alerts[0].subject, "cpu_percent");
        assert_eq!(l.progress().active, vec!["cpu_percent".to_string()]);
        let back = l.observe(&cpu(6.0), later + 90, now + s(90));
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].new_state, State::Up as i32);
    }

    #[test]
    fn state_survives_a_restart_and_keeps_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("host/learning");
        let t0 = 1_700_000_000u64;
        let mut l = Learning::open(&path, config(), t0);
        for i in 0..10 {
            l.observe(&cpu(50.0), t0 + i, Instant::now());
        }
        l.save().unwrap();
        let again = Learning::open(&path, config(), t0 + 999_999);
        assert!(again.note.is_none());
        assert_eq!(again.stored, l.stored);
        assert_eq!(again.progress().alerts_from, t0 + 3600);
        // One slot of 168 is ready for every metric.
        assert!((again.progress().percent - 100.0 / 168.0).abs() < 1e-9);
    }

    #[test]
    fn a_damaged_file_is_moved_aside_and_learning_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("learning");
        for damage in [
            b"{\"version\":1,\"started\":5,\"metr".to_vec(),
            b"{\"version\":9,\"started\":5,\"metrics\":{}}".to_vec(),
            b"{\"version\":1,\"started\":5,\"metrics\":{\"cpu_percent\":[]}}".to_vec(),
            vec![0xff; 100],
        ] {
            std::fs::write(&path, &damage).unwrap();
            let l = Learning::open(&path, config(), 77);
            let note = l.note.clone().unwrap();
            assert!(note.contains("learning started over"), "{note}");
            assert_eq!(l.stored.started, 77);
            assert_eq!(
                std::fs::read(dir.path().join("learning.damaged")).unwrap(),
                damage
            );
            assert!(!path.exists());
        }
    }
}
