//! The steps that need no SOC: certificates and key, capture interfaces,
//! watched paths, spool directory. Each reads, opens and closes; the only
//! thing written is one small probe file in the spool directory, removed at
//! once.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use owlet_capture::CaptureConfig;
use owlet_capture::live::{Capture, LinkState};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;

use super::Step;
use crate::config::Config;

/// Days before expiry from which the certificate step warns.
const EXPIRY_WARN_DAYS: i64 = 30;

/// `certificate`, `key`, `chain` and `expiry`; `service_user` is who the
/// unit runs the agent as (named in the fixes).
pub fn certificates(config: &Config, service_user: &str) -> Vec<Step> {
    let cert_path = &config.soc.cert;
    let mut steps = Vec::new();
    let chain = match owlet_tls::load_certs(cert_path) {
        Ok(chain) if !chain.is_empty() => chain,
        Ok(_) => {
            steps.push(Step::fail(
                "certificate",
                format!("soc.cert {} holds no certificate", cert_path.display()),
                "point soc.cert at the PEM certificate issued for this agent (`owlet-soc ca issue`)",
            ));
            steps.push(key(config, service_user));
            return steps;
        }
        Err(e) => {
            steps.push(Step::fail(
                "certificate",
                format!("soc.cert cannot be read: {e}"),
                "point soc.cert at the PEM certificate issued for this agent and make it readable by the service user",
            ));
            steps.push(key(config, service_user));
            return steps;
        }
    };
    let leaf = &chain[0];
    match owlet_tls::identity_from_cert(leaf) {
        Ok(identity) => steps.push(Step::pass(
            "certificate",
            format!("{}: agent {identity}", cert_path.display()),
        )),
        Err(e) => steps.push(Step::fail(
            "certificate",
            format!("{}: {e}", cert_path.display()),
            "issue the agent's certificate with `owlet-soc ca issue`: it carries the owlet://TENANT/AGENT identity the SOC needs",
        )),
    }
    steps.push(key(config, service_user));
    let validity = validity(leaf);
    steps.push(chain_step(config, &chain, validity));
    steps.push(expiry(cert_path, validity));
    steps
}

/// The key is readable, parses, nobody but its owner may access it (the
/// agent's own rule) and it is owned by root or the service user.
fn key(config: &Config, service_user: &str) -> Step {
    let path = &config.soc.key;
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) => {
            return Step::fail(
                "key",
                format!("soc.key {}: {e}", path.display()),
                "point soc.key at the private key issued with the certificate",
            );
        }
    };
    if let Err(e) = owlet_tls::load_private_key(path) {
        return Step::fail(
            "key",
            format!("soc.key cannot be used: {e}"),
            format!(
                "make {} readable by the service user ({service_user}) and check that it is the PEM key issued with the certificate",
                path.display()
            ),
        );
    }
    // Loading the key already refused any access by group or others (the
    // agent's own rule, owlet_tls::load_private_key); what is left to check
    // is who owns it.
    let mode = meta.mode() & 0o7777;
    let owner = meta.uid();
    let me = nix::unistd::geteuid().as_raw();
    let service = nix::unistd::User::from_name(service_user)
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw());
    let found = format!("{} (mode {mode:04o}, owner uid {owner})", path.display());
    if owner == 0 || owner == me || Some(owner) == service {
        Step::pass("key", found)
    } else {
        Step::fail(
            "key",
            format!("{found}: it is owned by neither root nor the service user"),
            format!("chown {service_user} {0} && chmod 0600 {0}", path.display()),
        )
    }
}

/// (not before, not after), seconds since the epoch.
fn validity(cert: &CertificateDer<'_>) -> Option<(i64, i64)> {
    let (_, x509) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let v = x509.validity();
    Some((v.not_before.timestamp(), v.not_after.timestamp()))
}

fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The agent's certificate chains to `soc.ca`. Checked at a time inside the
/// certificate's validity, so an expired certificate is reported once, by
/// the expiry step, and a broken chain still shows.
fn chain_step(
    config: &Config,
    chain: &[CertificateDer<'static>],
    validity: Option<(i64, i64)>,
) -> Step {
    let ca = &config.soc.ca;
    let roots = match owlet_tls::load_certs(ca) {
        Ok(roots) => roots,
        Err(e) => {
            return Step::fail(
                "chain",
                format!("soc.ca cannot be read: {e}"),
                "point soc.ca at the CA certificate of the SOC (ca.pem of `owlet-soc ca init`, copied beside each agent's certificate by `owlet-soc ca issue`)",
            );
        }
    };
    let mut store = rustls::RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(roots);
    if added == 0 {
        return Step::fail(
            "chain",
            format!("soc.ca {} holds no usable CA certificate", ca.display()),
            "point soc.ca at the CA certificate of the SOC (ca.pem of `owlet-soc ca init`, copied beside each agent's certificate by `owlet-soc ca issue`)",
        );
    }
    let verifier = match WebPkiClientVerifier::builder_with_provider(
        Arc::new(store),
        owlet_tls::config::provider(),
    )
    .build()
    {
        Ok(v) => v,
        Err(e) => {
            return Step::fail(
                "chain",
                format!(
                    "soc.ca {} cannot be used as a trust anchor: {e}",
                    ca.display()
                ),
                "point soc.ca at the CA certificate of the SOC",
            );
        }
    };
    let now = now_seconds();
    let at = match validity {
        Some((from, to)) if now < from || now > to => from + (to - from) / 2,
        _ => now,
    };
    let at = UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(at).unwrap_or(0)));
    match verifier.verify_client_cert(&chain[0], &chain[1..], at) {
        Ok(_) => Step::pass(
            "chain",
            format!(
                "{} is signed by the CA in soc.ca ({})",
                config.soc.cert.display(),
                ca.display()
            ),
        ),
        Err(e) => Step::fail(
            "chain",
            format!(
                "{} does not chain to the CA in soc.ca ({}): {e}",
                config.soc.cert.display(),
                ca.display()
            ),
            "soc.ca must be the owlet CA (ca.pem of `owlet-soc ca init`, copied beside each agent's certificate by `owlet-soc ca issue`) that issued this agent's certificate; re-issue the certificate or correct soc.ca (a deployment with a separate agent CA may ignore this if the soc step passes)",
        ),
    }
}

fn expiry(cert: &Path, validity: Option<(i64, i64)>) -> Step {
    let Some((from, to)) = validity else {
        return Step::fail(
            "expiry",
            format!("{}: the validity period cannot be read", cert.display()),
            "re-issue the certificate with `owlet-soc ca issue`",
        );
    };
    let now = now_seconds();
    let days = (to - now).div_euclid(86_400);
    let until = humantime::format_rfc3339_seconds(
        UNIX_EPOCH + Duration::from_secs(u64::try_from(to).unwrap_or(0)),
    );
    let renew = "issue a new certificate (`owlet-soc ca issue` on the SOC), replace soc.cert / soc.key and restart owlet; check this sensor's clock (`timedatectl`)".to_string();
    if now < from {
        let since = humantime::format_rfc3339_seconds(
            UNIX_EPOCH + Duration::from_secs(u64::try_from(from).unwrap_or(0)),
        );
        return Step::fail(
            "expiry",
            format!(
                "{} is not valid before {since}: this sensor's clock is probably behind",
                cert.display()
            ),
            "fix this sensor's clock (`timedatectl`, NTP)",
        );
    }
    if now > to {
        return Step::fail(
            "expiry",
            format!(
                "{} expired on {until}; the SOC will refuse this agent",
                cert.display()
            ),
            renew,
        );
    }
    if days < EXPIRY_WARN_DAYS {
        return Step::warn(
            "expiry",
            format!("{} expires in {days} days ({until})", cert.display()),
            renew,
        );
    }
    Step::pass(
        "expiry",
        format!("{} expires in {days} days ({until})", cert.display()),
    )
}

/// One `capture` step per configured interface: a short open and close of
/// the live capture the service opens (built by the service's own
/// [`CaptureConfig::live_config`]: workers, ring, filter with the SOC left
/// out, promiscuous mode) with this process's capabilities; a warning when the link is down
/// or has no carrier (the socket opens, but no packet will be seen).
/// Unlike the service, a missing interface fails at once instead of being
/// waited for. Blocking: call it off the async workers.
pub fn capture(config: &Config) -> Vec<Step> {
    capture_steps(&config.capture, &config.soc.address)
}

fn capture_steps(section: &CaptureConfig, soc_address: &str) -> Vec<Step> {
    if section.interfaces.is_empty() {
        return vec![Step::skip("capture", "no capture interfaces configured")];
    }
    section
        .interfaces
        .iter()
        .map(|interface| {
            let mut live = match section.live_config(soc_address, interface) {
                Ok(live) => live,
                Err(e) => {
                    return Step::fail(
                        "capture",
                        format!("{interface}: {e}"),
                        "correct soc.address, or set capture.exclude_soc = false",
                    );
                }
            };
            // The self-test reports a missing interface; the service waits.
            live.wait_for_interfaces = false;
            match Capture::start(live, |_| {}) {
                Ok(capture) => {
                    let link = capture
                        .stats()
                        .first()
                        .map_or(LinkState::Unknown, |s| s.link);
                    capture.stop();
                    if !matches!(link, LinkState::Up | LinkState::Unknown) {
                        return Step::warn(
                            "capture",
                            format!("{interface}: packet socket opened, but {}", link.explain(interface)),
                            format!(
                                "bring the link up (`ip link set {interface} up`) and check the cable / mirror (SPAN) port feeding it"
                            ),
                        );
                    }
                    Step::pass(
                        "capture",
                        format!(
                            "{interface}: packet socket opened{}",
                            if section.promiscuous {
                                " (promiscuous)"
                            } else {
                                ""
                            }
                        ),
                    )
                }
                Err(e) => Step::fail("capture", format!("{interface}: {e}"), capture_fix(&e)),
            }
        })
        .collect()
}

fn capture_fix(e: &owlet_capture::live::CaptureError) -> String {
    use owlet_capture::live::CaptureError::*;
    match e {
        NoInterface { .. } => {
            "correct capture.interfaces (`ip link` lists this host's interfaces)".into()
        }
        Permission { cap, .. } => format!(
            "grant {cap} to the service: AmbientCapabilities={cap} and CapabilityBoundingSet={cap} in owlet.service or a drop-in \
             (the packaged unit has CAP_NET_RAW; promiscuous mode adds CAP_NET_ADMIN: systemd/owlet.service.d/promiscuous.conf.example)"
        ),
        Filter(_) => "correct capture.filter".into(),
        _ => "check the interface with `ip link` and capture.* in the configuration".into(),
    }
}

/// `watched_paths`: every `[[fim.watch]]` path (for a glob, the directory it
/// starts from) can be read by this process, each one that cannot named
/// with why. `service_user` is named in the fix; with `hides_home` (the
/// unit's `ProtectHome=yes`) paths under /home, /root and /run/user count
/// as unreadable: the service does not see them.
pub fn watched_paths(config: &Config, service_user: &str, hides_home: bool) -> Step {
    let watches = &config.fim.watch;
    if watches.is_empty() {
        return Step::skip("watched_paths", "no [[fim.watch]] paths configured");
    }
    let mut unreadable = Vec::new();
    let mut missing = Vec::new();
    let mut hidden = false;
    for watch in watches {
        let path = readable_root(&watch.path);
        if hides_home && under_home(&path) {
            hidden = true;
            unreadable.push(format!(
                "{}: hidden from the service by ProtectHome=yes",
                path.display()
            ));
            continue;
        }
        match check_readable(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                missing.push(path.display().to_string())
            }
            Err(e) => unreadable.push(format!("{}: {e}", path.display())),
        }
    }
    if !unreadable.is_empty() {
        let mut fix = format!(
            "give the service user ({service_user}) read access (e.g. `setfacl -m u:{service_user}:r FILE`, `u:{service_user}:rx` for a directory and each directory above it), \
             or grant CAP_DAC_READ_SEARCH (systemd/owlet.service.d/watched-files.conf.example), or remove the path from [[fim.watch]]"
        );
        if hidden {
            fix.push_str("; for paths under /home, /root or /run/user add ProtectHome=read-only in a drop-in");
        }
        return Step::fail(
            "watched_paths",
            format!(
                "{} of {} cannot be read: {}",
                unreadable.len(),
                watches.len(),
                unreadable.join("; ")
            ),
            fix,
        );
    }
    let n = watches.len();
    if !missing.is_empty() {
        return Step::warn(
            "watched_paths",
            format!(
                "{} of {n} do not exist (yet): {}",
                missing.len(),
                missing.join(", ")
            ),
            "check the spelling in [[fim.watch]]; a path created later is picked up then",
        );
    }
    Step::pass("watched_paths", format!("{n} watched path(s) readable"))
}

/// Under a directory `ProtectHome=yes` hides.
fn under_home(path: &Path) -> bool {
    ["/home", "/root", "/run/user"]
        .iter()
        .any(|home| path.starts_with(home))
}

/// The path itself, or for a glob the directory before its first pattern.
fn readable_root(path: &str) -> PathBuf {
    if !owlet_fim::config::has_glob_meta(path) {
        return PathBuf::from(path);
    }
    let mut root = PathBuf::new();
    for part in Path::new(path).components() {
        if owlet_fim::config::has_glob_meta(&part.as_os_str().to_string_lossy()) {
            break;
        }
        root.push(part);
    }
    root
}

fn check_readable(path: &Path) -> std::io::Result<()> {
    if fs::metadata(path)?.is_dir() {
        fs::read_dir(path)?.next().transpose()?;
    } else {
        let mut byte = [0u8; 1];
        std::io::Read::read(&mut fs::File::open(path)?, &mut byte)?;
    }
    Ok(())
}

/// `spool`: the spool directory can take a file, and its file system has
/// room for `spool.max_bytes` (a warning when not), at least one segment (a
/// failure when not).
pub fn spool(config: &Config, service_user: &str) -> Step {
    let dir = config.spool_dir();
    // The agent creates the spool directory; before its first start the
    // nearest existing parent must take it.
    let mut target = dir.clone();
    while !target.exists() {
        match target.parent() {
            Some(parent) => target = parent.to_path_buf(),
            None => break,
        }
    }
    let where_ = if target == dir {
        dir.display().to_string()
    } else {
        format!("{} (to be created in {})", dir.display(), target.display())
    };
    if let Err(e) = write_probe(&target) {
        return Step::fail(
            "spool",
            format!("cannot write in {where_}: {e}"),
            if e.raw_os_error() == Some(nix::libc::ENOSPC) {
                format!(
                    "free space on the file system of {}, or move agent.state_dir / spool.dir",
                    target.display()
                )
            } else {
                format!(
                    "make {} writable by the service user ({service_user}), e.g. `chown -R {service_user}: {}`",
                    target.display(),
                    target.display()
                )
            },
        );
    }
    let stat = match nix::sys::statvfs::statvfs(&target) {
        Ok(stat) => stat,
        Err(e) => {
            return Step::fail(
                "spool",
                format!("cannot read the free space of {}: {e}", target.display()),
                "check the file system of the spool directory",
            );
        }
    };
    let free = stat.blocks_available().saturating_mul(stat.fragment_size());
    let used = dir_bytes(&dir);
    let max = config.spool.max_bytes.as_u64();
    let segment = config.spool.segment_bytes.as_u64();
    let sizes = format!(
        "{}: {} free, spool holds {} of at most {} (spool.max_bytes)",
        where_,
        bytesize::ByteSize::b(free),
        bytesize::ByteSize::b(used),
        bytesize::ByteSize::b(max)
    );
    if free < segment {
        return Step::fail(
            "spool",
            format!(
                "{sizes}: not even one spool segment ({}) fits",
                bytesize::ByteSize::b(segment)
            ),
            format!(
                "free space on the file system of {}, or move agent.state_dir / spool.dir",
                target.display()
            ),
        );
    }
    if free.saturating_add(used) < max {
        return Step::warn(
            "spool",
            format!("{sizes}: the spool cannot grow to its limit"),
            "free space there, or lower spool.max_bytes to what the disk can hold",
        );
    }
    Step::pass("spool", sizes)
}

/// Creates, writes, syncs and removes a small file in `dir`.
fn write_probe(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(format!(".owlet-selftest-{}", std::process::id()));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        file.write_all(&[0u8; 4096])?;
        file.sync_all()
    })();
    let _ = fs::remove_file(&path);
    result
}

/// Bytes of the files directly in `dir` (the spool's segments); 0 if absent.
fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(fs::Metadata::is_file)
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selftest::Status;

    /// `ip -n NS -batch -`: one command per line in namespace `ns`, each
    /// must succeed.
    fn ip_in(ns: &str, commands: &str) {
        use std::io::Write;
        let mut child = std::process::Command::new("ip")
            .args(["-n", ns, "-batch", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("ip runs (iproute2)");
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(commands.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "ip -batch {commands:?}: {stderr}");
    }

    /// The self-test opens the capture the service would, built by the
    /// service's own function: with `exclude_soc` (the default) it needs
    /// soc.address resolved, and fails as the service does when it cannot
    /// be (a capture of its own making would pass here).
    #[test]
    fn the_capture_step_opens_what_the_service_opens() {
        let section = owlet_capture::CaptureConfig {
            interfaces: vec!["lo".into()],
            ..Default::default()
        };
        let step = capture_steps(&section, "soc.invalid:4443").remove(0);
        assert_eq!(step.status, Status::Fail, "{step:?}");
        assert!(
            step.detail.contains(
                "lo: cannot resolve soc.address soc.invalid:4443 to leave it out of the capture"
            ),
            "{step:?}"
        );
        assert!(step.fix.contains("capture.exclude_soc = false"), "{step:?}");
    }

    /// The capture step on a veth in a namespace of its own: up with its
    /// peer up passes; without carrier (peer down) and down it warns that
    /// no packets are seen, naming the interface.
    #[test]
    fn the_capture_step_warns_while_the_link_is_down() {
        let ns = format!("owlst{}", std::process::id());
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &ns])
            .output();
        let added = std::process::Command::new("ip")
            .args(["netns", "add", &ns])
            .status()
            .expect("ip runs (iproute2)");
        assert!(added.success(), "ip netns add {ns}");
        struct Del(String);
        impl Drop for Del {
            fn drop(&mut self) {
                let _ = std::process::Command::new("ip")
                    .args(["netns", "del", &self.0])
                    .output();
            }
        }
        let _del = Del(ns.clone());
        ip_in(
            &ns,
            "link add stcap0 type veth peer name stcap1\nlink set stcap0 up",
        );
        let section = owlet_capture::CaptureConfig {
            interfaces: vec!["stcap0".into()],
            ..Default::default()
        };
        let step_in_ns = |section: owlet_capture::CaptureConfig| {
            let path = format!("/run/netns/{ns}");
            std::thread::spawn(move || {
                let fd = std::fs::File::open(&path).expect("namespace file");
                nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
                capture_steps(&section, "127.0.0.1:1")
            })
            .join()
            .unwrap()
            .remove(0)
        };
        let no_carrier = step_in_ns(section.clone());
        assert_eq!(no_carrier.status, Status::Warn, "{no_carrier:?}");
        assert!(
            no_carrier.detail.contains("stcap0 has no carrier")
                && no_carrier.detail.contains("no packets are seen"),
            "{no_carrier:?}"
        );
        ip_in(&ns, "link set stcap0 down");
        let down = step_in_ns(section.clone());
        assert_eq!(down.status, Status::Warn, "{down:?}");
        assert!(down.detail.contains("stcap0 is down"), "{down:?}");
        ip_in(&ns, "link set stcap0 up\nlink set stcap1 up");
        // The kernel reports the carrier a moment later (link watch).
        let mut up = step_in_ns(section.clone());
        for _ in 0..50 {
            if up.status == Status::Pass {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            up = step_in_ns(section.clone());
        }
        assert_eq!(up.status, Status::Pass, "{up:?}");
    }
}
