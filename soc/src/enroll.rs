//! Enrolment for small deployments and tests: `owlet-soc ca init` and
//! `owlet-soc ca issue`. Certificates come from `owlet_ca`; this module
//! adds the ready-to-use config files, so enrolling a sensor is two commands
//! and a copy, and the lifetime policy of agent certificates
//! ([`check_agent_days`]).
//!
//! What `ca issue` writes works as written:
//! * the SOC's name: the host of `--soc` must be a name the SOC's
//!   certificate (`soc.pem` of the CA directory) carries, or the agent is
//!   refused with `tls_name_mismatch`. When it is not, and `--server-name`
//!   is not given, `ca issue` writes `server_name` itself if the certificate
//!   carries exactly one name (the agent connects to the address and checks
//!   that name: nothing else could work), and refuses otherwise, naming the
//!   certificate's names and the fix (`--server-name NAME`, or `--soc` with
//!   one of them); a `--server-name` the certificate does not carry is
//!   refused too ([`soc_server_name`]). It copies `soc.pem` into the
//!   agent's directory, beside `ca.pem`, so `owlet check-config` on the
//!   sensor can check the name again after hand edits;
//! * the hardware profile: `hw_profile` is written, `small` unless
//!   `--hw-profile` says otherwise. Not `auto`: the packaged unit caps the
//!   agent at `MemoryMax=128M`, small's budget, and on a bigger box `auto`
//!   would pick a profile sized for more memory than the unit allows;
//!   choosing medium / large (or auto) goes with the memory drop-in.

use std::path::{Path, PathBuf};

use anyhow::Context;
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

/// Options of an agent's generated `owlet.toml`.
pub struct AgentConfigOptions<'a> {
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
/// uncomments them all and checks them against the probe's schema.
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

/// What [`issue`] wrote.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The agent's `owlet.toml`.
    pub config: PathBuf,
    /// The `soc.server_name` written because the SOC's certificate does not
    /// carry the host of the address, with why (for the operator).
    pub server_name_note: Option<String>,
}

/// Issues an agent certificate into `out` and writes `out/owlet.toml`.
pub fn issue(
    ca_dir: &Path,
    identity: &Identity,
    out: &Path,
    options: &AgentConfigOptions<'_>,
) -> anyhow::Result<Issued> {
    issue_for_days(ca_dir, identity, out, options, AGENT_DAYS)
}

/// The `server_name` an issued config needs so that the SOC's certificate
/// in `ca_dir` passes the agent's name check for `soc_address` (see the
/// module doc): `Ok(None)` when the address's host is covered and no
/// `--server-name` was given; an error naming the certificate's names and
/// the fix when nothing written could work.
pub fn soc_server_name(
    ca_dir: &Path,
    soc_address: &str,
    server_name: Option<&str>,
) -> anyhow::Result<Option<String>> {
    let (host, _) = owlet_tls::names::split_host_port(soc_address).ok_or_else(|| {
        anyhow::anyhow!(
            "--soc {soc_address:?}: expected HOST:PORT, e.g. soc.example.net:4443 or [2001:db8::1]:4443"
        )
    })?;
    let path = ca_dir.join(owlet_ca::SOC_CERT_FILE);
    let leaf = owlet_tls::load_certs(&path)?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("{} holds no certificate", path.display()))?;
    let names = owlet_tls::names::names(&leaf)?;
    let listed = names.join(", ");
    if let Some(name) = server_name {
        anyhow::ensure!(
            owlet_tls::names::covers(&leaf, name)?,
            "--server-name {name}: the SOC's certificate {} is for {listed}, not {name}: the agent would reject it \
             (tls_name_mismatch); give one of those names",
            path.display()
        );
        return Ok(Some(name.to_string()));
    }
    if owlet_tls::names::covers(&leaf, host).unwrap_or(false) {
        return Ok(None);
    }
    match names.as_slice() {
        [only] if !only.starts_with('*') => Ok(Some(only.clone())),
        _ => anyhow::bail!(
            "--soc {soc_address}: the SOC's certificate {} is for {listed}, not {host}: the agent would reject it \
             (tls_name_mismatch). Give --server-name NAME with one of those names (the agent connects to {soc_address} \
             and checks NAME), or --soc with one of them as HOST (e.g. {}), or re-create the SOC certificate with \
             `owlet-soc ca init --soc-name {host}`",
            path.display(),
            names.first().map_or_else(
                || "soc.example.net:4443".to_string(),
                |n| format!("{n}:PORT")
            )
        ),
    }
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
    let config = out.join("owlet.toml");
    // Refuse before anything is written: an existing agent's key must not be
    // replaced by a half-finished enrolment.
    for existing in [
        "owlet.toml",
        "agent.key",
        "agent.pem",
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
    let server_name = soc_server_name(ca_dir, options.soc_address, options.server_name)?;
    owlet_ca::issue(ca_dir, identity, out, days)?;
    // The SOC's certificate beside the pinned CA: `owlet check-config` checks
    // soc.address / soc.server_name against it on the sensor.
    let soc_cert = std::fs::read(ca_dir.join(owlet_ca::SOC_CERT_FILE))?;
    owlet_tls::write_public_file(&out.join(owlet_ca::SOC_CERT_FILE), &soc_cert)?;
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
        "# owlet agent configuration written by `owlet-soc ca issue`.\n\
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
         ca = \"ca.pem\"\n\
         cert = \"agent.pem\"\n\
         key = \"agent.key\"\n\n\
         [status]\n\
         interval = \"{interval}\"\n\n\
         [control]\n\
         socket = \"{socket}\"\n\
         {examples}",
        tenant = identity.tenant,
        agent = identity.agent_id,
        state = options.state_dir.display(),
        hw_profile = options.hw_profile,
        soc = options.soc_address,
        interval = options.status_interval,
        socket = options.socket.display(),
        examples = EXAMPLE_CHECKS,
    );
    write_new(&config, &text)?;
    Ok(Issued {
        config,
        server_name_note,
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
    fn the_soc_name_is_checked_against_the_soc_certificate() {
        let tmp = tempfile::tempdir().unwrap();
        let one = tmp.path().join("one");
        owlet_ca::init(&one, &["soc.test".to_string()], 30).unwrap();
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
        owlet_ca::init(&two, &["soc.test".to_string(), "soc2.test".to_string()], 30).unwrap();
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
