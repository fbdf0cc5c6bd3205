//! NAT traversal in memory: two agents' sans-IO meshes behind simulated NATs, the controller's
//! sans-IO relay between them, and the test playing the rest of the control plane (it publishes
//! the relay's bindings as `Mapped` candidates and forwards punch requests to both members at
//! once, as the controller does). Virtual time moves in the agents' 200 ms ticks, so the times
//! these tests check are the protocol's own, not this machine's speed.
//!
//! The NATs filter like Linux conntrack (an inbound datagram passes only towards a port that sent
//! to its source) and map either endpoint-independently (one public port per inner socket) or
//! symmetrically (a new port per destination).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use wiremesh_controller::relay::{Action, Limits, Now, Relay, RelayMember};
use wiremesh_core::controller_config;
use wiremesh_core::keys::{NodeSecret, WireguardSecret};
use wiremesh_core::netmap::CandidateKind;
use wiremesh_lab::Mapping;
use wiremesh_peer::mesh::{Inbound, Mesh, OsIndexSource, Outbound, TICK_OUT_LEN};
use wiremesh_peer::path::Path;
use wiremesh_peer::spec::{MemberSpec, MeshSpec, RelaySpec, SpecSource};

const TICK: Duration = Duration::from_millis(200);
const RELAY: &str = "198.18.0.3:51822";
const PORT: u16 = 51820;

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A NAT router: its public address, how it maps, its mappings and what they sent to.
struct Nat {
    public: Ipv4Addr,
    mapping: Mapping,
    /// (inner socket, destination or None for endpoint-independent) → public port.
    map: HashMap<(SocketAddr, Option<SocketAddr>), u16>,
    /// public port → inner socket.
    back: HashMap<u16, SocketAddr>,
    /// (public port, remote) pairs that sent out: what may come back in.
    open: HashMap<(u16, SocketAddr), ()>,
    next_port: u16,
    /// Public addresses UDP to which is dropped.
    blocked: Vec<IpAddr>,
}

impl Nat {
    fn new(public: &str, mapping: Mapping) -> Nat {
        Nat {
            public: public.parse().unwrap(),
            mapping,
            map: HashMap::new(),
            back: HashMap::new(),
            open: HashMap::new(),
            next_port: 40_000,
            blocked: Vec::new(),
        }
    }

    /// The source `inner` → `to` leaves with; None when blocked.
    fn out(&mut self, inner: SocketAddr, to: SocketAddr) -> Option<SocketAddr> {
        if self.blocked.contains(&to.ip()) {
            return None;
        }
        let key = match self.mapping {
            Mapping::EndpointIndependent => (inner, None),
            Mapping::Symmetric => (inner, Some(to)),
        };
        // A flow keeps its mapping, as conntrack keeps an entry, whatever the NAT does for new
        // ones.
        let existing = self.map.get(&(inner, Some(to))).copied();
        let port = match existing.or_else(|| self.map.get(&key).copied()) {
            Some(p) => p,
            None => {
                self.next_port += 1;
                let p = self.next_port;
                self.map.insert(key, p);
                self.back.insert(p, inner);
                p
            }
        };
        self.open.insert((port, to), ());
        Some(SocketAddr::new(IpAddr::V4(self.public), port))
    }

    /// Where a datagram from `from` to our `port` goes inside, if anywhere.
    fn inbound(&self, from: SocketAddr, port: u16) -> Option<SocketAddr> {
        if self.blocked.contains(&from.ip()) || !self.open.contains_key(&(port, from)) {
            return None;
        }
        self.back.get(&port).copied()
    }
}

struct Agent {
    name: &'static str,
    mesh: Mesh,
    node: NodeSecret,
    wg_public: [u8; 32],
    /// Its address on its LAN, and the NAT in front of it.
    inner: SocketAddr,
    nat: usize,
    /// Overlay address.
    overlay: Ipv4Addr,
    delivered: Vec<Vec<u8>>,
}

struct World {
    agents: Vec<Agent>,
    nats: Vec<Nat>,
    relay: Relay,
    relay_addr: SocketAddr,
    wire: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    t0: Instant,
    unix0: Duration,
    elapsed: Duration,
    controller: NodeSecret,
    /// Mapped candidates the controller publishes, by member.
    mapped: HashMap<String, Option<SocketAddr>>,
}

fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let len = 20 + payload.len();
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[20..].copy_from_slice(payload);
    p
}

impl World {
    /// Agents `a` and `b`, each behind the NAT of the given index (0 and 1 are public
    /// 198.18.0.101 and .102); `nats` gives each NAT's mapping.
    fn new(nats: &[Mapping], a_nat: usize, b_nat: usize) -> World {
        let controller = NodeSecret::from_seed([90; 32]);
        let unix0 = Duration::from_secs(1_800_000_000);
        let nats: Vec<Nat> = nats
            .iter()
            .enumerate()
            .map(|(i, m)| Nat::new(&format!("198.18.0.{}", 101 + i), *m))
            .collect();
        let mut lan_hosts = HashMap::<usize, u8>::new();
        let mut agents = Vec::new();
        for (i, (name, nat)) in [("a", a_nat), ("b", b_nat)].into_iter().enumerate() {
            let seed = 10 + i as u8;
            let wg = WireguardSecret::from_bytes([seed; 32]);
            let host = lan_hosts.entry(nat).or_insert(1);
            *host += 1;
            let inner = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(198, 19, nat as u8 + 1, *host)),
                PORT,
            );
            agents.push(Agent {
                name,
                mesh: Mesh::new([seed; 32], &empty_spec(), &mut OsIndexSource).0,
                node: NodeSecret::from_seed([seed; 32]),
                wg_public: *wg.public_key().as_bytes(),
                inner,
                nat,
                overlay: Ipv4Addr::new(100, 64, 0, i as u8 + 1),
                delivered: Vec::new(),
            });
        }
        let relay_addr = sock(RELAY);
        let mut relay = Relay::new(
            controller.clone(),
            Limits::from_config(&controller_config::Relay::default()),
            unix0,
        );
        relay.set_members(
            agents.iter().map(|a| RelayMember {
                name: a.name.into(),
                node_public_key: a.node.public_key(),
                wireguard_public_key: wiremesh_core::keys::WireguardPublicKey::from_bytes(
                    a.wg_public,
                ),
            }),
            unix0,
        );
        let mut world = World {
            agents,
            nats,
            relay,
            relay_addr,
            wire: VecDeque::new(),
            t0: Instant::now(),
            unix0,
            elapsed: Duration::ZERO,
            controller,
            mapped: HashMap::new(),
        };
        for i in 0..world.agents.len() {
            let node = world.agents[i].node.clone();
            world.agents[i].mesh.enable_probes(node);
        }
        world.publish();
        world
    }

    fn now(&self) -> Instant {
        self.t0 + self.elapsed
    }

    fn unix(&self) -> Duration {
        self.unix0 + self.elapsed
    }

    /// What the controller would push: each agent's spec, with the other's candidates (its LAN
    /// address and its relay binding).
    fn publish(&mut self) {
        for i in 0..self.agents.len() {
            let members = self
                .agents
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, other)| {
                    let mut candidates = vec![(other.inner, CandidateKind::Local)];
                    if let Some(Some(m)) = self.mapped.get(other.name) {
                        candidates.push((*m, CandidateKind::Mapped));
                    }
                    MemberSpec {
                        name: other.name.into(),
                        public_key: other.wg_public,
                        addresses: vec![IpAddr::V4(other.overlay)],
                        routes: vec![],
                        endpoints: vec![],
                        candidates,
                        persistent_keepalive: None,
                    }
                })
                .collect();
            let own = self.agents[i].overlay;
            let spec = MeshSpec {
                addresses: vec![format!("{own}/16").parse().unwrap()],
                networks: vec!["100.64.0.0/16".parse().unwrap()],
                ip_ranges: vec!["100.64.0.0/16".parse().unwrap()],
                members,
                relays: vec![RelaySpec {
                    name: "server".into(),
                    addr: self.relay_addr,
                    node_public_key: self.controller.public_key(),
                }],
                source: SpecSource::Config,
            };
            self.agents[i].mesh.apply(&spec, &mut OsIndexSource);
        }
    }

    /// Agent `i` sends `bytes` from its WireGuard socket to `to`.
    fn send_from(&mut self, i: usize, bytes: &[u8], to: SocketAddr) {
        let agent = &self.agents[i];
        let same_lan = self
            .agents
            .iter()
            .any(|o| o.inner == to && o.nat == agent.nat);
        let from = if same_lan {
            Some(agent.inner)
        } else if to.ip() == IpAddr::V4(Ipv4Addr::new(198, 19, agent.nat as u8 + 1, 0))
            || matches!(to.ip(), IpAddr::V4(v4) if v4.octets()[1] == 19)
        {
            // Another LAN's private address: not routable from here.
            None
        } else {
            let (inner, nat) = (agent.inner, agent.nat);
            self.nats[nat].out(inner, to)
        };
        if let Some(from) = from {
            self.wire.push_back((from, to, bytes.to_vec()));
        }
    }

    /// Delivers datagrams until the wire is quiet.
    fn pump(&mut self) {
        let mut rounds = 0;
        while let Some((from, to, mut datagram)) = self.wire.pop_front() {
            if std::env::var_os("NATLAB_TRACE").is_some() {
                eprintln!(
                    "{:>6?} {from} -> {to} type {:#x} len {}",
                    self.elapsed,
                    datagram[0],
                    datagram.len()
                );
            }
            rounds += 1;
            assert!(rounds < 10_000, "datagrams keep bouncing");
            if to == self.relay_addr {
                let mut out = [0u8; 256];
                // Virtual time: the relay's monotonic clock and wall clock are the same.
                let now = Now {
                    mono: self.unix(),
                    unix: self.unix(),
                };
                match self.relay.handle(from, &mut datagram, &mut out, now) {
                    Action::Reply { to, len, .. } => {
                        self.wire
                            .push_back((self.relay_addr, to, out[..len].to_vec()))
                    }
                    Action::Forward { to } => self.wire.push_back((self.relay_addr, to, datagram)),
                    Action::Drop(_) => {}
                }
                continue;
            }
            // A LAN address reaches its agent directly; a public one goes through its NAT.
            let target = self.agents.iter().position(|a| a.inner == to).or_else(|| {
                let nat = self
                    .nats
                    .iter()
                    .position(|n| IpAddr::V4(n.public) == to.ip())?;
                let inner = self.nats[nat].inbound(from, to.port())?;
                self.agents.iter().position(|a| a.inner == inner)
            });
            let Some(i) = target else { continue };
            let mut out = vec![0u8; 4096];
            let now = self.now();
            let result = self.agents[i]
                .mesh
                .decapsulate(from, &datagram, &mut out, now);
            match result {
                Inbound::Tunnel { len, .. } => self.agents[i].delivered.push(out[..len].to_vec()),
                Inbound::Reply { len, to, member } => {
                    let reply = out[..len].to_vec();
                    self.send_from(i, &reply, to);
                    if let Some(member) = member {
                        let mut buf = vec![0u8; wiremesh_peer::mesh::FLUSH_OUT_LEN];
                        while let Some((len, to)) =
                            self.agents[i].mesh.flush_queued(member, &mut buf)
                        {
                            let queued = buf[..len].to_vec();
                            self.send_from(i, &queued, to);
                        }
                    }
                }
                Inbound::Nothing | Inbound::Drop(_) => {}
            }
        }
    }

    /// Agent `i` sends one overlay packet to the other agent.
    fn send_data(&mut self, i: usize, payload: &[u8]) {
        self.send_packet(i, payload);
    }

    /// Agent `i` sends one overlay packet carrying `payload`; returns the packet.
    fn send_packet(&mut self, i: usize, payload: &[u8]) -> Vec<u8> {
        let j = 1 - i;
        let packet = ipv4_packet(self.agents[i].overlay, self.agents[j].overlay, payload);
        let mesh = &self.agents[i].mesh;
        let Some(member) = mesh.route(&packet) else {
            panic!("no route to {}", self.agents[j].overlay)
        };
        let mut out = vec![0u8; 2048];
        let mut sends = Vec::new();
        match mesh.encapsulate(member, &packet, &mut out) {
            Outbound::Send { len, to } => sends.push((out[..len].to_vec(), to)),
            Outbound::Handshake { at, len } => {
                let now = self.now();
                mesh.send_handshake(member, &out[at..at + len], now, &mut |b, to| {
                    sends.push((b.to_vec(), to))
                });
            }
            Outbound::Nothing | Outbound::Drop(_) => {}
        }
        for (bytes, to) in sends {
            self.send_from(i, &bytes, to);
        }
        packet
    }

    /// One tick of virtual time: both agents' timers, the control plane's reactions, delivery.
    fn step(&mut self) {
        self.elapsed += TICK;
        let (now, unix_ms) = (self.now(), self.unix().as_millis() as u64);
        let mut punches = Vec::new();
        for i in 0..self.agents.len() {
            let mut out = vec![0u8; TICK_OUT_LEN];
            let mut sends = Vec::new();
            let asked = self.agents[i]
                .mesh
                .tick(now, unix_ms, &mut out, &mut |b, to| {
                    sends.push((b.to_vec(), to))
                });
            for (bytes, to) in sends {
                self.send_from(i, &bytes, to);
            }
            punches.extend(asked.into_iter().map(|peer| (self.agents[i].name, peer)));
        }
        self.pump();
        // The controller: new bindings become Mapped candidates in a pushed netmap (the relay
        // thread's sweep publishes moves that waited)...
        self.relay.tick(self.unix());
        let changes = self.relay.take_changes();
        if !changes.is_empty() {
            for (name, addr) in changes {
                self.mapped.insert(name, addr);
            }
            self.publish();
        }
        // ...and a punch request goes to both members at once.
        for (from, peer) in punches {
            for agent in &self.agents {
                if agent.name == peer {
                    agent.mesh.punch(from);
                }
                if agent.name == from {
                    agent.mesh.punch(&peer);
                }
            }
        }
        self.pump();
    }

    fn path(&self, i: usize) -> Option<Path> {
        let mesh = &self.agents[i].mesh;
        let (_, m) = mesh.members().next().unwrap();
        m.snapshot().path
    }

    /// Steps until both agents have delivered a packet sent this step by the other, sending one
    /// each way every step; the virtual time it took, or None after `limit`.
    fn until_both_deliver(&mut self, limit: Duration) -> Option<Duration> {
        let start = self.elapsed;
        while self.elapsed - start < limit {
            let before = [
                self.agents[0].delivered.len(),
                self.agents[1].delivered.len(),
            ];
            self.send_data(0, b"ping");
            self.send_data(1, b"pong");
            self.pump();
            self.step();
            if self.agents[0].delivered.len() > before[0]
                && self.agents[1].delivered.len() > before[1]
            {
                return Some(self.elapsed - start);
            }
        }
        None
    }

    fn relayed(&self) -> u64 {
        self.relay.relayed("a", "b").0 + self.relay.relayed("b", "a").0
    }
}

fn empty_spec() -> MeshSpec {
    MeshSpec {
        addresses: vec![],
        networks: vec![],
        ip_ranges: vec![],
        members: vec![],
        relays: vec![],
        source: SpecSource::Config,
    }
}

#[test]
fn two_endpoint_independent_nats_get_a_direct_path_and_the_relay_stays_idle() {
    let mut w = World::new(
        &[Mapping::EndpointIndependent, Mapping::EndpointIndependent],
        0,
        1,
    );
    let took = w.until_both_deliver(Duration::from_secs(5));
    assert!(took.is_some(), "no path within 5 s");
    let a_sees_b = w.path(0);
    assert!(
        matches!(a_sees_b, Some(Path::Direct(addr)) if addr.ip() == "198.18.0.102".parse::<IpAddr>().unwrap()),
        "{a_sees_b:?}"
    );
    assert!(
        matches!(w.path(1), Some(Path::Direct(_))),
        "{:?}",
        w.path(1)
    );
    assert_eq!(w.relayed(), 0, "nothing went through the relay");
    println!("direct path through two NATs after {took:?} of virtual time");
}

#[test]
fn two_members_behind_one_nat_talk_over_their_lan() {
    let mut w = World::new(&[Mapping::EndpointIndependent], 0, 0);
    assert!(w.until_both_deliver(Duration::from_secs(5)).is_some());
    assert_eq!(w.path(0), Some(Path::Direct(w.agents[1].inner)));
    assert_eq!(w.path(1), Some(Path::Direct(w.agents[0].inner)));
    assert_eq!(w.relayed(), 0);
}

#[test]
fn symmetric_nats_fall_back_to_the_relay() {
    let mut w = World::new(&[Mapping::Symmetric, Mapping::Symmetric], 0, 1);
    let took = w.until_both_deliver(Duration::from_secs(5));
    assert!(took.is_some(), "no path within 5 s");
    assert_eq!(w.path(0), Some(Path::Relay));
    assert_eq!(w.path(1), Some(Path::Relay));
    assert!(w.relayed() > 0);
    println!("relay fallback behind symmetric NATs after {took:?} of virtual time");
    // Direct tries go on in the background and fail; the relayed traffic flows throughout.
    for _ in 0..(40_000 / TICK.as_millis() as usize) {
        let before = [w.agents[0].delivered.len(), w.agents[1].delivered.len()];
        w.send_data(0, b"stream");
        w.send_data(1, b"acks");
        w.pump();
        w.step();
        assert!(
            w.agents[0].delivered.len() > before[0] && w.agents[1].delivered.len() > before[1],
            "a packet was lost at {:?}",
            w.elapsed
        );
    }
    assert_eq!(w.path(0), Some(Path::Relay));
}

#[test]
fn blocked_direct_udp_falls_back_to_the_relay_and_goes_direct_when_unblocked() {
    let mut w = World::new(
        &[Mapping::EndpointIndependent, Mapping::EndpointIndependent],
        0,
        1,
    );
    let (pub_a, pub_b) = (IpAddr::V4(w.nats[0].public), IpAddr::V4(w.nats[1].public));
    w.nats[0].blocked.push(pub_b);
    w.nats[1].blocked.push(pub_a);
    let took = w.until_both_deliver(Duration::from_secs(5));
    assert!(took.is_some(), "no path within 5 s");
    assert_eq!(w.path(0), Some(Path::Relay));
    assert_eq!(w.path(1), Some(Path::Relay));
    println!("relay fallback with direct UDP blocked after {took:?} of virtual time");

    // The block is lifted: the pair goes direct within 30 s, and no packet is lost on the way.
    w.nats[0].blocked.clear();
    w.nats[1].blocked.clear();
    let lifted = w.elapsed;
    let mut direct_at = None;
    while w.elapsed - lifted < Duration::from_secs(30) {
        let before = [w.agents[0].delivered.len(), w.agents[1].delivered.len()];
        w.send_data(0, b"stream");
        w.send_data(1, b"acks");
        w.pump();
        w.step();
        assert!(
            w.agents[0].delivered.len() > before[0] && w.agents[1].delivered.len() > before[1],
            "a packet was lost at {:?}",
            w.elapsed
        );
        if matches!(w.path(0), Some(Path::Direct(_))) && matches!(w.path(1), Some(Path::Direct(_)))
        {
            direct_at = Some(w.elapsed - lifted);
            break;
        }
    }
    let direct_at = direct_at.expect("still relayed 30 s after the block was lifted");
    let relayed = w.relayed();
    for _ in 0..10 {
        w.send_data(0, b"stream");
        w.send_data(1, b"acks");
        w.pump();
        w.step();
    }
    assert_eq!(
        w.relayed(),
        relayed,
        "nothing more through the relay once direct"
    );
    println!("direct {direct_at:?} after the block was lifted");
}

#[test]
fn a_member_that_moves_behind_another_nat_is_back_within_5_s() {
    let mut w = World::new(
        &[
            Mapping::EndpointIndependent,
            Mapping::EndpointIndependent,
            Mapping::EndpointIndependent,
        ],
        0,
        1,
    );
    assert!(w.until_both_deliver(Duration::from_secs(5)).is_some());
    // a moves to the third NAT's LAN: a new LAN address, a new NAT; its agent notices the
    // interface change (the shell scans every second) and looks for paths again.
    w.agents[0].nat = 2;
    w.agents[0].inner = sock("198.19.3.2:51820");
    w.elapsed += Duration::from_secs(1);
    let now = w.now();
    w.agents[0].mesh.network_changed(now);
    let took = w.until_both_deliver(Duration::from_secs(4));
    assert!(took.is_some(), "no path within 5 s of the move");
    assert!(
        matches!(w.path(1), Some(Path::Direct(addr)) if addr.ip() == "198.18.0.103".parse::<IpAddr>().unwrap()),
        "{:?}",
        w.path(1)
    );
    println!("back {took:?} after the agent noticed the move");
}

#[test]
fn full_size_packets_pass_through_the_relay_intact() {
    let mut w = World::new(&[Mapping::Symmetric, Mapping::Symmetric], 0, 1);
    assert!(w.until_both_deliver(Duration::from_secs(5)).is_some());
    assert_eq!(w.path(0), Some(Path::Relay));
    // The overlay MTU's worth: a 1,420-byte IP packet.
    let payload: Vec<u8> = (0..1400u32).map(|i| (i % 251) as u8).collect();
    for i in [0, 1] {
        let sent = w.send_packet(i, &payload);
        w.pump();
        assert_eq!(w.agents[1 - i].delivered.last(), Some(&sent));
    }
}
