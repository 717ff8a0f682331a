//! The `[capture]` table of the agent's TOML: its keys with their defaults,
//! their validation, and the live capture they ask for on one interface.
//!
//! Off without `interfaces`. Every key has a default; [`CaptureConfig::validate`]
//! names the key (relative to `[capture]`) and the fix, and reports every
//! problem at once. [`CaptureConfig::live_config`] is the one translation into
//! a [`LiveConfig`]: the agent's collector and `owlet selftest` both open
//! what it builds, so the self-test opens what the service will.
//!
//! It never opens a socket; only `live_config` looks up a name (the SOC's,
//! to leave it out of the capture), and so may block.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytesize::ByteSize;
use owlet_tomlconf::ConfigIssue;
use serde::Deserialize;

use crate::engine::Config as EngineConfig;
use crate::filter;
use crate::live::LiveConfig;

/// `[capture]`: live packet metadata (flows, names, summaries) from the
/// listed interfaces. Payload bytes never leave the decoder.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CaptureConfig {
    /// Interfaces to capture on (e.g. the SPAN port); empty = capture off.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// Worker threads per interface (PACKET_FANOUT by flow hash).
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Put the interfaces in promiscuous mode (a mirror port needs it).
    #[serde(default)]
    pub promiscuous: bool,
    /// tcpdump-style capture filter, run in the kernel ("" keeps everything).
    #[serde(default)]
    pub filter: String,
    /// Leave the agent's own connection to the SOC out of the capture.
    #[serde(default = "yes")]
    pub exclude_soc: bool,
    /// Flows without packets for this long end.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Longer flows are reported in slices of this length.
    #[serde(default = "default_active_timeout", with = "humantime_serde")]
    pub active_timeout: Duration,
    /// Summary (top talkers, signatures) and capture-health period.
    #[serde(default = "default_summary_interval", with = "humantime_serde")]
    pub summary_interval: Duration,
    /// Most flows tracked at once per worker; more are evicted, and counted.
    #[serde(default = "default_max_flows")]
    pub max_flows: usize,
    /// Kernel ring per worker (a whole number of MiB): what absorbs a burst
    /// while the worker is busy.
    #[serde(
        default = "default_ring_bytes",
        deserialize_with = "owlet_tomlconf::byte_size"
    )]
    pub ring_bytes: ByteSize,
    /// Crypto-mining pool names (subdomains match too), matched in the
    /// traffic (DNS questions and answers, TLS SNI, HTTP Host); never
    /// resolved by the sensor.
    #[serde(default)]
    pub pool_names: Vec<String>,
    /// Crypto-mining pool addresses: every flow to one is evidence.
    #[serde(default)]
    pub pool_addrs: Vec<IpAddr>,
    /// Also export flow records as IPFIX (RFC 7011, UDP) to this collector,
    /// `IP:PORT` (e.g. an nfcapd); unset = no export.
    #[serde(default)]
    pub ipfix_collector: Option<String>,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            workers: default_workers(),
            promiscuous: false,
            filter: String::new(),
            exclude_soc: true,
            idle_timeout: default_idle_timeout(),
            active_timeout: default_active_timeout(),
            summary_interval: default_summary_interval(),
            max_flows: default_max_flows(),
            ring_bytes: default_ring_bytes(),
            pool_names: Vec::new(),
            pool_addrs: Vec::new(),
            ipfix_collector: None,
        }
    }
}

fn default_workers() -> usize {
    2
}

fn yes() -> bool {
    true
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(15)
}

fn default_active_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_summary_interval() -> Duration {
    Duration::from_secs(60)
}

fn default_max_flows() -> usize {
    1_000_000
}

fn default_ring_bytes() -> ByteSize {
    ByteSize::mib(32)
}

const MIB: u64 = 1 << 20;

/// Why [`CaptureConfig::live_config`] could not build a live capture.
#[derive(Debug, thiserror::Error)]
pub enum LiveConfigError {
    /// `exclude_soc` needs the SOC's addresses, and its name did not resolve.
    #[error(
        "cannot resolve soc.address {soc_address} to leave it out of the capture: {source} (or set capture.exclude_soc = false)"
    )]
    ResolveSoc {
        soc_address: String,
        source: std::io::Error,
    },
}

impl CaptureConfig {
    /// Whether capture is asked for at all.
    pub fn enabled(&self) -> bool {
        !self.interfaces.is_empty()
    }

    /// Every problem at once, paths relative to `[capture]`; nothing is
    /// checked while capture is off.
    pub fn validate(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if !self.enabled() {
            return issues;
        }
        if self.workers == 0 || self.workers > 64 {
            issues.push(ConfigIssue::new("workers", "must be between 1 and 64"));
        }
        if self.max_flows == 0 {
            issues.push(ConfigIssue::new("max_flows", "must be at least 1"));
        }
        let ring = self.ring_bytes.as_u64();
        if !(MIB..=1024 * MIB).contains(&ring) || !ring.is_multiple_of(MIB) {
            issues.push(ConfigIssue::new(
                "ring_bytes",
                "must be a whole number of MiB from 1MiB to 1GiB, e.g. \"32MiB\"",
            ));
        }
        for (key, value) in [
            ("idle_timeout", self.idle_timeout),
            ("active_timeout", self.active_timeout),
            ("summary_interval", self.summary_interval),
        ] {
            if value.is_zero() {
                issues.push(ConfigIssue::new(key, "must be more than 0s"));
            }
        }
        if let Err(e) = filter::compile(&self.filter) {
            issues.push(ConfigIssue::new("filter", e.to_string()));
        }
        if let Some(collector) = &self.ipfix_collector
            && collector.parse::<SocketAddr>().is_err()
        {
            issues.push(ConfigIssue::new(
                "ipfix_collector",
                format!(
                    "{collector:?} is not IP:PORT (e.g. \"192.0.2.9:4739\"; names are not resolved)"
                ),
            ));
        }
        issues
    }

    /// Warnings about `interfaces` on this host: an interface that does not
    /// exist here. Not errors: a sensor's configuration may be written
    /// before its NIC is installed; the agent captures on the others and
    /// waits for it.
    pub fn warnings(&self) -> Vec<String> {
        use crate::live::{LinkState, interface_names, link_state};
        let missing: Vec<&String> = self
            .interfaces
            .iter()
            .filter(|name| matches!(link_state(name), Ok(LinkState::Missing)))
            .collect();
        if missing.is_empty() {
            return Vec::new();
        }
        let here = interface_names().join(", ");
        missing
            .into_iter()
            .map(|name| {
                format!(
                    "capture.interfaces: {name} does not exist on this host (interfaces here: {here}); \
                     the agent captures on the others and waits for it: correct the name if it is wrong"
                )
            })
            .collect()
    }

    /// The live capture the service opens on `interface`: workers, ring,
    /// promiscuous mode, and the filter with the SOC's own connection left
    /// out (`exclude_soc`, which resolves `soc_address`, the agent's
    /// `HOST:PORT` of the SOC). Blocking: the name lookup may take seconds,
    /// so an async caller runs it off its workers.
    pub fn live_config(
        &self,
        soc_address: &str,
        interface: &str,
    ) -> Result<LiveConfig, LiveConfigError> {
        let mut filter = self.filter.clone();
        if self.exclude_soc {
            let socs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(soc_address)
                .map_err(|source| LiveConfigError::ResolveSoc {
                    soc_address: soc_address.to_string(),
                    source,
                })?
                .collect();
            filter = filter::with_exclusions(&filter, &socs);
        }
        let mut engine = EngineConfig {
            idle_timeout: self.idle_timeout,
            active_timeout: self.active_timeout,
            summary_interval: self.summary_interval,
            max_flows: self.max_flows,
            pool_names: self.pool_names.clone(),
            pool_addrs: self.pool_addrs.clone(),
            ..EngineConfig::default()
        };
        engine.summary.interface = interface.to_string();
        let defaults = LiveConfig::default();
        // Validation keeps ring_bytes a whole number of 1 MiB blocks.
        let block_count = u32::try_from(self.ring_bytes.as_u64() / u64::from(defaults.block_size))
            .unwrap_or(u32::MAX)
            .max(1);
        Ok(LiveConfig {
            interfaces: vec![interface.to_string()],
            workers: self.workers,
            promiscuous: self.promiscuous,
            filter,
            engine,
            block_count,
            // A wrong or late interface name must not stop the others.
            wait_for_interfaces: true,
            ..defaults
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_table_is_capture_off_with_the_documented_defaults() {
        let c: CaptureConfig = toml::from_str("").unwrap();
        assert_eq!(c, CaptureConfig::default());
        assert!(!c.enabled());
        assert_eq!(c.workers, 2);
        assert!(c.exclude_soc);
        assert_eq!(c.ring_bytes, ByteSize::mib(32));
        assert!(c.validate().is_empty());
    }

    #[test]
    fn every_problem_is_reported_at_once_relative_to_the_table() {
        let c = CaptureConfig {
            interfaces: vec!["eth1".into()],
            workers: 0,
            max_flows: 0,
            ring_bytes: ByteSize::kib(1500),
            idle_timeout: Duration::ZERO,
            filter: "port banana".into(),
            ipfix_collector: Some("collector.example:4739".into()),
            ..CaptureConfig::default()
        };
        let paths: Vec<String> = c.validate().into_iter().map(|i| i.path).collect();
        assert_eq!(
            paths,
            [
                "workers",
                "max_flows",
                "ring_bytes",
                "idle_timeout",
                "filter",
                "ipfix_collector"
            ]
        );
    }

    #[test]
    fn the_live_capture_carries_the_table_and_leaves_the_soc_out() {
        let c = CaptureConfig {
            interfaces: vec!["eth1".into()],
            workers: 3,
            ring_bytes: ByteSize::mib(8),
            filter: "tcp".into(),
            ..CaptureConfig::default()
        };
        let live = c.live_config("127.0.0.1:4443", "eth1").unwrap();
        assert_eq!(live.interfaces, ["eth1"]);
        assert_eq!(live.workers, 3);
        assert_eq!(live.block_count, 8);
        assert_eq!(live.engine.summary.interface, "eth1");
        assert!(live.wait_for_interfaces);
        assert_eq!(
            live.filter,
            filter::with_exclusions("tcp", &["127.0.0.1:4443".parse().unwrap()])
        );
        let kept = CaptureConfig {
            exclude_soc: false,
            ..c
        };
        assert_eq!(
            kept.live_config("soc.invalid:4443", "eth1").unwrap().filter,
            "tcp"
        );
    }
}
