//! The signed network map: the controller's view of the mesh, signed with the network key.
//!
//! Wire format (version 1), nothing may follow it:
//!
//! ```text
//! varint u32   format version (1)
//! varint len   body length, then the body: postcard(NetmapContent)
//! 64 bytes     ed25519 signature by the network key over SIGNING_CONTEXT ‖ body
//! ```
//!
//! The body is the canonical encoding: postcard is deterministic and members are sorted by name
//! with no duplicates. Decoding enforces both and refuses a body that is not exactly the encoding
//! of its content (postcard alone would accept, say, an overlong varint), so a netmap has one
//! byte form. The signature covers the body bytes as received. Decoding rejects unknown versions,
//! trailing bytes, lengths beyond the input or their limit ([`MAX_MEMBERS`], [`MAX_ENDPOINTS`],
//! [`MAX_ROUTES`]) and inputs over [`MAX_NETMAP_BYTES`], and allocates less than twice the input
//! size (`tests/allocation.rs`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::claims::{PrefixClash, find_clashes, owned_prefixes};
use crate::config::{Addresses, PeerConfig};
use crate::keys::{
    NetworkPublicKey, NetworkSecret, NodePublicKey, Signature, VerifyError, WireguardPublicKey,
};

/// The netmap format version this build writes and reads.
pub const NETMAP_VERSION: u32 = 2;
/// Signatures are made over this prefix and the body, so they cannot be replayed as another message.
pub const SIGNING_CONTEXT: &[u8] = b"wiremesh netmap v1\0";
/// The largest encoded netmap accepted (a 10,000-member map is about 1 MB).
pub const MAX_NETMAP_BYTES: usize = 16 << 20;
pub const MAX_MEMBERS: usize = 100_000;
pub const MAX_NAME_LEN: usize = 253;
pub const MAX_ENDPOINTS: usize = 16;
pub const MAX_ENDPOINT_LEN: usize = 262;
pub const MAX_ROUTES: usize = 1024;

/// Why a name or endpoint is refused; reads after the field it describes ("\"machine\" is empty").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TextProblem {
    #[error("is empty")]
    Empty,
    #[error("is {0} bytes long")]
    TooLong(usize),
    #[error("is {0:?}, which holds control characters")]
    ControlCharacters(String),
}

/// The rule for instance, member and peer names: 1 to [`MAX_NAME_LEN`] bytes, no control
/// characters. Names end up on terminals (`netmap show`) and in logs, where control characters
/// could rewrite what the reader sees.
pub(crate) fn check_name(name: &str) -> Result<(), TextProblem> {
    if name.is_empty() {
        return Err(TextProblem::Empty);
    }
    check_printable(name, MAX_NAME_LEN)
}

/// The rule for endpoints: at most [`MAX_ENDPOINT_LEN`] bytes, no control characters (they are
/// printed in warnings when they do not resolve).
pub(crate) fn check_endpoint(endpoint: &str) -> Result<(), TextProblem> {
    check_printable(endpoint, MAX_ENDPOINT_LEN)
}

fn check_printable(text: &str, max_len: usize) -> Result<(), TextProblem> {
    if text.len() > max_len {
        Err(TextProblem::TooLong(text.len()))
    } else if text.contains(char::is_control) {
        Err(TextProblem::ControlCharacters(text.to_owned()))
    } else {
        Ok(())
    }
}

/// Member flags, a bit set. Unknown bits are kept, so an older agent passes them through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Flags(pub u32);

impl Flags {
    /// The member's keys are revoked: tear down its tunnel and refuse its handshakes.
    pub const REVOKED: Flags = Flags(1);
    /// The member is a controller.
    pub const CONTROLLER: Flags = Flags(1 << 1);
    /// The member was enrolled at the controller and is not in the inventory.
    pub const OUTSIDE_INVENTORY: Flags = Flags(1 << 2);
    /// The member's IPv4 address is a dynamic lease.
    pub const DYNAMIC_IPV4: Flags = Flags(1 << 3);

    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
    pub const fn with(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
}

/// One member of the mesh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub name: String,
    pub wireguard_public_key: WireguardPublicKey,
    pub node_public_key: NodePublicKey,
    pub addresses: Addresses,
    /// `host:port`, `[v6]:port`: the endpoints configured in the inventory.
    #[serde(deserialize_with = "crate::bounded::vec::<_, _, MAX_ENDPOINTS>")]
    pub endpoints: Vec<String>,
    /// Prefixes the member advertises.
    #[serde(deserialize_with = "crate::bounded::vec::<_, _, MAX_ROUTES>")]
    pub routes: Vec<IpNet>,
    pub flags: Flags,
    /// Where else the member may be reached, as its controller learnt it: its own interface
    /// addresses and the address its WireGuard socket has behind NAT.
    #[serde(deserialize_with = "crate::bounded::vec::<_, _, MAX_ENDPOINTS>")]
    pub candidates: Vec<Candidate>,
}

/// An address a member may be reached at, besides its configured endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    pub addr: SocketAddr,
    pub kind: CandidateKind,
}

/// How a [`Candidate`] was learnt. Append new kinds at the end only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CandidateKind {
    /// An address of one of the member's interfaces (reached from the same LAN).
    Local,
    /// The address the controller saw the member's WireGuard socket probe from (its NAT's).
    Mapped,
}

impl CandidateKind {
    pub fn name(self) -> &'static str {
        match self {
            CandidateKind::Local => "local",
            CandidateKind::Mapped => "mapped",
        }
    }
}

impl Member {
    /// A member from a plan's peer entry (no flags).
    pub fn from_peer(peer: &PeerConfig) -> Self {
        Self {
            name: peer.name.clone(),
            wireguard_public_key: peer.wireguard_public_key,
            node_public_key: peer.node_public_key,
            addresses: peer.addresses,
            endpoints: peer.endpoints.clone(),
            routes: peer.routes.clone(),
            flags: Flags::default(),
            candidates: Vec::new(),
        }
    }

    /// The member as an agent's peer entry, with the local machine's keepalive setting.
    pub fn to_peer(&self, persistent_keepalive: Option<u16>) -> PeerConfig {
        PeerConfig {
            name: self.name.clone(),
            wireguard_public_key: self.wireguard_public_key,
            node_public_key: self.node_public_key,
            addresses: self.addresses,
            endpoints: self.endpoints.clone(),
            routes: self.routes.clone(),
            persistent_keepalive,
        }
    }
}

/// What a netmap says: the signed content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetmapContent {
    /// The network's identity: its public key. A netmap for another network is refused.
    pub network: NetworkPublicKey,
    /// The instance name, for people reading the map.
    pub instance: String,
    /// Strictly increasing; agents refuse an epoch at or below the last one they accepted.
    pub epoch: u64,
    /// Unix seconds.
    pub issued_at: u64,
    /// Unix seconds; from this moment on the map is refused as new input.
    pub expires_at: u64,
    /// Sorted by name, names unique.
    #[serde(deserialize_with = "crate::bounded::vec::<_, _, MAX_MEMBERS>")]
    pub members: Vec<Member>,
}

/// Why a netmap's content is not well formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    #[error("member {0:?} appears twice")]
    DuplicateMember(String),
    #[error("members are not sorted by name ({0:?} comes after {1:?})")]
    Unsorted(String, String),
    #[error("members {0:?} and {1:?} have the same {2}")]
    DuplicateKey(String, String, &'static str),
    #[error("{0} members; at most {MAX_MEMBERS} are allowed")]
    TooManyMembers(usize),
    #[error("member {0:?}: {1}")]
    BadMember(String, String),
    #[error("the instance name must be 1 to {MAX_NAME_LEN} bytes with no control characters")]
    BadInstanceName,
    #[error("expires_at {expires_at} is not after issued_at {issued_at}")]
    BadValidity { issued_at: u64, expires_at: u64 },
    #[error("{0}")]
    SharedPrefix(PrefixClash),
}

impl NetmapContent {
    /// Sorts the members by name and checks the limits and uniqueness rules decoding enforces.
    pub fn canonicalize(mut self) -> Result<Self, ContentError> {
        self.members.sort_by(|a, b| a.name.cmp(&b.name));
        self.check()?;
        Ok(self)
    }

    fn check(&self) -> Result<(), ContentError> {
        if self.members.len() > MAX_MEMBERS {
            return Err(ContentError::TooManyMembers(self.members.len()));
        }
        if check_name(&self.instance).is_err() {
            return Err(ContentError::BadInstanceName);
        }
        if self.expires_at <= self.issued_at {
            return Err(ContentError::BadValidity {
                issued_at: self.issued_at,
                expires_at: self.expires_at,
            });
        }
        for pair in self.members.windows(2) {
            match pair[0].name.cmp(&pair[1].name) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => {
                    return Err(ContentError::DuplicateMember(pair[1].name.clone()));
                }
                std::cmp::Ordering::Greater => {
                    return Err(ContentError::Unsorted(
                        pair[1].name.clone(),
                        pair[0].name.clone(),
                    ));
                }
            }
        }
        let mut wireguard: BTreeMap<&WireguardPublicKey, &str> = BTreeMap::new();
        let mut node: BTreeMap<&NodePublicKey, &str> = BTreeMap::new();
        let mut ipv6: BTreeMap<Ipv6Addr, &str> = BTreeMap::new();
        let mut ipv4: BTreeMap<Ipv4Addr, &str> = BTreeMap::new();
        for m in &self.members {
            let bad = |what: String| ContentError::BadMember(m.name.clone(), what);
            if check_name(&m.name).is_err() {
                return Err(bad(format!(
                    "name must be 1 to {MAX_NAME_LEN} bytes with no control characters"
                )));
            }
            if m.endpoints.len() > MAX_ENDPOINTS {
                return Err(bad(format!("more than {MAX_ENDPOINTS} endpoints")));
            }
            if m.endpoints.iter().any(|e| check_endpoint(e).is_err()) {
                return Err(bad(format!(
                    "an endpoint is longer than {MAX_ENDPOINT_LEN} bytes or holds control characters"
                )));
            }
            if m.candidates.len() > MAX_ENDPOINTS {
                return Err(bad(format!("more than {MAX_ENDPOINTS} candidates")));
            }
            if m.routes.len() > MAX_ROUTES {
                return Err(bad(format!("more than {MAX_ROUTES} routes")));
            }
            let dup = |first: Option<&str>, what| match first {
                Some(first) => Err(ContentError::DuplicateKey(
                    first.into(),
                    m.name.clone(),
                    what,
                )),
                None => Ok(()),
            };
            dup(
                wireguard.insert(&m.wireguard_public_key, &m.name),
                "WireGuard public key",
            )?;
            dup(node.insert(&m.node_public_key, &m.name), "node public key")?;
            dup(ipv6.insert(m.addresses.ipv6, &m.name), "IPv6 address")?;
            if let Some(a) = m.addresses.ipv4 {
                dup(ipv4.insert(a, &m.name), "IPv4 address")?;
            }
        }
        let claims = self
            .members
            .iter()
            .map(|m| (m.name.as_str(), owned_prefixes(&m.addresses, &m.routes)));
        match find_clashes(claims).into_iter().next() {
            Some(clash) => Err(ContentError::SharedPrefix(clash)),
            None => Ok(()),
        }
    }

    /// The canonical encoding: postcard of the content.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        postcard::to_stdvec(self)
            .unwrap_or_else(|e| unreachable!("netmap content always serialises: {e}"))
    }

    /// Signs the content with the network key. Call [`Self::canonicalize`] first.
    pub fn sign(self, key: &NetworkSecret) -> Netmap {
        let body = self.canonical_bytes();
        let signature = key.sign(&signed_message(&body));
        Netmap {
            content: self,
            body,
            signature,
        }
    }

    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members
            .binary_search_by(|m| m.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.members[i])
    }
}

fn signed_message(body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNING_CONTEXT.len() + body.len());
    message.extend_from_slice(SIGNING_CONTEXT);
    message.extend_from_slice(body);
    message
}

/// A signed netmap as received or built: the content, its exact body bytes and the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netmap {
    content: NetmapContent,
    body: Vec<u8>,
    signature: Signature,
}

/// Why bytes are not a netmap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{0} bytes is more than the {MAX_NETMAP_BYTES} allowed")]
    TooLarge(usize),
    #[error("truncated: {0}")]
    Truncated(&'static str),
    #[error("format version {0}, but this build reads only version {NETMAP_VERSION}")]
    UnsupportedVersion(u32),
    #[error("{0} bytes after the signature")]
    TrailingBytes(usize),
    #[error("malformed body: {0}")]
    Body(String),
    #[error("{0} bytes after the body's content")]
    TrailingBodyBytes(usize),
    #[error("the body is not the canonical encoding of its content")]
    NotCanonical,
    #[error("{0}")]
    Content(#[from] ContentError),
}

/// Why a well-formed netmap is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("netmap is for network {found}, not the pinned network {expected}")]
    WrongNetwork {
        expected: NetworkPublicKey,
        found: NetworkPublicKey,
    },
    #[error("bad signature: {0}")]
    BadSignature(VerifyError),
    #[error("epoch {epoch} is not newer than the last accepted epoch {last}")]
    StaleEpoch { epoch: u64, last: u64 },
    #[error("expired at {expires_at} (now {now})")]
    Expired { expires_at: u64, now: u64 },
}

impl Netmap {
    pub fn content(&self) -> &NetmapContent {
        &self.content
    }
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The wire bytes: postcard of (version, body) is the varint version, then the body with its
    /// varint length; the signature follows.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = postcard::to_stdvec(&(NETMAP_VERSION, self.body.as_slice()))
            .unwrap_or_else(|e| unreachable!("a version and a byte string always serialise: {e}"));
        out.extend_from_slice(&self.signature.to_bytes());
        out
    }

    /// Parses wire bytes; does not check the signature (see [`Self::verify`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_NETMAP_BYTES {
            return Err(DecodeError::TooLarge(bytes.len()));
        }
        let (version, rest) = postcard::take_from_bytes::<u32>(bytes).map_err(|_| {
            DecodeError::Truncated("no format version (a varint of at most 5 bytes)")
        })?;
        if version != NETMAP_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let (body, rest) = postcard::take_from_bytes::<&[u8]>(rest).map_err(|_| {
            DecodeError::Truncated("body length missing, malformed or beyond the input")
        })?;
        let signature: [u8; 64] = match rest.len() {
            64 => rest
                .try_into()
                .map_err(|_| DecodeError::Truncated("signature"))?,
            n if n < 64 => return Err(DecodeError::Truncated("signature shorter than 64 bytes")),
            n => return Err(DecodeError::TrailingBytes(n - 64)),
        };
        let (content, left) = postcard::take_from_bytes::<NetmapContent>(body)
            .map_err(|e| DecodeError::Body(e.to_string()))?;
        if !left.is_empty() {
            return Err(DecodeError::TrailingBodyBytes(left.len()));
        }
        content.check()?;
        if content.canonical_bytes() != body {
            return Err(DecodeError::NotCanonical);
        }
        Ok(Self {
            content,
            body: body.to_vec(),
            signature: Signature::from_bytes(&signature),
        })
    }

    /// Accepts the netmap as new input only if it names the pinned network, carries its signature,
    /// is newer than `last_epoch` (the last accepted, if any) and has not expired at `now` (Unix
    /// seconds).
    pub fn verify(
        &self,
        pinned: &NetworkPublicKey,
        last_epoch: Option<u64>,
        now: u64,
    ) -> Result<&NetmapContent, Rejection> {
        let c = &self.content;
        if c.network != *pinned {
            return Err(Rejection::WrongNetwork {
                expected: *pinned,
                found: c.network,
            });
        }
        pinned
            .verify(&signed_message(&self.body), &self.signature)
            .map_err(Rejection::BadSignature)?;
        if let Some(last) = last_epoch.filter(|last| c.epoch <= *last) {
            return Err(Rejection::StaleEpoch {
                epoch: c.epoch,
                last,
            });
        }
        if now >= c.expires_at {
            return Err(Rejection::Expired {
                expires_at: c.expires_at,
                now,
            });
        }
        Ok(c)
    }
}

/// The members that differ between two netmaps, by name (sorted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetmapDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl NetmapDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

impl fmt::Display for NetmapDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "added [{}], removed [{}], changed [{}]",
            self.added.join(", "),
            self.removed.join(", "),
            self.changed.join(", ")
        )
    }
}

/// Which members were added, removed or changed from `old` to `new`; a merge walk over the
/// name-sorted member lists.
pub fn diff(old: &NetmapContent, new: &NetmapContent) -> NetmapDiff {
    let mut d = NetmapDiff::default();
    let (mut a, mut b) = (old.members.iter().peekable(), new.members.iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(o), None) => {
                d.removed.push(o.name.clone());
                a.next();
            }
            (None, Some(n)) => {
                d.added.push(n.name.clone());
                b.next();
            }
            (Some(o), Some(n)) => match o.name.cmp(&n.name) {
                std::cmp::Ordering::Less => {
                    d.removed.push(o.name.clone());
                    a.next();
                }
                std::cmp::Ordering::Greater => {
                    d.added.push(n.name.clone());
                    b.next();
                }
                std::cmp::Ordering::Equal => {
                    if o != n {
                        d.changed.push(n.name.clone());
                    }
                    a.next();
                    b.next();
                }
            },
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn member(i: u32) -> Member {
        let mut wg = [0u8; 32];
        wg[..4].copy_from_slice(&i.to_be_bytes());
        let mut node = wg;
        node[31] = 1;
        Member {
            candidates: Vec::new(),
            name: format!("m{i:05}"),
            wireguard_public_key: WireguardPublicKey::from_bytes(wg),
            node_public_key: NodePublicKey::from_bytes(node),
            addresses: Addresses {
                ipv4: i.is_multiple_of(2).then(|| Ipv4Addr::from(0x6460_0000 + i)),
                ipv6: Ipv6Addr::from(0xfd00_u128 << 112 | u128::from(i)),
            },
            endpoints: vec![format!("198.18.{}.{}:51820", i / 256 % 256, i % 256)],
            // A prefix of its own: two members may not claim the same one.
            routes: if i.is_multiple_of(3) {
                vec![IpNet::from(std::net::IpAddr::V6(Ipv6Addr::from(
                    0xfd01_u128 << 112 | u128::from(i),
                )))]
            } else {
                vec![]
            },
            flags: Flags(i % 4),
        }
    }

    fn key() -> NetworkSecret {
        NetworkSecret::from_seed([9; 32])
    }

    fn content(members: Vec<Member>, epoch: u64) -> NetmapContent {
        NetmapContent {
            network: key().public_key(),
            instance: "my-vpn".into(),
            epoch,
            issued_at: 1_000,
            expires_at: 2_000,
            members,
        }
        .canonicalize()
        .unwrap()
    }

    #[test]
    fn round_trip_and_verify() {
        let map = content((0..5).rev().map(member).collect(), 7).sign(&key());
        let bytes = map.encode();
        let back = Netmap::decode(&bytes).unwrap();
        assert_eq!(back, map);
        let c = back.verify(&key().public_key(), Some(6), 1_500).unwrap();
        assert_eq!(c.members[0].name, "m00000");
        assert_eq!(c.member("m00003"), Some(&member(3)));
        let peer = c.members[1].to_peer(Some(25));
        assert_eq!(
            Member::from_peer(&peer),
            Member {
                flags: Flags::default(),
                ..member(1)
            }
        );
    }

    #[test]
    fn verify_rejections() {
        let map = content(vec![member(1)], 7).sign(&key());
        let pinned = key().public_key();
        assert_eq!(
            map.verify(&pinned, Some(7), 1_500),
            Err(Rejection::StaleEpoch { epoch: 7, last: 7 })
        );
        assert_eq!(
            map.verify(&pinned, Some(8), 1_500),
            Err(Rejection::StaleEpoch { epoch: 7, last: 8 })
        );
        assert_eq!(
            map.verify(&pinned, None, 2_000),
            Err(Rejection::Expired {
                expires_at: 2_000,
                now: 2_000
            })
        );
        let other = NetworkSecret::from_seed([10; 32]);
        assert!(matches!(
            map.verify(&other.public_key(), None, 1_500),
            Err(Rejection::WrongNetwork { .. })
        ));
        // Signed by another key but claiming our network.
        let forged = content(vec![member(1)], 8).sign(&other);
        assert_eq!(
            forged.verify(&pinned, None, 1_500),
            Err(Rejection::BadSignature(VerifyError::BadSignature))
        );
    }

    #[test]
    fn decode_rejects_malformed_wire_bytes() {
        let bytes = content(vec![member(1), member(2)], 1).sign(&key()).encode();
        let mut v1 = bytes.clone();
        v1[0] = 1;
        assert_eq!(Netmap::decode(&v1), Err(DecodeError::UnsupportedVersion(1)));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(
            Netmap::decode(&trailing),
            Err(DecodeError::TrailingBytes(1))
        );
        assert!(matches!(
            Netmap::decode(&bytes[..bytes.len() - 1]),
            Err(DecodeError::Truncated(_))
        ));
        // A body length far beyond the input.
        let huge = [NETMAP_VERSION as u8, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(matches!(
            Netmap::decode(&huge),
            Err(DecodeError::Truncated(_))
        ));
        assert!(matches!(
            Netmap::decode(&[]),
            Err(DecodeError::Truncated(_))
        ));
        // The epoch 1 of a valid body written as the overlong varint 0x81 0x00.
        let body = content(vec![member(1)], 1).canonical_bytes();
        let epoch_at = 32 + 1 + "my-vpn".len();
        assert_eq!(body[epoch_at], 1);
        let mut overlong = body[..epoch_at].to_vec();
        overlong.extend([0x81, 0x00]);
        overlong.extend(&body[epoch_at + 1..]);
        let mut wire = vec![NETMAP_VERSION as u8];
        wire.extend(postcard::to_stdvec(&overlong.len()).unwrap());
        wire.extend(&overlong);
        wire.extend(key().sign(&signed_message(&overlong)).to_bytes());
        assert_eq!(Netmap::decode(&wire), Err(DecodeError::NotCanonical));
        assert_eq!(
            Netmap::decode(&vec![0; MAX_NETMAP_BYTES + 1]),
            Err(DecodeError::TooLarge(MAX_NETMAP_BYTES + 1))
        );
    }

    /// Builds wire bytes around an arbitrary content, skipping `canonicalize`.
    fn raw(c: &NetmapContent) -> Vec<u8> {
        Netmap {
            body: c.canonical_bytes(),
            signature: key().sign(b"x"),
            content: c.clone(),
        }
        .encode()
    }

    #[test]
    fn decode_rejects_duplicates_and_unsorted_members() {
        let mut c = content(vec![member(1), member(2)], 1);
        c.members[1] = member(1);
        assert_eq!(
            Netmap::decode(&raw(&c)),
            Err(DecodeError::Content(ContentError::DuplicateMember(
                "m00001".into()
            )))
        );
        c.members = vec![member(2), member(1)];
        assert!(matches!(
            Netmap::decode(&raw(&c)),
            Err(DecodeError::Content(ContentError::Unsorted(..)))
        ));
        let mut same_key = member(2);
        same_key.wireguard_public_key = member(1).wireguard_public_key;
        c.members = vec![member(1), same_key];
        assert_eq!(
            Netmap::decode(&raw(&c)),
            Err(DecodeError::Content(ContentError::DuplicateKey(
                "m00001".into(),
                "m00002".into(),
                "WireGuard public key"
            )))
        );
        // A member count far beyond the input fails without allocating for it.
        let mut body = postcard::to_stdvec(&(key().public_key(), "i", 1u64, 1u64, 2u64)).unwrap();
        body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        let mut wire = vec![NETMAP_VERSION as u8];
        wire.extend(postcard::to_stdvec(&body.len()).unwrap());
        wire.extend(&body);
        wire.extend([0u8; 64]);
        assert!(matches!(Netmap::decode(&wire), Err(DecodeError::Body(_))));
    }

    #[test]
    fn canonicalize_sorts_and_checks() {
        let c = content(vec![member(3), member(1), member(2)], 1);
        let names: Vec<&str> = c.members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["m00001", "m00002", "m00003"]);
        let mut bad = c.clone();
        bad.expires_at = bad.issued_at;
        assert!(matches!(
            bad.canonicalize(),
            Err(ContentError::BadValidity { .. })
        ));
        let mut bad = c.clone();
        bad.members[0].name = "m\u{1b}[2J".into();
        assert_eq!(
            bad.canonicalize().unwrap_err().to_string(),
            "member \"m\\u{1b}[2J\": name must be 1 to 253 bytes with no control characters"
        );
        let mut bad = c.clone();
        bad.members[1].endpoints = vec!["198.18.0.1:1\n".into()];
        assert!(bad.canonicalize().is_err());
        let mut bad = c.clone();
        bad.instance = "a\rb".into();
        assert_eq!(bad.canonicalize(), Err(ContentError::BadInstanceName));
        let mut bad = c;
        bad.instance = String::new();
        assert_eq!(bad.canonicalize(), Err(ContentError::BadInstanceName));
    }

    #[test]
    fn a_prefix_claimed_by_two_members_is_refused() {
        let mut a = member(1);
        let mut b = member(2);
        a.routes = vec!["100.77.9.0/24".parse().unwrap()];
        // b's route is a's IPv6 address: the same prefix as a's /128.
        b.routes = vec![IpNet::from(std::net::IpAddr::V6(a.addresses.ipv6))];
        let unchecked = |members: Vec<Member>| NetmapContent {
            network: key().public_key(),
            instance: "my-vpn".into(),
            epoch: 1,
            issued_at: 1_000,
            expires_at: 2_000,
            members,
        };
        let err = unchecked(vec![a.clone(), b]).canonicalize().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "members \"m00001\" and \"m00002\" both claim {}/128: a prefix has one owner (a \
                 prefix nested inside another member's is allowed, and the longest one decides)",
                a.addresses.ipv6
            )
        );
        let mut nested = member(2);
        nested.routes = vec!["100.77.9.128/25".parse().unwrap()];
        assert!(unchecked(vec![a, nested]).canonicalize().is_ok());
    }

    #[test]
    fn name_and_endpoint_rules() {
        assert_eq!(check_name(""), Err(TextProblem::Empty));
        assert_eq!(check_name(&"n".repeat(MAX_NAME_LEN)), Ok(()));
        assert_eq!(
            check_name(&"n".repeat(MAX_NAME_LEN + 1)),
            Err(TextProblem::TooLong(MAX_NAME_LEN + 1))
        );
        assert_eq!(
            check_name("a\u{7f}b").unwrap_err().to_string(),
            "is \"a\\u{7f}b\", which holds control characters"
        );
        assert_eq!(check_name("sérvér-Ω"), Ok(()));
        assert_eq!(check_endpoint(""), Ok(()));
        assert_eq!(check_endpoint(&"h".repeat(MAX_ENDPOINT_LEN)), Ok(()));
        assert_eq!(
            check_endpoint(&"h".repeat(MAX_ENDPOINT_LEN + 1)),
            Err(TextProblem::TooLong(MAX_ENDPOINT_LEN + 1))
        );
        assert!(matches!(
            check_endpoint("198.18.0.1:1\n"),
            Err(TextProblem::ControlCharacters(_))
        ));
    }

    #[test]
    fn diff_lists_added_removed_changed() {
        let old = content(vec![member(1), member(2), member(3)], 1);
        let mut changed = member(3);
        changed.flags = changed.flags.with(Flags::OUTSIDE_INVENTORY);
        let new = content(vec![member(2), changed, member(4)], 2);
        assert_eq!(
            diff(&old, &new),
            NetmapDiff {
                added: vec!["m00004".into()],
                removed: vec!["m00001".into()],
                changed: vec!["m00003".into()]
            }
        );
        assert!(diff(&new, &new).is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn encode_decode_round_trip(ids in proptest::collection::btree_set(0u32..1_000_000, 0..40), epoch: u64) {
            let map = content(ids.into_iter().map(member).collect(), epoch).sign(&key());
            let back = Netmap::decode(&map.encode()).unwrap();
            prop_assert_eq!(&back, &map);
        }

        /// Any single flipped bit makes the bytes undecodable or unverifiable.
        #[test]
        fn flipped_bit_fails(ids in proptest::collection::btree_set(0u32..1_000, 1..8), bit: proptest::sample::Index) {
            let bytes = content(ids.into_iter().map(member).collect(), 5).sign(&key()).encode();
            let mut flipped = bytes.clone();
            let i = bit.index(bytes.len() * 8);
            flipped[i / 8] ^= 1 << (i % 8);
            if let Ok(map) = Netmap::decode(&flipped) {
                prop_assert!(map.verify(&key().public_key(), Some(4), 1_500).is_err());
            }
        }

        /// An epoch at or below the last accepted one is refused, a higher one accepted.
        #[test]
        fn epochs_never_go_backwards(epoch in 0u64..u64::MAX, last in 0u64..u64::MAX) {
            let map = content(vec![member(1)], epoch).sign(&key());
            let verdict = map.verify(&key().public_key(), Some(last), 1_500);
            if epoch <= last {
                prop_assert_eq!(verdict, Err(Rejection::StaleEpoch { epoch, last }));
            } else {
                prop_assert!(verdict.is_ok());
            }
        }
    }
}
