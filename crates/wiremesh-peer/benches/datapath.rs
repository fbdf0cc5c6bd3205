//! Per-packet cost of the sans-IO core: route + encrypt on one side, demux + decrypt + source
//! filter on the other, for 1420-byte packets between two members of a mesh of 1,000. The
//! difference to boringtun's bare seal/open (research notes: ~0.8 + ~0.9 µs per packet on this
//! machine) is what the member table, routing and filtering add. Also the inner source check
//! alone (cryptokey routing over every member's prefixes, against the sender's own prefixes as it
//! was before), and the cost of one handshake initiation of a flood, once the rate limiter is
//! under load.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ipnet::IpNet;
use wiremesh_peer::mesh::{
    FLUSH_OUT_LEN, Inbound, Mesh, OsIndexSource, Outbound, encapsulate_out_len,
};
use wiremesh_peer::prefix::{PrefixMap, PrefixSet};
use wiremesh_peer::spec::{MemberSpec, MeshSpec, SpecSource};

const MEMBERS: u32 = 1000;
const PACKET: usize = 1420;

fn key(n: u32) -> [u8; 32] {
    let mut k = [7u8; 32];
    // Not in byte 0, whose low bits x25519 clamps away.
    k[4..8].copy_from_slice(&n.to_le_bytes());
    k
}

fn public(n: u32) -> [u8; 32] {
    *x25519::PublicKey::from(&x25519::StaticSecret::from(key(n))).as_bytes()
}

fn overlay(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x644d_0000 + n))
}

fn endpoint(n: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0xc612_0000 + n)), 51820)
}

fn spec() -> MeshSpec {
    MeshSpec {
        relays: Vec::new(),
        addresses: vec![],
        networks: vec!["100.77.0.0/16".parse().unwrap()],
        ip_ranges: vec!["100.77.0.0/16".parse().unwrap()],
        members: (1..=MEMBERS)
            .map(|n| MemberSpec {
                candidates: Vec::new(),
                name: format!("m{n}"),
                public_key: public(n),
                addresses: vec![overlay(n)],
                routes: vec![IpNet::new(overlay(n + 2000), 32).unwrap()],
                endpoints: vec![endpoint(n)],
                persistent_keepalive: None,
            })
            .collect(),
        source: SpecSource::Config,
    }
}

fn ipv4_packet(src: IpAddr, dst: IpAddr) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) else {
        unreachable!()
    };
    let mut p = vec![0u8; PACKET];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(PACKET as u16).to_be_bytes());
    p[9] = 17;
    p[12..16].copy_from_slice(&s.octets());
    p[16..20].copy_from_slice(&d.octets());
    p
}

/// Two cores with a session between members 1 and 2.
fn connected() -> (Mesh, Mesh) {
    let spec = spec();
    let (a, _) = Mesh::new(key(1), &spec, &mut OsIndexSource);
    let (b, _) = Mesh::new(key(2), &spec, &mut OsIndexSource);
    let mut out = vec![0u8; FLUSH_OUT_LEN];
    let mut reply = vec![0u8; FLUSH_OUT_LEN];
    let first = ipv4_packet(overlay(1), overlay(2));
    let to_b = a.route(&first).unwrap();
    let Outbound::Send { len, .. } = a.encapsulate(to_b, &first, &mut out) else {
        panic!("no initiation")
    };
    let Inbound::Reply { len, .. } =
        b.decapsulate(endpoint(1), &out[..len], &mut reply, Instant::now())
    else {
        panic!("no response")
    };
    let Inbound::Reply { len, member, .. } =
        a.decapsulate(endpoint(2), &reply[..len], &mut out, Instant::now())
    else {
        panic!("no keepalive")
    };
    b.decapsulate(endpoint(1), &out[..len], &mut reply, Instant::now());
    let member = member.unwrap();
    while let Some((len, _)) = a.flush_queued(member, &mut out) {
        b.decapsulate(endpoint(1), &out[..len], &mut reply, Instant::now());
    }
    (a, b)
}

fn bench(c: &mut Criterion) {
    let (a, b) = connected();
    let packet = ipv4_packet(overlay(1), overlay(2));
    let mut wire = vec![0u8; encapsulate_out_len(PACKET)];
    let mut inner = vec![0u8; encapsulate_out_len(PACKET)];
    let now = Instant::now();
    let mut group = c.benchmark_group("1420-byte packet, 1000 members");
    group.throughput(Throughput::Bytes(PACKET as u64));
    group.bench_function("route + encapsulate", |bench| {
        bench.iter(|| {
            let member = a.route(black_box(&packet)).unwrap();
            black_box(a.encapsulate(member, &packet, &mut wire))
        })
    });
    group.bench_function("route + encapsulate + decapsulate + filter", |bench| {
        bench.iter(|| {
            let member = a.route(black_box(&packet)).unwrap();
            let Outbound::Send { len, .. } = a.encapsulate(member, &packet, &mut wire) else {
                panic!("not sent")
            };
            let result = b.decapsulate(endpoint(1), &wire[..len], &mut inner, now);
            assert!(matches!(result, Inbound::Tunnel { .. }));
            black_box(result)
        })
    });
    group.finish();
}

fn source_check(c: &mut Criterion) {
    let members = spec().members;
    let mut owners = PrefixMap::new();
    for (id, m) in members.iter().enumerate() {
        for prefix in m.owned_prefixes() {
            owners.insert(prefix, id);
        }
    }
    // A route around many members' addresses, as a gateway would advertise.
    owners.insert("100.77.0.0/22".parse().unwrap(), MEMBERS as usize);
    let sender = 1usize;
    let own: PrefixSet = members[sender].owned_prefixes().collect();
    let src = overlay(2);
    let mut group = c.benchmark_group("inner source check, 1000 members");
    group.bench_function(
        "longest prefix over all members (cryptokey routing)",
        |bench| bench.iter(|| owners.longest_match(black_box(src)) == Some(&sender)),
    );
    group.bench_function("sender's own prefixes only", |bench| {
        bench.iter(|| own.contains(black_box(src)))
    });
    group.finish();
}

/// A handshake initiation to member 2 from key `secret`.
fn initiation(secret: [u8; 32]) -> Vec<u8> {
    let mut tunn = Tunn::new(
        x25519::StaticSecret::from(secret),
        x25519::PublicKey::from(public(2)),
        None,
        None,
        1,
        None,
    );
    let mut buf = [0u8; 256];
    let TunnResult::WriteToNetwork(init) = tunn.format_handshake_initiation(&mut buf, false) else {
        panic!("no initiation")
    };
    init.to_vec()
}

fn flood(c: &mut Criterion) {
    let (_, b) = connected();
    let mut out = vec![0u8; FLUSH_OUT_LEN];
    let stranger = initiation([99; 32]);
    let spoofed_from = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 19, 0, 1)), 51820);
    let now = Instant::now();
    // Past the limiter's threshold and this period's budget of identifications.
    for _ in 0..1000 {
        b.decapsulate(spoofed_from, &stranger, &mut out, now);
    }
    let mut group = c.benchmark_group("handshake initiation under load");
    group.bench_function("stranger at an unknown address (dropped)", |bench| {
        bench.iter(|| {
            let result = b.decapsulate(spoofed_from, black_box(&stranger), &mut out, now);
            assert!(matches!(result, Inbound::Drop(_)));
            black_box(result)
        })
    });
    let member = initiation(key(1));
    group.bench_function("member at its configured endpoint (cookie)", |bench| {
        bench.iter(|| {
            let result = b.decapsulate(endpoint(1), black_box(&member), &mut out, now);
            assert!(matches!(result, Inbound::Reply { .. }));
            black_box(result)
        })
    });
    group.finish();
}

criterion_group!(benches, bench, source_check, flood);
criterion_main!(benches);
