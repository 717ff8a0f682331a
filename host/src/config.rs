//! The `[host]` table of the agent's TOML and its validation.

use owlet_tomlconf::ConfigIssue;
use serde::Deserialize;

/// `[host]`: host health sampling, thresholds and learning.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {}

impl HostConfig {
    /// Every problem at once, paths relative to `[host]`.
    pub fn validate(&self) -> Vec<ConfigIssue> {
        Vec::new()
    }
}
