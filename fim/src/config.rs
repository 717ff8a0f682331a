//! The `[fim]` table of the agent's TOML and its validation.

use owlet_tomlconf::ConfigIssue;
use serde::Deserialize;

/// `[fim]`: watched files and directories; off without any `[[fim.watch]]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FimConfig {}

impl FimConfig {
    /// Every problem at once, paths relative to `[fim]`.
    pub fn validate(&self) -> Vec<ConfigIssue> {
        Vec::new()
    }
}
