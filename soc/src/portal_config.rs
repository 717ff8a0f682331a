//! Which configuration `owlet-soc portal` (and `owlet-soc user`) runs
//! with. Two shapes, told apart by a top-level `[postgres]` table:
//!
//! * **soc.toml** (the embedded SOC): `[portal]` beside the receiver's
//!   sections; the portal reads the store under `[sink] path`. A soc.toml
//!   whose sink is NATS is refused with the command to run instead.
//! * **portal.toml** (the scaled-out SOC, [`PortalFile`]): `[postgres]`
//!   like the other roles', `[portal]` written and checked exactly as in
//!   soc.toml, `[tenants.NAME] time_zone`, `[paths] state_dir` (the
//!   portal's own `portal.db`: users, sessions, audit log, workflow; and
//!   its TOTP key) and `contacts_dir` (as notify.toml names it),
//!   `[liveness] silent_after`, `[notify]` (escalations), `[log]`.
//!
//! Guarantees: every mistake names the file, line and key (owlet-tomlconf);
//! the password is read from `[postgres] password_file` only when the
//! portal starts, never written anywhere.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use owlet_tomlconf::ConfigErrors;
use serde::Deserialize;

use crate::config::{
    LivenessSection, NotEmbedded, NotifyTenant, PostgresSection, SocConfig, check_tenant_zone,
    resolve_and_check_notify, resolve_and_check_paths, resolve_and_check_portal,
};

/// `portal.toml`: the portal of the scaled-out SOC.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortalFile {
    pub postgres: PortalPostgres,
    pub portal: owlet_soc_portal::PortalSection,
    #[serde(default)]
    pub paths: PortalPaths,
    #[serde(default)]
    pub tenants: BTreeMap<String, NotifyTenant>,
    /// A sensor whose last heartbeat is older than `silent_after` shows
    /// as silent (the writer's `[liveness]` keys; `check_every` unused).
    #[serde(default)]
    pub liveness: LivenessSection,
    /// Channels an analyst escalates an alert through (as in soc.toml).
    #[serde(default)]
    pub notify: Option<owlet_soc_notify::NotifyConfig>,
    #[serde(default)]
    pub log: owlet_logging::LogSection,
}

/// `portal.toml`'s `[postgres]`: the other roles' keys
/// ([`PostgresSection`]) and the portal's cap on its connections.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortalPostgres {
    pub connect: String,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The most connections the portal keeps open to PostgreSQL, idle
    /// and in use, of every tenant (owlet_soc_portal's pool).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

fn default_max_connections() -> usize {
    16
}

impl PortalPostgres {
    /// The keys every role's `[postgres]` has.
    pub fn section(&self) -> PostgresSection {
        PostgresSection {
            connect: self.connect.clone(),
            password_file: self.password_file.clone(),
        }
    }
}

/// `portal.toml`'s `[paths]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortalPaths {
    /// The portal's own files: `portal.db`, `portal-totp.key`, escalation
    /// state; systemd's StateDirectory.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// The tenants' contacts (`TENANT.json`), a directory named
    /// `contacts`: name the one notify.toml's `contacts_dir` names (shared
    /// between the hosts), so the notifier mails whom the portal lists.
    /// Default: `STATE_DIR/contacts`.
    #[serde(default)]
    pub contacts_dir: Option<PathBuf>,
}

impl Default for PortalPaths {
    fn default() -> Self {
        Self {
            state_dir: default_state_dir(),
            contacts_dir: None,
        }
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/owlet-soc-portal")
}

/// Loads and checks a portal.toml.
pub fn load_portal(path: &Path) -> Result<PortalFile, ConfigErrors> {
    owlet_tomlconf::load(path, |config: &mut PortalFile, source| {
        let mut errors = Vec::new();
        let mut postgres = config.postgres.section();
        postgres.resolve_and_check(source, &mut errors);
        config.postgres.password_file = postgres.password_file;
        if config.postgres.max_connections == 0 {
            errors.push(source.error(
                "postgres.max_connections",
                "must be at least 1: the most connections the portal keeps open to PostgreSQL (pages, live streams, the tenant list; default 16)",
            ));
        }
        resolve_and_check_portal(&mut config.portal, source, &mut errors);
        for (key, given) in [
            ("portal.cert", config.portal.cert.is_some()),
            ("portal.key", config.portal.key.is_some()),
        ] {
            if !given {
                errors.push(source.error(
                    key,
                    "required in portal.toml (there is no [server] to default to): the portal's HTTPS certificate and key (PEM)",
                ));
            }
        }
        if config.portal.ca_dir.is_some() && config.portal.soc_address.is_none() {
            errors.push(source.error(
                "portal.soc_address",
                "required with portal.ca_dir in portal.toml: the HOST:PORT sensors reach the receivers by (their load balancer), written into the sensors' owlet.toml",
            ));
        }
        resolve_and_check_paths(
            &mut config.paths.state_dir,
            &mut config.paths.contacts_dir,
            source,
            &mut errors,
        );
        for (name, tenant) in &config.tenants {
            if let Err(e) = owlet_soc_bus::writer::check_tenant(name) {
                errors.push(source.error(&format!("tenants.{name}"), e.to_string()));
            }
            check_tenant_zone(name, tenant.time_zone.as_deref(), source, &mut errors);
        }
        if config.liveness.silent_after.is_zero() {
            errors.push(source.error("liveness.silent_after", "must be more than 0s"));
        }
        if let Some(notify) = &mut config.notify {
            resolve_and_check_notify(notify, &config.tenants, source, &mut errors);
        }
        errors
    })
}

impl PortalFile {
    /// What the portal runs with, the connection string given (its
    /// password read from `password_file`).
    pub fn settings(&self, conninfo: String) -> owlet_soc_portal::Settings {
        let p = &self.portal;
        let state_dir = self.paths.state_dir.clone();
        owlet_soc_portal::Settings {
            listen: p.listen,
            // Both checked present by `load_portal`.
            cert: p.cert.clone().unwrap_or_default(),
            key: p.key.clone().unwrap_or_default(),
            session_idle: p.session_idle,
            lockout_after: p.lockout_after,
            lockout_for: p.lockout_for,
            contacts_root: self
                .paths
                .contacts_dir
                .as_ref()
                .and_then(|d| d.parent())
                .map_or_else(|| state_dir.clone(), Path::to_path_buf),
            root: state_dir,
            data: owlet_soc_portal::DataSettings::Postgres {
                conninfo,
                max_connections: self.postgres.max_connections,
            },
            tenant_zones: self
                .tenants
                .iter()
                .filter_map(|(name, t)| t.time_zone.clone().map(|z| (name.clone(), z)))
                .collect(),
            silent_after: self.liveness.silent_after,
            notify: self.notify.clone(),
            ca_dir: p.ca_dir.clone(),
            soc_address: p.soc_address.clone().unwrap_or_default(),
            oidc: p.oidc.clone(),
        }
    }
}

/// Whether the file at `path` is a portal.toml (a top-level `[postgres]`);
/// a file that cannot be read or parsed is left to the loader to report.
fn is_portal_file(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .is_some_and(|table| table.contains_key("postgres"))
}

/// The portal's settings and log section from `path`: a portal.toml, or
/// a soc.toml read by `load_soc`.
pub fn settings(
    path: &Path,
    load_soc: impl Fn(&Path) -> anyhow::Result<SocConfig>,
) -> anyhow::Result<(owlet_soc_portal::Settings, owlet_logging::LogSection)> {
    if is_portal_file(path) {
        let file = load_portal(path)
            .map_err(|errors| anyhow::anyhow!("invalid configuration:\n{errors}"))?;
        let conninfo = file
            .postgres
            .section()
            .conninfo()
            .map_err(|e| anyhow::anyhow!("{}: postgres.password_file: {e}", path.display()))?;
        return Ok((file.settings(conninfo), file.log));
    }
    let config = load_soc(path)?;
    let settings = config.portal_settings().map_err(|NotEmbedded| {
        anyhow::anyhow!(
            "{}: [sink] type = \"nats\": this SOC keeps its events in PostgreSQL, and its portal runs as a role of its own with a portal.toml ([postgres], [portal], [paths]): owlet-soc portal --config /etc/owlet-soc/portal.toml (example: packaging/examples/scale/portal.toml)",
            path.display()
        )
    })?;
    Ok((settings, config.log))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soc_loader(path: &Path) -> anyhow::Result<SocConfig> {
        crate::config::load(path).map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// A portal.toml is told from a soc.toml, read with its paths relative
    /// to it, and each mistake names file, line and key.
    #[test]
    fn portal_toml_is_read_and_its_mistakes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        crate::enroll::init(dir.path(), &["localhost".into()], "127.0.0.1:0").unwrap();
        let path = dir.path().join("portal.toml");
        let pg = "[postgres]\nconnect = \"host=127.0.0.1 user=o dbname=owlet\"\n";
        let portal = "[portal]\ncert = \"soc.pem\"\nkey = \"soc.key\"\n";
        std::fs::write(
            &path,
            format!(
                "{pg}\n{portal}\n[paths]\nstate_dir = \"state\"\ncontacts_dir = \"share/contacts\"\n\n\
                 [tenants.acme]\ntime_zone = \"Asia/Tokyo\"\n"
            ),
        )
        .unwrap();
        let (got, _) = settings(&path, soc_loader).unwrap();
        assert_eq!(got.root, dir.path().join("state"));
        assert_eq!(got.portal_db(), dir.path().join("state/portal.db"));
        assert_eq!(got.contacts_root, dir.path().join("share"));
        assert_eq!(got.tenant_zones["acme"], "Asia/Tokyo");
        assert!(matches!(
            got.data,
            owlet_soc_portal::DataSettings::Postgres { ref conninfo, max_connections: 16 } if conninfo.contains("dbname=owlet")
        ));
        std::fs::write(&path, format!("{pg}max_connections = 3\n\n{portal}")).unwrap();
        let (got, _) = settings(&path, soc_loader).unwrap();
        assert!(matches!(
            got.data,
            owlet_soc_portal::DataSettings::Postgres {
                max_connections: 3,
                ..
            }
        ));
        for (text, key) in [
            (
                format!("{pg}\n[portal]\nkey = \"soc.key\"\n"),
                "portal.cert",
            ),
            (
                format!("{pg}\n{portal}session_idle = \"5s\"\n"),
                "portal.session_idle",
            ),
            (
                format!("{pg}\n{portal}ca_dir = \".\"\n"),
                "portal.soc_address",
            ),
            (
                format!("{pg}\n{portal}\n[paths]\ncontacts_dir = \"share\"\n"),
                "paths.contacts_dir",
            ),
            (
                format!("{pg}\n{portal}\n[tenants.acme]\ntime_zone = \"Mars/Base\"\n"),
                "tenants.acme.time_zone",
            ),
            (
                format!("{pg}\n{portal}\n[tenants.{}]\n", "t".repeat(51)),
                "tenants.ttt",
            ),
            (
                format!("{pg}password_file = \"nope\"\n\n{portal}"),
                "postgres.password_file",
            ),
            (
                format!("{pg}max_connections = 0\n\n{portal}"),
                "postgres.max_connections",
            ),
            (format!("{pg}\n{portal}lisen = \"x\"\n"), "lisen"),
        ] {
            std::fs::write(&path, &text).unwrap();
            let errors = settings(&path, soc_loader).unwrap_err().to_string();
            assert!(
                errors.contains(key) && errors.contains("portal.toml:"),
                "{key:?} missing: {errors}"
            );
        }
    }

    /// A soc.toml of the embedded SOC gives the embedded portal; one with a
    /// NATS sink names portal.toml instead of starting.
    #[test]
    fn a_soc_toml_gives_the_embedded_portal_and_a_nats_one_names_portal_toml() {
        let dir = tempfile::tempdir().unwrap();
        let soc = crate::enroll::init(dir.path(), &["localhost".into()], "127.0.0.1:0").unwrap();
        let (got, _) = settings(&soc, soc_loader).unwrap();
        assert!(matches!(
            got.data,
            owlet_soc_portal::DataSettings::Embedded { .. }
        ));
        let text = std::fs::read_to_string(&soc).unwrap();
        let start = text.find("[sink]").unwrap();
        let end = text[start + 1..]
            .find("\n[")
            .map_or(text.len(), |e| start + 1 + e);
        let nats = format!(
            "{}[sink]\ntype = \"nats\"\nservers = [\"nats://127.0.0.1:4222\"]\n{}",
            &text[..start],
            &text[end..]
        );
        std::fs::write(&soc, nats).unwrap();
        let said = settings(&soc, soc_loader).unwrap_err().to_string();
        assert!(
            said.contains("portal.toml") && said.contains("owlet-soc portal --config"),
            "{said}"
        );
    }
}
