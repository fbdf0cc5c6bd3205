//! The peer agent: one WireGuard session per mesh member over one TUN device and one UDP socket.
//!
//! The data plane is split into a sans-IO core and a thin Linux shell (the `wiremesh-peer`
//! binary). The core — [`prefix`] (longest-prefix tables), [`spec`] (the desired mesh),
//! [`mesh`] (member table, boringtun sessions, routing, demux, inbound filtering, roaming, timers,
//! diffs), [`path`] (each member's way through NAT: direct, punched or relayed), [`prober`]
//! (probes to the controllers' relays, which tell the NAT-mapped address), [`budget`] (what
//! handshakes under load may cost) and [`offload`] (splitting TUN super-packets, coalescing
//! received packets) — takes packets, buffers and time as arguments and is tested by wiring
//! several cores together in memory. The local status socket's protocol, shared with
//! `wiremesh status`, lives in `wiremesh_proto::status`.

pub mod budget;
pub mod mesh;
pub mod offload;
pub mod path;
pub mod prefix;
pub mod prober;
pub mod spec;
