//! The controller's state machine driven with messages and time, against the in-memory store and
//! against SQLite in a temporary directory.

mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use common::*;
use proptest::prelude::*;
use wiremesh_controller::store::STORE_FILE;
use wiremesh_controller::{
    Controller, MIN_REPORT_INTERVAL, MemoryStore, NETMAP_LIFETIME, Output, PUNCH_INTERVAL,
    RENEW_BEFORE, SqliteStore,
};
use wiremesh_core::keys::{NetworkSecret, NodeSecret, WireguardSecret};
use wiremesh_core::messages::{EndpointReport, ErrorCode, Hello, Message, Punch};
use wiremesh_core::netmap::{Candidate, CandidateKind, Flags, Netmap};
use wiremesh_core::ticket::JoinTicket;

fn ipv4(text: &str) -> Option<Ipv4Addr> {
    Some(text.parse().unwrap())
}

#[test]
fn static_and_dynamic_members_enroll_and_the_netmap_verifies() {
    let mut c = open(MemoryStore::new(), config(None), T0);
    assert_eq!(c.epoch().unwrap().epoch, 1);
    let (_, addresses, map) = accepted(enroll(&mut c, &machine("server", 1), T0));
    assert_eq!(addresses.ipv4, ipv4("100.77.0.1"));
    assert_eq!(map.epoch, 1, "a static member's enrollment changes nothing");
    let (_, addresses, map) = accepted(enroll(&mut c, &machine("laptop", 2), T0 + 1));
    // The lowest free address: .0 is the network address and .1 is the server's.
    assert_eq!(addresses.ipv4, ipv4("100.77.0.2"));
    assert_eq!(map.epoch, 2);
    assert_eq!(map.issued_at, T0 + 1);
    assert_eq!(map.expires_at, T0 + 1 + NETMAP_LIFETIME);
    let laptop = map.member("laptop").unwrap();
    assert_eq!(laptop.addresses.ipv4, ipv4("100.77.0.2"));
    assert!(laptop.flags.contains(Flags::DYNAMIC_IPV4));
    assert_eq!(map.member("desktop").unwrap().addresses.ipv4, None);
    let (_, addresses, _) = accepted(enroll(&mut c, &machine("desktop", 3), T0 + 2));
    assert_eq!(addresses.ipv4, ipv4("100.77.0.3"));
}

#[test]
fn a_batch_of_enrollments_shares_one_epoch_and_is_answered_after_its_commit() {
    let mut c = open(MemoryStore::new(), config(None), T0);
    let (server, _, _) = accepted(enroll(&mut c, &machine("server", 1), T0));
    let before = c.epoch().unwrap().epoch;
    let agents = [machine("laptop", 2), machine("desktop", 3)];
    let greeted: Vec<_> = agents.iter().map(|m| greet(&mut c, m, T0)).collect();
    c.begin_batch();
    for (m, (id, nonce)) in agents.iter().zip(&greeted) {
        let out = c.receive(*id, &enroll_request(m, nonce).encode(), T0);
        assert!(out.is_empty(), "answered before the batch ended: {out:?}");
    }
    // The second lease saw the first; both are committed together with the netmap, and only
    // then answered.
    assert_eq!(c.state().leases.len(), 2);
    assert!(c.store().state().leases.is_empty());
    let commits = c.store().commits();
    let out = c.end_batch(T0);
    assert_eq!(c.store().commits(), commits + 1, "one commit for the batch");
    assert_eq!(c.store().state().leases.len(), 2);
    assert_eq!(c.store().state().epoch.as_ref().unwrap().epoch, before + 1);
    assert_eq!(
        c.epoch().unwrap().epoch,
        before + 1,
        "one epoch for the batch"
    );
    for (m, (id, _)) in agents.iter().zip(&greeted) {
        let (_, addresses, map) = accepted(answer(&out, *id, T0));
        assert_eq!(map.epoch, before + 1);
        assert_eq!(map.member(&m.name).unwrap().addresses, addresses);
        assert!(!out.contains(&Output::Push(*id)), "answered and pushed");
    }
    let map = pushed(&c, &out, server);
    assert!(
        map.content()
            .member("desktop")
            .unwrap()
            .addresses
            .ipv4
            .is_some()
    );
    assert!(c.end_batch(T0).is_empty(), "no batch is open");
}

#[test]
fn a_batch_whose_commit_fails_promises_nothing() {
    let mut c = open(MemoryStore::new(), config(None), T0);
    let before = c.epoch().unwrap().epoch;
    let laptop = machine("laptop", 2);
    let (id, nonce) = greet(&mut c, &laptop, T0);
    c.begin_batch();
    assert!(
        c.receive(id, &enroll_request(&laptop, &nonce).encode(), T0)
            .is_empty()
    );
    c.store_mut().set_failing(true);
    let out = c.end_batch(T0);
    assert!(closed(&out, id), "{out:?}");
    assert!(matches!(
        messages_to(&out, id).as_slice(),
        [Message::Error(e)] if e.code == ErrorCode::INTERNAL
    ));
    assert!(c.state().leases.is_empty(), "the lease was not kept");
    assert_eq!(c.epoch().unwrap().epoch, before);
    c.store_mut().set_failing(false);
    let (_, addresses, _) = accepted(enroll(&mut c, &laptop, T0 + 1));
    assert_eq!(addresses.ipv4, ipv4("100.77.0.2"));
}

#[test]
fn keepalives_move_the_last_contact_of_a_quiet_agent() {
    let mut c = open(MemoryStore::new(), config(None), T0);
    let (id, _, _) = accepted(enroll(&mut c, &machine("laptop", 2), T0));
    let last_contact = |c: &Controller<MemoryStore>| {
        let status = c.status(T0 + 100);
        let laptop = status.members.iter().find(|m| m.name == "laptop").unwrap();
        laptop.connection.as_ref().unwrap().last_contact
    };
    assert_eq!(last_contact(&c), T0);
    c.alive(id, T0 + 30);
    assert_eq!(last_contact(&c), T0 + 30);
    // A late report never moves it back.
    c.alive(id, T0 + 10);
    assert_eq!(last_contact(&c), T0 + 30);
}

#[test]
fn without_dynamic_leases_members_keep_only_their_static_addresses() {
    let mut cfg = config(None);
    cfg.dynamic_ip.enable = false;
    let mut c = open(MemoryStore::new(), cfg, T0);
    let (_, laptop, _) = accepted(enroll(&mut c, &machine("laptop", 2), T0));
    assert_eq!(laptop.ipv4, None);
    let (_, server, _) = accepted(enroll(&mut c, &machine("server", 1), T0));
    assert_eq!(server.ipv4, ipv4("100.77.0.1"));
    assert!(c.state().leases.is_empty());
    assert_eq!(c.epoch().unwrap().epoch, 1, "nothing was decided");
    assert_eq!(c.status(T0).pool, None);
}

#[test]
fn every_change_is_pushed_to_enrolled_agents() {
    let mut c = open(MemoryStore::new(), config(None), T0);
    let (server, _, _) = accepted(enroll(&mut c, &machine("server", 1), T0));
    let (laptop_session, nonce) = greet(&mut c, &machine("laptop", 2), T0);
    let out = c.receive(
        laptop_session,
        &enroll_request(&machine("laptop", 2), &nonce).encode(),
        T0,
    );
    let map = pushed(&c, &out, server);
    let content = map
        .verify(&network_key().public_key(), Some(1), T0)
        .unwrap();
    assert_eq!(
        content.member("laptop").unwrap().addresses.ipv4,
        ipv4("100.77.0.2")
    );
    // The enrolling agent got the netmap in its answer, not as a second push.
    assert_eq!(messages_to(&out, laptop_session).len(), 1);
    assert!(!out.contains(&Output::Push(laptop_session)));

    let report = Message::EndpointReport(EndpointReport {
        endpoints: vec!["198.18.5.5:51820".into()],
    });
    let out = c.receive(laptop_session, &report.encode(), T0 + 5);
    let map = pushed(&c, &out, server);
    assert_eq!(map.content().epoch, 3);
    // Reported addresses are Local candidates; the endpoints stay the configured ones.
    let laptop = map.content().member("laptop").unwrap();
    assert_eq!(laptop.endpoints, ["198.18.0.3:51820"]);
    assert_eq!(
        laptop.candidates,
        [Candidate {
            addr: "198.18.5.5:51820".parse().unwrap(),
            kind: CandidateKind::Local
        }]
    );
    // The same report again is no change.
    let later = T0 + 5 + MIN_REPORT_INTERVAL;
    assert!(
        c.receive(laptop_session, &report.encode(), later)
            .is_empty()
    );
    // Reports faster than that cost the session.
    let out = c.receive(laptop_session, &report.encode(), later + 1);
    match answer(&out, laptop_session, later) {
        Answer::Error(ErrorCode::BAD_MESSAGE, message) => {
            assert_eq!(message, "endpoint reports may come at most every 10 s")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn leases_are_sticky_across_restarts() {
    let mut c = open(MemoryStore::new(), config(None), T0);
    accepted(enroll(&mut c, &machine("desktop", 3), T0));
    accepted(enroll(&mut c, &machine("laptop", 2), T0));
    let epoch = c.epoch().unwrap().epoch;
    let store = c.store().clone();
    let mut c = open(store, config(None), T0 + 100);
    assert_eq!(c.epoch().unwrap().epoch, epoch, "nothing changed");
    let (_, laptop, _) = accepted(enroll(&mut c, &machine("laptop", 2), T0 + 100));
    let (_, desktop, _) = accepted(enroll(&mut c, &machine("desktop", 3), T0 + 100));
    assert_eq!(desktop.ipv4, ipv4("100.77.0.2"));
    assert_eq!(laptop.ipv4, ipv4("100.77.0.3"));
}

#[test]
fn an_exhausted_pool_refuses_only_that_member() {
    // A /31 range inside the network: two addresses.
    let mut cfg = config(Some("100.77.1.0/31"));
    cfg.members.push(member_config(&machine("tv", 4), None, 4));
    let mut c = open(MemoryStore::new(), cfg, T0);
    accepted(enroll(&mut c, &machine("laptop", 2), T0));
    accepted(enroll(&mut c, &machine("desktop", 3), T0));
    let (id, nonce) = greet(&mut c, &machine("tv", 4), T0);
    let out = c.receive(id, &enroll_request(&machine("tv", 4), &nonce).encode(), T0);
    let Answer::Refused(reason) = answer(&out, id, T0) else {
        panic!("tv was not refused: {out:?}");
    };
    assert_eq!(
        reason,
        "no IPv4 address left for \"tv\": all 2 addresses of the dynamic pool 100.77.1.0/31 are leased; widen dynamicIp.range or revoke members that are gone"
    );
    assert!(out.contains(&Output::Warn(reason)));
    // The others are unaffected, static members still enroll.
    accepted(enroll(&mut c, &machine("server", 1), T0));
    accepted(enroll(&mut c, &machine("laptop", 2), T0));
}

#[test]
fn wrong_version_network_key_or_proof_get_a_clear_error_and_a_close() {
    let mut c = open(MemoryStore::new(), config(None), T0);
    let laptop = machine("laptop", 2);
    let cases: Vec<(Message, ErrorCode, &str)> = vec![
        (
            Message::Hello(Hello {
                protocol_version: 2,
                ..hello_of(&laptop)
            }),
            ErrorCode::UNSUPPORTED_VERSION,
            "this controller speaks control protocol version 1, the agent version 2; update the older side",
        ),
        (
            Message::Hello(Hello {
                instance: "other-vpn".into(),
                ..hello_of(&laptop)
            }),
            ErrorCode::WRONG_NETWORK,
            "wrong network: this controller serves instance \"my-vpn\", not \"other-vpn\"",
        ),
        (
            Message::Hello(Hello {
                node_public_key: machine("desktop", 3).node.public_key(),
                ..hello_of(&laptop)
            }),
            ErrorCode::BAD_PROOF,
            "the hello names another node key than the TLS certificate",
        ),
        (
            enroll_request(&laptop, &[0; 32]),
            ErrorCode::BAD_MESSAGE,
            "expected a Hello, got an EnrollRequest",
        ),
    ];
    for (message, code, text) in cases {
        let (id, _) = c.connect(laptop.node.public_key(), "198.18.0.9:1".into(), [7; 32], T0);
        let out = c.receive(id, &message.encode(), T0);
        match answer(&out, id, T0) {
            Answer::Error(got, message) => {
                assert_eq!((got, message.as_str()), (code, text));
            }
            other => panic!("{other:?}"),
        }
        assert!(!c.is_enrolled(id));
    }
    // Garbage bytes.
    let (id, _) = c.connect(laptop.node.public_key(), "198.18.0.9:1".into(), [7; 32], T0);
    let out = c.receive(id, &[0xff, 0xff, 0xff], T0);
    assert!(matches!(
        answer(&out, id, T0),
        Answer::Error(ErrorCode::BAD_MESSAGE, _)
    ));
    // A proof over another nonce.
    let (id, _) = greet(&mut c, &laptop, T0);
    let out = c.receive(id, &enroll_request(&laptop, &[0; 32]).encode(), T0);
    assert!(matches!(
        answer(&out, id, T0),
        Answer::Error(ErrorCode::BAD_PROOF, _)
    ));
}

fn hello_of(m: &Machine) -> Hello {
    match hello(m) {
        Message::Hello(h) => h,
        _ => unreachable!(),
    }
}

#[test]
fn a_key_that_is_not_a_member_is_refused() {
    let mut c = open(MemoryStore::new(), config(None), T0);
    let stranger = machine("laptop", 77);
    match enroll(&mut c, &stranger, T0) {
        Answer::Error(ErrorCode::NOT_A_MEMBER, message) => assert_eq!(
            message,
            format!(
                "node key {} is not a member of instance \"my-vpn\"; ask the controller's admin for a join token (`wiremesh-controller token create --name NAME`) and start the agent with --join TOKEN",
                stranger.node.public_key()
            )
        ),
        other => panic!("{other:?}"),
    }
    // A member's key under another name.
    let renamed = Machine {
        name: "desktop".into(),
        ..machine("laptop", 2)
    };
    match enroll(&mut c, &renamed, T0) {
        Answer::Error(ErrorCode::NOT_A_MEMBER, message) => {
            assert!(message.contains("belongs to member \"laptop\", not \"desktop\""))
        }
        other => panic!("{other:?}"),
    }
    // The right node key with another WireGuard key.
    let rekeyed = Machine {
        wireguard: WireguardSecret::from_bytes([55; 32]),
        ..machine("laptop", 2)
    };
    assert!(matches!(enroll(&mut c, &rekeyed, T0), Answer::Refused(_)));
    assert!(c.state().leases.is_empty());
}

#[test]
fn join_tokens_are_single_use_and_expire() {
    let mut c = open(MemoryStore::new(), config(None), T0);
    let (token, expires) = c.create_token("phone", 3600, [5; 32], T0).unwrap();
    assert_eq!(expires, T0 + 3600);
    let ticket = JoinTicket::decode(&token).unwrap();
    assert!(ticket.token.starts_with("wmj1."));
    assert_eq!(
        (ticket.name.as_str(), ticket.instance.as_str()),
        ("phone", INSTANCE)
    );
    assert_eq!(ticket.network_public_key, network_key().public_key());
    let server = &ticket.controllers[0];
    assert_eq!(server.endpoint, "vpn.example.org:51821");
    assert_eq!(server.node_public_key, controller_identity().public_key());
    assert_eq!(c.status(T0).tokens.len(), 1);
    let phone = machine("phone", 40);
    let (id, addresses, map) = accepted(join(&mut c, &phone, &token, T0 + 10));
    assert!(c.is_enrolled(id));
    assert_eq!(addresses.ipv4, ipv4("100.77.0.2"));
    let entry = map.member("phone").unwrap();
    assert!(entry.flags.contains(Flags::OUTSIDE_INVENTORY));
    assert_eq!(entry.node_public_key, phone.node.public_key());

    let other = machine("phone", 41);
    match join(&mut c, &other, &token, T0 + 11) {
        Answer::Error(ErrorCode::BAD_TOKEN, message) => {
            assert!(message.starts_with("the join token was used already; ask the admin"))
        }
        other => panic!("{other:?}"),
    }
    // The joined agent comes back with its key alone, and keeps its lease.
    let (_, again, _) = accepted(enroll(&mut c, &phone, T0 + 20));
    assert_eq!(again.ipv4, ipv4("100.77.0.2"));

    let (late, _) = c.create_token("tv", 60, [6; 32], T0).unwrap();
    match join(&mut c, &machine("tv", 42), &late, T0 + 60) {
        Answer::Error(ErrorCode::BAD_TOKEN, message) => {
            assert!(
                message.starts_with("the join token expired 0 s ago"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    let (tv_token, _) = c.create_token("tv2", 60, [7; 32], T0).unwrap();
    match join(&mut c, &machine("tv", 43), &tv_token, T0) {
        Answer::Error(ErrorCode::BAD_TOKEN, message) => {
            assert_eq!(message, "this join token admits \"tv2\", not \"tv\"")
        }
        other => panic!("{other:?}"),
    }
    match join(&mut c, &machine("tv", 44), "not a token", T0) {
        Answer::Error(ErrorCode::BAD_TOKEN, message) => {
            assert!(
                message.starts_with("the join token is unknown"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    // A token whose name the inventory took meanwhile admits nobody.
    let (tv3, _) = c.create_token("tv3", 60, [10; 32], T0).unwrap();
    let mut cfg = config(None);
    cfg.members
        .push(member_config(&machine("tv3", 45), None, 45));
    c.reload(cfg, T0).unwrap();
    match join(&mut c, &machine("tv3", 46), &tv3, T0) {
        Answer::Error(ErrorCode::BAD_TOKEN, message) => {
            assert!(
                message.contains("a member of that name exists by now"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    let taken = c.create_token("laptop", 60, [8; 32], T0).unwrap_err();
    assert_eq!(
        taken.to_string(),
        "\"laptop\" is already an inventory member; pick another name"
    );
    assert!(c.create_token("x", 0, [9; 32], T0).is_err());
}

#[test]
fn expired_tokens_are_forgotten_on_the_next_tick_and_stay_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STORE_FILE);
    let mut c = open(SqliteStore::open(&path).unwrap(), config(None), T0);
    c.create_token("phone", 60, [5; 32], T0).unwrap();
    c.create_token("tv", 3600, [6; 32], T0).unwrap();
    let epoch = c.epoch().unwrap().epoch;
    assert!(c.tick(T0 + 59).unwrap().is_empty());
    assert_eq!(c.status(T0 + 59).tokens.len(), 2);
    assert!(c.tick(T0 + 60).unwrap().is_empty(), "no push for a token");
    let names = |c: &Controller<SqliteStore>| -> Vec<String> {
        c.status(T0 + 60)
            .tokens
            .iter()
            .map(|t| t.name.clone())
            .collect()
    };
    assert_eq!(names(&c), ["tv"]);
    assert_eq!(c.epoch().unwrap().epoch, epoch, "no new epoch for a token");
    drop(c);
    let c = open(SqliteStore::open(&path).unwrap(), config(None), T0 + 61);
    assert_eq!(names(&c), ["tv"]);
}

#[test]
fn revocation_closes_the_session_frees_the_lease_and_flags_the_member() {
    let mut c = open(MemoryStore::new(), config(None), T0);
    let (server, _, _) = accepted(enroll(&mut c, &machine("server", 1), T0));
    let (laptop, _, _) = accepted(enroll(&mut c, &machine("laptop", 2), T0));
    let before = c.epoch().unwrap().epoch;
    let out = c.revoke("laptop", T0 + 5).unwrap();
    assert!(closed(&out, laptop));
    assert!(matches!(
        messages_to(&out, laptop).as_slice(),
        [Message::Error(e)] if e.code == ErrorCode::REVOKED
    ));
    let map = pushed(&c, &out, server);
    assert_eq!(map.content().epoch, before + 1);
    let entry = map.content().member("laptop").unwrap();
    assert!(entry.flags.contains(Flags::REVOKED));
    assert_eq!(entry.addresses.ipv4, None);
    assert!(c.state().leases.is_empty());

    let (id, out) = c.connect(
        machine("laptop", 2).node.public_key(),
        "198.18.0.9:1".into(),
        [7; 32],
        T0 + 6,
    );
    assert!(matches!(
        answer(&out, id, T0 + 6),
        Answer::Error(ErrorCode::REVOKED, _)
    ));
    assert_eq!(
        c.revoke("laptop", T0).unwrap_err().to_string(),
        "\"laptop\" is already revoked"
    );
    assert_eq!(
        c.revoke("nobody", T0).unwrap_err().to_string(),
        "no member named \"nobody\"; `status` lists the members"
    );
    // The freed address goes to the next member.
    let (_, desktop, _) = accepted(enroll(&mut c, &machine("desktop", 3), T0 + 7));
    assert_eq!(desktop.ipv4, ipv4("100.77.0.2"));
}

#[test]
fn a_revoked_joined_agent_leaves_the_netmap() {
    let mut c = open(MemoryStore::new(), config(None), T0);
    let (token, _) = c.create_token("phone", 60, [5; 32], T0).unwrap();
    accepted(join(&mut c, &machine("phone", 40), &token, T0));
    c.revoke("phone", T0 + 1).unwrap();
    let map = Netmap::decode(&c.epoch().unwrap().netmap).unwrap();
    assert!(map.content().member("phone").is_none());
    assert!(matches!(
        enroll(&mut c, &machine("phone", 40), T0 + 2),
        Answer::Error(ErrorCode::REVOKED, _)
    ));
}

#[test]
fn devices_get_a_wg_quick_credential() {
    let mut c = open(MemoryStore::new(), config(None), T0);
    let secret = WireguardSecret::from_bytes([60; 32]);
    let node = NodeSecret::from_seed([61; 32]).public_key();
    let (text, _) = c.add_device("phone", &secret, node, T0).unwrap();
    assert!(text.contains(&format!("PrivateKey = {}", secret.to_base64().as_str())));
    assert!(
        text.contains("Address = 100.77.0.2/32, fd12:3456:789a:"),
        "{text}"
    );
    assert!(text.contains(&format!(
        "# server\n[Peer]\nPublicKey = {}\nAllowedIPs = 100.77.0.1/32, fd12:3456:789a::1/128\nEndpoint = 198.18.0.2:51820\nPersistentKeepalive = 25\n",
        machine("server", 1).wireguard.public_key()
    )), "{text}");
    let map = Netmap::decode(&c.epoch().unwrap().netmap).unwrap();
    let entry = map.content().member("phone").unwrap();
    assert_eq!(entry.wireguard_public_key, secret.public_key());
    assert!(entry.flags.contains(Flags::OUTSIDE_INVENTORY));
    let status = c.status(T0);
    let phone = status.members.iter().find(|m| m.name == "phone").unwrap();
    assert_eq!(phone.kind, "device");
    assert!(c.add_device("phone", &secret, node, T0).is_err());
}

#[test]
fn reload_adds_and_removes_members_in_the_next_epoch() {
    let mut c = open(MemoryStore::new(), config(None), T0);
    let (laptop, _, _) = accepted(enroll(&mut c, &machine("laptop", 2), T0));
    let (server, _, _) = accepted(enroll(&mut c, &machine("server", 1), T0));
    let epoch = c.epoch().unwrap().epoch;
    let mut next = config(None);
    next.members.retain(|m| m.name != "laptop");
    next.members.push(member_config(&machine("tv", 4), None, 4));
    let (diff, out) = c.reload(next.clone(), T0 + 10).unwrap();
    assert_eq!(diff.added, ["tv"]);
    assert_eq!(diff.removed, ["laptop"]);
    assert!(diff.changed.is_empty());
    assert!(closed(&out, laptop));
    assert!(!closed(&out, server));
    let map = Netmap::decode(&c.epoch().unwrap().netmap).unwrap();
    assert_eq!(map.content().epoch, epoch + 1);
    let names: Vec<&str> = map
        .content()
        .members
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(names, ["desktop", "server", "tv"]);
    assert!(
        c.state().leases.is_empty(),
        "the removed member's lease is free"
    );
    // The same configuration again is no change.
    let (diff, out) = c.reload(next.clone(), T0 + 20).unwrap();
    assert!(diff.added.is_empty() && diff.removed.is_empty());
    assert!(out.is_empty());
    let mut other = next;
    other.instance = "other".into();
    assert!(
        c.reload(other, T0)
            .unwrap_err()
            .to_string()
            .contains("\"instance\"")
    );
}

#[test]
fn the_netmap_is_renewed_before_it_expires() {
    let mut c = open(MemoryStore::new(), config(None), T0);
    let (server, _, _) = accepted(enroll(&mut c, &machine("server", 1), T0));
    let first = c.epoch().unwrap().clone();
    assert!(
        c.tick(first.expires_at - RENEW_BEFORE - 1)
            .unwrap()
            .is_empty()
    );
    let now = first.expires_at - RENEW_BEFORE;
    let out = c.tick(now).unwrap();
    let map = pushed(&c, &out, server);
    let content = map
        .verify(&network_key().public_key(), Some(first.epoch), now)
        .unwrap();
    assert_eq!(content.expires_at, now + NETMAP_LIFETIME);
    // A controller started after a long downtime issues a fresh map at once.
    let store = c.store().clone();
    let c = open(store, config(None), first.expires_at + 10);
    assert_eq!(c.epoch().unwrap().issued_at, first.expires_at + 10);
}

#[test]
fn nothing_is_acknowledged_that_the_store_did_not_commit() {
    let mut c = open(MemoryStore::new(), config(None), T0);
    let commits = c.store().commits();
    c.store_mut().set_failing(true);
    match enroll(&mut c, &machine("laptop", 2), T0) {
        Answer::Error(ErrorCode::INTERNAL, message) => assert_eq!(
            message,
            "the controller could not record the enrollment; try again later"
        ),
        other => panic!("{other:?}"),
    }
    assert!(c.state().leases.is_empty());
    assert!(c.create_token("phone", 60, [1; 32], T0).is_err());
    assert!(c.state().tokens.is_empty());
    assert_eq!(c.store().commits(), commits);
    c.store_mut().set_failing(false);
    let (_, addresses, _) = accepted(enroll(&mut c, &machine("laptop", 2), T0));
    assert_eq!(addresses.ipv4, ipv4("100.77.0.2"));
}

#[test]
fn a_wrong_network_key_is_refused_at_open() {
    let e = Controller::open(
        MemoryStore::new(),
        config(None),
        NetworkSecret::from_seed([1; 32]),
        controller_identity().public_key(),
        T0,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("wrong key file or wrong configuration"),
        "{e}"
    );
}

/// A lease held in the store for a member that is gone from the inventory is released at start.
#[test]
fn opening_releases_leases_the_inventory_no_longer_allows() {
    let mut c = open(MemoryStore::new(), config(None), T0);
    accepted(enroll(&mut c, &machine("laptop", 2), T0));
    accepted(enroll(&mut c, &machine("desktop", 3), T0));
    let mut next = config(None);
    next.members.retain(|m| m.name != "laptop");
    let c = open(c.store().clone(), next, T0 + 1);
    assert_eq!(
        c.state().leases,
        BTreeMap::from([("desktop".to_string(), "100.77.0.3".parse().unwrap())])
    );
}

#[derive(Debug, Clone)]
enum Step {
    Enroll(u8),
    Revoke(u8),
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0u8..12).prop_map(Step::Enroll),
        1 => (0u8..12).prop_map(Step::Revoke),
        1 => Just(Step::Restart),
    ]
}

/// Twelve leased members share a pool of eight addresses.
fn small_pool() -> wiremesh_core::controller_config::ControllerFile {
    let mut cfg = config(Some("100.77.2.0/29"));
    cfg.members = (0..12u8)
        .map(|i| {
            member_config(
                &machine(&format!("m{i:02}"), i + 10),
                None,
                u16::from(i) + 10,
            )
        })
        .collect();
    cfg
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever the order of enrollments, revocations and restarts: no address is leased twice, a
    /// member keeps its address until revoked, and epochs only grow.
    #[test]
    fn leases_stay_unique_and_sticky_on_sqlite(steps in proptest::collection::vec(step(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STORE_FILE);
        let mut c = open(SqliteStore::open(&path).unwrap(), small_pool(), T0);
        let mut held: BTreeMap<String, Ipv4Addr> = BTreeMap::new();
        let mut last_epoch = c.epoch().unwrap().epoch;
        for (t, s) in steps.into_iter().enumerate() {
            let now = T0 + t as u64;
            match s {
                Step::Enroll(i) => {
                    let m = machine(&format!("m{i:02}"), i + 10);
                    match enroll(&mut c, &m, now) {
                        Answer::Accepted { addresses, .. } => {
                            let a = addresses.ipv4.unwrap();
                            if let Some(before) = held.insert(m.name.clone(), a) {
                                prop_assert_eq!(before, a, "{} moved", m.name);
                            }
                        }
                        Answer::Refused(reason) => prop_assert!(reason.contains("pool"), "{}", reason),
                        Answer::Error(code, _) => prop_assert_eq!(code, ErrorCode::REVOKED),
                    }
                }
                Step::Revoke(i) => {
                    let name = format!("m{i:02}");
                    if c.revoke(&name, now).is_ok() {
                        held.remove(&name);
                    }
                }
                Step::Restart => {
                    drop(c);
                    c = open(SqliteStore::open(&path).unwrap(), small_pool(), now);
                }
            }
            let leases = &c.state().leases;
            let distinct: std::collections::BTreeSet<_> = leases.values().collect();
            prop_assert_eq!(distinct.len(), leases.len());
            prop_assert_eq!(leases, &held);
            let epoch = c.epoch().unwrap().epoch;
            prop_assert!(epoch >= last_epoch);
            last_epoch = epoch;
        }
    }
}

fn report(endpoints: &[&str]) -> Vec<u8> {
    Message::EndpointReport(EndpointReport {
        endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
    })
    .encode()
}

fn candidates(c: &Controller<MemoryStore>, name: &str) -> Vec<(String, CandidateKind)> {
    let map = Netmap::decode(&c.epoch().unwrap().netmap).unwrap();
    map.content()
        .member(name)
        .unwrap()
        .candidates
        .iter()
        .map(|c| (c.addr.to_string(), c.kind))
        .collect()
}

#[test]
fn an_endpoint_report_with_an_entry_that_is_no_address_is_refused() {
    let mut c = open(MemoryStore::new(), config(None), T0);
    let (laptop, _, _) = accepted(enroll(&mut c, &machine("laptop", 2), T0));
    let epoch = c.epoch().unwrap().epoch;
    let out = c.receive(
        laptop,
        &report(&["198.18.5.5:51820", "laptop.lan:51820"]),
        T0,
    );
    match answer(&out, laptop, T0) {
        Answer::Error(ErrorCode::BAD_MESSAGE, message) => assert_eq!(
            message,
            "endpoint report: \"laptop.lan:51820\" is not an IP address and port (`198.18.0.1:51820`, `[fd00::1]:51820`)"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.epoch().unwrap().epoch, epoch, "nothing was published");
}

#[test]
fn relay_bindings_become_mapped_candidates_first_and_go_when_they_end() {
    let mut c = open(MemoryStore::new(), config(None), T0);
    let (laptop, _, _) = accepted(enroll(&mut c, &machine("laptop", 2), T0));
    c.receive(
        laptop,
        &report(&["[fd00:5::5]:51820", "198.18.5.5:51820"]),
        T0,
    );
    let epoch = c.epoch().unwrap().epoch;
    let mapped: std::net::SocketAddr = "198.18.77.1:40000".parse().unwrap();
    let out = c.set_mapped(vec![("laptop".into(), Some(mapped))], T0 + 1);
    assert_eq!(c.epoch().unwrap().epoch, epoch + 1);
    assert!(out.contains(&Output::Push(laptop)));
    assert_eq!(
        candidates(&c, "laptop"),
        [
            ("198.18.77.1:40000".to_string(), CandidateKind::Mapped),
            ("[fd00:5::5]:51820".to_string(), CandidateKind::Local),
            ("198.18.5.5:51820".to_string(), CandidateKind::Local),
        ]
    );
    assert_eq!(c.mapped("laptop"), Some(mapped));
    // The same binding again is no new epoch.
    assert!(
        c.set_mapped(vec![("laptop".into(), Some(mapped))], T0 + 2)
            .is_empty()
    );
    assert_eq!(c.epoch().unwrap().epoch, epoch + 1);
    // Within a batch (as in the daemon), the change makes the batch's epoch.
    c.begin_batch();
    assert!(
        c.set_mapped(vec![("laptop".into(), None)], T0 + 3)
            .is_empty()
    );
    let out = c.end_batch(T0 + 3);
    assert!(out.contains(&Output::Push(laptop)), "{out:?}");
    assert_eq!(c.epoch().unwrap().epoch, epoch + 2);
    assert_eq!(candidates(&c, "laptop").len(), 2);
    // A batch where nothing changed issues nothing.
    c.begin_batch();
    c.set_mapped(vec![("laptop".into(), None)], T0 + 4);
    assert!(c.end_batch(T0 + 4).is_empty());
    assert_eq!(c.epoch().unwrap().epoch, epoch + 2);
}

#[test]
fn endpoint_reports_within_a_batch_make_a_new_epoch() {
    let mut c = open(MemoryStore::new(), config(None), T0);
    let (laptop, _, _) = accepted(enroll(&mut c, &machine("laptop", 2), T0));
    let epoch = c.epoch().unwrap().epoch;
    c.begin_batch();
    assert!(
        c.receive(laptop, &report(&["198.18.5.5:51820"]), T0 + 1)
            .is_empty()
    );
    let out = c.end_batch(T0 + 1);
    assert_eq!(c.epoch().unwrap().epoch, epoch + 1);
    assert!(out.contains(&Output::Push(laptop)));
}

#[test]
fn relay_members_are_the_netmap_without_revoked_ones_and_revoked_members_have_no_candidates() {
    let mut c = open(MemoryStore::new(), config(None), T0);
    let (laptop, _, _) = accepted(enroll(&mut c, &machine("laptop", 2), T0));
    c.receive(laptop, &report(&["198.18.5.5:51820"]), T0);
    c.set_mapped(
        vec![("laptop".into(), Some("198.18.77.1:40000".parse().unwrap()))],
        T0,
    );
    let names = |c: &Controller<MemoryStore>| {
        c.relay_members()
            .into_iter()
            .map(|m| m.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&c), ["desktop", "laptop", "server"]);
    assert_eq!(
        c.relay_members()[1].wireguard_public_key,
        machine("laptop", 2).wireguard.public_key()
    );
    c.revoke("laptop", T0 + 1).unwrap();
    assert_eq!(names(&c), ["desktop", "server"]);
    assert!(candidates(&c, "laptop").is_empty());
    assert_eq!(c.mapped("laptop"), None);
}

fn punch(peer: &str) -> Vec<u8> {
    Message::Punch(Punch { peer: peer.into() }).encode()
}

#[test]
fn a_punch_request_tells_both_members_at_once() {
    let mut c = open(MemoryStore::new(), config(None), T0);
    let (laptop, _, _) = accepted(enroll(&mut c, &machine("laptop", 2), T0));
    let (desktop, _, _) = accepted(enroll(&mut c, &machine("desktop", 3), T0));
    let out = c.receive(laptop, &punch("desktop"), T0 + 1);
    assert_eq!(
        out,
        [
            Output::Send(
                laptop,
                Message::Punch(Punch {
                    peer: "desktop".into()
                })
            ),
            Output::Send(
                desktop,
                Message::Punch(Punch {
                    peer: "laptop".into()
                })
            ),
        ]
    );
    // Within the interval, from either side, more requests are ignored, not refused.
    for (from, peer) in [(laptop, "desktop"), (desktop, "laptop")] {
        assert!(c.receive(from, &punch(peer), T0 + 2).is_empty());
    }
    assert!(c.is_enrolled(laptop) && c.is_enrolled(desktop));
    let out = c.receive(desktop, &punch("laptop"), T0 + 1 + PUNCH_INTERVAL);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(
        messages_to(&out, laptop),
        [Message::Punch(Punch {
            peer: "desktop".into()
        })]
    );
}

#[test]
fn a_punch_towards_an_unknown_or_absent_member_keeps_the_session() {
    let mut c = open(MemoryStore::new(), config(None), T0);
    let (laptop, _, _) = accepted(enroll(&mut c, &machine("laptop", 2), T0));
    for peer in ["nobody", "laptop"] {
        let out = c.receive(laptop, &punch(peer), T0);
        match messages_to(&out, laptop).as_slice() {
            [Message::Error(e)] => {
                assert_eq!(e.code, ErrorCode::BAD_MESSAGE);
                assert!(e.message.contains("is no other member"), "{}", e.message);
            }
            other => panic!("{other:?}"),
        }
        assert!(!closed(&out, laptop));
        assert!(c.is_enrolled(laptop));
    }
    // A member that is not connected: nobody to tell, nothing sent.
    assert!(c.receive(laptop, &punch("desktop"), T0).is_empty());
    // A revoked member is no member to punch towards.
    let (desktop, _, _) = accepted(enroll(&mut c, &machine("desktop", 3), T0));
    c.revoke("desktop", T0 + 1).unwrap();
    assert!(!c.is_enrolled(desktop));
    let out = c.receive(laptop, &punch("desktop"), T0 + 10);
    assert!(matches!(
        messages_to(&out, laptop).as_slice(),
        [Message::Error(_)]
    ));
    // Before enrolling, a punch is out of place.
    let (id, _) = greet(&mut c, &machine("server", 1), T0);
    let out = c.receive(id, &punch("laptop"), T0);
    assert!(closed(&out, id));
}

#[test]
fn local_candidates_that_point_at_third_parties_are_refused() {
    let allowed =
        "(not loopback, unspecified, multicast, broadcast or link-local) with a port other than 0";
    for (bad, what) in [
        ("127.0.0.1:51820", "a loopback address"),
        ("[::1]:51820", "a loopback address"),
        ("[::ffff:127.0.0.2]:51820", "a loopback address"),
        ("0.0.0.0:51820", "an unspecified address"),
        ("[::]:51820", "an unspecified address"),
        ("224.0.0.1:51820", "a multicast address"),
        ("[ff02::1]:51820", "a multicast address"),
        ("255.255.255.255:51820", "the broadcast address"),
        ("169.254.3.3:51820", "a link-local address"),
        ("[fe80::1]:51820", "a link-local address"),
        ("[febf::1]:51820", "a link-local address"),
        ("198.18.5.5:0", "port 0"),
    ] {
        let mut c = open(MemoryStore::new(), config(None), T0);
        let (laptop, _, _) = accepted(enroll(&mut c, &machine("laptop", 2), T0));
        let epoch = c.epoch().unwrap().epoch;
        let out = c.receive(laptop, &report(&["198.18.5.5:51820", bad]), T0);
        match answer(&out, laptop, T0) {
            Answer::Error(ErrorCode::BAD_MESSAGE, message) => assert_eq!(
                message,
                format!(
                    "endpoint report: {bad:?} is {what}; a local candidate is a unicast address other members can reach {allowed}"
                )
            ),
            other => panic!("{bad}: {other:?}"),
        }
        assert_eq!(c.epoch().unwrap().epoch, epoch, "nothing was published");
        assert!(candidates(&c, "laptop").is_empty());
    }
    // What an agent on a LAN reports is fine.
    let mut c = open(MemoryStore::new(), config(None), T0);
    let (laptop, _, _) = accepted(enroll(&mut c, &machine("laptop", 2), T0));
    let good = ["198.18.5.5:51820", "[fd00:5::5]:51820", "100.64.3.3:1"];
    assert!(!closed(&c.receive(laptop, &report(&good), T0), laptop));
    assert_eq!(candidates(&c, "laptop").len(), 3);
}

#[test]
fn one_member_cannot_make_every_peer_punch_all_the_time() {
    // laptop and ten connected peers.
    let peers: Vec<Machine> = (0..10)
        .map(|i| machine(&format!("peer{i}"), 20 + i))
        .collect();
    let mut config = config(None);
    for (i, p) in peers.iter().enumerate() {
        config.members.push(member_config(p, None, 20 + i as u16));
    }
    let mut c = open(MemoryStore::new(), config, T0);
    let (laptop, _, _) = accepted(enroll(&mut c, &machine("laptop", 2), T0));
    let ids: Vec<_> = peers
        .iter()
        .map(|p| accepted(enroll(&mut c, p, T0)).0)
        .collect();
    // laptop asks for a punch towards every peer every PUNCH_INTERVAL, for 20 s: each pair is
    // within its own limit, but the requester is bounded to 1 a second after a burst of 5.
    let mut told = 0;
    for round in 0..10 {
        let now = T0 + 1 + round * PUNCH_INTERVAL;
        for p in &peers {
            let out = c.receive(laptop, &punch(&p.name), now);
            // Told both at once, or ignored: never refused, never closed.
            assert!(out.len() == 2 || out.is_empty(), "{out:?}");
            told += out.len() / 2;
        }
    }
    // 5 at once, then one a second over the 18 s after the first round.
    assert_eq!(told, 5 + 18);
    assert!(c.is_enrolled(laptop));
    assert!(ids.iter().all(|id| c.is_enrolled(*id)));
    // Another member's requests have a budget of their own.
    let out = c.receive(ids[0], &punch("peer1"), T0 + 1 + 10 * PUNCH_INTERVAL);
    assert_eq!(out.len(), 2, "{out:?}");
}

#[test]
fn relay_members_come_oldest_first() {
    // The relay keeps the oldest of members whose ids clash: the inventory's, then joined
    // agents in the order they joined, whatever their names.
    let mut c = open(MemoryStore::new(), config(None), T0);
    for (i, name) in ["zed", "alpha"].into_iter().enumerate() {
        let (ticket, _) = c.create_token(name, 3600, [5 + i as u8; 32], T0).unwrap();
        let m = machine(name, 40 + i as u8);
        accepted(join(&mut c, &m, &ticket, T0 + 1 + i as u64));
    }
    let names: Vec<String> = c.relay_members().into_iter().map(|m| m.name).collect();
    assert_eq!(names, ["desktop", "laptop", "server", "zed", "alpha"]);
}
