//! The agent's certificate as the uplink uses it, its replacement on
//! `owlet reload`, and what its expiry means for `owlet health`.
//!
//! Guarantees:
//! - a new certificate and key are taken only if they load into a TLS
//!   configuration together (the key belongs to the certificate), carry
//!   the same owlet identity as the running certificate (the spool and the
//!   SOC's high-water mark belong to that identity), and are inside their
//!   validity period; otherwise the running ones stay in use and the
//!   answer says why;
//! - a certificate taken is in use for the next connection: the uplink ends
//!   its stream and reconnects at once (nothing is lost: what the SOC has
//!   not acknowledged is sent again, and it drops what it already stored);
//! - an unchanged certificate file changes nothing (no reconnect).
//!
//! Must never put key bytes into an answer or a log line.

use std::time::{Duration, SystemTime};

use owlet_tls::{CertInfo, Identity};
use tokio::sync::watch;
use tracing::{error, info};

use super::Connector;
use super::error::UplinkError;
use crate::config::Config;
use crate::verdict::Verdict;

/// How long before expiry `owlet health` warns.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 86_400);

/// A certificate and key in use, with what the uplink connects with.
#[derive(Clone)]
pub struct Credentials {
    pub connector: Connector,
    pub cert: CertInfo,
    pub identity: Identity,
    /// `soc.cert`, for messages.
    pub path: String,
}

impl Credentials {
    /// Loads `soc.ca`, `soc.cert` and `soc.key` of `config`.
    pub fn load(config: &Config) -> Result<Self, UplinkError> {
        let connector = Connector::new(config)?;
        let leaf = owlet_tls::load_certs(&config.soc.cert)?
            .into_iter()
            .next()
            .ok_or_else(|| owlet_tls::TlsError::NoCertificate {
                path: config.soc.cert.clone(),
            })?;
        Ok(Self {
            connector,
            cert: owlet_tls::cert_info(&leaf)?,
            identity: owlet_tls::identity_from_cert(&leaf)?,
            path: config.soc.cert.display().to_string(),
        })
    }

    /// The `owlet health` finding about this certificate's expiry at `now`:
    /// CRITICAL once expired, WARNING within [`EXPIRY_WARNING`].
    pub fn expiry_finding(&self, now: SystemTime) -> Option<(Verdict, String)> {
        let date = humantime::format_rfc3339_seconds(self.cert.not_after);
        let fix = format!(
            "ask the SOC for a new certificate (owlet-soc ca renew --tenant {} --agent {} ...), \
             put it in place of soc.cert / soc.key and run `owlet reload`",
            self.identity.tenant, self.identity.agent_id
        );
        let Ok(left) = self.cert.not_after.duration_since(now) else {
            return Some((
                Verdict::Critical,
                format!(
                    "the agent's certificate {} (serial {}) expired on {date}: the SOC refuses it (fix: {fix})",
                    self.path, self.cert.serial
                ),
            ));
        };
        (left <= EXPIRY_WARNING).then(|| {
            (
                Verdict::Warning,
                format!(
                    "the agent's certificate {} (serial {}) expires on {date}, in {} days (fix: {fix})",
                    self.path,
                    self.cert.serial,
                    left.as_secs() / 86_400
                ),
            )
        })
    }
}

/// The uplink's credentials: the ones in use, the channel that hands new
/// ones to the uplink, and the last refused replacement.
pub struct InUse {
    pub current: Credentials,
    tx: watch::Sender<Connector>,
    /// Why the last reload's certificate was refused, until one is taken
    /// or the file is back to the one in use.
    pub rejected: Option<String>,
}

impl InUse {
    /// Starts with `current`; the receiver is the uplink's.
    pub fn new(current: Credentials) -> (Self, watch::Receiver<Connector>) {
        let (tx, rx) = watch::channel(current.connector.clone());
        (
            Self {
                current,
                tx,
                rejected: None,
            },
            rx,
        )
    }

    /// Looks at the certificate and key `config` names after a reload and
    /// takes them if they are new and usable; returns the `certificate`
    /// part of the reload answer.
    pub fn reload(&mut self, config: &Config) -> serde_json::Value {
        let serial = self.current.cert.serial.clone();
        match self.check(config) {
            Ok(None) => {
                self.rejected = None;
                serde_json::json!({ "reloaded": false, "serial": serial })
            }
            Ok(Some(new)) => {
                info!(old_serial = %serial, serial = %new.cert.serial,
                      expires = %humantime::format_rfc3339_seconds(new.cert.not_after),
                      "certificate reloaded: reconnecting to the SOC with the new one");
                let answer = serde_json::json!({
                    "reloaded": true,
                    "serial": new.cert.serial,
                    "previous_serial": serial,
                    "not_after": humantime::format_rfc3339_seconds(new.cert.not_after).to_string(),
                });
                self.tx.send_replace(new.connector.clone());
                self.current = new;
                self.rejected = None;
                answer
            }
            Err(why) => {
                error!(serial = %serial, "certificate not reloaded, the running one stays in use: {why}");
                self.rejected = Some(why.clone());
                serde_json::json!({ "reloaded": false, "serial": serial, "error": why })
            }
        }
    }

    /// `Ok(None)`: the same certificate; `Ok(Some)`: a new usable one.
    fn check(&self, config: &Config) -> Result<Option<Credentials>, String> {
        let new = Credentials::load(config).map_err(|e| e.to_string())?;
        if new.cert.serial == self.current.cert.serial {
            return Ok(None);
        }
        if new.identity != self.current.identity {
            return Err(format!(
                "the new certificate {} is for {}, this agent runs as {}: \
                 a certificate of another identity needs a restart (its spool belongs to {})",
                new.path, new.identity, self.current.identity, self.current.identity
            ));
        }
        if let Some(leaf) = owlet_tls::load_certs(&config.soc.cert)
            .ok()
            .and_then(|chain| chain.into_iter().next())
        {
            owlet_tls::check_validity(&leaf, SystemTime::now())
                .map_err(|e| format!("the new certificate {} {e}", new.path))?;
        }
        Ok(Some(new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    /// A CA and an enrolled agent acme/s1 with its config loaded.
    struct Enrolled {
        _tmp: tempfile::TempDir,
        ca: PathBuf,
        agent: PathBuf,
        config: Config,
    }

    fn enrolled() -> Enrolled {
        let tmp = tempfile::tempdir().unwrap();
        let ca = tmp.path().join("ca");
        owlet_ca::init(&ca, &["localhost".to_string()], 30).unwrap();
        let agent = tmp.path().join("agent");
        owlet_ca::issue(&ca, &id("s1"), &agent, 30).unwrap();
        let path = agent.join("owlet.toml");
        std::fs::write(
            &path,
            "[agent]\nstate_dir = \"state\"\n\n[soc]\naddress = \"localhost:4443\"\n\
             ca = \"ca.pem\"\ncert = \"agent.pem\"\nkey = \"agent.key\"\n",
        )
        .unwrap();
        let config = crate::config::load(&path).unwrap();
        Enrolled {
            _tmp: tmp,
            ca,
            agent,
            config,
        }
    }

    fn id(agent: &str) -> Identity {
        Identity::new("acme", agent).unwrap()
    }

    fn serial(agent: &Path) -> String {
        let leaf = owlet_tls::load_certs(&agent.join("agent.pem")).unwrap();
        owlet_tls::cert_info(&leaf[0]).unwrap().serial
    }

    #[test]
    fn expiry_warns_30_days_ahead_and_is_critical_once_past() {
        let e = enrolled();
        let at = |not_after| {
            let mut c = Credentials::load(&e.config).unwrap();
            c.cert.not_after = not_after;
            c
        };
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        assert_eq!(at(now + 31 * day).expiry_finding(now), None);
        let (verdict, text) = at(now + 10 * day).expiry_finding(now).unwrap();
        assert_eq!(verdict, Verdict::Warning);
        assert!(text.contains("in 10 days"), "{text}");
        assert!(
            text.contains("owlet-soc ca renew --tenant acme --agent s1"),
            "{text}"
        );
        let date = humantime::format_rfc3339_seconds(now + 10 * day).to_string();
        assert!(text.contains(&date), "{text} lacks {date}");
        let (verdict, text) = at(now - day).expiry_finding(now).unwrap();
        assert_eq!(verdict, Verdict::Critical);
        assert!(text.contains("expired on"), "{text}");
    }

    #[test]
    fn a_renewed_pair_is_taken_and_a_bad_one_refused_keeping_the_old() {
        let e = enrolled();
        let (mut in_use, mut rx) = InUse::new(Credentials::load(&e.config).unwrap());
        let first = in_use.current.cert.serial.clone();

        // The same files: nothing happens.
        let answer = in_use.reload(&e.config);
        assert_eq!(answer["reloaded"], false, "{answer}");
        assert!(!rx.has_changed().unwrap());

        // Another agent's key with this agent's certificate: refused.
        let other = e.ca.parent().unwrap().join("other");
        owlet_ca::issue(&e.ca, &id("s2"), &other, 30).unwrap();
        owlet_ca::renew(&e.ca, &id("s1"), &e.agent, 30, false).unwrap();
        std::fs::copy(other.join("agent.key"), e.agent.join("agent.key")).unwrap();
        let answer = in_use.reload(&e.config);
        assert!(
            answer["error"].as_str().unwrap().contains("agent.key"),
            "{answer}"
        );
        assert_eq!(answer["serial"], first.as_str());
        assert_eq!(in_use.current.cert.serial, first);
        assert!(in_use.rejected.is_some());
        assert!(
            !rx.has_changed().unwrap(),
            "a refused pair reached the uplink"
        );

        // Another identity's pair: refused.
        std::fs::copy(other.join("agent.pem"), e.agent.join("agent.pem")).unwrap();
        let answer = in_use.reload(&e.config);
        assert!(
            answer["error"].as_str().unwrap().contains("acme/s2"),
            "{answer}"
        );
        assert_eq!(in_use.current.cert.serial, first);

        // A proper renewal: taken, and the uplink is told.
        let renewed_dir = e.ca.parent().unwrap().join("renewed");
        let renewed = owlet_ca::issue(&e.ca, &id("s1"), &renewed_dir, 30).unwrap();
        std::fs::copy(&renewed.cert, e.agent.join("agent.pem")).unwrap();
        std::fs::copy(&renewed.key, e.agent.join("agent.key")).unwrap();
        let answer = in_use.reload(&e.config);
        assert_eq!(answer["reloaded"], true, "{answer}");
        assert_eq!(answer["serial"], renewed.serial.as_str());
        assert_eq!(answer["previous_serial"], first.as_str());
        assert_eq!(in_use.current.cert.serial, serial(&e.agent));
        assert!(in_use.rejected.is_none());
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
    }
}
