//! The dynamic IPv4 pool: which addresses may be leased and the lowest free one.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// The addresses leases come from: `range` minus the network's network and broadcast addresses
/// and every static address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub network: Ipv4Net,
    pub range: Ipv4Net,
    pub statics: BTreeSet<Ipv4Addr>,
}

impl Pool {
    /// Whether `address` may be leased at all (whoever holds it).
    pub fn allows(&self, address: Ipv4Addr) -> bool {
        self.range.contains(&address)
            && self.network.contains(&address)
            && address != self.network.network()
            && address != self.network.broadcast()
            && !self.statics.contains(&address)
    }

    /// How many addresses the pool holds.
    pub fn size(&self) -> u64 {
        let span = 1u64 << (32 - self.range.prefix_len());
        let reserved = [self.network.network(), self.network.broadcast()]
            .into_iter()
            .filter(|a| self.range.contains(a))
            .count() as u64;
        let statics = self
            .statics
            .iter()
            .filter(|a| self.range.contains(*a))
            .count() as u64;
        span - reserved - statics
    }

    /// The lowest allowed address not in `leased`, if any.
    pub fn first_free(&self, leased: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        let start = u32::from(self.range.network());
        let end = u32::from(self.range.broadcast());
        (start..=end)
            .map(Ipv4Addr::from)
            .find(|a| self.allows(*a) && !leased.contains(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(network: &str, range: &str, statics: &[&str]) -> Pool {
        Pool {
            network: network.parse().unwrap(),
            range: range.parse().unwrap(),
            statics: statics.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn the_whole_network_minus_reserved_and_static_addresses() {
        let p = pool("100.77.0.0/29", "100.77.0.0/29", &["100.77.0.2"]);
        assert_eq!(p.size(), 5);
        let mut leased = BTreeSet::new();
        let mut got = Vec::new();
        while let Some(a) = p.first_free(&leased) {
            leased.insert(a);
            got.push(a.to_string());
        }
        assert_eq!(
            got,
            [
                "100.77.0.1",
                "100.77.0.3",
                "100.77.0.4",
                "100.77.0.5",
                "100.77.0.6"
            ]
        );
        assert!(!p.allows("100.77.0.7".parse().unwrap()));
        assert!(!p.allows("100.77.0.8".parse().unwrap()));
    }

    #[test]
    fn a_narrower_range_keeps_all_its_addresses() {
        let p = pool("100.77.0.0/16", "100.77.128.0/30", &[]);
        assert_eq!(p.size(), 4);
        assert_eq!(
            p.first_free(&BTreeSet::new()),
            Some("100.77.128.0".parse().unwrap())
        );
        let end = pool("100.77.0.0/16", "100.77.255.252/30", &[]);
        assert_eq!(end.size(), 3);
    }
}
