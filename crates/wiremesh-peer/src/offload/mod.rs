//! TUN offload without the TUN: the `virtio_net_hdr` that prefixes every packet on a TUN opened
//! with `IFF_VNET_HDR`, cutting a TSO/USO super-packet into wire packets ([`split`]) and
//! coalescing received packets of one flow back into one super-packet ([`coalesce`]). Pure
//! functions and state over byte buffers; the hot threads do the reads and writes.

pub mod checksum;
pub mod coalesce;
pub mod split;
#[cfg(test)]
mod tests;

/// Bytes of the `virtio_net_hdr` in front of every packet.
pub const VNET_HDR_LEN: usize = 10;
/// The largest IP packet (IPv4 total length and IPv6 payload length are 16 bits).
pub const MAX_IP_PACKET: usize = 65_535;
/// The most one TUN read returns: the vnet header and a GSO super-packet, which the kernel keeps
/// within its legacy GSO limit of 65,536 bytes (headers included; one more than an IPv4 packet
/// may have, for IPv6). A shorter buffer would make the read fail.
pub const MAX_TUN_READ: usize = VNET_HDR_LEN + 65_536;

/// `flags`: the checksum from `csum_start` to the end is left for the receiver (CHECKSUM_PARTIAL);
/// the field at `csum_start + csum_offset` holds the pseudo-header sum.
pub const F_NEEDS_CSUM: u8 = 1;
pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
pub const GSO_TCPV6: u8 = 4;
pub const GSO_UDP_L4: u8 = 5;
/// Set on `gso_type` together with a TCP type when the segments carry ECN CWR.
pub const GSO_ECN: u8 = 0x80;

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
const TCP_CWR: u8 = 0x80;

/// `struct virtio_net_hdr` (without the `num_buffers` extension). The TUN uses the host's byte
/// order, which is what the kernel does for a legacy vnet header unless TUNSETVNETBE/LE is used.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Reads the header from the first [`VNET_HDR_LEN`] bytes; None if `buf` is shorter.
    pub fn decode(buf: &[u8]) -> Option<VnetHdr> {
        let b = buf.get(..VNET_HDR_LEN)?;
        let u16_at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }

    /// Writes the header into the first [`VNET_HDR_LEN`] bytes of `buf` (which must hold them).
    pub fn encode(&self, buf: &mut [u8]) {
        buf[0] = self.flags;
        buf[1] = self.gso_type;
        buf[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        buf[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        buf[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        buf[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// Source and destination address bytes of an IPv4 or IPv6 header.
fn addresses(packet: &[u8], v6: bool) -> (&[u8], &[u8]) {
    if v6 {
        (&packet[8..24], &packet[24..40])
    } else {
        (&packet[12..16], &packet[16..20])
    }
}

/// Recomputes the IPv4 header checksum over the first `ihl` bytes.
fn fix_ipv4_checksum(packet: &mut [u8], ihl: usize) {
    put16(packet, 10, 0);
    let sum = checksum::fold(checksum::sum(&packet[..ihl], 0));
    put16(packet, 10, !sum);
}

#[cfg(test)]
mod header_tests {
    use super::*;

    #[test]
    fn vnet_header_round_trips() {
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV6,
            hdr_len: 72,
            gso_size: 1388,
            csum_start: 40,
            csum_offset: 16,
        };
        let mut buf = [0u8; VNET_HDR_LEN];
        hdr.encode(&mut buf);
        assert_eq!(VnetHdr::decode(&buf), Some(hdr));
        assert_eq!(VnetHdr::decode(&buf[..9]), None);
    }
}
