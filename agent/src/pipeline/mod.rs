//! The event pipeline inside the agent: bus → spool writer → store, with the
//! counters every stage updates. The uplink reads from the store.

pub mod bus;
pub mod loss;
pub mod metrics;
pub mod store;
pub mod writer;
