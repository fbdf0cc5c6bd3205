//! The agent configuration file: what `wiremesh plan` writes for each machine and what
//! `wiremesh-peer run --config FILE` reads. It is the precomputed peer list that lets a mesh come up
//! with no controller.
//!
//! Schema (JSON, camelCase keys; unknown keys are tolerated so that a newer minor version still
//! loads, but `version` must be [`CONFIG_VERSION`]):
//!
//! | key | type | meaning |
//! |---|---|---|
//! | `version` | int | always 1 for this schema |
//! | `instance`, `machine` | string | the Clan instance and this machine's name |
//! | `roles` | `[string]` | this machine's roles in the instance, sorted |
//! | `settings` | {role: object} | the final (merged) settings per role |
//! | `interface` | string | interface name, at most 15 bytes |
//! | `listenPort`, `mtu` | int | UDP port and tunnel MTU |
//! | `persistentKeepalive` | int or null | seconds; this machine's own setting |
//! | `network` | {ipv4: CIDR or null, ipv6: CIDR} | the overlay networks |
//! | `addresses` | {ipv4: addr or null, ipv6: addr} | this machine's overlay addresses |
//! | `ipRanges` | `[CIDR]` | what this machine routes into the mesh ("all" expanded) |
//! | `routes` | `[CIDR]` | prefixes this machine advertises to the others |
//! | `peers` | `[peer]` | every other member: name, wireguardPublicKey, nodePublicKey, addresses, endpoints (`host:port`, `[v6]:port`), routes, persistentKeepalive |
//! | `controllers` | [{name, endpoint}] | control endpoints (`host:port`) |
//! | `networkPublicKey` | base64 | the pinned network key that signs netmaps |

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::keys::{NetworkPublicKey, NodePublicKey, WireguardPublicKey};

/// The schema version this crate writes and reads.
pub const CONFIG_VERSION: u32 = 1;

/// One machine's agent configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentConfig {
    pub version: u32,
    pub instance: String,
    pub machine: String,
    pub roles: Vec<String>,
    pub settings: BTreeMap<String, serde_json::Value>,
    pub interface: String,
    pub listen_port: u16,
    pub mtu: u32,
    pub persistent_keepalive: Option<u16>,
    pub network: Networks,
    pub addresses: Addresses,
    pub ip_ranges: Vec<IpNet>,
    pub routes: Vec<IpNet>,
    pub peers: Vec<PeerConfig>,
    pub controllers: Vec<ControllerConfig>,
    pub network_public_key: NetworkPublicKey,
}

/// The overlay networks of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Networks {
    pub ipv4: Option<Ipv4Net>,
    pub ipv6: Ipv6Net,
}

/// A member's overlay addresses; `ipv4` is null for an IPv6-only member (or one whose IPv4 address
/// is leased dynamically by the controller).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Addresses {
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Ipv6Addr,
}

/// Another member of the mesh, as this machine sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerConfig {
    pub name: String,
    pub wireguard_public_key: WireguardPublicKey,
    pub node_public_key: NodePublicKey,
    pub addresses: Addresses,
    pub endpoints: Vec<String>,
    pub routes: Vec<IpNet>,
    pub persistent_keepalive: Option<u16>,
}

/// A controller's control-plane endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerConfig {
    pub name: String,
    pub endpoint: String,
}

/// Why a configuration text was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("not valid JSON: {0}")]
    Json(serde_json::Error),
    #[error("\"version\" is missing; expected {CONFIG_VERSION}")]
    MissingVersion,
    #[error("\"version\" is {found}, but this build reads only version {CONFIG_VERSION}")]
    UnsupportedVersion { found: serde_json::Value },
    #[error("{0}")]
    Schema(serde_json::Error),
    #[error("{0}")]
    Invalid(String),
}

impl AgentConfig {
    /// Parses a configuration; checks `version` first so an old agent reading a new file says so
    /// instead of reporting a confusing field error. The caller adds the file name.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(ConfigError::Json)?;
        match value.get("version") {
            None => return Err(ConfigError::MissingVersion),
            Some(v) if v.as_u64() != Some(u64::from(CONFIG_VERSION)) => {
                return Err(ConfigError::UnsupportedVersion { found: v.clone() });
            }
            Some(_) => {}
        }
        // Parsed again from the text, not from `value`, so that errors carry a line and column.
        let config: AgentConfig = serde_json::from_str(text).map_err(ConfigError::Schema)?;
        config.check().map_err(ConfigError::Invalid)?;
        Ok(config)
    }

    /// A rule serde cannot express: peers are unique by name and by key and are not this machine.
    /// (The agent checks the interface name and MTU against what its platform allows.)
    fn check(&self) -> Result<(), String> {
        let mut names = std::collections::BTreeSet::new();
        let mut keys = std::collections::BTreeSet::new();
        for (i, peer) in self.peers.iter().enumerate() {
            if peer.name == self.machine {
                return Err(format!("\"peers\"[{i}] is this machine ({:?})", peer.name));
            }
            if !names.insert(&peer.name) {
                return Err(format!(
                    "\"peers\"[{i}]: peer {:?} appears twice",
                    peer.name
                ));
            }
            if !keys.insert(peer.wireguard_public_key) {
                return Err(format!(
                    "\"peers\"[{i}] ({:?}): WireGuard public key already used by another peer",
                    peer.name
                ));
            }
        }
        Ok(())
    }

    /// The JSON text: 2-space indentation, fields in schema order, trailing newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| unreachable!("AgentConfig always serialises: {e}"));
        text.push('\n');
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AgentConfig {
        let key = [7u8; 32];
        AgentConfig {
            version: 1,
            instance: "my-vpn".into(),
            machine: "laptop".into(),
            roles: vec!["peer".into()],
            settings: BTreeMap::from([("peer".into(), serde_json::json!({"port": 51820}))]),
            interface: "wm-my-vpn".into(),
            listen_port: 51820,
            mtu: 1420,
            persistent_keepalive: Some(25),
            network: Networks {
                ipv4: Some("100.77.0.0/16".parse().unwrap()),
                ipv6: "fd12:3456:789a::/48".parse().unwrap(),
            },
            addresses: Addresses {
                ipv4: Some("100.77.0.5".parse().unwrap()),
                ipv6: "fd12:3456:789a:1234:5678:9abc:def0:1234".parse().unwrap(),
            },
            ip_ranges: vec!["100.77.0.0/16".parse().unwrap()],
            routes: vec![],
            peers: vec![PeerConfig {
                name: "server".into(),
                wireguard_public_key: WireguardPublicKey::from_bytes(key),
                node_public_key: NodePublicKey::from_bytes(key),
                addresses: Addresses {
                    ipv4: None,
                    ipv6: "fd12:3456:789a::1".parse().unwrap(),
                },
                endpoints: vec!["198.18.0.1:51820".into()],
                routes: vec!["100.100.0.0/24".parse().unwrap()],
                persistent_keepalive: None,
            }],
            controllers: vec![ControllerConfig {
                name: "server".into(),
                endpoint: "vpn.example.org:51821".into(),
            }],
            network_public_key: NetworkPublicKey::from_bytes(key),
        }
    }

    #[test]
    fn round_trips_with_documented_key_names() {
        let text = sample().to_json();
        for key in [
            "\"listenPort\"",
            "\"persistentKeepalive\"",
            "\"ipRanges\"",
            "\"wireguardPublicKey\"",
            "\"nodePublicKey\"",
            "\"networkPublicKey\"",
        ] {
            assert!(text.contains(key), "{key} missing in {text}");
        }
        assert_eq!(AgentConfig::from_json(&text).unwrap(), sample());
    }

    #[test]
    fn tolerates_unknown_keys_but_not_other_versions() {
        let mut value = serde_json::to_value(sample()).unwrap();
        value["futureField"] = serde_json::json!(true);
        assert_eq!(
            AgentConfig::from_json(&value.to_string()).unwrap(),
            sample()
        );
        value["version"] = serde_json::json!(2);
        let e = AgentConfig::from_json(&value.to_string()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"version\" is 2, but this build reads only version 1"
        );
        value.as_object_mut().unwrap().remove("version");
        assert!(matches!(
            AgentConfig::from_json(&value.to_string()),
            Err(ConfigError::MissingVersion)
        ));
    }

    #[test]
    fn semantic_rules_are_checked() {
        let mut c = sample();
        c.peers.push(c.peers[0].clone());
        let e = AgentConfig::from_json(&c.to_json()).unwrap_err();
        assert_eq!(e.to_string(), "\"peers\"[1]: peer \"server\" appears twice");
        let mut c = sample();
        c.peers[0].name = "laptop".into();
        assert!(AgentConfig::from_json(&c.to_json()).is_err());
        let mut c = sample();
        c.peers.push(PeerConfig {
            name: "other".into(),
            ..c.peers[0].clone()
        });
        let e = AgentConfig::from_json(&c.to_json()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"peers\"[1] (\"other\"): WireGuard public key already used by another peer"
        );
    }

    #[test]
    fn schema_errors_say_where() {
        let text = sample()
            .to_json()
            .replace("\"fd12:3456:789a::/48\"", "\"nope\"");
        let e = AgentConfig::from_json(&text).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid IP address syntax at line 19 column 18"
        );
    }

    #[test]
    fn bad_keys_are_schema_errors() {
        let mut value = serde_json::to_value(sample()).unwrap();
        value["networkPublicKey"] = serde_json::json!("short");
        let e = AgentConfig::from_json(&value.to_string()).unwrap_err();
        assert!(e.to_string().contains("not valid standard base64"), "{e}");
    }
}
