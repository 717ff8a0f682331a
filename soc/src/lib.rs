//! owlet-soc: the SOC side of the wire. It terminates agents' mutually
//! authenticated gRPC streams, takes identity only from client certificates,
//! stores each (agent, sequence) at most once, and acknowledges only what its
//! sink made durable. It also watches agents' heartbeats (the monitor of the
//! monitor) and provides CA tooling for small deployments and the loopback
//! demo (`owlet-soc demo`, which runs the `owlet` agent as a child process:
//! the sensor binary links none of this crate).
#![forbid(unsafe_code)]

pub mod accept;
pub mod analyst;
pub mod cli;
pub mod config;
pub mod demo;
mod demo_edits;
mod demo_portal;
pub mod enroll;
pub mod live;
pub mod lock;
pub mod notify;
pub mod outputs;
pub mod portal;
pub mod portal_cli;
pub mod portal_config;
pub mod query;
pub mod refusals;
pub mod reports;
pub mod revocation;
pub mod serve;
pub mod service;
pub mod sink;
pub mod status_file;
pub mod tail;
