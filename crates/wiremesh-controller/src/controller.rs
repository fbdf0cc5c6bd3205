//! The controller's state machine: the configuration, the decided [`State`], the current netmap
//! and the open sessions. Every operation takes the time (and any randomness) as input, commits
//! its decisions to the [`Store`] and only then returns what to send.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};

use wiremesh_core::addresses::member_ipv6;
use wiremesh_core::config::Addresses;
use wiremesh_core::controller_config::ControllerFile;
use wiremesh_core::keys::{NetworkSecret, NodePublicKey, WireguardSecret};
use wiremesh_core::messages::{ErrorCode, ErrorMessage, Message};
use wiremesh_core::netmap::{Member, Netmap, NetmapContent};
use wiremesh_core::plan::host_port;
use wiremesh_core::ticket::{JoinTicket, TicketController};
use wiremesh_proto::admin;

use crate::members::{Learnt, members};
use crate::pool::Pool;
use crate::relay::limit::Bucket;
use crate::relay::{BindingChange, RelayMember};
use crate::session::{Phase, Session, SessionId};
use crate::state::{Change, EpochRecord, Node, NodeKind, Revocation, State, Token};
use crate::store::{Store, StoreError};
use crate::token::{MAX_TTL_SECONDS, token_hash, token_text};

/// How long a netmap is valid.
pub const NETMAP_LIFETIME: u64 = 24 * 3600;
/// A netmap is renewed once less than this is left, so agents never hold an expired one while the
/// controller runs.
pub const RENEW_BEFORE: u64 = NETMAP_LIFETIME / 2;
/// The longest member name (the netmap's limit).
const MAX_NAME_LEN: usize = wiremesh_core::netmap::MAX_NAME_LEN;

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Send(SessionId, Message),
    /// Send the session the current netmap ([`Controller::epoch`]). Not a copy of the bytes per
    /// session: the shell encodes the newest netmap once for every session that is due one, so a
    /// burst of epochs costs one push each.
    Push(SessionId),
    /// Close the session once what was queued for it is sent.
    Close(SessionId),
    /// Log a warning.
    Warn(String),
}

impl Output {
    /// The session the output is for; none for a warning.
    pub fn session(&self) -> Option<SessionId> {
        match self {
            Output::Send(id, _) | Output::Push(id) | Output::Close(id) => Some(*id),
            Output::Warn(_) => None,
        }
    }
}

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControllerError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Config(String),
    /// An admin request that cannot be carried out (unknown name, exhausted pool...).
    #[error("{0}")]
    Refused(String),
}

/// What a configuration reload changed, by member name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

/// The controller.
#[derive(Debug)]
pub struct Controller<S: Store> {
    pub(crate) store: S,
    pub(crate) config: ControllerFile,
    key: NetworkSecret,
    /// The controller's own node key, sent in its hello.
    pub(crate) identity: NodePublicKey,
    pub(crate) state: State,
    /// The current netmap's members, to tell whether a decision needs a new epoch.
    pub(crate) current: Vec<Member>,
    pub(crate) sessions: BTreeMap<SessionId, Session>,
    pub(crate) next_session: SessionId,
    /// Candidates: interface addresses agents reported, addresses the relay saw them at.
    pub(crate) learnt: Learnt,
    /// When each unordered pair of members was last told to punch (the pair sorted by name).
    pub(crate) punches: BTreeMap<(String, String), u64>,
    /// Each requesting member's punch budget ([`crate::session::PUNCHES_PER_SECOND`]).
    pub(crate) punch_budgets: BTreeMap<String, Bucket>,
    /// Set between [`Controller::begin_batch`] and [`Controller::end_batch`].
    pub(crate) batch: Option<Batch>,
}

/// Decisions that share one commit and one new epoch: each is applied to the state as it is
/// made (so the next one sees it), all are committed together with the netmap at the end, and
/// only then are the enrollments answered.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// The state as committed, while decisions are waiting for the batch's commit.
    committed: Option<State>,
    changes: Vec<Change>,
    /// Enrolled sessions waiting for their answer, with their member names.
    pub(crate) accepts: Vec<(SessionId, String)>,
    /// Something outside the state changed the members (a candidate): the batch ends with a
    /// new epoch if the netmap differs.
    dirty: bool,
}

impl<S: Store> Controller<S> {
    /// Loads the store and checks it against `config`: leases of members that are gone, that
    /// became static or that lie outside the pool are released, and a netmap is issued if the
    /// stored one is missing, stale or due for renewal.
    pub fn open(
        mut store: S,
        config: ControllerFile,
        key: NetworkSecret,
        identity: NodePublicKey,
        now: u64,
    ) -> Result<(Self, Vec<Output>), ControllerError> {
        if key.public_key() != config.network_public_key {
            return Err(ControllerError::Config(format!(
                "the network key's public half is {}, but the configuration's networkPublicKey is {}: wrong key file or wrong configuration",
                key.public_key(),
                config.network_public_key
            )));
        }
        let state = store.load()?;
        let mut outputs = Vec::new();
        let current = match &state.epoch {
            None => Vec::new(),
            Some(record) => match Netmap::decode(&record.netmap) {
                Ok(map) => map.content().members.clone(),
                Err(e) => {
                    outputs.push(Output::Warn(format!(
                        "the stored netmap of epoch {} does not decode ({e}); issuing a new one",
                        record.epoch
                    )));
                    Vec::new()
                }
            },
        };
        let mut controller = Self {
            store,
            config,
            key,
            identity,
            state,
            current,
            sessions: BTreeMap::new(),
            next_session: 0,
            learnt: Learnt::default(),
            punches: BTreeMap::new(),
            punch_budgets: BTreeMap::new(),
            batch: None,
        };
        let changes = controller.reconcile();
        let force = controller.renewal_due(now);
        outputs.extend(controller.decide(changes, force, now)?);
        Ok((controller, outputs))
    }

    pub fn config(&self) -> &ControllerFile {
        &self.config
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// The current epoch record (there is always one once opened).
    pub fn epoch(&self) -> Option<&EpochRecord> {
        self.state.epoch.as_ref()
    }

    /// The pool leases come from, if the controller leases addresses.
    pub fn pool(&self) -> Option<Pool> {
        let range = self.config.lease_range()?;
        let network = self.config.network.ipv4?;
        Some(Pool {
            network,
            range,
            statics: self
                .config
                .members
                .iter()
                .filter_map(|m| m.addresses.ipv4)
                .collect(),
        })
    }

    /// Starts a batch: the decisions until [`Controller::end_batch`] share one new epoch, so a
    /// fleet enrolling at once costs one netmap per batch rather than one per agent. Every
    /// decision is still committed before anything is acknowledged: enrollments are answered at
    /// the end of the batch.
    pub fn begin_batch(&mut self) {
        self.batch.get_or_insert_with(Batch::default);
    }

    /// Ends the batch: signs and commits the new epoch if the members changed, then answers the
    /// enrollments of the batch with it and pushes it to the other sessions.
    pub fn end_batch(&mut self, now: u64) -> Vec<Output> {
        let Some(batch) = self.batch.take() else {
            return Vec::new();
        };
        let mut outputs = match batch.committed {
            None if batch.dirty => match self.commit(self.state.clone(), Vec::new(), false, now) {
                Ok(outputs) => outputs,
                Err(e) => vec![Output::Warn(format!(
                    "cannot issue the netmap with the new candidates: {e}"
                ))],
            },
            None => Vec::new(),
            Some(committed) => {
                let staged = std::mem::replace(&mut self.state, committed);
                match self.commit(staged, batch.changes, false, now) {
                    Ok(outputs) => outputs,
                    // The state stays as committed: nothing of the batch was promised.
                    Err(e) => {
                        let mut outputs = Vec::new();
                        for (id, name) in batch.accepts {
                            outputs.extend(self.internal(id, &name, e.clone()));
                        }
                        return outputs;
                    }
                }
            }
        };
        for (id, name) in batch.accepts {
            // The answer carries the netmap; a push as well would be the same one again.
            outputs.retain(|o| !matches!(o, Output::Push(to) if *to == id));
            outputs.extend(self.accept(id, &name));
        }
        outputs
    }

    /// Renews the netmap when it is due and forgets expired join tokens; call it every minute
    /// or so.
    pub fn tick(&mut self, now: u64) -> Result<Vec<Output>, ControllerError> {
        let expired: Vec<Change> = self
            .state
            .tokens
            .iter()
            .filter(|(_, t)| now >= t.expires_at)
            .map(|(hash, _)| Change::DropToken { hash: *hash })
            .collect();
        let renew = self.renewal_due(now);
        if expired.is_empty() && !renew {
            return Ok(Vec::new());
        }
        self.decide(expired, renew, now)
    }

    fn renewal_due(&self, now: u64) -> bool {
        self.state
            .epoch
            .as_ref()
            .is_none_or(|e| now.saturating_add(RENEW_BEFORE) >= e.expires_at)
    }

    /// Releases the leases the configuration no longer allows.
    fn reconcile(&self) -> Vec<Change> {
        let pool = self.pool();
        self.state
            .leases
            .iter()
            .filter(|(member, ipv4)| {
                let in_inventory = self.config.member(member);
                let wanted = match in_inventory {
                    Some(m) => m.addresses.ipv4.is_none(),
                    None => self.state.nodes.contains_key(*member),
                };
                !wanted || !pool.as_ref().is_some_and(|p| p.allows(**ipv4))
            })
            .map(|(member, _)| Change::Release {
                member: member.clone(),
            })
            .collect()
    }

    /// Checks `changes` against the state, adds a new epoch when the members change (or `force`),
    /// commits them and only then adopts them and pushes the new netmap to enrolled sessions.
    /// Within a batch, they are adopted now and committed at its end.
    pub(crate) fn decide(
        &mut self,
        changes: Vec<Change>,
        force: bool,
        now: u64,
    ) -> Result<Vec<Output>, ControllerError> {
        let mut next = self.state.clone();
        next.apply_all(&changes)
            .map_err(|e| ControllerError::Refused(e.to_string()))?;
        if let Some(batch) = &mut self.batch
            && !force
            && next.epoch.is_some()
        {
            // Committed with the batch's netmap at its end, before anything is answered.
            if changes.is_empty() {
                batch.dirty = true;
            } else {
                let committed = std::mem::replace(&mut self.state, next);
                batch.committed.get_or_insert(committed);
                batch.changes.extend(changes);
            }
            return Ok(Vec::new());
        }
        self.commit(next, changes, force, now)
    }

    /// Commits `changes`, which turned the state into `next`, with a new epoch when the members
    /// change (or `force`); only then adopts `next` and pushes the new netmap.
    fn commit(
        &mut self,
        mut next: State,
        mut changes: Vec<Change>,
        force: bool,
        now: u64,
    ) -> Result<Vec<Output>, ControllerError> {
        let members = members(&self.config, &next, &self.learnt);
        let new_epoch = force || next.epoch.is_none() || members != self.current;
        if new_epoch {
            let record = self.sign(&next, members.clone(), now)?;
            let change = Change::Epoch(record);
            next.apply(&change)
                .map_err(|e| ControllerError::Refused(e.to_string()))?;
            changes.push(change);
        }
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        self.store.commit(&changes)?;
        self.state = next;
        if !new_epoch {
            return Ok(Vec::new());
        }
        self.current = members;
        Ok(self.push_all())
    }

    fn sign(
        &self,
        next: &State,
        members: Vec<Member>,
        now: u64,
    ) -> Result<EpochRecord, ControllerError> {
        let epoch = next.epoch.as_ref().map_or(1, |e| e.epoch + 1);
        let expires_at = now.saturating_add(NETMAP_LIFETIME);
        let content = NetmapContent {
            network: self.config.network_public_key,
            instance: self.config.instance.clone(),
            epoch,
            issued_at: now,
            expires_at,
            members,
        }
        .canonicalize()
        .map_err(|e| ControllerError::Config(format!("cannot build the netmap: {e}")))?;
        Ok(EpochRecord {
            epoch,
            issued_at: now,
            expires_at,
            netmap: content.sign(&self.key).encode(),
        })
    }

    /// The current netmap to every enrolled session.
    fn push_all(&self) -> Vec<Output> {
        if self.state.epoch.is_none() {
            return Vec::new();
        }
        self.sessions
            .iter()
            .filter(|(_, s)| matches!(s.phase, Phase::Enrolled { .. }))
            .map(|(id, _)| Output::Push(*id))
            .collect()
    }

    /// The lease `member` holds or gets now (its change appended to `changes`); `None` when the
    /// controller leases nothing. An exhausted pool is an error naming the pool.
    pub(crate) fn lease_for(
        &self,
        member: &str,
        changes: &mut Vec<Change>,
    ) -> Result<Option<Ipv4Addr>, String> {
        if let Some(ipv4) = self.state.leases.get(member) {
            return Ok(Some(*ipv4));
        }
        let Some(pool) = self.pool() else {
            return Ok(None);
        };
        let leased: BTreeSet<Ipv4Addr> = self.state.leases.values().copied().collect();
        match pool.first_free(&leased) {
            Some(ipv4) => {
                changes.push(Change::Lease {
                    member: member.to_string(),
                    ipv4,
                });
                Ok(Some(ipv4))
            }
            None => Err(format!(
                "no IPv4 address left for {member:?}: all {} addresses of the dynamic pool {} are leased; widen dynamicIp.range or revoke members that are gone",
                pool.size(),
                pool.range
            )),
        }
    }

    /// Whether `name` is taken by a member, inside or outside the inventory, or a pending token.
    fn name_taken(&self, name: &str, now: u64) -> Option<&'static str> {
        if self.config.member(name).is_some() {
            Some("an inventory member")
        } else if self.state.nodes.contains_key(name) {
            Some("a member outside the inventory")
        } else if self
            .state
            .tokens
            .values()
            .any(|t| t.name == name && t.is_usable(now))
        {
            Some("the name of a pending join token")
        } else {
            None
        }
    }

    fn check_new_name(&self, name: &str, now: u64) -> Result<(), ControllerError> {
        if name.is_empty() || name.len() > MAX_NAME_LEN || name.contains(char::is_control) {
            return Err(ControllerError::Refused(format!(
                "name {name:?}: allowed are 1 to {MAX_NAME_LEN} bytes with no control characters"
            )));
        }
        match self.name_taken(name, now) {
            Some(what) => Err(ControllerError::Refused(format!(
                "{name:?} is already {what}; pick another name"
            ))),
            None => Ok(()),
        }
    }

    /// A single-use join token for `name`, valid for `ttl` seconds; `secret` is 32 random bytes.
    /// Returns the join ticket that carries it (with this controller's endpoint and node key and
    /// the network key, all an agent without a plan needs) and its expiry.
    pub fn create_token(
        &mut self,
        name: &str,
        ttl: u64,
        secret: [u8; 32],
        now: u64,
    ) -> Result<(String, u64), ControllerError> {
        self.check_new_name(name, now)?;
        if !(1..=MAX_TTL_SECONDS).contains(&ttl) {
            return Err(ControllerError::Refused(format!(
                "a token's validity must be 1 s to {MAX_TTL_SECONDS} s (30 days), not {ttl} s"
            )));
        }
        let text = token_text(&secret);
        let hash = token_hash(&text)
            .ok_or_else(|| ControllerError::Refused("cannot hash the new token".into()))?;
        let expires_at = now.saturating_add(ttl);
        let token = Token {
            name: name.to_string(),
            created_at: now,
            expires_at,
            used_at: None,
        };
        self.decide(vec![Change::AddToken { hash, token }], false, now)?;
        let ticket = JoinTicket {
            instance: self.config.instance.clone(),
            name: name.to_string(),
            token: text,
            network_public_key: self.config.network_public_key,
            networks: self.config.network,
            controllers: vec![TicketController {
                name: self.config.machine.clone(),
                endpoint: host_port(&self.config.endpoint, self.config.control_port),
                node_public_key: self.identity,
                relay_endpoint: self
                    .config
                    .relay
                    .enable
                    .then(|| host_port(&self.config.endpoint, self.config.relay.port)),
            }],
        };
        Ok((ticket.encode(), expires_at))
    }

    /// Revokes member `name`'s keys: the next epoch flags it revoked (or drops it, outside the
    /// inventory), its lease is freed and its session is closed.
    pub fn revoke(&mut self, name: &str, now: u64) -> Result<Vec<Output>, ControllerError> {
        let (node_public_key, wireguard_public_key) = if let Some(m) = self.config.member(name) {
            (m.node_public_key, m.wireguard_public_key)
        } else if let Some(n) = self.state.nodes.get(name) {
            (n.node_public_key, n.wireguard_public_key)
        } else {
            return Err(ControllerError::Refused(format!(
                "no member named {name:?}; `status` lists the members"
            )));
        };
        if self.state.revocations.contains_key(&node_public_key) {
            return Err(ControllerError::Refused(format!(
                "{name:?} is already revoked"
            )));
        }
        let mut changes = vec![Change::Revoke(Revocation {
            name: name.to_string(),
            node_public_key,
            wireguard_public_key,
            revoked_at: now,
        })];
        if self.state.leases.contains_key(name) {
            changes.push(Change::Release {
                member: name.to_string(),
            });
        }
        if self.state.nodes.contains_key(name) {
            changes.push(Change::RemoveNode {
                name: name.to_string(),
            });
        }
        let learnt = (
            self.learnt.local.remove(name),
            self.learnt.mapped.remove(name),
        );
        let outputs = match self.decide(changes, false, now) {
            Ok(outputs) => outputs,
            Err(e) => {
                let (local, mapped) = learnt;
                if let Some(local) = local {
                    self.learnt.local.insert(name.to_string(), local);
                }
                if let Some(mapped) = mapped {
                    self.learnt.mapped.insert(name.to_string(), mapped);
                }
                return Err(e);
            }
        };
        Ok(self.close_where(
            outputs,
            |s| s.peer == node_public_key,
            ErrorCode::REVOKED,
            &format!("member {name:?} was revoked by the controller's admin"),
        ))
    }

    /// Adds a device that runs no agent: its WireGuard key is `secret` (made by the shell and
    /// printed once, never stored) and `node_public_key` a key it never uses. Returns the device's
    /// wg-quick configuration.
    pub fn add_device(
        &mut self,
        name: &str,
        secret: &WireguardSecret,
        node_public_key: NodePublicKey,
        now: u64,
    ) -> Result<(String, Vec<Output>), ControllerError> {
        self.check_new_name(name, now)?;
        let mut changes = vec![Change::AddNode {
            name: name.to_string(),
            node: Node {
                kind: NodeKind::Device,
                node_public_key,
                wireguard_public_key: secret.public_key(),
                created_at: now,
            },
        }];
        let ipv4 = self
            .lease_for(name, &mut changes)
            .map_err(ControllerError::Refused)?;
        let outputs = self.decide(changes, false, now)?;
        let addresses = Addresses {
            ipv4,
            ipv6: member_ipv6(self.config.network.ipv6, name),
        };
        let text = crate::device::wg_quick(
            &self.config.instance,
            name,
            secret,
            addresses,
            &self.current,
        );
        Ok((text, outputs))
    }

    /// Adopts a new configuration: members added or removed take effect in the next epoch,
    /// removed members lose their leases and sessions. The instance, the network key and the
    /// networks cannot change while the controller runs.
    pub fn reload(
        &mut self,
        config: ControllerFile,
        now: u64,
    ) -> Result<(ConfigDiff, Vec<Output>), ControllerError> {
        for (what, same) in [
            ("instance", self.config.instance == config.instance),
            (
                "networkPublicKey",
                self.config.network_public_key == config.network_public_key,
            ),
            ("network", self.config.network == config.network),
        ] {
            if !same {
                return Err(ControllerError::Config(format!(
                    "the new configuration changes {what:?}, which needs a restart of the controller; keeping the old configuration"
                )));
            }
        }
        let diff = config_diff(&self.config, &config);
        let old = std::mem::replace(&mut self.config, config);
        let changes = self.reconcile();
        let outputs = match self.decide(changes, false, now) {
            Ok(outputs) => outputs,
            Err(e) => {
                self.config = old;
                return Err(e);
            }
        };
        let rekeyed = diff.changed.iter().filter(|name| {
            let keys = |c: &ControllerFile| {
                c.member(name)
                    .map(|m| (m.node_public_key, m.wireguard_public_key))
            };
            keys(&old) != keys(&self.config)
        });
        let gone: BTreeSet<String> = diff.removed.iter().chain(rekeyed).cloned().collect();
        let outputs = self.close_where(
            outputs,
            |s| matches!(&s.phase, Phase::Enrolled { name } if gone.contains(name)),
            ErrorCode::NOT_A_MEMBER,
            "the inventory changed this member (removed or re-keyed); connect again",
        );
        Ok((diff, outputs))
    }

    /// Sends an error to every session matching `filter` instead of what `outputs` held for it,
    /// and closes it.
    pub(crate) fn close_where(
        &mut self,
        mut outputs: Vec<Output>,
        filter: impl Fn(&Session) -> bool,
        code: ErrorCode,
        message: &str,
    ) -> Vec<Output> {
        let ids: BTreeSet<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| filter(s))
            .map(|(id, _)| *id)
            .collect();
        outputs.retain(|o| o.session().is_none_or(|to| !ids.contains(&to)));
        for id in ids {
            outputs.extend(self.refuse(id, code, message.to_string()));
        }
        outputs
    }

    /// An error message, then the session closes.
    pub(crate) fn refuse(
        &mut self,
        id: SessionId,
        code: ErrorCode,
        message: String,
    ) -> Vec<Output> {
        self.sessions.remove(&id);
        vec![
            Output::Send(id, Message::Error(ErrorMessage { code, message })),
            Output::Close(id),
        ]
    }

    /// The relay's binding changes: each member's `Mapped` candidate becomes the address its
    /// probes came from (or goes, with `None`). A new epoch follows when the netmap changes;
    /// within a batch, at its end.
    pub fn set_mapped(&mut self, changes: Vec<BindingChange>, now: u64) -> Vec<Output> {
        let mut changed = false;
        for (name, addr) in changes {
            let old = match addr {
                Some(addr) => self.learnt.mapped.insert(name, addr),
                None => self.learnt.mapped.remove(&name),
            };
            changed |= old != addr;
        }
        if !changed {
            return Vec::new();
        }
        self.decide(Vec::new(), false, now).unwrap_or_else(|e| {
            vec![Output::Warn(format!(
                "cannot issue the netmap with the new candidates: {e}"
            ))]
        })
    }

    /// The members that may use the relay: those of the current netmap that are not revoked,
    /// oldest first (the inventory's members by name, then the joined ones in the order they
    /// joined), which is who keeps the relay when two keys clash ([`crate::relay::Relay::set_members`]).
    pub fn relay_members(&self) -> Vec<RelayMember> {
        let mut members: Vec<&Member> = self
            .current
            .iter()
            .filter(|m| !m.flags.contains(wiremesh_core::netmap::Flags::REVOKED))
            .collect();
        // Stable: the netmap is sorted by name.
        members.sort_by_key(|m| match self.config.member(&m.name) {
            Some(_) => (0, 0),
            None => (
                1,
                self.state
                    .nodes
                    .get(&m.name)
                    .map_or(u64::MAX, |n| n.created_at),
            ),
        });
        members
            .into_iter()
            .map(|m| RelayMember {
                name: m.name.clone(),
                node_public_key: m.node_public_key,
                wireguard_public_key: m.wireguard_public_key,
            })
            .collect()
    }

    /// The `Mapped` candidate published for `name`.
    pub fn mapped(&self, name: &str) -> Option<SocketAddr> {
        self.learnt.mapped.get(name).copied()
    }

    /// The admin's view of the controller.
    pub fn status(&self, now: u64) -> admin::Status {
        let connections: BTreeMap<&str, &Session> = self
            .sessions
            .values()
            .filter_map(|s| match &s.phase {
                Phase::Enrolled { name } => Some((name.as_str(), s)),
                _ => None,
            })
            .collect();
        let members = self
            .current
            .iter()
            .map(|m| {
                let kind = match self.state.nodes.get(&m.name) {
                    Some(n) if self.config.member(&m.name).is_none() => n.kind.as_str(),
                    _ => "inventory",
                };
                admin::MemberStatus {
                    name: m.name.clone(),
                    kind: kind.to_string(),
                    ipv4: m.addresses.ipv4.map(|a| a.to_string()),
                    ipv6: m.addresses.ipv6.to_string(),
                    leased: m.flags.contains(wiremesh_core::netmap::Flags::DYNAMIC_IPV4),
                    revoked: m.flags.contains(wiremesh_core::netmap::Flags::REVOKED),
                    connection: connections.get(m.name.as_str()).map(|s| admin::Connection {
                        remote: s.remote.clone(),
                        since: s.connected_at,
                        last_contact: s.last_contact,
                    }),
                }
            })
            .collect();
        let epoch = self.state.epoch.as_ref();
        admin::Status {
            instance: self.config.instance.clone(),
            now,
            epoch: epoch.map_or(0, |e| e.epoch),
            issued_at: epoch.map_or(0, |e| e.issued_at),
            expires_at: epoch.map_or(0, |e| e.expires_at),
            pool: self.pool().map(|p| admin::Pool {
                range: p.range.to_string(),
                size: p.size(),
                leased: self.state.leases.values().filter(|a| p.allows(**a)).count() as u64,
            }),
            members,
            tokens: self
                .state
                .tokens
                .values()
                .filter(|t| t.is_usable(now))
                .map(|t| admin::TokenStatus {
                    name: t.name.clone(),
                    expires_at: t.expires_at,
                })
                .collect(),
            relay: None,
        }
    }
}

fn config_diff(old: &ControllerFile, new: &ControllerFile) -> ConfigDiff {
    let mut diff = ConfigDiff::default();
    for m in &new.members {
        match old.member(&m.name) {
            None => diff.added.push(m.name.clone()),
            Some(o) if o != m => diff.changed.push(m.name.clone()),
            Some(_) => {}
        }
    }
    for m in &old.members {
        if new.member(&m.name).is_none() {
            diff.removed.push(m.name.clone());
        }
    }
    diff.added.sort();
    diff.removed.sort();
    diff.changed.sort();
    diff
}
