//! The topology builder: a "public" switch (a bridge in a namespace of its own) with hosts and NAT
//! routers plugged into it, and hosts on the routers' LANs, which can be moved from one LAN to
//! another. Names are the caller's (it makes the namespaces); public addresses are the caller's,
//! LAN addresses are handed out in order from each LAN's prefix. Only the benchmark ranges are
//! accepted: 198.18.0.0/15 and fd00::/8.

use std::cell::Cell;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use crate::namespace::{Namespace, veth};
use crate::nat::{LAN_BRIDGE, Mapping, Nat, NatId, WAN_DEV};

/// The bridge in the switch namespace.
const SWITCH_BRIDGE: &str = "br0";
/// A host's one interface, on the switch or on a LAN.
pub const HOST_DEV: &str = "eth0";

/// The switch, its segment's prefixes, and the NAT routers on it. Dropping it deletes the routers
/// and the switch; the hosts' namespaces are their owners' to drop.
#[derive(Debug)]
pub struct Topology {
    nats: Vec<Nat>,
    switch: Namespace,
    public4: Ipv4Net,
    public6: Option<Ipv6Net>,
    /// Names of the switch and LAN ports made so far.
    ports: Cell<usize>,
}

impl Topology {
    /// Makes `switch` the public switch (bridge `br0`) for the segment `public4` (and `public6`,
    /// when hosts get IPv6 addresses too).
    pub fn new(
        switch: Namespace,
        public4: Ipv4Net,
        public6: Option<Ipv6Net>,
    ) -> Result<Self, String> {
        underlay4(public4)?;
        if let Some(net) = public6 {
            underlay6(net)?;
        }
        switch.ip(&["link", "add", SWITCH_BRIDGE, "type", "bridge"])?;
        switch.ip(&["link", "set", SWITCH_BRIDGE, "up"])?;
        Ok(Self {
            nats: Vec::new(),
            switch,
            public4,
            public6,
            ports: Cell::new(0),
        })
    }

    /// Gives the switch and the routers up without deleting them (see [`Namespace::keep`]);
    /// returns their names, the switch's first.
    pub fn keep(self) -> Vec<String> {
        let Self { nats, switch, .. } = self;
        let mut names = vec![switch.keep()];
        names.extend(nats.into_iter().map(Nat::keep));
        names
    }

    pub fn switch(&self) -> &Namespace {
        &self.switch
    }

    /// Plugs `host` into the switch: its `eth0` with `addr4` (and `addr6`), both inside the
    /// public segment.
    pub fn plug(
        &self,
        host: &Namespace,
        addr4: Ipv4Addr,
        addr6: Option<Ipv6Addr>,
    ) -> Result<(), String> {
        self.plug_as(host, HOST_DEV, addr4, addr6)
    }

    /// Adds a NAT router: `router` plugged into the switch at `public4`, doing `mapping` for the
    /// LAN `lan4` (in 198.18.0.0/15, apart from the public segment). Hosts join it with
    /// [`Topology::attach`].
    pub fn add_nat(
        &mut self,
        router: Namespace,
        mapping: Mapping,
        public4: Ipv4Addr,
        lan4: Ipv4Net,
    ) -> Result<NatId, String> {
        underlay4(lan4)?;
        let taken = std::iter::once(self.public4).chain(self.nats.iter().map(Nat::lan4));
        if let Some(other) = taken
            .into_iter()
            .find(|n| n.contains(&lan4) || lan4.contains(n))
        {
            return Err(format!("the LAN {lan4} overlaps {other}"));
        }
        self.plug_as(&router, WAN_DEV, public4, None)?;
        self.nats.push(Nat::set_up(router, mapping, public4, lan4)?);
        Ok(NatId(self.nats.len() - 1))
    }

    pub fn nat(&self, id: NatId) -> &Nat {
        &self.nats[id.0]
    }

    /// Plugs `host` into the LAN of `nat`: its `eth0` with the LAN's next free address (returned)
    /// and a default route via the router.
    pub fn attach(&self, host: &Namespace, nat: NatId) -> Result<Ipv4Addr, String> {
        let nat = self.nat(nat);
        let addr = nat.next_address()?;
        let port = self.next_port("h");
        veth(nat.router(), &port, host, HOST_DEV)?;
        nat.router()
            .ip(&["link", "set", &port, "master", LAN_BRIDGE])?;
        let with_len = format!("{addr}/{}", nat.lan4().prefix_len());
        host.ip(&["addr", "add", &with_len, "dev", HOST_DEV])?;
        let gateway = nat.gateway().to_string();
        host.ip(&["route", "add", "default", "via", &gateway])?;
        Ok(addr)
    }

    /// Moves `host` (plugged in with [`Topology::attach`]) to the LAN of `to`: its link is
    /// replaced by one to the new router, with a new address (returned) and default route.
    pub fn move_host(&self, host: &Namespace, to: NatId) -> Result<Ipv4Addr, String> {
        host.ip(&["link", "del", HOST_DEV])?;
        self.attach(host, to)
    }

    /// Drops UDP between the public addresses of NATs `a` and `b` (a rule on both routers).
    pub fn block_udp(&self, a: NatId, b: NatId) -> Result<(), String> {
        let (a, b) = (self.nat(a), self.nat(b));
        a.block_udp(b.public4())?;
        b.block_udp(a.public4())
    }

    /// Undoes [`Topology::block_udp`].
    pub fn unblock_udp(&self, a: NatId, b: NatId) -> Result<(), String> {
        let (a, b) = (self.nat(a), self.nat(b));
        a.unblock_udp(b.public4())?;
        b.unblock_udp(a.public4())
    }

    /// A veth from a new switch port to `dev` in `ns`, with the addresses.
    fn plug_as(
        &self,
        ns: &Namespace,
        dev: &str,
        addr4: Ipv4Addr,
        addr6: Option<Ipv6Addr>,
    ) -> Result<(), String> {
        if !self.public4.contains(&addr4) {
            return Err(format!(
                "{addr4} is not in the public segment {}",
                self.public4
            ));
        }
        let addr6 = match (addr6, self.public6) {
            (None, _) => None,
            (Some(a), Some(net)) if net.contains(&a) => Some(format!("{a}/{}", net.prefix_len())),
            (Some(a), net) => return Err(format!("{a} is not in the public segment {net:?}")),
        };
        let port = self.next_port("p");
        veth(&self.switch, &port, ns, dev)?;
        self.switch
            .ip(&["link", "set", &port, "master", SWITCH_BRIDGE])?;
        let with_len = format!("{addr4}/{}", self.public4.prefix_len());
        ns.ip(&["addr", "add", &with_len, "dev", dev])?;
        if let Some(a) = addr6 {
            ns.ip(&["addr", "add", &a, "dev", dev, "nodad"])?;
        }
        Ok(())
    }

    /// A fresh port name: `kind` and a number unique in the topology.
    fn next_port(&self, kind: &str) -> String {
        let n = self.ports.get();
        self.ports.set(n + 1);
        format!("{kind}{n}")
    }
}

/// `Err` unless `net` lies in 198.18.0.0/15, the benchmark range the project's labs may use.
fn underlay4(net: Ipv4Net) -> Result<(), String> {
    let allowed = Ipv4Net::new(Ipv4Addr::new(198, 18, 0, 0), 15).expect("a valid prefix");
    if allowed.contains(&net) {
        Ok(())
    } else {
        Err(format!(
            "{net} is outside the lab's IPv4 underlay {allowed}"
        ))
    }
}

/// `Err` unless `net` lies in fd00::/8.
fn underlay6(net: Ipv6Net) -> Result<(), String> {
    let allowed =
        Ipv6Net::new(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0), 8).expect("a valid prefix");
    if allowed.contains(&net) {
        Ok(())
    } else {
        Err(format!(
            "{net} is outside the lab's IPv6 underlay {allowed}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_benchmark_ranges_are_an_underlay() {
        for ok in ["198.18.0.0/24", "198.19.7.0/24", "198.18.0.0/15"] {
            assert!(underlay4(ok.parse().unwrap()).is_ok(), "{ok}");
        }
        for bad in [
            "100.64.0.0/24",
            "192.0.2.0/24",
            "203.0.113.0/24",
            "198.18.0.0/14",
        ] {
            assert!(underlay4(bad.parse().unwrap()).is_err(), "{bad}");
        }
        assert!(underlay6("fd00:18::/64".parse().unwrap()).is_ok());
        assert!(underlay6("fe80::/64".parse().unwrap()).is_err());
    }
}
