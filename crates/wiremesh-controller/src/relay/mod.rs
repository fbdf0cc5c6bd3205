//! The controller's UDP service for members behind NAT, sans-IO: endpoint probes and the
//! encrypted relay ([`wiremesh_core::disco`] has the datagrams).
//!
//! [`Relay::handle`] takes one datagram, its source address and the time ([`Now`]: a monotonic
//! clock for lifetimes, budgets and quotas, the wall clock only for the probes' timestamps), and
//! says what to send ([`Action`]). A member's *binding* is the source address of its last valid
//! probe: probes are signed by the member's node key, fresh (within [`PROBE_WINDOW`] of our
//! wall clock) and newer than the last one taken, so a captured probe replayed from elsewhere
//! moves nothing. The relay takes packets only from a member's binding, so only members use it,
//! and forwards them only to another member's binding, each member bounded in bytes per second
//! and per hour. It never decrypts anything: the relayed WireGuard packets are end to end
//! between the two members. The relay trusts the source address a signed probe proved: a
//! sender that can spoof a member's bound address can spend that member's relay budget.
//!
//! Binding changes queue up for [`Relay::take_changes`]; the controller publishes them as the
//! members' `Mapped` candidates. A binding follows its member at once, but the published
//! candidate moves at most once per [`MAPPED_INTERVAL`] (a member probing from alternating
//! ports would otherwise make a netmap epoch for everyone each time); [`Relay::tick`] publishes
//! what waited. A binding that ends is published at once.

pub(crate) mod limit;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use wiremesh_core::controller_config;
use wiremesh_core::disco::{self, Kind, PeerId, Probe, ProbeReply};
use wiremesh_core::keys::{NodePublicKey, NodeSecret, WireguardPublicKey};
use wiremesh_proto::admin;

use self::limit::{Bucket, Quota};

/// A binding without a probe for this long is gone (agents probe every 25 s at most).
pub const BINDING_LIFETIME: Duration = Duration::from_secs(90);
/// A probe's time may differ from our wall clock by this much.
pub const PROBE_WINDOW: Duration = Duration::from_secs(120);
/// Probes a second in one member's name, and the burst (an agent probes every 20 s, sooner
/// after a miss). Forged probes in a member's name spend this budget and no other one's.
/// Probes from the member's binding have a budget of this size of their own, so forgeries
/// sent from elsewhere do not keep its own probes out.
pub const PROBES_PER_MEMBER: f64 = 5.0;
pub const PROBE_MEMBER_BURST: f64 = 10.0;
/// Probes a second from one source (an IPv4 address or an IPv6 /64), and the burst; a NAT with
/// many members behind it still fits (each probes every 20 s). Probes from a member's binding
/// do not count.
pub const PROBES_PER_SOURCE: f64 = 20.0;
pub const PROBE_SOURCE_BURST: f64 = 40.0;
/// Probes a second from everywhere together, and the burst: what bounds the signature checks a
/// flood of forged probes can cost, about what one core verifies. Probes from a member's
/// binding do not count, so a flood cannot keep bound members out.
pub const PROBES_GLOBAL: f64 = 20_000.0;
/// A member's published `Mapped` candidate moves at most this often; its first one is
/// published at once, and so is the end of its binding.
pub const MAPPED_INTERVAL: Duration = Duration::from_secs(10);
/// Sources whose probe budget is tracked at once; beyond that, new sources share the global
/// budget only.
pub const MAX_PROBE_SOURCES: usize = 4096;
/// The smallest burst a member's relay budget allows, so a handshake and a TCP window fit.
pub const MIN_BURST_BYTES: u64 = 64 << 10;

/// The two clocks the relay reads, as durations since their epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// A monotonic clock (since any fixed moment, such as the daemon's start): bindings'
    /// lifetimes, budgets, quotas and the damping of published candidates.
    pub mono: Duration,
    /// The wall clock, since the Unix epoch: only the probes' freshness window.
    pub unix: Duration,
}

/// What the relay allows each member.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub rate_bytes_per_second: f64,
    pub burst_bytes: f64,
    pub quota_bytes_per_hour: u64,
    /// Probes a second from everywhere together but members' bindings, and the burst
    /// ([`PROBES_GLOBAL`]).
    pub probes_global: f64,
}

impl Limits {
    /// From the configuration: the rate in Mbit/s, a burst of a quarter second of it (at least
    /// [`MIN_BURST_BYTES`]), the quota in MiB per hour.
    pub fn from_config(relay: &controller_config::Relay) -> Self {
        let rate = f64::from(relay.member_rate_mbit) * 1e6 / 8.0;
        Limits {
            rate_bytes_per_second: rate,
            burst_bytes: (rate / 4.0).max(MIN_BURST_BYTES as f64),
            quota_bytes_per_hour: u64::from(relay.member_mib_per_hour) << 20,
            probes_global: PROBES_GLOBAL,
        }
    }
}

/// A member that may use the relay: in the current netmap and not revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayMember {
    pub name: String,
    pub node_public_key: NodePublicKey,
    pub wireguard_public_key: WireguardPublicKey,
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// A probe with a key that is no member's, or a relayed packet from an address that is no
    /// member's binding.
    NotAMember,
    /// A relayed packet for no member, a member without a binding, or the sender itself.
    UnknownDestination,
    /// The sender is over its rate.
    Rate,
    /// The sender is over its bytes for the hour.
    Quota,
    /// A probe whose signature is wrong, whose time is outside the window, or that is malformed.
    BadProbe,
    /// A probe no newer than the member's last one.
    Replay,
    /// Over the probe budget of the member it names, of its source or of everyone.
    ProbeFlood,
    /// Not ours: a WireGuard message sent here directly, a probe reply, garbage.
    Malformed,
}

impl DropReason {
    pub const ALL: [DropReason; 8] = [
        DropReason::NotAMember,
        DropReason::UnknownDestination,
        DropReason::Rate,
        DropReason::Quota,
        DropReason::BadProbe,
        DropReason::Replay,
        DropReason::ProbeFlood,
        DropReason::Malformed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::NotAMember => "not-a-member",
            DropReason::UnknownDestination => "unknown-destination",
            DropReason::Rate => "rate",
            DropReason::Quota => "quota",
            DropReason::BadProbe => "bad-probe",
            DropReason::Replay => "replay",
            DropReason::ProbeFlood => "probe-flood",
            DropReason::Malformed => "malformed",
        }
    }
}

/// What to do with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Drop(DropReason),
    /// Send `out[..len]` (a probe reply) to `to`. `rebound`: the member's binding is new or
    /// moved (its publication may wait: [`MAPPED_INTERVAL`]).
    Reply {
        to: SocketAddr,
        len: usize,
        rebound: bool,
    },
    /// Send the datagram, its header rewritten in place to name the sender, to `to`.
    Forward {
        to: SocketAddr,
    },
}

/// A member's binding changed: its new address, or `None` when it has none any more.
pub type BindingChange = (String, Option<SocketAddr>);

#[derive(Debug, Clone, Copy)]
struct Binding {
    addr: SocketAddr,
    /// When its last valid probe arrived (monotonic).
    refreshed: Duration,
}

#[derive(Debug, Clone, Copy, Default)]
struct Traffic {
    packets: u64,
    bytes: u64,
}

#[derive(Debug)]
struct Slot {
    name: String,
    node: NodePublicKey,
    wireguard: WireguardPublicKey,
    binding: Option<Binding>,
    /// The `Mapped` candidate published (the last change handed out for this member).
    published: Option<SocketAddr>,
    /// Whether a candidate was ever published, and when one last moved or came back after it
    /// had gone (monotonic).
    ever_published: bool,
    moved_at: Option<Duration>,
    /// The time of the newest probe taken (Unix milliseconds, the member's clock).
    last_probe_ms: u64,
    /// Probes in this member's name from elsewhere than its binding, and from its binding.
    probes: Bucket,
    bound_probes: Bucket,
    bucket: Bucket,
    quota: Quota,
    /// Relayed from this member, by destination.
    sent: HashMap<PeerId, Traffic>,
}

impl Slot {
    fn new(m: RelayMember, limits: &Limits, now: Duration) -> Self {
        Slot {
            name: m.name,
            node: m.node_public_key,
            wireguard: m.wireguard_public_key,
            binding: None,
            published: None,
            ever_published: false,
            moved_at: None,
            last_probe_ms: 0,
            probes: Bucket::full(PROBE_MEMBER_BURST, now),
            bound_probes: Bucket::full(PROBE_MEMBER_BURST, now),
            bucket: Bucket::full(limits.burst_bytes, now),
            quota: Quota::default(),
            sent: HashMap::new(),
        }
    }

    /// Hands out what changed of the published candidate: the end of a binding at once; a
    /// moved binding (or one back after it had ended) once [`MAPPED_INTERVAL`] has passed since
    /// the last such change, else later from [`Relay::tick`]. The member's first candidate is
    /// published at once and does not count: nobody has used an address of it yet.
    fn publish(&mut self, now: Duration, changes: &mut Vec<BindingChange>) {
        let want = self.binding.map(|b| b.addr);
        if want == self.published {
            return;
        }
        if want.is_some() {
            if !self.ever_published {
                self.ever_published = true;
            } else if self
                .moved_at
                .is_some_and(|at| now.saturating_sub(at) < MAPPED_INTERVAL)
            {
                return;
            } else {
                self.moved_at = Some(now);
            }
        }
        self.published = want;
        changes.push((self.name.clone(), want));
    }

    /// The binding, unless it has expired.
    fn live(&self, now: Duration) -> Option<SocketAddr> {
        self.binding
            .filter(|b| now.saturating_sub(b.refreshed) < BINDING_LIFETIME)
            .map(|b| b.addr)
    }
}

/// The probe and relay service's state.
#[derive(Debug)]
pub struct Relay {
    secret: NodeSecret,
    limits: Limits,
    members: HashMap<PeerId, Slot>,
    by_node: HashMap<NodePublicKey, PeerId>,
    /// Who is bound where: the inverse of the members' bindings.
    by_addr: HashMap<SocketAddr, PeerId>,
    probe_sources: HashMap<IpAddr, Bucket>,
    last_prune: Duration,
    probe_global: Bucket,
    drops: BTreeMap<DropReason, u64>,
    changes: Vec<BindingChange>,
}

/// Probes are budgeted per IPv4 address and per IPv6 /64 (one host's share).
fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::from(octets)
        }
        v4 => v4,
    }
}

fn unix_ms(now: Duration) -> u64 {
    u64::try_from(now.as_millis()).unwrap_or(u64::MAX)
}

impl Relay {
    /// A relay answering with `secret` (the controller's node key), with no members yet; `now`
    /// is the monotonic clock ([`Now::mono`]).
    pub fn new(secret: NodeSecret, limits: Limits, now: Duration) -> Self {
        Relay {
            secret,
            limits,
            members: HashMap::new(),
            by_node: HashMap::new(),
            by_addr: HashMap::new(),
            probe_sources: HashMap::new(),
            last_prune: now,
            probe_global: Bucket::full(limits.probes_global, now),
            drops: BTreeMap::new(),
            changes: Vec::new(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// New limits; budgets already spent stay spent.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The members from now on, oldest first. A member whose keys are unchanged keeps its
    /// binding, budgets and counters; one that is gone (removed, revoked, re-keyed) loses its
    /// binding at once. Members whose WireGuard keys share the 8 bytes of a [`PeerId`] cannot
    /// be told apart on the relay: the one that already holds the id keeps it (else the first
    /// given, the oldest), the others are left out and their names returned, so a newcomer
    /// with a clashing key cannot take the relay from the member it clashes with.
    pub fn set_members(
        &mut self,
        members: impl IntoIterator<Item = RelayMember>,
        now: Duration,
    ) -> Vec<String> {
        self.set_members_with(members, now, |key| disco::peer_id(key.as_bytes()))
    }

    /// [`Relay::set_members`] with the ids `id_of` gives (tests make clashes with it, which
    /// take 2^64 work with the real ids).
    fn set_members_with(
        &mut self,
        members: impl IntoIterator<Item = RelayMember>,
        now: Duration,
        id_of: impl Fn(&WireguardPublicKey) -> PeerId,
    ) -> Vec<String> {
        let mut wanted: HashMap<PeerId, Vec<RelayMember>> = HashMap::new();
        for m in members {
            wanted
                .entry(id_of(&m.wireguard_public_key))
                .or_default()
                .push(m);
        }
        let mut clashes = Vec::new();
        let mut old = std::mem::take(&mut self.members);
        self.by_node.clear();
        for (id, mut same) in wanted {
            let holds = |m: &RelayMember| {
                old.get(&id).is_some_and(|slot| {
                    slot.node == m.node_public_key && slot.wireguard == m.wireguard_public_key
                })
            };
            let keep = same.iter().position(holds).unwrap_or(0);
            if keep >= same.len() {
                continue;
            }
            let m = same.swap_remove(keep);
            clashes.extend(same.into_iter().map(|m| m.name));
            let slot = match old.remove(&id) {
                Some(mut slot)
                    if slot.node == m.node_public_key
                        && slot.wireguard == m.wireguard_public_key =>
                {
                    if slot.name != m.name {
                        if let Some(addr) = slot.published {
                            self.changes.push((slot.name.clone(), None));
                            self.changes.push((m.name.clone(), Some(addr)));
                        }
                        slot.name = m.name;
                    }
                    slot
                }
                other => {
                    if let Some(gone) = other {
                        old.insert(id, gone);
                    }
                    Slot::new(m, &self.limits, now)
                }
            };
            self.by_node.insert(slot.node, id);
            self.members.insert(id, slot);
        }
        for (id, gone) in old {
            if let Some(b) = gone.binding
                && self.by_addr.get(&b.addr) == Some(&id)
            {
                self.by_addr.remove(&b.addr);
            }
            if gone.published.is_some() {
                self.changes.push((gone.name, None));
            }
        }
        clashes.sort();
        clashes
    }

    /// Binding changes since the last call, oldest first.
    pub fn take_changes(&mut self) -> Vec<BindingChange> {
        std::mem::take(&mut self.changes)
    }

    /// Ends the bindings that went [`BINDING_LIFETIME`] without a probe, publishes the moved
    /// bindings whose [`MAPPED_INTERVAL`] is over and forgets idle probe budgets; call it every
    /// second or so with the monotonic clock. What it published shows in
    /// [`Relay::take_changes`].
    pub fn tick(&mut self, now: Duration) {
        for (id, slot) in &mut self.members {
            if let Some(b) = slot.binding
                && slot.live(now).is_none()
            {
                slot.binding = None;
                if self.by_addr.get(&b.addr) == Some(id) {
                    self.by_addr.remove(&b.addr);
                }
            }
            slot.publish(now, &mut self.changes);
        }
        self.prune_probe_sources(now);
    }

    fn prune_probe_sources(&mut self, now: Duration) {
        // A budget unused for as long as it takes to refill is the same as a new one.
        let refill = Duration::from_secs_f64(PROBE_SOURCE_BURST / PROBES_PER_SOURCE);
        self.probe_sources
            .retain(|_, b| now.saturating_sub(b.last()) < refill);
        self.last_prune = now;
    }

    /// One datagram from `from` (canonical: IPv4 sources as IPv4) at `now`. A relayed
    /// datagram is rewritten in place; a reply is written to `out`, which must hold at least
    /// [`disco::PROBE_REPLY_LEN`] bytes.
    pub fn handle(
        &mut self,
        from: SocketAddr,
        datagram: &mut [u8],
        out: &mut [u8],
        now: Now,
    ) -> Action {
        let action = match disco::kind(datagram) {
            Kind::Probe => self.probe(from, datagram, out, now),
            Kind::Relay => self.relay(from, datagram, now.mono),
            Kind::ProbeReply | Kind::Wireguard => Action::Drop(DropReason::Malformed),
        };
        if let Action::Drop(reason) = action {
            *self.drops.entry(reason).or_default() += 1;
        }
        action
    }

    fn probe(&mut self, from: SocketAddr, datagram: &[u8], out: &mut [u8], now: Now) -> Action {
        let Some((probe, sig)) = Probe::decode(datagram) else {
            return Action::Drop(DropReason::BadProbe);
        };
        // A stranger's probe costs a lookup, nothing more.
        let Some(&id) = self.by_node.get(&probe.node_public_key) else {
            return Action::Drop(DropReason::NotAMember);
        };
        let Some(slot) = self.members.get_mut(&id) else {
            return Action::Drop(DropReason::NotAMember);
        };
        // The budgets come before the signature check, so that a flood of forged probes costs
        // a counter each. A probe from the member's binding draws on a budget of its own and
        // on nothing shared; one from elsewhere on the budget of the member it names first, so
        // forgeries in one member's name touch nobody else's, then on its source's and
        // everyone's.
        let mono = now.mono;
        let from_binding = slot.live(mono) == Some(from);
        let allowed = if from_binding {
            slot.bound_probes
                .take(1.0, PROBES_PER_MEMBER, PROBE_MEMBER_BURST, mono)
        } else {
            slot.probes
                .take(1.0, PROBES_PER_MEMBER, PROBE_MEMBER_BURST, mono)
                && self.shared_probe_budget(from.ip(), mono)
        };
        if !allowed {
            return Action::Drop(DropReason::ProbeFlood);
        }
        let Some(slot) = self.members.get_mut(&id) else {
            return Action::Drop(DropReason::NotAMember);
        };
        if probe.unix_ms.abs_diff(unix_ms(now.unix)) > unix_ms(PROBE_WINDOW) {
            return Action::Drop(DropReason::BadProbe);
        }
        if probe.unix_ms <= slot.last_probe_ms {
            return Action::Drop(DropReason::Replay);
        }
        if !probe.verify(&sig) {
            return Action::Drop(DropReason::BadProbe);
        }
        let Some(out) = out.get_mut(..disco::PROBE_REPLY_LEN) else {
            return Action::Drop(DropReason::Malformed);
        };
        slot.last_probe_ms = probe.unix_ms;
        let old = slot.binding.map(|b| b.addr);
        let previous = slot.live(mono);
        slot.binding = Some(Binding {
            addr: from,
            refreshed: mono,
        });
        let rebound = previous != Some(from);
        if let Some(old) = old
            && old != from
            && self.by_addr.get(&old) == Some(&id)
        {
            self.by_addr.remove(&old);
        }
        if rebound {
            // An address holds one binding: a member that was bound there is not any more.
            if let Some(other) = self.by_addr.insert(from, id)
                && other != id
                && let Some(o) = self.members.get_mut(&other)
            {
                o.binding = None;
                o.publish(mono, &mut self.changes);
            }
        }
        if let Some(slot) = self.members.get_mut(&id) {
            slot.publish(mono, &mut self.changes);
        }
        let reply = ProbeReply {
            txid: probe.txid,
            observed: from,
        };
        out.copy_from_slice(&reply.encode(&self.secret));
        Action::Reply {
            to: from,
            len: disco::PROBE_REPLY_LEN,
            rebound,
        }
    }

    /// Whether `ip` and everyone together may still send a probe now (probes from elsewhere
    /// than the named member's binding).
    fn shared_probe_budget(&mut self, ip: IpAddr, now: Duration) -> bool {
        let key = source_key(ip);
        if !self.probe_sources.contains_key(&key)
            && self.probe_sources.len() >= MAX_PROBE_SOURCES
            && now.saturating_sub(self.last_prune) >= Duration::from_secs(1)
        {
            self.prune_probe_sources(now);
        }
        let tracked = self.probe_sources.len() < MAX_PROBE_SOURCES;
        let source_ok = match self.probe_sources.get_mut(&key) {
            Some(bucket) => bucket.take(1.0, PROBES_PER_SOURCE, PROBE_SOURCE_BURST, now),
            None if tracked => {
                let mut bucket = Bucket::full(PROBE_SOURCE_BURST, now);
                let ok = bucket.take(1.0, PROBES_PER_SOURCE, PROBE_SOURCE_BURST, now);
                self.probe_sources.insert(key, bucket);
                ok
            }
            // Too many sources at once: this one has the global budget only.
            None => true,
        };
        let global = self.limits.probes_global;
        source_ok && self.probe_global.take(1.0, global, global, now)
    }

    fn relay(&mut self, from: SocketAddr, datagram: &mut [u8], now: Duration) -> Action {
        let Some((to_id, _)) = disco::split_relay(datagram) else {
            return Action::Drop(DropReason::Malformed);
        };
        // Only a member's binding, which a signed probe proved, may send.
        let Some(&from_id) = self.by_addr.get(&from) else {
            return Action::Drop(DropReason::NotAMember);
        };
        if self
            .members
            .get(&from_id)
            .and_then(|s| s.live(now))
            .is_none()
        {
            return Action::Drop(DropReason::NotAMember);
        }
        let to = match self.members.get(&to_id).and_then(|s| s.live(now)) {
            Some(to) if to_id != from_id => to,
            _ => return Action::Drop(DropReason::UnknownDestination),
        };
        let Some(slot) = self.members.get_mut(&from_id) else {
            return Action::Drop(DropReason::NotAMember);
        };
        let bytes = datagram.len() as u64;
        if !slot
            .quota
            .fits(bytes, self.limits.quota_bytes_per_hour, now)
        {
            return Action::Drop(DropReason::Quota);
        }
        if !slot.bucket.take(
            bytes as f64,
            self.limits.rate_bytes_per_second,
            self.limits.burst_bytes,
            now,
        ) {
            return Action::Drop(DropReason::Rate);
        }
        slot.quota.charge(bytes);
        let traffic = slot.sent.entry(to_id).or_default();
        traffic.packets += 1;
        traffic.bytes += bytes;
        let mut header = [0; disco::RELAY_HEADER_LEN];
        disco::write_relay_header(&mut header, from_id);
        datagram[..disco::RELAY_HEADER_LEN].copy_from_slice(&header);
        Action::Forward { to }
    }

    /// The member bound at `addr`, if any (for tests and logs).
    pub fn bound_at(&self, addr: SocketAddr) -> Option<&str> {
        self.by_addr
            .get(&addr)
            .and_then(|id| self.members.get(id))
            .map(|s| s.name.as_str())
    }

    /// Where member `name` is bound, if it is.
    pub fn binding(&self, name: &str, now: Duration) -> Option<SocketAddr> {
        self.members
            .values()
            .find(|s| s.name == name)
            .and_then(|s| s.live(now))
    }

    /// Datagrams dropped for `reason` so far.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops.get(&reason).copied().unwrap_or(0)
    }

    /// Packets and bytes relayed from member `from` to member `to` so far.
    pub fn relayed(&self, from: &str, to: &str) -> (u64, u64) {
        let to_id = self
            .members
            .iter()
            .find(|(_, s)| s.name == to)
            .map(|(id, _)| *id);
        self.members
            .values()
            .find(|s| s.name == from)
            .and_then(|s| s.sent.get(&to_id?))
            .map_or((0, 0), |t| (t.packets, t.bytes))
    }

    /// The admin's view: bindings, traffic by pair, drops by reason.
    pub fn status(&self, port: u16, now: Duration) -> admin::RelayStatus {
        let mut bound: Vec<admin::RelayBinding> = self
            .members
            .values()
            .filter_map(|s| {
                let b = s.binding?;
                s.live(now)?;
                Some(admin::RelayBinding {
                    name: s.name.clone(),
                    address: b.addr.to_string(),
                    age_seconds: now.saturating_sub(b.refreshed).as_secs(),
                })
            })
            .collect();
        bound.sort_by(|a, b| a.name.cmp(&b.name));
        let mut pairs: Vec<admin::RelayPair> = self
            .members
            .values()
            .flat_map(|s| {
                s.sent.iter().map(|(to, t)| admin::RelayPair {
                    from: s.name.clone(),
                    to: self
                        .members
                        .get(to)
                        .map_or_else(|| "(gone)".to_string(), |d| d.name.clone()),
                    packets: t.packets,
                    bytes: t.bytes,
                })
            })
            .collect();
        pairs.sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));
        admin::RelayStatus {
            port,
            bound,
            pairs,
            drops: DropReason::ALL
                .iter()
                .map(|r| (r.name().to_string(), self.dropped(*r)))
                .collect(),
        }
    }
}
