//! Who is in the netmap: the inventory's members, then the members outside it (joined agents and
//! devices), with their leases, revocations and candidates applied. Candidates are what the
//! controller learnt: the address the relay saw a member's probes come from (`Mapped`, first)
//! and the interface addresses its agent reported (`Local`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use wiremesh_core::addresses::member_ipv6;
use wiremesh_core::config::Addresses;
use wiremesh_core::controller_config::ControllerFile;
use wiremesh_core::netmap::{Candidate, CandidateKind, Flags, MAX_ENDPOINTS, Member};

use crate::state::{NodeKind, State};

/// The members a netmap of `config` and `state` lists, sorted by name. An inventory member whose
/// keys are revoked stays in the list flagged [`Flags::REVOKED`] (agents know it from their
/// planned configuration and must drop it); a revoked member outside the inventory is gone from
/// the state. A member outside the inventory whose name or key the inventory now uses is shadowed
/// by the inventory's entry.
pub fn members(config: &ControllerFile, state: &State, learnt: &Learnt) -> Vec<Member> {
    let mut out = Vec::with_capacity(config.members.len() + state.nodes.len());
    let mut used_keys = BTreeSet::new();
    let inventory: BTreeSet<&str> = config.members.iter().map(|m| m.name.as_str()).collect();
    for m in &config.members {
        used_keys.insert(m.node_public_key.to_base64());
        used_keys.insert(m.wireguard_public_key.to_base64());
        let revoked = state.is_revoked(&m.node_public_key, &m.wireguard_public_key);
        let lease = state.leases.get(&m.name).filter(|_| !revoked).copied();
        let mut flags = Flags::default();
        if m.controller {
            flags = flags.with(Flags::CONTROLLER);
        }
        if revoked {
            flags = flags.with(Flags::REVOKED);
        }
        if m.addresses.ipv4.is_none() && lease.is_some() {
            flags = flags.with(Flags::DYNAMIC_IPV4);
        }
        out.push(Member {
            candidates: if revoked {
                Vec::new()
            } else {
                learnt.candidates(&m.name)
            },
            name: m.name.clone(),
            wireguard_public_key: m.wireguard_public_key,
            node_public_key: m.node_public_key,
            addresses: Addresses {
                ipv4: m.addresses.ipv4.or(lease),
                ipv6: m.addresses.ipv6,
            },
            endpoints: m.endpoints.clone(),
            routes: m.routes.clone(),
            flags,
        });
    }
    for (name, node) in &state.nodes {
        if inventory.contains(name.as_str())
            || used_keys.contains(&node.node_public_key.to_base64())
            || used_keys.contains(&node.wireguard_public_key.to_base64())
        {
            continue;
        }
        let lease = state.leases.get(name).copied();
        let mut flags = Flags::OUTSIDE_INVENTORY;
        if lease.is_some() {
            flags = flags.with(Flags::DYNAMIC_IPV4);
        }
        let candidates = match node.kind {
            NodeKind::Agent => learnt.candidates(name),
            NodeKind::Device => Vec::new(),
        };
        out.push(Member {
            candidates,
            name: name.clone(),
            wireguard_public_key: node.wireguard_public_key,
            node_public_key: node.node_public_key,
            addresses: Addresses {
                ipv4: lease,
                ipv6: member_ipv6(config.network.ipv6, name),
            },
            endpoints: Vec::new(),
            routes: Vec::new(),
            flags,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Where members were seen, by member name; not stored: agents report and probe again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Learnt {
    /// The interface addresses each agent reported.
    pub local: BTreeMap<String, Vec<SocketAddr>>,
    /// The address the relay saw each member's probes come from.
    pub mapped: BTreeMap<String, SocketAddr>,
}

impl Learnt {
    /// The mapped address first (what a member behind another NAT needs), then the local ones,
    /// without repeats, at most [`MAX_ENDPOINTS`].
    pub fn candidates(&self, name: &str) -> Vec<Candidate> {
        let mapped = self.mapped.get(name).map(|addr| Candidate {
            addr: *addr,
            kind: CandidateKind::Mapped,
        });
        let local = self
            .local
            .get(name)
            .into_iter()
            .flatten()
            .map(|addr| Candidate {
                addr: *addr,
                kind: CandidateKind::Local,
            });
        let mut out: Vec<Candidate> = Vec::new();
        for c in mapped.into_iter().chain(local) {
            if out.len() == MAX_ENDPOINTS {
                break;
            }
            if !out.iter().any(|o| o.addr == c.addr) {
                out.push(c);
            }
        }
        out
    }
}
