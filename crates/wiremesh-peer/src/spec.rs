//! What the mesh should look like from this machine: the agent's own addresses and ranges and the
//! members it tunnels to. Built from an agent config or a netmap by the I/O shell; the sans-IO core
//! ([`crate::mesh::Mesh`]) turns a spec into sessions and applies a changed spec as a diff.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use wiremesh_core::keys::NodePublicKey;
use wiremesh_core::netmap::CandidateKind;

/// One other member of the mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSpec {
    pub name: String,
    /// The member's x25519 WireGuard public key: its identity in the data plane.
    pub public_key: [u8; 32],
    /// The member's overlay addresses (traffic to them goes to this member).
    pub addresses: Vec<IpAddr>,
    /// Prefixes the member advertises (routed to it, accepted as inner sources from it).
    pub routes: Vec<IpNet>,
    /// Known underlay endpoints, most preferred first; empty when the member must call us.
    pub endpoints: Vec<SocketAddr>,
    /// Where else the member may be reached (its LAN and NAT-mapped addresses, as a controller
    /// learnt them); tried together with the endpoints when there is no working direct path.
    pub candidates: Vec<(SocketAddr, CandidateKind)>,
    pub persistent_keepalive: Option<u16>,
}

/// A controller's probe and relay service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelaySpec {
    /// The controller's name, for status output.
    pub name: String,
    pub addr: SocketAddr,
    /// The controller's node key: its probe replies must carry its signature.
    pub node_public_key: NodePublicKey,
}

impl MemberSpec {
    /// Every prefix this member owns: its addresses as host prefixes, then its routes.
    pub fn owned_prefixes(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.addresses
            .iter()
            .map(|a| IpNet::from(*a))
            .chain(self.routes.iter().copied())
    }
}

/// Where the current member list came from, for status output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecSource {
    /// The precomputed peer list of the agent config.
    Config,
    /// A signed netmap with this epoch and expiry (Unix seconds).
    Netmap { epoch: u64, expires_unix: u64 },
}

impl SpecSource {
    /// The netmap's epoch, `None` for the config's peer list.
    pub fn epoch(&self) -> Option<u64> {
        match self {
            SpecSource::Config => None,
            SpecSource::Netmap { epoch, .. } => Some(*epoch),
        }
    }
}

/// The whole desired state of the data plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshSpec {
    /// This machine's overlay addresses, with the prefix length of their network.
    pub addresses: Vec<IpNet>,
    /// The network prefixes (routed into the TUN).
    pub networks: Vec<IpNet>,
    /// Inner source addresses this machine accepts from anyone.
    pub ip_ranges: Vec<IpNet>,
    pub members: Vec<MemberSpec>,
    /// The controllers' probe and relay services, in the config's order.
    pub relays: Vec<RelaySpec>,
    pub source: SpecSource,
}

impl MeshSpec {
    /// Prefixes the TUN must route: the networks plus every member route outside them.
    pub fn tun_routes(&self) -> Vec<IpNet> {
        let mut out: Vec<IpNet> = self.networks.clone();
        for member in &self.members {
            for route in &member.routes {
                if !out.iter().any(|n| n.contains(route)) {
                    out.push(*route);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tun_routes_skip_routes_inside_networks() {
        let spec = MeshSpec {
            addresses: vec!["100.77.0.5/16".parse().unwrap()],
            networks: vec!["100.77.0.0/16".parse().unwrap()],
            ip_ranges: vec!["100.77.0.0/16".parse().unwrap()],
            members: vec![MemberSpec {
                name: "a".into(),
                public_key: [1; 32],
                addresses: vec!["100.77.0.6".parse().unwrap()],
                routes: vec![
                    "100.77.9.0/24".parse().unwrap(),
                    "100.100.0.0/24".parse().unwrap(),
                ],
                endpoints: vec![],
                candidates: vec![],
                persistent_keepalive: None,
            }],
            relays: vec![],
            source: SpecSource::Config,
        };
        let routes: Vec<String> = spec.tun_routes().iter().map(|n| n.to_string()).collect();
        assert_eq!(routes, ["100.77.0.0/16", "100.100.0.0/24"]);
    }
}
