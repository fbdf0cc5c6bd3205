//! The wiremesh controller's core: who is a member, which addresses they hold and the signed
//! netmap that tells every agent. [`Controller`] is a sans-IO state machine, like the peer's mesh:
//! messages, admin requests and the time go in; messages to send, sessions to close and warnings
//! come out. Members come from the controller configuration (the inventory), from join tokens and
//! from devices the admin adds; IPv4 addresses are static or sticky leases from the dynamic pool.
//! Every decision is committed to a [`Store`] (SQLite in the daemon, memory in tests) before
//! anything is acknowledged, so a restart picks up exactly what was promised. [`daemon`] is the
//! thin tokio shell around it: QUIC with mutual TLS, the admin socket, signals.

mod controller;
pub mod daemon;
mod device;
mod members;
pub mod pool;
pub mod relay;
mod session;
pub mod state;
pub mod store;
pub mod token;

pub use controller::{
    ConfigDiff, Controller, ControllerError, NETMAP_LIFETIME, Output, RENEW_BEFORE,
};
pub use session::{
    MIN_REPORT_INTERVAL, PUNCH_BURST, PUNCH_INTERVAL, PUNCHES_PER_SECOND, SessionId,
};
pub use store::{MemoryStore, SqliteStore, Store, StoreError};
