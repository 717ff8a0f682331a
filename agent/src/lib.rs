//! owlet, the agent: collectors produce typed events onto a bounded bus; the
//! spool writer makes them durable; the uplink streams them to the SOC over
//! mutually authenticated gRPC and deletes them only when acknowledged.
//!
//! Capabilities live in their own crates (`owlet-probe`, ...) and see only an
//! [`pipeline::bus::EventSender`]; nothing outside `uplink` knows about gRPC,
//! nothing outside the spool knows about disks.
#![deny(unsafe_code)]

pub mod cli;
pub mod collect;
pub mod config;
pub mod control;
pub mod exposition;
pub mod facts;
// The only unsafe code: two glibc allocator calls (see the module).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub mod malloc;
pub mod notify;
pub mod pipeline;
pub mod selftest;
pub mod service;
pub mod status;
pub mod tasks;
pub mod unit;
pub mod uplink;
pub mod verdict;
