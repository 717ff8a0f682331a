//! The `[host]` table of the agent's TOML and its validation.
//!
//! Grammar of a threshold (`[[host.threshold]]`), kept small on purpose:
//!
//! ```toml
//! [[host.threshold]]
//! metric = "cpu_percent"      # one of METRICS
//! above = 90.0                # or `below = ...` (one of the two for a number)
//! for = "5m"                  # how long it must hold before the alert (default 0s)
//! severity = "critical"       # info | warning | critical (default warning)
//! # mount = "/"               # disk_used_percent only (absent: every mount)
//! # interface = "eth1"        # interface_down only (required)
//! ```
//!
//! When the file lists no `[[host.threshold]]`, [`default_thresholds`] apply
//! (CPU > 90 % for 5 min, memory > 95 % for 5 min, swap > 80 % for 10 min,
//! any disk > 95 %); listing any replaces them all (`threshold = []` turns
//! thresholds off). Guarantee: [`HostConfig::validate`] reports every problem
//! at once, each naming the key and the fix.

use std::time::Duration;

use owlet_tomlconf::ConfigIssue;
use owlet_tomlconf::hints::nearest;
use serde::Deserialize;

/// Metrics a threshold can watch, in the order `did you mean` prefers.
pub const METRICS: &[&str] = &[
    "cpu_percent",
    "memory_used_percent",
    "swap_used_percent",
    "disk_used_percent",
    "load1",
    "load5",
    "load15",
    "process_count",
    "interface_down",
];

/// `[host]`: host health sampling, thresholds and learning.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    /// Host health on or off (on by default: every sensor reports it).
    pub enabled: bool,
    /// Time between two samples.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How many processes the top lists (by CPU, by memory) hold.
    pub top_processes: usize,
    /// Command lines are cut to this many characters (ending in "…").
    pub command_line_max: usize,
    /// Threshold alerts; [`default_thresholds`] when not given.
    #[serde(rename = "threshold")]
    pub thresholds: Vec<Threshold>,
    /// `[host.learning]`: learned normal ranges and anomaly alerts.
    pub learning: LearningConfig,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(30),
            top_processes: 5,
            command_line_max: 256,
            thresholds: default_thresholds(),
            learning: LearningConfig::default(),
        }
    }
}

/// How urgent a threshold's alert is ("info", "warning", "critical").
pub use owlet_proto::ConfigSeverity as Severity;

/// One `[[host.threshold]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    pub metric: String,
    #[serde(default)]
    pub above: Option<f64>,
    #[serde(default)]
    pub below: Option<f64>,
    /// How long the condition must hold before the alert is raised.
    #[serde(rename = "for", default, with = "humantime_serde")]
    pub hold: Duration,
    #[serde(default)]
    pub severity: Severity,
    /// `disk_used_percent`: the mount point; absent means every mount.
    #[serde(default)]
    pub mount: Option<String>,
    /// `interface_down`: the interface name.
    #[serde(default)]
    pub interface: Option<String>,
}

impl Threshold {
    fn above(metric: &str, above: f64, hold_secs: u64, severity: Severity) -> Self {
        Self {
            metric: metric.to_string(),
            above: Some(above),
            below: None,
            hold: Duration::from_secs(hold_secs),
            severity,
            mount: None,
            interface: None,
        }
    }
}

/// The thresholds that apply when `[host]` lists none.
pub fn default_thresholds() -> Vec<Threshold> {
    vec![
        Threshold::above("cpu_percent", 90.0, 300, Severity::Critical),
        Threshold::above("memory_used_percent", 95.0, 300, Severity::Critical),
        Threshold::above("swap_used_percent", 80.0, 600, Severity::Warning),
        Threshold::above("disk_used_percent", 95.0, 0, Severity::Critical),
    ]
}

/// `[host.learning]`: each metric's normal range per hour of week.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LearningConfig {
    pub enabled: bool,
    /// How long the agent only learns before anomaly alerts begin.
    #[serde(with = "humantime_serde")]
    pub period: Duration,
    /// Width of the normal range in standard deviations around the mean.
    pub tolerance: f64,
    /// How long a metric must stay outside its range before the alert.
    #[serde(with = "humantime_serde")]
    pub min_duration: Duration,
    /// Samples an hour-of-week slot needs before it judges anything.
    pub min_samples: u32,
}

impl Default for LearningConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            period: Duration::from_secs(7 * 24 * 3600),
            tolerance: 4.0,
            min_duration: Duration::from_secs(15 * 60),
            min_samples: 20,
        }
    }
}

impl HostConfig {
    /// Every problem at once, paths relative to `[host]`.
    pub fn validate(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if self.interval < Duration::from_secs(1) {
            issues.push(ConfigIssue::new(
                "interval",
                "must be at least 1s (CPU rates need time between samples); e.g. interval = \"30s\"",
            ));
        }
        if self.top_processes > 100 {
            issues.push(ConfigIssue::new(
                "top_processes",
                format!("{} is too many; use at most 100", self.top_processes),
            ));
        }
        if self.command_line_max < 16 {
            issues.push(ConfigIssue::new(
                "command_line_max",
                "must be at least 16 characters to say anything; e.g. command_line_max = 256",
            ));
        }
        for (i, t) in self.thresholds.iter().enumerate() {
            t.validate(&format!("threshold[{i}]"), &mut issues);
        }
        let l = &self.learning;
        if !(l.tolerance.is_finite() && l.tolerance > 0.0) {
            issues.push(ConfigIssue::new(
                "learning.tolerance",
                "must be a positive number of standard deviations; e.g. tolerance = 4.0",
            ));
        }
        if l.min_samples == 0 {
            issues.push(ConfigIssue::new(
                "learning.min_samples",
                "must be at least 1; e.g. min_samples = 20",
            ));
        }
        issues
    }
}

impl Threshold {
    fn validate(&self, at: &str, issues: &mut Vec<ConfigIssue>) {
        let mut issue = |key: &str, message: String| {
            issues.push(ConfigIssue::new(format!("{at}.{key}"), message));
        };
        if !METRICS.contains(&self.metric.as_str()) {
            let message = match nearest(&self.metric, METRICS) {
                Some(best) => format!("unknown metric `{}`; did you mean `{best}`?", self.metric),
                None => format!(
                    "unknown metric `{}`; expected one of {}",
                    self.metric,
                    METRICS.join(", ")
                ),
            };
            issue("metric", message);
            return;
        }
        let is_interface = self.metric == "interface_down";
        if is_interface {
            if self.interface.as_deref().is_none_or(str::is_empty) {
                issue(
                    "interface",
                    "interface_down needs the interface to watch; e.g. interface = \"eth1\"".into(),
                );
            }
            if self.above.is_some() || self.below.is_some() {
                issue(
                    "above",
                    "interface_down takes no `above` / `below`: it fires while the interface is not up; remove them".into(),
                );
            }
        } else {
            if self.interface.is_some() {
                issue(
                    "interface",
                    format!(
                        "only interface_down takes an interface, not {}; remove it",
                        self.metric
                    ),
                );
            }
            match (self.above, self.below) {
                (None, None) => issue(
                    "above",
                    format!(
                        "{} needs a limit; e.g. above = 90.0 (or below = ...)",
                        self.metric
                    ),
                ),
                (Some(_), Some(_)) => issue(
                    "below",
                    "give either `above` or `below`, not both (use two thresholds for a band)"
                        .into(),
                ),
                (Some(v), None) | (None, Some(v)) => {
                    let percent = self.metric.ends_with("_percent");
                    if !v.is_finite() || v < 0.0 || (percent && v > 100.0) {
                        let key = if self.above.is_some() {
                            "above"
                        } else {
                            "below"
                        };
                        let range = if percent { "0 to 100" } else { "0 or more" };
                        issue(
                            key,
                            format!("{v} is out of range for {}; use {range}", self.metric),
                        );
                    }
                }
            }
        }
        if self.mount.is_some() && self.metric != "disk_used_percent" {
            issue(
                "mount",
                format!(
                    "only disk_used_percent takes a mount, not {}; remove it",
                    self.metric
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        host: HostConfig,
    }

    fn parse(text: &str) -> HostConfig {
        toml::from_str::<File>(text).unwrap().host
    }

    #[test]
    fn defaults_are_on_with_default_thresholds_and_valid() {
        let c = parse("[host]\n");
        assert!(c.enabled);
        assert_eq!(c.interval, Duration::from_secs(30));
        assert_eq!(c.thresholds, default_thresholds());
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        assert_eq!(c.learning.period, Duration::from_secs(7 * 86400));
    }

    #[test]
    fn thresholds_parse_and_replace_the_defaults() {
        let c = parse(
            r#"
[host]
[[host.threshold]]
metric = "cpu_percent"
above = 90.0
for = "5m"
severity = "critical"
[[host.threshold]]
metric = "disk_used_percent"
mount = "/"
above = 95
[[host.threshold]]
metric = "interface_down"
interface = "eth1"
"#,
        );
        assert_eq!(c.thresholds.len(), 3);
        assert_eq!(c.thresholds[0].hold, Duration::from_secs(300));
        assert_eq!(c.thresholds[0].severity, Severity::Critical);
        assert_eq!(c.thresholds[1].mount.as_deref(), Some("/"));
        assert!(c.validate().is_empty(), "{:?}", c.validate());
    }

    #[test]
    fn mistakes_name_the_key_and_the_fix() {
        let c = parse(
            r#"
[host]
interval = "0s"
[[host.threshold]]
metric = "cpu_precent"
above = 90
[[host.threshold]]
metric = "interface_down"
[[host.threshold]]
metric = "memory_used_percent"
above = 120
mount = "/"
"#,
        );
        let issues = c.validate();
        let text: Vec<String> = issues.iter().map(ToString::to_string).collect();
        assert!(
            text[0].starts_with("interval: must be at least 1s"),
            "{text:?}"
        );
        assert!(
            text.contains(
                &"threshold[0].metric: unknown metric `cpu_precent`; did you mean `cpu_percent`?"
                    .to_string()
            ),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("threshold[1].interface: interface_down needs"))
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("threshold[2].above: 120 is out of range"))
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("threshold[2].mount: only disk_used_percent"))
        );
        assert_eq!(issues.len(), 5, "{text:?}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<File>("[host]\nintervall = \"5s\"\n").is_err());
        assert!(toml::from_str::<File>("[host.learning]\nperiodd = \"5s\"\n").is_err());
    }
}
