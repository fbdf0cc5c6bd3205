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
//! | `controllers` | [{name, endpoint, nodePublicKey, relayEndpoint}] | control endpoints (`host:port`) and the controller's node key, which the agent pins; an entry without a key is not contacted. `relayEndpoint` (`host:port`, optional) is its UDP probe and relay service |
//! | `networkPublicKey` | base64 | the pinned network key that signs netmaps |
//!
//! Names (`instance`, `machine`, peer and controller names) and endpoints follow the netmap's rules:
//! names are 1 to [`MAX_NAME_LEN`] bytes, endpoints at most [`MAX_ENDPOINT_LEN`], neither with
//! control characters. A text over [`MAX_CONFIG_BYTES`] is refused.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::keys::{NetworkPublicKey, NodePublicKey, WireguardPublicKey};
use crate::netmap::{MAX_ENDPOINT_LEN, MAX_NAME_LEN, check_endpoint, check_name};

/// The schema version this crate writes and reads.
pub const CONFIG_VERSION: u32 = 1;
/// The largest configuration text accepted: room for the netmap's 100,000 members as peers at
/// about 500 bytes each, and a bound for readers of the file.
pub const MAX_CONFIG_BYTES: usize = 64 << 20;

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

/// A controller's control-plane endpoint and the node key it must present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ControllerConfig {
    pub name: String,
    pub endpoint: String,
    /// Missing in configs planned before the agent talked to controllers: such an entry is
    /// only a name, since a controller whose key is not pinned cannot be trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_public_key: Option<NodePublicKey>,
    /// `host:port` of the controller's UDP probe and relay service; missing when its relay is
    /// off (the agent then learns no NAT-mapped address from it and relays nothing through it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_endpoint: Option<String>,
}

/// Why a configuration text was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} bytes; at most {MAX_CONFIG_BYTES} are allowed")]
    TooLarge(usize),
    #[error("not valid JSON: {0}")]
    Json(serde_json::Error),
    #[error("\"version\" is missing; expected {CONFIG_VERSION}")]
    MissingVersion,
    #[error("\"version\" is {found}, but this build reads only version {CONFIG_VERSION}")]
    UnsupportedVersion { found: serde_json::Value },
    /// A field does not fit the schema; `path` is where, like `"peers"[0]."addresses"."ipv4"`.
    #[error("{}{message} (line {line}, column {column})", path_prefix(.path))]
    Schema {
        path: String,
        message: String,
        line: usize,
        column: usize,
    },
    #[error("{0}")]
    Invalid(String),
}

impl AgentConfig {
    /// Parses a configuration; checks `version` first so an old agent reading a new file says so
    /// instead of reporting a confusing field error. The caller adds the file name.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let config: AgentConfig = parse_versioned(text)?;
        config.check().map_err(ConfigError::Invalid)?;
        Ok(config)
    }

    /// Rules serde cannot express: names and endpoints are printable and within the netmap's
    /// limits, and peers are unique by name and by key and are not this machine. (The agent checks
    /// the interface name and MTU against what its platform allows.)
    fn check(&self) -> Result<(), String> {
        name_at("\"instance\"", &self.instance)?;
        name_at("\"machine\"", &self.machine)?;
        for (i, controller) in self.controllers.iter().enumerate() {
            name_at(&format!("\"controllers\"[{i}].\"name\""), &controller.name)?;
            endpoint_at(
                &format!("\"controllers\"[{i}].\"endpoint\""),
                &controller.endpoint,
            )?;
            if let Some(relay) = &controller.relay_endpoint {
                endpoint_at(&format!("\"controllers\"[{i}].\"relayEndpoint\""), relay)?;
            }
        }
        let mut names = std::collections::BTreeSet::new();
        let mut keys = std::collections::BTreeSet::new();
        for (i, peer) in self.peers.iter().enumerate() {
            name_at(&format!("\"peers\"[{i}].\"name\""), &peer.name)?;
            for (j, endpoint) in peer.endpoints.iter().enumerate() {
                endpoint_at(&format!("\"peers\"[{i}].\"endpoints\"[{j}]"), endpoint)?;
            }
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

/// Parses a versioned configuration text (the agent's or the controller's); checks `version` first
/// so an old reader of a new file says so instead of reporting a confusing field error.
pub(crate) fn parse_versioned<T: serde::de::DeserializeOwned>(
    text: &str,
) -> Result<T, ConfigError> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge(text.len()));
    }
    let value: serde_json::Value = serde_json::from_str(text).map_err(ConfigError::Json)?;
    match value.get("version") {
        None => return Err(ConfigError::MissingVersion),
        Some(v) if v.as_u64() != Some(u64::from(CONFIG_VERSION)) => {
            return Err(ConfigError::UnsupportedVersion { found: v.clone() });
        }
        Some(_) => {}
    }
    // Parsed again from the text, not from `value`, so that errors carry a line and column, and
    // through serde_path_to_error so that they also name the field. (Trailing text was already
    // refused by the first parse.)
    serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(text))
        .map_err(schema_error)
}

/// The netmap's name rule, so a configured peer fits a netmap entry; `path` says where.
pub(crate) fn name_at(path: &str, name: &str) -> Result<(), String> {
    check_name(name).map_err(|problem| {
        format!("{path} {problem}; allowed: 1 to {MAX_NAME_LEN} bytes with no control characters")
    })
}

/// The netmap's endpoint rule; `path` says where.
pub(crate) fn endpoint_at(path: &str, endpoint: &str) -> Result<(), String> {
    check_endpoint(endpoint).map_err(|problem| {
        format!(
            "{path} {problem}; allowed: host:port or [v6]:port, at most {MAX_ENDPOINT_LEN} bytes with no control characters"
        )
    })
}

/// A schema error with the JSON path in the quoting the other config errors use, and serde's
/// message without its own position suffix (the position is kept in separate fields).
fn schema_error(e: serde_path_to_error::Error<serde_json::Error>) -> ConfigError {
    let path = json_path(e.path());
    let inner = e.into_inner();
    let (line, column) = (inner.line(), inner.column());
    let text = inner.to_string();
    let message = text
        .strip_suffix(&format!(" at line {line} column {column}"))
        .unwrap_or(&text)
        .to_string();
    ConfigError::Schema {
        path,
        message,
        line,
        column,
    }
}

/// `"peers"[0]."addresses"`; keys are quoted with escapes, so a key holding control characters
/// prints harmlessly.
fn json_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path {
        let dot = if out.is_empty() { "" } else { "." };
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => out.push_str(&format!("{dot}{key:?}")),
            Segment::Enum { variant } => out.push_str(&format!("{dot}{variant:?}")),
            Segment::Unknown => out.push_str(&format!("{dot}?")),
        }
    }
    out
}

/// `path: ` before a schema message, or nothing for an error about the whole document.
fn path_prefix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
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
                relay_endpoint: None,
                name: "server".into(),
                endpoint: "vpn.example.org:51821".into(),
                node_public_key: Some(NodePublicKey::from_bytes(key)),
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
            "\"network\".\"ipv6\": invalid IP address syntax (line 19, column 18)"
        );
    }

    #[test]
    fn nested_schema_errors_name_the_peer_field() {
        let mut value = serde_json::to_value(sample()).unwrap();
        value["peers"][0]["addresses"]["ipv4"] = serde_json::json!("100.77.0.300");
        let text = serde_json::to_string_pretty(&value).unwrap();
        let e = AgentConfig::from_json(&text).unwrap_err();
        let ConfigError::Schema { line, column, .. } = e else {
            panic!("not a schema error: {e:?}");
        };
        assert_eq!(
            e.to_string(),
            format!(
                "\"peers\"[0].\"addresses\".\"ipv4\": invalid IPv4 address syntax (line {line}, column {column})"
            )
        );
        assert!(text.lines().nth(line - 1).unwrap().contains("100.77.0.300"));
        // A missing field is reported at the object that lacks it.
        let mut value = serde_json::to_value(sample()).unwrap();
        value["peers"][0].as_object_mut().unwrap().remove("name");
        let e = AgentConfig::from_json(&value.to_string()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("\"peers\"[0]: missing field `name`"),
            "{e}"
        );
    }

    #[test]
    fn names_and_endpoints_with_control_characters_are_refused() {
        let allowed = "allowed: 1 to 253 bytes with no control characters";
        let mut c = sample();
        c.peers[0].name = "m\u{1b}[2J".into();
        let e = AgentConfig::from_json(&c.to_json()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "\"peers\"[0].\"name\" is \"m\\u{{1b}}[2J\", which holds control characters; {allowed}"
            )
        );
        let mut c = sample();
        c.machine = "lap\ntop".into();
        let e = AgentConfig::from_json(&c.to_json()).unwrap_err();
        assert!(
            e.to_string().starts_with("\"machine\" is \"lap\\ntop\""),
            "{e}"
        );
        let mut c = sample();
        c.instance = "x".repeat(254);
        let e = AgentConfig::from_json(&c.to_json()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("\"instance\" is 254 bytes long; {allowed}")
        );
        let mut c = sample();
        c.controllers[0].name = String::new();
        let e = AgentConfig::from_json(&c.to_json()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("\"controllers\"[0].\"name\" is empty; {allowed}")
        );
        let mut c = sample();
        c.peers[0].endpoints.push("host\u{7}:1".into());
        let e = AgentConfig::from_json(&c.to_json()).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "\"peers\"[0].\"endpoints\"[1] is \"host\\u{7}:1\", which holds control characters; allowed: host:port"
            ),
            "{e}"
        );
        let mut c = sample();
        c.controllers[0].endpoint = format!("{}:1", "h".repeat(261));
        let e = AgentConfig::from_json(&c.to_json()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("\"controllers\"[0].\"endpoint\" is 263 bytes long"),
            "{e}"
        );
        // Non-ASCII printable text is a name like any other.
        let mut c = sample();
        c.peers[0].name = "sérvér-Ω".into();
        assert!(AgentConfig::from_json(&c.to_json()).is_ok());
    }

    #[test]
    fn oversized_text_is_refused_before_parsing() {
        let text = " ".repeat(MAX_CONFIG_BYTES + 1);
        let e = AgentConfig::from_json(&text).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{} bytes; at most {MAX_CONFIG_BYTES} are allowed",
                MAX_CONFIG_BYTES + 1
            )
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
