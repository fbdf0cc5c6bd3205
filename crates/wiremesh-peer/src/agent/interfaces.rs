//! This machine's interface addresses: the LAN candidates the agent reports to its controller,
//! and the way it notices that it moved to another network.

use std::ffi::CStr;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The addresses other members might reach this machine at over a LAN: those of interfaces that
/// are up, except loopback, link-local, point-to-point links (tunnels: this mesh's TUN,
/// WireGuard, other VPNs, whose addresses no LAN neighbour has) and `skip`, sorted.
pub fn lan_addresses(skip: &str) -> io::Result<Vec<IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&raw mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut at = head;
    while !at.is_null() {
        // SAFETY: `at` is a node of the list getifaddrs returned, not freed yet.
        let entry = unsafe { &*at };
        at = entry.ifa_next;
        let up = entry.ifa_flags & (libc::IFF_UP as libc::c_uint) != 0;
        let loopback = entry.ifa_flags & (libc::IFF_LOOPBACK as libc::c_uint) != 0;
        let tunnel = entry.ifa_flags & (libc::IFF_POINTOPOINT as libc::c_uint) != 0;
        if !up || loopback || tunnel || entry.ifa_addr.is_null() || entry.ifa_name.is_null() {
            continue;
        }
        // SAFETY: a non-null name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(entry.ifa_name) };
        if name.to_bytes() == skip.as_bytes() {
            continue;
        }
        // SAFETY: `ifa_addr` is non-null and its family says which sockaddr it is.
        let ip = unsafe {
            match i32::from((*entry.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sin = &*entry.ifa_addr.cast::<libc::sockaddr_in>();
                    IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
                }
                libc::AF_INET6 => {
                    let sin6 = &*entry.ifa_addr.cast::<libc::sockaddr_in6>();
                    IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr))
                }
                _ => continue,
            }
        };
        if usable(ip) && !out.contains(&ip) {
            out.push(ip);
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out.sort();
    Ok(out)
}

/// Whether another machine could reach us at `ip`: not loopback, link-local, multicast or
/// unspecified.
fn usable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback() || v4.is_link_local() || v4.is_multicast() || v4.is_unspecified())
        }
        IpAddr::V6(v6) => {
            !(v6.is_loopback()
                || v6.is_unicast_link_local()
                || v6.is_multicast()
                || v6.is_unspecified())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_addresses_others_can_reach_count() {
        for ip in ["198.18.0.1", "fd00:18::1", "198.19.1.2"] {
            assert!(usable(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "::1",
            "169.254.1.1",
            "fe80::1",
            "224.0.0.1",
            "0.0.0.0",
        ] {
            assert!(!usable(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn the_list_is_sorted_and_leaves_out_loopback() {
        let found = lan_addresses("none-such").unwrap();
        assert!(found.windows(2).all(|w| w[0] < w[1]), "{found:?}");
        assert!(found.iter().all(|ip| !ip.is_loopback()), "{found:?}");
    }
}
