//! The mesh plan: a resolved wiremesh instance plus the members' public keys → one
//! [`AgentConfig`] per mesh member, the precomputed peer list that brings the mesh up with no
//! controller.
//!
//! Rules:
//! - Mesh members are the machines with the `peer` role. A controller-only machine gets no agent
//!   configuration (the controller is not on the data path); it is listed in [`Plan::notes`].
//! - Networks come from the controllers' `ipv6Network`/`ipv4Network` (all controllers that set one
//!   must agree) or are derived from the instance name. The IPv4 network is used only when some
//!   member has a static `ipv4`, a controller leases addresses (`dynamicIp.enable`) or
//!   `ipv4Network` is set; otherwise the instance is IPv6 only.
//! - `ipRanges` entry `"all"` expands to the instance's networks.
//! - A member that is also a controller and lists no `endpoints` is reachable at its controller
//!   `endpoint` on its tunnel port.
//! - A peer entry's `persistentKeepalive` is the local machine's own setting: keepalives keep the
//!   local side's NAT mapping open, so the machine behind NAT is the one that needs them.
//! - Keys are read through a caller-supplied function from the Clan vars layout (see
//!   [`wireguard_key_path`] and friends), so the plan itself does no I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use ipnet::{IpNet, Ipv4Net};
use serde::Deserialize;

use crate::addresses::{self, AddressProblem, DynamicRange};
use crate::claims::{find_clashes, owned_prefixes};
use crate::config::{
    Addresses, AgentConfig, CONFIG_VERSION, ControllerConfig, Networks, PeerConfig,
};
use crate::controller_config::{self, ControllerFile, MemberConfig};
use crate::keys::NetworkPublicKey;

mod error;
mod vars;

pub use error::PlanError;
pub use vars::{ReadKey, network_key_path, network_secret_path, node_key_path, wireguard_key_path};

pub const PEER_ROLE: &str = "peer";
pub const CONTROLLER_ROLE: &str = "controller";

/// The `peer` role settings the plan reads (defaults are applied by the resolver).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PeerSettings {
    ip_ranges: Vec<String>,
    ipv4: Option<String>,
    endpoints: Vec<String>,
    port: u16,
    persistent_keepalive: Option<u16>,
    mtu: u32,
    routes: Vec<String>,
    interface: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ControllerSettings {
    endpoint: String,
    control_port: u16,
    /// Missing in settings resolved before NAT traversal: the relay's defaults.
    #[serde(default)]
    relay: controller_config::Relay,
    ipv4_network: Option<String>,
    ipv6_network: Option<String>,
    dynamic_ip: DynamicIp,
}

#[derive(Debug, Clone, Deserialize)]
struct DynamicIp {
    enable: bool,
    range: Option<String>,
}

/// The result: every mesh member's configuration, every controller's, and notes for the operator.
///
/// The full configurations hold every other member each, quadratic in the mesh size (2,000
/// members would take gigabytes), so the plan keeps each member's own part and one list of all
/// members, and [`Plan::config`] assembles a configuration when it is asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Each mesh member's configuration with `peers` left empty.
    pub machines: BTreeMap<String, AgentConfig>,
    /// Every mesh member as the others see it (`persistentKeepalive` is the member's own setting);
    /// the input of a netmap.
    pub members: BTreeMap<String, PeerConfig>,
    pub network_public_key: NetworkPublicKey,
    /// Each controller's configuration (`<machine>.controller.json`), by machine.
    pub controllers: BTreeMap<String, ControllerFile>,
    /// One line per noteworthy fact, e.g. controller-only machines and IPv6-only members.
    pub notes: Vec<String>,
}

impl Plan {
    /// The agent configuration of mesh member `machine`: its own part plus every other member,
    /// with this machine's keepalive setting (keepalives hold the local side's NAT mapping open).
    pub fn config(&self, machine: &str) -> Option<AgentConfig> {
        let own = self.machines.get(machine)?;
        let peers = self
            .members
            .values()
            .filter(|p| p.name != machine)
            .map(|p| PeerConfig {
                persistent_keepalive: own.persistent_keepalive,
                ..p.clone()
            })
            .collect();
        Some(AgentConfig {
            peers,
            ..own.clone()
        })
    }

    /// Every member's configuration in name order, each built when the iterator reaches it.
    pub fn configs(&self) -> impl Iterator<Item = AgentConfig> + '_ {
        self.machines.keys().filter_map(|m| self.config(m))
    }
}

/// Plans instance `instance` whose members hold `roles` (machine → role → final settings, as the
/// resolver gives them). `keys_dir` is joined to the vars paths and handed to `read_key`.
pub fn plan(
    instance: &str,
    roles: &BTreeMap<String, BTreeMap<String, serde_json::Value>>,
    keys_dir: &Path,
    read_key: &mut ReadKey<'_>,
) -> Result<Plan, Vec<PlanError>> {
    let mut errors: Vec<PlanError> = std::iter::once(("instance", instance))
        .chain(roles.keys().map(|m| ("machine", m.as_str())))
        .filter(|(_, name)| !vars::is_path_component(name))
        .map(|(what, name)| PlanError::BadName {
            what,
            name: name.to_string(),
        })
        .collect();
    let mut peers: BTreeMap<&str, PeerSettings> = BTreeMap::new();
    let mut controllers: BTreeMap<&str, ControllerSettings> = BTreeMap::new();
    for (machine, machine_roles) in roles {
        for (role, value) in machine_roles {
            let bad = |e: serde_json::Error| PlanError::BadSettings {
                machine: machine.clone(),
                role: role.clone(),
                message: e.to_string(),
            };
            match role.as_str() {
                PEER_ROLE => match PeerSettings::deserialize(value) {
                    Ok(s) => drop(peers.insert(machine, s)),
                    Err(e) => errors.push(bad(e)),
                },
                CONTROLLER_ROLE => match ControllerSettings::deserialize(value) {
                    Ok(s) => drop(controllers.insert(machine, s)),
                    Err(e) => errors.push(bad(e)),
                },
                _ => {}
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if peers.is_empty() {
        return Err(vec![PlanError::NoPeers]);
    }
    let mut notes = Vec::new();
    for machine in controllers.keys().filter(|m| !peers.contains_key(*m)) {
        notes.push(format!(
            "{machine}: controller only, not a mesh member (no agent configuration)"
        ));
    }

    let ipv6_network = agreed_network(
        &controllers,
        "ipv6Network",
        |c| c.ipv6_network.as_deref(),
        addresses::parse_ipv6_network,
        &mut errors,
    )
    .unwrap_or_else(|| addresses::derive_ipv6_network(instance));
    let ipv4 = plan_ipv4(instance, &peers, &controllers, &mut errors);
    let mut problems = ipv4.problems;
    let ipv6: BTreeMap<&str, Ipv6Addr> = peers
        .keys()
        .map(|m| (*m, addresses::member_ipv6(ipv6_network, m)))
        .collect();
    let ipv6_list: Vec<(String, Ipv6Addr)> =
        ipv6.iter().map(|(m, a)| (m.to_string(), *a)).collect();
    problems.extend(addresses::check_ipv6(&ipv6_list));
    errors.extend(problems.iter().map(|p| PlanError::Address(p.to_string())));

    let networks = Networks {
        ipv4: ipv4.network,
        ipv6: ipv6_network,
    };
    let statics = ipv4.statics;
    for machine in peers.keys() {
        if !statics.contains_key(machine) {
            notes.push(match ipv4.leasing.first() {
                Some(c) => {
                    format!("{machine}: IPv4 leased by controller {c} (IPv6 only until then)")
                }
                None => format!("{machine}: IPv6 only (no static ipv4 and no dynamic leases)"),
            });
        }
    }

    // Controllers' keys too: agents pin a controller's node key, also one that is not a member.
    let (keys, network_key) = vars::read_keys(
        instance,
        peers
            .keys()
            .chain(controllers.keys().filter(|m| !peers.contains_key(*m)))
            .copied(),
        keys_dir,
        read_key,
        &mut errors,
    );

    let mut members: BTreeMap<&str, Member> = BTreeMap::new();
    for (machine, s) in &peers {
        let routes = parse_cidrs(machine, "routes", &s.routes, &mut errors);
        let ip_ranges = expand_ip_ranges(machine, &s.ip_ranges, networks, &mut errors);
        let interface = match &s.interface {
            Some(name) => {
                if let Err(e) = addresses::check_interface_name(name) {
                    errors.push(PlanError::BadInterface {
                        machine: machine.to_string(),
                        message: e.to_string(),
                    });
                }
                name.clone()
            }
            None => addresses::interface_name(instance),
        };
        let mut endpoints = s.endpoints.clone();
        if let (true, Some(c)) = (endpoints.is_empty(), controllers.get(machine)) {
            endpoints.push(host_port(&c.endpoint, s.port));
        }
        let addresses = Addresses {
            ipv4: statics.get(machine).copied(),
            ipv6: ipv6[machine],
        };
        members.insert(
            machine,
            Member {
                routes,
                ip_ranges,
                interface,
                endpoints,
                addresses,
            },
        );
    }
    let claims = members
        .iter()
        .map(|(name, m)| (*name, owned_prefixes(&m.addresses, &m.routes)));
    let is_address = |machine: &str, prefix: &IpNet| {
        let own = members[machine].addresses;
        prefix.prefix_len() == prefix.max_prefix_len()
            && (own.ipv4.map(IpAddr::V4) == Some(prefix.addr())
                || IpAddr::V6(own.ipv6) == prefix.addr())
    };
    errors.extend(
        find_clashes(claims)
            .into_iter()
            // Two members with one address are already an address problem.
            .filter(|c| !(is_address(&c.first, &c.prefix) && is_address(&c.second, &c.prefix)))
            .map(PlanError::SharedPrefix),
    );
    // A missing network key has pushed an error, so `None` never comes with an empty list.
    let network_public_key = match network_key {
        Some(key) if errors.is_empty() => key,
        _ => return Err(errors),
    };

    let controller_list: Vec<ControllerConfig> = controllers
        .iter()
        .map(|(name, c)| ControllerConfig {
            name: name.to_string(),
            endpoint: host_port(&c.endpoint, c.control_port),
            node_public_key: keys.get(name).map(|k| k.1),
            relay_endpoint: c.relay.enable.then(|| host_port(&c.endpoint, c.relay.port)),
        })
        .collect();
    let public: BTreeMap<String, PeerConfig> = members
        .iter()
        .map(|(name, m)| {
            let entry = PeerConfig {
                name: name.to_string(),
                wireguard_public_key: keys[name].0,
                node_public_key: keys[name].1,
                addresses: m.addresses,
                endpoints: m.endpoints.clone(),
                routes: m.routes.clone(),
                persistent_keepalive: peers[name].persistent_keepalive,
            };
            (name.to_string(), entry)
        })
        .collect();
    let mut machines = BTreeMap::new();
    for (machine, s) in &peers {
        let me = &members[machine];
        let machine_roles = &roles[*machine];
        machines.insert(
            machine.to_string(),
            AgentConfig {
                version: CONFIG_VERSION,
                instance: instance.to_string(),
                machine: machine.to_string(),
                roles: machine_roles
                    .keys()
                    .filter(|r| *r == PEER_ROLE || *r == CONTROLLER_ROLE)
                    .cloned()
                    .collect(),
                settings: machine_roles.clone(),
                interface: me.interface.clone(),
                listen_port: s.port,
                mtu: s.mtu,
                persistent_keepalive: s.persistent_keepalive,
                network: networks,
                addresses: me.addresses,
                ip_ranges: me.ip_ranges.clone(),
                routes: me.routes.clone(),
                peers: Vec::new(),
                controllers: controller_list.clone(),
                network_public_key,
            },
        );
    }
    let inventory: Vec<MemberConfig> = public
        .values()
        .map(|p| MemberConfig {
            name: p.name.clone(),
            wireguard_public_key: p.wireguard_public_key,
            node_public_key: p.node_public_key,
            addresses: p.addresses,
            endpoints: p.endpoints.clone(),
            routes: p.routes.clone(),
            controller: controllers.contains_key(p.name.as_str()),
        })
        .collect();
    let controllers = controllers
        .iter()
        .map(|(machine, c)| {
            // A range is only checked (and only meaningful) when leasing is on.
            let range = c
                .dynamic_ip
                .range
                .as_deref()
                .filter(|_| c.dynamic_ip.enable)
                .and_then(|text| addresses::parse_ipv4_network(text).ok());
            let file = ControllerFile {
                version: CONFIG_VERSION,
                instance: instance.to_string(),
                machine: machine.to_string(),
                endpoint: c.endpoint.clone(),
                control_port: c.control_port,
                relay: c.relay,
                network: networks,
                dynamic_ip: controller_config::DynamicIp {
                    enable: c.dynamic_ip.enable,
                    range,
                },
                network_public_key,
                network_key_path: network_secret_path(instance),
                members: inventory.clone(),
            };
            (machine.to_string(), file)
        })
        .collect();
    Ok(Plan {
        machines,
        members: public,
        network_public_key,
        controllers,
        notes,
    })
}

/// The IPv4 side of an instance and what is wrong with it.
struct Ipv4Plan<'m> {
    /// `None` when the instance is IPv6 only.
    network: Option<Ipv4Net>,
    statics: BTreeMap<&'m str, Ipv4Addr>,
    /// Controllers that lease addresses dynamically.
    leasing: Vec<&'m str>,
    problems: Vec<AddressProblem>,
}

/// The IPv4 network is used only when some member has a static `ipv4`, a controller leases
/// addresses or `ipv4Network` is set: `ipv4Network`, else derived from the instance name. Static
/// addresses and dynamic ranges are checked against it.
fn plan_ipv4<'m>(
    instance: &str,
    peers: &BTreeMap<&'m str, PeerSettings>,
    controllers: &BTreeMap<&'m str, ControllerSettings>,
    errors: &mut Vec<PlanError>,
) -> Ipv4Plan<'m> {
    let explicit_ipv4 = agreed_network(
        controllers,
        "ipv4Network",
        |c| c.ipv4_network.as_deref(),
        addresses::parse_ipv4_network,
        errors,
    );

    let mut statics: BTreeMap<&'m str, Ipv4Addr> = BTreeMap::new();
    for (machine, s) in peers {
        if let Some(text) = &s.ipv4 {
            match text.parse() {
                Ok(a) => drop(statics.insert(machine, a)),
                Err(_) => errors.push(PlanError::BadSetting {
                    machine: machine.to_string(),
                    setting: "ipv4".into(),
                    value: text.clone(),
                    expected: "an IPv4 address like 100.77.0.5",
                }),
            }
        }
    }
    let leasing: Vec<&'m str> = controllers
        .iter()
        .filter(|(_, c)| c.dynamic_ip.enable)
        .map(|(m, _)| *m)
        .collect();
    let ipv4_network = (explicit_ipv4.is_some() || !statics.is_empty() || !leasing.is_empty())
        .then(|| explicit_ipv4.unwrap_or_else(|| addresses::derive_ipv4_network(instance)));

    let mut ranges = Vec::new();
    for (machine, c) in controllers.iter().filter(|(_, c)| c.dynamic_ip.enable) {
        if let Some(text) = &c.dynamic_ip.range {
            match addresses::parse_ipv4_network(text) {
                Ok(range) => ranges.push(DynamicRange {
                    controller: machine.to_string(),
                    range,
                }),
                Err(e) => errors.push(PlanError::BadNetwork {
                    machine: machine.to_string(),
                    setting: "dynamicIp.range",
                    message: e.to_string(),
                }),
            }
        }
    }
    let static_list: Vec<(String, Ipv4Addr)> =
        statics.iter().map(|(m, a)| (m.to_string(), *a)).collect();
    let problems = ipv4_network
        .map(|net| addresses::check_ipv4(net, &static_list, &ranges))
        .unwrap_or_default();
    Ipv4Plan {
        network: ipv4_network,
        statics,
        leasing,
        problems,
    }
}

struct Member {
    routes: Vec<IpNet>,
    ip_ranges: Vec<IpNet>,
    interface: String,
    endpoints: Vec<String>,
    addresses: Addresses,
}

/// `host:port`, with brackets around an IPv6 literal.
pub fn host_port(host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
        _ => format!("{host}:{port}"),
    }
}

fn agreed_network<N: PartialEq + Copy + fmt::Display, E: fmt::Display>(
    controllers: &BTreeMap<&str, ControllerSettings>,
    setting: &'static str,
    get: impl Fn(&ControllerSettings) -> Option<&str>,
    parse: impl Fn(&str) -> Result<N, E>,
    errors: &mut Vec<PlanError>,
) -> Option<N> {
    let mut agreed: Option<(&str, N)> = None;
    for (machine, c) in controllers {
        let Some(text) = get(c) else { continue };
        match parse(text) {
            Ok(net) => match agreed {
                Some((first, prev)) if prev != net => errors.push(PlanError::ConflictingNetworks {
                    setting,
                    first: (first.to_string(), prev.to_string()),
                    second: (machine.to_string(), net.to_string()),
                }),
                Some(_) => {}
                None => agreed = Some((machine, net)),
            },
            Err(e) => errors.push(PlanError::BadNetwork {
                machine: machine.to_string(),
                setting,
                message: e.to_string(),
            }),
        }
    }
    agreed.map(|(_, net)| net)
}

fn parse_cidrs(
    machine: &str,
    setting: &str,
    texts: &[String],
    errors: &mut Vec<PlanError>,
) -> Vec<IpNet> {
    let mut out = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        match text.parse::<IpNet>() {
            Ok(net) => out.push(net),
            Err(_) => errors.push(PlanError::BadSetting {
                machine: machine.to_string(),
                setting: format!("{setting}[{i}]"),
                value: text.clone(),
                expected: "a CIDR like 100.100.0.0/24 or fd00:1::/64",
            }),
        }
    }
    out
}

fn expand_ip_ranges(
    machine: &str,
    texts: &[String],
    networks: Networks,
    errors: &mut Vec<PlanError>,
) -> Vec<IpNet> {
    let mut out: Vec<IpNet> = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let nets: Vec<IpNet> = if text == "all" {
            networks
                .ipv4
                .map(IpNet::V4)
                .into_iter()
                .chain([IpNet::V6(networks.ipv6)])
                .collect()
        } else {
            parse_cidrs(
                machine,
                &format!("ipRanges[{i}]"),
                std::slice::from_ref(text),
                errors,
            )
        };
        for net in nets {
            if !out.contains(&net) {
                out.push(net);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{NodePublicKey, WireguardPublicKey};
    use serde_json::json;
    use std::path::PathBuf;

    fn peer(overrides: serde_json::Value) -> serde_json::Value {
        let mut s = json!({
            "endpoints": [], "interface": null, "ipRanges": ["all"], "ipv4": null,
            "mtu": 1420, "persistentKeepalive": 25, "port": 51820, "routes": []
        });
        for (k, v) in overrides.as_object().unwrap() {
            s[k] = v.clone();
        }
        s
    }

    fn controller(overrides: serde_json::Value) -> serde_json::Value {
        let mut s = json!({
            "controlPort": 51821, "dynamicIp": {"enable": false, "range": null},
            "ipv4Network": null, "ipv6Network": null, "endpoint": "vpn.example.org"
        });
        for (k, v) in overrides.as_object().unwrap() {
            s[k] = v.clone();
        }
        s
    }

    type Roles = BTreeMap<String, BTreeMap<String, serde_json::Value>>;

    fn example() -> Roles {
        let mut roles = Roles::new();
        roles.insert(
            "server".into(),
            BTreeMap::from([
                (
                    "controller".into(),
                    controller(json!({"dynamicIp": {"enable": true, "range": null}})),
                ),
                ("peer".into(), peer(json!({}))),
            ]),
        );
        roles.insert(
            "laptop".into(),
            BTreeMap::from([("peer".into(), peer(json!({"ipv4": "100.96.0.5"})))]),
        );
        roles.insert(
            "desktop".into(),
            BTreeMap::from([(
                "peer".into(),
                peer(json!({"routes": ["100.100.0.0/24"], "endpoints": ["198.18.0.3:51820"]})),
            )]),
        );
        roles
    }

    /// Deterministic distinct keys per file, standing in for a vars directory.
    fn keys_for(machines: &[&str], skip: Option<&Path>) -> BTreeMap<PathBuf, String> {
        let mut files = BTreeMap::new();
        let dir = Path::new("/clan");
        for (i, m) in machines.iter().enumerate() {
            files.insert(
                dir.join(wireguard_key_path("my-vpn", m)),
                WireguardPublicKey::from_bytes([i as u8; 32]).to_base64(),
            );
            files.insert(
                dir.join(node_key_path("my-vpn", m)),
                format!("{}\n", NodePublicKey::from_bytes([100 + i as u8; 32])),
            );
        }
        files.insert(
            dir.join(network_key_path("my-vpn")),
            NetworkPublicKey::from_bytes([200; 32]).to_base64(),
        );
        if let Some(skip) = skip {
            files.remove(&dir.join(skip));
        }
        files
    }

    fn run(roles: &Roles, files: &BTreeMap<PathBuf, String>) -> Result<Plan, Vec<PlanError>> {
        plan("my-vpn", roles, Path::new("/clan"), &mut |p: &Path| {
            files
                .get(p)
                .cloned()
                .ok_or_else(|| "No such file or directory".to_string())
        })
    }

    #[test]
    fn example_plan_has_full_peer_lists() {
        let plan = run(
            &example(),
            &keys_for(&["desktop", "laptop", "server"], None),
        )
        .unwrap();
        assert_eq!(
            plan.machines.keys().collect::<Vec<_>>(),
            ["desktop", "laptop", "server"]
        );
        let server = &plan.config("server").unwrap();
        assert_eq!(server.roles, ["controller", "peer"]);
        assert_eq!(server.interface, "wm-my-vpn");
        assert_eq!(server.network.ipv6.to_string(), "fd8c:65c0:2740::/48");
        assert_eq!(server.network.ipv4.unwrap().to_string(), "100.96.0.0/16");
        assert_eq!(
            server
                .ip_ranges
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>(),
            ["100.96.0.0/16", "fd8c:65c0:2740::/48"]
        );
        assert_eq!(server.addresses.ipv4, None);
        assert_eq!(
            server.addresses.ipv6.to_string(),
            "fd8c:65c0:2740:31b5:2523:5103:2c9b:3e7a"
        );
        assert_eq!(
            server.controllers,
            [ControllerConfig {
                name: "server".into(),
                endpoint: "vpn.example.org:51821".into(),
                node_public_key: Some(NodePublicKey::from_bytes([102; 32])),
                relay_endpoint: Some("vpn.example.org:51822".into()),
            }]
        );
        assert_eq!(
            server.network_public_key,
            NetworkPublicKey::from_bytes([200; 32])
        );
        let names: Vec<&str> = server.peers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["desktop", "laptop"]);
        let laptop_in_server = &server.peers[1];
        assert_eq!(
            laptop_in_server.addresses.ipv4,
            Some(Ipv4Addr::new(100, 96, 0, 5))
        );
        assert_eq!(
            laptop_in_server.wireguard_public_key,
            WireguardPublicKey::from_bytes([1; 32])
        );
        assert_eq!(
            laptop_in_server.node_public_key,
            NodePublicKey::from_bytes([101; 32])
        );
        let laptop = &plan.config("laptop").unwrap();
        let server_in_laptop = laptop.peers.iter().find(|p| p.name == "server").unwrap();
        assert_eq!(server_in_laptop.endpoints, ["vpn.example.org:51820"]);
        let desktop_in_laptop = laptop.peers.iter().find(|p| p.name == "desktop").unwrap();
        assert_eq!(desktop_in_laptop.endpoints, ["198.18.0.3:51820"]);
        assert_eq!(desktop_in_laptop.routes[0].to_string(), "100.100.0.0/24");
        assert_eq!(laptop.settings["peer"]["ipv4"], "100.96.0.5");
        assert!(
            plan.notes.contains(
                &"server: IPv4 leased by controller server (IPv6 only until then)".to_string()
            ),
            "{:?}",
            plan.notes
        );
    }

    #[test]
    fn each_controller_gets_its_configuration() {
        let plan = run(
            &example(),
            &keys_for(&["desktop", "laptop", "server"], None),
        )
        .unwrap();
        assert_eq!(plan.controllers.keys().collect::<Vec<_>>(), ["server"]);
        let file = &plan.controllers["server"];
        assert_eq!(ControllerFile::from_json(&file.to_json()).unwrap(), *file);
        assert_eq!(file.machine, "server");
        assert_eq!(file.control_port, 51821);
        assert_eq!(file.endpoint, "vpn.example.org");
        assert!(file.dynamic_ip.enable);
        assert_eq!(file.lease_range(), file.network.ipv4);
        assert_eq!(
            file.network_key_path,
            "/run/secrets/vars/wiremesh-network-my-vpn/network-private-key"
        );
        let names: Vec<&str> = file.members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["desktop", "laptop", "server"]);
        let laptop = file.member("laptop").unwrap();
        assert_eq!(laptop.addresses.ipv4, Some(Ipv4Addr::new(100, 96, 0, 5)));
        assert_eq!(laptop.node_public_key, NodePublicKey::from_bytes([101; 32]));
        assert!(!laptop.controller);
        assert!(file.member("server").unwrap().controller);
        assert_eq!(file.member("server").unwrap().addresses.ipv4, None);
    }

    /// Keepalives hold the local NAT mapping open, so every peer entry carries the local setting.
    #[test]
    fn peer_entries_carry_the_local_keepalive() {
        let mut roles = example();
        roles.get_mut("laptop").unwrap().insert(
            "peer".into(),
            peer(json!({"ipv4": "100.96.0.5", "persistentKeepalive": null})),
        );
        let plan = run(&roles, &keys_for(&["desktop", "laptop", "server"], None)).unwrap();
        let configs: Vec<AgentConfig> = plan.configs().collect();
        assert_eq!(configs.len(), 3);
        for config in &configs {
            assert_eq!(config.peers.len(), 2, "{}", config.machine);
            for p in &config.peers {
                assert_eq!(p.persistent_keepalive, config.persistent_keepalive);
            }
        }
        assert_eq!(plan.members["laptop"].persistent_keepalive, None);
        assert_eq!(plan.members["server"].persistent_keepalive, Some(25));
    }

    #[test]
    fn ipv6_only_without_static_or_dynamic_ipv4() {
        let mut roles = example();
        roles
            .get_mut("server")
            .unwrap()
            .insert("controller".into(), controller(json!({})));
        roles
            .get_mut("laptop")
            .unwrap()
            .insert("peer".into(), peer(json!({})));
        let plan = run(&roles, &keys_for(&["desktop", "laptop", "server"], None)).unwrap();
        assert_eq!(plan.machines["laptop"].network.ipv4, None);
        assert_eq!(plan.machines["laptop"].ip_ranges.len(), 1);
        assert!(
            plan.notes
                .contains(&"laptop: IPv6 only (no static ipv4 and no dynamic leases)".to_string())
        );
    }

    #[test]
    fn missing_key_names_the_expected_file() {
        let skip = node_key_path("my-vpn", "laptop");
        let errors = run(
            &example(),
            &keys_for(&["desktop", "laptop", "server"], Some(&skip)),
        )
        .unwrap_err();
        assert_eq!(
            errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            [
                "machine \"laptop\": node public key missing: expected the file /clan/vars/per-machine/laptop/wiremesh-my-vpn/node-public-key/value (No such file or directory)"
            ]
        );
        let errors = run(
            &example(),
            &keys_for(
                &["desktop", "laptop", "server"],
                Some(&network_key_path("my-vpn")),
            ),
        )
        .unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            "network public key missing: expected the file /clan/vars/shared/wiremesh-network-my-vpn/network-public-key/value (No such file or directory)"
        );
    }

    #[test]
    fn bad_key_file_is_named() {
        let mut files = keys_for(&["desktop", "laptop", "server"], None);
        files.insert(
            Path::new("/clan").join(wireguard_key_path("my-vpn", "desktop")),
            "AAAA".into(),
        );
        let errors = run(&example(), &files).unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            "machine \"desktop\": WireGuard public key in /clan/vars/per-machine/desktop/wiremesh-my-vpn/wireguard-public-key/value: decodes to 3 bytes, expected 32"
        );
    }

    #[test]
    fn shared_keys_name_both_machines() {
        let mut files = keys_for(&["desktop", "laptop", "server"], None);
        let laptop =
            files[&Path::new("/clan").join(wireguard_key_path("my-vpn", "laptop"))].clone();
        files.insert(
            Path::new("/clan").join(wireguard_key_path("my-vpn", "server")),
            laptop,
        );
        let errors = run(&example(), &files).unwrap_err();
        assert_eq!(
            errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            [
                "machines \"laptop\" and \"server\" have the same WireGuard public key; each machine needs its own (regenerate the vars of one)"
            ]
        );
    }

    #[test]
    fn an_identical_prefix_claimed_twice_names_both_machines() {
        let mut roles = example();
        roles
            .get_mut("laptop")
            .unwrap()
            .insert("peer".into(), peer(json!({"routes": ["100.100.0.7/24"]})));
        roles.get_mut("server").unwrap().insert(
            "peer".into(),
            peer(json!({"routes": ["fd00:99::/64", "100.100.0.0/25"]})),
        );
        let errors = run(&roles, &keys_for(&["desktop", "laptop", "server"], None)).unwrap_err();
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        // desktop's 100.100.0.0/24 (see `example`) is laptop's too; server's /25 nests inside it.
        assert_eq!(
            text,
            [
                "members \"desktop\" and \"laptop\" both claim 100.100.0.0/24: a prefix has one \
              owner (a prefix nested inside another member's is allowed, and the longest one \
              decides)"
            ]
        );
    }

    #[test]
    fn address_problems_name_both_machines() {
        let mut roles = example();
        roles
            .get_mut("desktop")
            .unwrap()
            .insert("peer".into(), peer(json!({"ipv4": "100.96.0.5"})));
        roles.get_mut("server").unwrap().insert(
            "controller".into(),
            controller(json!({"dynamicIp": {"enable": true, "range": "100.96.0.0/24"}})),
        );
        let errors = run(&roles, &keys_for(&["desktop", "laptop", "server"], None)).unwrap_err();
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert!(
            text.contains(
                &"machines \"desktop\" and \"laptop\" both have address 100.96.0.5".to_string()
            ),
            "{text:?}"
        );
        assert!(text.iter().any(|t| t.starts_with("machine \"laptop\": static ipv4 100.96.0.5 lies in the dynamic range 100.96.0.0/24 that controller \"server\"")), "{text:?}");
    }

    #[test]
    fn controllers_must_agree_on_networks() {
        let mut roles = example();
        roles.get_mut("server").unwrap().insert(
            "controller".into(),
            controller(json!({"ipv4Network": "100.77.0.0/16"})),
        );
        roles.insert(
            "backup".into(),
            BTreeMap::from([(
                "controller".into(),
                controller(json!({"ipv4Network": "100.78.0.0/16"})),
            )]),
        );
        let errors = run(&roles, &keys_for(&["desktop", "laptop", "server"], None)).unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            "controllers \"backup\" and \"server\" set different ipv4Network: 100.78.0.0/16 and 100.77.0.0/16"
        );
    }

    #[test]
    fn controller_only_machines_get_no_config_and_a_note() {
        let mut roles = example();
        roles.insert(
            "backup".into(),
            BTreeMap::from([(
                "controller".into(),
                controller(json!({"endpoint": "fd00::5"})),
            )]),
        );
        let machines = ["desktop", "laptop", "server", "backup"];
        let plan = run(&roles, &keys_for(&machines, None)).unwrap();
        assert!(!plan.machines.contains_key("backup"));
        assert_eq!(plan.config("backup"), None);
        assert!(plan.notes.contains(
            &"backup: controller only, not a mesh member (no agent configuration)".to_string()
        ));
        let backup = &plan.machines["laptop"].controllers[0];
        assert_eq!(backup.endpoint, "[fd00::5]:51821");
        // Agents pin a controller's node key also when it is no member.
        assert_eq!(
            backup.node_public_key,
            Some(NodePublicKey::from_bytes([103; 32]))
        );
    }

    #[test]
    fn bad_settings_are_reported_not_panicked_on() {
        let mut roles = example();
        roles
            .get_mut("laptop")
            .unwrap()
            .insert("peer".into(), json!({"port": "x"}));
        let errors = run(&roles, &keys_for(&["desktop", "laptop", "server"], None)).unwrap_err();
        assert!(
            errors[0]
                .to_string()
                .starts_with("machine \"laptop\", role \"peer\": settings:"),
            "{}",
            errors[0]
        );
        let mut roles = example();
        roles.get_mut("laptop").unwrap().insert(
            "peer".into(),
            peer(json!({"interface": "much-too-long-name", "routes": ["nope"]})),
        );
        let text: Vec<String> = run(&roles, &keys_for(&["desktop", "laptop", "server"], None))
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert!(text.contains(&"machine \"laptop\": routes[0]: \"nope\" is not a CIDR like 100.100.0.0/24 or fd00:1::/64".to_string()), "{text:?}");
        assert!(
            text.iter()
                .any(|t| t.contains("is 18 bytes; Linux allows at most 15")),
            "{text:?}"
        );
        assert_eq!(
            run(&Roles::new(), &BTreeMap::new()).unwrap_err(),
            [PlanError::NoPeers]
        );
    }

    /// Names become directory names under the keys directory and file names under `--out`.
    #[test]
    fn names_that_would_leave_the_directory_are_refused() {
        for bad in ["../evil", "a/b", ".", "..", "", "nul\0"] {
            let mut roles = example();
            roles.insert(
                bad.into(),
                BTreeMap::from([("peer".into(), peer(json!({})))]),
            );
            let errors =
                run(&roles, &keys_for(&["desktop", "laptop", "server"], None)).unwrap_err();
            assert!(
                errors.contains(&PlanError::BadName {
                    what: "machine",
                    name: bad.into()
                }),
                "{bad:?}: {errors:?}"
            );
        }
        let errors = plan("../x", &example(), Path::new("/clan"), &mut |_: &Path| {
            Err("unread".to_string())
        })
        .unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            "instance name \"../x\" cannot name a directory: it must be non-empty, not `.` or `..`, and hold no `/` or NUL"
        );
        assert!(
            plan(
                "ümlaut vpn",
                &example(),
                Path::new("/clan"),
                &mut |_: &Path| { Err("unread".to_string()) }
            )
            .unwrap_err()
            .iter()
            .all(|e| !matches!(e, PlanError::BadName { .. }))
        );
    }
}
