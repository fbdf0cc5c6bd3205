//! Which member owns which prefix. WireGuard's cryptokey routing gives every prefix one owner:
//! traffic to it goes to that member, and only that member may send from it. Nested prefixes are
//! legal (the longest one decides, so a member's own /32 and /128 always win), but two members
//! claiming the identical prefix would leave the owner to chance. The planner and the netmap check
//! both refuse that, through [`find_clashes`].

use std::collections::BTreeMap;
use std::fmt;

use ipnet::IpNet;

use crate::config::Addresses;

/// Two members claim the same prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixClash {
    pub prefix: IpNet,
    pub first: String,
    pub second: String,
}

impl fmt::Display for PrefixClash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "members {:?} and {:?} both claim {}: a prefix has one owner (a prefix nested inside \
             another member's is allowed, and the longest one decides)",
            self.first, self.second, self.prefix
        )
    }
}

/// Every prefix a member owns: its addresses as host prefixes, then its routes, host bits cleared.
pub fn owned_prefixes<'a>(
    addresses: &'a Addresses,
    routes: &'a [IpNet],
) -> impl Iterator<Item = IpNet> + 'a {
    let ipv4 = addresses.ipv4.map(|a| IpNet::from(std::net::IpAddr::V4(a)));
    let ipv6 = IpNet::from(std::net::IpAddr::V6(addresses.ipv6));
    ipv4.into_iter()
        .chain([ipv6])
        .chain(routes.iter().map(IpNet::trunc))
}

/// Every prefix that two different members claim, in the order `members` lists them: one entry
/// for each later member that claims a prefix already claimed. A member that lists one prefix
/// twice clashes with nobody.
pub fn find_clashes<'a, P>(members: impl IntoIterator<Item = (&'a str, P)>) -> Vec<PrefixClash>
where
    P: IntoIterator<Item = IpNet>,
{
    let mut owners: BTreeMap<IpNet, &str> = BTreeMap::new();
    let mut clashes = Vec::new();
    for (name, prefixes) in members {
        for prefix in prefixes {
            let prefix = prefix.trunc();
            match owners.get(&prefix) {
                Some(first) if *first != name => clashes.push(PrefixClash {
                    prefix,
                    first: first.to_string(),
                    second: name.to_string(),
                }),
                Some(_) => {}
                None => {
                    owners.insert(prefix, name);
                }
            }
        }
    }
    clashes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn nested_prefixes_are_fine_identical_ones_clash() {
        let nested = [
            ("a", nets(&["100.77.0.1/32", "100.77.0.0/24"])),
            ("b", nets(&["100.77.0.2/32", "100.77.0.0/25"])),
        ];
        assert_eq!(find_clashes(nested), []);
        let identical = [
            ("a", nets(&["100.77.0.1/32", "100.77.9.0/24"])),
            ("b", nets(&["100.77.0.2/32", "100.77.9.7/24"])),
        ];
        let clashes = find_clashes(identical);
        assert_eq!(clashes.len(), 1, "{clashes:?}");
        let clash = &clashes[0];
        assert_eq!(clash.prefix, "100.77.9.0/24".parse::<IpNet>().unwrap());
        assert_eq!((clash.first.as_str(), clash.second.as_str()), ("a", "b"));
        let text = clash.to_string();
        assert!(
            text.contains("\"a\" and \"b\" both claim 100.77.9.0/24"),
            "{text}"
        );
    }

    #[test]
    fn a_route_that_is_another_members_address_clashes() {
        let addresses = Addresses {
            ipv4: Some("100.77.0.3".parse().unwrap()),
            ipv6: "fd77::3".parse().unwrap(),
        };
        let routes = nets(&["fd77::1/128"]);
        let b: Vec<IpNet> = owned_prefixes(&addresses, &routes).collect();
        assert_eq!(b, nets(&["100.77.0.3/32", "fd77::3/128", "fd77::1/128"]));
        let clashes = find_clashes([("a", nets(&["fd77::1/128"])), ("b", b)]);
        assert_eq!(clashes.len(), 1, "{clashes:?}");
        assert_eq!(clashes[0].prefix.to_string(), "fd77::1/128");
    }

    #[test]
    fn one_member_repeating_a_prefix_is_no_clash() {
        let repeated = [("a", nets(&["100.77.9.0/24", "100.77.9.0/24"]))];
        assert_eq!(find_clashes(repeated), []);
    }
}
