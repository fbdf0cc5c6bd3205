//! Who is in the netmap: the inventory's members, then the members outside it (joined agents and
//! devices), with their leases, reported endpoints and revocations applied.

use std::collections::{BTreeMap, BTreeSet};

use wiremesh_core::addresses::member_ipv6;
use wiremesh_core::config::Addresses;
use wiremesh_core::controller_config::ControllerFile;
use wiremesh_core::netmap::{Flags, MAX_ENDPOINTS, Member};

use crate::state::{NodeKind, State};

/// The members a netmap of `config` and `state` lists, sorted by name. An inventory member whose
/// keys are revoked stays in the list flagged [`Flags::REVOKED`] (agents know it from their
/// planned configuration and must drop it); a revoked member outside the inventory is gone from
/// the state. A member outside the inventory whose name or key the inventory now uses is shadowed
/// by the inventory's entry.
pub fn members(
    config: &ControllerFile,
    state: &State,
    reported: &BTreeMap<String, Vec<String>>,
) -> Vec<Member> {
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
            candidates: Vec::new(),
            name: m.name.clone(),
            wireguard_public_key: m.wireguard_public_key,
            node_public_key: m.node_public_key,
            addresses: Addresses {
                ipv4: m.addresses.ipv4.or(lease),
                ipv6: m.addresses.ipv6,
            },
            endpoints: merge_endpoints(&m.endpoints, reported.get(&m.name)),
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
        let endpoints = match node.kind {
            NodeKind::Agent => merge_endpoints(&[], reported.get(name)),
            NodeKind::Device => Vec::new(),
        };
        out.push(Member {
            candidates: Vec::new(),
            name: name.clone(),
            wireguard_public_key: node.wireguard_public_key,
            node_public_key: node.node_public_key,
            addresses: Addresses {
                ipv4: lease,
                ipv6: member_ipv6(config.network.ipv6, name),
            },
            endpoints,
            routes: Vec::new(),
            flags,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Configured endpoints first, then reported ones, without repeats, at most [`MAX_ENDPOINTS`].
fn merge_endpoints(configured: &[String], reported: Option<&Vec<String>>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in configured.iter().chain(reported.into_iter().flatten()) {
        if out.len() == MAX_ENDPOINTS {
            break;
        }
        if !out.contains(e) {
            out.push(e.clone());
        }
    }
    out
}
