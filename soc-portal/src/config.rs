//! `[portal]` of `soc.toml`, and the settings the portal runs with.
//!
//! The section only holds what a person writes; [`Settings`] is the whole
//! picture `owlet-soc portal` hands over (the section with its defaults
//! resolved, where the tenants' data is read (the embedded SOC's store
//! and control database, or the scaled-out SOC's PostgreSQL), the tenants'
//! zones, the notification channels). Checks here return `(key, message)`
//! pairs so the SOC's loader can locate them as `FILE:LINE:COL: portal.KEY`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// `[portal]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortalSection {
    /// HTTPS address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Server certificate (PEM); default: `[server] cert`.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Its key; default: `[server] key`.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// A session unused this long ends.
    #[serde(default = "default_idle", with = "humantime_serde")]
    pub session_idle: Duration,
    /// Failed logins of one name (or from one address, ×4) before it is locked.
    #[serde(default = "default_lockout_after")]
    pub lockout_after: u32,
    /// How long a lockout lasts (and the window failures are counted in).
    #[serde(default = "default_lockout_for", with = "humantime_serde")]
    pub lockout_for: Duration,
    /// The CA directory (`owlet-soc ca init --dir`) the admin pages issue,
    /// renew and revoke sensors' certificates with; default: the directory
    /// of `[server] client_ca`. The portal's user must be able to read its
    /// `ca.key` (mode 0600) and write the directory.
    #[serde(default)]
    pub ca_dir: Option<PathBuf>,
    /// The SOC's address (`HOST:PORT`) written into the `owlet.toml` of a
    /// sensor's bundle; default: `[server] listen` (see [`Settings::soc_address`]).
    #[serde(default)]
    pub soc_address: Option<String>,
    /// `[portal.oidc]`: optional login through an OpenID Connect provider.
    #[serde(default)]
    pub oidc: Option<crate::oidc::OidcSection>,
}

impl Default for PortalSection {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            cert: None,
            key: None,
            session_idle: default_idle(),
            lockout_after: default_lockout_after(),
            lockout_for: default_lockout_for(),
            ca_dir: None,
            soc_address: None,
            oidc: None,
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8443))
}
fn default_idle() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_lockout_after() -> u32 {
    5
}
fn default_lockout_for() -> Duration {
    Duration::from_secs(15 * 60)
}

impl PortalSection {
    /// Problems with the values, as `(key below portal, message)`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.session_idle < Duration::from_secs(60) {
            out.push(("session_idle", "must be at least 1m".to_string()));
        }
        if self.lockout_after == 0 {
            out.push(("lockout_after", "must be at least 1".to_string()));
        }
        if self.lockout_for.is_zero() {
            out.push(("lockout_for", "must be longer than 0s".to_string()));
        }
        if let Some(address) = &self.soc_address
            && owlet_tls::names::split_host_port(address).is_none()
        {
            out.push((
                "soc_address",
                format!("{address:?}: expected HOST:PORT, e.g. \"soc.example.net:4443\""),
            ));
        }
        if let Some(oidc) = &self.oidc {
            out.extend(oidc.problems());
        }
        out
    }
}

/// Everything the portal process runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub session_idle: Duration,
    pub lockout_after: u32,
    pub lockout_for: Duration,
    /// The portal's own directory: `portal.db`, the TOTP key, the state of
    /// escalations. Embedded: the store's root (the directory of `[sink]
    /// path`, where the tenants' logs are too); scaled-out: portal.toml's
    /// `[paths] state_dir`.
    pub root: PathBuf,
    /// Where the tenants' data is read ([`crate::backend`]).
    pub data: DataSettings,
    /// The directory whose `contacts/` holds the tenants' contacts
    /// (`contacts/TENANT.json`, read by the notifier too). Embedded: the
    /// store's root; scaled-out: the parent of `[paths] contacts_dir`.
    pub contacts_root: PathBuf,
    /// Tenants' IANA zones from `[tenants.NAME] time_zone`.
    pub tenant_zones: BTreeMap<String, String>,
    /// A sensor without a heartbeat for this long shows as silent.
    pub silent_after: Duration,
    /// `[notify]`, for escalations.
    pub notify: Option<owlet_soc_notify::NotifyConfig>,
    /// The CA directory for sensors' certificates (`[portal] ca_dir`);
    /// `None`: the sensors page says how to set it.
    pub ca_dir: Option<PathBuf>,
    /// The SOC's address sensors connect to (`HOST:PORT`), written into
    /// their bundles' `owlet.toml`: `[portal] soc_address`, else `[server]
    /// listen` as the SOC passes it. A setting rather than a field of the
    /// issue form because it is one fact about the deployment, the same for
    /// every sensor, and `ca issue --soc` takes it once per command too; the
    /// default is the receiver's own address, right as it is whenever that is
    /// a specific address. An unspecified one (`0.0.0.0`, `[::]`) is no
    /// address to connect to: the sensors page then refuses to make a bundle
    /// and names the setting to add.
    pub soc_address: String,
    /// `[portal.oidc]`, if set.
    pub oidc: Option<crate::oidc::OidcSection>,
}

/// Where the portal reads the tenants' data. Its `Debug` leaves out the
/// connection string (it holds the password).
#[derive(Clone)]
pub enum DataSettings {
    /// The embedded SOC: tenants' logs under [`Settings::root`] and the
    /// receiver's control database (`soc.db`), read-only.
    Embedded { control_db: PathBuf },
    /// The scaled-out SOC's PostgreSQL: a libpq connection string (the
    /// password read from its file already) and the most connections the
    /// portal keeps open to it (`[postgres] max_connections`).
    Postgres {
        conninfo: String,
        max_connections: usize,
    },
}

impl std::fmt::Debug for DataSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataSettings::Embedded { control_db } => f
                .debug_struct("Embedded")
                .field("control_db", control_db)
                .finish(),
            DataSettings::Postgres { .. } => f.write_str("Postgres { .. }"),
        }
    }
}

impl Settings {
    /// `ROOT/portal.db`.
    pub fn portal_db(&self) -> PathBuf {
        self.root.join(crate::db::FILE)
    }
}
