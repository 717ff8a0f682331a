//! The whole of host health for one host: sample, judge thresholds, detect a
//! reboot, learn and judge anomalies — what the agent's collector runs once
//! per interval.
//!
//! Guarantees:
//! * [`Monitor::collect`] returns the `HostMetrics` of this interval first,
//!   then the alerts it caused; it never fails (a part that cannot be read
//!   is empty, a state file that cannot be written is said in health);
//! * a reboot is detected by comparing the kernel's boot time with the one
//!   persisted in `<state_dir>/host/boot_time`: one `host_rebooted` alert per
//!   boot, also when the agent was down across it (not on the very first
//!   start, when there is nothing to compare with);
//! * the learned state is saved at most every [`SAVE_EVERY`] and at
//!   [`Monitor::save`] (the collector calls it when stopping).
//!
//! It blocks (it reads `/proc` and writes the state files): run it on its
//! own thread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use owlet_proto::v1::{Alert, HostMetrics, Severity, State};
use serde::Serialize;

use crate::config::HostConfig;
use crate::evidence::{self, Draft, Rank};
use crate::learning::{Learning, Progress};
use crate::sample::{Sampler, Unsupported};
use crate::threshold::{Active, Thresholds};

/// How often learned state is written while running.
pub const SAVE_EVERY: Duration = Duration::from_secs(600);
/// Boot times that differ by less than this are the same boot (the kernel
/// derives `btime` from the clock, which NTP may step).
const SAME_BOOT: u64 = 30;

/// What one collection produced.
#[derive(Debug, Clone)]
pub enum Output {
    Metrics(HostMetrics),
    Alert(Alert),
}

/// What `owlet health` shows.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Health {
    pub samples: u64,
    pub active_alerts: Vec<Active>,
    pub learning: Option<Progress>,
    /// Problems to tell the operator (state files, a damaged learning file).
    pub notes: Vec<String>,
    pub cpu_percent: f64,
    pub memory_used_percent: f64,
}

pub struct Monitor {
    sampler: Sampler,
    thresholds: Thresholds,
    learning: Option<Learning>,
    state_dir: PathBuf,
    config: HostConfig,
    boot_checked: bool,
    saved_at: Option<Instant>,
    health: Health,
    save_error: Option<String>,
}

impl Monitor {
    /// `state_dir` is the agent's; host state goes in its `host/`.
    /// Fails only where host sampling is not supported ([`Unsupported`]).
    pub fn new(config: &HostConfig, state_dir: &Path) -> Result<Self, Unsupported> {
        let dir = state_dir.join("host");
        let learning = config
            .learning
            .enabled
            .then(|| Learning::open(&dir.join("learning"), config.learning.clone(), unix_now()));
        Ok(Self {
            sampler: Sampler::new(config.top_processes, config.command_line_max)?,
            thresholds: Thresholds::new(config.thresholds.clone()),
            learning,
            state_dir: dir,
            config: config.clone(),
            boot_checked: false,
            saved_at: None,
            health: Health::default(),
            save_error: None,
        })
    }

    /// Applies a new `[host]` (thresholds restart their waits when their
    /// list changed; learned state is kept).
    pub fn reconfigure(&mut self, config: &HostConfig) {
        self.sampler
            .set_limits(config.top_processes, config.command_line_max);
        if config.thresholds != self.config.thresholds {
            self.thresholds = Thresholds::new(config.thresholds.clone());
        }
        match (&mut self.learning, config.learning.enabled) {
            (Some(l), true) => l.set_config(config.learning.clone()),
            (None, true) => {
                self.learning = Some(Learning::open(
                    &self.state_dir.join("learning"),
                    config.learning.clone(),
                    unix_now(),
                ));
            }
            (_, false) => self.learning = None,
        }
        self.config = config.clone();
    }

    /// Samples now and judges the sample.
    pub fn collect(&mut self) -> Vec<Output> {
        let metrics = self.sampler.sample();
        self.process(metrics, Instant::now(), SystemTime::now())
    }

    /// Judges one sample taken at `now` / `wall`.
    pub fn process(
        &mut self,
        mut metrics: HostMetrics,
        now: Instant,
        wall: SystemTime,
    ) -> Vec<Output> {
        let unix = wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut alerts = Vec::new();
        if !self.boot_checked {
            self.boot_checked = true;
            alerts.extend(self.check_reboot(&metrics));
        }
        alerts.extend(self.thresholds.evaluate(&metrics, now));
        // The first sample has no rates: nothing to learn from it.
        if metrics.interval_seconds > 0.0
            && let Some(learning) = &mut self.learning
        {
            alerts.extend(learning.observe(&metrics, unix, now));
            if self
                .saved_at
                .is_none_or(|t| now.saturating_duration_since(t) >= SAVE_EVERY)
            {
                self.saved_at = Some(now);
                self.save();
            }
        }
        let progress = self.learning.as_ref().map(Learning::progress);
        metrics.learning_percent = progress.as_ref().map_or(0.0, |p| p.percent);
        self.health.samples += 1;
        self.health.active_alerts = self.thresholds.active();
        self.health.learning = progress;
        self.health.cpu_percent = metrics.cpu_percent;
        self.health.memory_used_percent = if metrics.memory_total_bytes > 0 {
            metrics.memory_used_bytes as f64 * 100.0 / metrics.memory_total_bytes as f64
        } else {
            0.0
        };
        self.health.notes = self
            .learning
            .as_ref()
            .and_then(|l| l.note.clone())
            .into_iter()
            .chain(self.save_error.clone())
            .collect();
        let mut out = vec![Output::Metrics(metrics)];
        out.extend(alerts.into_iter().map(Output::Alert));
        out
    }

    /// Writes the learned state now.
    pub fn save(&mut self) {
        if let Some(learning) = &self.learning {
            self.save_error = learning.save().err().map(|e| {
                format!(
                    "cannot save learned state in {}: {e} (check the state directory's space and permissions)",
                    self.state_dir.display()
                )
            });
        }
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    fn check_reboot(&mut self, m: &HostMetrics) -> Option<Alert> {
        let boot = m
            .boot_time
            .as_ref()
            .map(|t| u64::try_from(t.seconds).unwrap_or(0))?;
        let path = self.state_dir.join("boot_time");
        let previous: Option<u64> = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        if previous.is_some_and(|p| p.abs_diff(boot) < SAME_BOOT) {
            return None;
        }
        if let Err(e) = crate::persist::write_atomic(&path, boot.to_string().as_bytes()) {
            self.save_error = Some(format!(
                "cannot save the boot time in {}: {e} (check the state directory's permissions)",
                path.display()
            ));
        }
        let previous = previous?;
        let mut labels = HashMap::new();
        labels.insert("boot_time".to_string(), boot.to_string());
        labels.insert("previous_boot_time".to_string(), previous.to_string());
        labels.insert("uptime_seconds".to_string(), m.uptime_seconds.to_string());
        Some(evidence::alert(
            Draft {
                name: "host_rebooted".into(),
                subject: "boot_time".into(),
                severity: Severity::Warning,
                old_state: State::Down,
                new_state: State::Up,
                message: format!(
                    "host rebooted: booted at {} (Unix time), previous boot {}; up {} s",
                    boot, previous, m.uptime_seconds
                ),
                labels,
            },
            m,
            Rank::Cpu,
        ))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn booted(at: i64) -> HostMetrics {
        HostMetrics {
            boot_time: Some(owlet_proto::Timestamp {
                seconds: at,
                nanos: 0,
            }),
            ..Default::default()
        }
    }

    fn alerts(out: &[Output]) -> Vec<&Alert> {
        out.iter()
            .filter_map(|o| match o {
                Output::Alert(a) => Some(a),
                Output::Metrics(_) => None,
            })
            .collect()
    }

    #[test]
    fn a_new_boot_time_is_one_reboot_alert() {
        let dir = tempfile::tempdir().unwrap();
        let config = HostConfig::default();
        let run = |boot: i64| {
            let mut m = Monitor::new(&config, dir.path()).unwrap();
            let first = m.process(booted(boot), Instant::now(), SystemTime::now());
            let second = m.process(booted(boot), Instant::now(), SystemTime::now());
            assert!(alerts(&second).is_empty());
            alerts(&first).into_iter().cloned().collect::<Vec<_>>()
        };
        assert!(run(1_000_000).is_empty(), "first start: nothing to compare");
        assert!(run(1_000_005).is_empty(), "clock jitter is the same boot");
        let rebooted = run(2_000_000);
        assert_eq!(rebooted.len(), 1);
        assert_eq!(rebooted[0].name, "host_rebooted");
        assert_eq!(rebooted[0].labels["previous_boot_time"], "1000000");
        assert!(run(2_000_000).is_empty(), "the same boot is reported once");
    }

    #[test]
    fn metrics_come_first_with_learning_progress() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Monitor::new(&HostConfig::default(), dir.path()).unwrap();
        let out = m.collect();
        assert!(matches!(out[0], Output::Metrics(_)));
        let out = m.collect();
        let Output::Metrics(metrics) = &out[0] else {
            panic!()
        };
        assert!(metrics.learning_percent >= 0.0);
        assert!(dir.path().join("host/learning").exists());
        assert_eq!(m.health().samples, 2);
    }
}
