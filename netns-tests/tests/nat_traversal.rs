//! NAT traversal under a running controller (issue 11). The controller runs on the first member,
//! `server`, on the public switch; the other members are planned without endpoints and moved
//! behind NAT routers of the lab's topology (nftables masquerade: endpoint-independent, or
//! `fully-random` for a symmetric NAT). Two members behind their own NATs get a direct tunnel
//! within 5 s and nothing through the relay; two behind one NAT talk over their LAN; behind
//! symmetric NATs, or with UDP between the NATs blocked, traffic goes through the relay within
//! 5 s, and when the block is lifted the pair moves to direct within 30 s without losing a running
//! TCP connection; a member moved to another NAT has its tunnels back within 5 s; a non-member's
//! probes and relay datagrams get no answer and nothing relayed; a stock wireguard-go peer still
//! works against agents with NAT traversal on. Every wait is bounded, and the measured times are
//! printed (`figure: …`, seen with `--nocapture`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wiremesh_core::disco::{self, Probe, RELAY_HEADER_LEN, TXID_LEN};
use wiremesh_core::keys::Identity;
use wiremesh_netns_tests::{
    AGENT_PORT, Capture, Lab, Mapping, Member, Netns, PeerPath, Stream, relay_drops, serial,
    spawn_in, tcp_transfer,
};

/// The bound for a direct path, for the relay fallback and for a roaming member.
const FIVE_S: Duration = Duration::from_secs(5);
/// The bound for moving from the relay back to a direct path.
const BACK_TO_DIRECT: Duration = Duration::from_secs(30);
/// The controller's relay port (the default of the plan).
const RELAY_PORT: u16 = 51822;
const MIB: u64 = 1 << 20;

/// The members of every lab here: the controller's machine first.
const NAMES: [&str; 3] = ["server", "alpha", "beta"];

fn figure(what: &str, took: Duration) {
    eprintln!("figure: {what}: {:.2} s", took.as_secs_f64());
}

/// Starts the controller and every agent; returns when all agents reported READY=1, the moment
/// from which the bounds are counted.
fn start(lab: &mut Lab) -> Instant {
    lab.start_controller();
    lab.start_all();
    Instant::now()
}

fn member<'a>(lab: &'a Lab, name: &str) -> &'a Member {
    lab.members
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no member {name}"))
}

/// Waits for `from`'s path to `to` to satisfy `ok`, panicking with the status and log.
fn wait_path(
    lab: &Lab,
    from: &str,
    to: &str,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&PeerPath) -> bool,
) -> (Duration, PeerPath) {
    member(lab, from)
        .wait_path(to, what, timeout, ok)
        .unwrap_or_else(|e| panic!("{e}\ncontroller log:\n{}", lab.controller_log()))
}

/// Pings `to`'s overlay IPv4 address from `from` until a reply comes (bounded).
fn ping(lab: &Lab, from: &str, to: &str, timeout: Duration) -> Duration {
    let dst = IpAddr::V4(member(lab, to).overlay4());
    member(lab, from)
        .ns
        .wait_ping(dst, timeout)
        .unwrap_or_else(|e| {
            panic!(
                "{from} → {to}: {e}\nlog of {from}:\n{}",
                member(lab, from).agent_log()
            )
        })
}

/// 10 MiB over TCP from `from` to `to` through the tunnel, with matching sha256.
fn transfer(lab: &Lab, from: &str, to: &str, bytes: u64, port: u16) {
    let (a, b) = (member(lab, from), member(lab, to));
    let t = tcp_transfer(
        &a.ns,
        &b.ns,
        IpAddr::V4(b.overlay4()),
        port,
        bytes,
        Duration::from_secs(120),
    )
    .unwrap_or_else(|e| panic!("{bytes} bytes {from} → {to}: {e}"));
    assert_eq!(t.received_bytes, bytes, "{from} → {to}");
    assert_eq!(
        t.sent_sha256, t.received_sha256,
        "{from} → {to}: the data arrived altered"
    );
    eprintln!(
        "figure: {} MiB {from} → {to} in {:.2} s",
        bytes / MIB,
        t.elapsed.as_secs_f64()
    );
}

/// The candidates `from`'s status lists for `to`, as (address, kind).
fn candidates(lab: &Lab, from: &str, to: &str) -> Vec<(SocketAddr, String)> {
    let entry = member(lab, from).member_json(to);
    entry["candidates"]
        .as_array()
        .unwrap_or_else(|| panic!("no \"candidates\" in {from}'s status of {to}: {entry}"))
        .iter()
        .map(|c| {
            let addr = c["addr"]
                .as_str()
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("a candidate without an address: {c}"));
            let kind = c["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("a candidate without a kind: {c}"));
            (addr, kind.to_owned())
        })
        .collect()
}

#[test]
fn two_peers_behind_their_own_nats_get_a_direct_tunnel_and_nothing_is_relayed() {
    let _one_at_a_time = serial();
    let mut lab = Lab::planned_for_nat(&NAMES, &["alpha", "beta"]);
    let (na, nb) = (
        lab.add_nat("a", Mapping::EndpointIndependent),
        lab.add_nat("b", Mapping::EndpointIndependent),
    );
    lab.put_behind("alpha", na);
    lab.put_behind("beta", nb);
    let (public_a, public_b) = (lab.nat_addresses(na).0, lab.nat_addresses(nb).0);
    let started = start(&mut lab);

    let direct = |public: Ipv4Addr| {
        move |p: &PeerPath| p.is_direct() && p.addr.map(|a| a.ip()) == Some(IpAddr::V4(public))
    };
    let (_, path) = wait_path(
        &lab,
        "alpha",
        "beta",
        "direct to beta's NAT",
        FIVE_S,
        direct(public_b),
    );
    let alpha_took = started.elapsed();
    let (_, back) = wait_path(
        &lab,
        "beta",
        "alpha",
        "direct to alpha's NAT",
        FIVE_S,
        direct(public_a),
    );
    figure(
        "time to a direct path behind two NATs (alpha → beta)",
        alpha_took,
    );
    figure(
        "time to a direct path behind two NATs (both ways)",
        started.elapsed(),
    );
    assert!(
        started.elapsed() <= FIVE_S,
        "the direct paths took {:?}: {path:?} / {back:?}",
        started.elapsed()
    );
    // What made it possible: each knows the other's NAT-mapped address from the controller.
    let cands = candidates(&lab, "alpha", "beta");
    assert!(
        cands
            .iter()
            .any(|(a, k)| k == "mapped" && a.ip() == IpAddr::V4(public_b)),
        "alpha lists no mapped candidate at beta's NAT {public_b}: {cands:?}"
    );
    ping(&lab, "alpha", "beta", FIVE_S);
    ping(&lab, "beta", "alpha", FIVE_S);
    assert_eq!(lab.relayed_bytes(), 0, "relay: {}", lab.relay_status());
    // The controller saw each probe come from the member's NAT: the WireGuard socket's mapping.
    let relay = lab.relay_status();
    for (name, public) in [("alpha", public_a), ("beta", public_b)] {
        let bound = relay["bound"]
            .as_array()
            .and_then(|b| b.iter().find(|b| b["name"] == name))
            .unwrap_or_else(|| panic!("{name} is not bound at the relay: {relay}"));
        let at: SocketAddr = bound["address"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{name}'s binding has no address: {bound}"));
        assert_eq!(at.ip(), IpAddr::V4(public), "{name}'s binding: {bound}");
    }

    transfer(&lab, "alpha", "beta", 10 * MIB, 5201);
    assert_eq!(
        lab.relayed_bytes(),
        0,
        "the transfer went through the relay: {}",
        lab.relay_status()
    );
    let after = member(&lab, "alpha").path_to("beta");
    assert!(after.is_direct(), "alpha left the direct path: {after:?}");
    let entry = member(&lab, "beta").peer_status("alpha");
    assert!(
        entry.rx_bytes >= 10 * MIB,
        "beta's counters do not show the transfer: {entry:?}"
    );
}

#[test]
fn two_peers_behind_one_nat_talk_over_their_lan() {
    let _one_at_a_time = serial();
    let mut lab = Lab::planned_for_nat(&NAMES, &["alpha", "beta"]);
    let home = lab.add_nat("home", Mapping::EndpointIndependent);
    let alpha_lan = lab.put_behind("alpha", home);
    let beta_lan = lab.put_behind("beta", home);
    let (public, lan) = lab.nat_addresses(home);
    let started = start(&mut lab);

    let on_lan = |p: &PeerPath| {
        p.is_direct() && matches!(p.addr.map(|a| a.ip()), Some(IpAddr::V4(ip)) if lan.contains(&ip))
    };
    let (_, path) = wait_path(&lab, "alpha", "beta", "direct over the LAN", FIVE_S, on_lan);
    let (_, back) = wait_path(&lab, "beta", "alpha", "direct over the LAN", FIVE_S, on_lan);
    figure("time to the LAN path behind one NAT", started.elapsed());
    assert_eq!(
        path.addr.map(|a| a.ip()),
        Some(IpAddr::V4(beta_lan)),
        "alpha → beta: {path:?}"
    );
    assert_eq!(
        back.addr.map(|a| a.ip()),
        Some(IpAddr::V4(alpha_lan)),
        "beta → alpha: {back:?}"
    );
    ping(&lab, "alpha", "beta", FIVE_S);
    transfer(&lab, "alpha", "beta", 2 * MIB, 5202);
    // Still on the LAN after the traffic, never the NAT's public address nor the relay.
    for (from, to) in [("alpha", "beta"), ("beta", "alpha")] {
        let p = member(&lab, from).path_to(to);
        assert!(
            on_lan(&p),
            "{from} → {to} left the LAN: {p:?} (NAT {public})"
        );
    }
    assert_eq!(
        lab.relayed_bytes_between("alpha", "beta"),
        0,
        "relay: {}",
        lab.relay_status()
    );
}

#[test]
fn behind_symmetric_nats_traffic_goes_through_the_relay() {
    let _one_at_a_time = serial();
    let mut lab = Lab::planned_for_nat(&NAMES, &["alpha", "beta"]);
    let (na, nb) = (
        lab.add_nat("a", Mapping::Symmetric),
        lab.add_nat("b", Mapping::Symmetric),
    );
    lab.put_behind("alpha", na);
    lab.put_behind("beta", nb);
    let started = start(&mut lab);

    let relayed = |p: &PeerPath| p.is_relay() && p.via.as_deref() == Some("server");
    wait_path(
        &lab,
        "alpha",
        "beta",
        "through server's relay",
        FIVE_S,
        relayed,
    );
    wait_path(
        &lab,
        "beta",
        "alpha",
        "through server's relay",
        FIVE_S,
        relayed,
    );
    let took = started.elapsed();
    figure("time to the relay behind two symmetric NATs", took);
    ping(&lab, "alpha", "beta", FIVE_S);
    let text = member(&lab, "alpha").status_text();
    assert!(
        text.contains("path: relay via server"),
        "wiremesh status on alpha does not show the relay:\n{text}"
    );

    let before = lab.relayed_bytes_between("alpha", "beta");
    transfer(&lab, "alpha", "beta", 4 * MIB, 5203);
    let moved = lab.relayed_bytes_between("alpha", "beta") - before;
    assert!(
        moved >= 4 * MIB,
        "the relay counted {moved} bytes for a 4 MiB transfer: {}",
        lab.relay_status()
    );
    let p = member(&lab, "alpha").path_to("beta");
    assert!(p.is_relay(), "alpha → beta: {p:?}");
}

#[test]
fn with_udp_blocked_between_the_nats_the_relay_carries_and_a_lifted_block_goes_direct_without_dropping_tcp()
 {
    let _one_at_a_time = serial();
    let mut lab = Lab::planned_for_nat(&NAMES, &["alpha", "beta"]);
    let (na, nb) = (
        lab.add_nat("a", Mapping::EndpointIndependent),
        lab.add_nat("b", Mapping::EndpointIndependent),
    );
    lab.put_behind("alpha", na);
    lab.put_behind("beta", nb);
    let (public_a, public_b) = (lab.nat_addresses(na).0, lab.nat_addresses(nb).0);
    lab.block_udp(na, nb);
    let started = start(&mut lab);

    let relayed = |p: &PeerPath| p.is_relay() && p.via.as_deref() == Some("server");
    wait_path(
        &lab,
        "alpha",
        "beta",
        "through server's relay",
        FIVE_S,
        relayed,
    );
    wait_path(
        &lab,
        "beta",
        "alpha",
        "through server's relay",
        FIVE_S,
        relayed,
    );
    figure(
        "time to relay fallback (UDP between the NATs blocked)",
        started.elapsed(),
    );
    ping(&lab, "alpha", "beta", FIVE_S);

    // A TCP connection through the tunnel, running across the switch of paths.
    let (alpha, beta) = (member(&lab, "alpha"), member(&lab, "beta"));
    let to = SocketAddr::new(IpAddr::V4(beta.overlay4()), 5204);
    let stream = Stream::start(&alpha.ns, &beta.ns, to, 2 * MIB);
    let on_relay = stream
        .wait_progress(0, 2 * MIB, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("the stream over the relay: {e}"));
    let relayed_before = lab.relayed_bytes_between("alpha", "beta");
    assert!(
        relayed_before >= on_relay,
        "the relay counted {relayed_before} bytes while {on_relay} went through it: {}",
        lab.relay_status()
    );

    lab.unblock_udp(na, nb);
    let lifted = Instant::now();
    let direct_to = |public: Ipv4Addr| {
        move |p: &PeerPath| p.is_direct() && p.addr.map(|a| a.ip()) == Some(IpAddr::V4(public))
    };
    wait_path(
        &lab,
        "alpha",
        "beta",
        "direct once the block is lifted",
        BACK_TO_DIRECT,
        direct_to(public_b),
    );
    figure(
        "time back to direct after the block is lifted (alpha → beta)",
        lifted.elapsed(),
    );
    wait_path(
        &lab,
        "beta",
        "alpha",
        "direct once the block is lifted",
        BACK_TO_DIRECT.saturating_sub(lifted.elapsed()),
        direct_to(public_a),
    );
    figure(
        "time back to direct after the block is lifted (both ways)",
        lifted.elapsed(),
    );

    // The connection goes on over the direct path, and the relay stops carrying it.
    let at_switch = stream.received();
    let relayed_at_switch = lab.relayed_bytes_between("alpha", "beta");
    stream
        .wait_progress(at_switch, 4 * MIB, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("the stream after the move to direct: {e}"));
    let relayed_since = lab.relayed_bytes_between("alpha", "beta") - relayed_at_switch;
    assert!(
        relayed_since < MIB,
        "{relayed_since} bytes still went through the relay after the move to direct"
    );
    let done = stream
        .finish()
        .unwrap_or_else(|e| panic!("the TCP connection did not survive the move: {e}"));
    assert_eq!(done.sent, done.received, "bytes lost: {done:?}");
    assert_eq!(
        done.sent_sha256, done.received_sha256,
        "the stream arrived altered"
    );
    eprintln!(
        "figure: the TCP stream moved {} MiB across the path change",
        done.received / MIB
    );
}

#[test]
fn a_peer_moved_to_another_nat_has_its_tunnels_back_within_5_s() {
    let _one_at_a_time = serial();
    let mut lab = Lab::planned_for_nat(&NAMES, &["alpha", "beta"]);
    let (home, office, cafe) = (
        lab.add_nat("home", Mapping::EndpointIndependent),
        lab.add_nat("office", Mapping::EndpointIndependent),
        lab.add_nat("cafe", Mapping::EndpointIndependent),
    );
    lab.put_behind("alpha", home);
    lab.put_behind("beta", office);
    let cafe_public = lab.nat_addresses(cafe).0;
    start(&mut lab);
    wait_path(
        &lab,
        "alpha",
        "beta",
        "direct",
        Duration::from_secs(15),
        PeerPath::is_direct,
    );
    ping(&lab, "alpha", "beta", FIVE_S);
    ping(&lab, "alpha", "server", FIVE_S);

    lab.put_behind("alpha", cafe);
    let moved = Instant::now();
    // Every tunnel of alpha, both ways: to the member behind a NAT and to the one on the switch.
    for (from, to) in [
        ("alpha", "beta"),
        ("beta", "alpha"),
        ("alpha", "server"),
        ("server", "alpha"),
    ] {
        ping(&lab, from, to, FIVE_S);
    }
    let took = moved.elapsed();
    figure(
        "roaming: alpha's tunnels back after moving to another NAT",
        took,
    );
    assert!(took <= FIVE_S, "the tunnels took {took:?} to come back");
    let p = member(&lab, "beta").path_to("alpha");
    eprintln!("figure: beta's path to alpha right after the move: {p:?}");
    assert!(
        p.is_relay() || p.is_direct(),
        "beta reaches alpha by no path: {p:?}"
    );
    wait_path(
        &lab,
        "beta",
        "alpha",
        "direct at alpha's new NAT",
        BACK_TO_DIRECT,
        |p| p.is_direct() && p.addr.map(|a| a.ip()) == Some(IpAddr::V4(cafe_public)),
    );
    figure(
        "roaming: beta's direct path to alpha's new NAT",
        moved.elapsed(),
    );
}

/// What a non-member sends: its own signed probes, probes claiming alpha's node key (signed with
/// the wrong key), and relay datagrams naming each member as destination.
fn hostile_datagrams(lab: &Lab, payload: usize) -> Vec<Vec<u8>> {
    let mallory = Identity::generate().expect("the OS has randomness");
    let alpha = member(lab, "alpha");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis();
    let now = u64::try_from(now).expect("milliseconds fit u64");
    let mut out = Vec::new();
    for i in 0..5u8 {
        let own = Probe {
            node_public_key: mallory.node_public_key(),
            txid: [i; TXID_LEN],
            unix_ms: now + u64::from(i),
        };
        out.push(own.encode(mallory.node_secret()).to_vec());
        let claimed = Probe {
            node_public_key: alpha.identity.node_public_key(),
            txid: [0x80 | i; TXID_LEN],
            unix_ms: now + u64::from(i),
        };
        out.push(claimed.encode(mallory.node_secret()).to_vec());
    }
    for m in &lab.members {
        let id = disco::peer_id(m.identity.wireguard_public_key().as_bytes());
        for _ in 0..20 {
            let mut datagram = vec![0u8; RELAY_HEADER_LEN];
            let header: &mut [u8; RELAY_HEADER_LEN] =
                (&mut datagram[..]).try_into().expect("the header's length");
            disco::write_relay_header(header, id);
            // A WireGuard transport-data header and junk: what a relay would forward unread.
            let mut inner = vec![0x5a; payload];
            inner[..4].copy_from_slice(&[4, 0, 0, 0]);
            datagram.extend_from_slice(&inner);
            out.push(datagram);
        }
    }
    out
}

#[test]
fn a_non_member_gets_no_answer_and_nothing_relayed() {
    let _one_at_a_time = serial();
    // Every member on the switch with its endpoint: direct paths, so the relay should carry
    // nothing at all, and whatever it forwarded would be mallory's.
    let mut lab = Lab::planned_for_nat(&NAMES, &[]);
    let relay = SocketAddr::new(IpAddr::V4(lab.members[0].underlay4), RELAY_PORT);
    start(&mut lab);
    ping(&lab, "alpha", "beta", Duration::from_secs(10));
    let mallory = Netns::new("mallory");
    lab.plug(
        &mallory,
        Ipv4Addr::new(198, 18, 0, 99),
        "fd00:18::99".parse().expect("a valid address"),
    );

    // What reaches the members from the relay port: only probe replies may.
    let filter = format!("udp and src host {} and src port {RELAY_PORT}", relay.ip());
    let captures: Vec<Capture> = ["alpha", "beta"]
        .iter()
        .map(|m| {
            Capture::start(
                &member(&lab, m).ns,
                "eth0",
                &filter,
                lab.dir(),
                &format!("{m}-from-relay"),
            )
        })
        .collect();

    let drops_before = relay_drops(&lab.relay_status());
    const PAYLOAD: usize = 300;
    let datagrams = hostile_datagrams(&lab, PAYLOAD);
    let sent = datagrams.len();
    let answers = spawn_in(&mallory, move || {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, AGENT_PORT))
            .map_err(|e| format!("bind: {e}"))?;
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        for d in &datagrams {
            socket
                .send_to(d, relay)
                .map_err(|e| format!("send to {relay}: {e}"))?;
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut answers = Vec::new();
        let end = Instant::now() + Duration::from_secs(3);
        let mut buf = [0u8; 2048];
        while Instant::now() < end {
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                answers.push(format!("{n} bytes from {from}"));
            }
        }
        Ok(answers)
    })
    .join()
    .expect("mallory's thread does not panic")
    .unwrap_or_else(|e| panic!("mallory: {e}"));
    assert!(
        answers.is_empty(),
        "mallory got answers to {sent} datagrams: {answers:?}"
    );

    let relayed_len = format!("length {}", RELAY_HEADER_LEN + PAYLOAD);
    let reply_len = format!("length {}", disco::PROBE_REPLY_LEN);
    for (m, capture) in ["alpha", "beta"].iter().zip(captures) {
        let lines = capture.finish();
        let foreign: Vec<&String> = lines.iter().filter(|l| !l.contains(&reply_len)).collect();
        assert!(
            foreign.is_empty(),
            "{m} got datagrams from the relay port other than probe replies: {foreign:?}"
        );
        assert!(
            lines.iter().all(|l| !l.contains(&relayed_len)),
            "mallory's datagrams reached {m}: {lines:?}"
        );
    }
    let relay = lab.relay_status();
    assert_eq!(
        lab.relayed_bytes(),
        0,
        "the relay forwarded a non-member's datagrams: {relay}"
    );
    // Proof that the datagrams reached the relay: each one was dropped for a reason.
    let dropped = relay_drops(&relay) - drops_before;
    assert!(
        dropped >= sent as u64,
        "the relay dropped {dropped} of the {sent} datagrams mallory sent: {relay}"
    );
    // The members themselves were not disturbed.
    ping(&lab, "alpha", "beta", FIVE_S);
}

#[test]
fn a_stock_wireguard_peer_with_a_configured_endpoint_works_against_agents_with_nat_traversal() {
    let _one_at_a_time = serial();
    let mut lab = Lab::planned_for_nat(&["alpha", "beta"], &[]);
    start(&mut lab);
    let printed = lab.controller_admin_ok(&["device", "add", "phone"]);
    let wg_quick: Vec<&str> = printed.lines().take_while(|l| l.is_ascii()).collect();
    let wg_quick = wg_quick.join("\n");
    assert!(
        wg_quick.contains("Endpoint"),
        "the credential configures no endpoint:\n{wg_quick}"
    );
    let phone = lab.wg_quick_device("phone", 60, &wg_quick);
    // Datagrams of wiremesh's own kinds (probe, reply, relay: first byte 0x10-0x12 and three zero
    // bytes) must never reach the stock peer.
    let ours = Capture::start(
        &phone.ns,
        "eth0",
        "udp and (udp[8] >= 0x10 and udp[8] <= 0x12) and udp[9:2] = 0 and udp[11] = 0",
        lab.dir(),
        "phone-disco",
    );
    for m in &lab.members {
        phone
            .ns
            .wait_ping(IpAddr::V4(m.overlay4()), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("phone → {}: {e}\nlog:\n{}", m.name, m.agent_log()));
    }
    let alpha = member(&lab, "alpha");
    alpha
        .ns
        .wait_ping(IpAddr::V4(phone.overlay4), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("alpha → phone: {e}"));
    // Past the relay fallback bound: the agent still talks to the phone directly.
    std::thread::sleep(Duration::from_secs(7));
    let t = tcp_transfer(
        &alpha.ns,
        &phone.ns,
        IpAddr::V4(phone.overlay4),
        5205,
        10 * MIB,
        Duration::from_secs(120),
    )
    .unwrap_or_else(|e| panic!("10 MiB alpha → phone: {e}"));
    assert_eq!(t.received_bytes, 10 * MIB);
    assert_eq!(t.sent_sha256, t.received_sha256, "the data arrived altered");
    let p = alpha.path_to("phone");
    let phone_at = SocketAddr::new(IpAddr::V4(phone.underlay4), AGENT_PORT);
    assert!(
        p.is_direct() && p.addr == Some(phone_at),
        "alpha's path to the phone: {p:?}, not direct at {phone_at}"
    );
    let seen = ours.finish();
    assert!(
        seen.is_empty(),
        "wiremesh's own datagrams reached the stock peer: {seen:?}"
    );
    let fields = phone.peer_dump(&alpha.identity.wireguard_public_key().to_base64());
    assert_ne!(
        fields[4], "0",
        "wireguard-go reports no handshake: {fields:?}"
    );
    assert_eq!(
        lab.relayed_bytes(),
        0,
        "the relay carried traffic: {}",
        lab.relay_status()
    );
}
