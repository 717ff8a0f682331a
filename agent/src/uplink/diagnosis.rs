//! Why the agent cannot reach the SOC, in words an operator can act on.
//!
//! Every uplink failure becomes a [`Diagnosis`]: a stable class (for
//! counters and scripts), what went wrong, and the fix. The same text goes to
//! the log (one line per failure) and to `owlet health`. The underlying error
//! is searched through its whole source chain — tonic wraps hyper, which
//! wraps the I/O error, which wraps the rustls error that says what really
//! happened — so "transport error" is never the whole story.

use std::error::Error as StdError;
use std::fmt;

use rustls::{AlertDescription, CertificateError};
use tonic::Code;

use super::error::UplinkError;

/// What the operator reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    /// Stable short name: `dns`, `refused`, `unreachable`, `timeout`,
    /// `tls_unknown_issuer`, `tls_name_mismatch`, `tls_soc_cert_expired`,
    /// `tls_soc_cert_not_yet_valid`, `tls_refused_by_soc`,
    /// `tls_agent_cert_expired`, `certificate_revoked`, `tls`,
    /// `permission_denied`, `soc_storage`,
    /// `protocol`, `config`, `spool`, `connection`.
    pub class: &'static str,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.fix.is_empty() {
            write!(f, "{}", self.problem)
        } else {
            write!(f, "{} (fix: {})", self.problem, self.fix)
        }
    }
}

/// What the diagnosis may name: the configured SOC and trust files.
#[derive(Debug, Clone)]
pub struct Setting {
    pub address: String,
    pub server_name: String,
    pub ca: String,
    pub cert: String,
}

impl Setting {
    /// The SOC and trust files of `config`.
    pub fn of(config: &crate::config::Config) -> Self {
        Self {
            address: config.soc.address.clone(),
            server_name: config.server_name(),
            ca: config.soc.ca.display().to_string(),
            cert: config.soc.cert.display().to_string(),
        }
    }
}

/// The fix for a revoked certificate.
const REVOKED_FIX: &str = "ask the SOC for a new certificate (owlet-soc ca issue/renew), put it in place of soc.cert / soc.key and run `owlet reload`";

fn revoked(address: &str, cert: &str, detail: &str) -> Diagnosis {
    diagnosis(
        "certificate_revoked",
        format!(
            "the SOC at {address} refused this agent's certificate ({cert}): it is revoked{detail}"
        ),
        REVOKED_FIX,
    )
}

fn diagnosis(class: &'static str, problem: String, fix: impl Into<String>) -> Diagnosis {
    Diagnosis {
        class,
        problem,
        fix: fix.into(),
    }
}

/// Explains `error` in the terms of `setting`.
pub fn diagnose(error: &UplinkError, setting: &Setting) -> Diagnosis {
    let address = &setting.address;
    match error {
        UplinkError::Dns(_, e) => diagnosis(
            "dns",
            format!("cannot resolve the SOC address {address}: {e}"),
            "check soc.address and this sensor's DNS (/etc/resolv.conf)",
        ),
        UplinkError::Timeout(_, after) => diagnosis(
            "timeout",
            format!(
                "no answer from the SOC at {address} within {}s",
                after.as_secs()
            ),
            "a firewall may drop the traffic: check that TCP to the SOC's port is allowed from this sensor",
        ),
        UplinkError::Connect(_, e) | UplinkError::Handshake(_, e) => from_chain(e, setting)
            .unwrap_or_else(|| {
                diagnosis(
                    "connection",
                    format!("cannot connect to the SOC at {address}: {e}"),
                    "",
                )
            }),
        UplinkError::Transport(e) => from_chain(e.as_ref(), setting).unwrap_or_else(|| {
            diagnosis(
                "connection",
                format!(
                    "the connection to the SOC at {address} failed: {}",
                    chain_text(e.as_ref())
                ),
                "",
            )
        }),
        UplinkError::Refused(status) => from_status(status, setting),
        UplinkError::Tls(e) => diagnosis(
            "config",
            format!("the agent's TLS files cannot be used: {e}"),
            "run `owlet check-config` and fix soc.ca / soc.cert / soc.key",
        ),
        UplinkError::ServerName(name) => diagnosis(
            "config",
            format!("soc.server_name {name:?} is not a valid DNS name or IP address"),
            "set soc.server_name to the name in the SOC's certificate",
        ),
        UplinkError::Protocol(what) => diagnosis(
            "protocol",
            format!("the SOC at {address} broke the protocol: {what}"),
            "check owlet-soc's log; upgrade owlet or owlet-soc if their versions differ",
        ),
        UplinkError::Closed => diagnosis(
            "connection",
            format!("the SOC at {address} closed the stream"),
            "usually a SOC restart; check owlet-soc's log if it repeats",
        ),
        UplinkError::Spool(e) => diagnosis(
            "spool",
            format!("cannot read the spool to send: {e}"),
            "check the spool directory's disk and permissions",
        ),
    }
}

fn from_status(status: &tonic::Status, setting: &Setting) -> Diagnosis {
    // A transport failure surfaces as a status too; its source says why.
    if let Some(found) = from_chain(status, setting) {
        return found;
    }
    let address = &setting.address;
    let message = status.message();
    match status.code() {
        // The SOC ends a live stream this way when the CRL revokes its certificate.
        Code::PermissionDenied if message.starts_with("certificate revoked") => {
            revoked(address, &setting.cert, &format!(" ({message})"))
        }
        Code::PermissionDenied => diagnosis(
            "permission_denied",
            format!("the SOC at {address} refused this agent: {message}"),
            "the SOC takes the agent's identity from its certificate: correct or remove agent.tenant / agent.id, or issue a certificate for this agent with `owlet-soc ca issue`",
        ),
        Code::Unauthenticated => diagnosis(
            "tls_refused_by_soc",
            format!("the SOC at {address} saw no usable client certificate: {message}"),
            "set soc.cert / soc.key to the certificate issued for this agent",
        ),
        Code::FailedPrecondition | Code::InvalidArgument | Code::Unimplemented => diagnosis(
            "protocol",
            format!("the SOC at {address} refused the stream: {message}"),
            "owlet and owlet-soc versions may not match: upgrade the older one",
        ),
        Code::Unavailable if message.starts_with("storage") => diagnosis(
            "soc_storage",
            format!("the SOC at {address} cannot store events right now: {message}"),
            "nothing is lost (events stay spooled); the SOC operator must check owlet-soc's log and database disk",
        ),
        code => diagnosis(
            "connection",
            format!("the SOC at {address} ended the stream ({code:?}): {message}"),
            "",
        ),
    }
}

/// Searches an error's source chain for the I/O or TLS error that explains it.
fn from_chain(error: &(dyn StdError + 'static), setting: &Setting) -> Option<Diagnosis> {
    let mut next = Some(error);
    while let Some(e) = next {
        // Our own connector's error, carried through tonic and hyper.
        if let Some(uplink) = e.downcast_ref::<UplinkError>() {
            return Some(diagnose(uplink, setting));
        }
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(from_tls(tls, setting));
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            // io::Error::source() skips the wrapped error itself: look at it.
            if let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Some(from_tls(tls, setting));
            }
            if let Some(found) = from_io_kind(io, setting) {
                return Some(found);
            }
        }
        next = e.source();
    }
    None
}

fn from_io_kind(e: &std::io::Error, setting: &Setting) -> Option<Diagnosis> {
    use std::io::ErrorKind::*;
    let address = &setting.address;
    Some(match e.kind() {
        ConnectionRefused => diagnosis(
            "refused",
            format!("the SOC at {address} refused the connection (nothing listens on that port)"),
            "check that owlet-soc runs there and listens on that port, and that soc.address is right",
        ),
        NetworkUnreachable | HostUnreachable => diagnosis(
            "unreachable",
            format!("no route to the SOC at {address}: {e}"),
            "check this sensor's routes and firewall towards the SOC",
        ),
        TimedOut => diagnosis(
            "timeout",
            format!("no answer from the SOC at {address}: {e}"),
            "a firewall may drop the traffic: check that TCP to the SOC's port is allowed from this sensor",
        ),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => diagnosis(
            "connection",
            format!("the connection to the SOC at {address} was cut ({e})"),
            "if this repeats right after connecting, the SOC may be refusing this agent's certificate: check owlet-soc's log",
        ),
        _ => return None,
    })
}

fn from_tls(e: &rustls::Error, setting: &Setting) -> Diagnosis {
    let Setting {
        address,
        server_name,
        ca,
        cert,
    } = setting;
    match e {
        rustls::Error::InvalidCertificate(cert_error) => match cert_error {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => diagnosis(
                "tls_unknown_issuer",
                format!(
                    "the SOC's certificate at {address} is not signed by the CA in soc.ca ({ca})"
                ),
                "soc.ca must be the CA the SOC's certificate comes from (ca.pem of `owlet-soc ca init`, as `owlet-soc ca issue` copies it beside the agent's certificate); also check that soc.address is the SOC and not a proxy that terminates TLS",
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                diagnosis(
                    "tls_name_mismatch",
                    format!("the SOC's certificate at {address} does not name {server_name:?}"),
                    "set soc.server_name to a name in the SOC's certificate, or re-issue the SOC certificate with this name",
                )
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => diagnosis(
                "tls_soc_cert_expired",
                format!(
                    "the SOC's certificate at {address} has expired (or this sensor's clock is ahead)"
                ),
                "renew the SOC's certificate; check this sensor's clock with `timedatectl`",
            ),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                diagnosis(
                    "tls_soc_cert_not_yet_valid",
                    format!(
                        "the SOC's certificate at {address} is not valid yet: this sensor's clock is probably behind"
                    ),
                    "fix this sensor's clock (`timedatectl`, NTP)",
                )
            }
            other => diagnosis(
                "tls",
                format!("the SOC's certificate at {address} was rejected: {other:?}"),
                "check soc.ca and the SOC's certificate",
            ),
        },
        rustls::Error::AlertReceived(alert) => match alert {
            AlertDescription::CertificateExpired => diagnosis(
                "tls_agent_cert_expired",
                format!(
                    "the SOC at {address} refused this agent's certificate ({cert}) as expired"
                ),
                "issue a new certificate with `owlet-soc ca issue`, replace soc.cert / soc.key and restart owlet; check this sensor's clock",
            ),
            AlertDescription::CertificateRequired => diagnosis(
                "tls_refused_by_soc",
                format!("the SOC at {address} requires a client certificate and got none"),
                "set soc.cert / soc.key to the certificate issued for this agent",
            ),
            AlertDescription::CertificateRevoked => revoked(address, cert, ""),
            AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::AccessDenied => diagnosis(
                "tls_refused_by_soc",
                format!(
                    "the SOC at {address} refused this agent's certificate ({cert}): TLS alert {alert:?}"
                ),
                "the certificate must come from the CA the SOC trusts for agents (its server.client_ca): issue one with `owlet-soc ca issue` on the SOC",
            ),
            other => diagnosis(
                "tls",
                format!("the SOC at {address} ended the TLS handshake: alert {other:?}"),
                "the SOC must speak TLS 1.3; check owlet-soc's log",
            ),
        },
        other => diagnosis(
            "tls",
            format!("TLS with the SOC at {address} failed: {other}"),
            "the SOC must speak TLS 1.3; check owlet-soc's log",
        ),
    }
}

/// The messages of an error and its sources, joined.
fn chain_text(error: &(dyn StdError + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut next = error.source();
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting() -> Setting {
        Setting {
            address: "soc.example:4443".into(),
            server_name: "soc.example".into(),
            ca: "/etc/owlet/ca.pem".into(),
            cert: "/etc/owlet/agent.crt".into(),
        }
    }

    fn io_wrapping(tls: rustls::Error) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, tls)
    }

    #[test]
    fn tls_errors_inside_io_errors_are_found() {
        let cases = [
            (
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
                "tls_unknown_issuer",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
                "tls_name_mismatch",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::Expired),
                "tls_soc_cert_expired",
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::CertificateExpired),
                "tls_agent_cert_expired",
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::UnknownCA),
                "tls_refused_by_soc",
            ),
        ];
        for (tls, class) in cases {
            let error = UplinkError::Handshake("x".into(), io_wrapping(tls));
            let found = diagnose(&error, &setting());
            assert_eq!(found.class, class, "{found}");
            assert!(!found.fix.is_empty(), "{found}");
        }
    }

    #[test]
    fn a_tls_alert_deep_inside_a_status_is_found() {
        // tonic: Status -> (source) io::Error -> rustls::Error.
        let mut status = tonic::Status::unavailable("transport error");
        status.set_source(std::sync::Arc::new(io_wrapping(
            rustls::Error::AlertReceived(AlertDescription::UnknownCA),
        )));
        let found = diagnose(&UplinkError::Refused(status), &setting());
        assert_eq!(found.class, "tls_refused_by_soc");
        assert!(found.problem.contains("/etc/owlet/agent.crt"), "{found}");
    }

    #[test]
    fn our_connector_error_inside_a_transport_error_is_found() {
        // tonic boxes the connector's error: Status -> UplinkError -> io -> rustls.
        let inner = UplinkError::Handshake(
            "x".into(),
            io_wrapping(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName,
            )),
        );
        let mut status = tonic::Status::unavailable("transport error");
        status.set_source(std::sync::Arc::new(inner));
        let found = diagnose(&UplinkError::Refused(status), &setting());
        assert_eq!(found.class, "tls_name_mismatch", "{found}");
    }

    #[test]
    fn a_revoked_certificate_is_named_with_its_fix_at_the_handshake_and_on_the_stream() {
        let alert = UplinkError::Handshake(
            "x".into(),
            io_wrapping(rustls::Error::AlertReceived(
                AlertDescription::CertificateRevoked,
            )),
        );
        let at_handshake = diagnose(&alert, &setting());
        let on_stream = diagnose(
            &UplinkError::Refused(tonic::Status::permission_denied(
                "certificate revoked: the certificate 0a of acme/a was revoked by the SOC's CA",
            )),
            &setting(),
        );
        for found in [&at_handshake, &on_stream] {
            assert_eq!(found.class, "certificate_revoked", "{found}");
            assert!(found.problem.contains("revoked"), "{found}");
            assert!(found.problem.contains("/etc/owlet/agent.crt"), "{found}");
            assert!(found.fix.contains("owlet-soc ca issue/renew"), "{found}");
        }
        assert!(on_stream.problem.contains("0a"), "{on_stream}");
    }

    #[test]
    fn statuses_and_io_kinds_have_their_own_classes() {
        let denied = UplinkError::Refused(tonic::Status::permission_denied(
            "certificate says acme/a, hello claims acme/b",
        ));
        let found = diagnose(&denied, &setting());
        assert_eq!(found.class, "permission_denied");
        assert!(found.problem.contains("hello claims acme/b"));
        let refused = UplinkError::Connect(
            "x".into(),
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        );
        assert_eq!(diagnose(&refused, &setting()).class, "refused");
        let storage = UplinkError::Refused(tonic::Status::unavailable("storage: disk I/O error"));
        assert_eq!(diagnose(&storage, &setting()).class, "soc_storage");
    }
}
