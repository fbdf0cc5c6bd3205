//! The controller configuration file: what `wiremesh plan` writes for each controller of an
//! instance (`<machine>.controller.json`) and what `wiremesh-controller run --config FILE` reads.
//!
//! Schema (JSON, camelCase keys, `version` must be [`crate::config::CONFIG_VERSION`]). Unlike the agent
//! configuration, unknown keys are refused: the controller decides who is a member, and a
//! misspelt key in a hand-edited file must not pass silently.
//!
//! | key | type | meaning |
//! |---|---|---|
//! | `version` | int | always 1 for this schema |
//! | `instance`, `machine` | string | the Clan instance and the controller's machine name |
//! | `endpoint` | string | the host under which members reach the controller |
//! | `controlPort` | int | UDP port of the control channel (QUIC) |
//! | `relay` | {enable, port, memberRateMbit, memberMibPerHour} | the UDP probe and relay service for members behind NAT, and what each member may send through it (optional; on, port 51822, 100 Mbit/s, 10,240 MiB per hour) |
//! | `network` | {ipv4: CIDR or null, ipv6: CIDR} | the overlay networks |
//! | `dynamicIp` | {enable: bool, range: CIDR or null} | dynamic IPv4 leases; a null range leases from the whole IPv4 network |
//! | `networkPublicKey` | base64 | the network key's public half (checked against the key file) |
//! | `networkKeyPath` | string | where the controller machine holds the network private key |
//! | `members` | `[member]` | the inventory's members: name, wireguardPublicKey, nodePublicKey, addresses (`ipv4` is the static address or null), endpoints, routes, controller (bool) |
//!
//! Names and endpoints follow the netmap's rules; members are unique by name, by each key and by
//! each address; static addresses lie inside the IPv4 network and outside the dynamic range.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};

use crate::config::{Addresses, ConfigError, Networks, endpoint_at, name_at, parse_versioned};
use crate::keys::{NetworkPublicKey, NodePublicKey, WireguardPublicKey};

/// One controller's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ControllerFile {
    pub version: u32,
    pub instance: String,
    pub machine: String,
    pub endpoint: String,
    pub control_port: u16,
    /// Missing in files planned before NAT traversal: the relay is then on its default port.
    #[serde(default)]
    pub relay: Relay,
    pub network: Networks,
    pub dynamic_ip: DynamicIp,
    pub network_public_key: NetworkPublicKey,
    pub network_key_path: String,
    pub members: Vec<MemberConfig>,
}

/// The UDP probe and relay service that helps members behind NAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Relay {
    pub enable: bool,
    pub port: u16,
    /// What one member may send through the relay, in Mbit/s.
    pub member_rate_mbit: u32,
    /// What one member may send through the relay per hour, in MiB.
    pub member_mib_per_hour: u32,
}

impl Default for Relay {
    fn default() -> Self {
        Relay {
            enable: true,
            port: DEFAULT_RELAY_PORT,
            member_rate_mbit: 100,
            member_mib_per_hour: 10_240,
        }
    }
}

/// The relay's UDP port unless the inventory says otherwise: the one after the control port.
pub const DEFAULT_RELAY_PORT: u16 = 51822;

/// Dynamic IPv4 leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamicIp {
    pub enable: bool,
    pub range: Option<Ipv4Net>,
}

/// A member of the inventory as the controller knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MemberConfig {
    pub name: String,
    pub wireguard_public_key: WireguardPublicKey,
    pub node_public_key: NodePublicKey,
    /// `ipv4` is the static address, or null for a leased (or IPv6-only) member.
    pub addresses: Addresses,
    pub endpoints: Vec<String>,
    pub routes: Vec<IpNet>,
    /// The member also has the controller role.
    pub controller: bool,
}

impl ControllerFile {
    /// Parses and checks a controller configuration. The caller adds the file name.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let file: ControllerFile = parse_versioned(text)?;
        file.check().map_err(ConfigError::Invalid)?;
        Ok(file)
    }

    /// The JSON text: 2-space indentation, fields in schema order, trailing newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| unreachable!("ControllerFile always serialises: {e}"));
        text.push('\n');
        text
    }

    /// The range leases come from, `None` when the controller leases nothing.
    pub fn lease_range(&self) -> Option<Ipv4Net> {
        let network = self.network.ipv4?;
        self.dynamic_ip
            .enable
            .then(|| self.dynamic_ip.range.unwrap_or(network))
    }

    pub fn member(&self, name: &str) -> Option<&MemberConfig> {
        self.members.iter().find(|m| m.name == name)
    }

    fn check(&self) -> Result<(), String> {
        name_at("\"instance\"", &self.instance)?;
        name_at("\"machine\"", &self.machine)?;
        endpoint_at("\"endpoint\"", &self.endpoint)?;
        let ipv4_network = self.network.ipv4;
        if let (Some(range), network) = (self.dynamic_ip.range, ipv4_network) {
            match network {
                Some(net) if net.contains(&range) => {}
                Some(net) => {
                    return Err(format!(
                        "\"dynamicIp\".\"range\" {range} is not inside the IPv4 network {net}"
                    ));
                }
                None => {
                    return Err(format!(
                        "\"dynamicIp\".\"range\" is {range}, but \"network\".\"ipv4\" is null; set both or neither"
                    ));
                }
            }
        }
        if self.dynamic_ip.enable && ipv4_network.is_none() {
            return Err(
                "\"dynamicIp\".\"enable\" is true, but \"network\".\"ipv4\" is null, so there is nothing to lease from"
                    .into(),
            );
        }
        let mut seen: [BTreeMap<String, usize>; 5] = Default::default();
        for (i, m) in self.members.iter().enumerate() {
            let at = format!("\"members\"[{i}]");
            name_at(&format!("{at}.\"name\""), &m.name)?;
            for (j, endpoint) in m.endpoints.iter().enumerate() {
                endpoint_at(&format!("{at}.\"endpoints\"[{j}]"), endpoint)?;
            }
            if !self.network.ipv6.contains(&m.addresses.ipv6) {
                return Err(format!(
                    "{at}.\"addresses\".\"ipv6\" {} is outside the IPv6 network {}",
                    m.addresses.ipv6, self.network.ipv6
                ));
            }
            if let Some(address) = m.addresses.ipv4 {
                check_static(&at, address, ipv4_network, self.lease_range())?;
            }
            let fields = [
                ("name", m.name.clone()),
                ("WireGuard public key", m.wireguard_public_key.to_base64()),
                ("node public key", m.node_public_key.to_base64()),
                ("IPv6 address", m.addresses.ipv6.to_string()),
                (
                    "IPv4 address",
                    m.addresses.ipv4.map(|a| a.to_string()).unwrap_or_default(),
                ),
            ];
            for ((what, value), seen) in fields.into_iter().zip(seen.iter_mut()) {
                if value.is_empty() {
                    continue;
                }
                if let Some(first) = seen.insert(value, i) {
                    return Err(format!(
                        "{at} ({:?}) has the same {what} as \"members\"[{first}] ({:?})",
                        m.name, self.members[first].name
                    ));
                }
            }
        }
        Ok(())
    }
}

fn check_static(
    at: &str,
    address: Ipv4Addr,
    network: Option<Ipv4Net>,
    lease_range: Option<Ipv4Net>,
) -> Result<(), String> {
    let at = format!("{at}.\"addresses\".\"ipv4\"");
    let Some(net) = network else {
        return Err(format!(
            "{at} is {address}, but \"network\".\"ipv4\" is null"
        ));
    };
    if !net.contains(&address) {
        return Err(format!("{at} {address} is outside the IPv4 network {net}"));
    }
    if address == net.network() || address == net.broadcast() {
        return Err(format!(
            "{at} {address} is the network or broadcast address of {net}"
        ));
    }
    match lease_range {
        // Leasing from the whole network skips the static addresses; a narrower range must not
        // hold one.
        Some(range) if range != net && range.contains(&address) => Err(format!(
            "{at} {address} lies in the dynamic range {range}; pick an address outside it"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(i: u8, ipv4: Option<&str>) -> MemberConfig {
        MemberConfig {
            name: format!("m{i}"),
            wireguard_public_key: WireguardPublicKey::from_bytes([i; 32]),
            node_public_key: NodePublicKey::from_bytes([100 + i; 32]),
            addresses: Addresses {
                ipv4: ipv4.map(|a| a.parse().unwrap()),
                ipv6: format!("fd12:3456:789a::{i}").parse().unwrap(),
            },
            endpoints: vec![format!("198.18.0.{i}:51820")],
            routes: vec![],
            controller: i == 1,
        }
    }

    fn sample() -> ControllerFile {
        ControllerFile {
            version: 1,
            instance: "my-vpn".into(),
            machine: "m1".into(),
            endpoint: "vpn.example.org".into(),
            control_port: 51821,
            relay: Relay::default(),
            network: Networks {
                ipv4: Some("100.77.0.0/16".parse().unwrap()),
                ipv6: "fd12:3456:789a::/48".parse().unwrap(),
            },
            dynamic_ip: DynamicIp {
                enable: true,
                range: Some("100.77.128.0/17".parse().unwrap()),
            },
            network_public_key: NetworkPublicKey::from_bytes([7; 32]),
            network_key_path: "/run/secrets/network-key".into(),
            members: vec![member(1, Some("100.77.0.1")), member(2, None)],
        }
    }

    fn refused(file: &ControllerFile) -> String {
        ControllerFile::from_json(&file.to_json())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn round_trips_with_documented_key_names() {
        let text = sample().to_json();
        for key in [
            "\"controlPort\"",
            "\"dynamicIp\"",
            "\"networkPublicKey\"",
            "\"networkKeyPath\"",
            "\"wireguardPublicKey\"",
            "\"nodePublicKey\"",
        ] {
            assert!(text.contains(key), "{key} missing in {text}");
        }
        assert_eq!(ControllerFile::from_json(&text).unwrap(), sample());
        assert_eq!(
            sample().lease_range(),
            Some("100.77.128.0/17".parse().unwrap())
        );
    }

    #[test]
    fn unknown_keys_and_other_versions_are_refused() {
        let mut value = serde_json::to_value(sample()).unwrap();
        value["members"][1]["ipv4"] = serde_json::json!("100.77.0.9");
        let e = ControllerFile::from_json(&value.to_string()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("\"members\"[1].\"ipv4\": unknown field `ipv4`, expected one of"),
            "{e}"
        );
        let mut value = serde_json::to_value(sample()).unwrap();
        value["version"] = serde_json::json!(2);
        assert_eq!(
            ControllerFile::from_json(&value.to_string())
                .unwrap_err()
                .to_string(),
            "\"version\" is 2, but this build reads only version 1"
        );
    }

    #[test]
    fn schema_errors_name_the_json_path() {
        let mut value = serde_json::to_value(sample()).unwrap();
        value["members"][0]["addresses"]["ipv4"] = serde_json::json!("100.77.0.300");
        let e = ControllerFile::from_json(&value.to_string()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("\"members\"[0].\"addresses\".\"ipv4\": invalid IPv4 address syntax"),
            "{e}"
        );
        let mut value = serde_json::to_value(sample()).unwrap();
        value["dynamicIp"]["range"] = serde_json::json!("fd00::/64");
        let e = ControllerFile::from_json(&value.to_string()).unwrap_err();
        assert!(
            e.to_string().starts_with("\"dynamicIp\".\"range\": "),
            "{e}"
        );
    }

    #[test]
    fn members_are_unique_and_addresses_fit_the_networks() {
        let mut f = sample();
        f.members.push(MemberConfig {
            name: "m3".into(),
            ..member(2, None)
        });
        assert_eq!(
            refused(&f),
            "\"members\"[2] (\"m3\") has the same WireGuard public key as \"members\"[1] (\"m2\")"
        );
        let mut f = sample();
        f.members[1].addresses.ipv4 = Some("100.77.0.1".parse().unwrap());
        assert_eq!(
            refused(&f),
            "\"members\"[1] (\"m2\") has the same IPv4 address as \"members\"[0] (\"m1\")"
        );
        let mut f = sample();
        f.members[1].addresses.ipv4 = Some("100.77.200.1".parse().unwrap());
        assert_eq!(
            refused(&f),
            "\"members\"[1].\"addresses\".\"ipv4\" 100.77.200.1 lies in the dynamic range 100.77.128.0/17; pick an address outside it"
        );
        let mut f = sample();
        f.members[1].addresses.ipv4 = Some("100.78.0.1".parse().unwrap());
        assert_eq!(
            refused(&f),
            "\"members\"[1].\"addresses\".\"ipv4\" 100.78.0.1 is outside the IPv4 network 100.77.0.0/16"
        );
        let mut f = sample();
        f.members[0].addresses.ipv6 = "fd00::1".parse().unwrap();
        assert!(refused(&f).contains("is outside the IPv6 network"));
        let mut f = sample();
        f.members[0].name = "a\nb".into();
        assert!(refused(&f).starts_with("\"members\"[0].\"name\" is \"a\\nb\""));
    }

    #[test]
    fn dynamic_leases_need_an_ipv4_network() {
        let mut f = sample();
        f.network.ipv4 = None;
        f.members[0].addresses.ipv4 = None;
        assert!(refused(&f).starts_with("\"dynamicIp\".\"range\" is 100.77.128.0/17"));
        f.dynamic_ip.range = None;
        assert!(refused(&f).starts_with("\"dynamicIp\".\"enable\" is true"));
        f.dynamic_ip.enable = false;
        assert_eq!(ControllerFile::from_json(&f.to_json()).unwrap(), f);
        assert_eq!(f.lease_range(), None);
        let mut f = sample();
        f.dynamic_ip.range = Some("100.76.0.0/24".parse().unwrap());
        assert_eq!(
            refused(&f),
            "\"dynamicIp\".\"range\" 100.76.0.0/24 is not inside the IPv4 network 100.77.0.0/16"
        );
    }
}
