//! Overlay address derivation and checks.
//!
//! Derivations are pure functions of names, so every machine (and the Nix vars generators, through
//! `wiremesh address`) computes the same addresses with no controller. Their results are pinned by
//! golden tests and must never change:
//!
//! - IPv6 network: the ULA `fd00::/8` followed by the first 40 bits of sha256(instance), a /48
//!   (RFC 4193's global ID, taken from the hash the way Clan's wireguard service does).
//! - Member IPv6 address: the network prefix, then the low host bits taken from the first 128 bits
//!   of sha256(machine), big-endian. An all-zero host part (the subnet-router anycast address)
//!   becomes 1.
//! - IPv4 network: `100.N.0.0/16` with N = 64 + (byte 5 of sha256(instance) mod 64), one of the
//!   64 /16s of 100.64.0.0/10.
//! - Interface name: `wm-<instance>` when that fits in 15 bytes and the instance name uses only
//!   `A-Z a-z 0-9 - _ .`; otherwise `wm-` + the first 6 such characters + `-` + 5 hex digits of
//!   sha256(instance).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use sha2::{Digest, Sha256};

/// Linux's limit on interface names (IFNAMSIZ - 1).
pub const MAX_INTERFACE_LEN: usize = 15;
/// The shared address space all derived IPv4 networks lie in (RFC 6598).
pub const CGNAT: Ipv4Net = match Ipv4Net::new(Ipv4Addr::new(100, 64, 0, 0), 10) {
    Ok(net) => net,
    Err(_) => panic!("constant prefix length"),
};
/// Derived IPv6 networks have this prefix length.
pub const IPV6_PREFIX_LEN: u8 = 48;
/// Derived IPv4 networks have this prefix length.
pub const IPV4_PREFIX_LEN: u8 = 16;
/// An IPv6 network given in settings must leave at least this many host bits, so hashed host parts
/// rarely collide.
pub const MIN_IPV6_HOST_BITS: u8 = 32;
/// An IPv4 network given in settings must hold at least 4 addresses.
pub const MAX_IPV4_PREFIX_LEN: u8 = 30;

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// The instance's derived ULA /48.
pub fn derive_ipv6_network(instance: &str) -> Ipv6Net {
    let h = sha256(instance);
    let mut octets = [0u8; 16];
    octets[0] = 0xfd;
    octets[1..6].copy_from_slice(&h[..5]);
    Ipv6Net::new_assert(Ipv6Addr::from(octets), IPV6_PREFIX_LEN)
}

/// The instance's derived IPv4 /16 inside 100.64.0.0/10.
pub fn derive_ipv4_network(instance: &str) -> Ipv4Net {
    let second = 64 + (sha256(instance)[5] % 64);
    Ipv4Net::new_assert(Ipv4Addr::new(100, second, 0, 0), IPV4_PREFIX_LEN)
}

/// A machine's IPv6 address in `network`: the prefix plus host bits hashed from the name.
pub fn member_ipv6(network: Ipv6Net, machine: &str) -> Ipv6Addr {
    let h = sha256(machine);
    let mut first = [0u8; 16];
    first.copy_from_slice(&h[..16]);
    let host_bits = 128 - u32::from(network.prefix_len());
    let mask = u128::MAX.checked_shr(128 - host_bits).unwrap_or(0);
    let mut host = u128::from_be_bytes(first) & mask;
    if host == 0 {
        // `& mask` keeps the address inside even a /128, which has no host bits to set.
        host = 1 & mask;
    }
    Ipv6Addr::from(u128::from(network.network()) | host)
}

fn is_plain_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// The derived interface name of an instance (at most 15 bytes, always a valid Linux name).
pub fn interface_name(instance: &str) -> String {
    let plain = format!("wm-{instance}");
    if plain.len() <= MAX_INTERFACE_LEN && instance.chars().all(is_plain_name_char) {
        return plain;
    }
    let head: String = instance
        .chars()
        .filter(|c| is_plain_name_char(*c))
        .take(6)
        .collect();
    let h = sha256(instance);
    let hex = format!("{:02x}{:02x}{:02x}", h[0], h[1], h[2]);
    format!("wm-{head}-{}", &hex[..5])
}

/// Why an interface name given in settings cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterfaceNameError {
    #[error("interface name is empty")]
    Empty,
    #[error("interface name {0:?} is {1} bytes; Linux allows at most {MAX_INTERFACE_LEN}")]
    TooLong(String, usize),
    #[error("interface name {0:?} contains '/', ':' or whitespace, which Linux does not allow")]
    BadCharacter(String),
    #[error("interface name {0:?} is reserved")]
    Reserved(String),
}

/// Checks a configured interface name against Linux's rules (`dev_valid_name`).
pub fn check_interface_name(name: &str) -> Result<(), InterfaceNameError> {
    if name.is_empty() {
        return Err(InterfaceNameError::Empty);
    }
    if name.len() > MAX_INTERFACE_LEN {
        return Err(InterfaceNameError::TooLong(name.to_string(), name.len()));
    }
    if name == "." || name == ".." {
        return Err(InterfaceNameError::Reserved(name.to_string()));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(InterfaceNameError::BadCharacter(name.to_string()));
    }
    Ok(())
}

/// Why a network given in settings cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    #[error("{0:?} is not an IPv6 CIDR like fd12:3456:789a::/48")]
    NotIpv6Cidr(String),
    #[error("{0:?} is not an IPv4 CIDR like 100.77.0.0/16")]
    NotIpv4Cidr(String),
    #[error(
        "{0}: the host part must have at least {MIN_IPV6_HOST_BITS} bits (prefix length at most /96)"
    )]
    Ipv6TooSmall(Ipv6Net),
    #[error("{0}: prefix length must be at most /{MAX_IPV4_PREFIX_LEN}")]
    Ipv4TooSmall(Ipv4Net),
    #[error("{given:?} has host bits set; did you mean {network}?")]
    HostBitsSet { given: String, network: String },
}

/// Parses an `ipv6Network` setting.
pub fn parse_ipv6_network(text: &str) -> Result<Ipv6Net, NetworkError> {
    let net: Ipv6Net = text
        .parse()
        .map_err(|_| NetworkError::NotIpv6Cidr(text.to_string()))?;
    if net.trunc() != net {
        return Err(NetworkError::HostBitsSet {
            given: text.to_string(),
            network: net.trunc().to_string(),
        });
    }
    if 128 - net.prefix_len() < MIN_IPV6_HOST_BITS {
        return Err(NetworkError::Ipv6TooSmall(net));
    }
    Ok(net)
}

/// Parses an `ipv4Network` or `dynamicIp.range` setting.
pub fn parse_ipv4_network(text: &str) -> Result<Ipv4Net, NetworkError> {
    let net: Ipv4Net = text
        .parse()
        .map_err(|_| NetworkError::NotIpv4Cidr(text.to_string()))?;
    if net.trunc() != net {
        return Err(NetworkError::HostBitsSet {
            given: text.to_string(),
            network: net.trunc().to_string(),
        });
    }
    if net.prefix_len() > MAX_IPV4_PREFIX_LEN {
        return Err(NetworkError::Ipv4TooSmall(net));
    }
    Ok(net)
}

/// A problem with the addresses of an instance; every variant names the machines involved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressProblem {
    /// Two machines have the same address.
    Collision {
        address: std::net::IpAddr,
        first: String,
        second: String,
    },
    /// A static address lies outside the instance's network.
    OutsideNetwork {
        machine: String,
        address: Ipv4Addr,
        network: Ipv4Net,
    },
    /// A static address is the network or broadcast address.
    Reserved {
        machine: String,
        address: Ipv4Addr,
        network: Ipv4Net,
    },
    /// A static address lies in the range the controller leases dynamically.
    InDynamicRange {
        machine: String,
        address: Ipv4Addr,
        range: Ipv4Net,
        controller: String,
    },
    /// The dynamic range is not inside the network.
    RangeOutsideNetwork {
        controller: String,
        range: Ipv4Net,
        network: Ipv4Net,
    },
}

impl fmt::Display for AddressProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Collision {
                address,
                first,
                second,
            } => {
                write!(
                    f,
                    "machines {first:?} and {second:?} both have address {address}"
                )
            }
            Self::OutsideNetwork {
                machine,
                address,
                network,
            } => write!(
                f,
                "machine {machine:?}: static ipv4 {address} is outside the instance network {network}"
            ),
            Self::Reserved {
                machine,
                address,
                network,
            } => write!(
                f,
                "machine {machine:?}: static ipv4 {address} is the network or broadcast address of {network}"
            ),
            Self::InDynamicRange {
                machine,
                address,
                range,
                controller,
            } => write!(
                f,
                "machine {machine:?}: static ipv4 {address} lies in the dynamic range {range} that controller {controller:?} leases from; pick an address outside it or set dynamicIp.range"
            ),
            Self::RangeOutsideNetwork {
                controller,
                range,
                network,
            } => write!(
                f,
                "controller {controller:?}: dynamicIp.range {range} is not inside the instance network {network}"
            ),
        }
    }
}

/// The dynamic lease range a controller's `dynamicIp.range` sets. Without one the controller leases
/// from the whole network and skips the static addresses, so there is nothing to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicRange {
    pub controller: String,
    pub range: Ipv4Net,
}

/// Checks the static IPv4 addresses of an instance (machine, address) and the controllers' dynamic
/// ranges; returns every problem, in input order.
pub fn check_ipv4(
    network: Ipv4Net,
    statics: &[(String, Ipv4Addr)],
    dynamic: &[DynamicRange],
) -> Vec<AddressProblem> {
    let mut problems = Vec::new();
    for d in dynamic {
        if !network.contains(&d.range) {
            problems.push(AddressProblem::RangeOutsideNetwork {
                controller: d.controller.clone(),
                range: d.range,
                network,
            });
        }
    }
    let mut seen: std::collections::BTreeMap<Ipv4Addr, &str> = Default::default();
    for (machine, address) in statics {
        if !network.contains(address) {
            problems.push(AddressProblem::OutsideNetwork {
                machine: machine.clone(),
                address: *address,
                network,
            });
        } else if *address == network.network() || *address == network.broadcast() {
            problems.push(AddressProblem::Reserved {
                machine: machine.clone(),
                address: *address,
                network,
            });
        }
        for d in dynamic.iter().filter(|d| d.range.contains(address)) {
            problems.push(AddressProblem::InDynamicRange {
                machine: machine.clone(),
                address: *address,
                range: d.range,
                controller: d.controller.clone(),
            });
        }
        if let Some(first) = seen.insert(*address, machine) {
            problems.push(AddressProblem::Collision {
                address: (*address).into(),
                first: first.to_string(),
                second: machine.clone(),
            });
        }
    }
    problems
}

/// Checks derived IPv6 addresses (machine, address) for collisions.
pub fn check_ipv6(members: &[(String, Ipv6Addr)]) -> Vec<AddressProblem> {
    let mut seen: std::collections::BTreeMap<Ipv6Addr, &str> = Default::default();
    let mut problems = Vec::new();
    for (machine, address) in members {
        if let Some(first) = seen.insert(*address, machine) {
            problems.push(AddressProblem::Collision {
                address: (*address).into(),
                first: first.to_string(),
                second: machine.clone(),
            });
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Asserts that `check` refuses each input with exactly its message.
    fn assert_refuses<T: std::fmt::Debug + PartialEq, E: std::fmt::Display>(
        check: impl Fn(&str) -> Result<T, E>,
        cases: &[(&str, &str)],
    ) {
        for (input, message) in cases {
            assert_eq!(
                check(input).map_err(|e| e.to_string()),
                Err(message.to_string()),
                "{input:?}"
            );
        }
    }

    /// Golden values: these are what `wiremesh address` prints and what Nix vars store. A change
    /// here renumbers every deployed mesh.
    #[test]
    fn golden_derivations() {
        let cases = [
            (
                "my-vpn",
                "laptop",
                "fd8c:65c0:2740::/48",
                "fd8c:65c0:2740:8337:bf72:5f02:6fda:9c78",
                "100.96.0.0/16",
                "wm-my-vpn",
            ),
            (
                "my-vpn",
                "server",
                "fd8c:65c0:2740::/48",
                "fd8c:65c0:2740:31b5:2523:5103:2c9b:3e7a",
                "100.96.0.0/16",
                "wm-my-vpn",
            ),
            (
                "my-vpn",
                "desktop",
                "fd8c:65c0:2740::/48",
                "fd8c:65c0:2740:bb23:31b8:cc39:9153:22e4",
                "100.96.0.0/16",
                "wm-my-vpn",
            ),
            (
                "wireguard",
                "laptop1",
                "fd28:387a:1649::/48",
                "fd28:387a:1649:97:d09f:dab4:4ba:49e9",
                "100.87.0.0/16",
                "wm-wireguard",
            ),
            (
                "a",
                "b",
                "fdca:9781:12ca::/48",
                "fdca:9781:12ca:594a:3389:4f65:64e1:b134",
                "100.91.0.0/16",
                "wm-a",
            ),
            (
                "home-network-for-family",
                "phone",
                "fd1e:945c:d8be::/48",
                "fd1e:945c:d8be:7bf4:72d7:a864:ef47:8145",
                "100.106.0.0/16",
                "wm-home-n-1e945",
            ),
            (
                "ümlaut vpn",
                "m1",
                "fd7a:a84a:cf87::/48",
                "fd7a:a84a:cf87:44c1:d0ff:2ff3:c8f9:67fd",
                "100.118.0.0/16",
                "wm-mlautv-7aa84",
            ),
            (
                "",
                "x",
                "fde3:b0c4:4298::/48",
                "fde3:b0c4:4298:b044:162:7ca9:fbac:32f5",
                "100.124.0.0/16",
                "wm-",
            ),
            (
                "exactly-12ch",
                "é",
                "fd9e:a33:39ae::/48",
                "fd9e:a33:39ae:c353:9de2:eb65:4720:17ca",
                "100.119.0.0/16",
                "wm-exactly-12ch",
            ),
        ];
        for (instance, machine, v6net, v6, v4net, ifname) in cases {
            let net = derive_ipv6_network(instance);
            assert_eq!(net.to_string(), v6net, "{instance}");
            assert_eq!(
                member_ipv6(net, machine).to_string(),
                v6,
                "{instance}/{machine}"
            );
            assert_eq!(
                derive_ipv4_network(instance).to_string(),
                v4net,
                "{instance}"
            );
            assert_eq!(interface_name(instance), ifname, "{instance}");
        }
    }

    #[test]
    fn member_addresses_follow_an_overridden_network() {
        let net = parse_ipv6_network("fd00:1:2:3::/64").unwrap();
        assert_eq!(
            member_ipv6(net, "laptop").to_string(),
            "fd00:1:2:3:bf72:5f02:6fda:9c78"
        );
        let net = parse_ipv6_network("fd00:1:2:3::/96").unwrap();
        assert_eq!(
            member_ipv6(net, "laptop").to_string(),
            "fd00:1:2:3::6fda:9c78"
        );
    }

    #[test]
    fn member_addresses_stay_inside_any_prefix_length() {
        for len in 0..=128 {
            let net = Ipv6Net::new_assert("fd00::".parse().unwrap(), len);
            for machine in ["laptop", "server", "x"] {
                assert!(net.contains(&member_ipv6(net, machine)), "/{len} {machine}");
            }
        }
    }

    #[test]
    fn derived_interface_names_are_valid() {
        for instance in [
            "my-vpn",
            "a/b:c d",
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "ümlaut",
            "",
        ] {
            let name = interface_name(instance);
            assert!(name.len() <= MAX_INTERFACE_LEN, "{name}");
            assert_eq!(check_interface_name(&name), Ok(()), "{instance:?}");
        }
    }

    #[test]
    fn configured_interface_names_are_checked() {
        assert_eq!(check_interface_name("wg0"), Ok(()));
        assert_refuses(
            check_interface_name,
            &[
                ("", "interface name is empty"),
                (
                    "sixteen-bytes-xx",
                    "interface name \"sixteen-bytes-xx\" is 16 bytes; Linux allows at most 15",
                ),
                (
                    "a/b",
                    "interface name \"a/b\" contains '/', ':' or whitespace, which Linux does not allow",
                ),
                ("..", "interface name \"..\" is reserved"),
            ],
        );
    }

    #[test]
    fn network_settings_are_validated() {
        assert!(parse_ipv4_network("100.77.0.0/16").is_ok());
        assert!(parse_ipv6_network("fd00::/96").is_ok());
        assert_refuses(
            parse_ipv4_network,
            &[
                (
                    "100.77.0.1/16",
                    "\"100.77.0.1/16\" has host bits set; did you mean 100.77.0.0/16?",
                ),
                (
                    "fd00::/48",
                    "\"fd00::/48\" is not an IPv4 CIDR like 100.77.0.0/16",
                ),
                (
                    "100.77.0.0/31",
                    "100.77.0.0/31: prefix length must be at most /30",
                ),
            ],
        );
        assert_refuses(
            parse_ipv6_network,
            &[
                (
                    "fd00::/97",
                    "fd00::/97: the host part must have at least 32 bits (prefix length at most /96)",
                ),
                (
                    "100.64.0.0/10",
                    "\"100.64.0.0/10\" is not an IPv6 CIDR like fd12:3456:789a::/48",
                ),
            ],
        );
    }

    #[test]
    fn ipv4_problems_name_both_machines() {
        let net: Ipv4Net = "100.77.0.0/16".parse().unwrap();
        let dynamic = [DynamicRange {
            controller: "server".into(),
            range: "100.77.128.0/17".parse().unwrap(),
        }];
        let statics = [
            ("laptop".to_string(), Ipv4Addr::new(100, 77, 0, 5)),
            ("desktop".to_string(), Ipv4Addr::new(100, 77, 0, 5)),
            ("phone".to_string(), Ipv4Addr::new(100, 78, 0, 5)),
            ("tv".to_string(), Ipv4Addr::new(100, 77, 200, 1)),
            ("nas".to_string(), Ipv4Addr::new(100, 77, 0, 0)),
        ];
        let text: Vec<String> = check_ipv4(net, &statics, &dynamic)
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(
            text,
            [
                "machines \"laptop\" and \"desktop\" both have address 100.77.0.5",
                "machine \"phone\": static ipv4 100.78.0.5 is outside the instance network 100.77.0.0/16",
                "machine \"tv\": static ipv4 100.77.200.1 lies in the dynamic range 100.77.128.0/17 that controller \"server\" leases from; pick an address outside it or set dynamicIp.range",
                "machine \"nas\": static ipv4 100.77.0.0 is the network or broadcast address of 100.77.0.0/16",
            ]
        );
        let outside = [DynamicRange {
            controller: "server".into(),
            range: "100.99.0.0/24".parse().unwrap(),
        }];
        assert_eq!(
            check_ipv4(net, &[], &outside)[0].to_string(),
            "controller \"server\": dynamicIp.range 100.99.0.0/24 is not inside the instance network 100.77.0.0/16"
        );
    }

    #[test]
    fn ipv6_collisions_name_both_machines() {
        let a: Ipv6Addr = "fd00::1".parse().unwrap();
        let problems = check_ipv6(&[("x".into(), a), ("y".into(), a)]);
        assert_eq!(
            problems[0].to_string(),
            "machines \"x\" and \"y\" both have address fd00::1"
        );
    }

    /// `count` distinct names of 1..=40 characters from `[a-z0-9._-]`, seeded (xorshift64*).
    fn random_names(seed: u64, count: usize) -> std::collections::BTreeSet<String> {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789._-";
        let mut state = seed | 1;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let mut names = std::collections::BTreeSet::new();
        while names.len() < count {
            let len = 1 + (next() % 40) as usize;
            names.insert(
                (0..len)
                    .map(|_| ALPHABET[(next() % 39) as usize] as char)
                    .collect(),
            );
        }
        names
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]

        /// 10,000 random machine names get distinct addresses inside the network. The names come
        /// from a seeded generator: proptest's 10,000-element collections shrink far too slowly.
        #[test]
        fn ten_thousand_names_are_distinct_and_inside(instance in "[a-z0-9-]{1,20}", seed: u64) {
            let net = derive_ipv6_network(&instance);
            prop_assert!(CGNAT.contains(&derive_ipv4_network(&instance)));
            prop_assert_eq!(net.prefix_len(), 48);
            prop_assert_eq!(net.network().octets()[0], 0xfd);
            let names = random_names(seed, 10_000);
            prop_assert_eq!(names.len(), 10_000);
            let members: Vec<(String, Ipv6Addr)> =
                names.iter().map(|n| (n.clone(), member_ipv6(net, n))).collect();
            for (_, a) in &members {
                prop_assert!(net.contains(a));
                prop_assert_ne!(*a, net.network());
            }
            prop_assert_eq!(check_ipv6(&members), vec![]);
        }

        #[test]
        fn any_instance_gets_a_valid_interface_name(instance in ".{0,40}") {
            let name = interface_name(&instance);
            prop_assert!(name.len() <= MAX_INTERFACE_LEN);
            prop_assert_eq!(check_interface_name(&name), Ok(()));
        }
    }
}
