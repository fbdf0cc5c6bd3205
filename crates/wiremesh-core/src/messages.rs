//! Control-plane messages between agents and the controller, encoded with postcard.
//!
//! Evolution rules: the [`Hello`] carries [`PROTOCOL_VERSION`]; enum variants are append-only
//! (postcard encodes the variant index) and a variant's payload never changes: a new shape is a new
//! variant (`FooV2`). Decoding is strict: unknown variants, trailing bytes, inputs over
//! [`MAX_MESSAGE_LEN`] and lists over their limits are errors. Messages travel in frames (see
//! [`crate::frame`]).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::config::Addresses;
use crate::keys::{NodePublicKey, NodeSecret, Signature, VerifyError, WireguardPublicKey};
use crate::netmap::{MAX_ENDPOINTS, MAX_NETMAP_BYTES};

/// The control protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// The largest encoded message: a netmap push of the largest netmap plus headroom.
pub const MAX_MESSAGE_LEN: usize = MAX_NETMAP_BYTES + 4096;
/// Enrollment proofs are signatures over this prefix, the controller's nonce and the request.
pub const ENROLL_CONTEXT: &[u8] = b"wiremesh enroll v1\0";

/// One control-plane message. Append new variants at the end only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    Hello(Hello),
    EnrollRequest(EnrollRequest),
    EnrollResponse(EnrollResponse),
    NetmapPush(NetmapPush),
    EndpointReport(EndpointReport),
    Error(ErrorMessage),
    Join(JoinRequest),
    Punch(Punch),
}

/// The first message each side sends. The nonce is what the other side's proof signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol_version: u32,
    pub instance: String,
    pub node_public_key: NodePublicKey,
    pub nonce: [u8; 32],
}

/// An agent asks to join (or re-join) the mesh; `proof` shows it holds the node key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    pub name: String,
    pub wireguard_public_key: WireguardPublicKey,
    pub node_public_key: NodePublicKey,
    /// The newest netmap epoch the agent holds, so the controller can skip an unneeded push.
    pub last_epoch: Option<u64>,
    pub proof: SignatureBytes,
}

impl EnrollRequest {
    /// A request signed with the node key over the controller's hello nonce.
    pub fn new_signed(
        name: String,
        wireguard_public_key: WireguardPublicKey,
        node: &NodeSecret,
        last_epoch: Option<u64>,
        controller_nonce: &[u8; 32],
    ) -> Self {
        let node_public_key = node.public_key();
        let message = enroll_message(
            controller_nonce,
            &name,
            &wireguard_public_key,
            &node_public_key,
        );
        Self {
            name,
            wireguard_public_key,
            node_public_key,
            last_epoch,
            proof: SignatureBytes(node.sign(&message).to_bytes()),
        }
    }

    /// Checks the proof against the nonce this side sent in its hello.
    pub fn verify(&self, own_nonce: &[u8; 32]) -> Result<(), VerifyError> {
        let message = enroll_message(
            own_nonce,
            &self.name,
            &self.wireguard_public_key,
            &self.node_public_key,
        );
        self.node_public_key
            .verify(&message, &Signature::from_bytes(&self.proof.0))
    }
}

fn enroll_message(
    nonce: &[u8; 32],
    name: &str,
    wireguard: &WireguardPublicKey,
    node: &NodePublicKey,
) -> Vec<u8> {
    let mut message = ENROLL_CONTEXT.to_vec();
    message.extend_from_slice(nonce);
    message.extend_from_slice(wireguard.as_bytes());
    message.extend_from_slice(node.as_bytes());
    message.extend_from_slice(name.as_bytes());
    message
}

/// An agent whose node key the controller does not know asks to join with a single-use token from
/// `wiremesh-controller token create`; the controller answers with an [`EnrollResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    pub token: String,
    pub request: EnrollRequest,
}

/// The controller's answer to an [`EnrollRequest`] or a [`JoinRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnrollResponse {
    /// Enrolled: the member's addresses and the current signed netmap (wire bytes).
    Accepted {
        addresses: Addresses,
        netmap: Vec<u8>,
    },
    Refused {
        reason: String,
    },
}

/// A new signed netmap (wire bytes, see [`crate::netmap::Netmap::decode`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetmapPush {
    pub netmap: Vec<u8>,
}

/// Endpoints (`host:port`) the agent knows for itself; the controller adds the source it observes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointReport {
    #[serde(deserialize_with = "crate::bounded::vec::<_, _, MAX_ENDPOINTS>")]
    pub endpoints: Vec<String>,
}

/// Hole punching. From an agent: "I cannot reach `peer` directly; tell us both". From the
/// controller, sent to both members at once: "`peer` is sending to your candidates now; send
/// handshakes to its candidates", so that each NAT sees outgoing traffic before the other
/// side's packets arrive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Punch {
    pub peer: String,
}

/// An error report; the connection may continue unless the code says otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMessage {
    pub code: ErrorCode,
    pub message: String,
}

/// Error codes: an open set, so an older peer can receive a newer code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    pub const UNSUPPORTED_VERSION: ErrorCode = ErrorCode(1);
    pub const BAD_MESSAGE: ErrorCode = ErrorCode(2);
    pub const BAD_PROOF: ErrorCode = ErrorCode(3);
    pub const NOT_A_MEMBER: ErrorCode = ErrorCode(4);
    pub const REVOKED: ErrorCode = ErrorCode(5);
    pub const INTERNAL: ErrorCode = ErrorCode(6);
    /// The hello names another instance than the one the controller serves.
    pub const WRONG_NETWORK: ErrorCode = ErrorCode(7);
    /// A join token that is unknown, used or expired.
    pub const BAD_TOKEN: ErrorCode = ErrorCode(8);
    /// The other side sent nothing (or too little) for too long.
    pub const TIMEOUT: ErrorCode = ErrorCode(9);
}

/// A 64-byte ed25519 signature as postcard bytes (serde has no impl for `[u8; 64]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignatureBytes(pub [u8; 64]);

impl Serialize for SignatureBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for SignatureBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = SignatureBytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("64 signature bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<SignatureBytes, E> {
                v.try_into()
                    .map(SignatureBytes)
                    .map_err(|_| E::invalid_length(v.len(), &self))
            }
        }
        d.deserialize_bytes(Visitor)
    }
}

/// Why bytes are not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("{0} bytes is more than the {MAX_MESSAGE_LEN} allowed")]
    TooLarge(usize),
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("{0} bytes after the message")]
    TrailingBytes(usize),
}

impl Message {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_else(|e| unreachable!("messages always serialise: {e}"))
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(MessageError::TooLarge(bytes.len()));
        }
        let (message, rest) = postcard::take_from_bytes::<Message>(bytes)
            .map_err(|e| MessageError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(MessageError::TrailingBytes(rest.len()));
        }
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Message> {
        let node = NodeSecret::from_seed([3; 32]);
        let wg = WireguardPublicKey::from_bytes([4; 32]);
        vec![
            Message::Hello(Hello {
                protocol_version: PROTOCOL_VERSION,
                instance: "my-vpn".into(),
                node_public_key: node.public_key(),
                nonce: [5; 32],
            }),
            Message::EnrollRequest(EnrollRequest::new_signed(
                "laptop".into(),
                wg,
                &node,
                Some(3),
                &[5; 32],
            )),
            Message::EnrollResponse(EnrollResponse::Accepted {
                addresses: Addresses {
                    ipv4: Some("100.96.0.9".parse().unwrap()),
                    ipv6: "fd00::9".parse().unwrap(),
                },
                netmap: vec![1, 2, 3],
            }),
            Message::EnrollResponse(EnrollResponse::Refused {
                reason: "revoked".into(),
            }),
            Message::NetmapPush(NetmapPush {
                netmap: vec![9; 100],
            }),
            Message::EndpointReport(EndpointReport {
                endpoints: vec!["198.18.0.2:51820".into()],
            }),
            Message::Error(ErrorMessage {
                code: ErrorCode::BAD_PROOF,
                message: "no".into(),
            }),
            Message::Join(JoinRequest {
                token: "wmj-token".into(),
                request: EnrollRequest::new_signed("phone".into(), wg, &node, None, &[5; 32]),
            }),
        ]
    }

    #[test]
    fn messages_round_trip() {
        for m in samples() {
            assert_eq!(Message::decode(&m.encode()), Ok(m));
        }
    }

    /// The variant index is the first byte: pinning it keeps the enum append-only.
    #[test]
    fn variant_tags_are_stable() {
        let tags: Vec<u8> = samples().iter().map(|m| m.encode()[0]).collect();
        assert_eq!(tags, [0, 1, 2, 2, 3, 4, 5, 6]);
        assert!(matches!(
            Message::decode(&[7]),
            Err(MessageError::Malformed(_))
        ));
    }

    #[test]
    fn strict_decoding() {
        let mut bytes = samples()[0].encode();
        bytes.push(0);
        assert_eq!(Message::decode(&bytes), Err(MessageError::TrailingBytes(1)));
        assert!(matches!(
            Message::decode(&[]),
            Err(MessageError::Malformed(_))
        ));
        // NetmapPush claiming 4 GiB of payload in a 6-byte message.
        assert!(matches!(
            Message::decode(&[3, 0xff, 0xff, 0xff, 0xff, 0x0f]),
            Err(MessageError::Malformed(_))
        ));
    }

    #[test]
    fn enroll_proof_binds_nonce_and_fields() {
        let node = NodeSecret::from_seed([3; 32]);
        let wg = WireguardPublicKey::from_bytes([4; 32]);
        let req = EnrollRequest::new_signed("laptop".into(), wg, &node, None, &[5; 32]);
        assert_eq!(req.verify(&[5; 32]), Ok(()));
        assert_eq!(req.verify(&[6; 32]), Err(VerifyError::BadSignature));
        let renamed = EnrollRequest {
            name: "desktop".into(),
            ..req.clone()
        };
        assert_eq!(renamed.verify(&[5; 32]), Err(VerifyError::BadSignature));
        let rekeyed = EnrollRequest {
            wireguard_public_key: WireguardPublicKey::from_bytes([7; 32]),
            ..req
        };
        assert_eq!(rekeyed.verify(&[5; 32]), Err(VerifyError::BadSignature));
    }
}
