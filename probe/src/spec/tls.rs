//! The TLS part shared by TCP+TLS and HTTPS checks.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{CheckConfig, FieldIssue};

/// TLS settings shared by TCP+TLS and HTTPS.
#[derive(Debug, Clone)]
pub struct TlsSpec {
    /// Built when the check is built for TLS targets. `None` for an http://
    /// URL that names no `ca` and no `insecure_skip_verify`: plain HTTP then
    /// needs no system CA roots, and the config is built (and cached) only
    /// if a redirect leads to https.
    pub(crate) config: Option<Arc<rustls::ClientConfig>>,
    pub(crate) ca: Option<PathBuf>,
    pub(crate) alpn: &'static [&'static [u8]],
    pub server_name: Option<String>,
    pub insecure: bool,
    pub warn_days: u32,
}

impl TlsSpec {
    /// The client config, building it now if the check was built without one.
    pub(crate) fn client_config(
        &self,
    ) -> Result<Arc<rustls::ClientConfig>, crate::tls::TlsSetupError> {
        match &self.config {
            Some(c) => Ok(c.clone()),
            None => crate::tls::client_config(self.ca.as_deref(), self.insecure, self.alpn),
        }
    }
}

/// TLS settings; with `eager`, the client config is built now (so a bad CA
/// file or missing system roots is a config error), else on first use.
pub(super) fn build_tls(
    c: &CheckConfig,
    alpn: &'static [&'static [u8]],
    eager: bool,
    errs: &mut Vec<FieldIssue>,
) -> Option<TlsSpec> {
    let insecure = c.insecure_skip_verify.unwrap_or(false);
    if insecure && c.ca.is_some() {
        errs.push(FieldIssue::new(
            "insecure_skip_verify",
            "set either `ca` or `insecure_skip_verify`, not both",
        ));
    }
    if let Some(sn) = &c.server_name
        && crate::tls::server_name(sn).is_err()
    {
        errs.push(FieldIssue::new(
            "server_name",
            format!("\"{sn}\" is not a valid TLS server name"),
        ));
    }
    let config = if eager {
        match crate::tls::client_config(c.ca.as_deref(), insecure, alpn) {
            Ok(config) => Some(config),
            Err(e) => {
                errs.push(FieldIssue::new("ca", e.to_string()));
                return None;
            }
        }
    } else {
        None
    };
    if insecure {
        tracing::warn!(check = %c.id, "TLS certificate verification is DISABLED for this check (insecure_skip_verify = true)");
    }
    Some(TlsSpec {
        config,
        ca: c.ca.clone(),
        alpn,
        server_name: c.server_name.clone(),
        insecure,
        warn_days: c.cert_expiry_warn_days.unwrap_or(14),
    })
}
