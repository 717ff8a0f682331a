//! owlet-fim: file integrity monitoring of configuration files (skeleton;
//! issue 9 fills it in).
#![forbid(unsafe_code)]

pub mod config;
pub mod diff;
pub mod redact;
pub mod who;

pub use config::FimConfig;
