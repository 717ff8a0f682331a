//! The TLS client configuration of an output: the destination's CA from
//! `ca_file`, or the system's trust roots. TLS 1.2 and 1.3 (SIEMs are not
//! all on 1.3 yet), ring as the provider like the rest of the workspace.

use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};

use crate::{OutputConfig, OutputError};

pub(crate) fn client_config(
    config: &OutputConfig,
    alpn: &[&[u8]],
) -> Result<ClientConfig, OutputError> {
    let error = |message: String| OutputError::Config {
        output: config.name.clone(),
        message,
    };
    let mut roots = RootCertStore::empty();
    match &config.ca_file {
        Some(path) => {
            let certs = owlet_tls::load_certs(path).map_err(|e| error(format!("ca_file: {e}")))?;
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    error(format!(
                        "ca_file {}: not a CA certificate: {e}",
                        path.display()
                    ))
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(error(
                    "no system trust roots found (install ca-certificates) and no ca_file set"
                        .into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| error(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(tls)
}
