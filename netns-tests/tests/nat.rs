//! The NAT topologies of `wiremesh_lab::Topology`, checked with plain UDP before any agent uses
//! them: a tiny echo, run on threads that entered a namespace, answers each datagram with the
//! source address it saw. Behind an endpoint-independent NAT the public side sees the router's
//! address and one mapped port for two destinations; behind a symmetric NAT a port per
//! destination; UDP between two NATs (a hole punched from both sides) can be blocked and
//! unblocked; a host moved to another NAT appears from that router's address; two hosts behind
//! one NAT talk over their LAN.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wiremesh_netns_tests::{
    Mapping, Namespace, NatId, Netns, Topology, namespace, require_tools, serial, spawn_in,
};

/// The port every echo listens on, and the one the asking socket is bound to.
const ECHO_PORT: u16 = 3478;
const CLIENT_PORT: u16 = 40000;
/// Each question is sent up to this many times, waiting this long for the answer each time.
const TRIES: u32 = 3;
const REPLY_WAIT: Duration = Duration::from_secs(1);
/// An echo stops by itself after this, should its owner never drop it.
const ECHO_LIFETIME: Duration = Duration::from_secs(120);

/// A UDP echo on a thread in some namespace: answers every datagram with the text of its source
/// address. Stops on drop.
struct Echo {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl Echo {
    /// Starts an echo on `addr` in `ns` and waits (bounded) until it is bound.
    fn start(ns: &Namespace, addr: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (bound_tx, bound_rx) = mpsc::channel();
        let stopped = Arc::clone(&stop);
        let thread = spawn_in(ns, move || {
            let bound = UdpSocket::bind(addr).map_err(|e| format!("bind {addr}: {e}"));
            let _ = bound_tx.send(bound.as_ref().map(drop).map_err(Clone::clone));
            let socket = bound?;
            socket
                .set_read_timeout(Some(Duration::from_millis(100)))
                .map_err(|e| e.to_string())?;
            let end = Instant::now() + ECHO_LIFETIME;
            let mut buf = [0u8; 512];
            while !stopped.load(Ordering::Relaxed) && Instant::now() < end {
                if let Ok((_, from)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(from.to_string().as_bytes(), from);
                }
            }
            Ok(())
        });
        let mut echo = Self {
            stop,
            thread: Some(thread),
        };
        match bound_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => echo,
            Ok(Err(e)) => panic!("echo in {}: {e}", ns.name()),
            Err(_) => {
                let why = echo.thread.take().map(JoinHandle::join);
                panic!("the echo in {} did not start: {why:?}", ns.name())
            }
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// From one socket in `ns` bound to [`CLIENT_PORT`], asks each echo in turn which source address
/// it sees; `None` where no answer came.
fn seen_from(ns: &Namespace, echoes: &[SocketAddr]) -> Vec<Option<SocketAddr>> {
    let echoes = echoes.to_vec();
    spawn_in(ns, move || {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, CLIENT_PORT))
            .map_err(|e| format!("bind port {CLIENT_PORT}: {e}"))?;
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        Ok(echoes.iter().map(|echo| ask(&socket, *echo)).collect())
    })
    .join()
    .expect("the asking thread does not panic")
    .unwrap_or_else(|e| panic!("asking from {}: {e}", ns.name()))
}

/// Sends to `echo` up to [`TRIES`] times; the address in its first answer.
fn ask(socket: &UdpSocket, echo: SocketAddr) -> Option<SocketAddr> {
    let mut buf = [0u8; 512];
    for _ in 0..TRIES {
        // A send refused locally (a route not there yet) counts as a try without an answer.
        let _ = socket.send_to(b"who am i", echo);
        let deadline = Instant::now() + REPLY_WAIT;
        while Instant::now() < deadline {
            match socket.recv_from(&mut buf) {
                // A late answer of an echo asked before is not this one's.
                Ok((n, from)) if from == echo => {
                    return Some(
                        String::from_utf8_lossy(&buf[..n])
                            .parse()
                            .expect("an echo answers with an address"),
                    );
                }
                _ => {}
            }
        }
    }
    None
}

/// A public segment 198.18.0.0/24 on a switch of its own.
fn public_segment() -> Topology {
    require_tools(&["ip", "nft"]);
    Topology::new(namespace("switch"), "198.18.0.0/24".parse().unwrap(), None)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// NAT `n` (1, 2, …): public address 198.18.0.n, LAN 198.19.n.0/24.
fn add_nat(topology: &mut Topology, n: u8, mapping: Mapping) -> NatId {
    topology
        .add_nat(
            namespace(&format!("nat{n}")),
            mapping,
            Ipv4Addr::new(198, 18, 0, n),
            format!("198.19.{n}.0/24").parse().unwrap(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A host on the public switch at 198.18.0.`host`.
fn public_host(topology: &Topology, role: &str, host: u8) -> (Netns, Ipv4Addr) {
    let ns = Netns::new(role);
    let addr = Ipv4Addr::new(198, 18, 0, host);
    topology
        .plug(&ns, addr, None)
        .unwrap_or_else(|e| panic!("{e}"));
    (ns, addr)
}

/// A host behind `nat`, and its LAN address.
fn lan_host(topology: &Topology, role: &str, nat: NatId) -> (Netns, Ipv4Addr) {
    let ns = Netns::new(role);
    let addr = topology.attach(&ns, nat).unwrap_or_else(|e| panic!("{e}"));
    (ns, addr)
}

fn echo_at(addr: Ipv4Addr) -> SocketAddr {
    SocketAddr::from((addr, ECHO_PORT))
}

/// What two public servers see of one socket of a host behind a NAT doing `mapping`; and the
/// router's public address.
fn sources_seen_through(mapping: Mapping) -> (Ipv4Addr, Vec<Option<SocketAddr>>) {
    let mut topology = public_segment();
    let nat = add_nat(&mut topology, 1, mapping);
    let (host, lan_addr) = lan_host(&topology, "host", nat);
    assert!(topology.nat(nat).lan4().contains(&lan_addr), "{lan_addr}");
    let (one, one_addr) = public_host(&topology, "server1", 21);
    let (two, two_addr) = public_host(&topology, "server2", 22);
    let _echoes = [
        Echo::start(&one, echo_at(one_addr)),
        Echo::start(&two, echo_at(two_addr)),
    ];
    let seen = seen_from(&host, &[echo_at(one_addr), echo_at(two_addr)]);
    (topology.nat(nat).public4(), seen)
}

#[test]
fn an_endpoint_independent_nat_maps_one_socket_to_one_public_port() {
    let _one_at_a_time = serial();
    let (public, seen) = sources_seen_through(Mapping::EndpointIndependent);
    let seen: Vec<SocketAddr> = seen
        .into_iter()
        .map(|s| s.expect("both servers answer"))
        .collect();
    assert!(seen.iter().all(|s| s.ip() == public), "{seen:?}");
    assert_eq!(seen[0].port(), seen[1].port(), "{seen:?}");
}

#[test]
fn a_symmetric_nat_maps_each_destination_to_its_own_port() {
    let _one_at_a_time = serial();
    let (public, seen) = sources_seen_through(Mapping::Symmetric);
    let seen: Vec<SocketAddr> = seen
        .into_iter()
        .map(|s| s.expect("both servers answer"))
        .collect();
    assert!(seen.iter().all(|s| s.ip() == public), "{seen:?}");
    assert_ne!(seen[0].port(), seen[1].port(), "{seen:?}");
}

#[test]
fn udp_between_two_nats_can_be_blocked_and_unblocked() {
    let _one_at_a_time = serial();
    let mut topology = public_segment();
    let (a, b) = (
        add_nat(&mut topology, 1, Mapping::EndpointIndependent),
        add_nat(&mut topology, 2, Mapping::EndpointIndependent),
    );
    let (host_a, _) = lan_host(&topology, "host-a", a);
    let (host_b, _) = lan_host(&topology, "host-b", b);
    let (server, server_addr) = public_host(&topology, "server", 21);
    let (public_a, public_b) = (topology.nat(a).public4(), topology.nat(b).public4());
    // What crosses between the NATs: a hole punched from both sides, each host sending from
    // CLIENT_PORT to the other's NAT at the port its mapping keeps (CLIENT_PORT).
    let (from_a, from_b) = (
        Some(SocketAddr::from((public_a, CLIENT_PORT))),
        Some(SocketAddr::from((public_b, CLIENT_PORT))),
    );
    let _echo = Echo::start(&server, echo_at(server_addr));
    let across = || punch(&host_a, public_b, &host_b, public_a);
    assert_eq!(across(), (from_b, from_a), "before blocking");

    topology.block_udp(a, b).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(across(), (None, None), "while blocked");
    let to_server = seen_from(&host_a, &[echo_at(server_addr)])[0];
    assert_eq!(
        to_server, from_a,
        "blocking UDP between the NATs cut the NAT off from the public server"
    );

    topology.unblock_udp(a, b).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(across(), (from_b, from_a), "after unblocking");
}

/// Hole punching between two hosts behind NATs: each, from a socket bound to [`CLIENT_PORT`],
/// sends to the other's NAT at `CLIENT_PORT` every 50 ms for two seconds; the source of the first
/// datagram each received (host a's first, then host b's).
fn punch(
    host_a: &Namespace,
    public_b: Ipv4Addr,
    host_b: &Namespace,
    public_a: Ipv4Addr,
) -> (Option<SocketAddr>, Option<SocketAddr>) {
    let side = |ns: &Namespace, to: Ipv4Addr| {
        spawn_in(ns, move || {
            let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, CLIENT_PORT))
                .map_err(|e| format!("bind port {CLIENT_PORT}: {e}"))?;
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .map_err(|e| e.to_string())?;
            let (mut first, mut buf) = (None, [0u8; 64]);
            let end = Instant::now() + Duration::from_secs(2);
            while Instant::now() < end {
                // Refused locally (an ICMP error from an earlier try) counts as a try.
                let _ = socket.send_to(b"punch", (to, CLIENT_PORT));
                if let Ok((_, from)) = socket.recv_from(&mut buf) {
                    first.get_or_insert(from);
                }
            }
            Ok(first)
        })
    };
    let (a, b) = (side(host_a, public_b), side(host_b, public_a));
    let joined = |h: JoinHandle<Result<Option<SocketAddr>, String>>| {
        h.join()
            .expect("a punching thread does not panic")
            .unwrap_or_else(|e| panic!("punching: {e}"))
    };
    (joined(a), joined(b))
}

#[test]
fn a_host_moved_to_another_nat_appears_from_its_router() {
    let _one_at_a_time = serial();
    let mut topology = public_segment();
    let (a, b) = (
        add_nat(&mut topology, 1, Mapping::EndpointIndependent),
        add_nat(&mut topology, 2, Mapping::Symmetric),
    );
    let (host, _) = lan_host(&topology, "roamer", a);
    let (server, server_addr) = public_host(&topology, "server", 21);
    let _echo = Echo::start(&server, echo_at(server_addr));
    let seen = |expected: &str| {
        seen_from(&host, &[echo_at(server_addr)])[0]
            .unwrap_or_else(|| panic!("the server does not answer {expected}"))
            .ip()
    };
    assert_eq!(seen("behind the first NAT"), topology.nat(a).public4());

    let moved = topology
        .move_host(&host, b)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(topology.nat(b).lan4().contains(&moved), "{moved}");
    assert_eq!(seen("after the move"), topology.nat(b).public4());
}

#[test]
fn two_hosts_behind_one_nat_talk_over_their_lan() {
    let _one_at_a_time = serial();
    let mut topology = public_segment();
    let nat = add_nat(&mut topology, 1, Mapping::Symmetric);
    let (first, first_addr) = lan_host(&topology, "first", nat);
    let (second, second_addr) = lan_host(&topology, "second", nat);
    assert_ne!(first_addr, second_addr);
    let _echo = Echo::start(&second, echo_at(second_addr));
    let seen = seen_from(&first, &[echo_at(second_addr)])[0];
    assert_eq!(
        seen,
        Some(SocketAddr::from((first_addr, CLIENT_PORT))),
        "untranslated over the LAN"
    );
}
