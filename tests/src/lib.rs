//! Harness for owlet's end-to-end tests: it starts the real `owlet`,
//! `owlet-loadgen` and `owlet-soc` binaries and talks to them only through
//! their real interfaces (command line, config files, the agent's control
//! socket, the SOC's SQLite file). A [`Relay`] between agent and SOC can
//! delay and cut a live connection, to make resends happen on purpose.
//!
//! Every test gets its own temporary directory and its own loopback port;
//! every process is owned by a [`Proc`] guard that SIGKILLs it on drop, so a
//! failing test leaves nothing running. When a test panics, each guard prints
//! the tail of its process's log to help diagnosis.
//!
//! The scaled-out SOC (JetStream, PostgreSQL, receivers, writer) is in
//! [`Scale`].
//!
//! Waits are bounded and polled every 100 ms ([`wait_until`]) with generous
//! deadlines: the machines are shared and noisy, so no test asserts timing.

#![forbid(unsafe_code)]

mod agent;
mod asserts;
mod db;
mod process;
mod relay;
mod scale;
mod soc;
mod target;
mod tmpfs;
mod users;

pub use agent::*;
pub use asserts::*;
pub use db::*;
pub use process::*;
pub use relay::*;
pub use scale::*;
pub use soc::*;
pub use target::*;
pub use tmpfs::*;
pub use users::*;
