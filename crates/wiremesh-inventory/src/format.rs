//! String formats of wiremesh settings (CIDRs, addresses, `host:port`, interface names), checked
//! while resolving so that a typo fails at `wiremesh inventory resolve`, not on a running machine.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// A named string format. The catalog writes it as `{"type": "str", "format": "<name>"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StrFormat {
    /// A DNS name or an IP address literal (IPv6 without brackets).
    Host,
    /// `host:port`, with IPv6 in brackets: `198.18.0.1:51820`, `[fd00::1]:51820`, `vpn.example.org:51820`.
    HostPort,
    /// An IPv4 or IPv6 network in CIDR notation with no host bits set.
    Cidr,
    /// An IPv4 network in CIDR notation with no host bits set.
    Ipv4Cidr,
    /// An IPv6 network in CIDR notation with no host bits set.
    Ipv6Cidr,
    /// An IPv4 address.
    Ipv4,
    /// `"all"` (every network of the instance) or a [`StrFormat::Cidr`].
    IpRange,
    /// A Linux network interface name: 1 to 15 bytes, no `/`, `:` or whitespace.
    InterfaceName,
}

const ALL: [(StrFormat, &str); 8] = [
    (StrFormat::Host, "host"),
    (StrFormat::HostPort, "host-port"),
    (StrFormat::Cidr, "cidr"),
    (StrFormat::Ipv4Cidr, "ipv4-cidr"),
    (StrFormat::Ipv6Cidr, "ipv6-cidr"),
    (StrFormat::Ipv4, "ipv4"),
    (StrFormat::IpRange, "ip-range"),
    (StrFormat::InterfaceName, "interface-name"),
];

impl StrFormat {
    /// The format for a catalog name, e.g. `"host-port"`.
    pub fn from_name(name: &str) -> Option<StrFormat> {
        ALL.iter().find(|(_, n)| *n == name).map(|(f, _)| *f)
    }

    /// Every catalog name, for error messages.
    pub fn names() -> Vec<&'static str> {
        ALL.iter().map(|(_, n)| *n).collect()
    }

    /// What the format accepts, for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            StrFormat::Host => "a DNS name or an IP address",
            StrFormat::HostPort => {
                "host:port, e.g. 198.18.0.1:51820, [fd00::1]:51820 or vpn.example.org:51820"
            }
            StrFormat::Cidr => "an IP network in CIDR notation, e.g. 100.64.0.0/10 or fd00::/8",
            StrFormat::Ipv4Cidr => "an IPv4 network in CIDR notation, e.g. 100.64.0.0/10",
            StrFormat::Ipv6Cidr => "an IPv6 network in CIDR notation, e.g. fd12:3456:789a::/48",
            StrFormat::Ipv4 => "an IPv4 address, e.g. 100.64.0.5",
            StrFormat::IpRange => "\"all\" or an IP network in CIDR notation",
            StrFormat::InterfaceName => "a network interface name of 1 to 15 bytes",
        }
    }

    /// `Ok` if `s` has this format, otherwise why not.
    pub fn check(self, s: &str) -> Result<(), String> {
        match self {
            StrFormat::Host => check_host(s),
            StrFormat::HostPort => check_host_port(s),
            StrFormat::Cidr => parse_network(s).map(|_| ()),
            StrFormat::Ipv4Cidr => match parse_network(s)? {
                IpNet::V4(_) => Ok(()),
                IpNet::V6(_) => Err("this is an IPv6 network; an IPv4 one is needed".into()),
            },
            StrFormat::Ipv6Cidr => match parse_network(s)? {
                IpNet::V6(_) => Ok(()),
                IpNet::V4(_) => Err("this is an IPv4 network; an IPv6 one is needed".into()),
            },
            StrFormat::Ipv4 => s
                .parse::<Ipv4Addr>()
                .map(|_| ())
                .map_err(|_| "not an IPv4 address".into()),
            StrFormat::IpRange if s == "all" => Ok(()),
            StrFormat::IpRange => parse_network(s).map(|_| ()),
            StrFormat::InterfaceName => check_interface_name(s),
        }
    }
}

/// Parses a network in CIDR notation, refusing host bits (`100.77.0.5/16`) with the network the
/// user probably meant.
fn parse_network(s: &str) -> Result<IpNet, String> {
    let net: IpNet = s
        .parse::<Ipv4Net>()
        .map(IpNet::V4)
        .or_else(|_| s.parse::<Ipv6Net>().map(IpNet::V6))
        .map_err(|_| "not an IP network in CIDR notation (address/prefix length)".to_string())?;
    if net.trunc() != net {
        return Err(format!("host bits are set; did you mean {}?", net.trunc()));
    }
    Ok(net)
}

/// Checks `host:port`. IPv6 literals must be bracketed (`[fd00::1]:51820`); the port is 1..=65535.
fn check_host_port(s: &str) -> Result<(), String> {
    let port = if let Some(rest) = s.strip_prefix('[') {
        let (inner, port) = rest
            .split_once("]:")
            .ok_or("a bracketed IPv6 address must be followed by :port")?;
        inner
            .parse::<Ipv6Addr>()
            .map_err(|_| format!("`{inner}` is not an IPv6 address"))?;
        port
    } else {
        let (host, port) = s.rsplit_once(':').ok_or("missing :port")?;
        if host.contains(':') {
            return Err(format!("an IPv6 address needs brackets: [{host}]:{port}"));
        }
        check_host(host)?;
        port
    };
    check_port(port)
}

fn check_port(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{s}` is not a port number"));
    }
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("port `{s}` is not between 1 and 65535")),
        Ok(_) => Ok(()),
    }
}

fn check_host(s: &str) -> Result<(), String> {
    if s.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    if s.is_empty() {
        return Err("the host is empty".into());
    }
    if s.len() > 253 {
        return Err("a DNS name is at most 253 characters".into());
    }
    let labels: Vec<&str> = s.split('.').collect();
    for label in &labels {
        let valid = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !valid {
            return Err(format!(
                "`{label}` is not a DNS label (1 to 63 letters, digits or inner hyphens)"
            ));
        }
    }
    if labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("not an IP address, and a DNS name cannot end in a numeric label".into());
    }
    Ok(())
}

fn check_interface_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 15 {
        return Err(format!("{} bytes; 1 to 15 are allowed", s.len()));
    }
    if s == "." || s == ".." {
        return Err("`.` and `..` are not interface names".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !c.is_ascii_graphic() || *c == '/' || *c == ':')
    {
        return Err(format!("{c:?} is not allowed in an interface name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        assert!(StrFormat::Cidr.check("100.64.0.0/10").is_ok());
        assert!(StrFormat::Cidr.check("fd00::/8").is_ok());
        assert_eq!(
            StrFormat::Cidr.check("100.77.0.5/16"),
            Err("host bits are set; did you mean 100.77.0.0/16?".into())
        );
        assert!(StrFormat::Cidr.check("100.64.0.0").is_err());
        assert!(StrFormat::Cidr.check("100.64.0.0/33").is_err());
        assert!(StrFormat::Ipv4Cidr.check("fd00::/8").is_err());
        assert!(StrFormat::Ipv6Cidr.check("100.64.0.0/10").is_err());
        assert!(StrFormat::Ipv6Cidr.check("fd12:3456:789a::/48").is_ok());
        assert!(StrFormat::IpRange.check("all").is_ok());
        assert!(StrFormat::IpRange.check("All").is_err());
        assert!(StrFormat::IpRange.check("100.100.0.0/24").is_ok());
    }

    #[test]
    fn addresses_and_hosts() {
        assert!(StrFormat::Ipv4.check("100.64.0.5").is_ok());
        assert!(StrFormat::Ipv4.check("100.64.0.256").is_err());
        assert!(StrFormat::Ipv4.check("fd00::1").is_err());
        for ok in [
            "vpn.example.org",
            "server",
            "198.18.0.1",
            "fd00::1",
            "a-b.c9",
        ] {
            assert_eq!(StrFormat::Host.check(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "-a.org",
            "a..b",
            "a_b.org",
            "300.1.1.1",
            "vpn.example.org:80",
            "[fd00::1]",
        ] {
            assert!(StrFormat::Host.check(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_ports() {
        for ok in [
            "198.18.0.1:51820",
            "[fd00::1]:51820",
            "vpn.example.org:1",
            "vpn.example.org:65535",
        ] {
            assert_eq!(check_host_port(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            check_host_port("fd00::1:51820"),
            Err("an IPv6 address needs brackets: [fd00::1]:51820".into())
        );
        for bad in [
            "vpn.example.org",
            "a:0",
            "a:65536",
            "a:+1",
            "[fd00::1]",
            "[x]:1",
            ":80",
            "a: 1",
        ] {
            assert!(check_host_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn interface_names() {
        assert!(StrFormat::InterfaceName.check("wm-my-vpn").is_ok());
        assert!(StrFormat::InterfaceName.check("a-name-too-long-").is_err());
        assert!(StrFormat::InterfaceName.check("a/b").is_err());
        assert!(StrFormat::InterfaceName.check("a b").is_err());
        assert!(StrFormat::InterfaceName.check("..").is_err());
        assert!(StrFormat::InterfaceName.check("").is_err());
    }

    #[test]
    fn names_are_distinct_and_found() {
        let names = StrFormat::names();
        for (i, name) in names.iter().enumerate() {
            let format = StrFormat::from_name(name).unwrap();
            assert_eq!(ALL[i], (format, *name));
        }
        assert_eq!(StrFormat::from_name("cidr4"), None);
    }
}
