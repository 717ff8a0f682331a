//! `[notify]`: who is told about what, when, and through which channel.
//!
//! ```toml
//! [notify]
//! poll_interval = "200ms"        # how often each tenant's log is read (≤ 250 ms keeps p99 low)
//! zone = "UTC"                   # zone of tenants without their own
//!
//! [notify.retry]                 # per delivery (one notification through one channel)
//! initial = "1s"                 # first backoff, doubled per failed attempt ...
//! max = "60s"                    # ... up to this
//! give_up_after = "1h"           # then the delivery is recorded `failed`
//!
//! [[notify.tenant]]
//! name = "acme"
//! zone = "Asia/Tokyo"            # times in acme's messages and quiet hours
//!
//! [[notify.rule]]
//! name = "acme-urgent"
//! tenant = "acme"                # exactly one tenant: a rule never sees another's events
//! min_severity = "warning"       # info | warning | critical
//! kinds = ["alert", "file_change"]   # default: both
//! sources = []                   # alert sources (check, host, fim, capture, agent, soc); empty: all
//! names = []                     # alert names (check_down, cpu_high ...); empty: all
//! agents = []                    # empty: all of the tenant's agents
//! group_window = "2s"            # a burst within this folds into one message
//! group_by = "rule"              # rule | agent | subject
//! channels = ["acme-mail", "acme-trap"]
//! quiet_hours = { start = "22:00", end = "07:00", except_severity = "critical" }
//!
//! [[notify.channel]]
//! name = "acme-mail"
//! tenants = ["acme"]             # the tenants whose rules may use it (contacts are a tenant's own)
//! type = "smtp"
//! server = "mail.example.net"
//! port = 587                     # STARTTLS is always required
//! user = "owlet"
//! password_file = "/etc/owlet-soc/secrets/mail-password"
//! from = "owlet SOC <soc@example.net>"
//! to = ["noc@acme.example"]
//! # ca_file = "/etc/owlet-soc/mail-ca.pem"   # default: the system's roots
//!
//! [[notify.channel]]
//! name = "acme-trap"
//! tenants = ["acme"]
//! type = "snmp_trap"
//! target = "192.0.2.10:162"
//! version = "v3"                 # v2c: community_file instead of the v3 keys
//! user = "owlet"
//! auth_protocol = "sha256"
//! auth_key_file = "/etc/owlet-soc/secrets/trap-auth"
//! priv_protocol = "aes"
//! priv_key_file = "/etc/owlet-soc/secrets/trap-priv"
//! engine_id = "0x80007e9904736f63"   # traps: this sender's engine id (createUser -e on the receiver)
//! inform = false                 # true: acknowledged inform instead of a trap
//!
//! [[notify.channel]]
//! name = "acme-hook"
//! tenants = ["acme"]
//! type = "webhook"
//! url = "https://hooks.acme.example/owlet"
//! secret_file = "/etc/owlet-soc/secrets/acme-hook"   # HMAC-SHA256 key: X-Owlet-Signature
//! ```
//!
//! Invariants checked by [`NotifyConfig::validate`]: names are unique, every
//! channel a rule names exists and lists the rule's tenant, zones are IANA
//! names, and secrets only ever come from files (there is no inline key).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::NotifyError;
use chrono::NaiveTime;

/// `[notify]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    #[serde(default = "default_poll", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Zone of tenants without a `[[notify.tenant]]` entry.
    #[serde(default = "default_zone")]
    pub zone: String,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default, rename = "tenant")]
    pub tenants: Vec<TenantConfig>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleConfig>,
    #[serde(default, rename = "channel")]
    pub channels: Vec<ChannelConfig>,
}

fn default_poll() -> Duration {
    Duration::from_millis(200)
}
fn default_zone() -> String {
    "UTC".into()
}

/// `[notify.retry]`: exponential backoff per delivery.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    #[serde(default = "default_initial", with = "humantime_serde")]
    pub initial: Duration,
    #[serde(default = "default_max", with = "humantime_serde")]
    pub max: Duration,
    #[serde(default = "default_give_up", with = "humantime_serde")]
    pub give_up_after: Duration,
}

fn default_initial() -> Duration {
    Duration::from_secs(1)
}
fn default_max() -> Duration {
    Duration::from_secs(60)
}
fn default_give_up() -> Duration {
    Duration::from_secs(3600)
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            initial: default_initial(),
            max: default_max(),
            give_up_after: default_give_up(),
        }
    }
}

/// `[[notify.tenant]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub name: String,
    pub zone: String,
}

/// Alert and file-change severity, ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];

    /// The severity named `name` (`info`, `warning`, `critical`).
    pub fn parse(name: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// How a rule's matching events are split into groups (one message each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// Everything the rule matches within the window: one message.
    #[default]
    Rule,
    /// One message per agent.
    Agent,
    /// One message per agent and alert subject (check id, path ...).
    Subject,
}

/// `[[notify.rule]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    pub tenant: String,
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
    #[serde(default = "default_kinds")]
    pub kinds: Vec<String>,
    #[serde(default)]
    pub sources: Vec<String>,
    #[serde(default)]
    pub names: Vec<String>,
    #[serde(default)]
    pub agents: Vec<String>,
    #[serde(default = "default_window", with = "humantime_serde")]
    pub group_window: Duration,
    #[serde(default)]
    pub group_by: GroupBy,
    pub channels: Vec<String>,
    #[serde(default)]
    pub quiet_hours: Option<QuietHours>,
}

fn default_min_severity() -> Severity {
    Severity::Warning
}
fn default_kinds() -> Vec<String> {
    vec!["alert".into(), "file_change".into()]
}
fn default_window() -> Duration {
    Duration::from_secs(2)
}

/// Kinds a rule can notify on: the ones that carry a severity.
pub const NOTIFIABLE_KINDS: &[&str] = &["alert", "file_change"];

/// Quiet hours in the tenant's zone. What matches during them is held and
/// delivered as one message when they end (never dropped: an incident the
/// customer was not told about is worse than a late one).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    /// "HH:MM" or "HH:MM:SS", local time in the tenant's zone.
    pub start: String,
    /// End (exclusive); before `start` means the window crosses midnight.
    pub end: String,
    /// Severities at or above this are sent even during quiet hours.
    #[serde(default)]
    pub except_severity: Option<Severity>,
}

/// `[[notify.channel]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ChannelConfig {
    Smtp {
        name: String,
        tenants: Vec<String>,
        server: String,
        #[serde(default = "default_submission")]
        port: u16,
        #[serde(default)]
        user: Option<String>,
        #[serde(default)]
        password_file: Option<PathBuf>,
        from: String,
        to: Vec<String>,
        /// PEM roots to trust instead of the system's (a private mail relay).
        #[serde(default)]
        ca_file: Option<PathBuf>,
        #[serde(default = "default_timeout", with = "humantime_serde")]
        timeout: Duration,
    },
    SnmpTrap {
        name: String,
        tenants: Vec<String>,
        /// host:port of the trap receiver.
        target: String,
        version: SnmpVersion,
        #[serde(default)]
        community_file: Option<PathBuf>,
        #[serde(default)]
        user: Option<String>,
        #[serde(default)]
        auth_protocol: Option<String>,
        #[serde(default)]
        auth_key_file: Option<PathBuf>,
        #[serde(default)]
        priv_protocol: Option<String>,
        #[serde(default)]
        priv_key_file: Option<PathBuf>,
        /// This sender's SNMP engine id in hex (`0x...`), for v3 traps.
        #[serde(default)]
        engine_id: Option<String>,
        #[serde(default)]
        inform: bool,
        #[serde(default = "default_snmp_timeout", with = "humantime_serde")]
        timeout: Duration,
    },
    Webhook {
        name: String,
        tenants: Vec<String>,
        url: String,
        secret_file: PathBuf,
        #[serde(default)]
        ca_file: Option<PathBuf>,
        #[serde(default = "default_timeout", with = "humantime_serde")]
        timeout: Duration,
    },
}

impl ChannelConfig {
    /// The channel's files (secrets, CA), for resolving relative paths
    /// against the configuration file's directory.
    pub fn files_mut(&mut self) -> Vec<&mut PathBuf> {
        match self {
            ChannelConfig::Smtp {
                password_file,
                ca_file,
                ..
            } => [password_file, ca_file].into_iter().flatten().collect(),
            ChannelConfig::SnmpTrap {
                community_file,
                auth_key_file,
                priv_key_file,
                ..
            } => [community_file, auth_key_file, priv_key_file]
                .into_iter()
                .flatten()
                .collect(),
            ChannelConfig::Webhook {
                secret_file,
                ca_file,
                ..
            } => std::iter::once(secret_file)
                .chain(ca_file.as_mut())
                .collect(),
        }
    }
}

fn default_submission() -> u16 {
    587
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_snmp_timeout() -> Duration {
    Duration::from_secs(5)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnmpVersion {
    V2c,
    V3,
}

impl ChannelConfig {
    pub fn name(&self) -> &str {
        match self {
            ChannelConfig::Smtp { name, .. }
            | ChannelConfig::SnmpTrap { name, .. }
            | ChannelConfig::Webhook { name, .. } => name,
        }
    }

    pub fn tenants(&self) -> &[String] {
        match self {
            ChannelConfig::Smtp { tenants, .. }
            | ChannelConfig::SnmpTrap { tenants, .. }
            | ChannelConfig::Webhook { tenants, .. } => tenants,
        }
    }

    /// `smtp`, `snmp_trap` or `webhook`.
    pub fn type_name(&self) -> &'static str {
        match self {
            ChannelConfig::Smtp { .. } => "smtp",
            ChannelConfig::SnmpTrap { .. } => "snmp_trap",
            ChannelConfig::Webhook { .. } => "webhook",
        }
    }

    /// Who it reaches, as recorded with each delivery.
    pub fn recipients(&self) -> String {
        match self {
            ChannelConfig::Smtp { to, .. } => to.join(", "),
            ChannelConfig::SnmpTrap { target, .. } => target.clone(),
            ChannelConfig::Webhook { url, .. } => url.clone(),
        }
    }
}

impl NotifyConfig {
    /// Parses the `[notify]` table out of a whole TOML document (tests and
    /// tools; `owlet-soc serve` embeds [`NotifyConfig`] in its own config).
    pub fn from_toml(text: &str) -> Result<Self, NotifyError> {
        #[derive(Deserialize)]
        struct Doc {
            notify: NotifyConfig,
        }
        let doc: Doc = toml::from_str(text).map_err(|e| NotifyError::Config(e.to_string()))?;
        doc.notify.validate()?;
        Ok(doc.notify)
    }

    /// The zone of `tenant`.
    pub fn zone_of(&self, tenant: &str) -> chrono_tz::Tz {
        let name = self
            .tenants
            .iter()
            .find(|t| t.name == tenant)
            .map_or(self.zone.as_str(), |t| t.zone.as_str());
        name.parse().unwrap_or(chrono_tz::UTC)
    }

    /// Checks what serde cannot: references, uniqueness, zones, times,
    /// and that each channel has the secrets its kind needs.
    pub fn validate(&self) -> Result<(), NotifyError> {
        let bad = |m: String| Err(NotifyError::Config(m));
        if self.poll_interval.is_zero() {
            return bad("notify.poll_interval must be above 0 (e.g. \"200ms\")".into());
        }
        parse_zone(&self.zone, "notify.zone")?;
        for t in &self.tenants {
            parse_zone(&t.zone, &format!("notify.tenant \"{}\" zone", t.name))?;
        }
        let mut channels: HashMap<&str, &ChannelConfig> = HashMap::new();
        for c in &self.channels {
            if channels.insert(c.name(), c).is_some() {
                return bad(format!(
                    "notify.channel \"{}\" is defined twice; give each channel its own name",
                    c.name()
                ));
            }
            if c.tenants().is_empty() {
                return bad(format!(
                    "notify.channel \"{}\" has no tenants; list the tenants whose rules may use it (tenants = [\"acme\"])",
                    c.name()
                ));
            }
            c.validate()?;
        }
        let mut rules = HashSet::new();
        for r in &self.rules {
            if !rules.insert(r.name.as_str()) {
                return bad(format!(
                    "notify.rule \"{}\" is defined twice; give each rule its own name",
                    r.name
                ));
            }
            if r.channels.is_empty() {
                return bad(format!("notify.rule \"{}\" has no channels", r.name));
            }
            for k in &r.kinds {
                if !NOTIFIABLE_KINDS.contains(&k.as_str()) {
                    return bad(format!(
                        "notify.rule \"{}\": kind \"{k}\" cannot be notified; use {}",
                        r.name,
                        NOTIFIABLE_KINDS.join(" or ")
                    ));
                }
            }
            for name in &r.channels {
                let Some(c) = channels.get(name.as_str()) else {
                    let mut known: Vec<&str> = channels.keys().copied().collect();
                    known.sort();
                    return bad(format!(
                        "notify.rule \"{}\" names channel \"{name}\", which is not defined (defined: {})",
                        r.name,
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ));
                };
                if !c.tenants().contains(&r.tenant) {
                    return bad(format!(
                        "notify.rule \"{}\" of tenant \"{}\" uses channel \"{name}\", which is not \
                         for that tenant (its tenants: {}); add the tenant to the channel's tenants \
                         or give the tenant its own channel",
                        r.name,
                        r.tenant,
                        c.tenants().join(", ")
                    ));
                }
            }
            if let Some(q) = &r.quiet_hours {
                parse_time(&q.start).map_err(|e| {
                    NotifyError::Config(format!(
                        "notify.rule \"{}\" quiet_hours.start: {e}",
                        r.name
                    ))
                })?;
                parse_time(&q.end).map_err(|e| {
                    NotifyError::Config(format!("notify.rule \"{}\" quiet_hours.end: {e}", r.name))
                })?;
            }
        }
        Ok(())
    }
}

fn parse_zone(name: &str, what: &str) -> Result<chrono_tz::Tz, NotifyError> {
    name.parse::<chrono_tz::Tz>().map_err(|_| {
        NotifyError::Config(format!(
            "{what}: \"{name}\" is not an IANA time zone (e.g. \"Asia/Tokyo\", \"Europe/Berlin\", \"UTC\")"
        ))
    })
}

impl ChannelConfig {
    fn validate(&self) -> Result<(), NotifyError> {
        let bad = |m: String| Err(NotifyError::Config(m));
        match self {
            ChannelConfig::Smtp {
                name,
                user,
                password_file,
                to,
                ..
            } => {
                if to.is_empty() {
                    return bad(format!("notify.channel \"{name}\": `to` is empty"));
                }
                if user.is_some() != password_file.is_some() {
                    return bad(format!(
                        "notify.channel \"{name}\": set both `user` and `password_file`, or neither"
                    ));
                }
            }
            ChannelConfig::SnmpTrap {
                name,
                version,
                community_file,
                user,
                auth_key_file,
                ..
            } => match version {
                SnmpVersion::V2c if community_file.is_none() => {
                    return bad(format!(
                        "notify.channel \"{name}\": version \"v2c\" needs community_file"
                    ));
                }
                SnmpVersion::V3 if user.is_none() || auth_key_file.is_none() => {
                    return bad(format!(
                        "notify.channel \"{name}\": version \"v3\" needs user and auth_key_file \
                         (and priv_key_file for privacy)"
                    ));
                }
                _ => {}
            },
            ChannelConfig::Webhook { name, url, .. } => {
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return bad(format!(
                        "notify.channel \"{name}\": url \"{url}\" must start with https:// (or http:// on a trusted network)"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// "HH:MM" or "HH:MM:SS".
pub fn parse_time(s: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(s, "%H:%M:%S")
        .or_else(|_| NaiveTime::parse_from_str(s, "%H:%M"))
        .map_err(|_| format!("\"{s}\" is not a time of day; write \"22:00\" or \"06:30:00\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"
[notify]
[[notify.rule]]
name = "r"
tenant = "acme"
channels = ["m"]
[[notify.channel]]
name = "m"
tenants = ["acme"]
type = "webhook"
url = "https://example.invalid/"
secret_file = "/nonexistent"
"#;

    #[test]
    fn parses_and_defaults() {
        let c = NotifyConfig::from_toml(DOC).unwrap();
        assert_eq!(c.rules[0].min_severity, Severity::Warning);
        assert_eq!(c.poll_interval, Duration::from_millis(200));
    }

    #[test]
    fn unknown_keys_and_inline_secrets_are_refused() {
        let with_secret = DOC.replace("secret_file =", "secret = \"x\"\nsecret_file =");
        assert!(NotifyConfig::from_toml(&with_secret).is_err());
    }

    #[test]
    fn loads_through_tomlconf_as_owlet_soc_embeds_it() {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Soc {
            notify: NotifyConfig,
        }
        let path = std::path::Path::new("soc.toml");
        let ok: Soc =
            owlet_tomlconf::parse(path, DOC.to_string(), |_: &mut Soc, _| vec![]).unwrap();
        assert_eq!(ok.notify.channels[0].name(), "m");
        let typo = DOC.replace("secret_file =", "secret_fille =");
        let e = owlet_tomlconf::parse(path, typo, |_: &mut Soc, _| vec![])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("secret_fille"), "{e}");
        let typo = DOC.replace("channels = [", "chanels = [");
        let e = owlet_tomlconf::parse(path, typo, |_: &mut Soc, _| vec![])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("chanels") && e.contains("channels"), "{e}");
    }

    #[test]
    fn a_secret_file_others_may_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hook");
        std::fs::write(&path, "k\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = crate::error::read_secret("webhook secret_file", &path)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("readable by others (mode 0644)") && e.contains("chmod 600"),
            "{e}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            crate::error::read_secret("webhook secret_file", &path).unwrap(),
            "k"
        );
    }

    #[test]
    fn a_rule_cannot_use_another_tenants_channel() {
        let other = DOC.replace("tenant = \"acme\"", "tenant = \"globex\"");
        let e = NotifyConfig::from_toml(&other).unwrap_err().to_string();
        assert!(e.contains("not for that tenant"), "{e}");
    }
}
