//! Coalescing received packets of one TCP or UDP flow into one super-packet for one TUN write
//! (what the kernel's GRO does for a NIC). The caller decrypts each datagram straight into the
//! place [`Coalescer::reserve`] gives it: right behind the payload of the super-packet that took
//! the last packet, with the new packet's headers overlapping the last bytes of that payload
//! (saved beforehand). When the packet belongs there, the saved bytes go back and the payload is
//! already where it has to be: no copy. Otherwise the packet moves to its own slot (one copy).
//!
//! The super-packet goes out with `VIRTIO_NET_HDR_F_NEEDS_CSUM` and the pseudo-header sum in the
//! checksum field, so nobody computes a checksum over the payload on this side: the kernel treats
//! it as CHECKSUM_PARTIAL, which a local socket accepts as is. Inner checksums are not verified
//! (the AEAD already authenticated the packet; kernel WireGuard marks decrypted packets
//! CHECKSUM_UNNECESSARY for the same reason).
//!
//! Rules (those of Linux GRO): same addresses, ports, protocol, TOS/TTL (traffic class, flow label,
//! hop limit); IPv4 without options or fragmentation; IPv6 without extension headers; TCP with only
//! ACK (and PSH) set, the same ACK number and options, and each segment's sequence number right
//! after the previous; every payload as long as the first but the last, which may be shorter;
//! nothing after a shorter payload or a PSH. Packets are written in the order they arrived within
//! each flow.

use super::checksum::{fold, pseudo_header};
use super::{
    F_NEEDS_CSUM, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, MAX_IP_PACKET, PROTO_TCP, PROTO_UDP, TCP_ACK,
    TCP_PSH, VNET_HDR_LEN, VnetHdr, addresses, be16, be32, fix_ipv4_checksum, put16,
};

/// Room past a full super-packet: decryption writes the 16-byte tag behind the plaintext, and a
/// packet placed behind an almost full super-packet needs room before it is known not to fit.
const SLACK: usize = 2048;
/// Bytes of a slot: a vnet header, the largest IP packet and the slack.
pub const SLOT_LEN: usize = VNET_HDR_LEN + MAX_IP_PACKET + SLACK;
/// Longest IP + TCP header run that is coalesced (IPv6 40 + TCP 60).
const MAX_SAVED: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Tcp,
    Udp,
}

/// The shape of an open super-packet, from its first packet.
#[derive(Debug, Clone, Copy)]
struct Flow {
    transport: Transport,
    v6: bool,
    /// IP header length (20 or 40).
    ip_len: usize,
    /// IP + transport header length.
    hdr_len: usize,
    /// Payload length of the first packet: every other one must be as long, the last may be
    /// shorter.
    gso_size: usize,
    next_seq: u32,
    count: usize,
    /// Nothing may be appended any more (short or PSH segment, or a later packet of the same
    /// addresses went elsewhere).
    closed: bool,
    psh: bool,
}

struct Slot {
    buf: Box<[u8]>,
    /// End of the data in `buf` (the packet starts at the header offset).
    len: usize,
    /// None for a packet that is written as it came.
    flow: Option<Flow>,
}

/// Where the packet being decrypted was put.
enum Pending {
    None,
    /// At the start of a free slot.
    Fresh {
        slot: usize,
    },
    /// Behind the payload of a super-packet; `saved[..n]` are the bytes it overlapped.
    Tail {
        slot: usize,
        at: usize,
        saved: [u8; MAX_SAVED],
        n: usize,
    },
}

/// A fixed set of slots, each holding one packet or super-packet until [`Coalescer::flush`].
pub struct Coalescer {
    slots: Vec<Slot>,
    /// Occupied slots in the order they must be written.
    used: Vec<usize>,
    free: Vec<usize>,
    /// The slot the last packet joined or started: the next one probably goes there too.
    hot: Option<usize>,
    pending: Pending,
    /// Offset of the packet in a slot: room for the vnet header, or 0 without one.
    off: usize,
    /// Whether packets are coalesced at all (needs the vnet header).
    tcp: bool,
    /// Whether UDP is coalesced too (needs USO on the TUN).
    udp: bool,
}

impl Coalescer {
    /// `slots` buffers of [`SLOT_LEN`] bytes, allocated here once. Without `vnet` every packet
    /// is written alone and without a header.
    pub fn new(slots: usize, vnet: bool, udp: bool) -> Coalescer {
        let slots = slots.max(1);
        Coalescer {
            slots: (0..slots)
                .map(|_| Slot {
                    buf: vec![0u8; SLOT_LEN].into_boxed_slice(),
                    len: 0,
                    flow: None,
                })
                .collect(),
            used: Vec::with_capacity(slots),
            free: (0..slots).rev().collect(),
            hot: None,
            pending: Pending::None,
            off: if vnet { VNET_HDR_LEN } else { 0 },
            tcp: vnet,
            udp: vnet && udp,
        }
    }

    /// True when no slot is free: call [`Coalescer::flush`] before the next reserve.
    pub fn is_full(&self) -> bool {
        self.free.is_empty()
    }

    /// True when nothing waits to be written.
    pub fn is_empty(&self) -> bool {
        self.used.is_empty()
    }

    /// The buffer to decrypt a `datagram_len`-byte datagram into: at least that long. Follow with
    /// [`Coalescer::commit`] (a packet of that many bytes is at its start) or
    /// [`Coalescer::abort`]. Needs a free slot (see [`Coalescer::is_full`]); without one it
    /// returns an empty buffer.
    pub fn reserve(&mut self, datagram_len: usize) -> &mut [u8] {
        self.abort();
        if let Some(h) = self.hot
            && let Some(flow) = self.slots[h].flow
            && !flow.closed
        {
            let slot = &mut self.slots[h];
            let tail = slot.len;
            let at = tail - flow.hdr_len;
            // The new headers must not reach into the first packet's headers, and a full-sized
            // packet must fit; otherwise it goes to a fresh slot.
            let payload = datagram_len.saturating_sub(32 + flow.hdr_len);
            if at >= self.off + flow.hdr_len
                && at + datagram_len <= slot.buf.len()
                && tail + payload <= self.off + MAX_IP_PACKET
                && !self.free.is_empty()
            {
                let mut saved = [0u8; MAX_SAVED];
                saved[..flow.hdr_len].copy_from_slice(&slot.buf[at..tail]);
                self.pending = Pending::Tail {
                    slot: h,
                    at,
                    saved,
                    n: flow.hdr_len,
                };
                return &mut self.slots[h].buf[at..];
            }
        }
        match self.free.last() {
            Some(&f) => {
                self.pending = Pending::Fresh { slot: f };
                &mut self.slots[f].buf[self.off..]
            }
            None => &mut [],
        }
    }

    /// Forgets the reserved place (nothing usable was decrypted into it).
    pub fn abort(&mut self) {
        if let Pending::Tail { slot, at, saved, n } =
            std::mem::replace(&mut self.pending, Pending::None)
        {
            self.slots[slot].buf[at..at + n].copy_from_slice(&saved[..n]);
        }
    }

    /// Takes the `len`-byte packet decrypted into the reserved place.
    pub fn commit(&mut self, len: usize) {
        match std::mem::replace(&mut self.pending, Pending::None) {
            Pending::None => {}
            Pending::Fresh { slot } => self.place(slot, len),
            Pending::Tail {
                slot: h,
                at,
                saved,
                n,
            } => {
                let tail = self.slots[h].len;
                let appended = {
                    let slot = &self.slots[h];
                    let first = &slot.buf[self.off..];
                    let packet = &slot.buf[at..at + len];
                    slot.flow
                        .and_then(|flow| appendable(&flow, first, packet, tail - self.off))
                };
                if let Some(payload) = appended {
                    // The payload is already in place behind the previous one.
                    let slot = &mut self.slots[h];
                    if let Some(flow) = &mut slot.flow {
                        let psh = has_psh(flow, &slot.buf[at..at + n]);
                        extend(flow, psh, payload);
                    }
                    slot.buf[at..tail].copy_from_slice(&saved[..n]);
                    slot.len = tail + payload;
                    return;
                }
                let Some(&f) = self.free.last() else {
                    // reserve() only guesses with a free slot in hand; stay safe regardless.
                    self.slots[h].buf[at..at + n].copy_from_slice(&saved[..n]);
                    return;
                };
                let (from, to) = two(&mut self.slots, h, f);
                to.buf[self.off..self.off + len].copy_from_slice(&from.buf[at..at + len]);
                from.buf[at..at + n].copy_from_slice(&saved[..n]);
                self.place(f, len);
            }
        }
    }

    /// Files the packet at the start of free slot `f`: appended to an open super-packet of its
    /// flow (one copy), or kept in `f` as the start of a new one or as a packet of its own.
    fn place(&mut self, f: usize, len: usize) {
        let off = self.off;
        let packet = &self.slots[f].buf[off..off + len];
        let flow = classify(packet, self.tcp, self.udp);
        // The open super-packet of the packet's flow: the packet joins it, or it is closed so
        // that this flow's packets stay in order.
        let same = self.used.iter().rev().copied().find(|&s| {
            self.slots[s].flow.is_some_and(|open| {
                !open.closed && same_flow(&open, &self.slots[s].buf[off..], packet)
            })
        });
        if let Some(s) = same {
            let (slot, new) = two(&mut self.slots, s, f);
            let packet = &new.buf[off..off + len];
            let appended = slot
                .flow
                .and_then(|open| appendable(&open, &slot.buf[off..], packet, slot.len - off));
            match (appended, &mut slot.flow) {
                (Some(payload), Some(open)) => {
                    let hdr_len = open.hdr_len;
                    slot.buf[slot.len..slot.len + payload].copy_from_slice(&packet[hdr_len..]);
                    slot.len += payload;
                    extend(open, has_psh(open, packet), payload);
                    self.hot = Some(s);
                    return;
                }
                (_, Some(open)) => open.closed = true,
                (_, None) => {}
            }
        }
        self.free.pop();
        self.used.push(f);
        let slot = &mut self.slots[f];
        slot.len = off + len;
        slot.flow = flow;
        if flow.is_some_and(|fl| !fl.closed) {
            self.hot = Some(f);
        }
    }

    /// Writes every packet and super-packet, oldest first, each with its vnet header (when the
    /// TUN has one), and frees all slots.
    pub fn flush(&mut self, mut write: impl FnMut(&[u8])) {
        self.abort();
        for &s in &self.used {
            let slot = &mut self.slots[s];
            if self.off > 0 {
                let hdr = match slot.flow {
                    Some(flow) if flow.count > 1 => finish(&flow, &mut slot.buf, slot.len),
                    _ => VnetHdr::default(),
                };
                hdr.encode(&mut slot.buf[..VNET_HDR_LEN]);
            }
            write(&slot.buf[..slot.len]);
        }
        self.free.extend(self.used.drain(..).rev());
        self.hot = None;
    }
}

/// Mutable references to two different slots.
fn two(slots: &mut [Slot], a: usize, b: usize) -> (&mut Slot, &mut Slot) {
    debug_assert_ne!(a, b);
    if a < b {
        let (x, y) = slots.split_at_mut(b);
        (&mut x[a], &mut y[0])
    } else {
        let (x, y) = slots.split_at_mut(a);
        (&mut y[0], &mut x[b])
    }
}

/// The flow a packet could start, or None for a packet that is never coalesced.
fn classify(p: &[u8], tcp: bool, udp: bool) -> Option<Flow> {
    if !tcp {
        return None;
    }
    let (v6, ip_len, protocol) = match p.first()? >> 4 {
        4 if p.len() >= 20
            && p[0] == 0x45
            && usize::from(be16(p, 2)) == p.len()
            && be16(p, 6) & 0x3fff == 0 =>
        {
            (false, 20, p[9])
        }
        6 if p.len() >= 40 && usize::from(be16(p, 4)) + 40 == p.len() => (true, 40, p[6]),
        _ => return None,
    };
    let (transport, hdr_len, next_seq, psh) = match protocol {
        PROTO_TCP if p.len() >= ip_len + 20 => {
            let hdr_len = ip_len + usize::from(p[ip_len + 12] >> 4) * 4;
            let flags = p[ip_len + 13];
            if hdr_len < ip_len + 20 || hdr_len > p.len() || flags & !TCP_PSH != TCP_ACK {
                return None;
            }
            let payload = p.len() - hdr_len;
            let seq = be32(p, ip_len + 4).wrapping_add(payload as u32);
            (Transport::Tcp, hdr_len, seq, flags & TCP_PSH != 0)
        }
        PROTO_UDP if udp && p.len() >= ip_len + 8 => {
            if usize::from(be16(p, ip_len + 4)) != p.len() - ip_len {
                return None;
            }
            (Transport::Udp, ip_len + 8, 0, false)
        }
        _ => return None,
    };
    let gso_size = p.len() - hdr_len;
    if gso_size == 0 {
        return None;
    }
    Some(Flow {
        transport,
        v6,
        ip_len,
        hdr_len,
        gso_size,
        next_seq,
        count: 1,
        closed: psh,
        psh,
    })
}

/// Whether `p` has the addresses and transport protocol of `flow` (whose first packet starts
/// `first`).
fn same_hosts(flow: &Flow, first: &[u8], p: &[u8]) -> bool {
    let Some(&b) = p.first() else { return false };
    if (b >> 4 == 6) != flow.v6 || p.len() < flow.ip_len {
        return false;
    }
    let protocol = if flow.v6 { 6 } else { 9 };
    p[protocol] == first[protocol] && addresses(p, flow.v6) == addresses(first, flow.v6)
}

/// Whether `p` may belong to the flow of `flow` (whose first packet starts `first`): same
/// addresses, protocol and, where `p` shows them, ports. Used to keep a flow in order, so when in
/// doubt (a fragment) the answer is yes.
fn same_flow(flow: &Flow, first: &[u8], p: &[u8]) -> bool {
    if !same_hosts(flow, first, p) {
        return false;
    }
    let at = if flow.v6 {
        40
    } else {
        if be16(p, 6) & 0x1fff != 0 {
            return true;
        }
        usize::from(p[0] & 0xf) * 4
    };
    let ip = flow.ip_len;
    p.get(at..at + 4)
        .is_none_or(|ports| ports == &first[ip..ip + 4])
}

/// The payload length `p` adds when it may follow the super-packet `flow` (whose first packet
/// starts `first`, `total` bytes so far).
fn appendable(flow: &Flow, first: &[u8], p: &[u8], total: usize) -> Option<usize> {
    let (ip, hdr) = (flow.ip_len, flow.hdr_len);
    if flow.closed || p.len() < hdr + 1 || !same_hosts(flow, first, p) {
        return None;
    }
    let payload = p.len() - hdr;
    if payload > flow.gso_size || total + payload > MAX_IP_PACKET {
        return None;
    }
    let ip_ok = if flow.v6 {
        p[..4] == first[..4] && usize::from(be16(p, 4)) + 40 == p.len() && p[7] == first[7]
    } else {
        p[0] == 0x45
            && p[1] == first[1]
            && usize::from(be16(p, 2)) == p.len()
            && be16(p, 6) & 0x3fff == 0
            && p[6] == first[6]
            && p[8] == first[8]
    };
    // Source and destination ports.
    if !ip_ok || p[ip..ip + 4] != first[ip..ip + 4] {
        return None;
    }
    let ok = match flow.transport {
        Transport::Tcp => {
            let flags = p[ip + 13];
            be32(p, ip + 4) == flow.next_seq
                && p[ip + 8..ip + 13] == first[ip + 8..ip + 13]
                && flags & !TCP_PSH == TCP_ACK
                && p[ip + 20..hdr] == first[ip + 20..hdr]
        }
        Transport::Udp => usize::from(be16(p, ip + 4)) == p.len() - ip,
    };
    ok.then_some(payload)
}

/// Whether the TCP packet with headers `headers` (of `flow`'s shape) has PSH set.
fn has_psh(flow: &Flow, headers: &[u8]) -> bool {
    flow.transport == Transport::Tcp && headers[flow.ip_len + 13] & TCP_PSH != 0
}

/// Accounts a packet of `payload` bytes (with PSH or not) appended to `flow`.
fn extend(flow: &mut Flow, psh: bool, payload: usize) {
    flow.count += 1;
    flow.next_seq = flow.next_seq.wrapping_add(payload as u32);
    flow.psh |= psh;
    if psh || payload < flow.gso_size {
        flow.closed = true;
    }
}

/// Fixes the first packet's headers for the whole super-packet in `buf[VNET_HDR_LEN..len]` and
/// returns its vnet header.
fn finish(flow: &Flow, buf: &mut [u8], len: usize) -> VnetHdr {
    let p = &mut buf[VNET_HDR_LEN..len];
    let total = p.len();
    let ip = flow.ip_len;
    if flow.v6 {
        put16(p, 4, (total - 40) as u16);
    } else {
        put16(p, 2, total as u16);
        fix_ipv4_checksum(p, 20);
    }
    let (protocol, csum_offset, gso_type) = match flow.transport {
        Transport::Tcp => {
            if flow.psh {
                p[ip + 13] |= TCP_PSH;
            }
            (PROTO_TCP, 16, if flow.v6 { GSO_TCPV6 } else { GSO_TCPV4 })
        }
        Transport::Udp => {
            put16(p, ip + 4, (total - ip) as u16);
            (PROTO_UDP, 6, GSO_UDP_L4)
        }
    };
    let (src, dst) = addresses(p, flow.v6);
    let pseudo = fold(pseudo_header(src, dst, protocol, total - ip));
    put16(p, ip + csum_offset, pseudo);
    VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type,
        hdr_len: flow.hdr_len as u16,
        gso_size: flow.gso_size as u16,
        csum_start: ip as u16,
        csum_offset: csum_offset as u16,
    }
}
