//! Split and coalesce against each other and against hand-built packets: the byte stream of every
//! flow survives, in order, with valid checksums, whatever the mix of flows and odd packets.

use proptest::prelude::*;

use super::checksum::{fold, pseudo_header, sum};
use super::coalesce::Coalescer;
use super::split::{SplitError, split};
use super::*;

const ACK: u8 = TCP_ACK;
const PSH: u8 = TCP_PSH;

#[derive(Clone, Copy, Debug)]
struct Tcp {
    v6: bool,
    sport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    options: usize,
}

fn tcp(v6: bool, sport: u16, seq: u32) -> Tcp {
    Tcp {
        v6,
        sport,
        seq,
        ack: 77,
        flags: ACK,
        options: 12,
    }
}

fn ip_header(v6: bool, protocol: u8, payload: usize, id: u16) -> Vec<u8> {
    if v6 {
        let mut h = vec![0x60, 0, 0, 0, 0, 0, protocol, 64];
        h[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
        h.extend_from_slice(&[0xfd, 0x64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        h.extend_from_slice(&[0xfd, 0x64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        h
    } else {
        let mut h = vec![
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, protocol, 0, 0, 100, 64, 0, 1,
        ];
        h.extend_from_slice(&[100, 64, 0, 2]);
        put16(&mut h, 2, (20 + payload) as u16);
        put16(&mut h, 4, id);
        fix_ipv4_checksum(&mut h, 20);
        h
    }
}

fn tcp_packet(t: Tcp, payload: &[u8]) -> Vec<u8> {
    let thl = 20 + t.options;
    let mut p = ip_header(t.v6, PROTO_TCP, thl + payload.len(), 1000);
    let ip = p.len();
    p.extend_from_slice(&t.sport.to_be_bytes());
    p.extend_from_slice(&5201u16.to_be_bytes());
    p.extend_from_slice(&t.seq.to_be_bytes());
    p.extend_from_slice(&t.ack.to_be_bytes());
    p.push(((thl / 4) as u8) << 4);
    p.push(t.flags);
    p.extend_from_slice(&[0x01, 0xf5, 0, 0, 0, 0]);
    // Options: NOPs and a timestamp, as Linux sends them.
    for i in 0..t.options {
        p.push(if i < 2 { 1 } else { (i * 7) as u8 });
    }
    p.extend_from_slice(payload);
    set_transport_checksum(&mut p, ip, 16);
    p
}

fn udp_packet(v6: bool, sport: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = ip_header(v6, PROTO_UDP, 8 + payload.len(), 1000);
    let ip = p.len();
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&53u16.to_be_bytes());
    p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    set_transport_checksum(&mut p, ip, 6);
    p
}

fn set_transport_checksum(p: &mut [u8], ip: usize, offset: usize) {
    put16(p, ip + offset, 0);
    let (src, dst) = addresses(p, ip == 40);
    let pseudo = pseudo_header(src, dst, p[if ip == 40 { 6 } else { 9 }], p.len() - ip);
    let c = !fold(sum(&p[ip..], pseudo));
    put16(p, ip + offset, c);
}

fn checksums_valid(p: &[u8]) -> bool {
    let v6 = p[0] >> 4 == 6;
    let ip = if v6 { 40 } else { 20 };
    if !v6 && fold(sum(&p[..20], 0)) != 0xffff {
        return false;
    }
    let (src, dst) = addresses(p, v6);
    let protocol = p[if v6 { 6 } else { 9 }];
    fold(sum(
        &p[ip..],
        pseudo_header(src, dst, protocol, p.len() - ip),
    )) == 0xffff
}

fn payload(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ salt)
        .collect()
}

/// A TSO super-packet as the kernel hands it over: one header run, the pseudo-header sum in the
/// checksum field, and its vnet header.
fn super_packet(t: Tcp, data: &[u8], mss: u16) -> (VnetHdr, Vec<u8>) {
    let mut p = tcp_packet(t, data);
    let ip = if t.v6 { 40 } else { 20 };
    let (src, dst) = addresses(&p, t.v6);
    let partial = fold(pseudo_header(src, dst, PROTO_TCP, p.len() - ip));
    put16(&mut p, ip + 16, partial);
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: if t.v6 { GSO_TCPV6 } else { GSO_TCPV4 },
        hdr_len: (ip + 20 + t.options) as u16,
        gso_size: mss,
        csum_start: ip as u16,
        csum_offset: 16,
    };
    (hdr, p)
}

fn split_all(hdr: &VnetHdr, mut p: Vec<u8>) -> Result<Vec<Vec<u8>>, SplitError> {
    let mut out = Vec::new();
    split(hdr, &mut p, |s| out.push(s.to_vec()))?;
    Ok(out)
}

/// `packets` with the IPv4 ID and header checksum cleared: a super-packet's segments get IDs
/// counted from its first packet's, whatever the originals had (as with Linux GSO).
fn normalized(packets: &[Vec<u8>]) -> Vec<Vec<u8>> {
    packets
        .iter()
        .map(|p| {
            let mut p = p.clone();
            if p[0] >> 4 == 4 {
                p[4..6].fill(0);
                p[10..12].fill(0);
            }
            p
        })
        .collect()
}

/// What the kernel makes of one TUN write: the packets it stands for. Checks the vnet header
/// contract on the way (NEEDS_CSUM with the pseudo-header sum in place).
fn kernel_receive(written: &[u8]) -> Vec<Vec<u8>> {
    let hdr = VnetHdr::decode(written).unwrap();
    let p = written[VNET_HDR_LEN..].to_vec();
    if hdr.gso_type == GSO_NONE {
        assert_eq!(hdr, VnetHdr::default());
        return vec![p];
    }
    assert_eq!(hdr.flags, F_NEEDS_CSUM);
    let ip = usize::from(hdr.csum_start);
    let v6 = p[0] >> 4 == 6;
    let (src, dst) = addresses(&p, v6);
    let protocol = if hdr.gso_type == GSO_UDP_L4 {
        PROTO_UDP
    } else {
        PROTO_TCP
    };
    let field = be16(&p, ip + usize::from(hdr.csum_offset));
    assert_eq!(
        field,
        fold(pseudo_header(src, dst, protocol, p.len() - ip)),
        "pseudo-header sum"
    );
    if !v6 {
        assert_eq!(fold(sum(&p[..20], 0)), 0xffff, "IPv4 header checksum");
        assert_eq!(usize::from(be16(&p, 2)), p.len());
    } else {
        assert_eq!(usize::from(be16(&p, 4)) + 40, p.len());
    }
    assert!(p.len() <= MAX_IP_PACKET);
    split_all(&hdr, p).unwrap()
}

/// Feeds `packets` through a coalescer the way the RX thread does (each decrypted into the
/// reserved place, 16 bytes of tag behind it), flushing after every `batch` packets; returns the
/// TUN writes.
fn coalesce_all(packets: &[Vec<u8>], slots: usize, batch: usize, udp: bool) -> Vec<Vec<u8>> {
    let mut c = Coalescer::new(slots, true, udp);
    let mut writes = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        if c.is_full() || (i > 0 && i % batch == 0) {
            c.flush(|w| writes.push(w.to_vec()));
        }
        let out = c.reserve(p.len() + 32);
        assert!(out.len() >= p.len() + 32);
        out[..p.len()].copy_from_slice(p);
        out[p.len()..p.len() + 16].fill(0xee);
        c.commit(p.len());
    }
    c.flush(|w| writes.push(w.to_vec()));
    assert!(c.is_empty());
    writes
}

#[test]
fn split_cuts_tcp_into_valid_segments() {
    for v6 in [false, true] {
        let data = payload(10_000, 3);
        let mut t = tcp(v6, 40000, 0xffff_f000);
        t.flags = ACK | PSH | TCP_FIN | TCP_CWR;
        let (hdr, p) = super_packet(t, &data, 1388);
        let segments = split_all(&hdr, p).unwrap();
        assert_eq!(segments.len(), 8);
        let ip = if v6 { 40 } else { 20 };
        let mut stream = Vec::new();
        for (i, s) in segments.iter().enumerate() {
            assert!(checksums_valid(s), "segment {i}");
            assert_eq!(
                be32(s, ip + 4),
                0xffff_f000u32.wrapping_add(1388 * i as u32)
            );
            let flags = s[ip + 13];
            assert_eq!(flags & TCP_CWR != 0, i == 0);
            assert_eq!(flags & (PSH | TCP_FIN) != 0, i == 7);
            if !v6 {
                assert_eq!(be16(s, 4), 1000 + i as u16);
            }
            stream.extend_from_slice(&s[ip + 32..]);
        }
        assert_eq!(stream, data);
    }
}

#[test]
fn split_completes_the_checksum_of_a_single_packet() {
    let mut p = udp_packet(false, 9, &payload(333, 1));
    let (src, dst) = addresses(&p, false);
    let partial = fold(pseudo_header(src, dst, PROTO_UDP, p.len() - 20));
    put16(&mut p, 26, partial);
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        csum_start: 20,
        csum_offset: 6,
        ..VnetHdr::default()
    };
    let out = split_all(&hdr, p).unwrap();
    assert_eq!(out.len(), 1);
    assert!(checksums_valid(&out[0]));
}

#[test]
fn split_cuts_udp_gso() {
    let mut p = udp_packet(true, 9, &payload(3000, 2));
    let (src, dst) = addresses(&p, true);
    let partial = fold(pseudo_header(src, dst, PROTO_UDP, p.len() - 40));
    put16(&mut p, 46, partial);
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_UDP_L4,
        hdr_len: 48,
        gso_size: 1200,
        csum_start: 40,
        csum_offset: 6,
    };
    let out = split_all(&hdr, p).unwrap();
    assert_eq!(
        out.iter().map(Vec::len).collect::<Vec<_>>(),
        [1248, 1248, 648]
    );
    for s in &out {
        assert!(checksums_valid(s));
        assert_eq!(usize::from(be16(s, 44)), s.len() - 40);
    }
}

#[test]
fn split_refuses_what_it_cannot_cut() {
    let (hdr, p) = super_packet(tcp(false, 1, 1), &payload(3000, 0), 1000);
    let ufo = VnetHdr { gso_type: 3, ..hdr };
    assert_eq!(split_all(&ufo, p.clone()), Err(SplitError::GsoType(3)));
    let wrong_version = VnetHdr {
        gso_type: GSO_TCPV6,
        ..hdr
    };
    assert!(split_all(&wrong_version, p.clone()).is_err());
    assert!(split_all(&VnetHdr { gso_size: 0, ..hdr }, p.clone()).is_err());
    assert!(
        split_all(
            &VnetHdr {
                csum_start: 24,
                ..hdr
            },
            p.clone()
        )
        .is_err()
    );
    assert!(split_all(&hdr, p[..30].to_vec()).is_err());
    // A TCP data offset below 5: segments would end before the flags and checksum fields.
    let mut short_tcp = p.clone();
    short_tcp[20 + 12] = 2 << 4;
    assert!(split_all(&VnetHdr { gso_size: 1, ..hdr }, short_tcp).is_err());
}

#[test]
fn one_flow_becomes_one_super_packet_and_splits_back_exactly() {
    for v6 in [false, true] {
        let (hdr, p) = super_packet(tcp(v6, 40000, 5), &payload(60_000, 9), 1388);
        let segments = split_all(&hdr, p).unwrap();
        let writes = coalesce_all(&segments, 8, 1000, false);
        assert_eq!(writes.len(), 1);
        let back = kernel_receive(&writes[0]);
        assert_eq!(back, segments, "one super-packet in, the same out");
    }
}

#[test]
fn psh_ends_a_super_packet_and_is_kept() {
    let data = payload(5000, 4);
    let mut t = tcp(false, 1, 100);
    t.flags = ACK | PSH;
    let (hdr, p) = super_packet(t, &data, 1000);
    let first = split_all(&hdr, p).unwrap();
    let (hdr, p) = super_packet(tcp(false, 1, 5100), &data, 1000);
    let second = split_all(&hdr, p).unwrap();
    let all: Vec<Vec<u8>> = first.iter().chain(&second).cloned().collect();
    let writes = coalesce_all(&all, 8, 1000, false);
    assert_eq!(writes.len(), 2);
    assert_eq!(normalized(&kernel_receive(&writes[0])), normalized(&first));
    assert_eq!(normalized(&kernel_receive(&writes[1])), normalized(&second));
}

#[test]
fn odd_packets_are_written_alone_and_in_order() {
    let a = |seq: u32, flags: u8, len: usize| {
        let mut t = tcp(false, 1, seq);
        t.flags = flags;
        tcp_packet(t, &payload(len, 0))
    };
    let packets = vec![
        a(0, ACK, 1000),
        a(1000, ACK, 1000),
        a(2000, ACK, 0),            // pure ACK: never coalesced, ends the open one
        a(2000, ACK, 1000),         // starts anew
        a(5000, ACK, 1000),         // sequence gap
        a(6000, ACK | TCP_FIN, 10), // FIN
        a(6010, 0x02, 0),           // SYN
    ];
    let writes = coalesce_all(&packets, 8, 1000, false);
    let back: Vec<Vec<u8>> = writes.iter().flat_map(|w| kernel_receive(w)).collect();
    assert_eq!(normalized(&back), normalized(&packets));
    assert_eq!(writes.len(), 6);
}

#[test]
fn different_acks_options_and_ip_options_are_not_merged() {
    let mut t = tcp(false, 1, 0);
    let p1 = tcp_packet(t, &payload(100, 0));
    t.seq = 100;
    t.ack = 78;
    let p2 = tcp_packet(t, &payload(100, 0));
    t.seq = 200;
    t.options = 0;
    let p3 = tcp_packet(t, &payload(100, 0));
    // IPv4 with options (IHL 6).
    let mut p4 = vec![
        0x46, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0, 100, 64, 0, 1, 100, 64, 0, 2,
    ];
    p4.extend_from_slice(&[1, 1, 1, 0]);
    p4.extend_from_slice(&p3[20..]);
    let total = p4.len() as u16;
    put16(&mut p4, 2, total);
    let packets = vec![p1, p2, p3, p4];
    let writes = coalesce_all(&packets, 8, 1000, false);
    assert_eq!(writes.len(), 4);
    let back: Vec<Vec<u8>> = writes.iter().flat_map(|w| kernel_receive(w)).collect();
    assert_eq!(normalized(&back), normalized(&packets));
}

#[test]
fn udp_is_coalesced_only_when_the_tun_takes_it() {
    let packets: Vec<Vec<u8>> = (0..5)
        .map(|i| udp_packet(false, 7, &payload(if i == 4 { 300 } else { 1200 }, i)))
        .collect();
    let merged = coalesce_all(&packets, 8, 1000, true);
    assert_eq!(merged.len(), 1);
    assert_eq!(
        normalized(&kernel_receive(&merged[0])),
        normalized(&packets)
    );
    let alone = coalesce_all(&packets, 8, 1000, false);
    assert_eq!(alone.len(), 5);
}

#[test]
fn without_a_vnet_header_packets_pass_alone() {
    let packets: Vec<Vec<u8>> = (0..3)
        .map(|i| tcp_packet(tcp(true, 1, i * 500), &payload(500, 0)))
        .collect();
    let mut c = Coalescer::new(4, false, false);
    let mut writes = Vec::new();
    for p in &packets {
        let out = c.reserve(p.len() + 32);
        out[..p.len()].copy_from_slice(p);
        c.commit(p.len());
    }
    c.flush(|w| writes.push(w.to_vec()));
    assert_eq!(writes, packets);
}

#[test]
fn a_failed_decryption_leaves_the_super_packet_intact() {
    let (hdr, p) = super_packet(tcp(false, 1, 0), &payload(4000, 5), 1000);
    let segments = split_all(&hdr, p).unwrap();
    let mut c = Coalescer::new(4, true, false);
    let mut writes = Vec::new();
    for (i, s) in segments.iter().enumerate() {
        let out = c.reserve(s.len() + 32);
        out[..s.len()].copy_from_slice(s);
        c.commit(s.len());
        if i == 1 {
            // A datagram that fails to decrypt scribbles over the reserved place.
            let out = c.reserve(1500);
            out[..1500].fill(0x55);
            c.abort();
        }
    }
    c.flush(|w| writes.push(w.to_vec()));
    assert_eq!(writes.len(), 1);
    assert_eq!(kernel_receive(&writes[0]), segments);
}

#[test]
fn a_full_coalescer_refuses_nothing_it_has_taken() {
    let mut c = Coalescer::new(2, true, false);
    let packets: Vec<Vec<u8>> = (0..2)
        .map(|i| tcp_packet(tcp(false, i, 0), &payload(100, 0)))
        .collect();
    for p in &packets {
        let out = c.reserve(p.len() + 32);
        out[..p.len()].copy_from_slice(p);
        c.commit(p.len());
    }
    assert!(c.is_full());
    assert!(c.reserve(200).is_empty());
    c.abort();
    let mut writes = Vec::new();
    c.flush(|w| writes.push(w.to_vec()));
    assert_eq!(writes.len(), 2);
}

/// One flow's packets: TSO super-packets split as the sender does, with odd events mixed in.
fn flow_packets(t: Tcp, sizes: &[(usize, u16, u8)]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut seq = t.seq;
    for &(len, mss, event) in sizes {
        let mut t = Tcp { seq, ..t };
        match event % 8 {
            0 => t.flags = ACK | PSH,
            1 => seq = seq.wrapping_add(7), // a lost packet: gap in the sequence
            2 => {
                // A pure ACK in between.
                out.push(tcp_packet(t, &[]));
            }
            3 => t.ack = t.ack.wrapping_add(1),
            _ => {}
        }
        t.seq = seq;
        let (hdr, p) = super_packet(t, &payload(len, event), mss);
        out.extend(split_all(&hdr, p).unwrap());
        seq = seq.wrapping_add(len as u32);
    }
    out
}

/// Per flow (by source port), the packets in order.
fn by_flow(packets: &[Vec<u8>]) -> std::collections::BTreeMap<(u8, u16), Vec<Vec<u8>>> {
    let mut map: std::collections::BTreeMap<(u8, u16), Vec<Vec<u8>>> = Default::default();
    for p in packets {
        let ip = if p[0] >> 4 == 6 { 40 } else { 20 };
        map.entry((p[0] >> 4, be16(p, ip)))
            .or_default()
            .push(p.clone());
    }
    map
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn split_then_coalesce_preserves_every_flow(
        flows in proptest::collection::vec(
            (any::<bool>(), any::<u32>(), 0usize..3,
             proptest::collection::vec((1usize..20_000, 500u16..1500, any::<u8>()), 1..5)),
            1..4),
        interleave in proptest::collection::vec(any::<u8>(), 0..400),
        slots in 1usize..6,
        batch in 1usize..50,
    ) {
        let per_flow: Vec<Vec<Vec<u8>>> = flows
            .iter()
            .enumerate()
            .map(|(i, (v6, seq, options, sizes))| {
                let mut t = tcp(*v6, 1000 + i as u16, *seq);
                t.options = options * 4;
                flow_packets(t, sizes)
            })
            .collect();
        // Interleave the flows, keeping each flow's order.
        let mut cursors = vec![0usize; per_flow.len()];
        let mut mixed = Vec::new();
        let mut choice = interleave.iter().cycle();
        while cursors.iter().zip(&per_flow).any(|(c, f)| *c < f.len()) {
            let pick = usize::from(*choice.next().unwrap_or(&0)) % per_flow.len();
            let f = (pick..pick + per_flow.len())
                .map(|k| k % per_flow.len())
                .find(|&k| cursors[k] < per_flow[k].len())
                .unwrap();
            mixed.push(per_flow[f][cursors[f]].clone());
            cursors[f] += 1;
        }
        let writes = coalesce_all(&mixed, slots, batch, false);
        prop_assert!(writes.len() <= mixed.len());
        let back: Vec<Vec<u8>> = writes.iter().flat_map(|w| kernel_receive(w)).collect();
        for p in &back {
            prop_assert!(checksums_valid(p));
        }
        prop_assert_eq!(by_flow(&normalized(&back)), by_flow(&normalized(&mixed)));
    }

    #[test]
    fn split_never_panics_on_garbage(
        data in proptest::collection::vec(any::<u8>(), 0..3000),
        flags in any::<u8>(), gso_type in any::<u8>(), hdr_len in any::<u16>(),
        gso_size in any::<u16>(), csum_start in any::<u16>(), csum_offset in any::<u16>(),
    ) {
        let hdr = VnetHdr { flags, gso_type, hdr_len, gso_size, csum_start, csum_offset };
        let mut data = data;
        let _ = split(&hdr, &mut data, |_| {});
    }

    #[test]
    fn coalescer_never_panics_on_garbage(
        packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..40),
    ) {
        let writes = coalesce_all(&packets, 3, 7, true);
        prop_assert!(writes.len() <= packets.len());
    }
}

/// Applies `edits` (offset, value) to the headers of `p` and cuts it to `keep` bytes at most: what
/// an authenticated but hostile member may send as inner packets.
fn mangled(mut p: Vec<u8>, edits: &[(u8, u8)], keep: usize) -> Vec<u8> {
    for &(at, value) in edits {
        let at = usize::from(at) % 100;
        if let Some(b) = p.get_mut(at) {
            *b = value;
        }
    }
    p.truncate(keep);
    p
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Valid packets of coalescable flows (so the coalescer gets past its first checks) with
    /// header bytes overwritten and lengths cut: nothing panics, and nothing written to the TUN
    /// exceeds a vnet header and the largest IP packet.
    #[test]
    fn coalescer_never_panics_on_mangled_flows(
        packets in proptest::collection::vec(
            (any::<bool>(), any::<bool>(), 0usize..3, 0usize..30_000,
             proptest::collection::vec((any::<u8>(), any::<u8>()), 0..3), any::<u16>(),
             0u8..4),
            1..30),
    ) {
        let mut c = Coalescer::new(4, true, true);
        let mut writes = Vec::new();
        let mut seq = 1u32;
        for (v6, udp, port, len, edits, keep, action) in packets {
            let data = payload(len, 3);
            let p = if udp {
                udp_packet(v6, port as u16, &data)
            } else {
                let p = tcp_packet(Tcp { seq, ..tcp(v6, port as u16, 0) }, &data);
                seq = seq.wrapping_add(len as u32);
                p
            };
            let p = if edits.is_empty() { p } else { mangled(p, &edits, usize::from(keep)) };
            if c.is_full() {
                c.flush(|w| writes.push(w.len()));
            }
            let out = c.reserve(p.len() + 32);
            prop_assert!(out.len() >= p.len() + 32);
            out[..p.len()].copy_from_slice(&p);
            out[p.len()..p.len() + 16].fill(0xee);
            match action {
                // boringtun may hand over less than it decrypted (the IP length field says so).
                0 => c.commit(p.len() / 2),
                1 => c.abort(),
                _ => c.commit(p.len()),
            }
        }
        c.flush(|w| writes.push(w.len()));
        for w in writes {
            prop_assert!(w <= VNET_HDR_LEN + MAX_IP_PACKET, "TUN write of {} bytes", w);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Real TSO/USO super-packets with header bytes and vnet fields overwritten: split never
    /// panics, and every segment it hands over lies within the packet it was given.
    #[test]
    fn split_never_panics_on_mangled_super_packets(
        v6 in any::<bool>(), udp in any::<bool>(), len in 0usize..5000,
        edits in proptest::collection::vec((any::<u8>(), any::<u8>()), 1..4),
        gso_size in prop_oneof![1u16..4, 500u16..1500, any::<u16>()],
        csum_start in prop_oneof![Just(20u16), Just(40), 0u16..80],
        keep in any::<u16>(),
    ) {
        let (hdr, p) = if udp {
            let p = udp_packet(v6, 7, &payload(len, 1));
            let hdr = VnetHdr {
                flags: F_NEEDS_CSUM, gso_type: GSO_UDP_L4, hdr_len: 0, gso_size,
                csum_start, csum_offset: 6,
            };
            (hdr, p)
        } else {
            let (hdr, p) = super_packet(tcp(v6, 7, 1), &payload(len, 1), 1000);
            (VnetHdr { gso_size, csum_start, ..hdr }, p)
        };
        let p = mangled(p, &edits, usize::from(keep));
        let total = p.len();
        let mut p = p;
        let _ = split(&hdr, &mut p, |s| assert!(s.len() <= total));
    }
}
