//! Enrolment for small deployments and tests: `owlet-soc ca init` and
//! `owlet-soc ca issue`. Certificates come from `owlet_tls::ca`; this module
//! adds the ready-to-use config files, so enrolling a sensor is two commands
//! and a copy.

use std::path::{Path, PathBuf};

use anyhow::Context;
use owlet_tls::Identity;

/// Validity of generated certificates.
pub const CA_DAYS: u32 = 3650;
pub const AGENT_DAYS: u32 = 825;

/// Creates the CA and the SOC's server certificate in `dir`, plus `soc.toml`
/// listening on `listen`. Returns the path of `soc.toml`.
pub fn init(dir: &Path, soc_names: &[String], listen: &str) -> anyhow::Result<PathBuf> {
    owlet_tls::ca::init(dir, soc_names, CA_DAYS)?;
    let config = dir.join("soc.toml");
    let text = format!(
        "# owlet-soc configuration written by `owlet-soc ca init`.\n\
         # Relative paths are taken from this file's directory.\n\n\
         [server]\n\
         listen = \"{listen}\"\n\
         cert = \"soc.pem\"\n\
         key = \"soc.key\"\n\
         # Only agents with certificates from this CA are accepted.\n\
         client_ca = \"ca.pem\"\n\n\
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

/// Options of an agent's generated `owlet.toml`.
pub struct AgentConfigOptions<'a> {
    pub soc_address: &'a str,
    /// State directory written into the config.
    pub state_dir: &'a Path,
    /// Control socket written into the config.
    pub socket: &'a Path,
    /// Heartbeat period written into the config.
    pub status_interval: &'a str,
}

/// Issues an agent certificate into `out` and writes `out/owlet.toml`.
pub fn issue(
    ca_dir: &Path,
    identity: &Identity,
    out: &Path,
    options: &AgentConfigOptions<'_>,
) -> anyhow::Result<PathBuf> {
    let config = out.join("owlet.toml");
    // Refuse before anything is written: an existing agent's key must not be
    // replaced by a half-finished enrolment.
    for existing in ["owlet.toml", "agent.key", "agent.pem"].map(|f| out.join(f)) {
        anyhow::ensure!(
            !existing.exists(),
            "{} already exists: issue into a new directory (this looks like an enrolled agent)",
            existing.display()
        );
    }
    owlet_tls::ca::issue(ca_dir, identity, out, AGENT_DAYS)?;
    let text = format!(
        "# owlet agent configuration written by `owlet-soc ca issue`.\n\
         # Relative paths are taken from this file's directory. Reference: packaging/owlet.toml.\n\n\
         [agent]\n\
         tenant = \"{tenant}\"\n\
         id = \"{agent}\"\n\
         state_dir = \"{state}\"\n\n\
         [soc]\n\
         address = \"{soc}\"\n\
         ca = \"ca.pem\"\n\
         cert = \"agent.pem\"\n\
         key = \"agent.key\"\n\n\
         [status]\n\
         interval = \"{interval}\"\n\n\
         [control]\n\
         socket = \"{socket}\"\n",
        tenant = identity.tenant,
        agent = identity.agent_id,
        state = options.state_dir.display(),
        soc = options.soc_address,
        interval = options.status_interval,
        socket = options.socket.display(),
    );
    write_new(&config, &text)?;
    Ok(config)
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

    #[test]
    fn issuing_into_an_enrolled_directory_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = tmp.path().join("ca");
        owlet_tls::ca::init(&ca, &["localhost".to_string()], 30).unwrap();
        let out = tmp.path().join("agent");
        let options = AgentConfigOptions {
            soc_address: "localhost:4443",
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
