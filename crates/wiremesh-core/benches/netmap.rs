//! Build+sign and decode+verify of a 10,000-member netmap (goal: under 50 ms each). Prints the
//! encoded size once.

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use wiremesh_core::config::Addresses;
use wiremesh_core::keys::{NetworkSecret, NodePublicKey, WireguardPublicKey};
use wiremesh_core::netmap::{Flags, Member, Netmap, NetmapContent};

const MEMBERS: u32 = 10_000;

/// Members shaped like a real mesh: hashed names, both keys, IPv4 for half, one endpoint each,
/// a route for every tenth.
fn members() -> Vec<Member> {
    (0..MEMBERS)
        .map(|i| {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_be_bytes());
            key[4..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9).to_be_bytes());
            let mut node = key;
            node[31] = 0xaa;
            Member {
                candidates: Vec::new(),
                name: format!("host-{:08x}", i.wrapping_mul(0x9e37_79b9)),
                wireguard_public_key: WireguardPublicKey::from_bytes(key),
                node_public_key: NodePublicKey::from_bytes(node),
                addresses: Addresses {
                    ipv4: i.is_multiple_of(2).then(|| Ipv4Addr::from(0x6460_0000 + i)),
                    ipv6: Ipv6Addr::from((0xfd8c_65c0_2740_u128 << 80) | u128::from(i) << 17),
                },
                endpoints: vec![format!("198.18.{}.{}:51820", i / 256 % 256, i % 256)],
                routes: if i.is_multiple_of(10) {
                    vec![format!("100.100.{}.0/24", i / 10 % 256).parse().unwrap()]
                } else {
                    vec![]
                },
                flags: Flags::default(),
            }
        })
        .collect()
}

fn build_and_sign(members: Vec<Member>, key: &NetworkSecret) -> Netmap {
    NetmapContent {
        network: key.public_key(),
        instance: "my-vpn".into(),
        epoch: 42,
        issued_at: 1_700_000_000,
        expires_at: 1_700_086_400,
        members,
    }
    .canonicalize()
    .expect("benchmark members are valid")
    .sign(key)
}

fn bench(c: &mut Criterion) {
    let key = NetworkSecret::from_seed([7; 32]);
    let members = members();
    let bytes = build_and_sign(members.clone(), &key).encode();
    println!(
        "encoded size of a {MEMBERS}-member netmap: {} bytes ({:.1} bytes/member)",
        bytes.len(),
        bytes.len() as f64 / f64::from(MEMBERS)
    );
    c.bench_function("netmap 10k: build+sign+encode", |b| {
        b.iter(|| build_and_sign(black_box(members.clone()), &key).encode())
    });
    let pinned = key.public_key();
    c.bench_function("netmap 10k: decode+verify", |b| {
        b.iter(|| {
            let map = Netmap::decode(black_box(&bytes)).expect("valid netmap");
            map.verify(&pinned, Some(41), 1_700_000_100)
                .map(|c| c.members.len())
                .expect("accepted")
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
