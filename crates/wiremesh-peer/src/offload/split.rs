//! Cutting a packet read from the TUN into the packets it stands for. With TSO/USO the kernel
//! hands over one "super-packet" of up to 64 KiB: one set of headers, then the payload of many
//! segments. Each segment is built in place: its headers are written just before its payload, over
//! the tail of the previous segment, which the caller has consumed by then (encrypted into the
//! send buffer). No copy of the payload, no allocation. Checksums are completed here because the
//! peer (a kernel WireGuard, say) delivers inner packets without checking them again.

use super::checksum::{fold, pseudo_header, sum};
use super::{
    GSO_ECN, GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, PROTO_TCP, PROTO_UDP, TCP_CWR, TCP_FIN,
    TCP_PSH, VnetHdr, addresses, be16, be32, fix_ipv4_checksum, put16, put32,
};

/// Longest header run (IP with extensions + TCP) a super-packet may have.
const MAX_HEADERS: usize = 256;

/// Why a packet from the TUN could not be split (the kernel never sends these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitError {
    /// A GSO type this agent did not ask for (UFO) or that does not match the IP version.
    GsoType(u8),
    /// Headers shorter than their own fields say, or longer than [`MAX_HEADERS`].
    Malformed(&'static str),
}

impl std::fmt::Display for SplitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SplitError::GsoType(t) => write!(f, "unsupported virtio GSO type {t}"),
            SplitError::Malformed(what) => write!(f, "malformed offload packet: {what}"),
        }
    }
}

/// Completes a CHECKSUM_PARTIAL packet: the one's complement sum from `start` to the end, whose
/// field at `start + offset` already holds the pseudo-header sum, goes into that field.
fn complete_checksum(packet: &mut [u8], start: usize, offset: usize) -> Result<(), SplitError> {
    let at = start + offset;
    if at + 2 > packet.len() {
        return Err(SplitError::Malformed("checksum field beyond the packet"));
    }
    let csum = !fold(sum(&packet[start..], 0));
    // A zero UDP checksum means "none"; the kernel writes 0xffff instead (CSUM_MANGLED_0).
    put16(packet, at, if csum == 0 { 0xffff } else { csum });
    Ok(())
}

/// Hands each packet `packet` (what followed the vnet header `hdr`) stands for to `each`, with
/// valid checksums, and returns how many there were. `packet` is modified: after the call its
/// contents are unspecified.
pub fn split(
    hdr: &VnetHdr,
    packet: &mut [u8],
    mut each: impl FnMut(&[u8]),
) -> Result<usize, SplitError> {
    let gso_type = hdr.gso_type & !GSO_ECN;
    if gso_type == GSO_NONE {
        if hdr.flags & super::F_NEEDS_CSUM != 0 {
            complete_checksum(
                packet,
                usize::from(hdr.csum_start),
                usize::from(hdr.csum_offset),
            )?;
        }
        each(packet);
        return Ok(1);
    }
    let v6 = match packet.first().map(|b| b >> 4) {
        Some(4) => false,
        Some(6) => true,
        _ => return Err(SplitError::Malformed("not an IP packet")),
    };
    let protocol = match (gso_type, v6) {
        (GSO_TCPV4, false) | (GSO_TCPV6, true) => PROTO_TCP,
        (GSO_UDP_L4, _) => PROTO_UDP,
        (other, _) => return Err(SplitError::GsoType(other)),
    };
    let len = packet.len();
    let ip_len = usize::from(hdr.csum_start);
    if ip_len < if v6 { 40 } else { 20 } || (!v6 && ip_len != usize::from(packet[0] & 0xf) * 4) {
        return Err(SplitError::Malformed(
            "csum_start is not the end of the IP header",
        ));
    }
    // hdr_len is not trusted (on the forwarding path it may cover a whole segment): the
    // transport header says how long it is.
    let (hdr_len, min_hdr_len) = if protocol == PROTO_TCP {
        if ip_len + 20 > len {
            return Err(SplitError::Malformed("TCP header beyond the packet"));
        }
        (
            ip_len + usize::from(packet[ip_len + 12] >> 4) * 4,
            ip_len + 20,
        )
    } else {
        (ip_len + 8, ip_len + 8)
    };
    // Each segment is cut right behind hdr_len: a shorter TCP header than its fixed 20 bytes
    // would leave the flags and checksum written below outside a short segment.
    if hdr_len > len || hdr_len > MAX_HEADERS || hdr_len < min_hdr_len {
        return Err(SplitError::Malformed("transport header length"));
    }
    let gso = usize::from(hdr.gso_size);
    if gso == 0 {
        return Err(SplitError::Malformed("gso_size 0"));
    }
    if len == hdr_len {
        // No payload to cut: one packet.
        complete_checksum(packet, ip_len, if protocol == PROTO_TCP { 16 } else { 6 })?;
        each(packet);
        return Ok(1);
    }

    let mut headers = [0u8; MAX_HEADERS];
    headers[..hdr_len].copy_from_slice(&packet[..hdr_len]);
    let headers = &headers[..hdr_len];
    let (src, dst) = addresses(headers, v6);
    let first_id = be16(headers, 4);
    let first_seq = if protocol == PROTO_TCP {
        be32(headers, ip_len + 4)
    } else {
        0
    };
    let csum_at = ip_len + if protocol == PROTO_TCP { 16 } else { 6 };
    let count = (len - hdr_len).div_ceil(gso);
    for i in 0..count {
        let start = i * gso;
        let end = (hdr_len + (i + 1) * gso).min(len);
        let seg = &mut packet[start..end];
        if i > 0 {
            seg[..hdr_len].copy_from_slice(headers);
        }
        let seg_len = seg.len();
        if v6 {
            put16(seg, 4, (seg_len - 40) as u16);
        } else {
            put16(seg, 2, seg_len as u16);
            put16(seg, 4, first_id.wrapping_add(i as u16));
            fix_ipv4_checksum(seg, ip_len);
        }
        if protocol == PROTO_TCP {
            put32(seg, ip_len + 4, first_seq.wrapping_add((i * gso) as u32));
            let flags = &mut seg[ip_len + 13];
            if i > 0 {
                *flags &= !TCP_CWR;
            }
            if i + 1 < count {
                *flags &= !(TCP_FIN | TCP_PSH);
            }
        } else {
            put16(seg, ip_len + 4, (seg_len - ip_len) as u16);
        }
        put16(seg, csum_at, 0);
        let pseudo = pseudo_header(src, dst, protocol, seg_len - ip_len);
        let csum = !fold(sum(&seg[ip_len..], pseudo));
        put16(
            seg,
            csum_at,
            if csum == 0 && protocol == PROTO_UDP {
                0xffff
            } else {
                csum
            },
        );
        each(seg);
    }
    Ok(count)
}
