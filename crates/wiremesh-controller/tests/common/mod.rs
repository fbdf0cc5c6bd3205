//! A small inventory and a simulated agent for driving the controller's state machine.

use wiremesh_controller::{Controller, Output, SessionId, Store};
use wiremesh_core::config::{Addresses, Networks};
use wiremesh_core::controller_config::{ControllerFile, DynamicIp, MemberConfig};
use wiremesh_core::keys::{NetworkSecret, NodeSecret, WireguardSecret};
use wiremesh_core::messages::{
    EnrollRequest, EnrollResponse, ErrorCode, Hello, JoinRequest, Message, PROTOCOL_VERSION,
};
use wiremesh_core::netmap::{Netmap, NetmapContent};
use wiremesh_core::ticket::JoinTicket;

pub const INSTANCE: &str = "my-vpn";
pub const T0: u64 = 1_800_000_000;

pub fn network_key() -> NetworkSecret {
    NetworkSecret::from_seed([200; 32])
}

pub fn controller_identity() -> NodeSecret {
    NodeSecret::from_seed([201; 32])
}

/// A machine's keys, derived from a number.
pub struct Machine {
    pub name: String,
    pub node: NodeSecret,
    pub wireguard: WireguardSecret,
}

pub fn machine(name: &str, seed: u8) -> Machine {
    Machine {
        name: name.into(),
        node: NodeSecret::from_seed([seed; 32]),
        wireguard: WireguardSecret::from_bytes([seed.wrapping_add(100); 32]),
    }
}

pub fn member_config(m: &Machine, ipv4: Option<&str>, index: u16) -> MemberConfig {
    MemberConfig {
        name: m.name.clone(),
        wireguard_public_key: m.wireguard.public_key(),
        node_public_key: m.node.public_key(),
        addresses: Addresses {
            ipv4: ipv4.map(|a| a.parse().unwrap()),
            ipv6: format!("fd12:3456:789a::{index:x}").parse().unwrap(),
        },
        endpoints: vec![format!("198.18.0.{}:51820", index % 250 + 1)],
        routes: vec![],
        controller: false,
    }
}

/// `server` (static 100.77.0.1) and `laptop`, `desktop` (leased), leasing from `range`.
pub fn config(range: Option<&str>) -> ControllerFile {
    ControllerFile {
        version: 1,
        instance: INSTANCE.into(),
        machine: "server".into(),
        endpoint: "vpn.example.org".into(),
        control_port: 51821,
        relay: Default::default(),
        network: Networks {
            ipv4: Some("100.77.0.0/16".parse().unwrap()),
            ipv6: "fd12:3456:789a::/48".parse().unwrap(),
        },
        dynamic_ip: DynamicIp {
            enable: true,
            range: range.map(|r| r.parse().unwrap()),
        },
        network_public_key: network_key().public_key(),
        network_key_path: "/run/secrets/network-key".into(),
        members: vec![
            member_config(&machine("server", 1), Some("100.77.0.1"), 1),
            member_config(&machine("laptop", 2), None, 2),
            member_config(&machine("desktop", 3), None, 3),
        ],
    }
}

pub fn open<S: Store>(store: S, config: ControllerFile, now: u64) -> Controller<S> {
    let (c, _) = Controller::open(
        store,
        config,
        network_key(),
        controller_identity().public_key(),
        now,
    )
    .unwrap();
    c
}

pub fn messages_to(outputs: &[Output], id: SessionId) -> Vec<Message> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send(to, m) if *to == id => Some(m.clone()),
            _ => None,
        })
        .collect()
}

pub fn closed(outputs: &[Output], id: SessionId) -> bool {
    outputs.contains(&Output::Close(id))
}

pub fn hello(m: &Machine) -> Message {
    Message::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        instance: INSTANCE.into(),
        node_public_key: m.node.public_key(),
        nonce: [9; 32],
    })
}

/// Connects `m` and exchanges hellos; returns the session and the controller's nonce.
pub fn greet<S: Store>(c: &mut Controller<S>, m: &Machine, now: u64) -> (SessionId, [u8; 32]) {
    let (id, out) = c.connect(m.node.public_key(), "198.18.0.9:40000".into(), [7; 32], now);
    assert!(out.is_empty(), "{out:?}");
    let out = c.receive(id, &hello(m).encode(), now);
    match messages_to(&out, id).as_slice() {
        [Message::Hello(h)] => {
            assert_eq!(h.node_public_key, controller_identity().public_key());
            (id, h.nonce)
        }
        other => panic!("expected the controller's hello, got {other:?}"),
    }
}

pub fn enroll_request(m: &Machine, nonce: &[u8; 32]) -> Message {
    Message::EnrollRequest(EnrollRequest::new_signed(
        m.name.clone(),
        m.wireguard.public_key(),
        &m.node,
        None,
        nonce,
    ))
}

pub fn join_request(m: &Machine, token: &str, nonce: &[u8; 32]) -> Message {
    Message::Join(JoinRequest {
        token: token.into(),
        request: EnrollRequest::new_signed(
            m.name.clone(),
            m.wireguard.public_key(),
            &m.node,
            None,
            nonce,
        ),
    })
}

/// What the controller answered to an enrollment or join.
#[derive(Debug)]
pub enum Answer {
    Accepted {
        id: SessionId,
        addresses: Addresses,
        netmap: NetmapContent,
    },
    Refused(String),
    Error(ErrorCode, String),
}

pub fn answer(outputs: &[Output], id: SessionId, now: u64) -> Answer {
    for m in messages_to(outputs, id) {
        match m {
            Message::EnrollResponse(EnrollResponse::Accepted { addresses, netmap }) => {
                let map = Netmap::decode(&netmap).unwrap();
                let content = map
                    .verify(&network_key().public_key(), None, now)
                    .unwrap()
                    .clone();
                return Answer::Accepted {
                    id,
                    addresses,
                    netmap: content,
                };
            }
            Message::EnrollResponse(EnrollResponse::Refused { reason }) => {
                assert!(closed(outputs, id), "refused but not closed");
                return Answer::Refused(reason);
            }
            Message::Error(e) => {
                assert!(closed(outputs, id), "error but not closed");
                return Answer::Error(e.code, e.message);
            }
            _ => {}
        }
    }
    panic!("no answer for session {id} in {outputs:?}")
}

/// Connects `m`, exchanges hellos and sends what `request` makes of the controller's nonce.
fn attempt<S: Store>(
    c: &mut Controller<S>,
    m: &Machine,
    now: u64,
    request: impl FnOnce(&[u8; 32]) -> Message,
) -> Answer {
    let (id, out) = c.connect(m.node.public_key(), "198.18.0.9:40000".into(), [7; 32], now);
    if !out.is_empty() {
        return answer(&out, id, now);
    }
    let out = c.receive(id, &hello(m).encode(), now);
    let Some(Message::Hello(h)) = messages_to(&out, id).into_iter().next() else {
        return answer(&out, id, now);
    };
    let out = c.receive(id, &request(&h.nonce).encode(), now);
    answer(&out, id, now)
}

pub fn enroll<S: Store>(c: &mut Controller<S>, m: &Machine, now: u64) -> Answer {
    attempt(c, m, now, |nonce| enroll_request(m, nonce))
}

/// Joins with the token inside `ticket` (what `create_token` returns); text that is no ticket is
/// sent as the token itself.
pub fn join<S: Store>(c: &mut Controller<S>, m: &Machine, ticket: &str, now: u64) -> Answer {
    let token = token_of(ticket);
    attempt(c, m, now, |nonce| join_request(m, &token, nonce))
}

/// The token a join ticket carries, or the text itself when it is no ticket.
pub fn token_of(ticket: &str) -> String {
    JoinTicket::decode(ticket).map_or_else(|_| ticket.to_string(), |t| t.token)
}

pub fn accepted(answer: Answer) -> (SessionId, Addresses, NetmapContent) {
    match answer {
        Answer::Accepted {
            id,
            addresses,
            netmap,
        } => (id, addresses, netmap),
        other => panic!("not accepted: {other:?}"),
    }
}

/// The netmap pushed to session `id`: one push, of the controller's current netmap, and no
/// other message.
pub fn pushed<S: Store>(c: &Controller<S>, outputs: &[Output], id: SessionId) -> Netmap {
    let pushes = outputs
        .iter()
        .filter(|o| matches!(o, Output::Push(to) if *to == id))
        .count();
    let others = messages_to(outputs, id);
    assert!(
        pushes == 1 && others.is_empty(),
        "expected one push to session {id}, got {pushes} and {others:?}"
    );
    Netmap::decode(&c.epoch().unwrap().netmap).unwrap()
}
