//! Hardware profiles (`agent.hw_profile`): settings sized for a class of
//! sensor box, filled into the configuration at load time.
//!
//! The profiles are the files of `hw-profiles/`, compiled into the binary
//! (so it works anywhere); a test keeps [`HW_PROFILES`] equal to those files
//! and checks that each one parses, sets every [`KNOBS`] key, and fits its own
//! memory budget.
//!
//! Guarantees:
//! * precedence, per key: a value written in the config file wins over the
//!   profile, and the profile wins over the built-in default; [`Applied`]
//!   records which of the three each key came from;
//! * `"auto"` picks the largest profile whose minimums (cores, memory, NIC
//!   link capacity) the machine meets, else the smallest (see [`detect`]),
//!   and `agent.hw_profile` then holds the chosen name, which is what the
//!   agent reports to the SOC;
//! * an unknown name is a config error that lists the known ones and
//!   suggests the nearest.
//!
//! It only reads: the config file is never rewritten, and detection reads
//! `/proc` and `/sys` under a root given by the caller.

pub mod detect;

use std::fmt;
use std::path::Path;

use bytesize::ByteSize;
use owlet_tomlconf::{ConfigError, Source};
use serde::{Deserialize, Serialize};

use super::Config;

/// The hardware profiles, smallest first: the files of `hw-profiles/`.
pub const HW_PROFILES: &[&str] = &["small", "medium", "large"];

/// Name that asks for detection.
pub const AUTO: &str = "auto";

/// Each profile's file, compiled in (same order as [`HW_PROFILES`]).
const FILES: [(&str, &str); 3] = [
    ("small", include_str!("../../../hw-profiles/small.toml")),
    ("medium", include_str!("../../../hw-profiles/medium.toml")),
    ("large", include_str!("../../../hw-profiles/large.toml")),
];

/// One profile file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The box it is for, in a person's words.
    pub description: String,
    /// Memory the agent must stay under on this box (systemd `MemoryMax=`).
    pub memory_max: ByteSize,
    /// What `auto` requires of the machine.
    pub hardware: Minimums,
    capture: CaptureKnobs,
    spool: SpoolKnobs,
    batch: BatchKnobs,
    probe: ProbeKnobs,
    fim: FimKnobs,
}

/// The least a machine must have for `auto` to pick a profile.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Minimums {
    pub cores_min: usize,
    #[serde(serialize_with = "as_bytes")]
    pub memory_min: ByteSize,
    /// Sum of the link speeds of the physical NICs, in Mb/s.
    pub nic_mbps_min: u64,
}

// The settings a profile carries, in owlet.toml's shape; every one is
// required, so a profile cannot silently leave a knob at its default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaptureKnobs {
    workers: usize,
    ring_bytes: ByteSize,
    max_flows: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpoolKnobs {
    max_bytes: ByteSize,
    max_batches: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchKnobs {
    max_events: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeKnobs {
    max_concurrency: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FimKnobs {
    baseline_io_budget: ByteSize,
}

/// A byte size as a plain number of bytes in JSON.
fn as_bytes<S: serde::Serializer>(size: &ByteSize, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(size.as_u64())
}

/// A setting's value as shown to a person (and in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Count(u64),
    Bytes(u64),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Value::Count(n) => write!(f, "{n}"),
            Value::Bytes(n) => write!(f, "{}", ByteSize(n).display().iec()),
        }
    }
}

/// One config key a profile sets.
pub struct Knob {
    /// Dotted key of owlet.toml, e.g. `capture.workers`.
    pub key: &'static str,
    apply: fn(&Profile, &mut Config),
    value: fn(&Config) -> Value,
}

impl Knob {
    /// The key's value in `config`.
    pub fn value(&self, config: &Config) -> Value {
        (self.value)(config)
    }

    /// The value `profile` gives the key.
    pub fn profile_value(&self, profile: &Profile, base: &Config) -> Value {
        let mut config = base.clone();
        (self.apply)(profile, &mut config);
        (self.value)(&config)
    }
}

trait AsValue {
    fn as_value(&self) -> Value;
}

impl AsValue for usize {
    fn as_value(&self) -> Value {
        Value::Count(*self as u64)
    }
}

impl AsValue for u64 {
    fn as_value(&self) -> Value {
        Value::Count(*self)
    }
}

impl AsValue for ByteSize {
    fn as_value(&self) -> Value {
        Value::Bytes(self.as_u64())
    }
}

/// A knob whose profile field and config field have the same path.
macro_rules! knob {
    ($section:ident . $field:ident) => {
        Knob {
            key: concat!(stringify!($section), ".", stringify!($field)),
            apply: |p, c| c.$section.$field = p.$section.$field.clone(),
            value: |c| c.$section.$field.as_value(),
        }
    };
}

/// Every key a profile sets, in the order `hw-profile show` lists them.
pub const KNOBS: &[Knob] = &[
    knob!(capture.workers),
    knob!(capture.ring_bytes),
    knob!(capture.max_flows),
    knob!(spool.max_bytes),
    knob!(spool.max_batches),
    knob!(batch.max_events),
    knob!(probe.max_concurrency),
    knob!(fim.baseline_io_budget),
];

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Written in the config file.
    Config,
    /// The hardware profile.
    Profile,
    /// The built-in default (no profile, and not in the file).
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Config => "config",
            Origin::Profile => "profile",
            Origin::Default => "default",
        })
    }
}

/// The profile applied to a loaded config.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// `agent.hw_profile` as written ("" = none, "auto").
    pub requested: String,
    /// The profile used (for `auto`, the one chosen); `None` = none.
    pub name: Option<&'static str>,
    /// What detection found and why it chose, for `auto`.
    pub choice: Option<detect::Choice>,
    /// Where each of [`KNOBS`] came from, in that order.
    pub origins: Vec<(&'static str, Origin)>,
}

impl Applied {
    /// Where `key` came from (`None`: not a profile key).
    pub fn origin(&self, key: &str) -> Option<Origin> {
        self.origins
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, o)| *o)
    }
}

/// Why a compiled-in profile is unusable (a test keeps this from happening).
#[derive(Debug, thiserror::Error)]
#[error("built-in hardware profile `{name}` is broken (a bug in this build): {errors}")]
pub struct BrokenProfile {
    name: String,
    errors: owlet_tomlconf::ConfigErrors,
}

/// The profile called `name` (one of [`HW_PROFILES`]), parsed.
pub fn builtin(name: &str) -> Result<Option<Profile>, BrokenProfile> {
    let Some((name, text)) = FILES.iter().find(|(n, _)| *n == name) else {
        return Ok(None);
    };
    parse(name, text).map(Some)
}

/// Parses a profile file's text (`name` locates its errors).
pub fn parse(name: &str, text: &str) -> Result<Profile, BrokenProfile> {
    let file = Path::new("hw-profiles").join(format!("{name}.toml"));
    owlet_tomlconf::parse(&file, text.to_string(), |_: &mut Profile, _| Vec::new()).map_err(
        |errors| BrokenProfile {
            name: name.to_string(),
            errors,
        },
    )
}

/// Applies the profile `agent.hw_profile` names (or `requested`, when given,
/// in its place) to a freshly deserialized `config`: each [`KNOBS`] key the
/// file does not write takes the profile's value. `auto` is resolved by
/// detection under `root` (`/` on a real machine). Returns the errors, each
/// located at `agent.hw_profile`.
pub fn apply(
    config: &mut Config,
    src: &Source,
    requested: Option<&str>,
    root: &Path,
) -> Vec<ConfigError> {
    let requested = requested.map_or_else(|| config.agent.hw_profile.clone(), str::to_string);
    let mut applied = Applied {
        requested: requested.clone(),
        ..Applied::default()
    };
    let name = match requested.as_str() {
        "" => None,
        AUTO => {
            let choice = detect::choose(&detect::detect(root));
            let name = choice.name;
            applied.choice = Some(choice);
            Some(name)
        }
        other => match HW_PROFILES.iter().find(|n| **n == other) {
            Some(name) => Some(*name),
            None => return vec![src.error("agent.hw_profile", unknown(other))],
        },
    };
    let profile = match name.map(builtin).transpose() {
        Ok(profile) => profile.flatten(),
        Err(e) => return vec![src.error("agent.hw_profile", e.to_string())],
    };
    for knob in KNOBS {
        let origin = if src.contains(knob.key) {
            Origin::Config
        } else if let Some(profile) = &profile {
            (knob.apply)(profile, config);
            Origin::Profile
        } else {
            Origin::Default
        };
        applied.origins.push((knob.key, origin));
    }
    applied.name = name;
    config.agent.hw_profile = name.unwrap_or_default().to_string();
    config.profile = applied;
    Vec::new()
}

/// The built-in defaults with profile `name` applied, without a config
/// file (`owlet hw-profile show NAME`).
pub fn defaults_with(name: &str) -> Result<Config, owlet_tomlconf::ConfigErrors> {
    // `[soc]` is the one required section; nothing here is checked or used.
    const BARE: &str = "[soc]\naddress = \"-:1\"\nca = \"-\"\ncert = \"-\"\nkey = \"-\"\n";
    owlet_tomlconf::parse(
        Path::new("(built-in defaults)"),
        BARE.to_string(),
        |config: &mut Config, src| apply(config, src, Some(name), Path::new("/")),
    )
}

/// What to say about an unknown profile name.
pub fn unknown(name: &str) -> String {
    let known = HW_PROFILES.join(", ");
    let candidates: Vec<&str> = HW_PROFILES.iter().copied().chain([AUTO]).collect();
    match owlet_tomlconf::hints::nearest(name, &candidates) {
        Some(best) => format!(
            "unknown hardware profile `{name}`; did you mean `{best}`? (known profiles: {known}; \"auto\" picks one for this machine; or leave it empty)"
        ),
        None => format!(
            "unknown hardware profile `{name}`; known profiles: {known} (\"auto\" picks one for this machine; or leave it empty)"
        ),
    }
}

#[cfg(test)]
mod tests;
