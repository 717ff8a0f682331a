//! The one error type of this crate.
//!
//! Every variant a person can cause names the file or value involved and,
//! where there is one, the fix. Messages are written for the operator at the
//! terminal, not for the developer.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while loading, building or issuing TLS material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        /// What the file was supposed to be ("certificate", "private key", ...).
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A file or directory could not be written.
    #[error("cannot write {}: {source}; check the directory exists and is writable by this user", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A PEM file held no certificate.
    #[error(
        "{} contains no PEM certificate (expected a \"-----BEGIN CERTIFICATE-----\" block); \
         check that the path points at the certificate and not at the key"
    , path.display())]
    NoCertificate { path: PathBuf },

    /// A PEM file held no private key.
    #[error(
        "{} contains no PEM private key (expected \"-----BEGIN PRIVATE KEY-----\", \
         \"EC PRIVATE KEY\" or \"RSA PRIVATE KEY\"); check that the path points at the key and not at the certificate"
    , path.display())]
    NoPrivateKey { path: PathBuf },

    /// A PEM file is malformed.
    #[error("{} is not valid PEM: {detail}; regenerate it or check it was copied completely", path.display())]
    BadPem { path: PathBuf, detail: String },

    /// A private key file is readable or writable by group or others.
    #[error(
        "private key {} is {access} by others (mode {mode:04o}); run: chmod 600 {}",
        path.display(), path.display()
    )]
    KeyPermissions {
        path: PathBuf,
        /// "readable", "writable" or "readable and writable".
        access: &'static str,
        mode: u32,
    },

    /// A certificate cannot be used as a trust anchor (CA) for verification.
    #[error("CA certificate in {} cannot be used as a trust anchor: {detail}", path.display())]
    BadCaCert { path: PathBuf, detail: String },

    /// A certificate revocation list file is unusable.
    #[error("certificate revocation list {}: {detail}", path.display())]
    BadCrl { path: PathBuf, detail: String },

    /// A certificate and key could not be combined into a TLS identity
    /// (for example the key does not belong to the certificate).
    #[error("cannot use certificate {} with key {}: {source}", cert.display(), key.display())]
    CertKey {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },

    /// Building a rustls configuration failed for a reason not tied to one file.
    #[error("cannot build TLS configuration: {0}")]
    Config(#[source] rustls::Error),

    /// A tenant or agent id does not follow the identity rules.
    #[error("invalid {part} {value:?}: {reason}")]
    InvalidIdentity {
        /// "tenant" or "agent id".
        part: &'static str,
        value: String,
        reason: String,
    },

    /// A certificate does not carry exactly one valid owlet identity.
    #[error("certificate carries no usable owlet identity: {0}")]
    CertIdentity(String),

    /// A certificate is outside its validity period (expired, or not yet
    /// valid: check the clock).
    #[error("certificate is {0}")]
    CertValidity(String),

    /// A certificate could not be parsed as X.509.
    #[error("cannot parse certificate{}: {detail}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    CertParse {
        path: Option<PathBuf>,
        detail: String,
    },

    /// The CA directory already holds a CA key.
    #[error(
        "{} already exists; refusing to overwrite an existing CA key (every certificate it issued \
         would stop working). Use another directory, or move the old CA away deliberately first",
        path.display()
    )]
    CaExists { path: PathBuf },

    /// The CA's register of issued certificates cannot be read or updated.
    #[error(
        "the CA's register of issued certificates {} is unusable: {detail}; \
         without it revocation cannot find serial numbers: restore it from a backup of the CA directory",
        path.display()
    )]
    Register { path: PathBuf, detail: String },

    /// A caller-supplied parameter is unusable (validity, SOC names, ...).
    #[error("{0}")]
    InvalidArgument(String),

    /// Certificate or key generation failed.
    #[error("cannot generate {what}: {source}")]
    Generate {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Result alias for this crate.
pub type Result<T, E = TlsError> = std::result::Result<T, E>;
