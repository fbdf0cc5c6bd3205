//! One agent's control session: hello, then enrollment (a member's key) or a join (an unknown key
//! with a token), then netmap pushes, reports of the agent's interface addresses and requests to
//! punch holes towards another member.
//!
//! The shell authenticates the agent's node key with mutual TLS and hands it to [`Controller::connect`];
//! the hello and the enrollment proof must name the same key. Anything unexpected gets an error
//! message and a closed session, so a client never waits on a controller that gave up on it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use wiremesh_core::keys::NodePublicKey;
use wiremesh_core::messages::{
    EnrollRequest, EnrollResponse, ErrorCode, ErrorMessage, Hello, JoinRequest, Message,
    PROTOCOL_VERSION, Punch,
};
use wiremesh_core::netmap::{Flags, MAX_ENDPOINT_LEN, MAX_ENDPOINTS};

use crate::controller::{Controller, ControllerError, Output};
use crate::relay::limit::Bucket;
use crate::state::{Change, Node, NodeKind};
use crate::store::Store;
use crate::token::token_hash;

/// An agent reports its endpoints at most this often; each changed report is a new epoch pushed
/// to every member, so a faster agent is cut off rather than allowed to flood the mesh.
pub const MIN_REPORT_INTERVAL: u64 = 10;
/// Two members are told to punch at most once in this many seconds (by the controller's clock
/// in whole seconds); more requests meanwhile are ignored.
pub const PUNCH_INTERVAL: u64 = 2;
/// Punches one member may have the controller carry out a second, and the burst: each makes
/// a peer send handshakes to the requester's candidates, so one member must not set every
/// peer off every [`PUNCH_INTERVAL`]. More requests are ignored (the session stays).
pub const PUNCHES_PER_SECOND: f64 = 1.0;
pub const PUNCH_BURST: f64 = 5.0;

/// A session's number, unique for the controller's lifetime.
pub type SessionId = u64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    AwaitHello,
    AwaitEnroll,
    Enrolled { name: String },
}

#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// The node key the agent proved in the TLS handshake.
    pub(crate) peer: NodePublicKey,
    pub(crate) remote: String,
    nonce: [u8; 32],
    pub(crate) phase: Phase,
    pub(crate) connected_at: u64,
    pub(crate) last_contact: u64,
    last_report: Option<u64>,
}

impl<S: Store> Controller<S> {
    /// A new connection from `remote` whose TLS certificate holds `peer`; `nonce` is 32 random
    /// bytes for the agent's enrollment proof. A revoked key is refused at once.
    pub fn connect(
        &mut self,
        peer: NodePublicKey,
        remote: String,
        nonce: [u8; 32],
        now: u64,
    ) -> (SessionId, Vec<Output>) {
        let id = self.next_session;
        self.next_session += 1;
        self.sessions.insert(
            id,
            Session {
                peer,
                remote,
                nonce,
                phase: Phase::AwaitHello,
                connected_at: now,
                last_contact: now,
                last_report: None,
            },
        );
        if self.state.revocations.contains_key(&peer) {
            let message = format!("node key {peer} is revoked");
            return (id, self.refuse(id, ErrorCode::REVOKED, message));
        }
        (id, Vec::new())
    }

    /// The session ended (the connection closed or the shell gave up on it).
    pub fn disconnect(&mut self, id: SessionId) {
        self.sessions.remove(&id);
    }

    /// Refuses a session for a fault the shell found (a frame too large, a timeout).
    pub fn reject(&mut self, id: SessionId, code: ErrorCode, message: String) -> Vec<Output> {
        self.refuse(id, code, message)
    }

    /// Session `id` was heard from at `now` without a message (QUIC keepalives): its last
    /// contact moves on.
    pub fn alive(&mut self, id: SessionId, now: u64) {
        if let Some(session) = self.sessions.get_mut(&id) {
            session.last_contact = session.last_contact.max(now);
        }
    }

    /// Whether the session has enrolled.
    pub fn is_enrolled(&self, id: SessionId) -> bool {
        self.sessions
            .get(&id)
            .is_some_and(|s| matches!(s.phase, Phase::Enrolled { .. }))
    }

    /// One message (a frame's payload) from session `id`.
    pub fn receive(&mut self, id: SessionId, payload: &[u8], now: u64) -> Vec<Output> {
        let Some(session) = self.sessions.get_mut(&id) else {
            return Vec::new();
        };
        session.last_contact = now;
        let phase = session.phase.clone();
        let message = match Message::decode(payload) {
            Ok(m) => m,
            Err(e) => return self.refuse(id, ErrorCode::BAD_MESSAGE, e.to_string()),
        };
        match (phase, message) {
            (_, Message::Error(e)) => {
                self.sessions.remove(&id);
                vec![
                    Output::Warn(format!("session {id} closed by the agent: {:?}", e.message)),
                    Output::Close(id),
                ]
            }
            (Phase::AwaitHello, Message::Hello(hello)) => self.hello(id, hello),
            (Phase::AwaitEnroll, Message::EnrollRequest(request)) => self.enroll(id, request, now),
            (Phase::AwaitEnroll, Message::Join(join)) => self.join(id, join, now),
            (Phase::Enrolled { name }, Message::EndpointReport(report)) => {
                self.endpoints(id, &name, report.endpoints, now)
            }
            (Phase::Enrolled { name }, Message::Punch(punch)) => {
                self.punch(id, &name, &punch.peer, now)
            }
            (phase, other) => {
                let expected = match phase {
                    Phase::AwaitHello => "a Hello",
                    Phase::AwaitEnroll => "an EnrollRequest or a Join",
                    Phase::Enrolled { .. } => "an EndpointReport or a Punch",
                };
                self.refuse(
                    id,
                    ErrorCode::BAD_MESSAGE,
                    format!("expected {expected}, got {}", kind(&other)),
                )
            }
        }
    }

    fn hello(&mut self, id: SessionId, hello: Hello) -> Vec<Output> {
        if hello.protocol_version != PROTOCOL_VERSION {
            return self.refuse(
                id,
                ErrorCode::UNSUPPORTED_VERSION,
                format!(
                    "this controller speaks control protocol version {PROTOCOL_VERSION}, the agent version {}; update the older side",
                    hello.protocol_version
                ),
            );
        }
        if hello.instance != self.config.instance {
            return self.refuse(
                id,
                ErrorCode::WRONG_NETWORK,
                format!(
                    "wrong network: this controller serves instance {:?}, not {:?}",
                    self.config.instance, hello.instance
                ),
            );
        }
        let Some(session) = self.sessions.get_mut(&id) else {
            return Vec::new();
        };
        if hello.node_public_key != session.peer {
            return self.refuse(
                id,
                ErrorCode::BAD_PROOF,
                "the hello names another node key than the TLS certificate".into(),
            );
        }
        session.phase = Phase::AwaitEnroll;
        let reply = Hello {
            protocol_version: PROTOCOL_VERSION,
            instance: self.config.instance.clone(),
            node_public_key: self.identity,
            nonce: session.nonce,
        };
        vec![Output::Send(id, Message::Hello(reply))]
    }

    /// Checks that `request` is signed by the session's key over the session's nonce.
    fn check_proof(&mut self, id: SessionId, request: &EnrollRequest) -> Result<(), Vec<Output>> {
        let Some(session) = self.sessions.get(&id) else {
            return Err(Vec::new());
        };
        if request.node_public_key != session.peer || request.verify(&session.nonce).is_err() {
            return Err(self.refuse(
                id,
                ErrorCode::BAD_PROOF,
                "the enrollment proof is not signed by the TLS certificate's node key over this session's nonce".into(),
            ));
        }
        Ok(())
    }

    fn enroll(&mut self, id: SessionId, request: EnrollRequest, now: u64) -> Vec<Output> {
        if let Err(outputs) = self.check_proof(id, &request) {
            return outputs;
        }
        let name = request.name.clone();
        let key = request.node_public_key;
        let known = if let Some(m) = self.config.member(&name) {
            Some((
                m.node_public_key,
                m.wireguard_public_key,
                m.addresses.ipv4.is_none(),
            ))
        } else {
            self.state
                .nodes
                .get(&name)
                .filter(|n| n.kind == NodeKind::Agent)
                .map(|n| (n.node_public_key, n.wireguard_public_key, true))
        };
        let Some((node_key, wireguard_key, dynamic)) = known.filter(|(k, _, _)| *k == key) else {
            let message = match self.member_with_key(&key) {
                Some(owner) => format!(
                    "node key {key} belongs to member {owner:?}, not {name:?}; check the agent's machine name"
                ),
                None => format!(
                    "node key {key} is not a member of instance {:?}; ask the controller's admin for a join token (`wiremesh-controller token create --name NAME`) and start the agent with --join TOKEN",
                    self.config.instance
                ),
            };
            return self.refuse(id, ErrorCode::NOT_A_MEMBER, message);
        };
        if request.wireguard_public_key != wireguard_key {
            return self.refused(
                id,
                format!(
                    "the agent's WireGuard key {} is not the one the controller knows for {name:?} ({wireguard_key}); plan and deploy again",
                    request.wireguard_public_key
                ),
            );
        }
        if self.state.is_revoked(&node_key, &wireguard_key) {
            return self.refuse(
                id,
                ErrorCode::REVOKED,
                format!("the keys of {name:?} are revoked"),
            );
        }
        let mut changes = Vec::new();
        if dynamic && let Err(reason) = self.lease_for(&name, &mut changes) {
            return self.exhausted(id, reason);
        }
        self.admit(id, name, changes, now)
    }

    fn join(&mut self, id: SessionId, join: JoinRequest, now: u64) -> Vec<Output> {
        let request = join.request;
        if let Err(outputs) = self.check_proof(id, &request) {
            return outputs;
        }
        // Saying which is safe: only a holder of the token learns about it.
        let ask = "ask the admin for a new one (`wiremesh-controller token create`)";
        let found =
            token_hash(&join.token).and_then(|hash| Some((hash, self.state.tokens.get(&hash)?)));
        let (hash, name) = match found {
            Some((hash, t)) if t.is_usable(now) => (hash, t.name.clone()),
            Some((_, t)) => {
                let why = match t.used_at {
                    Some(_) => "the join token was used already".to_string(),
                    None => format!(
                        "the join token expired {} s ago",
                        now.saturating_sub(t.expires_at)
                    ),
                };
                return self.refuse(id, ErrorCode::BAD_TOKEN, format!("{why}; {ask}"));
            }
            None => {
                let why = "the join token is unknown (not made here, or expired and forgotten)";
                return self.refuse(id, ErrorCode::BAD_TOKEN, format!("{why}; {ask}"));
            }
        };
        if request.name != name {
            return self.refuse(
                id,
                ErrorCode::BAD_TOKEN,
                format!("this join token admits {name:?}, not {:?}", request.name),
            );
        }
        if self.config.member(&name).is_some() || self.state.nodes.contains_key(&name) {
            return self.refuse(
                id,
                ErrorCode::BAD_TOKEN,
                format!("this join token admits {name:?}, but a member of that name exists by now; ask the admin for a token with another name"),
            );
        }
        let key = request.node_public_key;
        if let Some(owner) = self.member_with_key(&key) {
            return self.refuse(
                id,
                ErrorCode::BAD_MESSAGE,
                format!("node key {key} already belongs to member {owner:?}"),
            );
        }
        if self.state.is_revoked(&key, &request.wireguard_public_key) {
            return self.refuse(id, ErrorCode::REVOKED, format!("node key {key} is revoked"));
        }
        let mut changes = vec![
            Change::UseToken { hash, at: now },
            Change::AddNode {
                name: name.clone(),
                node: Node {
                    kind: NodeKind::Agent,
                    node_public_key: key,
                    wireguard_public_key: request.wireguard_public_key,
                    created_at: now,
                },
            },
        ];
        if let Err(reason) = self.lease_for(&name, &mut changes) {
            return self.exhausted(id, reason);
        }
        self.admit(id, name, changes, now)
    }

    /// Commits the enrollment's changes, then answers with the member's addresses and the netmap.
    fn admit(
        &mut self,
        id: SessionId,
        name: String,
        changes: Vec<Change>,
        now: u64,
    ) -> Vec<Output> {
        let mut outputs = match self.decide(changes, false, now) {
            Ok(outputs) => outputs,
            Err(e) => return self.internal(id, &name, e),
        };
        // The enrolling session gets the netmap in its answer, not as a push.
        outputs.retain(|o| !matches!(o, Output::Send(to, _) | Output::Push(to) if *to == id));
        let Some(session) = self.sessions.get_mut(&id) else {
            return outputs;
        };
        session.phase = Phase::Enrolled { name: name.clone() };
        match &mut self.batch {
            Some(batch) => batch.accepts.push((id, name)),
            None => outputs.extend(self.accept(id, &name)),
        }
        outputs
    }

    /// The answer to an enrolled session: its addresses and the current netmap.
    pub(crate) fn accept(&mut self, id: SessionId, name: &str) -> Vec<Output> {
        if !self.is_enrolled(id) {
            return Vec::new();
        }
        let addresses = self
            .current
            .binary_search_by(|m| m.name.as_str().cmp(name))
            .ok()
            .map(|i| self.current[i].addresses);
        let (Some(addresses), Some(record)) = (addresses, &self.state.epoch) else {
            let e = ControllerError::Refused(format!("{name:?} is missing from the netmap"));
            return self.internal(id, name, e);
        };
        let netmap = record.netmap.clone();
        vec![Output::Send(
            id,
            Message::EnrollResponse(EnrollResponse::Accepted { addresses, netmap }),
        )]
    }

    /// The agent's interface addresses (`ip:port`, its WireGuard port), published as its `Local`
    /// candidates. A report with an entry that is no address, or one that would point other
    /// members elsewhere than at the agent ([`unusable`]), is refused whole.
    fn endpoints(
        &mut self,
        id: SessionId,
        name: &str,
        endpoints: Vec<String>,
        now: u64,
    ) -> Vec<Output> {
        if endpoints.len() > MAX_ENDPOINTS
            || endpoints
                .iter()
                .any(|e| e.is_empty() || e.len() > MAX_ENDPOINT_LEN || e.contains(char::is_control))
        {
            return self.refuse(
                id,
                ErrorCode::BAD_MESSAGE,
                format!(
                    "an endpoint report holds at most {MAX_ENDPOINTS} endpoints of 1 to {MAX_ENDPOINT_LEN} bytes with no control characters"
                ),
            );
        }
        let mut addresses: Vec<SocketAddr> = Vec::with_capacity(endpoints.len());
        for e in &endpoints {
            let why = match e.parse::<SocketAddr>() {
                Ok(addr) => match unusable(addr) {
                    None => {
                        addresses.push(addr);
                        continue;
                    }
                    Some(what) => format!(
                        "{e:?} is {what}; a local candidate is a unicast address other members can reach (not loopback, unspecified, multicast, broadcast or link-local) with a port other than 0"
                    ),
                },
                Err(_) => format!(
                    "{e:?} is not an IP address and port (`198.18.0.1:51820`, `[fd00::1]:51820`)"
                ),
            };
            return self.refuse(
                id,
                ErrorCode::BAD_MESSAGE,
                format!("endpoint report: {why}"),
            );
        }
        let Some(session) = self.sessions.get_mut(&id) else {
            return Vec::new();
        };
        if let Some(last) = session.last_report
            && now < last.saturating_add(MIN_REPORT_INTERVAL)
        {
            return self.refuse(
                id,
                ErrorCode::BAD_MESSAGE,
                format!("endpoint reports may come at most every {MIN_REPORT_INTERVAL} s"),
            );
        }
        session.last_report = Some(now);
        if self.learnt.local.get(name) == Some(&addresses) {
            return Vec::new();
        }
        let old = self.learnt.local.insert(name.to_string(), addresses);
        match self.decide(Vec::new(), false, now) {
            Ok(outputs) => outputs,
            Err(e) => {
                match old {
                    Some(old) => self.learnt.local.insert(name.to_string(), old),
                    None => self.learnt.local.remove(name),
                };
                self.internal(id, name, e)
            }
        }
    }

    /// Member `name` cannot reach `peer` directly: both are told at once to send handshakes to
    /// each other's candidates, when `peer` is connected, at most once per pair and
    /// [`PUNCH_INTERVAL`]. An unknown `peer` gets an error message; the session stays.
    fn punch(&mut self, id: SessionId, name: &str, peer: &str, now: u64) -> Vec<Output> {
        let known = peer != name
            && self
                .current
                .binary_search_by(|m| m.name.as_str().cmp(peer))
                .ok()
                .is_some_and(|i| !self.current[i].flags.contains(Flags::REVOKED));
        if !known {
            let shown: String = peer.chars().take(MAX_ENDPOINT_LEN).collect();
            return vec![Output::Send(
                id,
                Message::Error(ErrorMessage {
                    code: ErrorCode::BAD_MESSAGE,
                    message: format!(
                        "punch: {shown:?} is no other member of the mesh; nothing to punch"
                    ),
                }),
            )];
        }
        // The newest session of the peer's, if it is connected.
        let Some(other) = self
            .sessions
            .iter()
            .rev()
            .find(|(_, s)| matches!(&s.phase, Phase::Enrolled { name } if name == peer))
            .map(|(other, _)| *other)
        else {
            return Vec::new();
        };
        let pair = if name < peer {
            (name.to_string(), peer.to_string())
        } else {
            (peer.to_string(), name.to_string())
        };
        if let Some(last) = self.punches.get(&pair)
            && now < last.saturating_add(PUNCH_INTERVAL)
        {
            return Vec::new();
        }
        // The requester's own budget, charged only for a punch that is carried out.
        let at = Duration::from_secs(now);
        if self.punch_budgets.len() >= 4096 {
            // A budget unused for as long as it takes to refill is the same as a new one.
            let refill = Duration::from_secs_f64(PUNCH_BURST / PUNCHES_PER_SECOND);
            self.punch_budgets
                .retain(|_, b| at.saturating_sub(b.last()) < refill);
        }
        let budget = self
            .punch_budgets
            .entry(name.to_string())
            .or_insert_with(|| Bucket::full(PUNCH_BURST, at));
        if !budget.take(1.0, PUNCHES_PER_SECOND, PUNCH_BURST, at) {
            return Vec::new();
        }
        if self.punches.len() >= 4096 {
            self.punches
                .retain(|_, at| now < at.saturating_add(PUNCH_INTERVAL));
        }
        self.punches.insert(pair, now);
        vec![
            Output::Send(
                id,
                Message::Punch(Punch {
                    peer: peer.to_string(),
                }),
            ),
            Output::Send(
                other,
                Message::Punch(Punch {
                    peer: name.to_string(),
                }),
            ),
        ]
    }

    fn member_with_key(&self, key: &NodePublicKey) -> Option<String> {
        self.config
            .members
            .iter()
            .find(|m| m.node_public_key == *key)
            .map(|m| m.name.clone())
            .or_else(|| {
                self.state
                    .nodes
                    .iter()
                    .find(|(_, n)| n.node_public_key == *key)
                    .map(|(name, _)| name.clone())
            })
    }

    /// An enrollment refused with a reason, then the session closes.
    fn refused(&mut self, id: SessionId, reason: String) -> Vec<Output> {
        self.sessions.remove(&id);
        vec![
            Output::Send(
                id,
                Message::EnrollResponse(EnrollResponse::Refused { reason }),
            ),
            Output::Close(id),
        ]
    }

    fn exhausted(&mut self, id: SessionId, reason: String) -> Vec<Output> {
        let mut outputs = vec![Output::Warn(reason.clone())];
        outputs.extend(self.refused(id, reason));
        outputs
    }

    pub(crate) fn internal(
        &mut self,
        id: SessionId,
        name: &str,
        e: ControllerError,
    ) -> Vec<Output> {
        let mut outputs = vec![Output::Warn(format!(
            "cannot record the enrollment of {name:?}: {e}"
        ))];
        outputs.extend(self.refuse(
            id,
            ErrorCode::INTERNAL,
            "the controller could not record the enrollment; try again later".into(),
        ));
        outputs
    }
}

/// Why other members must not be sent to `addr` as a local candidate, if they must not: it
/// would point them at themselves, at everyone or at a third party's link, not at the agent.
fn unusable(addr: SocketAddr) -> Option<&'static str> {
    if addr.port() == 0 {
        return Some("port 0");
    }
    match addr.ip().to_canonical() {
        ip if ip.is_unspecified() => Some("an unspecified address"),
        ip if ip.is_loopback() => Some("a loopback address"),
        ip if ip.is_multicast() => Some("a multicast address"),
        IpAddr::V4(v4) if v4 == Ipv4Addr::BROADCAST => Some("the broadcast address"),
        IpAddr::V4(v4) if v4.is_link_local() => Some("a link-local address"),
        IpAddr::V6(v6) if v6.is_unicast_link_local() => Some("a link-local address"),
        _ => None,
    }
}

fn kind(message: &Message) -> &'static str {
    match message {
        Message::Hello(_) => "a Hello",
        Message::EnrollRequest(_) => "an EnrollRequest",
        Message::EnrollResponse(_) => "an EnrollResponse",
        Message::NetmapPush(_) => "a NetmapPush",
        Message::EndpointReport(_) => "an EndpointReport",
        Message::Error(_) => "an Error",
        Message::Join(_) => "a Join",
        Message::Punch(_) => "a Punch",
    }
}
