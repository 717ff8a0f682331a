//! owlet-host: host health for the sensor and the IPS / firewall host it
//! sits on — CPU, memory, swap, load, disks (usage and I/O), network
//! interfaces (rates, errors, drops, state), processes (top by CPU and by
//! memory), uptime and reboots; threshold alerts with a duration; normal
//! ranges learned per hour of week and anomaly alerts outside them.
//!
//! Config in ([`HostConfig`]), `HostMetrics` and `Alert` events out
//! ([`Monitor::collect`]); no agent dependency. Everything here blocks
//! (`/proc` reads, state files): the agent runs it on its own thread.
#![forbid(unsafe_code)]

pub mod config;
pub mod evidence;
pub mod hold;
pub mod learning;
pub mod monitor;
pub mod naming;
pub mod persist;
pub mod procfs;
pub mod sample;
pub mod threshold;

pub use config::{HostConfig, LearningConfig, Severity, Threshold};
pub use monitor::{Health, Monitor, Output};
pub use sample::Sampler;
