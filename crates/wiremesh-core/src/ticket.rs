//! Join tickets: what `wiremesh-controller token create` prints and `wiremesh-peer run --join`
//! reads. A ticket carries the single-use token together with everything an agent with no
//! planned configuration needs to find and trust the mesh: the instance, the name it joins
//! under, the network key that signs netmaps, the overlay networks and the controllers with
//! their node keys. Text form: `wmjoin2.` + unpadded URL-safe base64 of the postcard encoding,
//! one line that survives copy and paste.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::addresses::interface_name;
use crate::config::{
    Addresses, AgentConfig, CONFIG_VERSION, ConfigError, ControllerConfig, Networks,
};
use crate::keys::{NetworkPublicKey, NodePublicKey};

const PREFIX: &str = "wmjoin2.";
/// The longest ticket text looked at: room for a handful of controllers.
pub const MAX_TICKET_LEN: usize = 4096;
/// The agent's defaults where a ticket says nothing: the role interface's `port` and `mtu`.
pub const DEFAULT_LISTEN_PORT: u16 = 51820;
pub const DEFAULT_MTU: u32 = 1420;

/// A decoded join ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinTicket {
    pub instance: String,
    /// The member name the token was made for.
    pub name: String,
    /// The token text the controller checks (`wmj1.…`).
    pub token: String,
    pub network_public_key: NetworkPublicKey,
    pub networks: Networks,
    pub controllers: Vec<TicketController>,
}

/// A controller as a ticket names it: always with the node key the agent pins. (Not
/// [`ControllerConfig`], whose key is optional and skipped when absent, which postcard, a format
/// without field names, cannot read back.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketController {
    pub name: String,
    pub endpoint: String,
    pub node_public_key: NodePublicKey,
    /// The controller's UDP probe and relay service, when it runs one.
    pub relay_endpoint: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TicketError {
    #[error("a join ticket is at most {MAX_TICKET_LEN} characters; this one has {0}")]
    TooLong(usize),
    #[error(
        "not a join ticket: it should start with {PREFIX:?} (as printed by `wiremesh-controller token create`)"
    )]
    Prefix,
    #[error("the join ticket is damaged ({0}); copy it again as printed")]
    Damaged(String),
    #[error("the join ticket names no controller")]
    NoController,
    #[error("the join ticket is not valid: {0}")]
    Invalid(String),
}

impl JoinTicket {
    pub fn encode(&self) -> String {
        let bytes = postcard::to_allocvec(self)
            .unwrap_or_else(|e| unreachable!("a ticket always serialises: {e}"));
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Decodes and checks a ticket text (surrounding whitespace is ignored).
    pub fn decode(text: &str) -> Result<Self, TicketError> {
        let text = text.trim();
        if text.len() > MAX_TICKET_LEN {
            return Err(TicketError::TooLong(text.len()));
        }
        let body = text.strip_prefix(PREFIX).ok_or(TicketError::Prefix)?;
        let bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|e| TicketError::Damaged(e.to_string()))?;
        let ticket: JoinTicket =
            postcard::from_bytes(&bytes).map_err(|e| TicketError::Damaged(e.to_string()))?;
        if ticket.controllers.is_empty() {
            return Err(TicketError::NoController);
        }
        // The names and endpoints follow the agent config's rules.
        ticket
            .agent_config(DEFAULT_LISTEN_PORT, None)
            .map_err(|e| TicketError::Invalid(e.to_string()))?;
        Ok(ticket)
    }

    /// The configuration of an agent that joins with this ticket: no peers yet (the netmap
    /// brings them), the address the controller leases arrives with the netmap, the IPv6 address
    /// derived from the name as for every member.
    pub fn agent_config(
        &self,
        listen_port: u16,
        interface: Option<String>,
    ) -> Result<AgentConfig, ConfigError> {
        let config = AgentConfig {
            version: CONFIG_VERSION,
            instance: self.instance.clone(),
            machine: self.name.clone(),
            roles: vec!["peer".into()],
            settings: Default::default(),
            interface: interface.unwrap_or_else(|| interface_name(&self.instance)),
            listen_port,
            mtu: DEFAULT_MTU,
            persistent_keepalive: None,
            network: self.networks,
            addresses: Addresses {
                ipv4: None,
                ipv6: crate::addresses::member_ipv6(self.networks.ipv6, &self.name),
            },
            // The role's default `ipRanges = ["all"]`: the instance's networks.
            ip_ranges: self
                .networks
                .ipv4
                .map(IpNet::V4)
                .into_iter()
                .chain([IpNet::V6(self.networks.ipv6)])
                .collect(),
            routes: Vec::new(),
            peers: Vec::new(),
            controllers: self
                .controllers
                .iter()
                .map(|c| ControllerConfig {
                    name: c.name.clone(),
                    endpoint: c.endpoint.clone(),
                    node_public_key: Some(c.node_public_key),
                    relay_endpoint: c.relay_endpoint.clone(),
                })
                .collect(),
            network_public_key: self.network_public_key,
        };
        AgentConfig::from_json(&config.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> JoinTicket {
        JoinTicket {
            instance: "my-vpn".into(),
            name: "phone".into(),
            token: "wmj1.AAAA".into(),
            network_public_key: NetworkPublicKey::from_bytes([3; 32]),
            networks: Networks {
                ipv4: Some("100.96.0.0/16".parse().unwrap()),
                ipv6: "fd8c:65c0:2740::/48".parse().unwrap(),
            },
            controllers: vec![TicketController {
                relay_endpoint: None,
                name: "server".into(),
                endpoint: "198.18.0.1:51821".into(),
                node_public_key: NodePublicKey::from_bytes([4; 32]),
            }],
        }
    }

    #[test]
    fn a_ticket_round_trips_through_its_text() {
        let text = sample().encode();
        assert!(text.starts_with("wmjoin2."));
        assert_eq!(JoinTicket::decode(&format!(" {text}\n")).unwrap(), sample());
    }

    #[test]
    fn the_joined_config_has_the_derived_address_and_default_port() {
        let config = sample().agent_config(DEFAULT_LISTEN_PORT, None).unwrap();
        assert_eq!(config.machine, "phone");
        assert_eq!(config.interface, "wm-my-vpn");
        assert_eq!(config.listen_port, 51820);
        assert_eq!(config.addresses.ipv4, None);
        // Like a planned member's default `ipRanges = ["all"]`: members' packets are accepted.
        let ranges: Vec<String> = config.ip_ranges.iter().map(|n| n.to_string()).collect();
        assert_eq!(ranges, ["100.96.0.0/16", "fd8c:65c0:2740::/48"]);
        assert_eq!(
            config.addresses.ipv6,
            crate::addresses::member_ipv6(sample().networks.ipv6, "phone")
        );
    }

    #[test]
    fn bad_tickets_say_what_is_wrong() {
        let text = sample().encode();
        let damaged = &text[..text.len() - 5];
        let cases = [
            ("wmj1.abc".to_string(), "should start with \"wmjoin2.\""),
            (damaged.to_string(), "damaged"),
            ("x".repeat(5000), "at most 4096"),
        ];
        for (input, expected) in cases {
            let e = JoinTicket::decode(&input).unwrap_err().to_string();
            assert!(e.contains(expected), "{input:.40}: {e}");
        }
        let mut alone = sample();
        alone.controllers.clear();
        let e = JoinTicket::decode(&alone.encode()).unwrap_err();
        assert!(e.to_string().contains("no controller"), "{e}");
        let mut bad_name = sample();
        bad_name.name = "a\nb".into();
        let e = JoinTicket::decode(&bad_name.encode()).unwrap_err();
        assert!(e.to_string().contains("\"machine\""), "{e}");
    }
}
