//! Test harness for wiremesh's end-to-end tests, which run as root with real TUN devices in network
//! namespaces. It makes uniquely named namespaces joined by veth links or plugged into the
//! topologies of `wiremesh-lab` (a public switch, NAT routers; underlay in 198.18.0.0/15 and
//! fd00::/8), runs threads (setns), commands and long-lived daemons inside them, drops packets at random on a
//! link (nftables), captures packets, moves TCP data between namespaces and checks its sha256, and
//! brings up meshes of `wiremesh-peer` agents and wireguard-go peers, planned with `wiremesh plan`
//! and run, when a test wants it, under the instance's `wiremesh-controller` (leased addresses,
//! admin commands, join tickets, wg-quick devices), with members moved behind NAT routers, the
//! paths their agents report and the controller's relay counters, and long-lived TCP streams
//! that must survive a path change. Every wait has a bound, and
//! everything a test made (daemons, namespaces, UAPI sockets, temp files) is removed in `Drop`,
//! also when the test panics. The harness refuses to run (it panics, it never skips) when not root
//! or when a tool or one of the project's binaries is missing. Bounded commands, namespaces and the
//! topology builder come from `wiremesh-lab`, which `wiremesh demo` shares.

mod capture;
mod controller;
mod daemon;
mod env;
mod go_member;
mod lab;
mod nat_lab;
mod netns;
mod planned;
mod serial;
mod transfer;
mod wait;
mod wggo;

pub use capture::Capture;
pub use daemon::Daemon;
pub use env::{project_binary, require_root, require_tools};
pub use go_member::GoPeer;
pub use lab::{AGENT_PORT, Lab, Member, TUN_NAME, assert_reload_changed};
pub use nat_lab::{
    PeerPath, RelayPair, Stream, StreamResult, parse_path, relay_drops, relay_pairs,
};
pub use netns::{Netns, namespace, spawn_in, veth};
pub use planned::LEASE_RANGE;
pub use serial::serial;
pub use transfer::{Transfer, tcp_transfer};
pub use wait::{wait_for, wait_until};
pub use wggo::WgGo;
pub use wiremesh_lab::{Mapping, Namespace, NatId, Output, Topology, namespaces, run_bounded};
