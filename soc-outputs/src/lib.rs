//! owlet-soc-outputs: forwards the SOC's stored events to SIEMs.
//!
//! Each `[[output]]` ([`OutputConfig`]) is one task ([`run`]) that reads
//! every tenant it is configured for from the event store (`owlet-soc-store`)
//! with its own durable cursor (consumer name = the output's name), and
//! sends ECS documents (`owlet-soc-ecs`) to one destination:
//! Elasticsearch/OpenSearch `_bulk`, Splunk HEC, syslog over TLS, or a
//! signed webhook (alerts by default).
//!
//! Guarantees (README.md has the per-output detail; `tests/` has a test
//! that fails when each breaks):
//! * **at least once**: the cursor of a tenant moves past a batch only after
//!   the destination confirmed it (bulk items created or already there; HEC
//!   success, and indexed when `ack = true`; syslog written and the
//!   connection still up after `settle`). A crash or restart resends at most
//!   the batches that were not confirmed, and every document carries the
//!   stable `event.id` (`tenant/agent/seq`) to deduplicate on (Elasticsearch
//!   does so by itself: `_id` = event id with the `create` action);
//! * **in order** per tenant: a batch is sent only after the one before it
//!   was confirmed, and a failed batch is retried, never skipped;
//! * **nothing lost while a destination is down**: the events wait in the
//!   store (its retention is the only bound), the output retries with
//!   exponential backoff capped at `retry_max`, and records every failure
//!   on its cursor (`errors`, `last_error`) for `owlet-soc status`
//!   ([`status`]);
//! * **tenant separation**: an output reads only the tenants it names;
//!   there is no implicit "all tenants" (`tenants = ["*"]` must be said).
//!
//! What it must never do: advance a cursor on an unconfirmed send, block
//! the async workers with SQLite (store calls run in `spawn_blocking`), or
//! read a secret from the configuration text (tokens come from files).
#![forbid(unsafe_code)]

pub mod config;
mod http;
mod runner;
mod syslog;
mod tls;

pub use config::{OutputConfig, OutputType, SyslogFormat, validate_all};
pub use http::webhook_signature;
pub use runner::{OutputStatus, run, status};
pub use syslog::frame as syslog_frame;

/// What can go wrong in an output.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The `[[output]]` entry is wrong; the message names the key and the fix.
    #[error("[[output]] {output:?}: {message}")]
    Config { output: String, message: String },
    #[error(transparent)]
    Store(#[from] owlet_soc_store::StoreError),
    /// One delivery attempt failed (retried; recorded on the cursor).
    #[error("{0}")]
    Delivery(String),
}
