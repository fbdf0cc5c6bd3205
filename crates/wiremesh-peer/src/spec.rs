//! What the mesh should look like from this machine: the agent's own addresses and ranges and the
//! members it tunnels to. Built from an agent config or a netmap by the I/O shell; the sans-IO core
//! ([`crate::mesh::Mesh`]) turns a spec into sessions and applies a changed spec as a diff.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use wiremesh_core::keys::NodePublicKey;
use wiremesh_core::netmap::CandidateKind;

use crate::prefix::PrefixSet;

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

/// Whether `addr` could be another machine's underlay address.
pub fn usable_underlay(addr: SocketAddr) -> bool {
    let ip = addr.ip().to_canonical();
    let special = match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_link_local()
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unicast_link_local()
        }
    };
    addr.port() != 0 && !special
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
    /// Every overlay prefix: the networks, this machine's addresses and every member's
    /// addresses and routes. Underlay traffic must never be sent into one of them (it would go
    /// into the TUN and through the mesh itself).
    pub fn overlay(&self) -> PrefixSet {
        self.networks
            .iter()
            .copied()
            .chain(self.addresses.iter().map(|a| IpNet::from(a.addr())))
            .chain(self.members.iter().flat_map(MemberSpec::owned_prefixes))
            .collect()
    }

    /// The spec with each member's candidates cut to addresses another machine could reach it
    /// at: not loopback, unspecified, multicast, broadcast or link-local, not port 0, and not
    /// inside `overlay` (this spec's [`MeshSpec::overlay`]). A controller publishes what members report; a member must not make
    /// the others send to its own choice of local or third-party addresses.
    pub fn with_usable_candidates(&self, overlay: &PrefixSet) -> MeshSpec {
        let mut spec = self.clone();
        for m in &mut spec.members {
            m.candidates
                .retain(|(addr, _)| usable_underlay(*addr) && !overlay.contains(addr.ip()));
        }
        spec
    }

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

    #[test]
    fn candidates_that_no_other_machine_could_have_are_left_out() {
        let mut spec = MeshSpec {
            addresses: vec!["100.77.0.5/16".parse().unwrap()],
            networks: vec!["100.77.0.0/16".parse().unwrap()],
            ip_ranges: vec![],
            members: vec![MemberSpec {
                name: "a".into(),
                public_key: [1; 32],
                addresses: vec!["100.77.0.6".parse().unwrap()],
                routes: vec!["198.19.9.0/24".parse().unwrap()],
                endpoints: vec![],
                candidates: vec![],
                persistent_keepalive: None,
            }],
            relays: vec![],
            source: SpecSource::Config,
        };
        let good = ["198.18.0.7:51820", "[fd00:18::7]:51820", "198.19.1.2:51820"];
        let bad = [
            "127.0.0.1:53",
            "[::1]:51820",
            "0.0.0.0:51820",
            "224.0.0.1:51820",
            "255.255.255.255:51820",
            "169.254.1.1:51820",
            "[fe80::1]:51820",
            "198.18.0.7:0",
            "100.77.3.3:51820",
            "198.19.9.4:51820",
            "[::ffff:127.0.0.1]:51820",
        ];
        spec.members[0].candidates = good
            .iter()
            .chain(&bad)
            .map(|a| (a.parse().unwrap(), CandidateKind::Local))
            .collect();
        let kept: Vec<String> = spec.with_usable_candidates(&spec.overlay()).members[0]
            .candidates
            .iter()
            .map(|(a, _)| a.to_string())
            .collect();
        assert_eq!(kept, good);
    }
}
