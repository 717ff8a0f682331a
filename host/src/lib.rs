//! owlet-host: host health sampling, thresholds and learned normal ranges
//! (skeleton; issue 9 fills it in).
#![forbid(unsafe_code)]

pub mod config;

pub use config::HostConfig;
