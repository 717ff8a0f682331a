//! owlet-soc-outputs: forwards the SOC's stored events to SIEMs.
//!
//! Each `[[output]]` ([`OutputConfig`]) is one task that reads every
//! tenant it is configured for with its own durable cursor, and sends ECS documents (`owlet-soc-ecs`) to one destination:
//! Elasticsearch/OpenSearch `_bulk`, Splunk HEC, syslog over TLS, or a
//! signed webhook (alerts by default). Where the events and cursors live
//! is a [`Source`] ([`source`]): the embedded SOC's store ([`run`]:
//! `owlet-soc-store`, consumer name = the output's name) or the scaled-out
//! SOC's PostgreSQL ([`run_postgres`]: the writer's `tenant_<t>.events`,
//! cursors in `owlet_bus.cursors`, consumer `output:<name>`, one process
//! per (output, tenant) at a time). The loop is the same for both.
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
//! the async workers with SQLite (store calls run in `spawn_blocking`),
//! send a tenant whose PostgreSQL cursor lock another process holds, or
//! read a secret from the configuration text (tokens come from files).
#![forbid(unsafe_code)]

pub mod config;
mod http;
mod runner;
pub mod source;
mod syslog;
mod tls;

pub use config::{OutputConfig, OutputType, SyslogFormat, validate_all};
pub use http::webhook_signature;
pub use runner::{OutputStatus, run, run_on, run_postgres, status};
pub use source::Source;
pub use syslog::frame as syslog_frame;

/// What can go wrong in an output.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The `[[output]]` entry is wrong; the message names the key and the fix.
    #[error("[[output]] {output:?}: {message}")]
    Config { output: String, message: String },
    #[error(transparent)]
    Store(#[from] owlet_soc_store::StoreError),
    /// The scaled-out SOC's PostgreSQL (connection, query, cursor).
    #[error(transparent)]
    Bus(#[from] owlet_soc_bus::BusError),
    /// One delivery attempt failed (retried; recorded on the cursor).
    #[error("{0}")]
    Delivery(String),
}
