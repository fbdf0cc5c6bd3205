//! Adding and removing routes through our TUN device with one rtnetlink request each. (tun-rs
//! assigns addresses but has no route API; this avoids depending on the `ip` binary.)

use std::io;
use std::mem::size_of;
use std::net::IpAddr;

use ipnet::IpNet;

const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_STATIC: u8 = 4;
const RT_SCOPE_LINK: u8 = 253;
const RTN_UNICAST: u8 = 1;

fn push_attr(msg: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    msg.extend_from_slice(&(len as u16).to_ne_bytes());
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(data);
    msg.resize(msg.len().next_multiple_of(4), 0);
}

fn request(kind: u16, flags: u16, net: &IpNet, if_index: u32) -> Vec<u8> {
    let mut msg = vec![0u8; 16];
    // struct rtmsg
    let (family, dst): (u8, Vec<u8>) = match net.network() {
        IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec()),
        IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec()),
    };
    msg.extend_from_slice(&[
        family,
        net.prefix_len(),
        0,
        0,
        RT_TABLE_MAIN,
        RTPROT_STATIC,
        RT_SCOPE_LINK,
        RTN_UNICAST,
    ]);
    msg.extend_from_slice(&0u32.to_ne_bytes());
    push_attr(&mut msg, RTA_DST, &dst);
    push_attr(&mut msg, RTA_OIF, &if_index.to_ne_bytes());
    // struct nlmsghdr
    let len = msg.len() as u32;
    msg[0..4].copy_from_slice(&len.to_ne_bytes());
    msg[4..6].copy_from_slice(&kind.to_ne_bytes());
    msg[6..8].copy_from_slice(
        &(flags | libc::NLM_F_REQUEST as u16 | libc::NLM_F_ACK as u16).to_ne_bytes(),
    );
    msg[8..12].copy_from_slice(&1u32.to_ne_bytes());
    msg
}

/// Sends one request and waits for the kernel's acknowledgement.
fn talk(msg: &[u8]) -> io::Result<()> {
    // SAFETY: plain socket syscalls on a descriptor we own and close; buffers are valid for
    // the lengths passed.
    unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let result = (|| {
            let mut addr: libc::sockaddr_nl = std::mem::zeroed();
            addr.nl_family = libc::AF_NETLINK as u16;
            let sent = libc::sendto(
                fd,
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_nl>() as u32,
            );
            if sent < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut buf = [0u8; 1024];
            let n = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let n = n as usize;
            // NLMSG_ERROR carries the errno (0 = success) right after the 16-byte header.
            if n >= 20 && u16::from_ne_bytes([buf[4], buf[5]]) == libc::NLMSG_ERROR as u16 {
                let errno = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
                if errno != 0 {
                    return Err(io::Error::from_raw_os_error(-errno));
                }
                return Ok(());
            }
            Err(io::Error::other("unexpected rtnetlink answer"))
        })();
        libc::close(fd);
        result
    }
}

/// Routes `net` into the interface. Returns false when the kernel already had that route (for
/// example the one that comes with an address), which is then not ours to remove.
pub fn add_route(net: &IpNet, if_index: u32) -> io::Result<bool> {
    let msg = request(
        libc::RTM_NEWROUTE,
        (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16,
        net,
        if_index,
    );
    match talk(&msg) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
        Err(e) => Err(e),
    }
}

pub fn remove_route(net: &IpNet, if_index: u32) -> io::Result<()> {
    match talk(&request(libc::RTM_DELROUTE, 0, net, if_index)) {
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_request_layout() {
        let net: IpNet = "100.100.0.0/24".parse().unwrap();
        let msg = request(libc::RTM_NEWROUTE, 0, &net, 7);
        // nlmsghdr 16 + rtmsg 12 + RTA_DST 8 + RTA_OIF 8
        assert_eq!(msg.len(), 44);
        assert_eq!(u32::from_ne_bytes(msg[0..4].try_into().unwrap()), 44);
        assert_eq!(u16::from_ne_bytes([msg[4], msg[5]]), libc::RTM_NEWROUTE);
        assert_eq!(msg[16], libc::AF_INET as u8);
        assert_eq!(msg[17], 24);
        assert_eq!(&msg[28..36], &[8, 0, 1, 0, 100, 100, 0, 0]);
        assert_eq!(&msg[36..44], &[8, 0, 4, 0, 7, 0, 0, 0]);

        let v6: IpNet = "fd12:3456::/48".parse().unwrap();
        let msg = request(libc::RTM_DELROUTE, 0, &v6, 1);
        assert_eq!(msg.len(), 16 + 12 + 20 + 8);
        assert_eq!(msg[16], libc::AF_INET6 as u8);
        assert_eq!(msg[17], 48);
    }
}
