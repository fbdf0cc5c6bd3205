//! Longest-prefix matching over IPv4 and IPv6 prefixes, used for outgoing routing (destination →
//! member) and for inbound source checks (is this source one the sender owns?).
//!
//! One hash map per address family keyed by (prefix length, masked address); a lookup probes the
//! distinct prefix lengths present, longest first. With the handful of lengths a mesh uses (/32,
//! /128, a few route lengths) that is a few hash probes per packet for any number of members.

use std::net::IpAddr;

use ipnet::IpNet;
use rustc_hash::FxHashMap;

#[derive(Debug, Clone)]
struct Family<T> {
    /// Distinct prefix lengths present, longest first.
    lengths: Vec<u8>,
    entries: FxHashMap<(u8, u128), T>,
    bits: u8,
}

impl<T> Family<T> {
    fn new(bits: u8) -> Self {
        Family {
            lengths: Vec::new(),
            entries: FxHashMap::default(),
            bits,
        }
    }

    fn mask(&self, addr: u128, len: u8) -> u128 {
        if len == 0 {
            0
        } else {
            let host_bits = u32::from(self.bits - len);
            addr.checked_shr(host_bits).unwrap_or(0) << host_bits
        }
    }

    fn insert(&mut self, addr: u128, len: u8, value: T) -> Option<T> {
        let key = (len, self.mask(addr, len));
        if let Err(pos) = self.lengths.binary_search_by(|l| len.cmp(l)) {
            self.lengths.insert(pos, len);
        }
        self.entries.insert(key, value)
    }

    fn get_exact(&self, addr: u128, len: u8) -> Option<&T> {
        self.entries.get(&(len, self.mask(addr, len)))
    }

    fn longest_match(&self, addr: u128) -> Option<&T> {
        self.lengths
            .iter()
            .find_map(|&len| self.entries.get(&(len, self.mask(addr, len))))
    }
}

/// A map from IP prefixes to values with longest-prefix lookup.
#[derive(Debug, Clone)]
pub struct PrefixMap<T> {
    v4: Family<T>,
    v6: Family<T>,
}

impl<T> Default for PrefixMap<T> {
    fn default() -> Self {
        PrefixMap {
            v4: Family::new(32),
            v6: Family::new(128),
        }
    }
}

fn split(net: &IpNet) -> (bool, u128, u8) {
    match net {
        IpNet::V4(n) => (true, u128::from(u32::from(n.addr())), n.prefix_len()),
        IpNet::V6(n) => (false, u128::from(n.addr()), n.prefix_len()),
    }
}

impl<T> PrefixMap<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts `net → value`; returns the value that was there for exactly this prefix.
    pub fn insert(&mut self, net: IpNet, value: T) -> Option<T> {
        match split(&net) {
            (true, addr, len) => self.v4.insert(addr, len, value),
            (false, addr, len) => self.v6.insert(addr, len, value),
        }
    }

    /// The value stored for exactly this prefix.
    pub fn get_exact(&self, net: &IpNet) -> Option<&T> {
        match split(net) {
            (true, addr, len) => self.v4.get_exact(addr, len),
            (false, addr, len) => self.v6.get_exact(addr, len),
        }
    }

    /// The value of the longest prefix containing `addr`.
    pub fn longest_match(&self, addr: IpAddr) -> Option<&T> {
        match addr {
            IpAddr::V4(a) => self.v4.longest_match(u128::from(u32::from(a))),
            IpAddr::V6(a) => self.v6.longest_match(u128::from(a)),
        }
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        self.longest_match(addr).is_some()
    }
}

/// A set of prefixes: "is this address inside any of them?".
pub type PrefixSet = PrefixMap<()>;

impl FromIterator<IpNet> for PrefixSet {
    fn from_iter<I: IntoIterator<Item = IpNet>>(iter: I) -> Self {
        let mut set = PrefixSet::new();
        for net in iter {
            set.insert(net, ());
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins() {
        let mut map = PrefixMap::new();
        map.insert(net("100.64.0.0/10"), "network");
        map.insert(net("100.64.1.0/24"), "route");
        map.insert(net("100.64.1.7/32"), "host");
        assert_eq!(map.longest_match(ip("100.64.1.7")), Some(&"host"));
        assert_eq!(map.longest_match(ip("100.64.1.8")), Some(&"route"));
        assert_eq!(map.longest_match(ip("100.65.0.1")), Some(&"network"));
        assert_eq!(map.longest_match(ip("198.18.0.1")), None);
        assert_eq!(map.longest_match(ip("fd00::1")), None);
    }

    #[test]
    fn ipv6_and_host_bits_are_masked() {
        let mut map = PrefixMap::new();
        // Host bits in the inserted prefix are ignored, like the kernel does.
        map.insert(net("fd12:3456:789a::1/48"), 1);
        map.insert(net("fd12:3456:789a:1::5/128"), 2);
        assert_eq!(map.longest_match(ip("fd12:3456:789a:ffff::1")), Some(&1));
        assert_eq!(map.longest_match(ip("fd12:3456:789a:1::5")), Some(&2));
        assert_eq!(map.longest_match(ip("fd12:3456:789b::1")), None);
        assert_eq!(map.get_exact(&net("fd12:3456:789a::/48")), Some(&1));
    }

    #[test]
    fn default_route_matches_everything_of_its_family() {
        let set: PrefixSet = [net("0.0.0.0/0")].into_iter().collect();
        assert!(set.contains(ip("1.2.3.4")));
        assert!(!set.contains(ip("::1")));
        let set: PrefixSet = [net("::/0")].into_iter().collect();
        assert!(set.contains(ip("fd00::1")));
    }

    #[test]
    fn replacing_returns_previous() {
        let mut map = PrefixMap::new();
        assert_eq!(map.insert(net("100.64.0.0/24"), 1), None);
        assert_eq!(map.insert(net("100.64.0.9/24"), 2), Some(1));
        assert_eq!(map.longest_match(ip("100.64.0.1")), Some(&2));
    }
}
