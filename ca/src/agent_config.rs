//! An agent's `owlet.toml`, as `owlet-soc ca issue` and the portal's
//! sensor bundle (`/admin/sensors`) write it beside the files [`crate::issue`]
//! makes: one text for both, so a sensor enrolled either way runs the same.
//!
//! Guarantees of [`agent_config`]:
//! * the file names in `[soc]` are this crate's ([`crate::CA_CERT_FILE`],
//!   [`crate::AGENT_CERT_FILE`], [`crate::AGENT_KEY_FILE`]), relative to the
//!   config's directory: the config works where the files are put beside it;
//! * the SOC's name: the host of the SOC address must be a name the SOC's
//!   certificate (`soc.pem` of the CA directory) carries, or the agent is
//!   refused with `tls_name_mismatch`. When it is not, and no server name is
//!   given, `server_name` is written if the certificate carries exactly one
//!   name (the agent connects to the address and checks that name: nothing
//!   else could work), and the config is refused otherwise, naming the
//!   certificate's names and the fix; a server name the certificate does not
//!   carry is refused too ([`soc_server_name`]);
//! * the hardware profile is the one asked for ([`DEFAULT_HW_PROFILE`],
//!   `small`, unless told otherwise). Not `auto`: the packaged unit caps the
//!   agent at `MemoryMax=128M`, small's budget, and on a bigger box `auto`
//!   would pick a profile sized for more memory than the unit allows;
//!   choosing medium / large (or auto) goes with the memory drop-in.
//!
//! Must never: write a file (callers decide where the text goes and that
//! nothing is overwritten), or produce a config the SOC's certificate
//! would fail.

use std::path::{Path, PathBuf};

use owlet_tls::{Identity, TlsError};

/// The agent's config file name, beside its certificate and key.
pub const AGENT_CONFIG_FILE: &str = "owlet.toml";

/// Why no config could be written. The messages name the command-line
/// options of `owlet-soc ca issue` (`--soc`, `--server-name`).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--soc {0:?}: expected HOST:PORT, e.g. soc.example.net:4443 or [2001:db8::1]:4443")]
    Address(String),
    #[error("{} holds no certificate", .0.display())]
    NoSocCertificate(PathBuf),
    #[error(
        "--server-name {name}: the SOC's certificate {} is for {listed}, not {name}: the agent would reject it \
         (tls_name_mismatch); give one of those names",
        cert.display()
    )]
    ServerNameNotCovered {
        name: String,
        cert: PathBuf,
        listed: String,
    },
    #[error(
        "--soc {address}: the SOC's certificate {} is for {listed}, not {host}: the agent would reject it \
         (tls_name_mismatch). Give --server-name NAME with one of those names (the agent connects to {address} \
         and checks NAME), or --soc with one of them as HOST (e.g. {example}), or re-create the SOC certificate with \
         `owlet-soc ca init --soc-name {host}`",
        cert.display()
    )]
    HostNotCovered {
        address: String,
        host: String,
        cert: PathBuf,
        listed: String,
        example: String,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Options of an agent's generated `owlet.toml`.
pub struct AgentConfigOptions<'a> {
    /// What writes the config, for its first comment line (e.g.
    /// "`owlet-soc ca issue`").
    pub written_by: &'a str,
    pub soc_address: &'a str,
    /// `soc.server_name` to write (checked against the SOC's certificate);
    /// `None`: only when needed (see the module doc).
    pub server_name: Option<&'a str>,
    /// `agent.hw_profile` to write (`small`, `medium`, `large`, `auto`).
    pub hw_profile: &'a str,
    /// State directory written into the config.
    pub state_dir: &'a Path,
    /// Control socket written into the config.
    pub socket: &'a Path,
    /// Heartbeat period written into the config.
    pub status_interval: &'a str,
}

/// Where an issued agent keeps its state and control socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// The packaged service's paths: /var/lib/owlet and /run/owlet/owlet.sock.
    #[default]
    System,
    /// Everything under the output directory (`state/`, `owlet.sock`): runs
    /// as any user, and several agents can share one host.
    User,
}

impl Layout {
    /// (state directory, control socket) for an agent issued into `out`.
    pub fn paths(self, out: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
        Ok(match self {
            Layout::System => (
                PathBuf::from("/var/lib/owlet"),
                PathBuf::from("/run/owlet/owlet.sock"),
            ),
            Layout::User => {
                let out = std::path::absolute(out)?;
                (out.join("state"), out.join("owlet.sock"))
            }
        })
    }
}

/// Commented example checks appended to every issued `owlet.toml`: one of
/// each type, each valid once uncommented (lines starting `#` directly
/// followed by a key or a table are TOML; `# ` lines are prose). A unit test
/// uncomments them all and checks them against the probe's schema (in
/// `owlet-soc`'s `enroll`, which has the probe: this crate must not).
pub const EXAMPLE_CHECKS: &str = r#"
# Uptime checks: uncomment [probe] and the checks you want, then change the
# targets (192.0.2.x and example.net are documentation addresses). Keys of
# every type: id, type, target, interval (default 60s), timeout (5s),
# down_after (3 failures to go DOWN), up_after (2 successes to come back).
# Try one first on the sensor: owlet probe icmp|tcp|http|snmp ...
#[probe]
#max_concurrency = 256
#
# Ping: needs CAP_NET_RAW (the packaged service has it) or a group inside
# net.ipv4.ping_group_range.
#[[probe.check]]
#id = "fw-ping"
#type = "icmp"
#target = "192.0.2.1"
#interval = "30s"
#count = 3
#
# TCP port, optionally with a banner to expect (tls = true for TLS ports).
#[[probe.check]]
#id = "fw-ssh"
#type = "tcp"
#target = "192.0.2.1:22"
#expect = "SSH-2.0"
#
# URL: status and body content.
#[[probe.check]]
#id = "portal"
#type = "http"
#target = "https://portal.example.net/health"
#expect_status = [200]
#contains = "ok"
#
# SNMP v2c poll of a preset (uptime, interfaces, cpu, memory) or oids = [...].
#[[probe.check]]
#id = "core-switch"
#type = "snmp"
#target = "192.0.2.10:161"
#version = "2c"
#community = "change-me"
#preset = "uptime"
"#;

/// The hardware profile `ca issue` writes unless told otherwise: the one
/// the packaged unit's `MemoryMax=` is written for.
pub const DEFAULT_HW_PROFILE: &str = "small";

/// The heartbeat period written unless told otherwise.
pub const DEFAULT_STATUS_INTERVAL: &str = "30s";

/// A generated `owlet.toml`.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The file's text.
    pub text: String,
    /// The `soc.server_name` written because the SOC's certificate does not
    /// carry the host of the address, with why (for the operator).
    pub server_name_note: Option<String>,
}

/// The `server_name` a config needs so that the SOC's certificate in
/// `ca_dir` passes the agent's name check for `soc_address` (see the
/// module doc): `Ok(None)` when the address's host is covered and no
/// server name was given; an error naming the certificate's names and the
/// fix when nothing written could work.
pub fn soc_server_name(
    ca_dir: &Path,
    soc_address: &str,
    server_name: Option<&str>,
) -> Result<Option<String>, ConfigError> {
    let (host, _) = owlet_tls::names::split_host_port(soc_address)
        .ok_or_else(|| ConfigError::Address(soc_address.to_string()))?;
    let path = ca_dir.join(crate::SOC_CERT_FILE);
    let leaf = owlet_tls::load_certs(&path)?
        .into_iter()
        .next()
        .ok_or_else(|| ConfigError::NoSocCertificate(path.clone()))?;
    let names = owlet_tls::names::names(&leaf)?;
    let listed = names.join(", ");
    if let Some(name) = server_name {
        if !owlet_tls::names::covers(&leaf, name)? {
            return Err(ConfigError::ServerNameNotCovered {
                name: name.to_string(),
                cert: path,
                listed,
            });
        }
        return Ok(Some(name.to_string()));
    }
    if owlet_tls::names::covers(&leaf, host).unwrap_or(false) {
        return Ok(None);
    }
    match names.as_slice() {
        [only] if !only.starts_with('*') => Ok(Some(only.clone())),
        _ => Err(ConfigError::HostNotCovered {
            address: soc_address.to_string(),
            host: host.to_string(),
            cert: path,
            example: names.first().map_or_else(
                || "soc.example.net:4443".to_string(),
                |n| format!("{n}:PORT"),
            ),
            listed,
        }),
    }
}

/// The `owlet.toml` of `identity`, checked against the SOC's certificate
/// in `ca_dir` ([`soc_server_name`]).
pub fn agent_config(
    ca_dir: &Path,
    identity: &Identity,
    options: &AgentConfigOptions<'_>,
) -> Result<AgentConfig, ConfigError> {
    let server_name = soc_server_name(ca_dir, options.soc_address, options.server_name)?;
    let server_name_line = match &server_name {
        Some(name) if options.server_name.is_some() => {
            format!(
                "# The name the SOC's certificate must carry (--server-name).\nserver_name = \"{name}\"\n"
            )
        }
        Some(name) => format!(
            "# The SOC's certificate (soc.pem) does not name the host in `address`: the\n\
             # agent connects there and checks this name, the certificate's only one.\n\
             server_name = \"{name}\"\n"
        ),
        None => String::new(),
    };
    let server_name_note = match (&server_name, options.server_name) {
        (Some(name), None) => Some(format!(
            "the SOC's certificate carries only the name {name}, not the host of {}: \
             server_name = \"{name}\" written (the agent connects to {} and checks {name})",
            options.soc_address, options.soc_address
        )),
        _ => None,
    };
    let text = format!(
        "# owlet agent configuration written by {written_by}.\n\
         # Relative paths are taken from this file's directory. Reference: packaging/owlet.toml.\n\n\
         [agent]\n\
         tenant = \"{tenant}\"\n\
         id = \"{agent}\"\n\
         state_dir = \"{state}\"\n\
         # Sizes the spool, capture and batches for the box (hw-profiles/). \"small\"\n\
         # fits the packaged unit's MemoryMax=128M; on a bigger box choose \"medium\" or\n\
         # \"large\" (`owlet hw-profile detect` says which) together with the memory\n\
         # drop-in (systemd/owlet.service.d/memory.conf.example).\n\
         hw_profile = \"{hw_profile}\"\n\n\
         [soc]\n\
         address = \"{soc}\"\n\
         {server_name_line}\
         ca = \"{ca}\"\n\
         cert = \"{cert}\"\n\
         key = \"{key}\"\n\n\
         [status]\n\
         interval = \"{interval}\"\n\n\
         [control]\n\
         socket = \"{socket}\"\n\
         {examples}",
        written_by = options.written_by,
        tenant = identity.tenant,
        agent = identity.agent_id,
        state = options.state_dir.display(),
        hw_profile = options.hw_profile,
        soc = options.soc_address,
        ca = crate::CA_CERT_FILE,
        cert = crate::AGENT_CERT_FILE,
        key = crate::AGENT_KEY_FILE,
        interval = options.status_interval,
        socket = options.socket.display(),
        examples = EXAMPLE_CHECKS,
    );
    Ok(AgentConfig {
        text,
        server_name_note,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soc_name_is_checked_against_the_soc_certificate() {
        let tmp = tempfile::tempdir().unwrap();
        let one = tmp.path().join("one");
        crate::init(&one, &["soc.test".to_string()], 30).unwrap();
        // Covered: nothing to write.
        assert_eq!(soc_server_name(&one, "soc.test:4443", None).unwrap(), None);
        // One name, another host: that name is written.
        assert_eq!(
            soc_server_name(&one, "127.0.0.1:4443", None)
                .unwrap()
                .as_deref(),
            Some("soc.test")
        );
        // A --server-name the certificate does not carry is refused.
        let err = soc_server_name(&one, "127.0.0.1:4443", Some("soc.other"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("is for soc.test, not soc.other"), "{err}");
        let two = tmp.path().join("two");
        crate::init(&two, &["soc.test".to_string(), "soc2.test".to_string()], 30).unwrap();
        // Two names, neither the host: refused, naming both and the fix.
        let err = soc_server_name(&two, "192.0.2.1:4443", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is for soc.test, soc2.test, not 192.0.2.1"),
            "{err}"
        );
        assert!(err.contains("--server-name NAME"), "{err}");
        assert_eq!(
            soc_server_name(&two, "192.0.2.1:4443", Some("soc2.test"))
                .unwrap()
                .as_deref(),
            Some("soc2.test")
        );
        assert!(soc_server_name(&two, "no-port", None).is_err());
    }
}
