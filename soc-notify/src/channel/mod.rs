//! The channels a notification goes out through: mail over SMTP with
//! STARTTLS ([`smtp`]), SNMP v2c / v3 traps and informs ([`snmp`]), and an
//! HMAC-signed JSON webhook ([`webhook`]).
//!
//! A channel is built once from its config (secrets read from their files
//! then, so a missing file is an error at start, not at 3 a.m.) and makes
//! one attempt per [`Channel::send`]; retries and backoff belong to the
//! notifier. A channel never logs or returns a secret.

pub mod smtp;
pub mod snmp;
pub mod webhook;

use std::path::Path;
use std::sync::Arc;

use crate::config::ChannelConfig;
use crate::error::Result;
use crate::record::Outgoing;

/// How one attempt ended well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// The peer acknowledged it (SMTP 250 after DATA, inform response, HTTP 2xx).
    Delivered,
    /// Handed to the network with no acknowledgement possible (a trap).
    Unacknowledged,
}

/// Why one attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    pub message: String,
    /// Retrying cannot help (e.g. the webhook answered 401): give up now.
    pub permanent: bool,
}

impl SendError {
    pub fn retry(message: impl Into<String>) -> Self {
        SendError {
            message: message.into(),
            permanent: false,
        }
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        SendError {
            message: message.into(),
            permanent: true,
        }
    }
}

/// A ready channel.
pub enum Channel {
    Smtp(smtp::SmtpChannel),
    Snmp(snmp::SnmpChannel),
    Webhook(webhook::WebhookChannel),
}

impl Channel {
    /// Builds the channel of `config`. `state_dir` keeps what must survive
    /// restarts (the SNMP engine's boot counter).
    pub fn build(config: &ChannelConfig, state_dir: &Path) -> Result<Arc<Channel>> {
        Ok(Arc::new(match config {
            ChannelConfig::Smtp { .. } => Channel::Smtp(smtp::SmtpChannel::new(config)?),
            ChannelConfig::SnmpTrap { .. } => {
                Channel::Snmp(snmp::SnmpChannel::new(config, state_dir)?)
            }
            ChannelConfig::Webhook { .. } => {
                Channel::Webhook(webhook::WebhookChannel::new(config)?)
            }
        }))
    }

    /// Who a notification through this channel reaches, recorded with its
    /// delivery: a mail channel's `to` and `contacts` (the tenant's that want
    /// this notification, [`crate::contacts::recipients`]); a trap receiver's
    /// or a webhook's one configured target.
    pub fn recipients(&self, contacts: &[lettre::Address]) -> String {
        match self {
            Channel::Smtp(c) => c.recipients(contacts),
            Channel::Snmp(c) => c.recipients(),
            Channel::Webhook(c) => c.recipients(),
        }
    }

    /// `smtp`, `snmp_trap` or `webhook`, as in the config.
    pub fn type_name(&self) -> &'static str {
        match self {
            Channel::Smtp(_) => "smtp",
            Channel::Snmp(_) => "snmp_trap",
            Channel::Webhook(_) => "webhook",
        }
    }

    /// One attempt. `recipients` is what [`Channel::recipients`] gave when
    /// the delivery was composed; only mail reads it (a trap or a webhook
    /// goes to its one configured target).
    pub async fn send(
        &self,
        msg: &Outgoing,
        recipients: &str,
    ) -> std::result::Result<Sent, SendError> {
        match self {
            Channel::Smtp(c) => c.send(msg, recipients).await,
            Channel::Snmp(c) => c.send(msg).await,
            Channel::Webhook(c) => c.send(msg).await,
        }
    }
}

/// A rustls client config trusting `ca_file` (PEM) or the system's roots.
pub(crate) fn tls_client(channel: &str, ca_file: Option<&Path>) -> Result<rustls::ClientConfig> {
    let bad = |m: String| crate::error::NotifyError::Channel {
        channel: channel.to_string(),
        message: m,
    };
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| bad(format!("cannot read ca_file {}: {e}", path.display())))?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| bad(format!("ca_file {}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| bad(format!("ca_file {}: {e}", path.display())))?;
            }
            if roots.is_empty() {
                return Err(bad(format!(
                    "ca_file {} holds no PEM certificate",
                    path.display()
                )));
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
