//! owlet-fim: file integrity monitoring of configuration files.
//!
//! Config in ([`FimConfig`]), outputs out ([`Output`]: file changes and
//! operational alerts, with their wire forms). [`Monitor`] watches with
//! inotify (through notify) on its own thread; [`cli`] does the work of
//! `owlet fim baseline | scan` on a configuration the agent loaded. No
//! dependency on the agent.
#![forbid(unsafe_code)]

pub mod baseline;
pub mod change;
pub mod cli;
pub mod config;
pub mod diff;
mod engine;
pub mod entries;
pub mod redact;
pub mod redacted;
pub mod rules;
pub mod secret_file;
pub mod state;
pub mod stats;
pub mod store;
pub mod walk;
pub mod who;

pub use change::{Action, Change, FimAlert, Output};
pub use config::FimConfig;
pub use engine::{Monitor, RATE_BURST, Sink, StartError};
pub use stats::Stats;
