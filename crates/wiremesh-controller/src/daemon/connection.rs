//! One agent connection: the TLS handshake, one control stream, a reader that hands frames to the
//! core and a writer that sends what the core decided. Every phase is bounded: the handshake and
//! the opening of the stream by [`Limits::handshake`], hello plus enrollment by
//! [`Limits::enroll`], frames by [`MAX_AGENT_FRAME`], streams by the transport's limit of one, and
//! an idle connection by QUIC's idle timeout.

use std::time::Duration;

use tokio::sync::mpsc;
use wiremesh_core::messages::ErrorCode;
use wiremesh_proto::tls::peer_node_key;
use wiremesh_proto::wire::{FrameReader, MAX_AGENT_FRAME, WireError, write_frame, write_message};

use super::Limits;
use super::core::{Command, CoreHandle, OUTBOX, Outgoing};

/// QUIC application close codes: the core's error codes, 0 for a normal end.
fn close_code(code: ErrorCode) -> quinn::VarInt {
    quinn::VarInt::from_u32(u32::from(code.0))
}

/// How long a closing connection waits for the agent to read the last message.
const LINGER: Duration = Duration::from_secs(2);
/// How often a connection's received datagrams are looked at, so that an agent that only sends
/// QUIC keepalives still shows a recent last contact.
const ALIVE_CHECK: Duration = Duration::from_secs(5);

pub async fn serve(incoming: quinn::Incoming, core: CoreHandle, limits: Limits) {
    let remote = incoming.remote_address();
    let connection = match tokio::time::timeout(limits.handshake, incoming).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!("handshake with {remote} failed: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(
                "handshake with {remote} took longer than {:?}",
                limits.handshake
            );
            return;
        }
    };
    let Some(peer) = peer_node_key(&connection) else {
        connection.close(
            close_code(ErrorCode::BAD_PROOF),
            b"no ed25519 node key in the client certificate",
        );
        return;
    };
    let (send, recv) = match tokio::time::timeout(limits.handshake, connection.accept_bi()).await {
        Ok(Ok(streams)) => streams,
        Ok(Err(_)) => return,
        Err(_) => {
            let reason = format!(
                "no control stream opened within {} s",
                limits.handshake.as_secs_f32()
            );
            connection.close(close_code(ErrorCode::TIMEOUT), reason.as_bytes());
            return;
        }
    };
    let mut nonce = [0u8; 32];
    if getrandom::fill(&mut nonce).is_err() {
        connection.close(close_code(ErrorCode::INTERNAL), b"no random numbers");
        return;
    }
    let (outbox, outgoing) = mpsc::channel(OUTBOX);
    let Some(id) = core
        .ask(|reply| Command::Connect {
            peer,
            remote: remote.to_string(),
            nonce,
            outbox,
            reply,
        })
        .await
    else {
        return;
    };
    let writer = tokio::spawn(write(connection.clone(), send, outgoing));
    tokio::select! {
        () = read(recv, id, &core, &limits) => {}
        () = report_alive(&connection, id, &core) => {}
    }
    core.send(Command::Disconnect { id });
    let _ = writer.await;
}

/// Tells the core whenever datagrams arrived since the last look; never returns.
async fn report_alive(connection: &quinn::Connection, id: u64, core: &CoreHandle) {
    let mut seen = connection.stats().udp_rx.datagrams;
    loop {
        tokio::time::sleep(ALIVE_CHECK).await;
        let now = connection.stats().udp_rx.datagrams;
        if now != seen {
            seen = now;
            core.send(Command::Alive { id });
        }
    }
}

async fn read(recv: quinn::RecvStream, id: u64, core: &CoreHandle, limits: &Limits) {
    let mut reader = FrameReader::new(recv, MAX_AGENT_FRAME);
    let deadline = tokio::time::Instant::now() + limits.enroll;
    // Hello and enrollment must arrive before the deadline; after them QUIC's idle timeout and
    // keepalives decide.
    for received in 0u32.. {
        let next = if received < 2 {
            match tokio::time::timeout_at(deadline, reader.next()).await {
                Ok(next) => next,
                Err(_) => {
                    let message = format!(
                        "hello and enrollment did not arrive within {} s",
                        limits.enroll.as_secs_f32()
                    );
                    core.send(Command::Reject {
                        id,
                        code: ErrorCode::TIMEOUT,
                        message,
                    });
                    return;
                }
            }
        } else {
            reader.next().await
        };
        match next {
            Ok(Some(payload)) => core.send(Command::Receive { id, payload }),
            Ok(None) => return,
            Err(WireError::Frame(e)) => {
                core.send(Command::Reject {
                    id,
                    code: ErrorCode::BAD_MESSAGE,
                    message: e.to_string(),
                });
                return;
            }
            Err(_) => return,
        }
    }
}

async fn write(
    connection: quinn::Connection,
    mut send: quinn::SendStream,
    mut outgoing: mpsc::Receiver<Outgoing>,
) {
    while let Some(next) = outgoing.recv().await {
        match next {
            Outgoing::Message(message) => {
                if write_message(&mut send, &message).await.is_err() {
                    break;
                }
            }
            Outgoing::Frame(frame) => {
                if write_frame(&mut send, frame).await.is_err() {
                    break;
                }
            }
            Outgoing::Close => {
                let _ = send.finish();
                let _ = tokio::time::timeout(LINGER, send.stopped()).await;
                break;
            }
        }
    }
    connection.close(
        quinn::VarInt::from_u32(0),
        b"session closed by the controller",
    );
}
