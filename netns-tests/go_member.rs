//! A wireguard-go peer plugged into a lab's switch: a stock WireGuard implementation, configured by
//! `wg`, that either is a member the agents know (interop, spoofing) or an outsider (unknown key).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use wiremesh_core::config::{Addresses, PeerConfig};
use wiremesh_core::keys::{Identity, WireguardPublicKey};

use crate::lab::{AGENT_PORT, Lab};
use crate::netns::Netns;
use crate::wggo::WgGo;

/// A namespace running wireguard-go with one peer entry per lab member.
pub struct GoPeer {
    // Dropped before the namespace, so wireguard-go is stopped by us and its socket removed.
    pub wg: WgGo,
    pub ns: Netns,
    pub underlay4: Ipv4Addr,
    pub overlay4: Ipv4Addr,
    pub overlay6: Ipv6Addr,
}

impl GoPeer {
    /// The `wg show dump` line of the peer with this public key, split into fields.
    pub fn peer_dump(&self, public_key: &str) -> Vec<String> {
        self.wg
            .dump(&self.ns)
            .lines()
            .map(|l| l.split('\t').map(str::to_owned).collect::<Vec<_>>())
            .find(|fields| fields.first().map(String::as_str) == Some(public_key))
            .unwrap_or_else(|| panic!("wireguard-go has no peer {public_key}"))
    }
}

impl Lab {
    /// Plugs a wireguard-go peer in at underlay 198.18.0.`host`, overlay 100.77.0.`host` and
    /// fd77:77::`host`, listing every member as its peer (endpoint, /32 and /128). With `known`,
    /// every member's agent configuration lists it too (with a throwaway node key, which a stock
    /// peer does not use); rewrite happens here, so call this before starting the agents.
    pub fn wireguard_go(&mut self, name: &str, host: u8, known: bool) -> GoPeer {
        let underlay4 = Ipv4Addr::new(198, 18, 0, host);
        let underlay6 = Ipv6Addr::new(0xfd00, 0x18, 0, 0, 0, 0, 0, u16::from(host));
        let overlay4 = Ipv4Addr::new(100, 77, 0, host);
        let overlay6 = Ipv6Addr::new(0xfd77, 0x77, 0, 0, 0, 0, 0, u16::from(host));
        let ns = Netns::new(name);
        self.plug(&ns, IpAddr::V4(underlay4), IpAddr::V6(underlay6));
        let wg = WgGo::start(&ns, self.dir(), AGENT_PORT);
        for m in &self.members {
            let endpoint = SocketAddr::new(IpAddr::V4(m.underlay4), AGENT_PORT);
            let allowed = [
                format!("{}/32", m.overlay4()),
                format!("{}/128", m.overlay6()),
            ];
            let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
            wg.set_peer(
                &ns,
                &m.identity.wireguard_public_key().to_base64(),
                endpoint,
                &allowed,
                None,
            );
        }
        wg.up(
            &ns,
            &[&format!("{overlay4}/16"), &format!("{overlay6}/48")],
            1420,
        );
        if known {
            let entry = PeerConfig {
                name: name.to_owned(),
                wireguard_public_key: wg
                    .public_key()
                    .parse::<WireguardPublicKey>()
                    .expect("wg pubkey prints a valid key"),
                node_public_key: Identity::generate()
                    .expect("the OS has randomness")
                    .node_public_key(),
                addresses: Addresses {
                    ipv4: Some(overlay4),
                    ipv6: overlay6,
                },
                endpoints: vec![SocketAddr::new(IpAddr::V4(underlay4), AGENT_PORT).to_string()],
                routes: vec![],
                persistent_keepalive: None,
            };
            for m in &mut self.members {
                let mut config = m
                    .config
                    .clone()
                    .unwrap_or_else(|| panic!("member {} has no configuration", m.name));
                config.peers.push(entry.clone());
                m.write_config(config);
            }
        }
        GoPeer {
            wg,
            ns,
            underlay4,
            overlay4,
            overlay6,
        }
    }
}
