//! Feeds 100,000 random and mutated byte strings to every decoder of the crate. None may panic;
//! a mutated input that still decodes must also survive verification or re-encoding.

use std::net::{Ipv4Addr, Ipv6Addr};

use wiremesh_core::config::{Addresses, AgentConfig};
use wiremesh_core::controller_config::ControllerFile;
use wiremesh_core::frame::{FrameDecoder, encode_frame};
use wiremesh_core::keys::{
    Identity, KeyFile, NetworkKey, NetworkSecret, NodePublicKey, NodeSecret, WireguardPublicKey,
};
use wiremesh_core::messages::{EndpointReport, EnrollRequest, Hello, Message, NetmapPush};
use wiremesh_core::netmap::{Flags, Member, Netmap, NetmapContent};

const ROUNDS: usize = 100_000;

/// xorshift64*: fast, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Random bytes half of the time, otherwise a seed mutated 1-8 times: bit flips, byte sets,
/// interesting values, truncation, extension, insertion, deletion and duplication of a slice.
fn input(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    if rng.below(2) == 0 {
        let len = rng.below(300);
        return (0..len).map(|_| rng.next() as u8).collect();
    }
    let mut v = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(v.len());
        match rng.below(8) {
            0 if !v.is_empty() => v[at] ^= 1 << rng.below(8),
            1 if !v.is_empty() => v[at] = rng.next() as u8,
            2 if !v.is_empty() => v[at] = [0, 0x7f, 0x80, 0xff][rng.below(4)],
            3 => v.truncate(at),
            4 => v.extend((0..rng.below(16)).map(|_| rng.next() as u8)),
            5 => v.insert(at, rng.next() as u8),
            6 if !v.is_empty() => drop(v.remove(at)),
            7 if !v.is_empty() => {
                let end = (at + rng.below(32)).min(v.len());
                let slice = v[at..end].to_vec();
                v.splice(at..at, slice);
            }
            _ => {}
        }
    }
    v
}

fn member(i: u8) -> Member {
    Member {
        candidates: Vec::new(),
        name: format!("machine-{i}"),
        wireguard_public_key: WireguardPublicKey::from_bytes([i; 32]),
        node_public_key: NodePublicKey::from_bytes([i.wrapping_add(100); 32]),
        addresses: Addresses {
            ipv4: Some(Ipv4Addr::new(100, 96, 0, i)),
            ipv6: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, u16::from(i)),
        },
        endpoints: vec![format!("198.18.0.{i}:51820")],
        routes: vec![format!("100.100.{i}.0/24").parse().unwrap()],
        flags: Flags::CONTROLLER,
    }
}

fn netmap_seed(key: &NetworkSecret) -> Vec<u8> {
    NetmapContent {
        network: key.public_key(),
        instance: "my-vpn".into(),
        epoch: 3,
        issued_at: 100,
        expires_at: 200,
        members: (1..4).map(member).collect(),
    }
    .canonicalize()
    .unwrap()
    .sign(key)
    .encode()
}

#[test]
fn netmap_decoder_never_panics() {
    let key = NetworkSecret::from_seed([1; 32]);
    let seeds = vec![netmap_seed(&key)];
    let mut rng = Rng(0x5eed_0001);
    let mut decoded = 0;
    for _ in 0..ROUNDS {
        let bytes = input(&mut rng, &seeds);
        if let Ok(map) = Netmap::decode(&bytes) {
            decoded += 1;
            let _ = map.verify(&key.public_key(), Some(2), 150);
            assert_eq!(Netmap::decode(&map.encode()).as_ref(), Ok(&map));
        }
    }
    assert!(
        decoded > 0,
        "no mutated input decoded: the mutator is too destructive"
    );
}

#[test]
fn message_decoder_never_panics() {
    let node = NodeSecret::from_seed([2; 32]);
    let seeds: Vec<Vec<u8>> = [
        Message::Hello(Hello {
            protocol_version: 1,
            instance: "my-vpn".into(),
            node_public_key: node.public_key(),
            nonce: [7; 32],
        }),
        Message::EnrollRequest(EnrollRequest::new_signed(
            "laptop".into(),
            WireguardPublicKey::from_bytes([3; 32]),
            &node,
            Some(1),
            &[7; 32],
        )),
        Message::NetmapPush(NetmapPush {
            netmap: netmap_seed(&NetworkSecret::from_seed([1; 32])),
        }),
        Message::EndpointReport(EndpointReport {
            endpoints: vec!["198.18.0.1:51820".into()],
        }),
    ]
    .iter()
    .map(Message::encode)
    .collect();
    let mut rng = Rng(0x5eed_0002);
    for _ in 0..ROUNDS {
        let bytes = input(&mut rng, &seeds);
        if let Ok(m) = Message::decode(&bytes) {
            assert_eq!(Message::decode(&m.encode()), Ok(m));
        }
    }
}

#[test]
fn frame_decoder_never_panics() {
    let seeds: Vec<Vec<u8>> = vec![
        [
            encode_frame(b"hello", 64).unwrap(),
            encode_frame(&[1; 40], 64).unwrap(),
        ]
        .concat(),
        encode_frame(&[], 64).unwrap(),
    ];
    let mut rng = Rng(0x5eed_0003);
    for _ in 0..ROUNDS {
        let bytes = input(&mut rng, &seeds);
        let mut d = FrameDecoder::new(64);
        for piece in bytes.chunks(1 + rng.below(8)) {
            d.push(piece);
            while let Ok(Some(frame)) = d.next_frame() {
                assert!(frame.len() <= 64);
            }
        }
    }
}

#[test]
fn text_decoders_never_panic() {
    let identity = Identity::generate()
        .unwrap()
        .to_file_text()
        .as_bytes()
        .to_vec();
    let network = NetworkKey::generate()
        .unwrap()
        .to_file_text()
        .as_bytes()
        .to_vec();
    let config = include_str!("agent-config.json").as_bytes().to_vec();
    assert!(AgentConfig::from_json(include_str!("agent-config.json")).is_ok());
    let controller = include_str!("controller-config.json").as_bytes().to_vec();
    assert!(ControllerFile::from_json(include_str!("controller-config.json")).is_ok());
    let seeds = vec![identity, network, config, controller];
    let mut rng = Rng(0x5eed_0004);
    for _ in 0..ROUNDS {
        let bytes = input(&mut rng, &seeds);
        let text = String::from_utf8_lossy(&bytes);
        let _ = KeyFile::from_file_text(&text);
        let _ = Identity::from_file_text(&text);
        let _ = NetworkKey::from_file_text(&text);
        let _ = AgentConfig::from_json(&text);
        let _ = ControllerFile::from_json(&text);
        let _ = wiremesh_core::addresses::parse_ipv6_network(&text);
        let _ = wiremesh_core::addresses::parse_ipv4_network(&text);
        let _ = wiremesh_core::addresses::check_interface_name(&text);
    }
}
