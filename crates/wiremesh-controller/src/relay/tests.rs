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

fn handle(r: &mut Relay, from: &str, datagram: &[u8], now: Duration) -> Action {
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
    let action = r.handle(addr(A_AT), &mut datagram, &mut out, T0);
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
    let (mut r, a, _) = relay();
    // Forged probes in a member's name from one address: past the source's burst they are
    // dropped as a flood, which costs no signature check.
    let n = PROBE_SOURCE_BURST as u64 + 10;
    for i in 0..n {
        handle(&mut r, STRANGER, &a.forged_probe(T0 + ms(i)), T0);
    }
    assert_eq!(r.dropped(DropReason::BadProbe), PROBE_SOURCE_BURST as u64);
    assert_eq!(r.dropped(DropReason::ProbeFlood), 10);
    // Another source still gets its probes answered.
    bind(&mut r, &a, A_AT, T0);
    // From many sources at once, the global budget holds (a small one: signature checks are
    // slow in a debug build).
    let (mut r, a, _) = relay_with(Limits {
        probes_global: 100.0,
        ..limits()
    });
    assert_eq!(limits().probes_global, PROBES_GLOBAL);
    let mut answered = 0;
    for i in 0..600 {
        let from = SocketAddr::from(([198, 18, (i >> 8) as u8, i as u8], 9));
        if handle(&mut r, &from.to_string(), &a.forged_probe(T0), T0)
            == Action::Drop(DropReason::BadProbe)
        {
            answered += 1;
        }
    }
    assert_eq!(answered, 100);
    assert_eq!(r.dropped(DropReason::ProbeFlood), 500);
    // A second later the budget is back.
    let later = T0 + Duration::from_secs(1);
    bind(&mut r, &a, A_AT, later);
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
        r.handle(addr(A_AT), &mut d, &mut out, T0),
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
    r.expire(almost);
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
    r.expire(gone);
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
fn members_whose_peer_ids_clash_are_left_out() {
    let a = Agent::new("a", 1);
    let mut twin = Agent::new("twin", 2);
    let mut key = *a.wireguard.as_bytes();
    key[31] ^= 1;
    twin.wireguard = WireguardPublicKey::from_bytes(key);
    let mut r = Relay::new(controller(), limits(), T0);
    assert_eq!(
        r.set_members([a.member(), twin.member()], T0),
        ["a", "twin"]
    );
    assert_eq!(
        handle(&mut r, A_AT, &a.probe(T0), T0),
        Action::Drop(DropReason::NotAMember)
    );
}
