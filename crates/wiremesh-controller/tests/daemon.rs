//! The daemon in-process over loopback QUIC: enrollment, sticky leases across a restart, join
//! tokens, revocation, refusals with clear errors, and the bounds on bad and silent clients.

// Each test binary uses its own part of the shared helpers.
#[allow(dead_code)]
mod common;

use std::future::Future as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{INSTANCE, Machine, T0, config, controller_identity, machine, network_key, token_of};
use wiremesh_controller::daemon::{Clock, Limits, Options, Server};
use wiremesh_core::controller_config::ControllerFile;
use wiremesh_core::disco::{self, PROBE_REPLY_LEN, Probe, ProbeReply};
use wiremesh_core::frame::MAX_FRAME_LEN;
use wiremesh_core::keys::{Identity, NetworkKey, WireguardSecret};
use wiremesh_core::messages::{ErrorCode, Hello, Message, PROTOCOL_VERSION};
use wiremesh_core::netmap::{CandidateKind, Flags, Netmap};
use wiremesh_proto::admin::{self, Outcome, Request};
use wiremesh_proto::client::{ControlError, ControlSettings, Enrolled, client_transport, enroll};
use wiremesh_proto::tls::{SERVER_NAME, client_config};
use wiremesh_proto::wire::{FrameReader, write_message};

/// Every wait in these tests ends after this long at most.
const BOUND: Duration = Duration::from_secs(20);

struct Fixture {
    dir: tempfile::TempDir,
    clock: Arc<AtomicU64>,
}

impl Fixture {
    fn new(config: &ControllerFile) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let f = Self {
            dir,
            clock: Arc::new(AtomicU64::new(T0)),
        };
        f.write_config(config);
        std::fs::write(
            f.path("network.key"),
            NetworkKey::new(network_key()).to_file_text().as_bytes(),
        )
        .unwrap();
        let identity = Identity::new(WireguardSecret::from_bytes([9; 32]), controller_identity());
        std::fs::write(f.path("identity"), identity.to_file_text().as_bytes()).unwrap();
        f
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write_config(&self, config: &ControllerFile) {
        std::fs::write(self.path("server.controller.json"), config.to_json()).unwrap();
    }

    fn options(&self, limits: Limits) -> Options {
        let clock = self.clock.clone();
        Options {
            config: self.path("server.controller.json"),
            network_key: Some(self.path("network.key")),
            identity: self.path("identity"),
            state_dir: self.path("state"),
            listen: Some("127.0.0.1:0".parse().unwrap()),
            relay_listen: Some("127.0.0.1:0".parse().unwrap()),
            limits,
            clock: Clock::new(move || clock.load(Ordering::SeqCst)),
        }
    }

    async fn start(&self) -> Server {
        self.start_with(Limits::default()).await
    }

    async fn start_with(&self, limits: Limits) -> Server {
        Server::start(self.options(limits)).await.unwrap()
    }

    fn advance(&self, seconds: u64) {
        self.clock.fetch_add(seconds, Ordering::SeqCst);
    }
}

fn client() -> quinn::Endpoint {
    quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap()
}

fn settings(m: &Machine, join: Option<String>) -> ControlSettings {
    ControlSettings {
        instance: INSTANCE.into(),
        name: m.name.clone(),
        identity: Identity::new(m.wireguard.clone(), m.node.clone()),
        controller: controller_identity().public_key(),
        join,
        last_epoch: None,
    }
}

async fn enroll_as(
    server: &Server,
    m: &Machine,
    join: Option<String>,
) -> Result<Enrolled, ControlError> {
    let addr = server.local_addr().unwrap();
    enroll(&client(), addr, &settings(m, join), BOUND).await
}

async fn admin_request(server: &Server, request: Request) -> Outcome {
    let socket = server.admin_socket().to_path_buf();
    tokio::task::spawn_blocking(move || admin::request(&socket, &request, BOUND))
        .await
        .unwrap()
        .unwrap()
        .outcome
}

fn refusal(result: Result<Enrolled, ControlError>) -> ControlError {
    match result {
        Ok(e) => panic!("enrolled with {:?}", e.addresses),
        Err(e) => e,
    }
}

#[tokio::test]
async fn enrollment_pushes_and_leases_that_survive_a_restart() {
    let f = Fixture::new(&config(None));
    let server = f.start().await;
    let mut static_member = enroll_as(&server, &machine("server", 1), None)
        .await
        .unwrap();
    assert_eq!(
        static_member.addresses.ipv4,
        Some("100.77.0.1".parse().unwrap())
    );
    let laptop = enroll_as(&server, &machine("laptop", 2), None)
        .await
        .unwrap();
    assert_eq!(laptop.addresses.ipv4, Some("100.77.0.2".parse().unwrap()));
    let map = Netmap::decode(&laptop.netmap).unwrap();
    let content = map.verify(&network_key().public_key(), None, T0).unwrap();
    assert_eq!(
        content.member("laptop").unwrap().addresses.ipv4,
        Some("100.77.0.2".parse().unwrap())
    );
    // The member that enrolled first hears about the lease.
    let pushed = tokio::time::timeout(BOUND, static_member.session.next_netmap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(Netmap::decode(&pushed).unwrap(), map);

    let Outcome::Status(status) = admin_request(&server, Request::Status).await else {
        panic!("no status");
    };
    let laptop_status = status.members.iter().find(|m| m.name == "laptop").unwrap();
    assert!(laptop_status.leased);
    assert!(laptop_status.connection.is_some(), "{status:?}");
    assert_eq!(status.epoch, content.epoch);

    drop(static_member);
    drop(laptop);
    server.shutdown().await;
    let server = f.start().await;
    let desktop = enroll_as(&server, &machine("desktop", 3), None)
        .await
        .unwrap();
    assert_eq!(desktop.addresses.ipv4, Some("100.77.0.3".parse().unwrap()));
    let laptop = enroll_as(&server, &machine("laptop", 2), None)
        .await
        .unwrap();
    assert_eq!(laptop.addresses.ipv4, Some("100.77.0.2".parse().unwrap()));
    server.shutdown().await;
}

#[tokio::test]
async fn join_tokens_work_once_and_expire() {
    let f = Fixture::new(&config(None));
    let server = f.start().await;
    let create = |name: &str, ttl_seconds| Request::TokenCreate {
        name: name.into(),
        ttl_seconds,
    };
    let Outcome::Token { token, .. } = admin_request(&server, create("phone", 3600)).await else {
        panic!("no token");
    };
    let token = token_of(&token);
    let phone = enroll_as(&server, &machine("phone", 40), Some(token.clone()))
        .await
        .unwrap();
    let map = Netmap::decode(&phone.netmap).unwrap();
    assert!(
        map.content()
            .member("phone")
            .unwrap()
            .flags
            .contains(Flags::OUTSIDE_INVENTORY)
    );
    match refusal(enroll_as(&server, &machine("phone", 41), Some(token)).await) {
        ControlError::Controller { code, message } => {
            assert_eq!(code, ErrorCode::BAD_TOKEN);
            assert!(
                message.starts_with("the join token was used already"),
                "{message}"
            );
        }
        other => panic!("{other}"),
    }
    let Outcome::Token { token, .. } = admin_request(&server, create("tv", 60)).await else {
        panic!("no token");
    };
    f.advance(61);
    match refusal(enroll_as(&server, &machine("tv", 42), Some(token_of(&token))).await) {
        ControlError::Controller { code, .. } => assert_eq!(code, ErrorCode::BAD_TOKEN),
        other => panic!("{other}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn revoked_unknown_and_foreign_keys_get_clear_errors() {
    let f = Fixture::new(&config(None));
    let server = f.start().await;
    let Outcome::Revoked { .. } = admin_request(
        &server,
        Request::Revoke {
            name: "laptop".into(),
        },
    )
    .await
    else {
        panic!("not revoked");
    };
    match refusal(enroll_as(&server, &machine("laptop", 2), None).await) {
        ControlError::Controller { code, message } => {
            assert_eq!(code, ErrorCode::REVOKED);
            assert!(message.ends_with("is revoked"), "{message}");
        }
        other => panic!("{other}"),
    }
    let stranger = machine("laptop", 99);
    let e = refusal(enroll_as(&server, &stranger, None).await);
    assert_eq!(
        e.to_string(),
        format!(
            "the controller reported an error (code 4): node key {} is not a member of instance \"my-vpn\"; ask the controller's admin for a join token (`wiremesh-controller token create --name NAME`) and start the agent with --join TOKEN",
            stranger.node.public_key()
        )
    );
    let mut other_network = settings(&machine("desktop", 3), None);
    other_network.instance = "other-vpn".into();
    let addr = server.local_addr().unwrap();
    match refusal(enroll(&client(), addr, &other_network, BOUND).await) {
        ControlError::Controller { code, .. } => assert_eq!(code, ErrorCode::WRONG_NETWORK),
        other => panic!("{other}"),
    }
    // An agent pinning another controller key stops at the TLS handshake.
    let mut wrong_pin = settings(&machine("desktop", 3), None);
    wrong_pin.controller = machine("x", 98).node.public_key();
    assert!(matches!(
        refusal(enroll(&client(), addr, &wrong_pin, BOUND).await),
        ControlError::Connect { .. }
    ));
    server.shutdown().await;
}

/// A raw control stream to the server as machine `m`.
async fn raw_stream(
    addr: SocketAddr,
    m: &Machine,
) -> (quinn::Connection, quinn::SendStream, FrameReader) {
    let config = client_config(
        &m.node,
        controller_identity().public_key(),
        client_transport(),
    )
    .unwrap();
    let connection = client()
        .connect_with(config, addr, SERVER_NAME)
        .unwrap()
        .await
        .unwrap();
    let (send, recv) = connection.open_bi().await.unwrap();
    (connection, send, FrameReader::new(recv, MAX_FRAME_LEN))
}

async fn expect_error(reader: &mut FrameReader) -> (ErrorCode, String) {
    let frame = tokio::time::timeout(BOUND, reader.next())
        .await
        .expect("the controller answered in time")
        .unwrap()
        .expect("an error message before the stream ends");
    match Message::decode(&frame).unwrap() {
        Message::Error(e) => (e.code, e.message),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn bad_frames_and_silent_clients_cost_only_their_connection() {
    let f = Fixture::new(&config(None));
    let limits = Limits {
        handshake: Duration::from_millis(300),
        enroll: Duration::from_millis(300),
        ..Limits::default()
    };
    let server = f.start_with(limits).await;
    let addr = server.local_addr().unwrap();
    let laptop = machine("laptop", 2);

    // A frame header announcing 4 GiB.
    let (_c, mut send, mut reader) = raw_stream(addr, &laptop).await;
    send.write_all(&[0xff; 4]).await.unwrap();
    let (code, message) = expect_error(&mut reader).await;
    assert_eq!(code, ErrorCode::BAD_MESSAGE);
    assert_eq!(
        message,
        "frame of 4294967295 bytes exceeds the maximum of 65536"
    );

    // A well-framed payload that is no message.
    let (_c, mut send, mut reader) = raw_stream(addr, &laptop).await;
    send.write_all(&[0, 0, 0, 3, 0xee, 0xee, 0xee])
        .await
        .unwrap();
    assert_eq!(expect_error(&mut reader).await.0, ErrorCode::BAD_MESSAGE);

    // A hello with another protocol version.
    let (_c, mut send, mut reader) = raw_stream(addr, &laptop).await;
    let hello = Message::Hello(Hello {
        protocol_version: PROTOCOL_VERSION + 1,
        instance: INSTANCE.into(),
        node_public_key: laptop.node.public_key(),
        nonce: [0; 32],
    });
    write_message(&mut send, &hello).await.unwrap();
    assert_eq!(
        expect_error(&mut reader).await.0,
        ErrorCode::UNSUPPORTED_VERSION
    );

    // A hello, then nothing: refused when the enrollment deadline passes.
    let (_c, mut send, mut reader) = raw_stream(addr, &laptop).await;
    write_message(&mut send, &common::hello(&laptop))
        .await
        .unwrap();
    let frame = tokio::time::timeout(BOUND, reader.next())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        Message::decode(&frame.unwrap()).unwrap(),
        Message::Hello(_)
    ));
    let (code, message) = expect_error(&mut reader).await;
    assert_eq!(code, ErrorCode::TIMEOUT);
    assert_eq!(message, "hello and enrollment did not arrive within 0.3 s");

    // A connection that never opens a stream is closed with a reason.
    let config = client_config(
        &laptop.node,
        controller_identity().public_key(),
        client_transport(),
    )
    .unwrap();
    let silent = client()
        .connect_with(config, addr, SERVER_NAME)
        .unwrap()
        .await
        .unwrap();
    let closed = tokio::time::timeout(BOUND, silent.closed()).await.unwrap();
    match closed {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, quinn::VarInt::from_u32(9));
            assert_eq!(&close.reason[..], b"no control stream opened within 0.3 s");
        }
        other => panic!("{other}"),
    }

    // One stream per connection: a second one, or any unidirectional one, gets no credit from
    // the controller, so thousands of them cost it nothing. (A single poll: the credit the
    // controller granted is known to the client from the handshake.)
    let (c, _send, _reader) = raw_stream(addr, &laptop).await;
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut second = std::pin::pin!(c.open_bi());
    assert!(second.as_mut().poll(&mut cx).is_pending());
    let mut uni = std::pin::pin!(c.open_uni());
    assert!(uni.as_mut().poll(&mut cx).is_pending());

    // None of it touched anyone else.
    let desktop = enroll_as(&server, &machine("desktop", 3), None)
        .await
        .unwrap();
    assert_eq!(desktop.addresses.ipv4, Some("100.77.0.2".parse().unwrap()));
    server.shutdown().await;
}

#[tokio::test]
async fn reload_applies_the_new_inventory_as_a_diff() {
    let f = Fixture::new(&config(None));
    let server = f.start().await;
    let mut laptop = enroll_as(&server, &machine("laptop", 2), None)
        .await
        .unwrap();
    let mut next = config(None);
    next.members
        .push(common::member_config(&machine("tv", 4), None, 4));
    f.write_config(&next);
    let diff = server.reload().await.unwrap();
    assert_eq!(diff.added, ["tv"]);
    let pushed = tokio::time::timeout(BOUND, laptop.session.next_netmap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        Netmap::decode(&pushed)
            .unwrap()
            .content()
            .member("tv")
            .is_some()
    );
    // A broken file is refused and the running configuration kept.
    std::fs::write(f.path("server.controller.json"), "{\"version\": 1}").unwrap();
    let e = server.reload().await.unwrap_err();
    assert!(e.contains("server.controller.json"), "{e}");
    let tv = enroll_as(&server, &machine("tv", 4), None).await.unwrap();
    assert_eq!(tv.addresses.ipv4, Some("100.77.0.3".parse().unwrap()));
    server.shutdown().await;
}

#[tokio::test]
async fn a_damaged_store_stops_the_start_and_names_the_file() {
    let f = Fixture::new(&config(None));
    let server = f.start().await;
    server.shutdown().await;
    let store = f.path("state/controller.sqlite");
    let bytes = std::fs::read(&store).unwrap();
    std::fs::write(&store, &bytes[..bytes.len() / 2]).unwrap();
    let e = Server::start(f.options(Limits::default()))
        .await
        .err()
        .unwrap();
    assert!(
        e.starts_with(&format!("store {}: ", store.display())),
        "{e}"
    );
}

/// A UDP socket on loopback standing in for an agent's WireGuard socket.
fn udp() -> std::net::UdpSocket {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s
}

fn probe(m: &Machine) -> Vec<u8> {
    let unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    Probe {
        node_public_key: m.node.public_key(),
        txid: [m.name.len() as u8; disco::TXID_LEN],
        unix_ms,
    }
    .encode(&m.node)
    .to_vec()
}

fn receive(socket: &std::net::UdpSocket) -> Option<Vec<u8>> {
    let mut buf = [0u8; 2048];
    socket.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
}

async fn relay_status(server: &Server) -> admin::RelayStatus {
    let Outcome::Status(status) = admin_request(server, Request::Status).await else {
        panic!("no status");
    };
    status.relay.expect("the relay is on")
}

#[tokio::test]
async fn probes_bind_members_and_the_relay_forwards_only_between_them() {
    let f = Fixture::new(&config(None));
    let server = f.start().await;
    let relay = server.relay_addr().unwrap();
    let (laptop, desktop) = (machine("laptop", 2), machine("desktop", 3));
    let mut session = enroll_as(&server, &laptop, None).await.unwrap();
    let (a, b, stranger) = (udp(), udp(), udp());

    // A probe is answered with the address it came from, signed by the controller.
    a.send_to(&probe(&laptop), relay).unwrap();
    let reply = receive(&a).expect("a reply to the laptop's probe");
    assert_eq!(reply.len(), PROBE_REPLY_LEN);
    let reply = ProbeReply::decode(&reply, &controller_identity().public_key()).unwrap();
    assert_eq!(reply.observed, a.local_addr().unwrap());
    // ... and published as the laptop's Mapped candidate in a new epoch.
    let mapped = tokio::time::timeout(BOUND, async {
        loop {
            let netmap = session.session.next_netmap().await.unwrap();
            let map = Netmap::decode(&netmap).unwrap();
            let laptop = map.content().member("laptop").unwrap().clone();
            if let Some(c) = laptop.candidates.first() {
                return *c;
            }
        }
    })
    .await
    .expect("a netmap with the laptop's mapped address");
    assert_eq!(mapped.kind, CandidateKind::Mapped);
    assert_eq!(mapped.addr, a.local_addr().unwrap());

    b.send_to(&probe(&desktop), relay).unwrap();
    assert!(receive(&b).is_some());

    // The laptop relays a WireGuard packet to the desktop; it arrives naming the laptop.
    let to_desktop = disco::peer_id(desktop.wireguard.public_key().as_bytes());
    let to_laptop = disco::peer_id(laptop.wireguard.public_key().as_bytes());
    let mut header = [0; disco::RELAY_HEADER_LEN];
    disco::write_relay_header(&mut header, to_desktop);
    let mut packet = header.to_vec();
    packet.extend_from_slice(&[4, 0, 0, 0, 1, 2, 3, 4]);
    a.send_to(&packet, relay).unwrap();
    let got = receive(&b).expect("the relayed packet");
    let (from, inner) = disco::split_relay(&got).unwrap();
    assert_eq!(from, to_laptop);
    assert_eq!(inner, [4, 0, 0, 0, 1, 2, 3, 4]);

    // A stranger's probes and relay packets get no answer and move no byte.
    let outsider = machine("outsider", 50);
    stranger.send_to(&probe(&outsider), relay).unwrap();
    stranger.send_to(&packet, relay).unwrap();
    assert_eq!(receive(&stranger), None);
    assert_eq!(receive(&b), None);

    let status = relay_status(&server).await;
    assert_eq!(status.port, relay.port());
    let bound: Vec<_> = status
        .bound
        .iter()
        .map(|b| (b.name.as_str(), b.address.clone()))
        .collect();
    assert_eq!(
        bound,
        [
            ("desktop", b.local_addr().unwrap().to_string()),
            ("laptop", a.local_addr().unwrap().to_string())
        ]
    );
    assert_eq!(status.pairs.len(), 1);
    assert_eq!(
        (status.pairs[0].from.as_str(), status.pairs[0].to.as_str()),
        ("laptop", "desktop")
    );
    assert_eq!(status.pairs[0].packets, 1);
    assert_eq!(status.pairs[0].bytes, packet.len() as u64);
    assert_eq!(status.drops["not-a-member"], 2);
    drop(session);
    server.shutdown().await;
}

#[tokio::test]
async fn a_revoked_member_loses_its_relay_binding() {
    let f = Fixture::new(&config(None));
    let server = f.start().await;
    let relay = server.relay_addr().unwrap();
    let (laptop, desktop) = (machine("laptop", 2), machine("desktop", 3));
    let (a, b) = (udp(), udp());
    a.send_to(&probe(&laptop), relay).unwrap();
    assert!(receive(&a).is_some());
    b.send_to(&probe(&desktop), relay).unwrap();
    assert!(receive(&b).is_some());
    assert_eq!(relay_status(&server).await.bound.len(), 2);
    let outcome = admin_request(
        &server,
        Request::Revoke {
            name: "desktop".into(),
        },
    )
    .await;
    assert!(matches!(outcome, Outcome::Revoked { .. }), "{outcome:?}");
    let status = relay_status(&server).await;
    assert_eq!(
        status
            .bound
            .iter()
            .map(|b| b.name.as_str())
            .collect::<Vec<_>>(),
        ["laptop"]
    );
    // Its packets are not relayed, and none reach it.
    let mut header = [0; disco::RELAY_HEADER_LEN];
    disco::write_relay_header(
        &mut header,
        disco::peer_id(laptop.wireguard.public_key().as_bytes()),
    );
    let mut packet = header.to_vec();
    packet.extend_from_slice(&[4, 0, 0, 0, 9]);
    b.send_to(&packet, relay).unwrap();
    assert_eq!(receive(&a), None);
    // Nor are its probes answered.
    b.send_to(&probe(&desktop), relay).unwrap();
    assert_eq!(receive(&b), None);
    server.shutdown().await;
}

#[tokio::test]
async fn without_the_relay_there_is_no_socket_and_no_status() {
    let mut cfg = config(None);
    cfg.relay.enable = false;
    let f = Fixture::new(&cfg);
    let server = f.start().await;
    assert_eq!(server.relay_addr(), None);
    let Outcome::Status(status) = admin_request(&server, Request::Status).await else {
        panic!("no status");
    };
    assert_eq!(status.relay, None);
    server.shutdown().await;
}

#[tokio::test]
async fn a_relay_port_in_use_stops_the_start_and_says_which() {
    let f = Fixture::new(&config(None));
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut options = f.options(Limits::default());
    options.relay_listen = Some(taken.local_addr().unwrap());
    let Err(e) = Server::start(options).await else {
        panic!("started on a port in use");
    };
    assert!(
        e.starts_with(&format!(
            "cannot listen on UDP {} for the relay: ",
            taken.local_addr().unwrap()
        )) && e.ends_with("(set relay.port, or relay.enable = false)"),
        "{e}"
    );
}

/// Enrolls `m` over a raw control stream; returns it once the answer is read.
async fn raw_enrolled(
    addr: SocketAddr,
    m: &Machine,
) -> (quinn::Connection, quinn::SendStream, FrameReader) {
    let (connection, mut send, mut reader) = raw_stream(addr, m).await;
    write_message(&mut send, &common::hello(m)).await.unwrap();
    let nonce = match next(&mut reader).await {
        Message::Hello(h) => h.nonce,
        other => panic!("{other:?}"),
    };
    write_message(&mut send, &common::enroll_request(m, &nonce))
        .await
        .unwrap();
    assert!(matches!(
        next(&mut reader).await,
        Message::EnrollResponse(wiremesh_core::messages::EnrollResponse::Accepted { .. })
    ));
    (connection, send, reader)
}

async fn next(reader: &mut FrameReader) -> Message {
    let frame = tokio::time::timeout(BOUND, reader.next())
        .await
        .expect("a message in time")
        .unwrap()
        .expect("a message before the stream ends");
    Message::decode(&frame).unwrap()
}

/// The next message that is not a netmap push.
async fn next_but_pushes(reader: &mut FrameReader) -> Message {
    loop {
        match next(reader).await {
            Message::NetmapPush(_) => continue,
            other => return other,
        }
    }
}

#[tokio::test]
async fn a_punch_request_reaches_both_members_over_their_control_streams() {
    let f = Fixture::new(&config(None));
    let server = f.start().await;
    let addr = server.local_addr().unwrap();
    let (_a, mut laptop, mut laptop_reader) = raw_enrolled(addr, &machine("laptop", 2)).await;
    let (_d, _desktop, mut desktop_reader) = raw_enrolled(addr, &machine("desktop", 3)).await;
    let punch = |peer: &str| {
        Message::Punch(wiremesh_core::messages::Punch {
            peer: peer.to_string(),
        })
    };
    write_message(&mut laptop, &punch("desktop")).await.unwrap();
    assert_eq!(next_but_pushes(&mut laptop_reader).await, punch("desktop"));
    assert_eq!(next_but_pushes(&mut desktop_reader).await, punch("laptop"));
    // An unknown member: an error, and the session goes on.
    write_message(&mut laptop, &punch("nobody")).await.unwrap();
    match next_but_pushes(&mut laptop_reader).await {
        Message::Error(e) => assert!(e.message.contains("\"nobody\""), "{}", e.message),
        other => panic!("{other:?}"),
    }
    write_message(&mut laptop, &punch("desktop")).await.unwrap();
    let Outcome::Status(status) = admin_request(&server, Request::Status).await else {
        panic!("no status");
    };
    let laptop_status = status.members.iter().find(|m| m.name == "laptop").unwrap();
    assert!(laptop_status.connection.is_some(), "still connected");
    server.shutdown().await;
}

/// CPU seconds the thread named `name` of this process has used.
fn thread_cpu(name: &str) -> f64 {
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap();
        // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        ticks += fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    }
    // SAFETY: sysconf has no preconditions.
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// Relays GSO trains of 1,400-byte packets from one member to another over loopback for 3 s
/// and prints the throughput and the relay thread's CPU per Gbit/s; `RELAY_GSO=0` sends the
/// packets one by one instead (no trains for the kernel to keep together).
#[tokio::test]
#[ignore = "a measurement: cargo test --release -p wiremesh-controller --test daemon -- --ignored --nocapture relay_throughput"]
async fn relay_throughput() {
    use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};
    let mut cfg = config(None);
    cfg.relay.member_rate_mbit = 100_000;
    cfg.relay.member_mib_per_hour = 4 << 20;
    let f = Fixture::new(&cfg);
    let server = f.start().await;
    let relay = server.relay_addr().unwrap();
    let (laptop, desktop) = (machine("laptop", 2), machine("desktop", 3));
    let (a, b) = (udp(), udp());
    a.send_to(&probe(&laptop), relay).unwrap();
    assert!(receive(&a).is_some());
    b.send_to(&probe(&desktop), relay).unwrap();
    assert!(receive(&b).is_some());
    let to_desktop = disco::peer_id(desktop.wireguard.public_key().as_bytes());
    const PACKET: usize = 1400;
    let gso = std::env::var("RELAY_GSO").map_or(true, |v| v != "0");
    let segments = if gso { 44 } else { 1 };
    let mut train = Vec::with_capacity(PACKET * segments);
    for _ in 0..segments {
        let mut header = [0; disco::RELAY_HEADER_LEN];
        disco::write_relay_header(&mut header, to_desktop);
        train.extend_from_slice(&header);
        train.resize(train.len() + PACKET - header.len(), 4);
    }
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let receiver = {
        let done = done.clone();
        std::thread::spawn(move || {
            let state = UdpSocketState::new(UdpSockRef::from(&b)).unwrap();
            b.set_nonblocking(false).unwrap();
            b.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut buf = vec![0u8; 1 << 16];
            let mut meta = [RecvMeta::default()];
            let mut bytes = 0u64;
            loop {
                let mut iov = [std::io::IoSliceMut::new(&mut buf)];
                match state.recv(UdpSockRef::from(&b), &mut iov, &mut meta) {
                    Ok(_) => bytes += meta[0].len as u64,
                    Err(_) if done.load(Ordering::Relaxed) => return bytes,
                    Err(_) => {}
                }
            }
        })
    };
    let cpu_before = thread_cpu("relay");
    let started = std::time::Instant::now();
    let sent = tokio::task::spawn_blocking(move || {
        let state = UdpSocketState::new(UdpSockRef::from(&a)).unwrap();
        let mut sent = 0u64;
        while started.elapsed() < Duration::from_secs(3) {
            let transmit = Transmit {
                destination: relay,
                ecn: None,
                contents: &train,
                segment_size: gso.then_some(PACKET),
                src_ip: None,
            };
            if state.try_send(UdpSockRef::from(&a), &transmit).is_ok() {
                sent += train.len() as u64;
            } else {
                std::thread::yield_now();
            }
        }
        sent
    })
    .await
    .unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, Ordering::Relaxed);
    let received = receiver.join().unwrap();
    let cpu = thread_cpu("relay") - cpu_before;
    let gbit = received as f64 * 8.0 / 1e9;
    println!(
        "relay ({}): sent {:.2} Gbit/s, relayed {:.2} Gbit/s ({:.0} % of it), relay thread {:.2} CPU s = {:.2} CPU s per Gbit",
        if gso { "GSO trains" } else { "one by one" },
        sent as f64 * 8.0 / 1e9 / elapsed,
        gbit / elapsed,
        100.0 * received as f64 / sent.max(1) as f64,
        cpu,
        cpu / gbit.max(1e-9)
    );
    server.shutdown().await;
}
