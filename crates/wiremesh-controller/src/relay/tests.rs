//! Each rule of the relay, with datagrams made by hand and the time passed in.

use super::*;
use wiremesh_core::disco::{PROBE_REPLY_LEN, RELAY_HEADER_LEN, TXID_LEN};
use wiremesh_core::keys::WireguardSecret;

const T0: Duration = Duration::from_secs(1_800_000_000);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn controller() -> NodeSecret {
    NodeSecret::from_seed([201; 32])
}

struct Agent {
    name: &'static str,
    node: NodeSecret,
    wireguard: WireguardPublicKey,
}

impl Agent {
    fn new(name: &'static str, seed: u8) -> Self {
        Agent {
            name,
            node: NodeSecret::from_seed([seed; 32]),
            wireguard: WireguardSecret::from_bytes([seed.wrapping_add(100); 32]).public_key(),
        }
    }

    fn member(&self) -> RelayMember {
        RelayMember {
            name: self.name.into(),
            node_public_key: self.node.public_key(),
            wireguard_public_key: self.wireguard,
        }
    }

    fn id(&self) -> PeerId {
        disco::peer_id(self.wireguard.as_bytes())
    }

    /// A probe signed at `at`.
    fn probe(&self, at: Duration) -> Vec<u8> {
        Probe {
            node_public_key: self.node.public_key(),
            txid: [at.as_millis() as u8; TXID_LEN],
            unix_ms: at.as_millis() as u64,
        }
        .encode(&self.node)
        .to_vec()
    }

    /// A probe in this agent's name signed by another key.
    fn forged_probe(&self, at: Duration) -> Vec<u8> {
        Probe {
            node_public_key: self.node.public_key(),
            txid: [1; TXID_LEN],
            unix_ms: at.as_millis() as u64,
        }
        .encode(&NodeSecret::from_seed([99; 32]))
        .to_vec()
    }
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

const A_AT: &str = "198.18.1.1:40001";
const B_AT: &str = "198.18.2.1:40002";
const STRANGER: &str = "198.18.9.9:40009";

fn limits() -> Limits {
    Limits::from_config(&controller_config::Relay::default())
}

fn relay_with(limits: Limits) -> (Relay, Agent, Agent) {
    let a = Agent::new("a", 1);
    let b = Agent::new("b", 2);
    let mut r = Relay::new(controller(), limits, T0);
    assert!(r.set_members([a.member(), b.member()], T0).is_empty());
    (r, a, b)
}

fn relay() -> (Relay, Agent, Agent) {
    relay_with(limits())
}

/// Both clocks at `now` (a simulation where neither steps).
fn at(now: Duration) -> Now {
    Now {
        mono: now,
        unix: now,
    }
}

fn handle(r: &mut Relay, from: &str, datagram: &[u8], now: Duration) -> Action {
    handle_at(r, from, datagram, at(now))
}

fn handle_at(r: &mut Relay, from: &str, datagram: &[u8], now: Now) -> Action {
    let mut d = datagram.to_vec();
    let mut out = [0; PROBE_REPLY_LEN];
    r.handle(addr(from), &mut d, &mut out, now)
}

/// A relayed datagram for `to` with `payload` after the header.
fn relayed(to: PeerId, payload: &[u8]) -> Vec<u8> {
    let mut header = [0; RELAY_HEADER_LEN];
    disco::write_relay_header(&mut header, to);
    let mut d = header.to_vec();
    d.extend_from_slice(payload);
    d
}

fn bind(r: &mut Relay, agent: &Agent, from: &str, now: Duration) {
    let action = handle(r, from, &agent.probe(now), now);
    assert!(matches!(action, Action::Reply { .. }), "{action:?}");
}

#[test]
fn a_probe_binds_its_member_and_gets_the_observed_address_signed() {
    let (mut r, a, _) = relay();
    let mut datagram = a.probe(T0);
    let mut out = [0; PROBE_REPLY_LEN];
    let action = r.handle(addr(A_AT), &mut datagram, &mut out, at(T0));
    assert_eq!(
        action,
        Action::Reply {
            to: addr(A_AT),
            len: PROBE_REPLY_LEN,
            rebound: true
        }
    );
    let reply = ProbeReply::decode(&out, &controller().public_key()).unwrap();
    assert_eq!(reply.observed, addr(A_AT));
    assert_eq!(reply.txid, [T0.as_millis() as u8; TXID_LEN]);
    assert_eq!(r.take_changes(), [("a".to_string(), Some(addr(A_AT)))]);
    assert_eq!(r.bound_at(addr(A_AT)), Some("a"));
    // The next probe from the same address is answered and changes nothing.
    let later = T0 + Duration::from_secs(25);
    assert!(matches!(
        handle(&mut r, A_AT, &a.probe(later), later),
        Action::Reply { rebound: false, .. }
    ));
    assert!(r.take_changes().is_empty());
    // From a new address (the NAT remapped): the binding moves.
    let moved = "198.18.1.1:40999";
    let later = later + Duration::from_secs(1);
    assert!(matches!(
        handle(&mut r, moved, &a.probe(later), later),
        Action::Reply { rebound: true, .. }
    ));
    assert_eq!(r.take_changes(), [("a".to_string(), Some(addr(moved)))]);
    assert_eq!(r.bound_at(addr(A_AT)), None);
    assert_eq!(r.binding("a", later), Some(addr(moved)));
}

#[test]
fn a_non_member_gets_no_answer_and_no_relayed_byte() {
    let (mut r, a, b) = relay();
    bind(&mut r, &a, A_AT, T0);
    bind(&mut r, &b, B_AT, T0);
    r.take_changes();
    let stranger = Agent::new("stranger", 9);
    for i in 0..10 {
        let now = T0 + ms(i);
        assert_eq!(
            handle(&mut r, STRANGER, &stranger.probe(now), now),
            Action::Drop(DropReason::NotAMember)
        );
        // To either member, named by its id.
        for to in [a.id(), b.id()] {
            assert_eq!(
                handle(&mut r, STRANGER, &relayed(to, &[4, 0, 0, 0, 1, 2]), now),
                Action::Drop(DropReason::NotAMember)
            );
        }
    }
    assert_eq!(r.dropped(DropReason::NotAMember), 30);
    assert_eq!(r.relayed("a", "b"), (0, 0));
    assert_eq!(r.relayed("b", "a"), (0, 0));
    assert!(r.take_changes().is_empty());
    assert_eq!(r.bound_at(addr(STRANGER)), None);
    // Its probes sent from a member's address do not help it either.
    assert_eq!(
        handle(&mut r, A_AT, &stranger.probe(T0 + ms(20)), T0 + ms(20)),
        Action::Drop(DropReason::NotAMember)
    );
}

#[test]
fn a_forged_probe_binds_nothing() {
    let (mut r, a, _) = relay();
    assert_eq!(
        handle(&mut r, STRANGER, &a.forged_probe(T0), T0),
        Action::Drop(DropReason::BadProbe)
    );
    assert_eq!(r.binding("a", T0), None);
    // Cut short, or with the signature damaged.
    let mut damaged = a.probe(T0);
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    assert_eq!(
        handle(&mut r, STRANGER, &damaged, T0),
        Action::Drop(DropReason::BadProbe)
    );
    assert_eq!(
        handle(&mut r, STRANGER, &a.probe(T0)[..50], T0),
        Action::Drop(DropReason::BadProbe)
    );
    assert!(r.take_changes().is_empty());
    // The genuine probe still works afterwards: nothing was spent on the forgeries.
    bind(&mut r, &a, A_AT, T0);
}

#[test]
fn a_replayed_probe_from_another_address_does_not_move_the_binding() {
    let (mut r, a, _) = relay();
    let captured = a.probe(T0);
    assert!(matches!(
        handle(&mut r, A_AT, &captured, T0),
        Action::Reply { .. }
    ));
    r.take_changes();
    for (from, at) in [
        (STRANGER, T0 + ms(5)),
        (STRANGER, T0 + Duration::from_secs(60)),
    ] {
        assert_eq!(
            handle(&mut r, from, &captured, at),
            Action::Drop(DropReason::Replay)
        );
    }
    // An older probe of the member's, captured earlier, is a replay too.
    assert_eq!(
        handle(&mut r, STRANGER, &a.probe(T0 - ms(1000)), T0 + ms(10)),
        Action::Drop(DropReason::Replay)
    );
    // Long after: outside the window.
    let late = T0 + PROBE_WINDOW + Duration::from_secs(1);
    assert_eq!(
        handle(&mut r, STRANGER, &captured, late),
        Action::Drop(DropReason::BadProbe)
    );
    // One signed for the far future (to be replayed later) is refused too.
    let future = T0 + PROBE_WINDOW + Duration::from_secs(1);
    assert_eq!(
        handle(&mut r, STRANGER, &a.probe(future), T0 + ms(20)),
        Action::Drop(DropReason::BadProbe)
    );
    assert_eq!(r.bound_at(addr(A_AT)), Some("a"));
    assert_eq!(r.bound_at(addr(STRANGER)), None);
    assert!(r.take_changes().is_empty());
    assert_eq!(r.dropped(DropReason::Replay), 3);
}

#[test]
fn probe_floods_are_cut_before_the_signature_check() {
    let (mut r, a, b) = relay();
    // Forged probes in a member's name from one address: past the member's burst they are
    // dropped as a flood, which costs no signature check.
    let n = PROBE_MEMBER_BURST as u64 + 10;
    for i in 0..n {
        handle(&mut r, STRANGER, &a.forged_probe(T0 + ms(i)), T0);
    }
    assert_eq!(r.dropped(DropReason::BadProbe), PROBE_MEMBER_BURST as u64);
    assert_eq!(r.dropped(DropReason::ProbeFlood), 10);
    // Forged probes in many members' names from one address: past the source's burst.
    let many: Vec<Agent> = (0..10).map(|i| Agent::new("m", 10 + i)).collect();
    let mut r2 = Relay::new(controller(), limits(), T0);
    r2.set_members(many.iter().map(Agent::member), T0);
    for m in &many {
        for _ in 0..5 {
            handle(&mut r2, STRANGER, &m.forged_probe(T0), T0);
        }
    }
    assert_eq!(r2.dropped(DropReason::BadProbe), PROBE_SOURCE_BURST as u64);
    assert_eq!(
        r2.dropped(DropReason::ProbeFlood),
        50 - PROBE_SOURCE_BURST as u64
    );
    // Another member, from another source, still gets its probes answered.
    bind(&mut r, &b, B_AT, T0);
    // In the names of many members from many sources at once, the global budget holds (a
    // small one: signature checks are slow in a debug build).
    let many: Vec<Agent> = (0..30).map(|i| Agent::new("m", 10 + i)).collect();
    let mut r = Relay::new(
        controller(),
        Limits {
            probes_global: 100.0,
            ..limits()
        },
        T0,
    );
    r.set_members(many.iter().map(Agent::member), T0);
    assert_eq!(limits().probes_global, PROBES_GLOBAL);
    let mut answered = 0;
    for (i, m) in many.iter().enumerate() {
        for j in 0..5 {
            let from = SocketAddr::from(([198, 18, i as u8, j], 9));
            if handle(&mut r, &from.to_string(), &m.forged_probe(T0), T0)
                == Action::Drop(DropReason::BadProbe)
            {
                answered += 1;
            }
        }
    }
    assert_eq!(answered, 100);
    assert_eq!(r.dropped(DropReason::ProbeFlood), 50);
    // A second later the budget is back.
    let later = T0 + Duration::from_secs(1);
    bind(&mut r, &many[29], A_AT, later);
}

#[test]
fn forged_probes_in_one_members_name_keep_nobody_else_out() {
    let (mut r, a, b) = relay();
    let start = T0 - Duration::from_secs(10);
    bind(&mut r, &a, A_AT, start);
    r.take_changes();
    // For a second, forged probes in a's name from 256 sources (the /64s of one /56), far more
    // than the global budget: they spend a's budget for probes from elsewhere, nothing more.
    let mut forged = 0;
    for ms_ in 0..1000 {
        let now = T0 + ms(ms_);
        for i in 0..25 {
            let net = (ms_ * 25 + i) % 256;
            let from = SocketAddr::new(
                std::net::Ipv6Addr::new(0xfd00, 0, 0, net as u16, 0, 0, 0, 1).into(),
                40000,
            );
            handle(&mut r, &from.to_string(), &a.forged_probe(now), now);
            forged += 1;
        }
    }
    assert_eq!(forged, 25_000);
    let end = T0 + ms(999);
    // Signature checks: a's burst, then its rate.
    let checked = r.dropped(DropReason::BadProbe);
    assert!(
        checked <= (PROBE_MEMBER_BURST + PROBES_PER_MEMBER) as u64,
        "{checked}"
    );
    // b, from a new address, and a, from its binding, are answered in the middle of it all.
    bind(&mut r, &b, B_AT, end);
    bind(&mut r, &a, A_AT, end);
    assert_eq!(r.take_changes(), [("b".to_string(), Some(addr(B_AT)))]);
    // A flood that does spend the global budget (forgeries in many names) still leaves a
    // bound member's own probes alone, though not a new member's.
    let mut members: Vec<Agent> = (0..20).map(|i| Agent::new("m", 10 + i)).collect();
    members.push(Agent::new("a", 1));
    let a = members.pop().unwrap();
    let mut r = Relay::new(
        controller(),
        Limits {
            probes_global: 50.0,
            ..limits()
        },
        start,
    );
    r.set_members(
        members
            .iter()
            .map(Agent::member)
            .chain([a.member(), b.member()]),
        start,
    );
    bind(&mut r, &a, A_AT, start);
    for (i, m) in members.iter().enumerate() {
        for j in 0..5 {
            let from = SocketAddr::from(([198, 18, 100 + i as u8, j], 9));
            handle(&mut r, &from.to_string(), &m.forged_probe(T0), T0);
        }
    }
    assert_eq!(r.dropped(DropReason::ProbeFlood), 100 - 50);
    bind(&mut r, &a, A_AT, T0);
    assert_eq!(
        handle(&mut r, B_AT, &b.probe(T0), T0),
        Action::Drop(DropReason::ProbeFlood)
    );
}

#[test]
fn packets_are_relayed_between_bound_members_naming_the_sender() {
    let (mut r, a, b) = relay();
    bind(&mut r, &a, A_AT, T0);
    bind(&mut r, &b, B_AT, T0);
    let payload = [4u8, 0, 0, 0, 7, 7, 7, 7, 7];
    let mut d = relayed(b.id(), &payload);
    let mut out = [0; PROBE_REPLY_LEN];
    assert_eq!(
        r.handle(addr(A_AT), &mut d, &mut out, at(T0)),
        Action::Forward { to: addr(B_AT) }
    );
    let (id, inner) = disco::split_relay(&d).unwrap();
    assert_eq!(id, a.id(), "the header names the sender now");
    assert_eq!(inner, payload, "the WireGuard packet is untouched");
    assert_eq!(r.relayed("a", "b"), (1, d.len() as u64));
    // And back.
    assert_eq!(
        handle(&mut r, B_AT, &relayed(a.id(), &payload), T0),
        Action::Forward { to: addr(A_AT) }
    );
    assert_eq!(r.relayed("b", "a").0, 1);
    let status = r.status(51822, T0 + Duration::from_secs(3));
    assert_eq!(status.port, 51822);
    assert_eq!(
        status
            .bound
            .iter()
            .map(|b| (b.name.as_str(), b.address.as_str(), b.age_seconds))
            .collect::<Vec<_>>(),
        [("a", A_AT, 3), ("b", B_AT, 3)]
    );
    assert_eq!(status.pairs.len(), 2);
    assert_eq!(
        (status.pairs[0].from.as_str(), status.pairs[0].to.as_str()),
        ("a", "b")
    );
    assert_eq!(status.drops["not-a-member"], 0);
}

#[test]
fn relayed_packets_need_a_bound_destination_other_than_the_sender() {
    let (mut r, a, b) = relay();
    bind(&mut r, &a, A_AT, T0);
    let packet = [4u8, 0, 0, 0, 1];
    // b is a member without a binding; then an id that is no member's; then a itself.
    for to in [b.id(), [7; 8], a.id()] {
        assert_eq!(
            handle(&mut r, A_AT, &relayed(to, &packet), T0),
            Action::Drop(DropReason::UnknownDestination)
        );
    }
    // A header with nothing behind it, WireGuard sent here directly, a probe reply, garbage.
    let reply = ProbeReply {
        txid: [0; TXID_LEN],
        observed: addr(A_AT),
    }
    .encode(&controller());
    for d in [
        &relayed(b.id(), &[])[..],
        &[1, 0, 0, 0, 5, 5][..],
        &reply[..],
        b"hello",
        &[],
    ] {
        assert_eq!(
            handle(&mut r, A_AT, d, T0),
            Action::Drop(DropReason::Malformed)
        );
    }
    assert_eq!(r.dropped(DropReason::UnknownDestination), 3);
    assert_eq!(r.dropped(DropReason::Malformed), 5);
}

#[test]
fn a_member_over_its_rate_is_cut_and_recovers() {
    let config = controller_config::Relay {
        member_rate_mbit: 1,
        ..Default::default()
    };
    let limits = Limits::from_config(&config);
    assert_eq!(limits.rate_bytes_per_second, 125_000.0);
    assert_eq!(limits.burst_bytes, MIN_BURST_BYTES as f64);
    let (mut r, a, b) = relay_with(limits);
    bind(&mut r, &a, A_AT, T0);
    bind(&mut r, &b, B_AT, T0);
    let packet = relayed(b.id(), &[0; 1000]);
    let burst = MIN_BURST_BYTES / packet.len() as u64;
    for _ in 0..burst {
        assert!(matches!(
            handle(&mut r, A_AT, &packet, T0),
            Action::Forward { .. }
        ));
    }
    assert_eq!(
        handle(&mut r, A_AT, &packet, T0),
        Action::Drop(DropReason::Rate)
    );
    // The other direction has its own budget.
    assert!(matches!(
        handle(&mut r, B_AT, &relayed(a.id(), &[0; 1000]), T0),
        Action::Forward { .. }
    ));
    // 10 ms refill 1,250 bytes: one more packet.
    let later = T0 + ms(10);
    assert!(matches!(
        handle(&mut r, A_AT, &packet, later),
        Action::Forward { .. }
    ));
    assert_eq!(
        handle(&mut r, A_AT, &packet, later),
        Action::Drop(DropReason::Rate)
    );
    assert_eq!(r.relayed("a", "b").0, burst + 1);
    assert_eq!(r.dropped(DropReason::Rate), 2);
}

#[test]
fn a_member_over_its_quota_is_cut_until_the_hour_is_over() {
    let config = controller_config::Relay {
        member_mib_per_hour: 1,
        ..Default::default()
    };
    let (mut r, a, b) = relay_with(Limits::from_config(&config));
    bind(&mut r, &a, A_AT, T0);
    bind(&mut r, &b, B_AT, T0);
    let packet = relayed(b.id(), &[0; 1012]);
    assert_eq!(packet.len(), 1024);
    let mut now = T0;
    for _ in 0..1024 {
        now += ms(1);
        assert!(matches!(
            handle(&mut r, A_AT, &packet, now),
            Action::Forward { .. }
        ));
    }
    assert_eq!(
        handle(&mut r, A_AT, &packet, now + ms(1)),
        Action::Drop(DropReason::Quota)
    );
    // An hour after the window began, with the bindings kept up by probes.
    let next_hour = T0 + limit::QUOTA_WINDOW + ms(1);
    bind(&mut r, &a, A_AT, next_hour);
    bind(&mut r, &b, B_AT, next_hour);
    assert!(matches!(
        handle(&mut r, A_AT, &packet, next_hour),
        Action::Forward { .. }
    ));
    assert_eq!(r.dropped(DropReason::Quota), 1);
}

#[test]
fn a_revoked_member_loses_its_binding_at_once() {
    let (mut r, a, b) = relay();
    bind(&mut r, &a, A_AT, T0);
    bind(&mut r, &b, B_AT, T0);
    r.take_changes();
    // b is revoked: the next member list leaves it out.
    r.set_members([a.member()], T0);
    assert_eq!(r.take_changes(), [("b".to_string(), None)]);
    assert_eq!(r.bound_at(addr(B_AT)), None);
    let packet = [4u8, 0, 0, 0, 1];
    assert_eq!(
        handle(&mut r, B_AT, &relayed(a.id(), &packet), T0),
        Action::Drop(DropReason::NotAMember)
    );
    assert_eq!(
        handle(&mut r, A_AT, &relayed(b.id(), &packet), T0),
        Action::Drop(DropReason::UnknownDestination)
    );
    assert_eq!(
        handle(&mut r, B_AT, &b.probe(T0 + ms(1)), T0 + ms(1)),
        Action::Drop(DropReason::NotAMember)
    );
    // a kept its binding (and budgets) through the change.
    assert_eq!(r.binding("a", T0), Some(addr(A_AT)));
    // Re-keyed under the same name: a new member, unbound.
    let rekeyed = Agent::new("a", 3);
    r.set_members([rekeyed.member()], T0);
    assert_eq!(r.take_changes(), [("a".to_string(), None)]);
    assert_eq!(r.binding("a", T0), None);
}

#[test]
fn bindings_expire_without_probes() {
    let (mut r, a, b) = relay();
    bind(&mut r, &a, A_AT, T0);
    bind(&mut r, &b, B_AT, T0);
    r.take_changes();
    let packet = relayed(b.id(), &[4, 0, 0, 0, 1]);
    let almost = T0 + BINDING_LIFETIME - ms(1);
    // a keeps probing; b does not.
    bind(&mut r, &a, A_AT, almost);
    r.tick(almost);
    assert!(r.take_changes().is_empty());
    assert!(matches!(
        handle(&mut r, A_AT, &packet, almost),
        Action::Forward { .. }
    ));
    let gone = T0 + BINDING_LIFETIME;
    // Before the sweep runs, an expired binding is already no destination.
    assert_eq!(
        handle(&mut r, A_AT, &packet, gone),
        Action::Drop(DropReason::UnknownDestination)
    );
    r.tick(gone);
    assert_eq!(r.take_changes(), [("b".to_string(), None)]);
    assert_eq!(r.status(1, gone).bound.len(), 1);
    // b comes back: bound again, published again.
    bind(&mut r, &b, B_AT, gone + ms(1));
    assert_eq!(r.take_changes(), [("b".to_string(), Some(addr(B_AT)))]);
}

#[test]
fn an_address_holds_one_binding() {
    let (mut r, a, b) = relay();
    bind(&mut r, &a, A_AT, T0);
    r.take_changes();
    // b probes from a's address (a's NAT gave its port to b): a is no longer bound there.
    bind(&mut r, &b, A_AT, T0 + ms(1));
    assert_eq!(
        r.take_changes(),
        [("a".to_string(), None), ("b".to_string(), Some(addr(A_AT)))]
    );
    assert_eq!(r.bound_at(addr(A_AT)), Some("b"));
    assert_eq!(r.binding("a", T0 + ms(1)), None);
}

#[test]
fn of_members_whose_peer_ids_clash_only_the_newer_is_left_out() {
    let a = Agent::new("a", 1);
    let twin = Agent::new("twin", 2);
    let b = Agent::new("b", 3);
    // Real ids clash after 2^64 work; here twin's id is made a's.
    let ids = |key: &WireguardPublicKey| {
        if *key == twin.wireguard {
            a.id()
        } else {
            disco::peer_id(key.as_bytes())
        }
    };
    // a holds the id; twin arrives (given first, even): twin is left out, a keeps its binding.
    let mut r = Relay::new(controller(), limits(), T0);
    assert!(
        r.set_members_with([a.member(), b.member()], T0, ids)
            .is_empty()
    );
    bind(&mut r, &a, A_AT, T0);
    bind(&mut r, &b, B_AT, T0);
    r.take_changes();
    assert_eq!(
        r.set_members_with([twin.member(), a.member(), b.member()], T0, ids),
        ["twin"]
    );
    assert!(r.take_changes().is_empty());
    assert_eq!(r.binding("a", T0), Some(addr(A_AT)));
    bind(&mut r, &a, A_AT, T0 + ms(1));
    assert_eq!(
        handle(&mut r, STRANGER, &twin.probe(T0 + ms(2)), T0 + ms(2)),
        Action::Drop(DropReason::NotAMember)
    );
    // Packets for the id still reach a.
    assert_eq!(
        handle(&mut r, B_AT, &relayed(a.id(), &[4, 0, 0, 0, 1]), T0 + ms(2)),
        Action::Forward { to: addr(A_AT) }
    );
    // Nobody holds the id yet (after a restart): the first given, the oldest, keeps it.
    let mut r = Relay::new(controller(), limits(), T0);
    assert_eq!(
        r.set_members_with([a.member(), twin.member()], T0, ids),
        ["twin"]
    );
    bind(&mut r, &a, A_AT, T0);
    let mut r = Relay::new(controller(), limits(), T0);
    assert_eq!(
        r.set_members_with([twin.member(), a.member()], T0, ids),
        ["a"]
    );
    bind(&mut r, &twin, B_AT, T0);
}

#[test]
fn a_mapped_candidate_moves_at_most_once_per_interval() {
    let (mut r, a, b) = relay();
    let ports = ["198.18.1.1:40001", "198.18.1.1:40002"];
    // The first binding is published at once.
    bind(&mut r, &a, ports[0], T0);
    assert_eq!(r.take_changes(), [("a".to_string(), Some(addr(ports[0])))]);
    // a probes from alternating ports, 4 times a second (within its probe budget), for 25 s:
    // the binding follows each probe at once (the relay forwards to where the member is), the
    // published candidate moves at most once per MAPPED_INTERVAL.
    bind(&mut r, &b, B_AT, T0);
    r.take_changes();
    let mut published = Vec::new();
    for i in 1..=100u64 {
        let now = T0 + ms(i * 250);
        let from = ports[(i % 2) as usize];
        let action = handle(&mut r, from, &a.probe(now), now);
        assert!(
            matches!(action, Action::Reply { rebound: true, .. }),
            "{action:?}"
        );
        assert_eq!(
            handle(&mut r, B_AT, &relayed(a.id(), &[4, 0, 0, 0, 1]), now),
            Action::Forward { to: addr(from) }
        );
        if i % 4 == 0 {
            r.tick(now);
        }
        published.extend(r.take_changes().into_iter().map(|c| (now, c)));
    }
    // The first move comes at once (nobody has moved yet), then one per 10 s, with the binding
    // of the moment (at 10.25 s it was where the published candidate was).
    assert_eq!(
        published,
        [
            (T0 + ms(250), ("a".to_string(), Some(addr(ports[1])))),
            (T0 + ms(10_500), ("a".to_string(), Some(addr(ports[0])))),
            (T0 + ms(20_750), ("a".to_string(), Some(addr(ports[1])))),
        ]
    );
    // A move that waits is published later without another probe, by the tick.
    let last = T0 + ms(100 * 250);
    let moved = "198.18.1.1:40003";
    bind(&mut r, &a, moved, last + ms(1));
    assert!(r.take_changes().is_empty());
    r.tick(T0 + ms(30_749));
    assert!(r.take_changes().is_empty());
    r.tick(T0 + ms(30_750));
    assert_eq!(r.take_changes(), [("a".to_string(), Some(addr(moved)))]);
    // The end of a binding is published at once, whatever the interval.
    bind(&mut r, &a, ports[0], T0 + ms(30_800));
    assert!(r.take_changes().is_empty(), "the move waits");
    r.set_members([b.member()], T0 + ms(30_900));
    assert_eq!(r.take_changes(), [("a".to_string(), None)]);
}

#[test]
fn a_step_of_the_wall_clock_ends_no_binding_and_resets_no_budget() {
    let config = controller_config::Relay {
        member_mib_per_hour: 1,
        ..Default::default()
    };
    let (mut r, a, b) = relay_with(Limits::from_config(&config));
    // The monotonic clock starts anywhere: here at 5 s.
    let mono = Duration::from_secs(5);
    let now = |m: Duration, unix: Duration| Now { mono: m, unix };
    r.set_members([a.member(), b.member()], mono);
    for (agent, at) in [(&a, A_AT), (&b, B_AT)] {
        assert!(matches!(
            handle_at(&mut r, at, &agent.probe(T0), now(mono, T0)),
            Action::Reply { .. }
        ));
    }
    r.take_changes();
    // a spends its hour's quota.
    let packet = relayed(b.id(), &[0; 1012]);
    for i in 1..=1024 {
        let action = handle_at(&mut r, A_AT, &packet, now(mono + ms(i), T0 + ms(i)));
        assert!(matches!(action, Action::Forward { .. }), "{action:?}");
    }
    let mono = mono + Duration::from_secs(2);
    // The wall clock steps forward two hours, then back two hours, while a second passes.
    for unix in [
        T0 + Duration::from_secs(7200),
        T0 - Duration::from_secs(7200),
    ] {
        let t = now(mono, unix);
        r.tick(t.mono);
        assert!(r.take_changes().is_empty(), "bindings ended");
        assert_eq!(r.binding("a", t.mono), Some(addr(A_AT)));
        assert_eq!(
            handle_at(&mut r, A_AT, &packet, t),
            Action::Drop(DropReason::Quota),
            "the quota was reset"
        );
    }
    // Probes are judged by the wall clock: one signed by a clock that did not step is out of
    // the window of ours that did, and moves nothing.
    let unix = T0 + Duration::from_secs(7200);
    assert_eq!(
        handle_at(&mut r, B_AT, &b.probe(T0 + ms(5000)), now(mono, unix)),
        Action::Drop(DropReason::BadProbe)
    );
    // The binding lives its 90 s of monotonic time, whatever the wall clock says.
    let almost = Duration::from_secs(5) + BINDING_LIFETIME - ms(1);
    r.tick(almost);
    assert!(r.take_changes().is_empty());
    r.tick(almost + ms(1));
    assert_eq!(r.take_changes().len(), 2);
}
