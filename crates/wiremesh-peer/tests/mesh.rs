//! Several sans-IO cores wired together in memory: datagrams travel through a queue instead of
//! sockets, IP packets are built by hand instead of read from a TUN device.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519;
use ipnet::IpNet;
use wiremesh_core::netmap::CandidateKind;
use wiremesh_peer::mesh::{
    DropReason, FLUSH_OUT_LEN, Inbound, IndexSource, MemberId, MemberSnapshot, Mesh, OsIndexSource,
    Outbound, TICK_OUT_LEN, encapsulate_out_len,
};
use wiremesh_peer::path::Path;
use wiremesh_peer::spec::{MemberSpec, MeshSpec, SpecSource};

fn secret(n: u8) -> [u8; 32] {
    [n; 32]
}

fn public(n: u8) -> [u8; 32] {
    *x25519::PublicKey::from(&x25519::StaticSecret::from(secret(n))).as_bytes()
}

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// A minimal IPv4/UDP or IPv6/UDP packet: boringtun only reads version, length and addresses.
fn ip_packet(src: IpAddr, dst: IpAddr, payload: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = 20 + payload.len();
            let mut p = vec![
                0x45,
                0,
                (total >> 8) as u8,
                total as u8,
                0,
                0,
                0,
                0,
                64,
                17,
                0,
                0,
            ];
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(payload);
            p
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let len = payload.len();
            let mut p = vec![0x60, 0, 0, 0, (len >> 8) as u8, len as u8, 17, 64];
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(payload);
            p
        }
        _ => panic!("mixed address families"),
    }
}

/// [`ip_packet`] from address strings.
fn packet(src: &str, dst: &str, payload: &[u8]) -> Vec<u8> {
    ip_packet(ip(src), ip(dst), payload)
}

struct Machine {
    name: &'static str,
    key: u8,
    v4: IpAddr,
    v6: IpAddr,
    routes: Vec<IpNet>,
    endpoint: SocketAddr,
}

fn machines() -> Vec<Machine> {
    vec![
        Machine {
            name: "alpha",
            key: 1,
            v4: ip("100.77.0.1"),
            v6: ip("fd77::1"),
            routes: vec![net("100.77.100.0/24")],
            endpoint: sock("198.18.0.1:51820"),
        },
        Machine {
            name: "bravo",
            key: 2,
            v4: ip("100.77.0.2"),
            v6: ip("fd77::2"),
            routes: vec![],
            endpoint: sock("198.18.0.2:51820"),
        },
        Machine {
            name: "charlie",
            key: 3,
            v4: ip("100.77.0.3"),
            v6: ip("fd77::3"),
            routes: vec![net("100.99.0.0/24")],
            endpoint: sock("[fd00::3]:51820"),
        },
    ]
}

fn member_spec(m: &Machine) -> MemberSpec {
    MemberSpec {
        candidates: Vec::new(),
        name: m.name.to_string(),
        public_key: public(m.key),
        addresses: vec![m.v4, m.v6],
        routes: m.routes.clone(),
        endpoints: vec![m.endpoint],
        persistent_keepalive: None,
    }
}

/// The spec machine `me` gets: every machine is a member (including itself, which the core skips).
fn spec_for(me: &Machine, all: &[Machine]) -> MeshSpec {
    MeshSpec {
        relays: Vec::new(),
        addresses: vec![
            IpNet::new(me.v4, 16).unwrap(),
            IpNet::new(me.v6, 64).unwrap(),
        ],
        networks: vec![net("100.77.0.0/16"), net("fd77::/64")],
        // 100.99.0.0/24 (charlie's route) is deliberately outside everyone's ipRanges.
        ip_ranges: vec![net("100.77.0.0/16"), net("fd77::/64")],
        members: all.iter().map(member_spec).collect(),
        source: SpecSource::Config,
    }
}

struct Node {
    name: &'static str,
    addr: SocketAddr,
    mesh: Mesh,
    /// IP packets written to this node's TUN device.
    delivered: Vec<Vec<u8>>,
    /// Datagrams this node got and did not answer, with what the core said.
    dropped: Vec<DropReason>,
}

struct Net {
    nodes: Vec<Node>,
    wire: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// Every datagram put on the wire: (from, to, first byte = message type).
    log: Vec<(SocketAddr, SocketAddr, u8)>,
    /// When datagrams are delivered.
    now: Instant,
}

impl Net {
    fn new(all: &[Machine]) -> Net {
        let nodes = all
            .iter()
            .map(|m| Node {
                name: m.name,
                addr: m.endpoint,
                mesh: Mesh::new(secret(m.key), &spec_for(m, all), &mut OsIndexSource).0,
                delivered: Vec::new(),
                dropped: Vec::new(),
            })
            .collect();
        Net {
            nodes,
            wire: VecDeque::new(),
            log: Vec::new(),
            now: Instant::now(),
        }
    }

    fn node(&mut self, name: &str) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.name == name).unwrap()
    }

    fn put(&mut self, from: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        self.log
            .push((from, to, bytes.first().copied().unwrap_or(0)));
        self.wire.push_back((from, to, bytes.to_vec()));
    }

    /// `from` sends an IP packet into its TUN device; returns what its core decided.
    fn send_ip(&mut self, from: &str, packet: &[u8]) -> Outbound {
        let now = self.now;
        let node = self.node(from);
        let addr = node.addr;
        let Some(member) = node.mesh.route(packet) else {
            node.mesh.count_drop(DropReason::NoRoute);
            return Outbound::Drop(DropReason::NoRoute);
        };
        let mut out = vec![0u8; encapsulate_out_len(packet.len())];
        let result = node.mesh.encapsulate(member, packet, &mut out);
        let mut sent = Vec::new();
        match result {
            Outbound::Send { len, to } => sent.push((to, out[..len].to_vec())),
            Outbound::Handshake { at, len } => {
                node.mesh
                    .send_handshake(member, &out[at..at + len], now, &mut |b, to| {
                        sent.push((to, b.to_vec()))
                    })
            }
            Outbound::Nothing | Outbound::Drop(_) => {}
        }
        for (to, bytes) in sent {
            self.put(addr, to, &bytes);
        }
        result
    }

    /// Runs one tick of node `name`'s timers and puts what it sends on the wire.
    fn tick_node(&mut self, name: &str) {
        let node = self.node(name);
        let me = node.addr;
        let mut out = vec![0u8; TICK_OUT_LEN];
        let mut sent = Vec::new();
        node.mesh.tick(Instant::now(), 0, &mut out, &mut |p, to| {
            sent.push((to, p.to_vec()))
        });
        for (to, bytes) in sent {
            self.put(me, to, &bytes);
        }
    }

    /// Delivers datagrams until the wire is quiet.
    fn pump(&mut self) {
        let limit = self.wire.len() + 1000;
        let mut rounds = 0;
        while let Some((from, to, datagram)) = self.wire.pop_front() {
            rounds += 1;
            assert!(rounds < limit, "datagrams keep bouncing");
            let Some(i) = self.nodes.iter().position(|n| n.addr == to) else {
                continue;
            };
            let mut out = vec![0u8; 2048];
            let result = self.nodes[i]
                .mesh
                .decapsulate(from, &datagram, &mut out, self.now);
            match result {
                Inbound::Tunnel { len, .. } => self.nodes[i].delivered.push(out[..len].to_vec()),
                Inbound::Reply {
                    len,
                    to: reply_to,
                    member,
                } => {
                    let me = self.nodes[i].addr;
                    self.put(me, reply_to, &out[..len]);
                    if let Some(member) = member {
                        self.flush(i, member);
                    }
                }
                Inbound::Nothing => {}
                Inbound::Drop(reason) => self.nodes[i].dropped.push(reason),
            }
        }
    }

    fn flush(&mut self, i: usize, member: MemberId) {
        let mut out = vec![0u8; FLUSH_OUT_LEN];
        while let Some((len, to)) = self.nodes[i].mesh.flush_queued(member, &mut out) {
            let me = self.nodes[i].addr;
            self.put(me, to, &out[..len]);
        }
    }

    /// What node `name` knows of the member with key `key`.
    fn snapshot(&mut self, name: &str, key: u8) -> MemberSnapshot {
        let mesh = &self.node(name).mesh;
        mesh.member(member_id(mesh, key)).unwrap().snapshot()
    }

    /// The datagram node `i` sends for `packet` over its established session with member `key`.
    fn sealed(&self, i: usize, key: u8, packet: &[u8]) -> Vec<u8> {
        let mesh = &self.nodes[i].mesh;
        let mut out = vec![0u8; 256];
        let Outbound::Send { len, .. } = mesh.encapsulate(member_id(mesh, key), packet, &mut out)
        else {
            panic!("no session from node {i} to key {key}")
        };
        out.truncate(len);
        out
    }

    fn drops(&mut self, name: &str, reason: DropReason) -> u64 {
        self.node(name)
            .mesh
            .drop_counts()
            .into_iter()
            .find(|(r, _)| *r == reason)
            .map(|(_, n)| n)
            .unwrap()
    }
}

fn member_id(mesh: &Mesh, key: u8) -> MemberId {
    mesh.member_by_key(&public(key)).unwrap()
}

/// One tick now: the datagrams it sends, as (message type, length, destination).
fn tick(mesh: &Mesh) -> Vec<(u8, usize, SocketAddr)> {
    let mut out = vec![0u8; TICK_OUT_LEN];
    let mut sent = Vec::new();
    mesh.tick(Instant::now(), 0, &mut out, &mut |p, to| {
        sent.push((p[0], p.len(), to))
    });
    sent
}

#[test]
fn handshake_then_data_both_ways_over_ipv4_and_ipv6() {
    let all = machines();
    let mut net = Net::new(&all);
    let ping = packet("100.77.0.1", "100.77.0.2", b"ping");

    // No session yet: the core sends a handshake initiation and queues the packet.
    let first = net.send_ip("alpha", &ping);
    assert!(matches!(first, Outbound::Handshake { .. }));
    net.pump();
    assert_eq!(net.node("bravo").delivered, vec![ping.clone()]);

    let pong = packet("fd77::2", "fd77::1", b"pong");
    let reply = net.send_ip("bravo", &pong);
    assert!(matches!(reply, Outbound::Send { .. }), "{reply:?}");
    net.pump();
    assert_eq!(net.node("alpha").delivered, vec![pong.clone()]);

    // Per-member counters see the data bytes.
    let snap = net.snapshot("bravo", 1);
    assert_eq!(snap.rx_bytes, ping.len() as u64);
    assert_eq!(snap.tx_bytes, pong.len() as u64);
    assert!(snap.since_handshake.is_some());
    assert_eq!(snap.path, Some(Path::Direct(sock("198.18.0.1:51820"))));
}

#[test]
fn routes_by_longest_prefix_over_addresses_and_routes() {
    let all = machines();
    let net = Net::new(&all);
    let bravo = &net.nodes[1].mesh;
    let to = |dst: &str| {
        let dst = ip(dst);
        let src = if dst.is_ipv4() {
            ip("100.77.0.2")
        } else {
            ip("fd77::2")
        };
        let id = bravo.route(&ip_packet(src, dst, b"x"))?;
        Some(bravo.member(id).unwrap().spec().name.clone())
    };
    assert_eq!(to("100.77.0.1").as_deref(), Some("alpha"));
    assert_eq!(to("100.77.100.9").as_deref(), Some("alpha"));
    assert_eq!(to("100.99.0.4").as_deref(), Some("charlie"));
    assert_eq!(to("fd77::3").as_deref(), Some("charlie"));
    assert_eq!(to("100.77.0.77"), None);
    // A machine never routes to itself.
    assert_eq!(to("100.77.0.2"), None);
}

#[test]
fn spoofed_inner_source_is_dropped_and_counted() {
    let all = machines();
    let mut net = Net::new(&all);
    net.send_ip("alpha", &packet("100.77.0.1", "100.77.0.2", b"hello"));
    net.pump();
    assert_eq!(net.node("bravo").delivered.len(), 1);

    // alpha claims charlie's address as its source.
    let spoofed = packet("100.77.0.3", "100.77.0.2", b"evil");
    assert!(matches!(
        net.send_ip("alpha", &spoofed),
        Outbound::Send { .. }
    ));
    net.pump();
    assert_eq!(net.node("bravo").delivered.len(), 1);
    assert_eq!(net.node("bravo").dropped, vec![DropReason::SpoofedSource]);
    assert_eq!(net.drops("bravo", DropReason::SpoofedSource), 1);
    let snap = net.snapshot("bravo", 1);
    assert_eq!(snap.dropped_spoofed, 1);

    // alpha's own route is a legitimate source.
    net.send_ip("alpha", &packet("100.77.100.5", "100.77.0.2", b"routed"));
    net.pump();
    assert_eq!(net.node("bravo").delivered.len(), 2);
}

#[test]
fn a_route_over_another_members_address_does_not_let_its_owner_send_as_that_member() {
    let mut all = machines();
    // alpha's route covers charlie's address; charlie's own route nests inside alpha's.
    all[0].routes = vec![net("100.77.0.0/24")];
    all[2].routes = vec![net("100.77.0.128/25")];
    let mut net = Net::new(&all);
    let delivered = |net: &mut Net| net.node("bravo").delivered.len();

    // As charlie (its /32 is longer than alpha's /24): dropped and counted.
    net.send_ip("alpha", &packet("100.77.0.3", "100.77.0.2", b"as charlie"));
    net.pump();
    assert_eq!(delivered(&mut net), 0);
    assert_eq!(net.node("bravo").dropped, vec![DropReason::SpoofedSource]);
    // From inside charlie's nested /25: also charlie's.
    net.send_ip(
        "alpha",
        &packet("100.77.0.200", "100.77.0.2", b"as charlie"),
    );
    net.pump();
    assert_eq!(delivered(&mut net), 0);
    assert_eq!(net.drops("bravo", DropReason::SpoofedSource), 2);
    assert_eq!(net.snapshot("bravo", 1).dropped_spoofed, 2);

    // What is alpha's: an address inside its route that no longer prefix claims.
    net.send_ip("alpha", &packet("100.77.0.9", "100.77.0.2", b"alpha's"));
    net.pump();
    assert_eq!(delivered(&mut net), 1);
    // charlie sends from its own address and its nested route.
    net.send_ip("charlie", &packet("100.77.0.3", "100.77.0.2", b"charlie"));
    net.send_ip("charlie", &packet("100.77.0.200", "100.77.0.2", b"charlie"));
    net.pump();
    assert_eq!(delivered(&mut net), 3);

    // The same longest prefix decides the way out.
    let bravo = &net.node("bravo").mesh;
    let to = |dst: &str| {
        bravo
            .route(&packet("100.77.0.2", dst, b""))
            .map(|id| bravo.member(id).unwrap().spec().name.clone())
    };
    assert_eq!(to("100.77.0.3").as_deref(), Some("charlie"));
    assert_eq!(to("100.77.0.200").as_deref(), Some("charlie"));
    assert_eq!(to("100.77.0.9").as_deref(), Some("alpha"));
}

#[test]
fn sources_outside_ip_ranges_are_dropped() {
    let all = machines();
    let mut net = Net::new(&all);
    // charlie owns 100.99.0.0/24, but bravo's ipRanges only cover the network.
    net.send_ip("charlie", &packet("100.99.0.7", "100.77.0.2", b"x"));
    net.pump();
    assert!(net.node("bravo").delivered.is_empty());
    assert_eq!(net.node("bravo").dropped, vec![DropReason::OutsideRanges]);
    assert_eq!(net.drops("bravo", DropReason::OutsideRanges), 1);
}

#[test]
fn unknown_key_gets_no_answer_even_under_load() {
    let all = machines();
    let mut net = Net::new(&all);
    let stranger_addr = sock("198.18.0.99:51820");
    let mut stranger = towards_bravo(99, 7);
    // 300 initiations: far beyond the rate limit, so the last ones hit the cookie path.
    for _ in 0..300 {
        let init = initiation(&mut stranger);
        net.put(stranger_addr, sock("198.18.0.2:51820"), &init);
    }
    net.pump();
    assert!(
        net.log.iter().all(|(from, _, _)| *from == stranger_addr),
        "bravo answered an unknown key: {:?}",
        net.log
    );
    // 100 within the limit and 100 under load were identified (one Diffie-Hellman each); the
    // last 100 exceeded this period's budget and were dropped without any work.
    assert_eq!(net.drops("bravo", DropReason::UnknownKey), 200);
    assert_eq!(net.drops("bravo", DropReason::HandshakeFlood), 100);

    // A member under the same load still gets an answer (a cookie reply, type 3).
    net.log.clear();
    net.send_ip("alpha", &packet("100.77.0.1", "100.77.0.2", b"hi"));
    net.pump();
    assert!(
        net.log
            .iter()
            .any(|(from, _, kind)| *from == sock("198.18.0.2:51820") && *kind == 3),
        "{:?}",
        net.log
    );
}

/// A WireGuard session of key `key` (not necessarily a member's) towards bravo.
fn towards_bravo(key: u8, index: u32) -> Tunn {
    Tunn::new(
        x25519::StaticSecret::from(secret(key)),
        x25519::PublicKey::from(public(2)),
        None,
        None,
        index,
        None,
    )
}

/// A fresh handshake initiation from `tunn` (see [`towards_bravo`]).
fn initiation(stranger: &mut Tunn) -> Vec<u8> {
    let mut buf = [0u8; 256];
    let TunnResult::WriteToNetwork(init) = stranger.format_handshake_initiation(&mut buf, true)
    else {
        panic!("no initiation");
    };
    init.to_vec()
}

#[test]
fn a_handshake_flood_leaves_sessions_up_and_members_answered() {
    let all = machines();
    let mut net = Net::new(&all);
    net.send_ip("alpha", &packet("100.77.0.1", "100.77.0.2", b"before"));
    net.pump();
    assert_eq!(net.node("bravo").delivered.len(), 1);

    let mut stranger = towards_bravo(99, 7);
    let flood_from = sock("198.18.0.99:51820");
    for _ in 0..1000 {
        let init = initiation(&mut stranger);
        net.put(flood_from, sock("198.18.0.2:51820"), &init);
    }
    net.pump();
    // Alpha's handshake was one of the 100 within the limit. The next 99 and this period's
    // budget of 100 under load cost a Diffie-Hellman each; the other 801 only a MAC check.
    assert_eq!(net.drops("bravo", DropReason::UnknownKey), 199);
    assert_eq!(net.drops("bravo", DropReason::HandshakeFlood), 801);

    // The session that was up keeps carrying data.
    net.send_ip("alpha", &packet("100.77.0.1", "100.77.0.2", b"during"));
    net.pump();
    assert_eq!(net.node("bravo").delivered.len(), 2);

    // Alpha rehandshakes (its key is a member) from its configured endpoint: still under load,
    // it gets a cookie at once, without identification. From an address bravo does not know
    // (alpha roamed), the budget is spent: nothing, until the next period.
    let mut alpha_tunn = towards_bravo(1, 9);
    let roamed = sock("198.18.0.77:40000");
    net.log.clear();
    let init = initiation(&mut alpha_tunn);
    net.put(sock("198.18.0.1:51820"), sock("198.18.0.2:51820"), &init);
    net.put(roamed, sock("198.18.0.2:51820"), &init);
    net.pump();
    // Bravo's answers to `to`: cookie replies (3) or, once the load is gone, responses (2).
    let answers_to = |net: &Net, to: SocketAddr, kinds: &[u8]| {
        net.log
            .iter()
            .filter(|(from, dst, kind)| {
                *from == sock("198.18.0.2:51820") && *dst == to && kinds.contains(kind)
            })
            .count()
    };
    assert_eq!(
        answers_to(&net, sock("198.18.0.1:51820"), &[3]),
        1,
        "{:?}",
        net.log
    );
    assert_eq!(answers_to(&net, roamed, &[2, 3]), 0, "{:?}", net.log);
    assert_eq!(net.drops("bravo", DropReason::HandshakeFlood), 802);

    // The next period brings a new budget: the roamed member is identified and answered (with a
    // cookie, or with a response if the shared limiter's own second has passed meanwhile).
    let mut out = vec![0u8; TICK_OUT_LEN];
    net.node("bravo").mesh.tick(
        Instant::now() + Duration::from_secs(2),
        0,
        &mut out,
        &mut |_, _| {},
    );
    net.log.clear();
    net.put(roamed, sock("198.18.0.2:51820"), &init);
    net.pump();
    assert_eq!(answers_to(&net, roamed, &[2, 3]), 1, "{:?}", net.log);
}

#[test]
fn a_stranger_with_a_cookie_gets_only_its_sources_budget_of_handshakes() {
    let all = machines();
    let mut net = Net::new(&all);
    let bravo_addr = sock("198.18.0.2:51820");
    // Load: past the rate limit, handshakes without a valid cookie get cookie replies.
    let mut noise = towards_bravo(99, 7);
    for _ in 0..150 {
        let init = initiation(&mut noise);
        net.put(sock("198.18.0.99:51820"), bravo_addr, &init);
    }
    net.pump();

    // The attacker names alpha's key (public: crafting that initiation needs no secret; using
    // alpha's here is the worst case, as each one is then a valid handshake to answer) and
    // fetches a cookie for its own address.
    let attacker_addr = sock("198.18.0.66:40000");
    let mut attacker = towards_bravo(1, 11);
    let now = net.now;
    let bravo = &net.node("bravo").mesh;
    let mut out = vec![0u8; 256];
    let init = initiation(&mut attacker);
    let Inbound::Reply { len, to, .. } = bravo.decapsulate(attacker_addr, &init, &mut out, now)
    else {
        panic!("no cookie for a handshake naming a member's key");
    };
    assert_eq!(
        (out[0], to),
        (3, attacker_addr),
        "not a cookie reply to the attacker"
    );
    let mut scratch = [0u8; 256];
    assert!(matches!(
        attacker.decapsulate(Some(bravo_addr.ip()), &out[..len], &mut scratch),
        TunnResult::Done
    ));

    // With the cookie, every initiation passes the MAC checks; each that gets further costs
    // Diffie-Hellman work (answered, or refused after the key exchange as a replay).
    let mut worked = |attacker: &mut Tunn, now: Instant| {
        let before = bravo.drop_counts();
        let mut answered = 0u64;
        for _ in 0..1_000 {
            let init = initiation(attacker);
            if let Inbound::Reply { .. } = bravo.decapsulate(attacker_addr, &init, &mut out, now) {
                answered += 1;
            }
        }
        let flood = |counts: &[(DropReason, u64)]| {
            counts
                .iter()
                .find(|(r, _)| *r == DropReason::HandshakeFlood)
                .map_or(0, |(_, n)| *n)
        };
        let refused = flood(&bravo.drop_counts()) - flood(&before);
        (1_000 - refused, answered)
    };
    let (work, answered) = worked(&mut attacker, now);
    assert_eq!(work, 5, "the source's burst");
    assert!(answered >= 1, "the burst itself is served");
    // A second later, under load still: the bucket has refilled to its burst, never more.
    let (work, _) = worked(&mut attacker, now + Duration::from_secs(1));
    assert_eq!(work, 5);
}

#[test]
fn garbage_is_dropped_without_answer() {
    let all = machines();
    let mut net = Net::new(&all);
    net.put(
        sock("198.18.0.9:1"),
        sock("198.18.0.2:51820"),
        &[4, 0, 0, 0, 1, 2],
    );
    net.put(sock("198.18.0.9:1"), sock("198.18.0.2:51820"), &[4; 64]);
    net.put(sock("198.18.0.9:1"), sock("198.18.0.2:51820"), &[1; 148]);
    net.pump();
    assert_eq!(net.log.len(), 3);
    assert!(net.node("bravo").delivered.is_empty());
    assert_eq!(net.node("bravo").dropped.len(), 3);
}

/// A mesh where alpha talked to bravo, moved to another underlay address and talked again, so
/// bravo learnt the new address from authenticated data; returns the net and that address.
fn alpha_roamed() -> (Net, SocketAddr) {
    let all = machines();
    let mut net = Net::new(&all);
    net.send_ip("alpha", &packet("100.77.0.1", "100.77.0.2", b"one"));
    net.pump();
    let moved = sock("198.19.5.5:40000");
    net.node("alpha").addr = moved;
    net.send_ip("alpha", &packet("100.77.0.1", "100.77.0.2", b"two"));
    net.pump();
    assert_eq!(net.node("bravo").delivered.len(), 2);
    (net, moved)
}

#[test]
fn roaming_member_is_reached_at_its_new_endpoint() {
    let (mut net, moved) = alpha_roamed();

    let back = net.send_ip("bravo", &packet("100.77.0.2", "100.77.0.1", b"back"));
    assert!(
        matches!(back, Outbound::Send { to, .. } if to == moved),
        "{back:?}"
    );
    net.pump();
    assert_eq!(net.node("alpha").delivered.len(), 1);
}

#[test]
fn under_a_flood_a_roamed_member_is_answered_at_its_new_endpoint() {
    let (mut net, moved) = alpha_roamed();

    // A flood spends this period's identifications.
    let mut stranger = towards_bravo(99, 7);
    for _ in 0..400 {
        let init = initiation(&mut stranger);
        net.put(sock("198.18.0.99:51820"), sock("198.18.0.2:51820"), &init);
    }
    net.pump();
    let flood = net.drops("bravo", DropReason::HandshakeFlood);
    assert!(flood > 0, "the flood did not exhaust the identifications");

    // alpha rehandshakes from where it is now: a cookie at once, no identification needed.
    let mut alpha_tunn = towards_bravo(1, 9);
    net.log.clear();
    let init = initiation(&mut alpha_tunn);
    net.put(moved, sock("198.18.0.2:51820"), &init);
    net.pump();
    let cookies = net
        .log
        .iter()
        .filter(|(from, to, kind)| *from == sock("198.18.0.2:51820") && *to == moved && *kind == 3)
        .count();
    assert_eq!(cookies, 1, "{:?}", net.log);
    assert_eq!(net.drops("bravo", DropReason::HandshakeFlood), flood);
}

#[test]
fn a_spoofed_or_replayed_datagram_does_not_move_the_endpoint() {
    let all = machines();
    let mut net = Net::new(&all);
    net.send_ip("alpha", &packet("100.77.0.1", "100.77.0.2", b"one"));
    net.pump();
    // Capture a real data packet and replay it from elsewhere.
    let data = net.sealed(0, 2, &packet("100.77.0.1", "100.77.0.2", b"two"));
    net.put(sock("198.18.0.1:51820"), sock("198.18.0.2:51820"), &data);
    net.put(sock("198.18.66.66:1"), sock("198.18.0.2:51820"), &data);
    net.pump();
    assert_eq!(net.node("bravo").delivered.len(), 2);
    let snap = net.snapshot("bravo", 1);
    assert_eq!(snap.path, Some(Path::Direct(sock("198.18.0.1:51820"))));
    assert_eq!(net.node("bravo").dropped, vec![DropReason::Invalid]);
}

struct Counting(u32);

impl IndexSource for Counting {
    fn next_index(&mut self) -> u32 {
        self.0 += 1;
        self.0
    }
}

#[test]
fn applying_a_diff_keeps_the_other_sessions() {
    let all = machines();
    let mut net = Net::new(&all);
    // Sessions alpha↔bravo and charlie↔bravo.
    net.send_ip("alpha", &packet("100.77.0.1", "100.77.0.2", b"a"));
    net.send_ip("charlie", &packet("fd77::3", "fd77::2", b"c"));
    net.pump();
    assert_eq!(net.node("bravo").delivered.len(), 2);
    let handshakes_before = net.log.iter().filter(|(_, _, t)| *t == 1).count();

    // bravo's new spec: charlie leaves, delta joins, alpha gets a new route.
    let mut spec = spec_for(&all[1], &all);
    spec.members.retain(|m| m.name != "charlie");
    spec.members[0].routes.push(net_route());
    spec.members.push(MemberSpec {
        candidates: Vec::new(),
        name: "delta".into(),
        public_key: public(4),
        addresses: vec![ip("100.77.0.4")],
        routes: vec![],
        endpoints: vec![sock("198.18.0.4:51820")],
        persistent_keepalive: Some(25),
    });
    let report = net.node("bravo").mesh.apply(&spec, &mut Counting(1000));
    assert_eq!(report.added, ["delta"]);
    assert_eq!(report.removed, ["charlie"]);
    assert_eq!(report.updated, ["alpha"]);
    assert!(report.rekeyed.is_empty());

    // alpha's session is untouched: data flows both ways without a new handshake.
    let out = net.send_ip("bravo", &packet("100.77.0.2", "100.77.0.1", b"still"));
    assert!(matches!(out, Outbound::Send { .. }), "{out:?}");
    net.send_ip("alpha", &packet("100.77.55.1", "100.77.0.2", b"new route"));
    net.pump();
    assert_eq!(net.node("alpha").delivered.len(), 1);
    assert_eq!(net.node("bravo").delivered.len(), 3);
    assert_eq!(
        net.log.iter().filter(|(_, _, t)| *t == 1).count(),
        handshakes_before
    );

    // charlie is gone: no route to it, and its datagrams are not accepted.
    let to_charlie = net.send_ip("bravo", &packet("100.77.0.2", "100.77.0.3", b"x"));
    assert_eq!(to_charlie, Outbound::Drop(DropReason::NoRoute));
    net.send_ip("charlie", &packet("fd77::3", "fd77::2", b"c2"));
    net.pump();
    assert_eq!(net.node("bravo").delivered.len(), 3);
    assert_eq!(
        net.node("bravo").dropped.last(),
        Some(&DropReason::UnknownIndex)
    );

    // Changing only a keepalive rebuilds that one session.
    spec.members[0].persistent_keepalive = Some(10);
    let report = net.node("bravo").mesh.apply(&spec, &mut Counting(2000));
    assert_eq!(report.rekeyed, ["alpha"]);
}

fn net_route() -> IpNet {
    net("100.77.55.0/24")
}

#[test]
fn member_without_endpoint_is_reached_once_it_calls() {
    let mut all = machines();
    all.truncate(2);
    let mut spec_b = spec_for(&all[1], &all);
    spec_b.members[0].endpoints.clear();
    let mut net = Net::new(&all);
    net.node("bravo").mesh.apply(&spec_b, &mut OsIndexSource);

    // A handshake with nowhere to go: nothing is sent, and the drop is counted.
    let early = net.send_ip("bravo", &packet("100.77.0.2", "100.77.0.1", b"early"));
    assert!(matches!(early, Outbound::Handshake { .. }), "{early:?}");
    assert!(net.wire.is_empty());
    assert_eq!(net.drops("bravo", DropReason::NoEndpoint), 1);
    net.send_ip("alpha", &packet("100.77.0.1", "100.77.0.2", b"hi"));
    net.pump();
    // bravo learnt alpha's endpoint from the handshake; its queued packet goes out at the tick
    // after alpha confirmed the session.
    assert_eq!(net.node("alpha").delivered.len(), 0);
    net.tick_node("bravo");
    net.pump();
    assert_eq!(net.node("alpha").delivered.len(), 1);
    let later = net.send_ip("bravo", &packet("100.77.0.2", "100.77.0.1", b"later"));
    assert!(matches!(later, Outbound::Send { .. }));
}

#[test]
fn an_initiation_goes_to_every_endpoint_and_candidate_and_tick_waits_for_rekey_timeout() {
    let mut all = machines();
    all.truncate(2);
    let mut spec_a = spec_for(&all[0], &all);
    spec_a.members[1].endpoints = vec![sock("198.18.9.9:51820"), sock("198.18.0.2:51820")];
    spec_a.members[1].candidates = vec![
        (sock("198.19.1.2:51820"), CandidateKind::Local),
        (sock("198.18.9.9:51820"), CandidateKind::Mapped),
    ];
    let (mesh, _) = Mesh::new(secret(1), &spec_a, &mut OsIndexSource);
    let id = member_id(&mesh, 2);
    let mut out = vec![0u8; 256];
    // Queue a packet: the initiation goes to every address once, the same bytes to each.
    let first = mesh.encapsulate(id, &packet("100.77.0.1", "100.77.0.2", b"x"), &mut out);
    let Outbound::Handshake { at, len } = first else {
        panic!("{first:?}")
    };
    let mut sent = Vec::new();
    mesh.send_handshake(id, &out[at..at + len], Instant::now(), &mut |b, to| {
        sent.push((to, b.to_vec()))
    });
    let to: Vec<SocketAddr> = sent.iter().map(|(to, _)| *to).collect();
    assert_eq!(
        to,
        [
            sock("198.18.9.9:51820"),
            sock("198.18.0.2:51820"),
            sock("198.19.1.2:51820")
        ]
    );
    assert!(sent.iter().all(|(_, b)| *b == out[at..at + len]));
    // Ticking right away must not resend (REKEY_TIMEOUT is 5 s) and never panics.
    let sent = tick(&mesh);
    assert!(sent.is_empty(), "{sent:?}");
}

#[test]
fn first_tick_greets_every_member_with_an_endpoint_once() {
    let all = machines();
    let (mesh, _) = Mesh::new(secret(1), &spec_for(&all[0], &all), &mut OsIndexSource);
    let mut sent = tick(&mesh);
    let mut expected: Vec<_> = all[1..].iter().map(|m| (1u8, 148, m.endpoint)).collect();
    expected.sort();
    sent.sort();
    assert_eq!(
        sent, expected,
        "one handshake initiation to each other member"
    );
    // The next tick, within REKEY_TIMEOUT, sends nothing more.
    let again = tick(&mesh);
    assert!(again.is_empty(), "{again:?}");
}

#[test]
fn random_datagrams_never_panic_and_are_never_answered() {
    let all = machines();
    let mut net = Net::new(&all);
    // Also with a live session, so data-packet parsing reaches the session code.
    net.send_ip("alpha", &packet("100.77.0.1", "100.77.0.2", b"hi"));
    net.pump();
    let genuine = net.sealed(0, 2, &packet("100.77.0.1", "100.77.0.2", b"genuine"));
    let sent_before = net.log.len();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let bravo = sock("198.18.0.2:51820");
    for _ in 0..5000 {
        let len = (next() % 300) as usize;
        let mut datagram: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if len >= 4 {
            // Valid message types with zero reserved bytes get past the first check.
            datagram[0] = 1 + (next() % 4) as u8;
            datagram[1..4].fill(0);
        }
        if next() % 2 == 0 {
            // A real data packet with a real receiver index, corrupted after its header.
            datagram = genuine.clone();
            let at = 16 + (next() as usize) % (genuine.len() - 16);
            datagram[at] ^= 1 + (next() % 255) as u8;
        }
        net.put(sock("198.18.0.1:51820"), bravo, &datagram);
    }
    net.pump();
    assert!(
        net.log[sent_before..]
            .iter()
            .all(|(from, _, _)| *from != bravo),
        "bravo answered garbage"
    );
    assert_eq!(net.node("bravo").delivered.len(), 1);
}

#[test]
fn a_packet_longer_than_any_ip_packet_is_not_queued_for_the_handshake() {
    let mut all = machines();
    all.truncate(2);
    let mut net = Net::new(&all);
    // 65,536 bytes: one more than an IP packet may have. Queued behind the handshake, it would
    // not fit the FLUSH_OUT_LEN buffer, and boringtun panics on a short output buffer.
    let mut huge = packet("fd77::1", "fd77::2", &vec![7; 65_536 - 40]);
    huge[4..6].copy_from_slice(&[0xff, 0xff]);
    assert_eq!(
        net.send_ip("alpha", &huge),
        Outbound::Drop(DropReason::Invalid)
    );
    net.send_ip("alpha", &packet("100.77.0.1", "100.77.0.2", b"hi"));
    net.pump();
    assert_eq!(net.node("bravo").delivered.len(), 1);
}

/// The mesh's key and every session's copy of it are boringtun's x25519 keys (x25519-dalek 2),
/// which wipe their memory on drop only with that crate's default `zeroize` feature. It predates
/// the `ZeroizeOnDrop` marker, so this checks what the feature adds: `Zeroize`, and a drop (a
/// plain 32-byte array has none).
#[test]
fn wireguard_keys_wipe_themselves_on_drop() {
    fn zeroizable<T: zeroize::Zeroize>() {}
    zeroizable::<x25519::StaticSecret>();
    assert!(std::mem::needs_drop::<x25519::StaticSecret>());
}
