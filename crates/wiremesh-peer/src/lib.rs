//! The peer agent: one WireGuard session per mesh member over one TUN device and one UDP socket.
//!
//! The data plane is split into a sans-IO core and a thin Linux shell. The core — [`prefix`]
//! (longest-prefix tables), [`spec`] (the desired mesh) and [`mesh`] (member table, boringtun
//! sessions, routing, demux, inbound filtering, roaming, timers, diffs) — takes packets, buffers and
//! time as arguments and is tested by wiring several cores together in memory. [`status`] holds
//! the messages of the local status socket, shared with `wiremesh status`.

pub mod mesh;
pub mod prefix;
pub mod spec;
