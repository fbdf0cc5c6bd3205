//! The control-channel client the agent uses: connect to the controller over QUIC with mutual
//! TLS (the controller's node key pinned), say hello, enroll (or join with a token), then wait for
//! netmap pushes. Every wait is bounded by the caller's timeout or by QUIC's idle timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use wiremesh_core::config::Addresses;
use wiremesh_core::frame::MAX_FRAME_LEN;
use wiremesh_core::keys::{Identity, NodePublicKey};
use wiremesh_core::messages::{
    EndpointReport, EnrollRequest, EnrollResponse, ErrorCode, Hello, JoinRequest, Message,
    PROTOCOL_VERSION, Punch,
};

use crate::tls::{SERVER_NAME, TlsError, client_config};
use crate::wire::{FrameReader, WireError, write_message};

/// Keepalives hold NAT mappings open and tell the controller the agent is alive.
pub const KEEPALIVE: Duration = Duration::from_secs(15);
/// A connection silent for this long is gone.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Who the agent is and whom it talks to.
#[derive(Debug, Clone)]
pub struct ControlSettings {
    pub instance: String,
    pub name: String,
    pub identity: Identity,
    /// The controller's node key, pinned from the agent's configuration.
    pub controller: NodePublicKey,
    /// A join token, for an agent the controller does not know yet.
    pub join: Option<String>,
    pub last_epoch: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot reach the controller at {addr}: {detail}")]
    Connect { addr: SocketAddr, detail: String },
    #[error("{0}")]
    Tls(#[from] TlsError),
    #[error("the controller refused the enrollment: {0}")]
    Refused(String),
    #[error("the controller reported an error (code {}): {message}", code.0)]
    Controller { code: ErrorCode, message: String },
    #[error("the controller closed the connection: {0}")]
    Closed(String),
    #[error("the controller broke the protocol: {0}")]
    Protocol(String),
    #[error("no answer from the controller within {0:?}")]
    Timeout(Duration),
}

impl From<WireError> for ControlError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Read(quinn::ReadError::ConnectionLost(lost))
            | WireError::Write(quinn::WriteError::ConnectionLost(lost)) => {
                ControlError::Closed(lost.to_string())
            }
            other => ControlError::Protocol(other.to_string()),
        }
    }
}

/// The transport settings of an agent's connection.
pub fn client_transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(KEEPALIVE));
    t.max_idle_timeout(IDLE_TIMEOUT.try_into().ok());
    t.max_concurrent_uni_streams(0u8.into());
    Arc::new(t)
}

/// An enrolled agent's open session.
pub struct Session {
    connection: quinn::Connection,
    send: quinn::SendStream,
    reader: FrameReader,
}

/// What enrollment gave.
pub struct Enrolled {
    pub addresses: Addresses,
    /// The signed netmap's wire bytes.
    pub netmap: Vec<u8>,
    pub session: Session,
}

/// Connects to the controller at `addr` and enrolls, all within `timeout`.
pub async fn enroll(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    settings: &ControlSettings,
    timeout: Duration,
) -> Result<Enrolled, ControlError> {
    tokio::time::timeout(timeout, enroll_within(endpoint, addr, settings))
        .await
        .map_err(|_| ControlError::Timeout(timeout))?
}

async fn enroll_within(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    settings: &ControlSettings,
) -> Result<Enrolled, ControlError> {
    let node = settings.identity.node_secret();
    let config = client_config(node, settings.controller, client_transport())?;
    let connect = |detail: String| ControlError::Connect { addr, detail };
    let connection = endpoint
        .connect_with(config, addr, SERVER_NAME)
        .map_err(|e| connect(e.to_string()))?
        .await
        .map_err(|e| connect(e.to_string()))?;
    let (mut send, recv) = connection
        .open_bi()
        .await
        .map_err(|e| ControlError::Closed(e.to_string()))?;
    let mut reader = FrameReader::new(recv, MAX_FRAME_LEN);
    let mut nonce = [0u8; 32];
    getrandom::fill(&mut nonce).map_err(|e| connect(format!("no random numbers: {e}")))?;
    let hello = Message::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        instance: settings.instance.clone(),
        node_public_key: node.public_key(),
        nonce,
    });
    write_message(&mut send, &hello).await?;
    let controller_nonce = match next_message(&mut reader).await? {
        Message::Hello(h) if h.node_public_key == settings.controller => h.nonce,
        Message::Hello(h) => {
            return Err(ControlError::Protocol(format!(
                "the hello names node key {}, not the pinned {}",
                h.node_public_key, settings.controller
            )));
        }
        other => return Err(unexpected(other, "a Hello")),
    };
    let request = EnrollRequest::new_signed(
        settings.name.clone(),
        settings.identity.wireguard_public_key(),
        node,
        settings.last_epoch,
        &controller_nonce,
    );
    let message = match &settings.join {
        Some(token) => Message::Join(JoinRequest {
            token: token.clone(),
            request,
        }),
        None => Message::EnrollRequest(request),
    };
    write_message(&mut send, &message).await?;
    match next_message(&mut reader).await? {
        Message::EnrollResponse(EnrollResponse::Accepted { addresses, netmap }) => Ok(Enrolled {
            addresses,
            netmap,
            session: Session {
                connection,
                send,
                reader,
            },
        }),
        Message::EnrollResponse(EnrollResponse::Refused { reason }) => {
            Err(ControlError::Refused(reason))
        }
        other => Err(unexpected(other, "an EnrollResponse")),
    }
}

/// The next message; an error message from the controller is an error.
async fn next_message(reader: &mut FrameReader) -> Result<Message, ControlError> {
    let payload = reader
        .next()
        .await?
        .ok_or_else(|| ControlError::Closed("the stream ended".into()))?;
    match Message::decode(&payload).map_err(|e| ControlError::Protocol(e.to_string()))? {
        Message::Error(e) => Err(ControlError::Controller {
            code: e.code,
            message: e.message,
        }),
        m => Ok(m),
    }
}

fn unexpected(message: Message, expected: &str) -> ControlError {
    let text = format!("{message:?}");
    let head: String = text.chars().take(80).collect();
    ControlError::Protocol(format!("expected {expected}, got {head}"))
}

/// What the controller pushes to an enrolled agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Push {
    /// A new netmap (wire bytes).
    Netmap(Vec<u8>),
    /// The member of this name sends handshakes to our candidates now: send to its.
    Punch(String),
    /// The controller refused something this agent sent.
    Error(String),
}

impl Session {
    /// The next netmap the controller pushes (wire bytes); a punch is an error here.
    pub async fn next_netmap(&mut self) -> Result<Vec<u8>, ControlError> {
        match next_message(&mut self.reader).await? {
            Message::NetmapPush(push) => Ok(push.netmap),
            other => Err(unexpected(other, "a NetmapPush")),
        }
    }

    /// The next push. Cancel-safe: a push that has not fully arrived stays for the next call.
    /// An error message is a push too: the controller closes the session after the errors that
    /// end it (the next call then fails), and keeps it after the others (a punch towards a
    /// member it does not know).
    pub async fn next_push(&mut self) -> Result<Push, ControlError> {
        let payload = self
            .reader
            .next()
            .await?
            .ok_or_else(|| ControlError::Closed("the stream ended".into()))?;
        match Message::decode(&payload).map_err(|e| ControlError::Protocol(e.to_string()))? {
            Message::NetmapPush(push) => Ok(Push::Netmap(push.netmap)),
            Message::Punch(punch) => Ok(Push::Punch(punch.peer)),
            Message::Error(e) => Ok(Push::Error(format!("{} (code {})", e.message, e.code.0))),
            other => Err(unexpected(other, "a NetmapPush or a Punch")),
        }
    }

    /// Asks the controller to make `peer` and this agent punch at once.
    pub async fn punch(&mut self, peer: String) -> Result<(), ControlError> {
        let punch = Message::Punch(Punch { peer });
        Ok(write_message(&mut self.send, &punch).await?)
    }

    /// Tells the controller where the agent can be reached.
    pub async fn report_endpoints(&mut self, endpoints: Vec<String>) -> Result<(), ControlError> {
        let report = Message::EndpointReport(EndpointReport { endpoints });
        Ok(write_message(&mut self.send, &report).await?)
    }

    pub fn connection(&self) -> &quinn::Connection {
        &self.connection
    }
}
