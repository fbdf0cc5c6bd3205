//! The datagrams that share the WireGuard UDP port with the data: an agent's endpoint probe to a
//! controller, the controller's signed answer (the address it saw, like STUN), and WireGuard
//! packets relayed through the controller.
//!
//! WireGuard's own messages start with their type, 1 to 4, and three zero bytes. Ours start with
//! 0x10 to 0x12 and three zero bytes, so the first byte tells them apart, and a stock WireGuard
//! peer drops ours as an unknown type. A probe is longer than its reply, so the controller never
//! amplifies traffic towards a forged source.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use sha2::{Digest, Sha256};

use crate::keys::{NodePublicKey, NodeSecret, Signature};

/// First byte of a probe (agent → controller).
pub const PROBE: u8 = 0x10;
/// First byte of a probe reply (controller → agent).
pub const PROBE_REPLY: u8 = 0x11;
/// First byte of a relayed WireGuard packet (either direction).
pub const RELAY: u8 = 0x12;

/// The type byte and three zero bytes, as in WireGuard's header.
const TYPE_LEN: usize = 4;
/// Bytes of a probe's transaction id.
pub const TXID_LEN: usize = 16;
const SIG_LEN: usize = 64;
/// Bytes of an encoded socket address: the IPv6 (or v4-mapped) address and the port.
const ADDR_LEN: usize = 18;

/// Bytes of a probe: header, node key, transaction id, Unix milliseconds, signature.
pub const PROBE_LEN: usize = TYPE_LEN + 32 + TXID_LEN + 8 + SIG_LEN;
/// Bytes of a probe reply: header, transaction id, observed address, signature.
pub const PROBE_REPLY_LEN: usize = TYPE_LEN + TXID_LEN + ADDR_LEN + SIG_LEN;
/// Bytes in front of a relayed WireGuard packet: header and the other member's [`PeerId`].
pub const RELAY_HEADER_LEN: usize = TYPE_LEN + 8;

const PROBE_CONTEXT: &[u8] = b"wiremesh probe v1\0";
const REPLY_CONTEXT: &[u8] = b"wiremesh probe reply v1\0";

/// A member as the relay names it: the first 8 bytes of the SHA-256 of its WireGuard public key.
/// Towards the relay it names the destination, from the relay the source. A hash, not the key's
/// own bytes: a member declares its key when it joins, and must not be able to pick one whose id
/// clashes with another member's (that would take the relay from both) for less than 2^64 work.
pub type PeerId = [u8; 8];

const PEER_ID_CONTEXT: &[u8] = b"wiremesh relay id v1\0";

/// The [`PeerId`] of a member with this WireGuard public key.
pub fn peer_id(wireguard_public_key: &[u8; 32]) -> PeerId {
    let digest = Sha256::new()
        .chain_update(PEER_ID_CONTEXT)
        .chain_update(wireguard_public_key)
        .finalize();
    let mut id = [0; 8];
    id.copy_from_slice(&digest[..8]);
    id
}

/// What kind of datagram this is, by its first four bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A WireGuard message (or garbage, which WireGuard drops).
    Wireguard,
    Probe,
    ProbeReply,
    Relay,
}

/// Classifies a datagram by its header; only WireGuard's and ours have the three zero bytes.
pub fn kind(datagram: &[u8]) -> Kind {
    match datagram {
        [PROBE, 0, 0, 0, ..] => Kind::Probe,
        [PROBE_REPLY, 0, 0, 0, ..] => Kind::ProbeReply,
        [RELAY, 0, 0, 0, ..] => Kind::Relay,
        _ => Kind::Wireguard,
    }
}

/// A member asking a controller which address its WireGuard socket has from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub node_public_key: NodePublicKey,
    /// Random; the reply repeats it.
    pub txid: [u8; TXID_LEN],
    /// When it was signed (Unix milliseconds). The controller takes each member's probes only in
    /// increasing order and within a window around its own clock, so a captured probe replayed
    /// from elsewhere moves nothing.
    pub unix_ms: u64,
}

impl Probe {
    fn signed_bytes(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(PROBE_CONTEXT.len() + 32 + TXID_LEN + 8);
        m.extend_from_slice(PROBE_CONTEXT);
        m.extend_from_slice(self.node_public_key.as_bytes());
        m.extend_from_slice(&self.txid);
        m.extend_from_slice(&self.unix_ms.to_be_bytes());
        m
    }

    /// The probe signed with the member's node key.
    pub fn encode(&self, key: &NodeSecret) -> [u8; PROBE_LEN] {
        let sig = key.sign(&self.signed_bytes());
        let mut out = [0; PROBE_LEN];
        out[0] = PROBE;
        let mut at = TYPE_LEN;
        for part in [
            &self.node_public_key.as_bytes()[..],
            &self.txid,
            &self.unix_ms.to_be_bytes(),
            &sig.to_bytes(),
        ] {
            out[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        out
    }

    /// Reads a probe without checking its signature: the caller looks the key up first, so a
    /// stranger's probe costs no signature check (see [`Probe::verify`]).
    pub fn decode(datagram: &[u8]) -> Option<(Probe, Signature)> {
        if datagram.len() != PROBE_LEN || kind(datagram) != Kind::Probe {
            return None;
        }
        let d = &datagram[TYPE_LEN..];
        let probe = Probe {
            node_public_key: NodePublicKey::from_bytes(d[..32].try_into().ok()?),
            txid: d[32..32 + TXID_LEN].try_into().ok()?,
            unix_ms: u64::from_be_bytes(d[32 + TXID_LEN..40 + TXID_LEN].try_into().ok()?),
        };
        let sig = Signature::from_bytes(d[40 + TXID_LEN..].try_into().ok()?);
        Some((probe, sig))
    }

    /// Whether `sig` is the node key's signature of this probe.
    pub fn verify(&self, sig: &Signature) -> bool {
        self.node_public_key
            .verify(&self.signed_bytes(), sig)
            .is_ok()
    }
}

/// A controller's answer to a probe: the source address it saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeReply {
    pub txid: [u8; TXID_LEN],
    pub observed: SocketAddr,
}

impl ProbeReply {
    fn signed_bytes(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(REPLY_CONTEXT.len() + TXID_LEN + ADDR_LEN);
        m.extend_from_slice(REPLY_CONTEXT);
        m.extend_from_slice(&self.txid);
        m.extend_from_slice(&encode_addr(self.observed));
        m
    }

    /// The reply signed with the controller's node key.
    pub fn encode(&self, key: &NodeSecret) -> [u8; PROBE_REPLY_LEN] {
        let sig = key.sign(&self.signed_bytes());
        let mut out = [0; PROBE_REPLY_LEN];
        out[0] = PROBE_REPLY;
        out[TYPE_LEN..TYPE_LEN + TXID_LEN].copy_from_slice(&self.txid);
        out[TYPE_LEN + TXID_LEN..TYPE_LEN + TXID_LEN + ADDR_LEN]
            .copy_from_slice(&encode_addr(self.observed));
        out[TYPE_LEN + TXID_LEN + ADDR_LEN..].copy_from_slice(&sig.to_bytes());
        out
    }

    /// The transaction id of what looks like a reply, read without checking anything else: a
    /// receiver matches it against its probe in flight before it pays for the signature check.
    pub fn peek_txid(datagram: &[u8]) -> Option<[u8; TXID_LEN]> {
        if datagram.len() != PROBE_REPLY_LEN || kind(datagram) != Kind::ProbeReply {
            return None;
        }
        datagram[TYPE_LEN..TYPE_LEN + TXID_LEN].try_into().ok()
    }

    /// The reply, if it is well formed and signed by `controller`.
    pub fn decode(datagram: &[u8], controller: &NodePublicKey) -> Option<ProbeReply> {
        if datagram.len() != PROBE_REPLY_LEN || kind(datagram) != Kind::ProbeReply {
            return None;
        }
        let d = &datagram[TYPE_LEN..];
        let reply = ProbeReply {
            txid: d[..TXID_LEN].try_into().ok()?,
            observed: decode_addr(d[TXID_LEN..TXID_LEN + ADDR_LEN].try_into().ok()?),
        };
        let sig = Signature::from_bytes(d[TXID_LEN + ADDR_LEN..].try_into().ok()?);
        controller
            .verify(&reply.signed_bytes(), &sig)
            .ok()
            .map(|_| reply)
    }
}

fn encode_addr(addr: SocketAddr) -> [u8; ADDR_LEN] {
    let ip = match addr.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    let mut out = [0; ADDR_LEN];
    out[..16].copy_from_slice(&ip.octets());
    out[16..].copy_from_slice(&addr.port().to_be_bytes());
    out
}

fn decode_addr(bytes: [u8; ADDR_LEN]) -> SocketAddr {
    let mut ip = [0; 16];
    ip.copy_from_slice(&bytes[..16]);
    let port = u16::from_be_bytes([bytes[16], bytes[17]]);
    SocketAddr::new(Ipv6Addr::from(ip).to_canonical(), port)
}

/// Writes the relay header naming `peer` in front of a WireGuard packet.
pub fn write_relay_header(out: &mut [u8; RELAY_HEADER_LEN], peer: PeerId) {
    out[..TYPE_LEN].copy_from_slice(&[RELAY, 0, 0, 0]);
    out[TYPE_LEN..].copy_from_slice(&peer);
}

/// Splits a relayed datagram into the [`PeerId`] it names and the WireGuard packet it carries.
pub fn split_relay(datagram: &[u8]) -> Option<(PeerId, &[u8])> {
    if datagram.len() <= RELAY_HEADER_LEN || kind(datagram) != Kind::Relay {
        return None;
    }
    let id = datagram[TYPE_LEN..RELAY_HEADER_LEN].try_into().ok()?;
    Some((id, &datagram[RELAY_HEADER_LEN..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> NodeSecret {
        NodeSecret::from_seed([n; 32])
    }

    #[test]
    fn a_probe_round_trips_and_only_its_own_key_verifies_it() {
        let probe = Probe {
            node_public_key: key(1).public_key(),
            txid: [7; TXID_LEN],
            unix_ms: 1_700_000_000_123,
        };
        let bytes = probe.encode(&key(1));
        assert_eq!(kind(&bytes), Kind::Probe);
        let (decoded, sig) = Probe::decode(&bytes).unwrap();
        assert_eq!(decoded, probe);
        assert!(decoded.verify(&sig));

        let forged = Probe {
            node_public_key: key(1).public_key(),
            ..probe.clone()
        }
        .encode(&key(2));
        let (decoded, sig) = Probe::decode(&forged).unwrap();
        assert!(!decoded.verify(&sig), "signed by another key");

        let mut tampered = bytes;
        tampered[PROBE_LEN - SIG_LEN - 1] ^= 1;
        let (decoded, sig) = Probe::decode(&tampered).unwrap();
        assert!(!decoded.verify(&sig), "time changed after signing");
    }

    #[test]
    fn a_reply_needs_the_controllers_signature_and_is_shorter_than_a_probe() {
        const { assert!(PROBE_REPLY_LEN < PROBE_LEN) };
        for observed in ["198.18.0.7:40000", "[fd00:18::7]:51820"] {
            let reply = ProbeReply {
                txid: [3; TXID_LEN],
                observed: observed.parse().unwrap(),
            };
            let bytes = reply.encode(&key(9));
            assert_eq!(
                ProbeReply::decode(&bytes, &key(9).public_key()),
                Some(reply)
            );
            assert_eq!(ProbeReply::decode(&bytes, &key(8).public_key()), None);
            let mut tampered = bytes;
            tampered[TYPE_LEN + TXID_LEN + 15] ^= 1;
            assert_eq!(ProbeReply::decode(&tampered, &key(9).public_key()), None);
        }
    }

    #[test]
    fn datagrams_are_told_apart_by_their_first_four_bytes() {
        for t in 1..=4u8 {
            assert_eq!(kind(&[t, 0, 0, 0, 9, 9]), Kind::Wireguard);
        }
        assert_eq!(kind(&[RELAY, 0, 0, 1]), Kind::Wireguard);
        assert_eq!(kind(&[RELAY]), Kind::Wireguard);
        assert_eq!(kind(&[]), Kind::Wireguard);
        assert!(Probe::decode(&[PROBE, 0, 0, 0]).is_none());
        assert!(ProbeReply::decode(&[0; PROBE_REPLY_LEN], &key(1).public_key()).is_none());
    }

    #[test]
    fn relay_headers_name_a_peer_in_front_of_the_packet() {
        let id = peer_id(&[5; 32]);
        let mut datagram = vec![0; RELAY_HEADER_LEN];
        let header: &mut [u8; RELAY_HEADER_LEN] =
            (&mut datagram[..RELAY_HEADER_LEN]).try_into().unwrap();
        write_relay_header(header, id);
        datagram.extend_from_slice(&[4, 0, 0, 0, 1, 2, 3]);
        assert_eq!(kind(&datagram), Kind::Relay);
        let (got, inner) = split_relay(&datagram).unwrap();
        assert_eq!(got, id);
        assert_eq!(inner, &[4, 0, 0, 0, 1, 2, 3]);
        assert!(
            split_relay(&datagram[..RELAY_HEADER_LEN]).is_none(),
            "nothing inside"
        );
    }
}
