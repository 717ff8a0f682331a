//! Enrolment for small deployments and tests: `owlet-soc ca init` and
//! `owlet-soc ca issue`. Certificates come from `owlet_ca`; this module
//! adds the ready-to-use config files, so enrolling a sensor is two commands
//! and a copy, and the lifetime policy of agent certificates
//! ([`check_agent_days`]).
//!
//! The agent's `owlet.toml` itself comes from [`owlet_ca::agent_config`]
//! (shared with the portal's sensor bundle), which checks the SOC's name
//! against its certificate and picks the hardware profile; `ca issue` adds
//! the copy of `soc.pem` into the agent's directory, beside `ca.pem`, so
//! `owlet check-config` on the sensor can check the name again after hand
//! edits, and refuses to write into an enrolled agent's directory.

use std::path::{Path, PathBuf};

use anyhow::Context;
use owlet_ca::agent_config::{self, AGENT_CONFIG_FILE};
pub use owlet_ca::agent_config::{AgentConfigOptions, DEFAULT_HW_PROFILE, Layout};
use owlet_tls::Identity;

/// Validity of generated certificates. The CA lives long (replacing it
/// means re-enrolling every agent); agent certificates follow the web PKI's
/// 397-day ceiling by default, renewed with `owlet-soc ca renew`.
pub const CA_DAYS: u32 = 3650;
pub const AGENT_DAYS: u32 = 397;
/// Longest agent certificate `ca issue` / `ca renew` write.
pub const MAX_AGENT_DAYS: u32 = 825;

/// Checks an agent certificate lifetime: 1..=825 days; above 397 the
/// answer is a warning to print.
pub fn check_agent_days(days: u32) -> anyhow::Result<Option<String>> {
    anyhow::ensure!(
        (1..=MAX_AGENT_DAYS).contains(&days),
        "--days {days}: an agent certificate lives 1 to {MAX_AGENT_DAYS} days; \
         renew it before it expires (owlet-soc ca renew) instead of issuing a longer one"
    );
    Ok((days > AGENT_DAYS).then(|| {
        format!(
            "warning: a {days}-day certificate outlives the {AGENT_DAYS}-day limit agents should keep to; \
             a stolen key stays usable that long unless revoked (owlet-soc ca revoke)"
        )
    }))
}

/// Creates the CA and the SOC's server certificate in `dir`, plus `soc.toml`
/// listening on `listen`. Returns the path of `soc.toml`.
pub fn init(dir: &Path, soc_names: &[String], listen: &str) -> anyhow::Result<PathBuf> {
    owlet_ca::init(dir, soc_names, CA_DAYS)?;
    let config = dir.join("soc.toml");
    let text = format!(
        "# owlet-soc configuration written by `owlet-soc ca init`.\n\
         # Relative paths are taken from this file's directory.\n\n\
         [server]\n\
         listen = \"{listen}\"\n\
         cert = \"soc.pem\"\n\
         key = \"soc.key\"\n\
         # Only agents with certificates from this CA are accepted.\n\
         client_ca = \"ca.pem\"\n\
         # Revoked agent certificates are refused (`owlet-soc ca revoke` writes this\n\
         # file; a serving SOC re-reads it when it changes, and on SIGHUP).\n\
         crl = \"ca.crl\"\n\n\
         [sink]\n\
         type = \"sqlite\"\n\
         path = \"soc.db\"\n\n\
         [liveness]\n\
         # A known agent without a heartbeat for this long raises agent_silent.\n\
         silent_after = \"90s\"\n\n\
         [log]\n\
         # auto: human on a terminal, journald under systemd, JSON lines otherwise;\n\
         # or human | journald | json. Colour only on a terminal.\n\
         format = \"auto\"\n\
         # A tracing filter, e.g. \"info\" or \"owlet_soc=debug,info\" (RUST_LOG overrides it).\n\
         level = \"info\"\n"
    );
    write_new(&config, &text)?;
    Ok(config)
}

/// What [`issue`] wrote.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The agent's `owlet.toml`.
    pub config: PathBuf,
    /// The `soc.server_name` written because the SOC's certificate does not
    /// carry the host of the address, with why (for the operator).
    pub server_name_note: Option<String>,
}

/// What `ca issue` names itself in the configs it writes.
pub const ISSUE: &str = "`owlet-soc ca issue`";

/// Issues an agent certificate into `out` and writes `out/owlet.toml`.
pub fn issue(
    ca_dir: &Path,
    identity: &Identity,
    out: &Path,
    options: &AgentConfigOptions<'_>,
) -> anyhow::Result<Issued> {
    issue_for_days(ca_dir, identity, out, options, AGENT_DAYS)
}

/// [`issue`] with a certificate lifetime of `days` (see [`check_agent_days`]).
pub fn issue_for_days(
    ca_dir: &Path,
    identity: &Identity,
    out: &Path,
    options: &AgentConfigOptions<'_>,
    days: u32,
) -> anyhow::Result<Issued> {
    check_agent_days(days)?;
    let config = out.join(AGENT_CONFIG_FILE);
    // Refuse before anything is written: an existing agent's key must not be
    // replaced by a half-finished enrolment.
    for existing in [
        AGENT_CONFIG_FILE,
        owlet_ca::AGENT_KEY_FILE,
        owlet_ca::AGENT_CERT_FILE,
        owlet_ca::SOC_CERT_FILE,
    ]
    .map(|f| out.join(f))
    {
        anyhow::ensure!(
            !existing.exists(),
            "{} already exists: issue into a new directory (this looks like an enrolled agent)",
            existing.display()
        );
    }
    // Checked before the certificate is issued: a config that cannot work
    // leaves no certificate behind.
    let agent_config = agent_config::agent_config(ca_dir, identity, options)?;
    owlet_ca::issue(ca_dir, identity, out, days)?;
    // The SOC's certificate beside the pinned CA: `owlet check-config` checks
    // soc.address / soc.server_name against it on the sensor.
    let soc_cert = std::fs::read(ca_dir.join(owlet_ca::SOC_CERT_FILE))?;
    owlet_tls::write_public_file(&out.join(owlet_ca::SOC_CERT_FILE), &soc_cert)?;
    write_new(&config, &agent_config.text)?;
    Ok(Issued {
        config,
        server_name_note: agent_config.server_name_note,
    })
}

fn write_new(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
        .with_context(|| format!("cannot write {} (it must not exist yet)", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The config text with every example line uncommented.
    fn uncommented(text: &str) -> String {
        text.lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '[') => {
                    rest
                }
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn every_example_check_is_valid_once_uncommented() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = tmp.path().join("ca");
        owlet_ca::init(&ca, &["localhost".to_string()], 30).unwrap();
        let out = tmp.path().join("agent");
        let (state_dir, socket) = Layout::User.paths(&out).unwrap();
        let options = AgentConfigOptions {
            written_by: ISSUE,
            soc_address: "localhost:4443",
            server_name: None,
            hw_profile: DEFAULT_HW_PROFILE,
            state_dir: &state_dir,
            socket: &socket,
            status_interval: "30s",
        };
        let who = Identity::new("acme", "s1").unwrap();
        let path = issue(&ca, &who, &out, &options).unwrap().config;
        let text = std::fs::read_to_string(path).unwrap();
        // As written, the examples are comments: no [probe] table.
        let as_written: toml::Table = toml::from_str(&text).unwrap();
        assert!(!as_written.contains_key("probe"), "{text}");
        let config: toml::Table = toml::from_str(&uncommented(&text)).unwrap();
        let probe: owlet_probe::ProbeConfig = config["probe"]
            .clone()
            .try_into()
            .unwrap_or_else(|e| panic!("an example uses a key the probe does not know: {e}"));
        let issues = probe.validate();
        assert!(issues.is_empty(), "invalid example checks: {issues:?}");
        let mut types: Vec<&str> = probe.checks.iter().map(|c| c.check_type.as_str()).collect();
        types.sort();
        assert_eq!(types, ["http", "icmp", "snmp", "tcp"]);
        // The user layout keeps state and socket inside the output directory.
        let out = std::path::absolute(&out).unwrap();
        assert_eq!(
            config["agent"]["state_dir"].as_str(),
            out.join("state").to_str()
        );
        assert_eq!(
            config["control"]["socket"].as_str(),
            out.join("owlet.sock").to_str()
        );
    }

    #[test]
    fn agent_lifetimes_above_825_days_are_refused_and_above_397_warned() {
        assert!(check_agent_days(0).is_err());
        assert!(check_agent_days(826).is_err());
        assert_eq!(check_agent_days(397).unwrap(), None);
        assert_eq!(check_agent_days(1).unwrap(), None);
        let warning = check_agent_days(500).unwrap().unwrap();
        assert!(warning.contains("397"), "{warning}");
        assert!(check_agent_days(825).unwrap().is_some());
    }

    #[test]
    fn issuing_into_an_enrolled_directory_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = tmp.path().join("ca");
        owlet_ca::init(&ca, &["localhost".to_string()], 30).unwrap();
        let out = tmp.path().join("agent");
        let options = AgentConfigOptions {
            written_by: ISSUE,
            soc_address: "localhost:4443",
            server_name: None,
            hw_profile: DEFAULT_HW_PROFILE,
            state_dir: Path::new("/var/lib/owlet"),
            socket: Path::new("/run/owlet/owlet.sock"),
            status_interval: "30s",
        };
        let who = Identity::new("acme", "s1").unwrap();
        issue(&ca, &who, &out, &options).unwrap();
        let key = std::fs::read(out.join("agent.key")).unwrap();
        let err = issue(&ca, &who, &out, &options).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(std::fs::read(out.join("agent.key")).unwrap(), key);
    }
}
