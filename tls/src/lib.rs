//! owlet identity and TLS: who a peer is, and the TLS settings both ends use.
//!
//! # What this crate guarantees
//!
//! - **Identity comes only from certificates.** A peer is `TENANT/AGENT`, read
//!   from the single `owlet://TENANT/AGENT` URI SAN of its verified leaf
//!   certificate ([`identity_from_peer_certs`]). Never from a CN, a header, the
//!   payload or an address.
//! - **TLS 1.3 only**, ring provider, ALPN `h2`, on both ends.
//! - **Only the configured CA is trusted** (pinning). Root stores are built from
//!   the configured PEM file alone; no system or bundled roots. The SOC requires
//!   a client certificate from its client CA on every connection and, when
//!   given CRLs, refuses revoked ones at the handshake.
//! - **Private keys are never readable by others.** Keys are refused at load
//!   time if group/others may read or write them, and every key this crate
//!   writes is created with mode 0600 from its first byte.
//! - Errors name the file involved and say how to fix it.
//!
//! # What it must never do
//!
//! - implement its own certificate-chain, signature or time checks: all of
//!   that is rustls/webpki, configured narrowly (see [`config`]);
//! - accept a connection without a client certificate, or trust any root
//!   other than the configured CA;
//! - derive an identity from an unverified certificate, or accept a
//!   certificate with zero or several owlet identities;
//! - put key material into logs or error messages;
//! - overwrite an existing CA key.
//!
//! The server *name* check on the agent side is done by rustls against the
//! `ServerName` the caller passes when connecting; see [`config`].
//!
//! # Layout
//!
//! - [`identity`]: the `owlet://TENANT/AGENT` scheme.
//! - [`files`]: loading PEM certificates and keys, writing them safely.
//! - [`cert`]: a certificate's serial number and validity period.
//! - [`crl`]: certificate revocation lists for the SOC's client check.
//! - [`names`]: which names a SOC certificate answers to (issue-time and
//!   check-config checks of `soc.address` / `soc.server_name`).
//! - [`config`]: rustls `ClientConfig` / `ServerConfig`.

#![forbid(unsafe_code)]

pub mod cert;
pub mod config;
pub mod crl;
mod error;
pub mod files;
pub mod identity;
pub mod names;

pub use cert::{CertInfo, cert_info, serial_hex};
pub use config::{client_config, server_config, server_config_with_crls};
pub use crl::{Crls, RevokedCert, load_crls};
pub use error::{Result, TlsError};
pub use files::{
    check_key_permissions, load_certs, load_private_key, write_public_file, write_secret_file,
};
pub use identity::{Identity, check_validity, identity_from_cert, identity_from_peer_certs};

/// Re-exported so callers name the same rustls/pki-types versions as this crate.
pub use rustls;
