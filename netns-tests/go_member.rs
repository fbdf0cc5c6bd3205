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
        self.plug(&ns, underlay4, underlay6);
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

/// The parts of a wg-quick configuration a device needs: `[Interface]` PrivateKey and Address,
/// and each `[Peer]`'s PublicKey, AllowedIPs, Endpoint and PersistentKeepalive.
#[derive(Debug, Default)]
struct WgQuick {
    private_key: String,
    addresses: Vec<String>,
    peers: Vec<WgQuickPeer>,
}

#[derive(Debug, Default)]
struct WgQuickPeer {
    public_key: String,
    allowed_ips: Vec<String>,
    endpoint: Option<String>,
    keepalive: Option<u16>,
}

impl WgQuick {
    /// Parses wg-quick's INI format; panics (with the text) on a key this harness does not know
    /// or a missing PrivateKey/Address/PublicKey.
    fn parse(text: &str) -> Self {
        let mut conf = Self::default();
        let mut in_peer = false;
        let list = |v: &str| -> Vec<String> {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        };
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line {
                "[Interface]" => in_peer = false,
                "[Peer]" => {
                    in_peer = true;
                    conf.peers.push(WgQuickPeer::default());
                }
                _ => {
                    let (key, value) = line
                        .split_once('=')
                        .map(|(k, v)| (k.trim(), v.trim()))
                        .unwrap_or_else(|| panic!("not a wg-quick line: {line:?} in\n{text}"));
                    match (in_peer, key, conf.peers.last_mut()) {
                        (false, "PrivateKey", _) => conf.private_key = value.to_owned(),
                        (false, "Address", _) => conf.addresses.extend(list(value)),
                        (true, "PublicKey", Some(p)) => p.public_key = value.to_owned(),
                        (true, "AllowedIPs", Some(p)) => p.allowed_ips.extend(list(value)),
                        (true, "Endpoint", Some(p)) => p.endpoint = Some(value.to_owned()),
                        (true, "PersistentKeepalive", Some(p)) => {
                            p.keepalive =
                                Some(value.parse().unwrap_or_else(|e| {
                                    panic!("PersistentKeepalive {value:?}: {e}")
                                }));
                        }
                        _ => panic!("unexpected wg-quick line {line:?} in\n{text}"),
                    }
                }
            }
        }
        assert!(
            !conf.private_key.is_empty() && !conf.addresses.is_empty(),
            "no PrivateKey or Address in the wg-quick configuration:\n{text}"
        );
        assert!(
            conf.peers.iter().all(|p| !p.public_key.is_empty()),
            "a [Peer] without PublicKey in the wg-quick configuration:\n{text}"
        );
        conf
    }
}

impl Lab {
    /// Plugs in a device at underlay 198.18.0.`host` that runs wireguard-go set up from the
    /// wg-quick configuration `text` (what `wiremesh-controller device add` prints), the way
    /// wg-quick would: the private key, each peer with its endpoint, allowed IPs and keepalive
    /// (`wg set`), the addresses on the interface and a route per allowed IP range.
    pub fn wg_quick_device(&self, name: &str, host: u8, text: &str) -> GoPeer {
        let conf = WgQuick::parse(text);
        let underlay4 = Ipv4Addr::new(198, 18, 0, host);
        let underlay6 = Ipv6Addr::new(0xfd00, 0x18, 0, 0, 0, 0, 0, u16::from(host));
        let ns = Netns::new(name);
        self.plug(&ns, underlay4, underlay6);
        let wg = WgGo::start_with_key(&ns, self.dir(), AGENT_PORT, &conf.private_key);
        for p in &conf.peers {
            let Some(endpoint) = &p.endpoint else {
                continue;
            };
            let endpoint: SocketAddr = endpoint
                .parse()
                .unwrap_or_else(|e| panic!("Endpoint {endpoint:?} is not an address: {e}"));
            let allowed: Vec<&str> = p.allowed_ips.iter().map(String::as_str).collect();
            wg.set_peer(&ns, &p.public_key, endpoint, &allowed, p.keepalive);
        }
        let addresses: Vec<&str> = conf.addresses.iter().map(String::as_str).collect();
        wg.up(&ns, &addresses, 1420);
        for net in conf.peers.iter().flat_map(|p| &p.allowed_ips) {
            wg.route(&ns, net);
        }
        let address = |v4: bool| {
            conf.addresses
                .iter()
                .filter_map(|a| a.split('/').next()?.parse::<IpAddr>().ok())
                .find(|a| a.is_ipv4() == v4)
                .unwrap_or_else(|| panic!("no IPv{} Address in\n{text}", if v4 { 4 } else { 6 }))
        };
        let (IpAddr::V4(overlay4), IpAddr::V6(overlay6)) = (address(true), address(false)) else {
            unreachable!("the addresses were picked by family")
        };
        GoPeer {
            wg,
            ns,
            underlay4,
            overlay4,
            overlay6,
        }
    }
}
