//! `soc.toml`: where the receiver listens, with which certificates, and where
//! it stores events. Loaded with `owlet-tomlconf`: errors name file, line,
//! column and key; unknown keys are errors; relative paths are taken from the
//! config file's directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use owlet_tomlconf::ConfigErrors;
use serde::Deserialize;

pub const DEFAULT_PATH: &str = "/etc/owlet-soc/soc.toml";

#[derive(Debug, Clone, Deserialize)]
pub struct SocConfig {
    pub server: ServerSection,
    pub sink: SinkSection,
    #[serde(default)]
    pub liveness: LivenessSection,
    /// The default retention of every tenant's events.
    #[serde(default)]
    pub retention: RetentionSection,
    /// Per-tenant settings: zone and retention overrides.
    #[serde(default)]
    pub tenants: std::collections::BTreeMap<String, TenantSection>,
    /// SIEM outputs (`[[output]]`), each reading the tenants' logs with its
    /// own cursor (see soc-outputs/README.md).
    #[serde(default, rename = "output")]
    pub outputs: Vec<owlet_soc_outputs::OutputConfig>,
    /// Incident notifications (`[notify]`, soc-notify/README.md); off when
    /// absent. Tenants' zones come from `[tenants.NAME] time_zone`.
    #[serde(default)]
    pub notify: Option<owlet_soc_notify::NotifyConfig>,
    /// `[log]`: format (auto | human | journald | json) and level.
    #[serde(default)]
    pub log: owlet_logging::LogSection,
    /// `[reports]`: weekly / monthly reports written into each tenant's
    /// `reports/` directory (and mailed); off when absent.
    #[serde(default)]
    pub reports: Option<owlet_soc_report::schedule::ReportsConfig>,
    /// `[portal]`: the web portal (`owlet-soc portal`), its own process.
    #[serde(default)]
    pub portal: owlet_soc_portal::PortalSection,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSection {
    /// Address to listen on, e.g. "0.0.0.0:4443".
    pub listen: SocketAddr,
    /// The SOC's server certificate and key.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA that signs agent certificates; only its agents are accepted.
    pub client_ca: PathBuf,
    /// Certificate revocation list(s) of the client CA(s) (PEM): revoked
    /// agent certificates are refused at the handshake, and the live
    /// streams of newly revoked ones end. Re-read when the file changes
    /// and on SIGHUP. Absent: no revocation check.
    #[serde(default)]
    pub crl: Option<PathBuf>,
    /// How often the CRL file is checked for a change.
    #[serde(default = "default_crl_check_every", with = "humantime_serde")]
    pub crl_check_every: Duration,
    /// Connections (TLS handshakes + streams) served at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

fn default_max_connections() -> usize {
    10_000
}

fn default_crl_check_every() -> Duration {
    Duration::from_secs(2)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkSection {
    /// Embedded SQLite database (one file, WAL).
    Sqlite { path: PathBuf },
    /// NATS JetStream (the scaled-out SOC, owlet-soc-bus): the receiver
    /// keeps no state; a stream per tenant, a subject per agent.
    Nats {
        /// `nats://host:port` of the cluster's servers.
        servers: Vec<String>,
        /// A NATS `.creds` file, when the cluster requires one.
        #[serde(default)]
        credentials: Option<PathBuf>,
        /// Replicas of each tenant stream (3 for a 3-node cluster).
        #[serde(default = "default_replicas")]
        replicas: usize,
        /// `Nats-Msg-Id` duplicate window of each tenant stream.
        #[serde(default = "default_duplicate_window", with = "humantime_serde")]
        duplicate_window: Duration,
        /// How long JetStream keeps a tenant's events at most (its own
        /// retention when shorter): the buffer in front of PostgreSQL,
        /// which keeps them for the tenant's retention. Longer than the
        /// writer may be down; "0s": the tenant's retention.
        #[serde(default = "default_buffer_max_age", with = "humantime_serde")]
        buffer_max_age: Duration,
    },
}

fn default_replicas() -> usize {
    3
}

fn default_buffer_max_age() -> Duration {
    owlet_soc_bus::publish::DEFAULT_BUFFER_MAX_AGE
}

fn default_duplicate_window() -> Duration {
    Duration::from_secs(120)
}

/// The configuration says the receiver publishes to NATS: commands that
/// read the embedded store have nothing to read.
#[derive(Debug, thiserror::Error)]
#[error(
    "[sink] type = \"nats\": this receiver keeps no local store; the events are in JetStream and, through `owlet-soc writer`, in PostgreSQL"
)]
pub struct NotEmbedded;

#[derive(Debug, Clone, Deserialize)]
pub struct LivenessSection {
    /// A known agent without a heartbeat for this long is reported silent.
    #[serde(default = "default_silent_after", with = "humantime_serde")]
    pub silent_after: Duration,
    /// How often agents are checked.
    #[serde(default = "default_check_every", with = "humantime_serde")]
    pub check_every: Duration,
}

impl Default for LivenessSection {
    fn default() -> Self {
        Self {
            silent_after: default_silent_after(),
            check_every: default_check_every(),
        }
    }
}

fn default_silent_after() -> Duration {
    Duration::from_secs(90)
}
fn default_check_every() -> Duration {
    Duration::from_secs(5)
}

/// `[retention]`: limits by period and by capacity, whichever is hit
/// first; whole days are deleted, oldest first.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    /// Keep events for this long ("400days"); unset: no age limit.
    #[serde(default = "default_max_age", with = "humantime_serde")]
    pub max_age: Option<Duration>,
    /// Keep at most this much per tenant ("50GiB"); unset: no size limit.
    #[serde(default)]
    pub max_bytes: Option<bytesize::ByteSize>,
    /// How often the limits are applied.
    #[serde(default = "default_retention_every", with = "humantime_serde")]
    pub check_every: Duration,
}

impl Default for RetentionSection {
    fn default() -> Self {
        Self {
            max_age: default_max_age(),
            max_bytes: None,
            check_every: default_retention_every(),
        }
    }
}

/// 400 days: a year and a month, the common contract figure.
fn default_max_age() -> Option<Duration> {
    Some(Duration::from_secs(400 * 86_400))
}

fn default_retention_every() -> Duration {
    Duration::from_secs(600)
}

/// `[tenants.NAME]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSection {
    /// The tenant's IANA time zone: exports and reports use it by default.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Overrides `retention.max_age` for this tenant.
    #[serde(default, with = "humantime_serde")]
    pub max_age: Option<Duration>,
    /// Overrides `retention.max_bytes` for this tenant.
    #[serde(default)]
    pub max_bytes: Option<bytesize::ByteSize>,
    /// Where the tenant's scheduled reports are mailed (through
    /// `reports.mail_channel`); empty: not mailed.
    #[serde(default)]
    pub report_mail_to: Vec<String>,
}

impl SocConfig {
    /// The retention policy of `tenant`: its own limits over the default.
    pub fn retention_of(&self, tenant: &str) -> owlet_soc_store::Policy {
        let own = self.tenants.get(tenant);
        owlet_soc_store::Policy {
            // "0s" switches the age limit off.
            max_age: own
                .and_then(|t| t.max_age)
                .or(self.retention.max_age)
                .filter(|age| !age.is_zero()),
            max_bytes: own
                .and_then(|t| t.max_bytes)
                .or(self.retention.max_bytes)
                .map(|b| b.as_u64()),
        }
    }

    /// The time zone of `tenant` (`UTC` when not set).
    pub fn zone_of(&self, tenant: &str) -> &str {
        self.tenants
            .get(tenant)
            .and_then(|t| t.time_zone.as_deref())
            .unwrap_or("UTC")
    }

    /// What the report schedule needs of `tenant`: zone, retention by age
    /// (reports are kept as long as events), mail recipients.
    pub fn report_plan(&self, tenant: &str) -> owlet_soc_report::schedule::TenantPlan {
        owlet_soc_report::schedule::TenantPlan {
            tenant: tenant.to_string(),
            zone: owlet_soc_export::Zone::parse(self.zone_of(tenant))
                .unwrap_or(owlet_soc_export::Zone::Utc),
            max_age: self.retention_of(tenant).max_age,
            mail_to: self
                .tenants
                .get(tenant)
                .map(|t| t.report_mail_to.clone())
                .unwrap_or_default(),
        }
    }

    /// The `[[notify.channel]]` reports are mailed through, if configured.
    pub fn report_mail_channel(&self) -> Option<&owlet_soc_notify::config::ChannelConfig> {
        let name = self.reports.as_ref()?.mail_channel.as_ref()?;
        self.notify
            .as_ref()?
            .channels
            .iter()
            .find(|c| c.name() == name)
    }

    /// The SQLite file of the configured sink.
    pub fn sqlite_path(&self) -> Result<&Path, NotEmbedded> {
        match &self.sink {
            SinkSection::Sqlite { path } => Ok(path),
            SinkSection::Nats { .. } => Err(NotEmbedded),
        }
    }

    /// The store's root: the directory of `[sink] path`.
    pub fn store_root(&self) -> Result<PathBuf, NotEmbedded> {
        Ok(self
            .sqlite_path()?
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default())
    }

    /// What `owlet-soc portal` runs with: `[portal]` with its defaults
    /// (the SOC's own certificate and key), the store, the control
    /// database, the tenants' zones and `[notify]`.
    pub fn portal_settings(&self) -> Result<owlet_soc_portal::Settings, NotEmbedded> {
        let p = &self.portal;
        Ok(owlet_soc_portal::Settings {
            listen: p.listen,
            cert: p.cert.clone().unwrap_or_else(|| self.server.cert.clone()),
            key: p.key.clone().unwrap_or_else(|| self.server.key.clone()),
            session_idle: p.session_idle,
            lockout_after: p.lockout_after,
            lockout_for: p.lockout_for,
            root: self.store_root()?,
            contacts_root: self.store_root()?,
            data: owlet_soc_portal::DataSettings::Embedded {
                control_db: self.sqlite_path()?.to_path_buf(),
            },
            tenant_zones: self
                .tenants
                .iter()
                .filter_map(|(name, t)| t.time_zone.clone().map(|z| (name.clone(), z)))
                .collect(),
            silent_after: self.liveness.silent_after,
            notify: self.notify.clone(),
            ca_dir: p
                .ca_dir
                .clone()
                .or_else(|| self.server.client_ca.parent().map(Path::to_path_buf)),
            soc_address: p
                .soc_address
                .clone()
                .unwrap_or_else(|| self.server.listen.to_string()),
            oidc: p.oidc.clone(),
        })
    }

    /// The bus of a `[sink] type = "nats"` configuration.
    pub fn bus(&self) -> Option<owlet_soc_bus::BusConfig> {
        match &self.sink {
            SinkSection::Sqlite { .. } => None,
            SinkSection::Nats {
                servers,
                credentials,
                replicas,
                duplicate_window,
                buffer_max_age,
            } => {
                let mut bus = owlet_soc_bus::BusConfig::new(servers.clone());
                bus.credentials = credentials.clone();
                bus.replicas = *replicas;
                bus.duplicate_window = *duplicate_window;
                bus.buffer_max_age = Some(*buffer_max_age).filter(|age| !age.is_zero());
                Some(bus)
            }
        }
    }
}

/// `writer.toml`: `owlet-soc writer`, the scaled-out SOC's store writer
/// (JetStream → PostgreSQL, see owlet-soc-bus).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriterFile {
    pub nats: NatsSection,
    pub postgres: PostgresSection,
    #[serde(default)]
    pub writer: WriterSection,
    /// When agents are judged silent (the same keys as `soc.toml`'s): in
    /// the scaled-out SOC the writer holding a tenant judges its agents.
    #[serde(default)]
    pub liveness: LivenessSection,
    #[serde(default)]
    pub log: owlet_logging::LogSection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSection {
    pub servers: Vec<String>,
    #[serde(default)]
    pub credentials: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSection {
    /// libpq key=value connection string, e.g.
    /// "host=10.0.0.5 port=5432 user=owlet_writer dbname=owlet".
    pub connect: String,
    /// A file holding the password (kept out of the config file).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriterSection {
    /// Most events committed in one transaction.
    #[serde(default = "default_batch")]
    pub batch: usize,
}

impl Default for WriterSection {
    fn default() -> Self {
        Self {
            batch: default_batch(),
        }
    }
}

fn default_batch() -> usize {
    2048
}

impl WriterFile {
    pub fn bus(&self) -> owlet_soc_bus::BusConfig {
        let mut bus = owlet_soc_bus::BusConfig::new(self.nats.servers.clone());
        bus.credentials = self.nats.credentials.clone();
        bus
    }

    /// The writer's settings, the password read from its file.
    pub fn writer(&self) -> std::io::Result<owlet_soc_bus::writer::WriterConfig> {
        let mut writer = owlet_soc_bus::writer::WriterConfig::new(self.postgres.conninfo()?);
        writer.batch = self.writer.batch;
        writer.liveness = owlet_soc_bus::liveness::LivenessConfig {
            silent_after: self.liveness.silent_after,
            check_every: self.liveness.check_every,
        };
        Ok(writer)
    }
}

impl PostgresSection {
    /// The connection string, with the password read from its file.
    pub fn conninfo(&self) -> std::io::Result<String> {
        let mut connect = self.connect.clone();
        if let Some(path) = &self.password_file {
            let password = std::fs::read_to_string(path)?;
            let password = password.trim().replace('\\', "\\\\").replace('\'', "\\'");
            connect.push_str(&format!(" password='{password}'"));
        }
        Ok(connect)
    }

    /// Resolves `password_file` against the config file's directory and
    /// checks the connection string and that the file is there.
    pub(crate) fn resolve_and_check(
        &mut self,
        source: &owlet_tomlconf::Source,
        errors: &mut Vec<owlet_tomlconf::ConfigError>,
    ) {
        if let Some(p) = &mut self.password_file {
            *p = source.resolve(p);
        }
        if let Err(e) = self.connect.parse::<owlet_soc_bus::writer::PgConfig>() {
            errors.push(source.error(
                "postgres.connect",
                format!("not a PostgreSQL connection string ({e}); e.g. \"host=127.0.0.1 port=5432 user=owlet_writer dbname=owlet\""),
            ));
        }
        if let Some(path) = &self.password_file
            && let Err(e) = std::fs::metadata(path)
        {
            errors.push(source.error(
                "postgres.password_file",
                format!("cannot read {}: {e}", path.display()),
            ));
        }
    }
}

/// `outputs.toml`: `owlet-soc outputs`, the scaled-out SOC's SIEM outputs
/// (PostgreSQL → SIEM, see owlet-soc-outputs). `[[output]]` entries are
/// written exactly as in `soc.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputsFile {
    pub postgres: PostgresSection,
    #[serde(default, rename = "output")]
    pub outputs: Vec<owlet_soc_outputs::OutputConfig>,
    #[serde(default)]
    pub log: owlet_logging::LogSection,
}

/// Loads and checks an outputs config file.
pub fn load_outputs(path: &Path) -> Result<OutputsFile, ConfigErrors> {
    owlet_tomlconf::load(path, |config: &mut OutputsFile, source| {
        let mut errors = Vec::new();
        config.postgres.resolve_and_check(source, &mut errors);
        if config.outputs.is_empty() {
            errors.push(source.error(
                "output",
                "no [[output]] entry: name at least one (soc-outputs/README.md lists the keys)",
            ));
        }
        resolve_and_check_outputs(&mut config.outputs, source, &mut errors);
        errors
    })
}

/// Adds each tenant's zone (`[tenants.NAME] time_zone`) to `notify`
/// unless `[[notify.tenant]]` names the tenant already.
fn add_tenant_zones<'a>(
    notify: &mut owlet_soc_notify::NotifyConfig,
    zones: impl Iterator<Item = (&'a String, Option<&'a String>)>,
) {
    for (name, zone) in zones {
        if let Some(zone) = zone
            && !notify.tenants.iter().any(|t| &t.name == name)
        {
            notify.tenants.push(owlet_soc_notify::config::TenantConfig {
                name: name.clone(),
                zone: zone.clone(),
            });
        }
    }
}

/// `notify.toml`: `owlet-soc notify`, the scaled-out SOC's incident
/// notifications (PostgreSQL → mail, SNMP, webhooks, see owlet-soc-notify).
/// `[notify]` is written exactly as in `soc.toml`; tenants' zones come
/// from `[[notify.tenant]]` or, as in `soc.toml`, `[tenants.NAME] time_zone`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyFile {
    pub postgres: PostgresSection,
    #[serde(default)]
    pub paths: NotifyPaths,
    #[serde(default)]
    pub tenants: std::collections::BTreeMap<String, NotifyTenant>,
    pub notify: owlet_soc_notify::NotifyConfig,
    #[serde(default)]
    pub log: owlet_logging::LogSection,
}

/// `notify.toml`'s `[paths]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyPaths {
    /// What must survive a restart on this host (the SNMP engine's boot
    /// counter); systemd's StateDirectory.
    #[serde(default = "default_notify_state")]
    pub state_dir: PathBuf,
    /// The portal's contacts directory (`ROOT/contacts`, where it writes
    /// `TENANT.json`), shared with this host; absent: mail goes only to
    /// each channel's `to`.
    #[serde(default)]
    pub contacts_dir: Option<PathBuf>,
}

impl Default for NotifyPaths {
    fn default() -> Self {
        Self {
            state_dir: default_notify_state(),
            contacts_dir: None,
        }
    }
}

fn default_notify_state() -> PathBuf {
    PathBuf::from("/var/lib/owlet-soc-notify")
}

/// `notify.toml`'s and `portal.toml`'s `[tenants.NAME]`: only the zone
/// means anything there.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyTenant {
    #[serde(default)]
    pub time_zone: Option<String>,
}

impl NotifyFile {
    /// The directory whose `contacts/` holds the tenants' contacts (what
    /// `owlet_soc_notify::contacts` calls the store root).
    pub fn contacts_root(&self) -> Option<PathBuf> {
        let dir = self.paths.contacts_dir.as_ref()?;
        Some(dir.parent().map(Path::to_path_buf).unwrap_or_default())
    }
}

/// Loads and checks a notify config file.
pub fn load_notify(path: &Path) -> Result<NotifyFile, ConfigErrors> {
    owlet_tomlconf::load(path, |config: &mut NotifyFile, source| {
        let mut errors = Vec::new();
        config.postgres.resolve_and_check(source, &mut errors);
        resolve_and_check_paths(
            &mut config.paths.state_dir,
            &mut config.paths.contacts_dir,
            source,
            &mut errors,
        );
        for (name, tenant) in &config.tenants {
            check_tenant_zone(name, tenant.time_zone.as_deref(), source, &mut errors);
        }
        resolve_and_check_notify(&mut config.notify, &config.tenants, source, &mut errors);
        if config.notify.rules.is_empty() {
            errors.push(source.error(
                "notify.rule",
                "no [[notify.rule]]: name at least one (soc-notify/README.md lists the keys)",
            ));
        }
        errors
    })
}

/// `[paths]` of notify.toml and portal.toml: both resolved against the
/// config file's directory; `contacts_dir` must be a directory named
/// `contacts` (the portal's `ROOT/contacts`, where it writes TENANT.json).
pub(crate) fn resolve_and_check_paths(
    state_dir: &mut PathBuf,
    contacts_dir: &mut Option<PathBuf>,
    source: &owlet_tomlconf::Source,
    errors: &mut Vec<owlet_tomlconf::ConfigError>,
) {
    *state_dir = source.resolve(state_dir);
    if let Some(dir) = contacts_dir {
        *dir = source.resolve(dir);
        if dir.file_name() != Some(std::ffi::OsStr::new(owlet_soc_notify::contacts::DIR)) {
            errors.push(source.error(
                "paths.contacts_dir",
                format!(
                    "{} is not a directory named \"{}\": name the portal's ROOT/{1} directory (where it writes TENANT.json)",
                    dir.display(),
                    owlet_soc_notify::contacts::DIR
                ),
            ));
        }
    }
}

/// `[notify]` of notify.toml and portal.toml: its channels' files
/// resolved, the tenants' zones of `[tenants.NAME]` added, validated.
pub(crate) fn resolve_and_check_notify(
    notify: &mut owlet_soc_notify::NotifyConfig,
    tenants: &std::collections::BTreeMap<String, NotifyTenant>,
    source: &owlet_tomlconf::Source,
    errors: &mut Vec<owlet_tomlconf::ConfigError>,
) {
    for channel in &mut notify.channels {
        for path in channel.files_mut() {
            *path = source.resolve(path);
        }
    }
    add_tenant_zones(
        notify,
        tenants.iter().map(|(name, t)| (name, t.time_zone.as_ref())),
    );
    if let Err(e) = notify.validate() {
        errors.push(source.error("notify", e.to_string()));
    }
}

/// Resolves the `[[output]]` entries' files against the config file's
/// directory and validates them (unique names, keys of their type).
fn resolve_and_check_outputs(
    outputs: &mut [owlet_soc_outputs::OutputConfig],
    source: &owlet_tomlconf::Source,
    errors: &mut Vec<owlet_tomlconf::ConfigError>,
) {
    for output in outputs.iter_mut() {
        for path in [&mut output.ca_file, &mut output.token_file]
            .into_iter()
            .flatten()
        {
            *path = source.resolve(path);
        }
    }
    if let Err(e) = owlet_soc_outputs::validate_all(outputs) {
        errors.push(source.error("output", e.to_string()));
    }
}

/// `reports.toml`: `owlet-soc reports`, the scaled-out SOC's rollups and
/// periodic reports (PostgreSQL → `tenant_T.rollup_*` and
/// `tenant_T.reports`). `[reports]` is written exactly as in `soc.toml`
/// (same keys, same checks), but for `mail_channel`: this process mails
/// nothing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportsFile {
    pub postgres: PostgresSection,
    pub reports: owlet_soc_report::schedule::ReportsConfig,
    /// `[tenants.NAME]`: a tenant's zone and how long its reports are kept
    /// (tenants not named: UTC, kept forever).
    #[serde(default)]
    pub tenants: std::collections::BTreeMap<String, ReportsTenant>,
    #[serde(default)]
    pub log: owlet_logging::LogSection,
}

/// `[tenants.NAME]` of `reports.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportsTenant {
    /// The tenant's IANA time zone (its periods run midnight to midnight there).
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Reports of periods that ended longer ago are deleted (`"0s"`: kept).
    #[serde(default, with = "humantime_serde")]
    pub max_age: Option<Duration>,
}

impl ReportsFile {
    /// What the schedule needs of `tenant`: zone and retention.
    pub fn plan(&self, tenant: &str) -> owlet_soc_report::schedule::TenantPlan {
        let own = self.tenants.get(tenant);
        owlet_soc_report::schedule::TenantPlan {
            tenant: tenant.to_string(),
            zone: own
                .and_then(|t| t.time_zone.as_deref())
                .and_then(|z| owlet_soc_export::Zone::parse(z).ok())
                .unwrap_or(owlet_soc_export::Zone::Utc),
            max_age: own.and_then(|t| t.max_age).filter(|age| !age.is_zero()),
            mail_to: Vec::new(),
        }
    }
}

/// Loads and checks a reports config file.
pub fn load_reports(path: &Path) -> Result<ReportsFile, ConfigErrors> {
    owlet_tomlconf::load(path, |config: &mut ReportsFile, source| {
        let mut errors = Vec::new();
        config.postgres.resolve_and_check(source, &mut errors);
        for (key, problem) in config.reports.problems() {
            errors.push(source.error(key, problem));
        }
        if config.reports.mail_channel.is_some() {
            errors.push(source.error(
                "reports.mail_channel",
                "owlet-soc reports keeps the reports in PostgreSQL (tenant_T.reports) and mails nothing; remove mail_channel",
            ));
        }
        for (name, tenant) in &config.tenants {
            if let Err(e) = owlet_soc_bus::writer::check_tenant(name) {
                errors.push(source.error(&format!("tenants.{name}"), e.to_string()));
            }
            if let Some(zone) = &tenant.time_zone
                && let Err(e) = owlet_soc_export::Zone::parse(zone)
            {
                errors.push(source.error(&format!("tenants.{name}.time_zone"), e));
            }
        }
        errors
    })
}

/// Loads and checks a writer config file.
pub fn load_writer(path: &Path) -> Result<WriterFile, ConfigErrors> {
    owlet_tomlconf::load(path, |config: &mut WriterFile, source| {
        let mut errors = Vec::new();
        if let Some(p) = &mut config.nats.credentials {
            *p = source.resolve(p);
        }
        config.postgres.resolve_and_check(source, &mut errors);
        if config.nats.servers.is_empty() {
            errors.push(source.error(
                "nats.servers",
                "name at least one server, e.g. [\"nats://10.0.0.1:4222\"]",
            ));
        }
        for server in &config.nats.servers {
            if let Err(e) = server.parse::<owlet_soc_bus::ServerAddr>() {
                errors.push(source.error(
                    "nats.servers",
                    format!(
                        "{server:?} is not a NATS server address ({e}); write nats://HOST:PORT"
                    ),
                ));
            }
        }
        if let Some(path) = &config.nats.credentials
            && let Err(e) = std::fs::metadata(path)
        {
            errors.push(source.error(
                "nats.credentials",
                format!("cannot read {}: {e}", path.display()),
            ));
        }
        if config.writer.batch == 0 {
            errors.push(source.error("writer.batch", "must be more than 0"));
        }
        if config.liveness.silent_after.is_zero() || config.liveness.check_every.is_zero() {
            errors.push(source.error(
                "liveness",
                "silent_after and check_every must be more than 0",
            ));
        }
        errors
    })
}

/// Loads and checks a SOC config file.
pub fn load(path: &Path) -> Result<SocConfig, ConfigErrors> {
    owlet_tomlconf::load(path, resolve_and_check)
}

fn resolve_and_check(
    config: &mut SocConfig,
    source: &owlet_tomlconf::Source,
) -> Vec<owlet_tomlconf::ConfigError> {
    let server = &mut config.server;
    for p in [&mut server.cert, &mut server.key, &mut server.client_ca] {
        *p = source.resolve(p);
    }
    if let Some(crl) = &mut server.crl {
        *crl = source.resolve(crl);
    }
    match &mut config.sink {
        SinkSection::Sqlite { path } => *path = source.resolve(path),
        SinkSection::Nats { credentials, .. } => {
            if let Some(path) = credentials {
                *path = source.resolve(path);
            }
        }
    }
    let mut errors = Vec::new();
    resolve_and_check_portal(&mut config.portal, source, &mut errors);
    if let Some(notify) = &mut config.notify {
        for channel in &mut notify.channels {
            for path in channel.files_mut() {
                *path = source.resolve(path);
            }
        }
        // One place for a tenant's zone: [tenants.NAME] time_zone.
        add_tenant_zones(
            notify,
            config
                .tenants
                .iter()
                .map(|(name, t)| (name, t.time_zone.as_ref())),
        );
    }
    check_bus(config, source, &mut errors);
    if let Some(notify) = &config.notify
        && let Err(e) = notify.validate()
    {
        errors.push(source.error("notify", e.to_string()));
    }
    resolve_and_check_outputs(&mut config.outputs, source, &mut errors);
    for (key, path) in [
        ("server.cert", &config.server.cert),
        ("server.client_ca", &config.server.client_ca),
    ] {
        if let Err(e) = owlet_tls::load_certs(path) {
            errors.push(source.error(key, e.to_string()));
        }
    }
    if let Err(e) = owlet_tls::load_private_key(&config.server.key) {
        errors.push(source.error("server.key", e.to_string()));
    }
    if let Some(crl) = &config.server.crl
        && let Err(e) = owlet_tls::load_crls(crl, &config.server.client_ca)
    {
        errors.push(source.error("server.crl", e.to_string()));
    }
    if config.server.crl_check_every.is_zero() {
        errors.push(source.error("server.crl_check_every", "must be more than 0s"));
    }
    if config.liveness.silent_after.is_zero() || config.liveness.check_every.is_zero() {
        errors.push(source.error(
            "liveness",
            "silent_after and check_every must be more than 0s",
        ));
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&config.log.level) {
        errors.push(source.error(
            "log.level",
            format!("not a log filter ({e}); examples: \"info\", \"owlet_soc=debug,info\""),
        ));
    }
    if config.server.max_connections == 0 {
        errors.push(source.error("server.max_connections", "must be at least 1"));
    }
    if config.retention.check_every.is_zero() {
        errors.push(source.error("retention.check_every", "must be longer than 0s"));
    }
    if let Some(reports) = &config.reports {
        for (key, problem) in reports.problems() {
            errors.push(source.error(key, problem));
        }
        if let Some(channel) = &reports.mail_channel {
            match config.report_mail_channel() {
                None => errors.push(source.error(
                    "reports.mail_channel",
                    format!("no [[notify.channel]] named \"{channel}\": name an smtp channel of [notify], or remove mail_channel"),
                )),
                Some(c) if c.type_name() != "smtp" => errors.push(source.error(
                    "reports.mail_channel",
                    format!("channel \"{channel}\" is of type {}; reports are mailed through an smtp channel", c.type_name()),
                )),
                Some(c) => {
                    for (name, tenant) in &config.tenants {
                        if !tenant.report_mail_to.is_empty() && !c.tenants().contains(name) {
                            errors.push(source.error(
                                &format!("tenants.{name}.report_mail_to"),
                                format!("channel \"{channel}\" does not serve tenant {name}: add it to the channel's tenants"),
                            ));
                        }
                    }
                }
            }
        }
    }
    for (name, tenant) in &config.tenants {
        check_tenant_zone(name, tenant.time_zone.as_deref(), source, &mut errors);
    }
    errors
}

/// `[portal]`, in soc.toml or portal.toml: its files resolved against the
/// config file's directory, its values, the OIDC files, and the
/// certificate and key when given.
pub(crate) fn resolve_and_check_portal(
    portal: &mut owlet_soc_portal::PortalSection,
    source: &owlet_tomlconf::Source,
    errors: &mut Vec<owlet_tomlconf::ConfigError>,
) {
    for path in [&mut portal.cert, &mut portal.key, &mut portal.ca_dir]
        .into_iter()
        .flatten()
        .chain(portal.oidc.iter_mut().flat_map(|o| o.paths_mut()))
    {
        *path = source.resolve(path);
    }
    let oidc_files = portal.oidc.iter().flat_map(|o| o.check_files());
    for (key, message) in portal.problems().into_iter().chain(oidc_files) {
        errors.push(source.error(&format!("portal.{key}"), message));
    }
    if let Some(cert) = &portal.cert
        && let Err(e) = owlet_tls::load_certs(cert)
    {
        errors.push(source.error("portal.cert", e.to_string()));
    }
    if let Some(key) = &portal.key
        && let Err(e) = owlet_tls::load_private_key(key)
    {
        errors.push(source.error("portal.key", e.to_string()));
    }
}

/// `[tenants.NAME]`: a tenant name an identity may carry, and an IANA
/// `time_zone`.
pub(crate) fn check_tenant_zone(
    name: &str,
    zone: Option<&str>,
    source: &owlet_tomlconf::Source,
    errors: &mut Vec<owlet_tomlconf::ConfigError>,
) {
    if let Err(e) = owlet_tls::Identity::new(name, "x") {
        errors.push(source.error(&format!("tenants.{name}"), e.to_string()));
    }
    if let Some(zone) = zone
        && let Err(e) = owlet_soc_export::Zone::parse(zone)
    {
        errors.push(source.error(&format!("tenants.{name}.time_zone"), e));
    }
}

/// `[sink] type = "nats"`: servers that parse, a credentials file that
/// exists, replicas a cluster can have, and no consumer that still reads
/// the embedded store.
fn check_bus(
    config: &SocConfig,
    source: &owlet_tomlconf::Source,
    errors: &mut Vec<owlet_tomlconf::ConfigError>,
) {
    let SinkSection::Nats {
        servers,
        credentials,
        replicas,
        duplicate_window,
        buffer_max_age,
    } = &config.sink
    else {
        return;
    };
    if servers.is_empty() {
        errors.push(source.error(
            "sink.servers",
            "name at least one server, e.g. [\"nats://10.0.0.1:4222\"]",
        ));
    }
    for server in servers {
        if let Err(e) = server.parse::<owlet_soc_bus::ServerAddr>() {
            errors.push(source.error(
                "sink.servers",
                format!("{server:?} is not a NATS server address ({e}); write nats://HOST:PORT"),
            ));
        }
    }
    if let Some(path) = credentials
        && let Err(e) = std::fs::metadata(path)
    {
        errors.push(source.error(
            "sink.credentials",
            format!("cannot read {}: {e}", path.display()),
        ));
    }
    if !(1..=5).contains(replicas) {
        errors.push(source.error(
            "sink.replicas",
            "JetStream streams have 1 to 5 replicas (3 in a 3-node cluster)",
        ));
    }
    if duplicate_window.is_zero() {
        errors.push(source.error("sink.duplicate_window", "must be more than 0s"));
    }
    if !buffer_max_age.is_zero() && buffer_max_age < duplicate_window {
        errors.push(source.error(
            "sink.buffer_max_age",
            format!(
                "{} is shorter than sink.duplicate_window ({}): JetStream refuses such a stream; \
                 keep it longer than the writer may be down (default 7days)",
                humantime::format_duration(*buffer_max_age),
                humantime::format_duration(*duplicate_window)
            ),
        ));
    }
    for name in config.tenants.keys() {
        if let Err(e) = owlet_soc_bus::writer::check_tenant(name) {
            errors.push(source.error(&format!("tenants.{name}"), e.to_string()));
        }
    }
    if !config.outputs.is_empty() {
        errors.push(source.error(
            "output",
            "a receiver with [sink] type = \"nats\" runs no SIEM outputs (it keeps no store to read); \
             move these [[output]] entries, unchanged, into outputs.toml beside a [postgres] section \
             and run `owlet-soc outputs --config /etc/owlet-soc/outputs.toml` \
             (owlet-soc-outputs.service; packaging/examples/scale/outputs.toml)",
        ));
    }
    if config.notify.is_some() {
        errors.push(source.error(
            "notify",
            "reads the embedded store, which a receiver with [sink] type = \"nats\" does not have; \
             move this [notify] section, unchanged, into notify.toml beside a [postgres] section \
             and run `owlet-soc notify --config /etc/owlet-soc/notify.toml` \
             (owlet-soc-notify.service; packaging/examples/scale/notify.toml)",
        ));
    }
    if config.reports.is_some() {
        errors.push(source.error(
            "reports",
            "a receiver with [sink] type = \"nats\" makes no reports (it keeps no store to read); \
             move this [reports] section, unchanged, into reports.toml beside a [postgres] section \
             and run `owlet-soc reports --config /etc/owlet-soc/reports.toml` \
             (owlet-soc-reports.service; packaging/examples/scale/reports.toml)",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh SOC config (`enroll::init`): its path, and its text with the
    /// `[sink]` section replaced by `sink`.
    fn config_with_sink(dir: &Path) -> (std::path::PathBuf, impl Fn(&str) -> String) {
        let path = crate::enroll::init(dir, &["localhost".into()], "127.0.0.1:0").unwrap();
        let base = std::fs::read_to_string(&path).unwrap();
        let start = base.find("[sink]").unwrap();
        let end = base[start + 6..]
            .find("\n[")
            .map_or(base.len(), |i| start + 6 + i);
        let with = move |sink: &str| format!("{}{sink}\n{}", &base[..start], &base[end..]);
        (path, with)
    }

    #[test]
    fn a_nats_sink_is_read_and_its_mistakes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let (path, with) = config_with_sink(dir.path());
        std::fs::write(
            &path,
            with("[sink]\ntype = \"nats\"\nservers = [\"nats://10.0.0.1:4222\", \"nats://10.0.0.2:4222\"]\n"),
        )
        .unwrap();
        let config = load(&path).unwrap();
        let bus = config.bus().unwrap();
        assert_eq!((bus.servers.len(), bus.replicas), (2, 3));
        assert!(config.sqlite_path().is_err());
        std::fs::write(
            &path,
            with("[sink]\ntype = \"nats\"\nservers = [\"nats://10.0.0.1:99999\"]\nreplicas = 7\n"),
        )
        .unwrap();
        let errors = load(&path).unwrap_err().to_string();
        assert!(
            errors.contains("sink.servers") && errors.contains("99999"),
            "{errors}"
        );
        assert!(errors.contains("sink.replicas"), "{errors}");
        assert!(
            errors.contains("soc.toml:"),
            "errors name the file and line: {errors}"
        );
        std::fs::write(
            &path,
            with("[sink]\ntype = \"nats\"\nserver = [\"nats://a:1\"]\n"),
        )
        .unwrap();
        let errors = load(&path).unwrap_err().to_string();
        assert!(errors.contains("server"), "{errors}");
    }

    #[test]
    fn with_a_nats_sink_a_tenant_name_postgres_would_cut_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (path, with_sink) = config_with_sink(dir.path());
        let long = "t".repeat(owlet_soc_bus::writer::MAX_TENANT_BYTES + 1);
        let with = |tenant: &str| {
            with_sink(&format!(
                "[sink]\ntype = \"nats\"\nservers = [\"nats://10.0.0.1:4222\"]\n\n[tenants.{tenant}]\ntime_zone = \"UTC\""
            ))
        };
        std::fs::write(&path, with(&long)).unwrap();
        let errors = load(&path).unwrap_err().to_string();
        assert!(
            errors.contains(&format!("tenants.{long}")) && errors.contains("63 bytes"),
            "{errors}"
        );
        std::fs::write(&path, with(&long[1..])).unwrap();
        load(&path).unwrap();
    }

    /// Seen failing: with the old refusal (naming no command), the
    /// operator was not pointed at `owlet-soc outputs`.
    #[test]
    fn an_output_on_a_nats_receiver_points_at_owlet_soc_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let (path, with_sink) = config_with_sink(dir.path());
        std::fs::write(
            &path,
            with_sink(
                "[sink]\ntype = \"nats\"\nservers = [\"nats://10.0.0.1:4222\"]\n\n\
                 [[output]]\nname = \"siem\"\ntype = \"splunk_hec\"\nurl = \"https://splunk.example:8088\"\ntenants = [\"acme\"]\n",
            ),
        )
        .unwrap();
        let errors = load(&path).unwrap_err().to_string();
        for part in ["output", "owlet-soc outputs --config", "outputs.toml"] {
            assert!(errors.contains(part), "{part:?} missing: {errors}");
        }
    }

    /// The old refusal ("not built for the scaled-out SOC yet") named no
    /// command; this one points the operator at `owlet-soc notify`.
    #[test]
    fn notify_on_a_nats_receiver_points_at_owlet_soc_notify() {
        let dir = tempfile::tempdir().unwrap();
        let (path, with_sink) = config_with_sink(dir.path());
        std::fs::write(
            &path,
            with_sink(
                "[sink]\ntype = \"nats\"\nservers = [\"nats://10.0.0.1:4222\"]\n\n[notify]\n",
            ),
        )
        .unwrap();
        let errors = load(&path).unwrap_err().to_string();
        for part in ["notify", "owlet-soc notify --config", "notify.toml"] {
            assert!(errors.contains(part), "{part:?} missing: {errors}");
        }
    }

    /// Seen failing: without the empty-rule check a notify.toml without
    /// rules loaded (a process that would notify nothing); without
    /// `[tenants.NAME] time_zone` merged, acme's zone was UTC.
    #[test]
    fn notify_toml_is_read_and_its_mistakes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.toml");
        let pass = dir.path().join("smtp.pass");
        std::fs::write(&pass, "p\n").unwrap();
        std::fs::set_permissions(&pass, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let notify = "[notify]\n\n[[notify.rule]]\nname = \"urgent\"\ntenant = \"acme\"\nchannels = [\"mail\"]\n\n\
             [[notify.channel]]\nname = \"mail\"\ntenants = [\"acme\"]\ntype = \"smtp\"\nserver = \"mail.example\"\n\
             user = \"owlet\"\npassword_file = \"smtp.pass\"\nfrom = \"soc@example.net\"\nto = [\"noc@acme.example\"]\n";
        let pg = "[postgres]\nconnect = \"host=127.0.0.1 user=o dbname=owlet\"\n";
        std::fs::write(
            &path,
            format!(
                "{pg}\n[paths]\nstate_dir = \"state\"\ncontacts_dir = \"portal/contacts\"\n\n\
                 [tenants.acme]\ntime_zone = \"Asia/Tokyo\"\n\n{notify}"
            ),
        )
        .unwrap();
        let config = load_notify(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.notify.zone_of("acme").name(), "Asia/Tokyo");
        assert_eq!(config.paths.state_dir, dir.path().join("state"));
        assert_eq!(config.contacts_root(), Some(dir.path().join("portal")));
        for (text, key) in [
            (format!("{pg}\n[notify]\n"), "no [[notify.rule]]"),
            (format!("[postgres]\nconect = \"x\"\n\n{notify}"), "conect"),
            (
                format!("{pg}\n[paths]\ncontacts_dir = \"portal\"\n\n{notify}"),
                "paths.contacts_dir",
            ),
            (
                format!("{pg}\n[tenants.acme]\ntime_zone = \"Mars/Base\"\n\n{notify}"),
                "tenants.acme.time_zone",
            ),
            (
                format!(
                    "{pg}\n{}",
                    notify.replace("tenants = [\"acme\"]", "tenants = [\"globex\"]")
                ),
                "notify",
            ),
        ] {
            std::fs::write(&path, &text).unwrap();
            let errors = load_notify(&path).unwrap_err().to_string();
            assert!(
                errors.contains(key) && errors.contains("notify.toml:"),
                "{key:?} missing: {errors}"
            );
        }
    }

    /// Seen failing: without the empty-`[[output]]` check, a file with no
    /// output loaded (a process that would send nothing).
    #[test]
    fn outputs_toml_is_read_and_its_mistakes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outputs.toml");
        let output = "[[output]]\nname = \"siem\"\ntype = \"splunk_hec\"\nurl = \"https://splunk.example:8088\"\ntenants = [\"acme\"]\ntoken_file = \"hec.token\"\n";
        let token = dir.path().join("hec.token");
        std::fs::write(&token, "t\n").unwrap();
        std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        std::fs::write(
            &path,
            format!("[postgres]\nconnect = \"host=127.0.0.1 user=o dbname=owlet\"\n\n{output}"),
        )
        .unwrap();
        let config = load_outputs(&path).unwrap();
        assert_eq!(config.outputs[0].name, "siem");
        assert_eq!(
            config.outputs[0].token_file.as_deref(),
            Some(dir.path().join("hec.token").as_path()),
            "relative to the file"
        );
        assert!(config.postgres.conninfo().unwrap().contains("dbname=owlet"));
        for (text, key) in [
            (format!("[postgres]\nconect = \"x\"\n\n{output}"), "conect"),
            (
                "[postgres]\nconnect = \"host=h\"\n".to_string(),
                "no [[output]]",
            ),
            (
                format!("[postgres]\nconnect = \"host=h\"\n\n{output}{output}"),
                "siem",
            ),
            (
                format!("[postgres]\nconnect = \"host=h\"\npassword_file = \"nope\"\n\n{output}"),
                "postgres.password_file",
            ),
        ] {
            std::fs::write(&path, &text).unwrap();
            let errors = load_outputs(&path).unwrap_err().to_string();
            assert!(
                errors.contains(key) && errors.contains("outputs.toml:"),
                "{key:?} missing: {errors}"
            );
        }
    }

    /// Seen failing: with the old refusal ("not built for the scaled-out
    /// SOC yet") the operator was not pointed at `owlet-soc reports`.
    #[test]
    fn reports_on_a_nats_receiver_point_at_owlet_soc_reports() {
        let dir = tempfile::tempdir().unwrap();
        let (path, with_sink) = config_with_sink(dir.path());
        std::fs::write(
            &path,
            with_sink("[sink]\ntype = \"nats\"\nservers = [\"nats://10.0.0.1:4222\"]\n\n[reports]\nweekly = false\n"),
        )
        .unwrap();
        let errors = load(&path).unwrap_err().to_string();
        for part in ["reports", "owlet-soc reports --config", "reports.toml"] {
            assert!(errors.contains(part), "{part:?} missing: {errors}");
        }
    }

    /// `[reports]` of reports.toml goes through soc.toml's checks, and
    /// every mistake names file, line and key.
    #[test]
    fn reports_toml_is_read_and_its_mistakes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reports.toml");
        let pg = "[postgres]\nconnect = \"host=127.0.0.1 user=o dbname=owlet\"\n\n";
        std::fs::write(
            &path,
            format!("{pg}[reports]\nweekly = false\nlanguages = [\"en\"]\n\n[tenants.acme]\ntime_zone = \"Asia/Tokyo\"\nmax_age = \"400days\"\n"),
        )
        .unwrap();
        let config = load_reports(&path).unwrap();
        assert!(!config.reports.weekly);
        let plan = config.plan("acme");
        assert_eq!(plan.zone.name(), "Asia/Tokyo");
        assert!(plan.max_age.is_some());
        assert_eq!(config.plan("globex").zone.name(), "UTC");
        for (text, key) in [
            (
                format!("{pg}[reports]\nlanguages = [\"de\"]\n"),
                "reports.languages",
            ),
            (
                format!("{pg}[reports]\nlanguages = []\n"),
                "reports.languages",
            ),
            (
                format!("{pg}[reports]\ncheck_every = \"0s\"\n"),
                "reports.check_every",
            ),
            (
                format!("{pg}[reports]\nmail_channel = \"mail\"\n"),
                "reports.mail_channel",
            ),
            (
                format!("{pg}[reports]\n\n[tenants.acme]\ntime_zone = \"Mars/Base\"\n"),
                "tenants.acme.time_zone",
            ),
            (format!("{pg}[reports]\nweakly = true\n"), "weakly"),
            (pg.to_string(), "reports"),
        ] {
            std::fs::write(&path, &text).unwrap();
            let errors = load_reports(&path).unwrap_err().to_string();
            assert!(
                errors.contains(key) && errors.contains("reports.toml:"),
                "{key:?} missing: {errors}"
            );
        }
    }

    #[test]
    fn the_bus_buffer_defaults_to_a_week_and_may_not_undercut_the_duplicate_window() {
        let dir = tempfile::tempdir().unwrap();
        let (path, with_sink) = config_with_sink(dir.path());
        let sink = |extra: &str| {
            with_sink(&format!(
                "[sink]\ntype = \"nats\"\nservers = [\"nats://10.0.0.1:4222\"]\n{extra}"
            ))
        };
        std::fs::write(&path, sink("")).unwrap();
        let bus = load(&path).unwrap().bus().unwrap();
        assert_eq!(
            bus.buffer_max_age,
            Some(owlet_soc_bus::publish::DEFAULT_BUFFER_MAX_AGE)
        );
        std::fs::write(&path, sink("buffer_max_age = \"0s\"")).unwrap();
        assert_eq!(load(&path).unwrap().bus().unwrap().buffer_max_age, None);
        std::fs::write(&path, sink("buffer_max_age = \"1m\"")).unwrap();
        let errors = load(&path).unwrap_err().to_string();
        assert!(
            errors.contains("sink.buffer_max_age") && errors.contains("duplicate_window (2m)"),
            "{errors}"
        );
    }

    #[test]
    fn the_log_section_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = crate::enroll::init(dir.path(), &["localhost".into()], "127.0.0.1:0").unwrap();
        let config = load(&path).unwrap();
        assert_eq!(config.log.format, owlet_logging::LogFormat::Auto);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            text.replace("format = \"auto\"", "format = \"json\""),
        )
        .unwrap();
        assert_eq!(
            load(&path).unwrap().log.format,
            owlet_logging::LogFormat::Json
        );
        std::fs::write(
            &path,
            text.replace("format = \"auto\"", "format = \"colourful\""),
        )
        .unwrap();
        let errors = load(&path).unwrap_err().to_string();
        assert!(errors.contains("log.format"), "{errors}");
    }

    #[test]
    fn the_portal_section_defaults_to_the_socs_certificate_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = crate::enroll::init(dir.path(), &["localhost".into()], "127.0.0.1:0").unwrap();
        let config = load(&path).unwrap();
        let settings = config.portal_settings().unwrap();
        assert_eq!(settings.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(settings.cert, config.server.cert);
        assert_eq!(settings.root, config.store_root().unwrap());
        assert_eq!(settings.lockout_after, 5);
        // Sensors' bundles name the receiver's address unless told otherwise.
        assert_eq!(settings.soc_address, config.server.listen.to_string());
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            format!("{text}\n[portal]\nsoc_address = \"soc.example.net:4443\"\n"),
        )
        .unwrap();
        let settings = load(&path).unwrap().portal_settings().unwrap();
        assert_eq!(settings.soc_address, "soc.example.net:4443");
        std::fs::write(
            &path,
            format!(
                "{text}\n[portal]\nsession_idle = \"5s\"\nlockout_after = 0\nsoc_address = \"no-port\"\n"
            ),
        )
        .unwrap();
        let errors = load(&path).unwrap_err().to_string();
        assert!(errors.contains("portal.session_idle"), "{errors}");
        assert!(errors.contains("portal.lockout_after"), "{errors}");
        assert!(errors.contains("portal.soc_address"), "{errors}");
        std::fs::write(
            &path,
            format!("{text}\n[portal]\nlisten = \"127.0.0.1:9443\"\nsession_idel = \"10m\"\n"),
        )
        .unwrap();
        let errors = load(&path).unwrap_err().to_string();
        assert!(errors.contains("session_idle"), "{errors}");
    }

    #[test]
    fn portal_oidc_is_off_by_default_and_checked_with_its_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = crate::enroll::init(dir.path(), &["localhost".into()], "127.0.0.1:0").unwrap();
        assert!(
            load(&path)
                .unwrap()
                .portal_settings()
                .unwrap()
                .oidc
                .is_none()
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let secret = dir.path().join("oidc-secret");
        std::fs::write(&secret, "s3cret\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let oidc = "[portal.oidc]\nissuer = \"https://idp.example.net/realms/soc\"\n\
                    client_id = \"owlet\"\nclient_secret_file = \"oidc-secret\"\n\
                    redirect_url = \"https://soc.example.net:8443/login/oidc/callback\"\n";
        std::fs::write(&path, format!("{text}\n{oidc}")).unwrap();
        let settings = load(&path).unwrap().portal_settings().unwrap();
        let oidc_settings = settings.oidc.unwrap();
        assert_eq!(
            oidc_settings.client_secret_file, secret,
            "relative to soc.toml"
        );
        assert_eq!(oidc_settings.claim, "email");
        assert!(!oidc_settings.trust_idp_mfa);
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        let broken = oidc.replace("https://idp", "http://idp");
        std::fs::write(
            &path,
            format!("{text}\n{broken}ca_file = \"nonexistent.pem\"\n"),
        )
        .unwrap();
        let errors = load(&path).unwrap_err().to_string();
        for key in [
            "portal.oidc.issuer",
            "portal.oidc.client_secret_file",
            "portal.oidc.ca_file",
        ] {
            assert!(errors.contains(key), "{key}: {errors}");
        }
        assert!(errors.contains("chmod 600"), "{errors}");
    }

    #[test]
    fn ca_init_names_its_crl_and_a_broken_crl_is_a_config_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = crate::enroll::init(dir.path(), &["localhost".into()], "127.0.0.1:0").unwrap();
        let config = load(&path).unwrap();
        assert_eq!(config.server.crl, Some(dir.path().join("ca.crl")));
        std::fs::write(dir.path().join("ca.crl"), "not a CRL").unwrap();
        let errors = load(&path).unwrap_err().to_string();
        assert!(errors.contains("server.crl"), "{errors}");
        assert!(errors.contains("ca.crl"), "{errors}");
    }

    #[test]
    fn the_reports_section_is_read_and_a_wrong_mail_channel_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = crate::enroll::init(dir.path(), &["localhost".into()], "127.0.0.1:0").unwrap();
        let base = std::fs::read_to_string(&path).unwrap();
        assert!(load(&path).unwrap().reports.is_none());
        std::fs::write(
            &path,
            format!(
                "{base}\n[reports]\nweekly = false\nlanguages = [\"en\"]\n\n[tenants.acme]\ntime_zone = \"Asia/Tokyo\"\nmax_age = \"30days\"\n"
            ),
        )
        .unwrap();
        let config = load(&path).unwrap();
        let reports = config.reports.clone().unwrap();
        assert!(!reports.weekly && reports.monthly && reports.pdf);
        assert_eq!(reports.languages, [owlet_soc_report::Lang::En]);
        let plan = config.report_plan("acme");
        assert_eq!(plan.zone.name(), "Asia/Tokyo");
        assert_eq!(plan.max_age, Some(Duration::from_secs(30 * 86_400)));
        std::fs::write(&path, format!("{base}\n[reports]\nlanguages = [\"de\"]\n")).unwrap();
        let errors = load(&path).unwrap_err().to_string();
        assert!(
            errors.contains("reports.languages") || errors.contains("languages"),
            "{errors}"
        );
        std::fs::write(
            &path,
            format!("{base}\n[reports]\nmail_channel = \"mail\"\n"),
        )
        .unwrap();
        let errors = load(&path).unwrap_err().to_string();
        assert!(
            errors.contains("reports.mail_channel")
                && errors.contains("no [[notify.channel]] named \"mail\""),
            "{errors}"
        );
    }
}
