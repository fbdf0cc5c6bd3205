//! What the controller has decided: the stored state and the changes that move it on.
//!
//! A [`Change`] is one decision (a lease, a join token, a revocation, a new epoch...). Stores commit
//! a batch of changes atomically and the controller applies the same batch to its own copy of the
//! [`State`] only once the store has committed it, so what the controller acts on is always what a
//! restart would load. [`State::apply`] refuses a change that would break an invariant (an address
//! leased twice, a token used twice), the same way the SQLite schema's constraints do.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use wiremesh_core::keys::{NodePublicKey, WireguardPublicKey};

/// The SHA-256 of a join token: tokens are stored only as hashes.
pub type TokenHash = [u8; 32];

/// The last netmap issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochRecord {
    pub epoch: u64,
    pub issued_at: u64,
    pub expires_at: u64,
    /// The signed netmap's wire bytes.
    pub netmap: Vec<u8>,
}

/// How a member outside the inventory came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeKind {
    /// An agent that joined with a token.
    Agent,
    /// A device added by the admin (`device add`), which runs no agent.
    Device,
}

impl NodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Agent => "agent",
            NodeKind::Device => "device",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "agent" => Some(NodeKind::Agent),
            "device" => Some(NodeKind::Device),
            _ => None,
        }
    }
}

/// A member outside the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: NodeKind,
    pub node_public_key: NodePublicKey,
    pub wireguard_public_key: WireguardPublicKey,
    pub created_at: u64,
}

/// A join token (stored by hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The member name the token admits.
    pub name: String,
    pub created_at: u64,
    pub expires_at: u64,
    pub used_at: Option<u64>,
}

impl Token {
    pub fn is_usable(&self, now: u64) -> bool {
        self.used_at.is_none() && now < self.expires_at
    }
}

/// Revoked keys: a member named `name` holding either key is refused from `revoked_at` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub name: String,
    pub node_public_key: NodePublicKey,
    pub wireguard_public_key: WireguardPublicKey,
    pub revoked_at: u64,
}

/// One decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Epoch(EpochRecord),
    Lease {
        member: String,
        ipv4: Ipv4Addr,
    },
    Release {
        member: String,
    },
    AddNode {
        name: String,
        node: Node,
    },
    RemoveNode {
        name: String,
    },
    AddToken {
        hash: TokenHash,
        token: Token,
    },
    UseToken {
        hash: TokenHash,
        at: u64,
    },
    /// An expired token is forgotten.
    DropToken {
        hash: TokenHash,
    },
    Revoke(Revocation),
}

/// Why a change cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    #[error("address {ipv4} is already leased to {holder:?}")]
    AddressTaken { ipv4: Ipv4Addr, holder: String },
    #[error("{0:?} already holds a lease")]
    AlreadyLeased(String),
    #[error("{0:?} holds no lease")]
    NoLease(String),
    #[error("a member named {0:?} already exists outside the inventory")]
    NodeExists(String),
    #[error("no member named {0:?} exists outside the inventory")]
    NoNode(String),
    #[error("that token already exists")]
    TokenExists,
    #[error("that token is unknown or already used")]
    TokenUnusable,
    #[error("epoch {new} is not after epoch {old}")]
    EpochNotIncreasing { old: u64, new: u64 },
    #[error("node key {0} is already revoked")]
    AlreadyRevoked(NodePublicKey),
}

/// Everything the controller has decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub epoch: Option<EpochRecord>,
    /// Dynamic IPv4 leases by member name.
    pub leases: BTreeMap<String, Ipv4Addr>,
    /// Members outside the inventory by name.
    pub nodes: BTreeMap<String, Node>,
    pub tokens: BTreeMap<TokenHash, Token>,
    /// By node key.
    pub revocations: BTreeMap<NodePublicKey, Revocation>,
}

impl State {
    /// Applies one change, or refuses it and leaves the state as it was.
    pub fn apply(&mut self, change: &Change) -> Result<(), Conflict> {
        match change {
            Change::Epoch(record) => {
                if let Some(old) = &self.epoch
                    && record.epoch <= old.epoch
                {
                    return Err(Conflict::EpochNotIncreasing {
                        old: old.epoch,
                        new: record.epoch,
                    });
                }
                self.epoch = Some(record.clone());
            }
            Change::Lease { member, ipv4 } => {
                if self.leases.contains_key(member) {
                    return Err(Conflict::AlreadyLeased(member.clone()));
                }
                if let Some(holder) = self.lease_holder(*ipv4) {
                    return Err(Conflict::AddressTaken {
                        ipv4: *ipv4,
                        holder: holder.to_string(),
                    });
                }
                self.leases.insert(member.clone(), *ipv4);
            }
            Change::Release { member } => {
                self.leases
                    .remove(member)
                    .ok_or_else(|| Conflict::NoLease(member.clone()))?;
            }
            Change::AddNode { name, node } => {
                if self.nodes.contains_key(name) {
                    return Err(Conflict::NodeExists(name.clone()));
                }
                self.nodes.insert(name.clone(), node.clone());
            }
            Change::RemoveNode { name } => {
                self.nodes
                    .remove(name)
                    .ok_or_else(|| Conflict::NoNode(name.clone()))?;
            }
            Change::AddToken { hash, token } => {
                if self.tokens.contains_key(hash) {
                    return Err(Conflict::TokenExists);
                }
                self.tokens.insert(*hash, token.clone());
            }
            Change::UseToken { hash, at } => match self.tokens.get_mut(hash) {
                Some(token) if token.used_at.is_none() => token.used_at = Some(*at),
                _ => return Err(Conflict::TokenUnusable),
            },
            Change::DropToken { hash } => {
                if self.tokens.remove(hash).is_none() {
                    return Err(Conflict::TokenUnusable);
                }
            }
            Change::Revoke(revocation) => {
                let key = revocation.node_public_key;
                if self.revocations.contains_key(&key) {
                    return Err(Conflict::AlreadyRevoked(key));
                }
                self.revocations.insert(key, revocation.clone());
            }
        }
        Ok(())
    }

    /// Applies a batch all or nothing.
    pub fn apply_all(&mut self, changes: &[Change]) -> Result<(), Conflict> {
        let mut next = self.clone();
        for change in changes {
            next.apply(change)?;
        }
        *self = next;
        Ok(())
    }

    pub fn lease_holder(&self, ipv4: Ipv4Addr) -> Option<&str> {
        self.leases
            .iter()
            .find(|(_, a)| **a == ipv4)
            .map(|(m, _)| m.as_str())
    }

    pub fn is_revoked(&self, node: &NodePublicKey, wireguard: &WireguardPublicKey) -> bool {
        self.revocations.contains_key(node)
            || self
                .revocations
                .values()
                .any(|r| r.wireguard_public_key == *wireguard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_never_leased_twice() {
        let mut state = State::default();
        let a = Ipv4Addr::new(100, 77, 0, 1);
        let lease = |m: &str| Change::Lease {
            member: m.into(),
            ipv4: a,
        };
        state.apply(&lease("x")).unwrap();
        assert_eq!(
            state.apply(&lease("y")),
            Err(Conflict::AddressTaken {
                ipv4: a,
                holder: "x".into()
            })
        );
        // A failing batch leaves nothing behind.
        let before = state.clone();
        assert!(
            state
                .apply_all(&[
                    Change::Release { member: "x".into() },
                    lease("y"),
                    lease("z")
                ])
                .is_err()
        );
        assert_eq!(state, before);
        state
            .apply_all(&[Change::Release { member: "x".into() }, lease("y")])
            .unwrap();
        assert_eq!(state.lease_holder(a), Some("y"));
    }

    #[test]
    fn tokens_are_single_use_and_epochs_increase() {
        let mut state = State::default();
        let token = Token {
            name: "phone".into(),
            created_at: 0,
            expires_at: 10,
            used_at: None,
        };
        state
            .apply(&Change::AddToken {
                hash: [1; 32],
                token,
            })
            .unwrap();
        assert!(state.tokens[&[1; 32]].is_usable(9));
        assert!(!state.tokens[&[1; 32]].is_usable(10));
        let use_it = Change::UseToken {
            hash: [1; 32],
            at: 5,
        };
        state.apply(&use_it).unwrap();
        assert_eq!(state.apply(&use_it), Err(Conflict::TokenUnusable));
        let drop_it = Change::DropToken { hash: [1; 32] };
        state.apply(&drop_it).unwrap();
        assert!(state.tokens.is_empty());
        assert_eq!(state.apply(&drop_it), Err(Conflict::TokenUnusable));
        let epoch = |epoch| {
            Change::Epoch(EpochRecord {
                epoch,
                issued_at: 0,
                expires_at: 1,
                netmap: vec![],
            })
        };
        state.apply(&epoch(2)).unwrap();
        assert_eq!(
            state.apply(&epoch(2)),
            Err(Conflict::EpochNotIncreasing { old: 2, new: 2 })
        );
    }
}
