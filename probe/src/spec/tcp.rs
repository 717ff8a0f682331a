//! The TCP builder: address, optional TLS, send / expect banner.

use super::{HostPort, TlsSpec, parse_host_port, tls::build_tls};
use crate::config::{CheckConfig, FieldIssue};

#[derive(Debug, Clone)]
pub struct TcpSpec {
    pub addr: HostPort,
    pub tls: Option<TlsSpec>,
    pub send: Option<Vec<u8>>,
    pub expect: Option<Vec<u8>>,
}

pub(super) fn build_tcp(c: &CheckConfig, errs: &mut Vec<FieldIssue>) -> Option<TcpSpec> {
    let addr = parse_host_port(&c.target, None)
        .map_err(|e| errs.push(FieldIssue::new("target", e.to_string())))
        .ok();
    let tls = if c.tls.unwrap_or(false) {
        Some(build_tls(c, &[], true, errs)?)
    } else {
        for (set, key) in [
            (c.ca.is_some(), "ca"),
            (c.insecure_skip_verify.is_some(), "insecure_skip_verify"),
            (c.server_name.is_some(), "server_name"),
            (c.cert_expiry_warn_days.is_some(), "cert_expiry_warn_days"),
        ] {
            if set {
                errs.push(FieldIssue::new(key, format!("`{key}` needs `tls = true`")));
            }
        }
        None
    };
    if matches!(&c.expect, Some(e) if e.is_empty()) {
        errs.push(FieldIssue::new(
            "expect",
            "must not be empty (remove it to only test the connection)",
        ));
    }
    Some(TcpSpec {
        addr: addr?,
        tls,
        send: c.send.as_ref().map(|s| s.as_bytes().to_vec()),
        expect: c.expect.as_ref().map(|s| s.as_bytes().to_vec()),
    })
}
