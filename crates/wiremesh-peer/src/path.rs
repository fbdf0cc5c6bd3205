//! Which way packets to one member go, and when to look for a better way. A member is reached
//! directly at an address (configured, on its LAN, or its NAT's mapping) or through a relay.
//! Like WireGuard's roaming, the path follows the last authenticated datagram, with one
//! exception: relayed packets do not pull a pair off a direct path that was heard from lately,
//! so packets still in flight through the relay cannot undo a switch to direct.
//!
//! An *attempt* runs while a member is not answering: from the first handshake sent without a
//! session, or when this side sends and hears nothing back. During an attempt the controller is
//! asked to make both sides punch at once, and after [`RELAY_AFTER`] the relay is tried too.
//! While a member is reached through the relay, a direct handshake is tried every
//! [`UPGRADE_EVERY`].

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long an attempt waits before asking the controller for a simultaneous punch.
pub const PUNCH_AFTER: Duration = Duration::from_secs(1);
/// How long an attempt tries direct paths alone before the relay is tried too.
pub const RELAY_AFTER: Duration = Duration::from_millis(2500);
/// How often a relayed member is offered a direct handshake. Linux keeps an unanswered UDP
/// mapping 30 s, so two sides trying this often open each other's NATs in time.
pub const UPGRADE_EVERY: Duration = Duration::from_secs(10);
/// Sending this long without hearing anything back starts an attempt: WireGuard's keepalive
/// timeout (a receiver answers data with a keepalive after 10 s at the latest) and its rekey
/// timeout, so one-way traffic on a working path is never taken for a dead one.
pub const DEAD_AFTER: Duration = Duration::from_secs(15);
/// Relayed packets do not move a member off a direct path heard from within this long.
pub const DIRECT_FRESH: Duration = Duration::from_secs(3);
/// The controller is asked to punch for one member at most this often.
pub const PUNCH_REQUEST_EVERY: Duration = Duration::from_secs(5);
/// An attempt that got no answer for this long ends (WireGuard gives up its handshake then too).
const GIVE_UP: Duration = Duration::from_secs(90);

/// Where packets to a member go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Direct(SocketAddr),
    /// Through the active relay.
    Relay,
}

/// Which destinations a handshake goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fanout {
    /// Every direct address known for the member.
    pub direct: bool,
    /// The relay.
    pub relay: bool,
}

/// How the last attempt (or direct try) ended, for status output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub started: Instant,
    /// The path that answered and how long it took; `None` while waiting or after giving up.
    pub answered: Option<(Path, Duration)>,
    /// What this try was: looking for any path, or a direct one while relayed.
    pub upgrade: bool,
}

#[derive(Debug, Clone, Copy)]
struct Attempt {
    since: Instant,
    relay_tried: bool,
    punch_requested: bool,
}

/// What [`PathState::tick`] wants done for the member.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Plan {
    /// Send a new handshake initiation to these destinations.
    pub handshake: Option<Fanout>,
    /// Ask the controller to make this member and us punch at once.
    pub punch: bool,
}

/// One member's path state.
#[derive(Debug, Clone)]
pub struct PathState {
    pub current: Option<Path>,
    /// The last direct address an authenticated datagram came from; kept while relayed, so a
    /// direct try includes it.
    pub last_direct: Option<SocketAddr>,
    last_direct_rx: Option<Instant>,
    attempt: Option<Attempt>,
    next_upgrade: Option<Instant>,
    last_punch_request: Option<Instant>,
    /// A handshake to every direct address is due at the next tick.
    fan_out_due: bool,
    /// When the member was last heard from (any authenticated datagram: data, keepalives and
    /// handshakes alike).
    heard: Option<Instant>,
    tx_bytes: u64,
    /// When the data counter last moved.
    sent: Option<Instant>,
    pub outcome: Option<Outcome>,
}

impl PathState {
    pub fn new(first: Option<SocketAddr>) -> PathState {
        PathState {
            current: first.map(Path::Direct),
            last_direct: None,
            last_direct_rx: None,
            attempt: None,
            next_upgrade: None,
            last_punch_request: None,
            fan_out_due: false,
            heard: None,
            tx_bytes: 0,
            sent: None,
            outcome: None,
        }
    }

    /// An authenticated datagram arrived by `via` at `now`. Returns the direct address the
    /// member moved from, when it moved.
    pub fn on_receive(&mut self, via: Path, now: Instant) -> Option<SocketAddr> {
        self.heard = Some(now);
        if let Some(attempt) = self.attempt.take() {
            self.outcome = Some(Outcome {
                started: attempt.since,
                answered: Some((via, now.saturating_duration_since(attempt.since))),
                upgrade: false,
            });
        }
        match via {
            Path::Direct(from) => {
                if let Some(o) = &mut self.outcome
                    && o.upgrade
                    && o.answered.is_none()
                {
                    o.answered = Some((via, now.saturating_duration_since(o.started)));
                }
                self.last_direct_rx = Some(now);
                let old = self.last_direct.replace(from).filter(|old| *old != from);
                if self.current != Some(via) {
                    self.current = Some(via);
                    self.next_upgrade = None;
                }
                old
            }
            Path::Relay => {
                let direct_fresh = self
                    .last_direct_rx
                    .is_some_and(|t| now.saturating_duration_since(t) < DIRECT_FRESH);
                if !(direct_fresh && matches!(self.current, Some(Path::Direct(_))))
                    && self.current != Some(Path::Relay)
                {
                    self.current = Some(Path::Relay);
                    self.next_upgrade = Some(now + UPGRADE_EVERY);
                }
                None
            }
        }
    }

    /// A handshake initiation is going out while the member has no session: that starts an
    /// attempt unless one runs.
    pub fn on_initiation(&mut self, now: Instant, has_session: bool) {
        if !has_session && self.attempt.is_none() {
            self.start_attempt(now);
        }
    }

    fn start_attempt(&mut self, now: Instant) {
        self.attempt = Some(Attempt {
            since: now,
            relay_tried: false,
            punch_requested: false,
        });
        self.outcome = Some(Outcome {
            started: now,
            answered: None,
            upgrade: false,
        });
    }

    /// Try every direct address at the next tick: the controller said the member punches now,
    /// or its candidates changed.
    pub fn fan_out_soon(&mut self) {
        self.fan_out_due = true;
    }

    /// This machine's network changed: every path may be gone.
    pub fn network_changed(&mut self, now: Instant) {
        self.fan_out_due = true;
        if self.attempt.is_none() {
            self.start_attempt(now);
        }
    }

    /// Which destinations a handshake initiation that WireGuard's own timers send goes to.
    pub fn retry_fanout(&self) -> Fanout {
        Fanout {
            direct: true,
            relay: self.current == Some(Path::Relay) || self.attempt.is_some_and(|a| a.relay_tried),
        }
    }

    /// Decides what to do at a timer tick. `tx` is the session's count of data bytes sent,
    /// `has_session` whether WireGuard holds a session, `relay` whether a relay is alive.
    pub fn tick(&mut self, now: Instant, tx: u64, has_session: bool, relay: bool) -> Plan {
        let mut plan = Plan::default();
        if self.heard.is_none() {
            self.heard = Some(now);
        }
        if tx != self.tx_bytes {
            self.tx_bytes = tx;
            self.sent = Some(now);
        }
        if let (Some(heard), Some(sent)) = (self.heard, self.sent)
            && has_session
            && self.attempt.is_none()
            && sent > heard
            && now.saturating_duration_since(heard) >= DEAD_AFTER
        {
            // Sending into silence: the path is probably gone (a roam, a NAT that forgot us).
            self.start_attempt(now);
            self.heard = Some(now);
            plan.handshake = Some(Fanout {
                direct: true,
                relay: false,
            });
        }
        if std::mem::take(&mut self.fan_out_due) {
            plan.handshake = Some(self.retry_fanout());
        }
        if let Some(attempt) = &mut self.attempt {
            let age = now.saturating_duration_since(attempt.since);
            if age >= PUNCH_AFTER && !attempt.punch_requested {
                attempt.punch_requested = true;
                plan.punch = true;
            }
            if age >= RELAY_AFTER && !attempt.relay_tried && relay {
                attempt.relay_tried = true;
                plan.handshake = Some(Fanout {
                    direct: true,
                    relay: true,
                });
            }
            if age >= GIVE_UP {
                self.attempt = None;
            }
        } else if self.current == Some(Path::Relay) && self.next_upgrade.is_none_or(|t| now >= t) {
            self.next_upgrade = Some(now + UPGRADE_EVERY);
            self.outcome = Some(Outcome {
                started: now,
                answered: None,
                upgrade: true,
            });
            plan.handshake = Some(Fanout {
                direct: true,
                relay: false,
            });
            plan.punch = true;
        }
        if plan.punch {
            if self
                .last_punch_request
                .is_some_and(|t| now.saturating_duration_since(t) < PUNCH_REQUEST_EVERY)
            {
                plan.punch = false;
            } else {
                self.last_punch_request = Some(now);
            }
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn an_unanswered_member_gets_a_punch_then_the_relay() {
        let t0 = Instant::now();
        let mut p = PathState::new(None);
        p.on_initiation(t0, false);
        assert_eq!(p.tick(t0 + ms(200), 0, false, true), Plan::default());
        let at_punch = p.tick(t0 + PUNCH_AFTER, 0, false, true);
        assert_eq!(
            at_punch,
            Plan {
                handshake: None,
                punch: true
            }
        );
        assert_eq!(
            p.retry_fanout(),
            Fanout {
                direct: true,
                relay: false
            }
        );
        // No relay alive: nothing more.
        assert_eq!(p.tick(t0 + RELAY_AFTER, 0, false, false), Plan::default());
        let with_relay = p.tick(t0 + RELAY_AFTER + ms(200), 0, false, true);
        assert_eq!(
            with_relay.handshake,
            Some(Fanout {
                direct: true,
                relay: true
            })
        );
        assert!(p.retry_fanout().relay, "retries keep the relay");
        // The relay answers: the member is relayed, and the outcome says so.
        let t1 = t0 + ms(2800);
        assert_eq!(p.on_receive(Path::Relay, t1), None);
        assert_eq!(p.current, Some(Path::Relay));
        assert_eq!(p.outcome.unwrap().answered, Some((Path::Relay, ms(2800))));
    }

    #[test]
    fn a_relayed_member_is_offered_direct_handshakes_and_switches_when_one_answers() {
        let t0 = Instant::now();
        let mut p = PathState::new(None);
        p.on_receive(Path::Relay, t0);
        assert_eq!(p.tick(t0 + ms(100), 1, true, true), Plan::default());
        let plan = p.tick(t0 + UPGRADE_EVERY, 1, true, true);
        assert_eq!(
            plan,
            Plan {
                handshake: Some(Fanout {
                    direct: true,
                    relay: false
                }),
                punch: true
            }
        );
        // The next try comes UPGRADE_EVERY later, and its punch request is allowed again.
        assert_eq!(
            p.tick(t0 + UPGRADE_EVERY + ms(200), 1, true, true),
            Plan::default()
        );
        let direct = addr("198.18.0.5:40000");
        let t1 = t0 + UPGRADE_EVERY + ms(300);
        p.on_receive(Path::Direct(direct), t1);
        assert_eq!(p.current, Some(Path::Direct(direct)));
        let outcome = p.outcome.unwrap();
        assert!(outcome.upgrade);
        assert_eq!(outcome.answered, Some((Path::Direct(direct), ms(300))));
        // Relayed packets still in flight do not undo the switch...
        p.on_receive(Path::Relay, t1 + ms(50));
        assert_eq!(p.current, Some(Path::Direct(direct)));
        // ...but once the direct path is silent, the relay takes over again.
        p.on_receive(Path::Relay, t1 + DIRECT_FRESH);
        assert_eq!(p.current, Some(Path::Relay));
    }

    #[test]
    fn sending_into_silence_starts_an_attempt_once() {
        let t0 = Instant::now();
        let mut p = PathState::new(Some(addr("198.18.0.5:51820")));
        p.on_receive(Path::Direct(addr("198.18.0.5:51820")), t0);
        assert_eq!(p.tick(t0, 100, true, true), Plan::default());
        // Sending on, hearing nothing.
        let mut t = t0;
        let mut tx = 100;
        let mut handshakes = Vec::new();
        while t < t0 + Duration::from_secs(18) {
            t += ms(200);
            tx += 10;
            let plan = p.tick(t, tx, true, true);
            if plan.handshake.is_some() || plan.punch {
                handshakes.push(((t - t0).as_millis(), plan));
            }
        }
        let times: Vec<u128> = handshakes.iter().map(|h| h.0).collect();
        // Dead after 15 s (direct handshake), punch a second later, the relay 2.5 s in.
        assert_eq!(times, [15000, 16000, 17600]);
        assert_eq!(
            handshakes[2].1.handshake,
            Some(Fanout {
                direct: true,
                relay: true
            })
        );
    }

    #[test]
    fn a_network_change_offers_everyone_a_handshake_and_roaming_reports_the_old_address() {
        let t0 = Instant::now();
        let a = addr("198.18.0.5:51820");
        let b = addr("198.18.0.6:51820");
        let mut p = PathState::new(Some(a));
        assert_eq!(p.on_receive(Path::Direct(a), t0), None);
        p.network_changed(t0);
        let plan = p.tick(t0 + ms(10), 0, true, true);
        assert_eq!(
            plan.handshake,
            Some(Fanout {
                direct: true,
                relay: false
            })
        );
        assert_eq!(p.on_receive(Path::Direct(b), t0 + ms(20)), Some(a));
        assert_eq!(p.current, Some(Path::Direct(b)));
        assert!(p.outcome.unwrap().answered.is_some());
    }

    #[test]
    fn punch_requests_are_rate_limited() {
        let t0 = Instant::now();
        let a = addr("198.18.0.5:51820");
        let mut p = PathState::new(None);
        p.on_initiation(t0, false);
        assert!(p.tick(t0 + PUNCH_AFTER, 0, false, false).punch);
        p.on_receive(Path::Direct(a), t0 + ms(1100));
        // A second attempt right after: its punch would come within PUNCH_REQUEST_EVERY.
        p.network_changed(t0 + ms(1200));
        let plan = p.tick(t0 + ms(1200) + PUNCH_AFTER, 0, true, false);
        assert!(!plan.punch, "{plan:?}");
        p.on_receive(Path::Direct(a), t0 + ms(2500));
        p.network_changed(t0 + Duration::from_secs(6));
        assert!(p.tick(t0 + Duration::from_secs(7), 0, true, false).punch);
    }

    #[test]
    fn one_way_traffic_answered_only_by_keepalives_is_not_taken_for_a_dead_path() {
        let t0 = Instant::now();
        let a = addr("198.18.0.5:51820");
        let mut p = PathState::new(Some(a));
        p.on_receive(Path::Direct(a), t0);
        let mut t = t0;
        let mut tx = 0;
        while t < t0 + Duration::from_secs(120) {
            t += ms(200);
            tx += 1400;
            // The receiver's passive keepalive: every 10 s of data with nothing to send back.
            if (t - t0).as_millis().is_multiple_of(10_000) {
                p.on_receive(Path::Direct(a), t);
            }
            assert_eq!(
                p.tick(t, tx, true, true),
                Plan::default(),
                "at {:?}",
                t - t0
            );
        }
    }
}
