//! Endpoint discovery from this side: signed probes from the WireGuard socket to each
//! controller's relay service, whose signed replies say which address the socket has from the
//! outside (its NAT's mapping). A relay that answered lately is alive and may carry packets for
//! members that cannot be reached directly. Sans-IO: time comes in, datagrams go out through a
//! callback.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use wiremesh_core::disco::{PROBE_LEN, Probe, ProbeReply, TXID_LEN};
use wiremesh_core::keys::NodeSecret;

use crate::spec::RelaySpec;

/// How often an answering relay is probed: well within the 30 s after which Linux forgets an
/// unanswered UDP mapping, and the controller's 90 s binding lifetime.
pub const PROBE_EVERY: Duration = Duration::from_secs(20);
/// The first retry after an unanswered probe; doubled up to [`PROBE_EVERY`].
const RETRY_FIRST: Duration = Duration::from_millis(500);
/// A move that a probe answer shows is acted on at most this often.
const MOVED_AT_MOST_EVERY: Duration = Duration::from_secs(5);
/// A relay that answered within this long is alive.
pub const RELAY_ALIVE: Duration = Duration::from_secs(60);

/// One controller's relay service as this agent sees it.
#[derive(Debug, Clone)]
struct Relay {
    spec: RelaySpec,
    /// The probe in flight: its transaction id and when it went out.
    outstanding: Option<([u8; TXID_LEN], Instant)>,
    next_probe: Option<Instant>,
    failures: u32,
    last_reply: Option<Instant>,
    observed: Option<SocketAddr>,
    rtt: Option<Duration>,
}

impl Relay {
    fn new(spec: RelaySpec) -> Relay {
        Relay {
            spec,
            outstanding: None,
            next_probe: None,
            failures: 0,
            last_reply: None,
            observed: None,
            rtt: None,
        }
    }

    fn alive(&self, now: Instant) -> bool {
        self.last_reply
            .is_some_and(|t| now.saturating_duration_since(t) < RELAY_ALIVE)
    }
}

/// A relay's state for status output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayView {
    pub name: String,
    pub addr: SocketAddr,
    /// The address the relay last saw this agent's WireGuard socket at.
    pub observed: Option<SocketAddr>,
    pub since_reply: Option<Duration>,
    pub rtt: Option<Duration>,
    pub alive: bool,
}

/// What a probe reply told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The observed address differs from the one this relay saw before: this machine's
    /// network changed (or its NAT's mapping did).
    pub moved: bool,
}

/// The probing state of every relay.
pub struct Prober {
    key: Option<NodeSecret>,
    relays: Vec<Relay>,
    /// When an answer last said this machine moved.
    last_moved: Option<Instant>,
    random: fn() -> [u8; TXID_LEN],
}

fn os_random() -> [u8; TXID_LEN] {
    let mut txid = [0; TXID_LEN];
    // A txid only has to be unguessable to strangers who did not see the probe; a failing OS
    // RNG leaves replies unmatched (probes then fail visibly in the status) rather than forged.
    let _ = getrandom::fill(&mut txid);
    txid
}

impl Prober {
    /// A prober signing with `key`; without a key it never probes (no relay is alive then).
    pub fn new(key: Option<NodeSecret>) -> Prober {
        Prober::with_random(key, os_random)
    }

    /// [`Prober::new`] with the transaction ids from `random` (tests).
    pub fn with_random(key: Option<NodeSecret>, random: fn() -> [u8; TXID_LEN]) -> Prober {
        Prober {
            key,
            relays: Vec::new(),
            last_moved: None,
            random,
        }
    }

    /// Follows the relays of a new spec; a relay that stays (same name and address) keeps its
    /// state.
    pub fn set_relays(&mut self, relays: &[RelaySpec]) {
        let mut old = std::mem::take(&mut self.relays);
        self.relays = relays
            .iter()
            .map(|spec| match old.iter().position(|r| r.spec == *spec) {
                Some(i) => old.swap_remove(i),
                None => Relay::new(spec.clone()),
            })
            .collect();
    }

    /// The relay to send through: the first alive one in the config's order.
    pub fn active(&self, now: Instant) -> Option<(&str, SocketAddr)> {
        self.relays
            .iter()
            .find(|r| r.alive(now))
            .map(|r| (r.spec.name.as_str(), r.spec.addr))
    }

    /// Probes every relay at the next tick (the network changed).
    pub fn probe_soon(&mut self) {
        for r in &mut self.relays {
            r.next_probe = None;
            r.failures = 0;
        }
    }

    /// Sends the probes that are due. `unix_ms` is the wall clock, which the controller checks
    /// probes against.
    pub fn tick(&mut self, now: Instant, unix_ms: u64, send: &mut dyn FnMut(&[u8], SocketAddr)) {
        let Some(key) = &self.key else { return };
        for r in &mut self.relays {
            if r.next_probe.is_some_and(|t| now < t) {
                continue;
            }
            if r.outstanding.is_some() {
                // The last one went unanswered.
                r.failures = r.failures.saturating_add(1);
            }
            let txid = (self.random)();
            let probe = Probe {
                node_public_key: key.public_key(),
                txid,
                unix_ms,
            };
            let bytes: [u8; PROBE_LEN] = probe.encode(key);
            send(&bytes, r.spec.addr);
            r.outstanding = Some((txid, now));
            let wait = if r.failures == 0 {
                RETRY_FIRST
            } else {
                RETRY_FIRST
                    .saturating_mul(1 << r.failures.min(8))
                    .min(PROBE_EVERY)
            };
            r.next_probe = Some(now + wait);
        }
    }

    /// Takes a probe reply from `from`: `None` unless it answers our outstanding probe to that
    /// relay and carries its controller's signature.
    pub fn on_reply(&mut self, from: SocketAddr, datagram: &[u8], now: Instant) -> Option<Answer> {
        let r = self.relays.iter_mut().find(|r| r.spec.addr == from)?;
        // Only an answer to the probe in flight costs a signature check: a stranger who forges
        // the relay's address cannot guess the txid.
        let (txid, sent) = r.outstanding?;
        if ProbeReply::peek_txid(datagram)? != txid {
            return None;
        }
        let reply = ProbeReply::decode(datagram, &r.spec.node_public_key)?;
        r.outstanding = None;
        r.failures = 0;
        r.last_reply = Some(now);
        r.rtt = Some(now.saturating_duration_since(sent));
        r.next_probe = Some(now + PROBE_EVERY);
        let changed = r.observed.is_some_and(|o| o != reply.observed);
        r.observed = Some(reply.observed);
        // A NAT that maps each probe elsewhere must not make the agent look for every path
        // again on each answer.
        let moved = changed
            && self
                .last_moved
                .is_none_or(|t| now.saturating_duration_since(t) >= MOVED_AT_MOST_EVERY);
        if moved {
            self.last_moved = Some(now);
        }
        Some(Answer { moved })
    }

    pub fn views(&self, now: Instant) -> Vec<RelayView> {
        self.relays
            .iter()
            .map(|r| RelayView {
                name: r.spec.name.clone(),
                addr: r.spec.addr,
                observed: r.observed,
                since_reply: r.last_reply.map(|t| now.saturating_duration_since(t)),
                rtt: r.rtt,
                alive: r.alive(now),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(name: &str, addr: &str, key: &NodeSecret) -> RelaySpec {
        RelaySpec {
            name: name.into(),
            addr: addr.parse().unwrap(),
            node_public_key: key.public_key(),
        }
    }

    fn sent(prober: &mut Prober, now: Instant) -> Vec<(Vec<u8>, SocketAddr)> {
        let mut out = Vec::new();
        prober.tick(now, 1_000, &mut |b, to| out.push((b.to_vec(), to)));
        out
    }

    #[test]
    fn a_signed_answer_makes_the_relay_alive_and_tells_the_mapped_address() {
        let controller = NodeSecret::from_seed([1; 32]);
        let member = NodeSecret::from_seed([2; 32]);
        let mut prober = Prober::with_random(Some(member.clone()), || [9; TXID_LEN]);
        prober.set_relays(&[relay("c", "198.18.0.3:51822", &controller)]);
        let t0 = Instant::now();
        assert_eq!(prober.active(t0), None);
        let probes = sent(&mut prober, t0);
        assert_eq!(probes.len(), 1);
        let (probe, sig) = Probe::decode(&probes[0].0).unwrap();
        assert!(probe.verify(&sig));
        assert_eq!(probe.node_public_key, member.public_key());

        let from = probes[0].1;
        let reply = |observed: &str, key: &NodeSecret| {
            ProbeReply {
                txid: [9; TXID_LEN],
                observed: observed.parse().unwrap(),
            }
            .encode(key)
        };
        // Signed by someone else: ignored.
        let t1 = t0 + Duration::from_millis(5);
        let forged = reply("198.18.0.9:4000", &member);
        assert_eq!(prober.on_reply(from, &forged, t1), None);
        // From another address: ignored.
        let good = reply("198.18.0.9:4000", &controller);
        assert_eq!(
            prober.on_reply("198.18.0.4:51822".parse().unwrap(), &good, t1),
            None
        );
        assert_eq!(
            prober.on_reply(from, &good, t1),
            Some(Answer { moved: false })
        );
        assert_eq!(prober.active(t1), Some(("c", from)));
        assert_eq!(prober.on_reply(from, &good, t1), None, "answered once only");
        let view = &prober.views(t1)[0];
        assert_eq!(view.observed, Some("198.18.0.9:4000".parse().unwrap()));
        assert_eq!(view.rtt, Some(Duration::from_millis(5)));

        // Nothing due until PROBE_EVERY; then a new probe, answered from a new address.
        assert!(sent(&mut prober, t1 + Duration::from_secs(1)).is_empty());
        let t2 = t1 + PROBE_EVERY;
        assert_eq!(sent(&mut prober, t2).len(), 1);
        let moved = reply("198.18.0.10:4001", &controller);
        assert_eq!(
            prober.on_reply(from, &moved, t2),
            Some(Answer { moved: true })
        );
        assert!(prober.active(t2 + RELAY_ALIVE).is_none(), "silent too long");
    }

    #[test]
    fn unanswered_probes_are_retried_sooner_and_a_network_change_probes_at_once() {
        let controller = NodeSecret::from_seed([1; 32]);
        let mut prober = Prober::with_random(Some(NodeSecret::from_seed([2; 32])), os_random);
        prober.set_relays(&[relay("c", "198.18.0.3:51822", &controller)]);
        let t0 = Instant::now();
        let mut at = Vec::new();
        let mut t = t0;
        while t < t0 + Duration::from_secs(10) {
            if !sent(&mut prober, t).is_empty() {
                at.push((t - t0).as_millis());
            }
            t += Duration::from_millis(100);
        }
        assert_eq!(at, [0, 500, 1500, 3500, 7500]);
        prober.probe_soon();
        assert_eq!(sent(&mut prober, t).len(), 1);
        // Without a key nothing is sent.
        let mut keyless = Prober::new(None);
        keyless.set_relays(&[relay("c", "198.18.0.3:51822", &controller)]);
        assert!(sent(&mut keyless, t0).is_empty());
    }
}
