//! owlet-soc-bus: the SOC scaled out. Receivers publish agents' events to
//! NATS JetStream ([`publish`]); the writer ([`writer`]) commits them to
//! PostgreSQL, the shared query store, keeping its position in each
//! tenant stream there ([`cursor`]).
//!
//! Layout on the bus (a tenant or agent name's `.` is written `~` there:
//! `.` separates subject tokens and is not allowed in stream names, and
//! `~` never occurs in an owlet identity, so the mapping is one to one):
//!
//! * a stream per tenant, `OWLET_<tenant>`, subjects `owlet.<tenant>.>`,
//!   replicated (R3 in a 3-node cluster): a buffer in front of PostgreSQL,
//!   keeping events for [`BusConfig::buffer_max_age`] (7 days by default)
//!   or the tenant's `max_age` if shorter, at most the tenant's
//!   `max_bytes`; the tenant's retention itself rides in the stream's
//!   metadata for the writer ([`Retention::of_stream`]);
//! * a subject per agent, `owlet.<tenant>.<agent>`, one message per event:
//!   the body is the event's protobuf (`owlet.v1.Event`), header
//!   [`SEQ_HEADER`] its sequence number, `Nats-Msg-Id` `<tenant>/<agent>/<seq>`;
//! * a subject per agent for the records the SOC makes about it,
//!   `owlet.<tenant>.<agent>.soc` ([`record_subject`]): a receiver publishes
//!   there what it would store itself in the embedded SOC outside the
//!   agent's sequence (its self-test records), without a sequence header,
//!   `Nats-Msg-Id` `<tenant>/<agent>/soc/<id>` ([`Bus::publish_record`]);
//!   the writer stores them with `seq` NULL, exactly once like the rest.
//!
//! Guarantees (the SOC's invariants 1 and 3, across receivers):
//! * **Exactly once on the subject.** Every publish carries
//!   `Nats-Expected-Last-Subject-Sequence`: the stream sequence of the last
//!   message on the agent's subject as this receiver knows it (with atomic
//!   batches, nats-server 2.12.1+, the first message of each batch carries
//!   it and JetStream stores the batch whole or not at all, so nothing comes
//!   between its messages). JetStream
//!   refuses the publish if anyone else wrote the subject meanwhile; the
//!   receiver then re-reads the subject's last message, drops what is at or
//!   below it, and goes on. Two receivers can therefore never interleave one
//!   agent, and this holds after the duplicate window too (`Nats-Msg-Id`
//!   only dedupes within it).
//! * **Acknowledged only when replicated.** An agent's high-water mark moves
//!   only with JetStream's publish ack (a quorum of the stream's replicas
//!   has the message).
//! * **Exactly once in PostgreSQL.** The writer reads each tenant stream
//!   through a consumer without acks from the position it keeps in
//!   PostgreSQL ([`cursor`]), and moves that position in the transaction
//!   that stores the batch (`COPY` into `events` of what is above its
//!   agent's mark, kept by the writer): a writer killed anywhere
//!   resumes right after its last commit. One writer holds a tenant at a
//!   time; others stand by. Retention drops whole day partitions
//!   ([`partitions`]).
//! * **Rollups exactly once.** The hourly rollups reports read are kept
//!   off the writer's path by their own consumer ([`rollup`]), which moves
//!   its cursor in the transaction of the figures it adds.
//! * **Tenants apart.** A stream per tenant, a PostgreSQL schema per tenant
//!   readable only by that tenant's role; a tenant name PostgreSQL would cut
//!   (more than [`writer::MAX_TENANT_BYTES`]) is refused by receivers and
//!   writer alike.
//!
//! Requires nats-server 2.10 or newer ([`MIN_NATS_SERVER`]).
#![forbid(unsafe_code)]

mod checks;
pub mod cursor;
pub mod liveness;
mod marks;
pub mod partitions;
pub mod publish;
pub mod rollup;
#[cfg(feature = "testkit")]
pub mod scenario;
pub mod status;
pub mod stored;
pub mod writer;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use async_nats::ServerAddr;
pub use publish::{AgentLog, Appended, Bus, BusConfig, Retention};

/// The oldest nats-server this crate is tested with and relies on
/// (`Nats-Expected-Last-Subject-Sequence` with clustered streams, stream
/// metadata, the 2.10 storage format).
pub const MIN_NATS_SERVER: (u32, u32) = (2, 10);

/// Header with the agent's sequence number of the event in the body.
pub const SEQ_HEADER: &str = "Owlet-Seq";

/// Prefix of every tenant stream's name.
pub const STREAM_PREFIX: &str = "OWLET_";

/// An owlet name (tenant or agent id: `[A-Za-z0-9._-]`) as a subject token
/// or stream-name part: `.` becomes `~`.
pub fn token(name: &str) -> String {
    name.replace('.', "~")
}

/// The inverse of [`token`].
pub fn untoken(token: &str) -> String {
    token.replace('~', ".")
}

/// The stream of `tenant`.
pub fn stream_name(tenant: &str) -> String {
    format!("{STREAM_PREFIX}{}", token(tenant))
}

/// The subject of `agent` of `tenant`.
pub fn subject(tenant: &str, agent: &str) -> String {
    format!("owlet.{}.{}", token(tenant), token(agent))
}

/// The last token of the subject of the SOC's records about an agent.
const RECORD_TOKEN: &str = "soc";

/// The subject of the records the SOC makes about `agent` of `tenant`.
pub fn record_subject(tenant: &str, agent: &str) -> String {
    format!("{}.{RECORD_TOKEN}", subject(tenant, agent))
}

/// Who wrote a message of a tenant stream, by its subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The agent's own sequenced event (`owlet.T.A`).
    Agent(String),
    /// A record the SOC made about the agent (`owlet.T.A.soc`).
    Record(String),
}

/// The agent a subject of the tenant stream names, and who wrote it.
pub fn origin_of(subject: &str) -> Option<Origin> {
    let mut parts = subject.split('.');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("owlet"), Some(_), Some(agent), None, None) => Some(Origin::Agent(untoken(agent))),
        (Some("owlet"), Some(_), Some(agent), Some(RECORD_TOKEN), None) => {
            Some(Origin::Record(untoken(agent)))
        }
        _ => None,
    }
}

/// What went wrong on the bus or in the query store, in the operator's terms.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error(
        "cannot connect to NATS at {servers}: {reason}; check that nats-server runs there with JetStream enabled (-js), that [sink] servers names it, and the credentials file"
    )]
    Connect { servers: String, reason: String },
    #[error("NATS credentials file {path}: {reason}")]
    Credentials { path: String, reason: String },
    #[error("JetStream stream {stream}: {reason}")]
    Stream { stream: String, reason: String },
    #[error(
        "JetStream did not take the events of {subject} within {waited:?} ({reason}); is a quorum of the stream's servers up?"
    )]
    Publish {
        subject: String,
        waited: std::time::Duration,
        reason: String,
    },
    #[error("the last message of {subject} has no usable {SEQ_HEADER} header or body")]
    BadLastMessage { subject: String },
    #[error(
        "the stream of {subject} is gone from JetStream (deleted by hand, or the cluster rebuilt); it is created again at the agent's next connection"
    )]
    StreamGone { subject: String },
    #[error(
        "tenant {tenant:?} is {bytes} bytes long: the scaled-out SOC keeps it in the PostgreSQL schema \"tenant_{tenant}\" and role \"owlet_tenant_{tenant}\", and PostgreSQL cuts names at {max_identifier} bytes (two tenants could then share them), so a tenant name has at most {max_tenant} bytes here; issue this tenant's certificates under a shorter name",
        max_identifier = writer::PG_MAX_IDENTIFIER,
        max_tenant = writer::MAX_TENANT_BYTES
    )]
    TenantTooLong { tenant: String, bytes: usize },
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("{0}")]
    Other(String),
}

impl BusError {
    /// A PostgreSQL error with the server's own words (tokio-postgres
    /// keeps them in the error's causes), for readers of the store outside
    /// this crate.
    pub fn from_postgres(e: tokio_postgres::Error) -> Self {
        writer::pg_error(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_one_to_one() {
        assert_eq!(stream_name("acme.eu"), "OWLET_acme~eu");
        assert_eq!(subject("acme.eu", "fw-1.dc"), "owlet.acme~eu.fw-1~dc");
        assert_eq!(
            origin_of("owlet.acme~eu.fw-1~dc"),
            Some(Origin::Agent("fw-1.dc".into()))
        );
        assert_eq!(
            origin_of(&record_subject("acme.eu", "fw-1.dc")),
            Some(Origin::Record("fw-1.dc".into()))
        );
        assert_eq!(origin_of("owlet.acme.a.b"), None);
        assert_eq!(origin_of("owlet.acme.a.soc.x"), None);
        assert_eq!(untoken(&token("a.b_c-d")), "a.b_c-d");
    }
}
