//! owlet-soc-store: the SOC's event store, the seam every SOC consumer
//! reads through.
//!
//! * One SQLite file per tenant ([`Store`]): a tenant's events can only be
//!   read by opening that tenant's file ([`TenantReader`], read-only, no
//!   ATTACH), so the query API cannot reach across tenants by construction.
//! * Each event is stored as its original protobuf and as typed columns
//!   ([`Columns`]) an analyst queries with plain SQL (`SCHEMA.md`).
//! * Exactly once and durable before acknowledged ([`TenantLog::append`]).
//! * One log per tenant with increasing ids; consumers read it with their
//!   own durable [`Cursors`].
//! * Daily partitions by arrival; [`Policy`] retention by period and by
//!   capacity deletes whole partitions and records each deletion.
//! * Hourly rollups for reports, updated in the append's transaction
//!   ([`rollup`]).
//! * Schema versioned and migrated at open ([`schema`]).
//!
//! This crate is blocking (rusqlite); the receiver runs its writer on a
//! dedicated thread. Nothing in it links into the sensor binary.
#![forbid(unsafe_code)]

pub mod columns;
pub mod cursor;
pub mod error;
pub mod latest;
pub mod liveness;
pub mod newest;
pub mod read;
pub mod retention;
pub mod rollup;
pub mod schema;
pub mod store;
pub mod tenant;
pub mod time;
#[cfg(feature = "workload")]
pub mod workload;

pub use columns::Columns;
pub use cursor::{Cursors, Position};
pub use error::{Result, StoreError};
pub use newest::{Newest, newest_first};
pub use read::{Filter, StoredEvent, TenantReader};
pub use retention::{Deletion, Policy};
pub use store::{Store, Writers};
pub use tenant::{Appended, Batch, Row, RowBatch, TenantLog, Usage};
