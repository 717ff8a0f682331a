//! [`CheckSpec`]: a validated, ready-to-run check built from a [`CheckConfig`].
//!
//! This is the single place where config values are interpreted: validation,
//! the scheduler and `owlet probe` all build a `CheckSpec` through
//! [`CheckSpec::from_config`]. Every error names the key and says how to fix it.
//!
//! Layout: this module checks what every check has (id, interval, timeout,
//! damping, keys foreign to the type) and hands the rest to one builder per
//! type ([`icmp`], [`tcp`], [`http`], [`snmp`]); [`tls`] builds the TLS part
//! TCP and HTTP share and [`parse`] the host / port / URL syntax. A builder
//! reports every problem it finds (it never stops at the first) and returns
//! `None` when the type-specific part cannot be built.

mod http;
mod icmp;
mod parse;
mod snmp;
mod tcp;
mod tls;

use std::time::Duration;

use crate::config::{CheckConfig, CheckTypeName, FieldIssue, MAX_DURATION};

pub use http::{HttpSpec, HttpVersionPref};
pub use icmp::IcmpSpec;
pub use parse::unescape;
pub(crate) use parse::{parse_host, parse_host_port, parse_url};
pub use snmp::{SnmpQuery, SnmpSpec, SnmpVersion};
pub use tcp::TcpSpec;
pub use tls::TlsSpec;

/// A validated check, ready to run.
#[derive(Debug, Clone)]
pub struct CheckSpec {
    pub id: String,
    pub check_type: CheckTypeName,
    /// The target as configured (host, host:port, URL).
    pub target: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub down_after: u32,
    pub up_after: u32,
    pub kind: CheckKind,
}

/// Type-specific part of a [`CheckSpec`]. Boxed: a spec lives as long as
/// its check, and inline the largest kind (TCP with TLS) would size all of
/// them.
#[derive(Debug, Clone)]
pub enum CheckKind {
    Icmp(Box<IcmpSpec>),
    Tcp(Box<TcpSpec>),
    Http(Box<HttpSpec>),
    Snmp(Box<SnmpSpec>),
}

/// Host (name or address, no brackets) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl CheckSpec {
    /// Validates one check and builds its runtime form. All problems are
    /// returned at once, each naming its key (without the `check[i].` prefix).
    pub fn from_config(c: &CheckConfig) -> Result<CheckSpec, Vec<FieldIssue>> {
        let mut errs = Vec::new();
        if c.id.trim().is_empty() {
            errs.push(FieldIssue::new(
                "id",
                "must not be empty; give the check a short unique name such as \"fw-ping\"",
            ));
        } else if c.id.len() > 128 || c.id.chars().any(|ch| ch.is_control()) {
            errs.push(FieldIssue::new(
                "id",
                "must be at most 128 printable characters",
            ));
        }
        let too_long = |d: Duration| d > MAX_DURATION;
        if c.interval.is_zero() {
            errs.push(FieldIssue::new(
                "interval",
                "must be greater than zero (e.g. \"30s\")",
            ));
        } else if too_long(c.interval) {
            errs.push(FieldIssue::new(
                "interval",
                format!(
                    "{} is too long; use at most {}",
                    humantime::format_duration(c.interval),
                    humantime::format_duration(MAX_DURATION)
                ),
            ));
        }
        if too_long(c.timeout) {
            errs.push(FieldIssue::new(
                "timeout",
                format!(
                    "{} is too long; use at most {}",
                    humantime::format_duration(c.timeout),
                    humantime::format_duration(MAX_DURATION)
                ),
            ));
        } else if c.timeout.is_zero() {
            errs.push(FieldIssue::new(
                "timeout",
                "must be greater than zero (e.g. \"5s\")",
            ));
        } else if !c.interval.is_zero() && c.timeout > c.interval {
            errs.push(FieldIssue::new(
                "timeout",
                format!(
                    "{} is longer than the interval {}; make timeout at most the interval",
                    humantime::format_duration(c.timeout),
                    humantime::format_duration(c.interval)
                ),
            ));
        }
        if c.down_after == 0 {
            errs.push(FieldIssue::new(
                "down_after",
                "must be at least 1 (consecutive failures before DOWN)",
            ));
        }
        if c.up_after == 0 {
            errs.push(FieldIssue::new(
                "up_after",
                "must be at least 1 (consecutive successes before UP)",
            ));
        }
        for key in c.foreign_keys() {
            errs.push(FieldIssue::new(
                key,
                format!(
                    "`{key}` does not apply to type = \"{}\"; remove it or change the type",
                    c.check_type.as_str()
                ),
            ));
        }
        let kind = match c.check_type {
            CheckTypeName::Icmp => {
                icmp::build_icmp(c, &mut errs).map(|s| CheckKind::Icmp(Box::new(s)))
            }
            CheckTypeName::Tcp => tcp::build_tcp(c, &mut errs).map(|s| CheckKind::Tcp(Box::new(s))),
            CheckTypeName::Http => {
                http::build_http(c, &mut errs).map(|h| CheckKind::Http(Box::new(h)))
            }
            CheckTypeName::Snmp => {
                snmp::build_snmp(c, &mut errs).map(|s| CheckKind::Snmp(Box::new(s)))
            }
        };
        match kind {
            Some(kind) if errs.is_empty() => Ok(CheckSpec {
                id: c.id.clone(),
                check_type: c.check_type,
                target: c.target.clone(),
                interval: c.interval,
                timeout: c.timeout,
                down_after: c.down_after,
                up_after: c.up_after,
                kind,
            }),
            _ => Err(errs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every configured check keeps its spec for its lifetime.
    #[test]
    fn spec_stays_small() {
        let size = std::mem::size_of::<CheckSpec>();
        assert!(size <= 112, "CheckSpec is {size} bytes");
    }
}
