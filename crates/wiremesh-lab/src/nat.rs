//! A NAT router: a namespace with a public leg `wan` on the switch and a LAN bridge `br0` behind
//! it (its first address is the hosts' gateway), forwarding between them, and an nftables table
//! that masquerades what leaves the LAN and can drop UDP to and from chosen public addresses.

use std::cell::Cell;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::namespace::Namespace;

/// The router's public leg (plugged into the switch) and its LAN bridge.
pub(crate) const WAN_DEV: &str = "wan";
pub(crate) const LAN_BRIDGE: &str = "br0";
/// The nftables table on every router, and its set of public addresses UDP may not reach.
const TABLE: &str = "wiremesh_nat";
const BLOCKED: &str = "blocked";

/// How a NAT maps a LAN host's UDP source (address, port) to a public port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// nftables `masquerade`: one mapping per source, whatever the destination (the source port
    /// is kept when it is free). Hole punching works through it.
    EndpointIndependent,
    /// nftables `masquerade fully-random`: a fresh random port for each destination (a
    /// "symmetric" NAT).
    Symmetric,
}

/// Which NAT of a [`crate::Topology`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatId(pub(crate) usize);

/// A NAT router of a [`crate::Topology`]. Inbound, it lets through only what answers a mapping
/// (conntrack: address- and port-dependent filtering).
#[derive(Debug)]
pub struct Nat {
    router: Namespace,
    mapping: Mapping,
    public4: Ipv4Addr,
    lan4: Ipv4Net,
    /// The router's LAN address, the hosts' default route: the LAN's first host address.
    gateway: Ipv4Addr,
    /// The LAN addresses handed out so far (the gateway is the first).
    handed_out: Cell<u32>,
}

impl Nat {
    /// Makes `router` (already plugged into the switch as [`WAN_DEV`] at `public4`) a NAT for
    /// `lan4`: the LAN bridge with the gateway address, forwarding on, the nftables table.
    pub(crate) fn set_up(
        router: Namespace,
        mapping: Mapping,
        public4: Ipv4Addr,
        lan4: Ipv4Net,
    ) -> Result<Self, String> {
        let gateway =
            nth_host(lan4, 0).ok_or_else(|| format!("the LAN {lan4} has no host address"))?;
        let nat = Self {
            router,
            mapping,
            public4,
            lan4,
            gateway,
            handed_out: Cell::new(1),
        };
        let r = &nat.router;
        r.ip(&["link", "add", LAN_BRIDGE, "type", "bridge"])?;
        r.ip(&["link", "set", LAN_BRIDGE, "up"])?;
        let with_len = format!("{gateway}/{}", lan4.prefix_len());
        r.ip(&["addr", "add", &with_len, "dev", LAN_BRIDGE])?;
        r.sysctl("net/ipv4/ip_forward", "1")?;
        r.nft(&ruleset(mapping, lan4))?;
        Ok(nat)
    }

    /// Gives the router's namespace up without deleting it; returns its name.
    pub(crate) fn keep(self) -> String {
        self.router.keep()
    }

    /// The router's namespace.
    pub fn router(&self) -> &Namespace {
        &self.router
    }

    pub fn mapping(&self) -> Mapping {
        self.mapping
    }

    /// The router's address on the switch: what the public side sees of its LAN hosts.
    pub fn public4(&self) -> Ipv4Addr {
        self.public4
    }

    pub fn lan4(&self) -> Ipv4Net {
        self.lan4
    }

    /// The router's LAN address, the hosts' default route: the LAN's first host address.
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// The next free LAN address (the gateway's first, then the hosts' in order).
    pub(crate) fn next_address(&self) -> Result<Ipv4Addr, String> {
        let n = self.handed_out.get();
        let addr =
            nth_host(self.lan4, n).ok_or_else(|| format!("the LAN {} is full", self.lan4))?;
        self.handed_out.set(n + 1);
        Ok(addr)
    }

    /// Drops UDP forwarded to or from `public` (another NAT's public address), both ways.
    pub(crate) fn block_udp(&self, public: Ipv4Addr) -> Result<(), String> {
        self.blocked_element("add", public)
    }

    /// Undoes [`Nat::block_udp`].
    pub(crate) fn unblock_udp(&self, public: Ipv4Addr) -> Result<(), String> {
        self.blocked_element("delete", public)
    }

    fn blocked_element(&self, verb: &str, public: Ipv4Addr) -> Result<(), String> {
        let element = format!("{{ {public} }}");
        self.router
            .run(&["nft", verb, "element", "ip", TABLE, BLOCKED, &element])
            .map(drop)
    }
}

/// The `n`th host address of `net` (0 is the first after the network address).
fn nth_host(net: Ipv4Net, n: u32) -> Option<Ipv4Addr> {
    let addr = u32::from(net.network()).checked_add(n.checked_add(1)?)?;
    let addr = Ipv4Addr::from(addr);
    (net.contains(&addr) && addr != net.broadcast()).then_some(addr)
}

/// The router's nftables table: masquerade what leaves the LAN through the public leg (fully
/// random ports for a symmetric NAT), drop forwarded UDP to or from the blocked addresses, and,
/// like a home router's firewall, drop what comes in from the public side for the router itself
/// unasked. That drop also keeps the unanswered flow out of conntrack: Linux would otherwise
/// keep it, and a LAN host's later mapping to the same peer would clash with it and leave from
/// another port, so a hole punched from the other side first would never open.
fn ruleset(mapping: Mapping, lan4: Ipv4Net) -> String {
    let flags = match mapping {
        Mapping::EndpointIndependent => "",
        Mapping::Symmetric => " fully-random",
    };
    format!(
        "table ip {TABLE} {{\n\
         \tset {BLOCKED} {{ type ipv4_addr; }}\n\
         \tchain forward {{ type filter hook forward priority filter; policy accept;\n\
         \t\tmeta l4proto udp ip daddr @{BLOCKED} drop;\n\
         \t\tmeta l4proto udp ip saddr @{BLOCKED} drop;\n\
         \t}}\n\
         \tchain input {{ type filter hook input priority filter; policy accept;\n\
         \t\tiifname \"{WAN_DEV}\" ct state new drop;\n\
         \t}}\n\
         \tchain postrouting {{ type nat hook postrouting priority srcnat; policy accept;\n\
         \t\toifname \"{WAN_DEV}\" ip saddr {lan4} masquerade{flags};\n\
         \t}}\n\
         }}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lan_addresses_start_after_the_network_and_stop_before_the_broadcast() {
        let lan: Ipv4Net = "198.19.3.0/30".parse().unwrap();
        assert_eq!(nth_host(lan, 0), Some(Ipv4Addr::new(198, 19, 3, 1)));
        assert_eq!(nth_host(lan, 1), Some(Ipv4Addr::new(198, 19, 3, 2)));
        assert_eq!(nth_host(lan, 2), None);
        assert_eq!(nth_host(lan, u32::MAX), None);
    }

    #[test]
    fn the_mapping_decides_whether_ports_are_random() {
        let lan: Ipv4Net = "198.19.1.0/24".parse().unwrap();
        let eim = ruleset(Mapping::EndpointIndependent, lan);
        assert!(
            eim.contains("oifname \"wan\" ip saddr 198.19.1.0/24 masquerade;"),
            "{eim}"
        );
        let symmetric = ruleset(Mapping::Symmetric, lan);
        assert!(
            symmetric.contains("masquerade fully-random;"),
            "{symmetric}"
        );
        assert!(symmetric.contains("ip daddr @blocked drop"), "{symmetric}");
    }
}
