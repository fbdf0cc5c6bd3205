//! The sans-IO core of the data plane: one boringtun [`Tunn`] per member, outgoing routing by
//! longest prefix, demultiplexing of incoming datagrams (WireGuard's, relayed ones and probe
//! replies, told apart by their first byte), inbound source filtering, roaming, paths through NAT
//! and the relay ([`crate::path`]), probes ([`crate::prober`]), timers and diff-based
//! reconfiguration. It never touches a socket, a TUN device or a clock: callers hand in packets,
//! buffers and `now`, and get back what to send where.
//!
//! Concurrency: the hot paths take `&self` so the TX and RX threads can share one `Mesh` behind a
//! read lock; each member's session sits in its own mutex. Reconfiguration ([`Mesh::apply`]) takes
//! `&mut self`.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519;
use rustc_hash::FxHashMap;
use wiremesh_core::disco::{self, Kind, PeerId, RELAY_HEADER_LEN, peer_id, write_relay_header};
use wiremesh_core::keys::NodeSecret;
use zeroize::Zeroize;

use crate::budget::HandshakeBudget;
use crate::path::{Fanout, Outcome, Path, PathState};
use crate::prefix::{PrefixMap, PrefixSet};
use crate::prober::{Prober, RelayView};
use crate::spec::{MemberSpec, MeshSpec, SpecSource};

/// Handshake messages per second (all members together) before the shared limiter answers with
/// cookies instead of doing Diffie-Hellman work.
const HANDSHAKE_RATE_LIMIT: u64 = 100;
/// WireGuard's data-packet overhead (header 16 + tag 16).
pub const WG_OVERHEAD: usize = 32;
/// The largest WireGuard control message (handshake initiation).
pub const WG_MAX_CONTROL: usize = 148;
/// The largest IP packet.
pub const MAX_IP_PACKET: usize = 65_535;
/// The buffer [`Mesh::flush_queued`] needs: room for the largest packet boringtun may have queued,
/// with a relay header in front.
pub const FLUSH_OUT_LEN: usize = MAX_IP_PACKET + WG_OVERHEAD + RELAY_HEADER_LEN;
/// The buffer [`Mesh::tick`] needs: a queued packet (or a handshake initiation) with a relay
/// header in front.
pub const TICK_OUT_LEN: usize = FLUSH_OUT_LEN;
/// No relay is active (see [`Mesh::active_relay`]).
const NO_RELAY: usize = usize::MAX;
/// How often the shared rate limiter's counter is reset.
const LIMITER_RESET: Duration = Duration::from_secs(1);
/// Handshakes per [`LIMITER_RESET`] that may be identified (one Diffie-Hellman each) while the
/// limiter is under load and they come from an address that is no member's (configured or
/// current). Beyond it they are dropped, so a flood of spoofed initiations cannot take the receive
/// thread away from the sessions already up.
const UNDER_LOAD_IDENTIFY_LIMIT: u64 = 100;

/// The size `out` must have for [`Mesh::encapsulate`] of a `len`-byte packet (with room for a
/// relay header).
pub fn encapsulate_out_len(len: usize) -> usize {
    (len + WG_OVERHEAD).max(WG_MAX_CONTROL) + RELAY_HEADER_LEN
}

/// A member's slot in the table; valid until the next [`Mesh::apply`].
pub type MemberId = usize;

/// Why a packet was dropped. Every drop is counted (see [`Mesh::drop_counts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Outgoing packet whose destination is no member's address or route.
    NoRoute,
    /// Outgoing packet for a member whose endpoint is not known yet (queued until it calls us).
    NoEndpoint,
    /// Handshake initiation from a key that is not a member: never answered.
    UnknownKey,
    /// Datagram for a receiver index no member holds.
    UnknownIndex,
    /// Malformed datagram, bad MAC/AEAD tag, replay, or a message the session did not expect.
    Invalid,
    /// Decrypted packet whose inner source does not belong to the sending member: the longest
    /// prefix containing it is another member's, or nobody's (WireGuard's cryptokey routing).
    SpoofedSource,
    /// Decrypted packet whose inner source is outside this machine's `ipRanges`.
    OutsideRanges,
    /// Buffer handed in by the caller is too small for this packet.
    BufferTooSmall,
    /// Handshake under load beyond a budget: from an unknown address without a cookie after this
    /// second's identifications ran out, or with a cookie beyond its source's or the shared
    /// [`HandshakeBudget`].
    HandshakeFlood,
}

impl DropReason {
    pub const ALL: [DropReason; 9] = [
        DropReason::NoRoute,
        DropReason::NoEndpoint,
        DropReason::UnknownKey,
        DropReason::UnknownIndex,
        DropReason::Invalid,
        DropReason::SpoofedSource,
        DropReason::OutsideRanges,
        DropReason::BufferTooSmall,
        DropReason::HandshakeFlood,
    ];

    /// Stable kebab-case name used in status output.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::NoRoute => "no-route",
            DropReason::NoEndpoint => "no-endpoint",
            DropReason::UnknownKey => "unknown-key",
            DropReason::UnknownIndex => "unknown-index",
            DropReason::Invalid => "invalid",
            DropReason::SpoofedSource => "spoofed-source",
            DropReason::OutsideRanges => "outside-ip-ranges",
            DropReason::BufferTooSmall => "buffer-too-small",
            DropReason::HandshakeFlood => "handshake-flood",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// What to do with an outgoing (TUN → network) packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outbound {
    /// Send the data packet `out[..len]` to `to` (with a relay header when `to` is the relay).
    Send {
        len: usize,
        to: SocketAddr,
    },
    /// boringtun queued the packet and wrote a handshake initiation to `out[at..at + len]`
    /// instead: hand it to [`Mesh::send_handshake`], which sends it every way the member may be
    /// reached.
    Handshake {
        at: usize,
        len: usize,
    },
    /// Nothing to send now (the packet is queued behind a handshake already in flight).
    Nothing,
    Drop(DropReason),
}

/// What to do with an incoming (network → TUN) datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// Write the IP packet `out[..len]` to the TUN device.
    Tunnel {
        len: usize,
        member: MemberId,
    },
    /// Send `out[..len]` back to `to`. With a member, call [`Mesh::flush_queued`] afterwards (at
    /// the latest at the end of the batch) to send the packets that waited for the session.
    Reply {
        len: usize,
        to: SocketAddr,
        member: Option<MemberId>,
    },
    /// Authenticated and consumed (keepalive, cookie).
    Nothing,
    Drop(DropReason),
}

/// Locks a mutex of the mesh. A panic while holding one cannot leave the value (a `Tunn`, a
/// counter) half-updated in a way that matters more than losing it, so keep going with it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A member's session state, behind the member's mutex.
struct Session {
    tunn: Tunn,
    /// Where packets to this member go; learnt from every authenticated datagram (roaming).
    path: PathState,
    dropped_spoofed: u64,
    /// Whether a tick has already offered this member a handshake of our own accord.
    greeted: bool,
    /// We answered the member's initiation and have heard no data on that session yet, so it
    /// is not ours to send on: packets queued for the member wait. (Flushing them would start a
    /// handshake of our own, which would replace the one the member is completing; two members
    /// punching at once would then replace each other's handshakes for ever.)
    unconfirmed: bool,
    /// The session was confirmed: the next tick sends what was queued for it.
    flush_due: bool,
}

/// A member of the mesh and its WireGuard session.
pub struct Member {
    spec: MemberSpec,
    /// This side's 24-bit receiver-index slot for the member (boringtun uses `index << 8 | n`).
    index: u32,
    /// How relayed datagrams name the member (a hash of its key, worked out once).
    relay_id: PeerId,
    session: Mutex<Session>,
}

/// Point-in-time counters and state of one member, for status output.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberSnapshot {
    pub path: Option<Path>,
    /// The last direct address the member was heard from.
    pub last_direct: Option<SocketAddr>,
    /// How the last search for a path (or for a direct one, while relayed) went.
    pub outcome: Option<Outcome>,
    pub since_handshake: Option<Duration>,
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    pub dropped_spoofed: u64,
}

impl Member {
    pub fn spec(&self) -> &MemberSpec {
        &self.spec
    }

    fn lock(&self) -> MutexGuard<'_, Session> {
        lock(&self.session)
    }

    pub fn snapshot(&self) -> MemberSnapshot {
        let s = self.lock();
        let (since_handshake, tx, rx, _, _) = s.tunn.stats();
        MemberSnapshot {
            path: s.path.current,
            last_direct: s.path.last_direct,
            outcome: s.path.outcome,
            since_handshake,
            tx_bytes: tx as u64,
            rx_bytes: rx as u64,
            dropped_spoofed: s.dropped_spoofed,
        }
    }
}

/// What [`Mesh::apply`] changed, for logs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub updated: Vec<String>,
    /// Sessions that had to be rebuilt (persistent keepalive changed).
    pub rekeyed: Vec<String>,
    pub warnings: Vec<String>,
}

/// The member table and everything the data path needs to route and filter.
pub struct Mesh {
    secret: x25519::StaticSecret,
    public: x25519::PublicKey,
    /// The one rate limiter that counts handshakes, in front of the demux.
    limiter: Arc<RateLimiter>,
    /// Handed to every `Tunn`: `Tunn::decapsulate` re-checks mac1 with its own limiter, and this
    /// one never limits, so handshakes are counted once (by `limiter`).
    mac_only: Arc<RateLimiter>,
    last_limiter_reset: Mutex<Option<Instant>>,
    /// Handshake messages with a valid mac1 since the last reset, counted as `limiter` counts
    /// them: past [`HANDSHAKE_RATE_LIMIT`] we are under load.
    handshakes: AtomicU64,
    /// Identifications done under load since the last reset (see [`UNDER_LOAD_IDENTIFY_LIMIT`]).
    identified_under_load: AtomicU64,
    /// What cookie-carrying handshakes under load may still cost.
    budget: Mutex<HandshakeBudget>,
    /// Every member's configured endpoints: under load these get a cookie without identification
    /// and draw on no shared budget.
    member_endpoints: HashSet<SocketAddr>,
    /// Where members' authenticated datagrams last came from (their endpoints now, roamed or
    /// behind NAT): under load they count like configured endpoints. Changes only on roaming.
    learnt: Mutex<HashSet<SocketAddr>>,
    /// Probes to the controllers' relay services, and which of them answer.
    prober: Mutex<Prober>,
    /// The relays' addresses: relayed datagrams and probe replies come only from these.
    relay_addrs: Vec<SocketAddr>,
    /// Index in `relay_addrs` of the relay packets go through, or [`NO_RELAY`]; set by the timer.
    active_relay: AtomicUsize,
    slots: Vec<Option<Member>>,
    by_key: HashMap<[u8; 32], MemberId>,
    by_index: FxHashMap<u32, MemberId>,
    routes: PrefixMap<MemberId>,
    ip_ranges: PrefixSet,
    /// Every overlay prefix ([`MeshSpec::overlay`]): a datagram from inside it does not move a
    /// member's path (WireGuard inside WireGuard).
    overlay: PrefixSet,
    drops: [AtomicU64; DropReason::ALL.len()],
    spec: MeshSpec,
}

/// A source of random 24-bit receiver-index slots.
pub trait IndexSource {
    fn next_index(&mut self) -> u32;
}

/// Random slots from the operating system.
pub struct OsIndexSource;

impl IndexSource for OsIndexSource {
    fn next_index(&mut self) -> u32 {
        // An index only has to be unique on this machine (collisions are re-drawn by the caller),
        // so a failing OS RNG degrades to predictable but still working indices.
        getrandom::u32().unwrap_or_else(|_| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            nanos.wrapping_mul(2_654_435_761)
        })
    }
}

impl Mesh {
    /// A mesh for this machine's WireGuard secret key, configured from `spec`.
    pub fn new(
        mut secret_bytes: [u8; 32],
        spec: &MeshSpec,
        indices: &mut dyn IndexSource,
    ) -> (Self, ApplyReport) {
        let secret = x25519::StaticSecret::from(secret_bytes);
        // Wiped like the node key's seed: the key wipes itself on drop, this copy is ours.
        secret_bytes.zeroize();
        let public = x25519::PublicKey::from(&secret);
        let mut mesh = Mesh {
            limiter: Arc::new(RateLimiter::new(&public, HANDSHAKE_RATE_LIMIT)),
            mac_only: Arc::new(RateLimiter::new(&public, u64::MAX)),
            secret,
            public,
            last_limiter_reset: Mutex::new(None),
            handshakes: AtomicU64::new(0),
            identified_under_load: AtomicU64::new(0),
            budget: Mutex::new(HandshakeBudget::default()),
            member_endpoints: HashSet::new(),
            learnt: Mutex::new(HashSet::new()),
            prober: Mutex::new(Prober::new(None)),
            relay_addrs: Vec::new(),
            active_relay: AtomicUsize::new(NO_RELAY),
            slots: Vec::new(),
            by_key: HashMap::new(),
            by_index: FxHashMap::default(),
            routes: PrefixMap::new(),
            ip_ranges: PrefixSet::new(),
            overlay: PrefixSet::new(),
            drops: Default::default(),
            spec: MeshSpec {
                addresses: Vec::new(),
                networks: Vec::new(),
                ip_ranges: Vec::new(),
                members: Vec::new(),
                relays: Vec::new(),
                source: SpecSource::Config,
            },
        };
        let report = mesh.apply(spec, indices);
        (mesh, report)
    }

    pub fn public_key(&self) -> [u8; 32] {
        *self.public.as_bytes()
    }

    /// Signs probes to the relays with this node key; without one the mesh never probes, so no
    /// relay becomes active.
    pub fn enable_probes(&mut self, key: NodeSecret) {
        let mut prober = Prober::new(Some(key));
        prober.set_relays(&self.spec.relays);
        *lock(&self.prober) = prober;
    }

    /// The relay packets go through now, if any is alive.
    fn active_relay(&self) -> Option<SocketAddr> {
        self.relay_addrs
            .get(self.active_relay.load(Ordering::Relaxed))
            .copied()
    }

    /// The relays and what their probes found, for status output.
    pub fn relays(&self, now: Instant) -> Vec<RelayView> {
        lock(&self.prober).views(now)
    }

    /// The controller said `name` is sending to our candidates now: send it a handshake every
    /// direct way at the next tick.
    pub fn punch(&self, name: &str) {
        if let Some((_, m)) = self.members().find(|(_, m)| m.spec.name == name) {
            m.lock().path.fan_out_soon();
        }
    }

    /// This machine's addresses changed: probe the relays again and look for a path to every
    /// member.
    pub fn network_changed(&self, now: Instant) {
        lock(&self.prober).probe_soon();
        for (_, m) in self.members() {
            m.lock().path.network_changed(now);
        }
    }

    /// The spec last applied.
    pub fn spec(&self) -> &MeshSpec {
        &self.spec
    }

    pub fn member(&self, id: MemberId) -> Option<&Member> {
        self.slots.get(id).and_then(Option::as_ref)
    }

    pub fn members(&self) -> impl Iterator<Item = (MemberId, &Member)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(id, m)| m.as_ref().map(|m| (id, m)))
    }

    pub fn member_by_key(&self, key: &[u8; 32]) -> Option<MemberId> {
        self.by_key.get(key).copied()
    }

    /// Drop counters by reason, in [`DropReason::ALL`] order.
    pub fn drop_counts(&self) -> Vec<(DropReason, u64)> {
        DropReason::ALL
            .iter()
            .map(|r| (*r, self.drops[r.slot()].load(Ordering::Relaxed)))
            .collect()
    }

    pub fn count_drop(&self, reason: DropReason) {
        self.drops[reason.slot()].fetch_add(1, Ordering::Relaxed);
    }

    fn drop(&self, reason: DropReason) -> DropReason {
        self.count_drop(reason);
        reason
    }

    /// Counts an outgoing packet that [`Mesh::route`] found no member for. Multicast (the
    /// kernel's own neighbour discovery and MLD on the TUN) is expected and not counted.
    pub fn count_unroutable(&self, packet: &[u8]) {
        if !Tunn::dst_address(packet).is_some_and(|dst| dst.is_multicast()) {
            self.count_drop(DropReason::NoRoute);
        }
    }

    /// The member an outgoing IP packet goes to, by longest prefix on its destination.
    pub fn route(&self, packet: &[u8]) -> Option<MemberId> {
        let dst = Tunn::dst_address(packet)?;
        self.routes.longest_match(dst).copied()
    }

    /// Encrypts an outgoing IP packet for `member` into `out`, which must hold at least
    /// [`encapsulate_out_len`]`(packet.len())` bytes.
    pub fn encapsulate(&self, member: MemberId, packet: &[u8], out: &mut [u8]) -> Outbound {
        if packet.len() > MAX_IP_PACKET {
            // No IP packet is that long, and boringtun may queue it behind a handshake, to be
            // sent later into a FLUSH_OUT_LEN buffer it would not fit (boringtun panics then).
            return Outbound::Drop(self.drop(DropReason::Invalid));
        }
        if out.len() < encapsulate_out_len(packet.len()) {
            return Outbound::Drop(self.drop(DropReason::BufferTooSmall));
        }
        let Some(m) = self.member(member) else {
            return Outbound::Drop(self.drop(DropReason::NoRoute));
        };
        let mut s = m.lock();
        let relay = match s.path.current {
            Some(Path::Relay) => self.active_relay(),
            _ => None,
        };
        let at = if relay.is_some() { RELAY_HEADER_LEN } else { 0 };
        match s.tunn.encapsulate(packet, &mut out[at..]) {
            TunnResult::WriteToNetwork(buf) => {
                let len = buf.len();
                // A data packet is exactly the input plus overhead; anything else is the handshake
                // initiation boringtun sends while it queues the packet.
                if len != packet.len() + WG_OVERHEAD || out[at] != 4 {
                    return Outbound::Handshake { at, len };
                }
                match (s.path.current, relay) {
                    (Some(Path::Relay), Some(to)) => {
                        frame(out, m.relay_id);
                        Outbound::Send {
                            len: len + RELAY_HEADER_LEN,
                            to,
                        }
                    }
                    (Some(Path::Direct(to)), _) => Outbound::Send { len, to },
                    // Relayed with no relay answering, or no path known: the last direct
                    // address is the best guess.
                    (Some(Path::Relay), None) | (None, _) => match s.path.last_direct {
                        Some(to) => Outbound::Send { len, to },
                        None => Outbound::Drop(self.drop(DropReason::NoEndpoint)),
                    },
                }
            }
            TunnResult::Done => Outbound::Nothing,
            TunnResult::Err(_)
            | TunnResult::WriteToTunnelV4(..)
            | TunnResult::WriteToTunnelV6(..) => Outbound::Drop(self.drop(DropReason::Invalid)),
        }
    }

    /// Finds the member a handshake initiation comes from, by its static key.
    fn identify(&self, packet: &Packet<'_>) -> Result<MemberId, DropReason> {
        match packet {
            Packet::HandshakeInit(init) => {
                let half = parse_handshake_anon(&self.secret, &self.public, init)
                    .map_err(|_| DropReason::Invalid)?;
                self.by_key
                    .get(&half.peer_static_public)
                    .copied()
                    .ok_or(DropReason::UnknownKey)
            }
            Packet::HandshakeResponse(p) => self.by_receiver(p.receiver_idx),
            Packet::PacketCookieReply(p) => self.by_receiver(p.receiver_idx),
            Packet::PacketData(p) => self.by_receiver(p.receiver_idx),
        }
    }

    /// Whether `from` is a member's configured endpoint or where a member is now.
    fn is_member_address(&self, from: &SocketAddr) -> bool {
        self.member_endpoints.contains(from) || lock(&self.learnt).contains(from)
    }

    /// A member's endpoint moved from `old` to `new`.
    fn relearn(&self, old: Option<SocketAddr>, new: SocketAddr) {
        let mut learnt = lock(&self.learnt);
        if let Some(old) = old {
            learnt.remove(&old);
        }
        learnt.insert(new);
    }

    fn by_receiver(&self, receiver_idx: u32) -> Result<MemberId, DropReason> {
        self.by_index
            .get(&(receiver_idx >> 8))
            .copied()
            .ok_or(DropReason::UnknownIndex)
    }

    /// Handles one datagram from `from`, received at `now`: a WireGuard message, one relayed
    /// through a relay, or a relay's probe reply. `out` must be at least as long as the datagram
    /// and at least [`WG_MAX_CONTROL`] bytes.
    pub fn decapsulate(
        &self,
        from: SocketAddr,
        datagram: &[u8],
        out: &mut [u8],
        now: Instant,
    ) -> Inbound {
        if out.len() < datagram.len().max(WG_MAX_CONTROL) {
            return Inbound::Drop(self.drop(DropReason::BufferTooSmall));
        }
        match disco::kind(datagram) {
            Kind::Wireguard => self.receive(from, None, datagram, out, now),
            Kind::Relay if self.relay_addrs.contains(&from) => match disco::split_relay(datagram) {
                Some((id, inner)) => self.receive(from, Some(id), inner, out, now),
                None => Inbound::Drop(self.drop(DropReason::Invalid)),
            },
            Kind::ProbeReply if self.relay_addrs.contains(&from) => {
                let answer = lock(&self.prober).on_reply(from, datagram, now);
                match answer {
                    Some(a) => {
                        if a.moved {
                            // The NAT in front of us maps us elsewhere now: the paths members
                            // know for us are stale.
                            self.network_changed(now);
                        }
                        Inbound::Nothing
                    }
                    None => Inbound::Drop(self.drop(DropReason::Invalid)),
                }
            }
            // Probes are for controllers, and relay datagrams only come from relays.
            Kind::Relay | Kind::ProbeReply | Kind::Probe => {
                Inbound::Drop(self.drop(DropReason::Invalid))
            }
        }
    }

    /// Handles one WireGuard message from `from`, relayed by it from the member `relayed` names
    /// when that is set.
    fn receive(
        &self,
        from: SocketAddr,
        relayed: Option<PeerId>,
        datagram: &[u8],
        out: &mut [u8],
        now: Instant,
    ) -> Inbound {
        // A relayed datagram comes from a member: the relay forwards only what a member's bound
        // address sent, within that member's rate. So no cookie (none could go back through the
        // relay, whose address says nothing of the sender) and no handshake budget: only mac1.
        let limiter = if relayed.is_some() {
            &self.mac_only
        } else {
            &self.limiter
        };
        let packet = match limiter.verify_packet(Some(from.ip()), datagram, out) {
            Ok(packet) => packet,
            Err(TunnResult::WriteToNetwork(cookie)) => {
                self.handshakes.fetch_add(1, Ordering::Relaxed);
                let len = cookie.len();
                return self.under_load(from, datagram, len);
            }
            Err(_) => return Inbound::Drop(self.drop(DropReason::Invalid)),
        };
        if relayed.is_none()
            && matches!(
                packet,
                Packet::HandshakeInit(_) | Packet::HandshakeResponse(_)
            )
            && self.handshakes.fetch_add(1, Ordering::Relaxed) >= HANDSHAKE_RATE_LIMIT
        {
            // Under load, so this one carried a valid cookie: it may still cost Diffie-Hellman
            // work only within its source's budget and the shared one.
            // A response to an index of ours answers our own initiation.
            let member = self.is_member_address(&from)
                || matches!(&packet, Packet::HandshakeResponse(p)
                    if self.by_receiver(p.receiver_idx).is_ok());
            if !lock(&self.budget).allow(from.ip(), member, now) {
                return Inbound::Drop(self.drop(DropReason::HandshakeFlood));
            }
        }
        let is_cookie = matches!(packet, Packet::PacketCookieReply(_));
        let message = datagram.first().copied();
        let id = match self.identify(&packet) {
            Ok(id) => id,
            Err(reason) => return Inbound::Drop(self.drop(reason)),
        };
        let Some(m) = self.member(id) else {
            return Inbound::Drop(self.drop(DropReason::UnknownIndex));
        };
        if relayed.is_some_and(|r| r != m.relay_id) {
            // The relay names another sender than the session that authenticates the packet.
            return Inbound::Drop(self.drop(DropReason::Invalid));
        }
        let mut s = m.lock();
        let (result, src) = match s.tunn.decapsulate(Some(from.ip()), datagram, out) {
            TunnResult::WriteToNetwork(buf) => {
                let mut len = buf.len();
                if relayed.is_some() {
                    // Back the way it came: the answer (a handshake response or keepalive, far
                    // shorter than `out`) moves behind a relay header.
                    if out.len() < len + RELAY_HEADER_LEN {
                        return Inbound::Drop(self.drop(DropReason::BufferTooSmall));
                    }
                    out.copy_within(..len, RELAY_HEADER_LEN);
                    frame(out, m.relay_id);
                    len += RELAY_HEADER_LEN;
                }
                (
                    Inbound::Reply {
                        len,
                        to: from,
                        member: Some(id),
                    },
                    None,
                )
            }
            TunnResult::WriteToTunnelV4(buf, src) => (
                Inbound::Tunnel {
                    len: buf.len(),
                    member: id,
                },
                Some(IpAddr::V4(src)),
            ),
            TunnResult::WriteToTunnelV6(buf, src) => (
                Inbound::Tunnel {
                    len: buf.len(),
                    member: id,
                },
                Some(IpAddr::V6(src)),
            ),
            TunnResult::Done => (Inbound::Nothing, None),
            TunnResult::Err(WireGuardError::NoCurrentSession | WireGuardError::WrongIndex) => {
                return Inbound::Drop(self.drop(DropReason::UnknownIndex));
            }
            TunnResult::Err(_) => return Inbound::Drop(self.drop(DropReason::Invalid)),
        };
        match message {
            Some(1) => s.unconfirmed = true,
            Some(2) => s.unconfirmed = false,
            Some(4) if s.unconfirmed => {
                s.unconfirmed = false;
                s.flush_due = true;
            }
            _ => {}
        }
        // Everything that reached here was authenticated, except a cookie reply (its key is
        // derived from public values), so it may move the member's path.
        if !is_cookie {
            match relayed {
                Some(_) => {
                    s.path.on_receive(Path::Relay, now);
                }
                // From inside the overlay: the packet came through the mesh itself (a candidate
                // behind a member's route); sending the member's packets back there would loop.
                None if s.path.last_direct != Some(from) && self.overlay.contains(from.ip()) => {}
                None => {
                    let moved = s.path.last_direct != Some(from);
                    let old = s.path.on_receive(Path::Direct(from), now);
                    if moved {
                        self.relearn(old, from);
                    }
                }
            }
        }
        if let Some(src) = src {
            // Cryptokey routing: the source must route back to this very member, so a member
            // whose route covers another member's address cannot send as that member.
            if self.routes.longest_match(src) != Some(&id) {
                s.dropped_spoofed += 1;
                return Inbound::Drop(self.drop(DropReason::SpoofedSource));
            }
            if !self.ip_ranges.contains(src) {
                return Inbound::Drop(self.drop(DropReason::OutsideRanges));
            }
        }
        result
    }

    /// A handshake arrived under load without a valid cookie, and `len` bytes of cookie reply are
    /// ready in `out`. A cookie reply goes only to a handshake that names a member's key. That
    /// keeps a scan from finding us, but it is no proof of membership: keys are public, so a
    /// stranger can name a member's key and get a cookie for its own address (what it may do
    /// with that cookie is bounded by the [`HandshakeBudget`]).
    /// - To a member's configured or current endpoint the reply goes at once. Should the
    ///   handshake be forged, the reply reaches that member, never the forger;
    /// - from any other address, reading the key a handshake names costs one Diffie-Hellman. That
    ///   is paid at most [`UNDER_LOAD_IDENTIFY_LIMIT`] times a period; the rest are dropped.
    fn under_load(&self, from: SocketAddr, datagram: &[u8], len: usize) -> Inbound {
        let reply = Inbound::Reply {
            len,
            to: from,
            member: None,
        };
        if self.is_member_address(&from) {
            return reply;
        }
        if self.identified_under_load.fetch_add(1, Ordering::Relaxed) >= UNDER_LOAD_IDENTIFY_LIMIT {
            return Inbound::Drop(self.drop(DropReason::HandshakeFlood));
        }
        match Tunn::parse_incoming_packet(datagram).map(|p| self.identify(&p)) {
            Ok(Ok(_)) => reply,
            Ok(Err(reason)) => Inbound::Drop(self.drop(reason)),
            Err(_) => Inbound::Drop(self.drop(DropReason::Invalid)),
        }
    }

    /// Sends the next packet that waited for `member`'s session: `Some((len, to))` for
    /// `out[..len]`, `None` when the queue is empty. Call until `None` after an
    /// [`Inbound::Reply`] with a member. `out` must hold [`FLUSH_OUT_LEN`] bytes (a queued
    /// packet may be any IP packet); with less nothing is sent.
    pub fn flush_queued(&self, member: MemberId, out: &mut [u8]) -> Option<(usize, SocketAddr)> {
        if out.len() < FLUSH_OUT_LEN {
            self.count_drop(DropReason::BufferTooSmall);
            return None;
        }
        let m = self.member(member)?;
        let mut s = m.lock();
        if s.unconfirmed {
            return None;
        }
        let (at, to) = match s.path.current? {
            Path::Direct(to) => (0, to),
            Path::Relay => match self.active_relay() {
                Some(relay) => (RELAY_HEADER_LEN, relay),
                None => (0, s.path.last_direct?),
            },
        };
        match s.tunn.decapsulate(None, &[], &mut out[at..]) {
            TunnResult::WriteToNetwork(buf) => {
                let len = buf.len();
                if at > 0 {
                    frame(out, m.relay_id);
                }
                Some((at + len, to))
            }
            _ => None,
        }
    }

    /// Sends a handshake initiation that [`Mesh::encapsulate`] returned every way `member` may
    /// be reached (see [`PathState::retry_fanout`]).
    pub fn send_handshake(
        &self,
        member: MemberId,
        initiation: &[u8],
        now: Instant,
        send: &mut dyn FnMut(&[u8], SocketAddr),
    ) {
        let Some(m) = self.member(member) else { return };
        let mut s = m.lock();
        let has_session = s.tunn.time_since_last_handshake().is_some();
        s.path.on_initiation(now, has_session);
        let fanout = s.path.retry_fanout();
        if !self.fan_out(m, &s, initiation, fanout, send) {
            // The packet waits in boringtun's queue for a way to the member.
            self.count_drop(DropReason::NoEndpoint);
        }
    }

    /// Sends `initiation` to every destination `fanout` names for member `m`; false when there
    /// was none.
    fn fan_out(
        &self,
        m: &Member,
        s: &Session,
        initiation: &[u8],
        fanout: Fanout,
        send: &mut dyn FnMut(&[u8], SocketAddr),
    ) -> bool {
        let mut sent = false;
        if fanout.direct {
            let mut seen: Vec<SocketAddr> = Vec::new();
            let current = match s.path.current {
                Some(Path::Direct(a)) => Some(a),
                _ => None,
            };
            let all = current
                .into_iter()
                .chain(m.spec.endpoints.iter().copied())
                .chain(m.spec.candidates.iter().map(|(a, _)| *a))
                .chain(s.path.last_direct);
            for to in all {
                if !seen.contains(&to) {
                    seen.push(to);
                    send(initiation, to);
                    sent = true;
                }
            }
        }
        if fanout.relay
            && let Some(relay) = self.active_relay()
            && initiation.len() <= WG_MAX_CONTROL
        {
            let mut framed = [0u8; RELAY_HEADER_LEN + WG_MAX_CONTROL];
            framed[RELAY_HEADER_LEN..RELAY_HEADER_LEN + initiation.len()]
                .copy_from_slice(initiation);
            frame(&mut framed, m.relay_id);
            send(&framed[..RELAY_HEADER_LEN + initiation.len()], relay);
            sent = true;
        }
        sent
    }

    /// Runs every member's WireGuard timers (handshake retries, rekeys, keepalives), the paths'
    /// decisions (punches, relay fallback, direct tries), the probes to the relays and the shared
    /// rate limiter's reset. Call every 100–250 ms with the monotonic `now` and the wall clock
    /// `unix_ms`; `send` gets each datagram to transmit. `out` must hold at least
    /// [`TICK_OUT_LEN`] bytes. Returns the members the controller should make punch with us.
    pub fn tick(
        &self,
        now: Instant,
        unix_ms: u64,
        out: &mut [u8],
        send: &mut dyn FnMut(&[u8], SocketAddr),
    ) -> Vec<String> {
        {
            let mut last = lock(&self.last_limiter_reset);
            if last.is_none_or(|t| now.duration_since(t) >= LIMITER_RESET) {
                self.limiter.reset_count();
                self.handshakes.store(0, Ordering::Relaxed);
                self.identified_under_load.store(0, Ordering::Relaxed);
                *last = Some(now);
            }
        }
        lock(&self.budget).forget_idle(now);
        let mut punch = Vec::new();
        if out.len() < TICK_OUT_LEN {
            self.count_drop(DropReason::BufferTooSmall);
            return punch;
        }
        {
            let mut prober = lock(&self.prober);
            prober.tick(now, unix_ms, send);
            let active = prober
                .active(now)
                .and_then(|(_, addr)| self.relay_addrs.iter().position(|a| *a == addr))
                .unwrap_or(NO_RELAY);
            self.active_relay.store(active, Ordering::Relaxed);
        }
        let relay_alive = self.active_relay().is_some();
        for (_, m) in self.members() {
            let mut s = m.lock();
            let has_session = s.tunn.time_since_last_handshake().is_some();
            let (_, tx, _, _, _) = s.tunn.stats();
            let mut plan = s.path.tick(now, tx as u64, has_session, relay_alive);
            // Greet every new member (at start, or added by a reload) with a handshake at once:
            // one that still holds a session with a previous run of ours would otherwise notice
            // only after keepalive + rekey timeouts (~15 s), and traffic to it would stall.
            // A greeting leaves a handshake already in flight alone; the path's plans replace it.
            let mut force = plan.handshake.is_some();
            if !s.greeted {
                s.greeted = true;
                if !has_session && plan.handshake.is_none() {
                    plan.handshake = Some(s.path.retry_fanout());
                    force = false;
                }
            }
            if plan.punch {
                punch.push(m.spec.name.clone());
            }
            if let Some(fanout) = plan.handshake
                && let TunnResult::WriteToNetwork(buf) =
                    s.tunn.format_handshake_initiation(out, force)
            {
                let len = buf.len();
                s.path.on_initiation(now, has_session);
                self.fan_out(m, &s, &out[..len], fanout, send);
            }
            if std::mem::take(&mut s.flush_due) {
                self.send_queued(m, &mut s, out, send);
            }
            if let TunnResult::WriteToNetwork(buf) =
                s.tunn.update_timers(&mut out[RELAY_HEADER_LEN..])
            {
                let len = buf.len();
                let packet = RELAY_HEADER_LEN..RELAY_HEADER_LEN + len;
                if out[RELAY_HEADER_LEN] == 1 {
                    s.path.on_initiation(now, has_session);
                    let fanout = s.path.retry_fanout();
                    self.fan_out(m, &s, &out[packet], fanout, send);
                    continue;
                }
                match s.path.current {
                    Some(Path::Direct(to)) => send(&out[packet], to),
                    Some(Path::Relay) => match self.active_relay() {
                        Some(relay) => {
                            frame(out, m.relay_id);
                            send(&out[..packet.end], relay);
                        }
                        None => {
                            if let Some(to) = s.path.last_direct {
                                send(&out[packet], to);
                            }
                        }
                    },
                    None => {}
                }
            }
        }
        punch
    }

    /// Sends every packet queued for member `m` on its current path.
    fn send_queued(
        &self,
        m: &Member,
        s: &mut Session,
        out: &mut [u8],
        send: &mut dyn FnMut(&[u8], SocketAddr),
    ) {
        let relay = match s.path.current {
            Some(Path::Relay) => self.active_relay(),
            _ => None,
        };
        let (at, to) = match (s.path.current, relay) {
            (Some(Path::Relay), Some(relay)) => (RELAY_HEADER_LEN, relay),
            (Some(Path::Direct(to)), _) => (0, to),
            (Some(Path::Relay), None) => match s.path.last_direct {
                Some(to) => (0, to),
                None => return,
            },
            (None, _) => return,
        };
        while let TunnResult::WriteToNetwork(buf) = s.tunn.decapsulate(None, &[], &mut out[at..]) {
            let len = buf.len();
            if out[at] != 4 {
                // No session to send on after all: boringtun keeps the packet and sent a handshake.
                let initiation = out[at..at + len].to_vec();
                let fanout = s.path.retry_fanout();
                self.fan_out(m, s, &initiation, fanout, send);
                return;
            }
            if at > 0 {
                frame(out, m.relay_id);
            }
            send(&out[..at + len], to);
        }
    }

    fn new_session(&self, spec: &MemberSpec, index: u32) -> Session {
        let tunn = Tunn::new(
            self.secret.clone(),
            x25519::PublicKey::from(spec.public_key),
            None,
            spec.persistent_keepalive,
            index,
            Some(self.mac_only.clone()),
        );
        Session {
            tunn,
            path: PathState::new(spec.endpoints.first().copied()),
            dropped_spoofed: 0,
            greeted: false,
            unconfirmed: false,
            flush_due: false,
        }
    }

    fn fresh_index(&self, indices: &mut dyn IndexSource) -> u32 {
        loop {
            let index = indices.next_index() & 0x00ff_ffff;
            if !self.by_index.contains_key(&index) {
                return index;
            }
        }
    }

    /// Makes the table match `spec`, touching only members that changed: sessions of members
    /// whose key stays keep running (new addresses, routes or endpoints are applied in place).
    pub fn apply(&mut self, spec: &MeshSpec, indices: &mut dyn IndexSource) -> ApplyReport {
        let overlay = spec.overlay();
        let spec = &spec.with_usable_candidates(&overlay);
        let mut report = ApplyReport::default();
        let mut wanted: Vec<&MemberSpec> = Vec::new();
        let mut seen = HashSet::new();
        for member in &spec.members {
            if member.public_key == *self.public.as_bytes() {
                // The member list may include this machine; it is not a peer of itself.
                continue;
            }
            if !seen.insert(member.public_key) {
                report.warnings.push(format!(
                    "member '{}' repeats a WireGuard key already used by another member; ignored",
                    member.name
                ));
                continue;
            }
            wanted.push(member);
        }

        for id in 0..self.slots.len() {
            let Some(m) = &self.slots[id] else { continue };
            if !seen.contains(&m.spec.public_key) {
                report.removed.push(m.spec.name.clone());
                self.by_key.remove(&m.spec.public_key);
                self.by_index.remove(&m.index);
                self.slots[id] = None;
            }
        }

        for ms in wanted {
            if let Some(&id) = self.by_key.get(&ms.public_key) {
                let Some(old) = self.slots[id].take() else {
                    continue;
                };
                if old.spec == *ms {
                    self.slots[id] = Some(old);
                    continue;
                }
                report.updated.push(ms.name.clone());
                let member = if old.spec.persistent_keepalive != ms.persistent_keepalive {
                    // boringtun fixes the keepalive at construction: rebuild this one session.
                    report.rekeyed.push(ms.name.clone());
                    self.by_index.remove(&old.index);
                    let index = self.fresh_index(indices);
                    self.by_index.insert(index, id);
                    let mut session = self.new_session(ms, index);
                    let old_session = old.session.into_inner().unwrap_or_else(|e| e.into_inner());
                    if ms.endpoints == old.spec.endpoints {
                        session.path = old_session.path;
                    }
                    Member {
                        spec: ms.clone(),
                        relay_id: old.relay_id,
                        index,
                        session: Mutex::new(session),
                    }
                } else {
                    let mut session = old.session.into_inner().unwrap_or_else(|e| e.into_inner());
                    if ms.endpoints != old.spec.endpoints
                        && session.path.current != Some(Path::Relay)
                    {
                        // New configured endpoints are newer knowledge than a learnt one.
                        session.path.current = ms.endpoints.first().copied().map(Path::Direct);
                    }
                    if ms.candidates != old.spec.candidates || ms.endpoints != old.spec.endpoints {
                        // New ways to reach the member, perhaps because it moved: try them
                        // all, as the member, told the same by the controller, tries ours.
                        session.path.fan_out_soon();
                    }
                    Member {
                        spec: ms.clone(),
                        relay_id: old.relay_id,
                        index: old.index,
                        session: Mutex::new(session),
                    }
                };
                self.slots[id] = Some(member);
            } else {
                report.added.push(ms.name.clone());
                let index = self.fresh_index(indices);
                let member = Member {
                    spec: ms.clone(),
                    relay_id: peer_id(&ms.public_key),
                    index,
                    session: Mutex::new(self.new_session(ms, index)),
                };
                let id = match self.slots.iter().position(Option::is_none) {
                    Some(free) => {
                        self.slots[free] = Some(member);
                        free
                    }
                    None => {
                        self.slots.push(Some(member));
                        self.slots.len() - 1
                    }
                };
                self.by_key.insert(ms.public_key, id);
                self.by_index.insert(index, id);
            }
        }

        // Routing tables are cheap to rebuild and hold no session state. Members are visited in
        // name order so a prefix claimed twice always goes to the same member.
        let mut order: Vec<(MemberId, &Member)> = self.members().collect();
        order.sort_by(|a, b| a.1.spec.name.cmp(&b.1.spec.name));
        let mut routes = PrefixMap::new();
        for (id, m) in order {
            for net in m.spec.owned_prefixes() {
                if let Some(&other) = routes.get_exact(&net) {
                    let other_name = self
                        .member(other)
                        .map(|o| o.spec.name.as_str())
                        .unwrap_or("?");
                    report.warnings.push(format!(
                        "prefix {net} is claimed by members '{other_name}' and '{}'; routed to '{other_name}', \
                         the only one that may send from it",
                        m.spec.name
                    ));
                } else {
                    routes.insert(net, id);
                }
            }
        }
        self.routes = routes;
        self.member_endpoints = self
            .members()
            .flat_map(|(_, m)| {
                m.spec
                    .endpoints
                    .iter()
                    .chain(m.spec.candidates.iter().map(|(a, _)| a))
            })
            // Source addresses reach `decapsulate` canonical (IPv4, not v4-mapped).
            .map(|e| canonical(*e))
            .collect();
        let learnt = self
            .members()
            .filter_map(|(_, m)| m.lock().path.last_direct)
            .collect();
        *lock(&self.learnt) = learnt;
        let active = self.active_relay();
        self.relay_addrs = spec.relays.iter().map(|r| canonical(r.addr)).collect();
        let active = active
            .and_then(|a| self.relay_addrs.iter().position(|r| *r == a))
            .unwrap_or(NO_RELAY);
        self.active_relay.store(active, Ordering::Relaxed);
        lock(&self.prober).set_relays(&spec.relays);
        self.ip_ranges = spec.ip_ranges.iter().copied().collect();
        self.overlay = overlay;
        self.spec = spec.clone();
        report
    }
}

/// `addr` as received: IPv4, not v4-mapped.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Writes a relay header naming `peer` into the front of `out`.
fn frame(out: &mut [u8], peer: PeerId) {
    if let Some(header) = out
        .get_mut(..RELAY_HEADER_LEN)
        .and_then(|h| <&mut [u8; RELAY_HEADER_LEN]>::try_from(h).ok())
    {
        write_relay_header(header, peer);
    }
}
