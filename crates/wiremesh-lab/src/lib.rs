//! The lab bench under `wiremesh demo` and the root end-to-end tests (netns-tests): running a short
//! command with a time bound (its output in anonymous temp files, it and its children killed when
//! the bound passes or when the caller asks to stop); throwaway network namespaces, owned by a
//! value that deletes its namespace on drop, and the listing that finds those a killed run left
//! behind; and the topology builder both users share: a "public" switch with hosts on it, NAT
//! routers (nftables masquerade, endpoint-independent or symmetric) with hosts behind them, UDP
//! blocked and unblocked between two NATs, and a host moved from one NAT's LAN to another's.
//! Everything it makes is removed on drop, also on panic. Policy stays with the callers: they name
//! the namespaces `<prefix><pid>-…` (which is how orphans are recognised) and choose the
//! addresses, which must lie in 198.18.0.0/15 and fd00::/8.

mod command;
mod namespace;
mod nat;
mod process;
mod teardown;
mod topology;

pub use command::{Output, run_bounded, run_bounded_until};
pub use namespace::{Namespace, veth};
pub use nat::{Mapping, Nat, NatId};
pub use teardown::{delete_namespace, namespaces, orphaned_namespaces};
pub use topology::{HOST_DEV, Topology};
