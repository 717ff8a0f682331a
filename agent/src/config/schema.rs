//! The shape of `owlet.toml`, with defaults. Every section is optional except
//! `[soc]`; `packaging/owlet.toml` is the commented reference.

use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use owlet_tomlconf::byte_size;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub agent: AgentSection,
    pub soc: SocSection,
    #[serde(default)]
    pub spool: SpoolSection,
    #[serde(default)]
    pub batch: BatchSection,
    #[serde(default)]
    pub status: StatusSection,
    #[serde(default)]
    pub control: ControlSection,
    #[serde(default)]
    pub log: owlet_logging::LogSection,
    /// Uptime checks (`[probe]`, `[[probe.check]]`).
    #[serde(default)]
    pub probe: owlet_probe::ProbeConfig,
    /// Packet metadata from mirror ports (`[capture]`); off without interfaces.
    #[serde(default)]
    pub capture: owlet_capture::CaptureConfig,
    /// Watched configuration files (`[fim]`, `[[fim.watch]]`).
    #[serde(default)]
    pub fim: owlet_fim::FimConfig,
    /// Host health sampling, thresholds and learning (`[host]`).
    #[serde(default)]
    pub host: owlet_host::HostConfig,
    /// The hardware profile applied at load time and where each of its
    /// settings came from (not a key of the file).
    #[serde(skip)]
    pub profile: super::profile::Applied,
}

/// Who this agent says it is (the certificate decides) and where it keeps state.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AgentSection {
    /// Tenant the certificate must carry; the SOC refuses a mismatch.
    pub tenant: Option<String>,
    /// Agent id the certificate must carry; the SOC refuses a mismatch.
    pub id: Option<String>,
    /// Hardware profile (`small`, `medium`, `large`, `auto` or empty; see
    /// hw-profiles/): its settings fill in what the file leaves out, and its
    /// name (for `auto`, the one chosen) is reported to the SOC.
    #[serde(default)]
    pub hw_profile: String,
    /// Directory for the spool and other state.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
}

impl Default for AgentSection {
    fn default() -> Self {
        Self {
            tenant: None,
            id: None,
            hw_profile: String::new(),
            state_dir: default_state_dir(),
        }
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/owlet")
}

/// Compression of the gRPC stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    None,
    Gzip,
    #[default]
    Zstd,
}

/// The SOC to stream to, and the agent's credentials.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SocSection {
    /// `HOST:PORT` of the SOC receiver.
    pub address: String,
    /// Other receivers of the same SOC (`HOST:PORT` each), tried in order
    /// when the current one cannot be reached; the agent stays with the one
    /// that answered until it fails. For a scaled-out SOC without a load
    /// balancer in front of its receivers.
    #[serde(default)]
    pub alternatives: Vec<String>,
    /// Name the SOC certificate must carry (default: host part of `address`).
    pub server_name: Option<String>,
    /// CA that signed the SOC's certificate; the only CA trusted (pinning).
    pub ca: PathBuf,
    /// This agent's certificate (PEM).
    pub cert: PathBuf,
    /// This agent's private key (PEM, mode 0600).
    pub key: PathBuf,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(default = "default_backoff_min", with = "humantime_serde")]
    pub backoff_min: Duration,
    #[serde(default = "default_backoff_max", with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Bytes sent but not yet acknowledged; more waits in the spool.
    #[serde(default = "default_max_inflight", deserialize_with = "byte_size")]
    pub max_inflight_bytes: ByteSize,
    #[serde(default)]
    pub compression: Compression,
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_backoff_min() -> Duration {
    Duration::from_millis(500)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(60)
}
fn default_max_inflight() -> ByteSize {
    ByteSize::mib(8)
}

/// When the spool forces data to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// fdatasync after every batch: survives power loss. The default.
    #[default]
    EveryBatch,
    /// fdatasync at most every `spool.fsync_interval`: survives kill -9, may
    /// lose up to that interval on power loss.
    Interval,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SpoolSection {
    /// Default: `STATE_DIR/spool`.
    pub dir: Option<PathBuf>,
    #[serde(default = "default_spool_max_bytes", deserialize_with = "byte_size")]
    pub max_bytes: ByteSize,
    #[serde(default = "default_spool_max_age", with = "humantime_serde")]
    pub max_age: Duration,
    #[serde(default = "default_segment_bytes", deserialize_with = "byte_size")]
    pub segment_bytes: ByteSize,
    /// Bound on batches held (each costs ~150 bytes of memory).
    #[serde(default = "default_spool_max_batches")]
    pub max_batches: u64,
    #[serde(default)]
    pub durability: Durability,
    #[serde(default = "default_fsync_interval", with = "humantime_serde")]
    pub fsync_interval: Duration,
}

impl Default for SpoolSection {
    fn default() -> Self {
        Self {
            dir: None,
            max_bytes: default_spool_max_bytes(),
            max_age: default_spool_max_age(),
            segment_bytes: default_segment_bytes(),
            max_batches: default_spool_max_batches(),
            durability: Durability::default(),
            fsync_interval: default_fsync_interval(),
        }
    }
}

fn default_spool_max_bytes() -> ByteSize {
    ByteSize::gib(1)
}
fn default_spool_max_age() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_spool_max_batches() -> u64 {
    1_000_000
}
fn default_segment_bytes() -> ByteSize {
    ByteSize::mib(16)
}
fn default_fsync_interval() -> Duration {
    Duration::from_millis(100)
}

/// How events are grouped before they are spooled and sent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BatchSection {
    #[serde(default = "default_batch_events")]
    pub max_events: usize,
    #[serde(default = "default_batch_bytes", deserialize_with = "byte_size")]
    pub max_bytes: ByteSize,
    /// How long the first event of a batch may wait for company.
    #[serde(default = "default_linger", with = "humantime_serde")]
    pub linger: Duration,
}

impl Default for BatchSection {
    fn default() -> Self {
        Self {
            max_events: default_batch_events(),
            max_bytes: default_batch_bytes(),
            linger: default_linger(),
        }
    }
}

fn default_batch_events() -> usize {
    2000
}
fn default_batch_bytes() -> ByteSize {
    ByteSize::mib(1)
}
fn default_linger() -> Duration {
    Duration::from_millis(100)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StatusSection {
    /// Heartbeat period.
    #[serde(default = "default_status_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// `owlet health` is WARNING when events have waited this long with
    /// no acknowledgement from the SOC (a SOC that takes the connection
    /// but stores nothing).
    #[serde(default = "default_undelivered_warning", with = "humantime_serde")]
    pub undelivered_warning: Duration,
    /// ... and CRITICAL from this long.
    #[serde(default = "default_undelivered_critical", with = "humantime_serde")]
    pub undelivered_critical: Duration,
}

impl Default for StatusSection {
    fn default() -> Self {
        Self {
            interval: default_status_interval(),
            undelivered_warning: default_undelivered_warning(),
            undelivered_critical: default_undelivered_critical(),
        }
    }
}

fn default_undelivered_warning() -> Duration {
    Duration::from_secs(120)
}
fn default_undelivered_critical() -> Duration {
    Duration::from_secs(300)
}

fn default_status_interval() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ControlSection {
    /// Unix socket for `owlet health` / `owlet reload` (the agent opens no
    /// network port).
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// Optional Prometheus text exposition of `owlet health` at
    /// `http://ADDRESS/metrics`, loopback addresses only; unset = off.
    #[serde(default)]
    pub prometheus_listen: Option<std::net::SocketAddr>,
}

impl Default for ControlSection {
    fn default() -> Self {
        Self {
            socket: default_socket(),
            prometheus_listen: None,
        }
    }
}

fn default_socket() -> PathBuf {
    PathBuf::from("/run/owlet/owlet.sock")
}
