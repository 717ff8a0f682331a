//! One `[[output]]` entry of the SOC's configuration.
//!
//! One flat struct for every output type (the keys read like the README's
//! table); [`OutputConfig::validate`] refuses keys that do not belong to the
//! entry's `type`, so a typo or a misplaced key is an error that names it,
//! never a silently ignored setting. Secrets are never inline: tokens are
//! read from `token_file` (mode 0600 or stricter).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::OutputError;

/// Which SIEM protocol an output speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputType {
    /// ECS documents to an Elasticsearch / OpenSearch `_bulk` endpoint.
    Elasticsearch,
    /// ECS documents to Splunk's HTTP Event Collector.
    SplunkHec,
    /// RFC 5424 messages over TLS (RFC 5425 framing).
    Syslog,
    /// One signed HTTPS POST per event (alerts by default), for a ticket
    /// system, a chat bridge or a SOAR.
    Webhook,
}

impl OutputType {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputType::Elasticsearch => "elasticsearch",
            OutputType::SplunkHec => "splunk_hec",
            OutputType::Syslog => "syslog",
            OutputType::Webhook => "webhook",
        }
    }
}

/// The syslog MSG part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyslogFormat {
    /// The ECS document as one line of JSON.
    #[default]
    Json,
    /// The document's readable `message`.
    Text,
}

/// One `[[output]]` entry (see the crate README for every key).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Unique among outputs; also the output's cursor name in the store
    /// (renaming an output starts it again from the oldest stored event).
    pub name: String,
    #[serde(rename = "type")]
    pub kind: OutputType,
    /// `elasticsearch`, `splunk_hec`: base URL (`https://es.example:9200`);
    /// `webhook`: the URL events are POSTed to.
    pub url: Option<String>,
    /// `syslog`: `HOST:PORT` of the receiver (RFC 5425's port is 6514).
    pub address: Option<String>,
    /// The tenants this output forwards, by name. Required: there is no
    /// implicit "all tenants"; `["*"]` says "every tenant, also new ones"
    /// explicitly (an MSSP's own SIEM).
    pub tenants: Vec<String>,
    /// Only events of these kinds (`alert`, `flow_record`…); default every
    /// kind, and `["alert"]` for webhooks. The others are passed over (the
    /// cursor moves past them).
    pub kinds: Option<Vec<String>>,
    /// Events per request (per syslog write), 1..=10000.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// PEM file of the CA(s) to trust for the destination's certificate;
    /// default: the system's trust roots.
    pub ca_file: Option<PathBuf>,
    /// File holding the secret: Elasticsearch API key (or the value for
    /// `auth_scheme`), Splunk HEC token, the webhook's HMAC key. Mode 0600
    /// or stricter.
    pub token_file: Option<PathBuf>,
    /// `Authorization: SCHEME TOKEN`; default `ApiKey` (elasticsearch),
    /// `Splunk` (splunk_hec).
    pub auth_scheme: Option<String>,
    /// `elasticsearch`: target index; `{tenant}` is replaced by the tenant
    /// (default `owlet-{tenant}`). `splunk_hec`: the index events go to
    /// (default: the token's default index).
    pub index: Option<String>,
    /// `splunk_hec`: the sourcetype (default `owlet:ecs`).
    pub sourcetype: Option<String>,
    /// `splunk_hec`: use indexer acknowledgement (the token must have it
    /// enabled): the cursor moves only when Splunk says the events are
    /// indexed.
    #[serde(default)]
    pub ack: bool,
    /// `splunk_hec`: how long to wait for an acknowledgement before the
    /// batch is sent again.
    #[serde(default, with = "humantime_serde")]
    pub ack_timeout: Option<Duration>,
    /// `splunk_hec`: how often to ask `/services/collector/ack`.
    #[serde(default, with = "humantime_serde")]
    pub ack_poll: Option<Duration>,
    /// `syslog`: MSG as `json` (the ECS document, default) or `text`.
    pub format: Option<SyslogFormat>,
    /// `syslog`: facility number 0..=23 (default 13, log audit).
    pub facility: Option<u8>,
    /// `syslog`: the name the receiver's certificate must carry (default:
    /// the host part of `address`).
    pub server_name: Option<String>,
    /// `syslog`: after each write, how long to watch the connection for a
    /// close or reset before the batch counts as delivered (RFC 5425 has no
    /// acknowledgement; see the README).
    #[serde(default, with = "humantime_serde")]
    pub settle: Option<Duration>,
    /// First retry delay after a failed delivery; doubles up to `retry_max`.
    #[serde(default = "default_retry_min", with = "humantime_serde")]
    pub retry_min: Duration,
    #[serde(default = "default_retry_max", with = "humantime_serde")]
    pub retry_max: Duration,
    /// Timeout of one request, connect and TLS included.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// How often to look for new events once caught up.
    #[serde(default = "default_poll", with = "humantime_serde")]
    pub poll: Duration,
}

fn default_batch_size() -> usize {
    500
}
fn default_retry_min() -> Duration {
    Duration::from_secs(1)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(60)
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_poll() -> Duration {
    Duration::from_secs(1)
}

/// Largest batch: the store's and the agents' batch bound.
pub const MAX_BATCH: usize = 10_000;

impl OutputConfig {
    /// A minimal entry (defaults for the rest), for tests and callers that
    /// build configurations in code.
    pub fn new(name: &str, kind: OutputType, tenants: &[&str]) -> Self {
        Self {
            name: name.into(),
            kind,
            url: None,
            address: None,
            tenants: tenants.iter().map(|t| t.to_string()).collect(),
            kinds: None,
            batch_size: default_batch_size(),
            ca_file: None,
            token_file: None,
            auth_scheme: None,
            index: None,
            sourcetype: None,
            ack: false,
            ack_timeout: None,
            ack_poll: None,
            format: None,
            facility: None,
            server_name: None,
            settle: None,
            retry_min: default_retry_min(),
            retry_max: default_retry_max(),
            timeout: default_timeout(),
            poll: default_poll(),
        }
    }

    /// Whether this output sends events of `kind`.
    pub fn sends(&self, kind: &str) -> bool {
        match &self.kinds {
            Some(kinds) => kinds.iter().any(|k| k == kind),
            None => self.kind != OutputType::Webhook || kind == "alert",
        }
    }

    /// Whether this output forwards `tenant`'s events.
    pub fn wants(&self, tenant: &str) -> bool {
        self.tenants.iter().any(|t| t == "*" || t == tenant)
    }

    fn error(&self, message: impl Into<String>) -> OutputError {
        OutputError::Config {
            output: self.name.clone(),
            message: message.into(),
        }
    }

    /// Checks the entry without touching the network: names, the keys its
    /// type needs and the keys it must not have, value ranges, and that the
    /// files it names are readable (the token file's mode too).
    pub fn validate(&self) -> Result<(), OutputError> {
        let plain = |s: &str| {
            !s.is_empty()
                && !s.starts_with(['.', '-'])
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        };
        if !plain(&self.name) {
            return Err(self.error(
                "name: use letters, digits, '.', '_' or '-' (it names the output's cursor)",
            ));
        }
        if self.tenants.is_empty() {
            return Err(self.error(
                "tenants: list the tenants this output forwards (or [\"*\"] for every tenant); there is no implicit all-tenants default",
            ));
        }
        if self.kinds.as_ref().is_some_and(|k| k.is_empty()) {
            return Err(self.error("kinds: list at least one kind, or leave the key out"));
        }
        if let Some(bad) = self.tenants.iter().find(|t| *t != "*" && !plain(t)) {
            return Err(self.error(format!("tenants: {bad:?} is not a tenant name")));
        }
        if !(1..=MAX_BATCH).contains(&self.batch_size) {
            return Err(self.error(format!("batch_size: must be 1 to {MAX_BATCH}")));
        }
        if self.retry_min.is_zero() || self.retry_max < self.retry_min {
            return Err(self.error("retry_min must be above 0 and at most retry_max"));
        }
        // Keys that belong to one type only.
        let only = |key: &str, set: bool, types: &[OutputType]| {
            if set && !types.contains(&self.kind) {
                let names: Vec<_> = types.iter().map(|t| t.as_str()).collect();
                Err(self.error(format!(
                    "{key} is a key of type {} outputs, not {}",
                    names.join(" / "),
                    self.kind.as_str()
                )))
            } else {
                Ok(())
            }
        };
        use OutputType::*;
        only(
            "url",
            self.url.is_some(),
            &[Elasticsearch, SplunkHec, Webhook],
        )?;
        only(
            "token_file",
            self.token_file.is_some(),
            &[Elasticsearch, SplunkHec, Webhook],
        )?;
        only(
            "auth_scheme",
            self.auth_scheme.is_some(),
            &[Elasticsearch, SplunkHec],
        )?;
        only("index", self.index.is_some(), &[Elasticsearch, SplunkHec])?;
        only("sourcetype", self.sourcetype.is_some(), &[SplunkHec])?;
        only("ack", self.ack, &[SplunkHec])?;
        only("ack_timeout", self.ack_timeout.is_some(), &[SplunkHec])?;
        only("ack_poll", self.ack_poll.is_some(), &[SplunkHec])?;
        only("address", self.address.is_some(), &[Syslog])?;
        only("format", self.format.is_some(), &[Syslog])?;
        only("facility", self.facility.is_some(), &[Syslog])?;
        only("server_name", self.server_name.is_some(), &[Syslog])?;
        only("settle", self.settle.is_some(), &[Syslog])?;
        match self.kind {
            Elasticsearch | SplunkHec | Webhook => {
                let url = self.url.as_deref().unwrap_or("");
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(self.error(format!(
                        "url: {} needs the destination's URL, e.g. url = \"https://siem.example:{}\"",
                        self.kind.as_str(),
                        if self.kind == Elasticsearch { 9200 } else { 8088 }
                    )));
                }
                if self.kind == Webhook && self.token_file.is_none() {
                    return Err(self.error(
                        "token_file: webhook needs the file holding the HMAC key its requests are signed with",
                    ));
                }
                if self.kind == SplunkHec && self.token_file.is_none() {
                    return Err(
                        self.error("token_file: splunk_hec needs the file holding the HEC token")
                    );
                }
            }
            Syslog => {
                let address = self.address.as_deref().unwrap_or("");
                let port = address
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse::<u16>().ok());
                if port.is_none() {
                    return Err(self.error(
                        "address: syslog needs HOST:PORT of the receiver, e.g. address = \"siem.example:6514\"",
                    ));
                }
                if self.facility.is_some_and(|f| f > 23) {
                    return Err(self.error("facility: must be 0 to 23"));
                }
            }
        }
        if let Some(ca) = &self.ca_file {
            std::fs::metadata(ca)
                .map_err(|e| self.error(format!("ca_file {}: {e}", ca.display())))?;
        }
        if let Some(token) = &self.token_file {
            self.read_token(token)?;
        }
        Ok(())
    }

    /// The secret in `path`, trimmed; refuses a file others can read.
    pub(crate) fn read_token(&self, path: &Path) -> Result<String, OutputError> {
        let meta = std::fs::metadata(path)
            .map_err(|e| self.error(format!("token_file {}: {e}", path.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(self.error(format!(
                    "token_file {} has mode {mode:04o}: a secret must not be readable by others; chmod 600 it",
                    path.display()
                )));
            }
        }
        #[cfg(not(unix))]
        let _ = meta;
        let text = std::fs::read_to_string(path)
            .map_err(|e| self.error(format!("token_file {}: {e}", path.display())))?;
        let token = text.trim();
        if token.is_empty() || token.contains(['\n', '\r']) {
            return Err(self.error(format!(
                "token_file {}: must hold the token alone, on one line",
                path.display()
            )));
        }
        Ok(token.to_string())
    }
}

/// Checks every entry and that no two share a name (a name is a cursor).
pub fn validate_all(outputs: &[OutputConfig]) -> Result<(), OutputError> {
    let mut seen = std::collections::HashSet::new();
    for o in outputs {
        o.validate()?;
        if !seen.insert(o.name.as_str()) {
            return Err(o.error("two [[output]] entries have this name; names must be unique"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<OutputConfig, String> {
        #[derive(Deserialize)]
        struct File {
            output: Vec<OutputConfig>,
        }
        let f: File = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        Ok(f.output.into_iter().next().unwrap())
    }

    #[test]
    fn a_full_entry_parses_and_unknown_keys_are_errors() {
        let c = parse(
            r#"
            [[output]]
            name = "siem"
            type = "splunk_hec"
            url = "https://splunk.example:8088"
            tenants = ["acme"]
            batch_size = 200
            ack = true
            ack_timeout = "2m"
            retry_max = "30s"
            "#,
        )
        .unwrap();
        assert_eq!(c.kind, OutputType::SplunkHec);
        assert_eq!(c.ack_timeout, Some(Duration::from_secs(120)));
        assert!(c.wants("acme") && !c.wants("globex"));
        let err = parse(
            "[[output]]\nname = \"x\"\ntype = \"syslog\"\naddress = \"a:1\"\ntenants = [\"a\"]\ntoken = \"inline\"\n",
        )
        .unwrap_err();
        assert!(err.contains("unknown field `token`"), "{err}");
    }

    #[test]
    fn validation_names_the_key_and_the_fix() {
        let mut c = OutputConfig::new("siem", OutputType::Syslog, &[]);
        c.address = Some("siem.example:6514".into());
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("no implicit all-tenants"), "{err}");
        c.tenants = vec!["*".into()];
        assert!(c.wants("anyone"));
        c.validate().unwrap();
        c.ack = true;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("ack is a key of type splunk_hec"), "{err}");
        let mut hec = OutputConfig::new("hec", OutputType::SplunkHec, &["acme"]);
        hec.url = Some("https://splunk.example:8088".into());
        let err = hec.validate().unwrap_err().to_string();
        assert!(err.contains("token_file"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "secret\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
        hec.token_file = Some(token.clone());
        let err = hec.validate().unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(hec.read_token(&token).unwrap(), "secret");
        let mut hook = OutputConfig::new("hook", OutputType::Webhook, &["acme"]);
        hook.url = Some("https://soar.example/owlet".into());
        let err = hook.validate().unwrap_err().to_string();
        assert!(err.contains("HMAC key"), "{err}");
        assert!(hook.sends("alert") && !hook.sends("flow_record"));
        hook.kinds = Some(vec!["file_change".into()]);
        assert!(hook.sends("file_change") && !hook.sends("alert"));
        assert!(hec.sends("flow_record"), "other types send every kind");
        let twice = [hec.clone(), hec];
        assert!(
            validate_all(&twice)
                .unwrap_err()
                .to_string()
                .contains("unique")
        );
    }
}
