//! Cost of the TUN offload helpers per 64 KiB super-packet: the Internet checksum, splitting a
//! TSO super-packet into 1,388-byte segments (in place, checksums included), and coalescing those
//! segments back into one super-packet as the RX thread does.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wiremesh_peer::offload::checksum::{fold, pseudo_header, sum};
use wiremesh_peer::offload::coalesce::Coalescer;
use wiremesh_peer::offload::split::split;
use wiremesh_peer::offload::{F_NEEDS_CSUM, GSO_TCPV4, VnetHdr};

const MSS: usize = 1388;
const HEADERS: usize = 20 + 32;

/// An IPv4 TSO super-packet (timestamps option) as the kernel hands it over, and its vnet header.
fn super_packet() -> (VnetHdr, Vec<u8>) {
    let payload = 47 * MSS;
    let mut p = vec![
        0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0, 100, 64, 0, 1, 100, 64, 0, 2,
    ];
    p[2..4].copy_from_slice(&((HEADERS + payload) as u16).to_be_bytes());
    p.extend_from_slice(&[
        0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 1, 0x80, 0x10, 1, 0,
    ]);
    p.extend_from_slice(&[0, 0, 0, 0, 1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    p.extend((0..payload).map(|i| i as u8));
    let partial = fold(pseudo_header(&p[12..16], &p[16..20], 6, p.len() - 20));
    p[36..38].copy_from_slice(&partial.to_be_bytes());
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        hdr_len: HEADERS as u16,
        gso_size: MSS as u16,
        csum_start: 20,
        csum_offset: 16,
    };
    (hdr, p)
}

fn offload(c: &mut Criterion) {
    let (hdr, packet) = super_packet();
    let mut group = c.benchmark_group("offload");
    group.throughput(Throughput::Bytes(packet.len() as u64));

    group.bench_function("checksum 64 KiB", |b| {
        b.iter(|| fold(sum(black_box(&packet), 0)))
    });

    let mut work = packet.clone();
    group.bench_function("split 64 KiB TSO", |b| {
        b.iter(|| {
            work.copy_from_slice(&packet);
            split(&hdr, &mut work, |s| {
                black_box(s);
            })
        })
    });

    let mut segments = Vec::new();
    let mut work = packet.clone();
    split(&hdr, &mut work, |s| segments.push(s.to_vec())).unwrap();
    let mut coalescer = Coalescer::new(4, true, false);
    group.bench_function("coalesce 47 segments", |b| {
        b.iter(|| {
            for s in &segments {
                let out = coalescer.reserve(s.len() + 32);
                out[..s.len()].copy_from_slice(s);
                coalescer.commit(s.len());
            }
            coalescer.flush(|w| {
                black_box(w);
            });
        })
    });
    group.finish();
}

criterion_group!(benches, offload);
criterion_main!(benches);
