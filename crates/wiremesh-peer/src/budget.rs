//! The handshake budget under load. Past the rate limit, WireGuard answers handshakes with a
//! cookie, and an initiation that carries a valid cookie (mac2) proves only that its sender can
//! receive at its source address. Anyone can craft initiations (they take public keys alone), so a
//! stranger that fetched a cookie for its real address could otherwise make us do Diffie-Hellman
//! work without end. Like the kernel's ratelimiter, every source address (IPv6 by /64) gets a
//! token bucket; on top of that, all sources share one, so many addresses together are bounded
//! too. Members' addresses (configured, or where they are now) draw on their own buckets only, so
//! strangers cannot spend the shared budget that members need to rekey. Time is passed in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Handshakes per second and burst per source address (the kernel's numbers).
const PER_SOURCE: Rate = Rate {
    per_second: 20,
    burst: 5,
};
/// Handshakes per second and burst for all sources that are no member's address.
const OVERALL: Rate = Rate {
    per_second: 200,
    burst: 200,
};
/// Source addresses tracked at once; a new stranger beyond this is refused until idle buckets
/// are forgotten (members' addresses are always tracked).
const MAX_SOURCES: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Rate {
    per_second: u64,
    burst: u64,
}

impl Rate {
    /// What one handshake costs, in nanoseconds of refill.
    fn cost(self) -> u64 {
        1_000_000_000 / self.per_second
    }

    fn capacity(self) -> u64 {
        self.cost() * self.burst
    }
}

/// A token bucket counted in nanoseconds of refill, as the kernel's is.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: u64,
    refilled: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Bucket {
        Bucket {
            tokens: rate.capacity(),
            refilled: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.tokens = self.tokens.saturating_add(nanos).min(rate.capacity());
        self.refilled = now.max(self.refilled);
    }

    fn has(&self, rate: Rate) -> bool {
        self.tokens >= rate.cost()
    }

    fn take(&mut self, rate: Rate) {
        self.tokens -= rate.cost();
    }
}

/// Sources are told apart by IPv4 address or IPv6 /64: one IPv6 host has a whole /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    V4(u32),
    V6(u64),
}

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Source {
        match ip.to_canonical() {
            IpAddr::V4(a) => Source::V4(u32::from(a)),
            IpAddr::V6(a) => Source::V6((u128::from(a) >> 64) as u64),
        }
    }
}

/// Which cookie-carrying handshakes under load may still cost a Diffie-Hellman.
#[derive(Debug, Default)]
pub struct HandshakeBudget {
    /// Keyed by addresses that remote senders choose: std's SipHash, not a fast unkeyed hash.
    sources: HashMap<Source, Bucket>,
    overall: Option<Bucket>,
}

impl HandshakeBudget {
    /// Whether a handshake from `from` may be processed now; takes its tokens if so. `member`
    /// says `from` is a member's address (or the handshake answers one of ours). A refused handshake takes nothing, so a
    /// flooding source does not drain the shared bucket.
    pub fn allow(&mut self, from: IpAddr, member: bool, now: Instant) -> bool {
        let source = Source::from(from);
        if !member && !self.sources.contains_key(&source) && self.sources.len() >= MAX_SOURCES {
            return false;
        }
        let bucket = self
            .sources
            .entry(source)
            .or_insert_with(|| Bucket::full(PER_SOURCE, now));
        bucket.refill(PER_SOURCE, now);
        if !bucket.has(PER_SOURCE) {
            return false;
        }
        if !member {
            let overall = self
                .overall
                .get_or_insert_with(|| Bucket::full(OVERALL, now));
            overall.refill(OVERALL, now);
            if !overall.has(OVERALL) {
                return false;
            }
            overall.take(OVERALL);
        }
        bucket.take(PER_SOURCE);
        true
    }

    /// Forgets the sources whose buckets have filled up again: to them, being forgotten is the
    /// same as a full bucket. Call now and then (every tick).
    pub fn forget_idle(&mut self, now: Instant) {
        let idle = Duration::from_nanos(PER_SOURCE.capacity());
        self.sources
            .retain(|_, b| now.saturating_duration_since(b.refilled) < idle);
    }

    /// Sources tracked now.
    pub fn tracked(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn allowed(budget: &mut HandshakeBudget, from: IpAddr, member: bool, now: Instant) -> usize {
        (0..1_000)
            .filter(|_| budget.allow(from, member, now))
            .count()
    }

    #[test]
    fn one_source_gets_its_burst_then_its_rate() {
        let mut budget = HandshakeBudget::default();
        let t = Instant::now();
        let a = ip("198.18.0.9");
        assert_eq!(allowed(&mut budget, a, false, t), 5);
        assert_eq!(
            allowed(&mut budget, a, false, t + Duration::from_millis(100)),
            2
        );
        // A long pause refills the burst, never more.
        assert_eq!(
            allowed(&mut budget, a, false, t + Duration::from_secs(60)),
            5
        );
        // Another source has its own bucket.
        assert_eq!(
            allowed(
                &mut budget,
                ip("198.18.0.10"),
                false,
                t + Duration::from_secs(60)
            ),
            5
        );
    }

    #[test]
    fn an_ipv6_slash_64_is_one_source() {
        let mut budget = HandshakeBudget::default();
        let t = Instant::now();
        let allowed_in_64: usize = (1..=10)
            .map(|host| allowed(&mut budget, ip(&format!("fd00:18::{host}")), false, t))
            .sum();
        assert_eq!(allowed_in_64, 5);
        assert_eq!(allowed(&mut budget, ip("fd00:19::1"), false, t), 5);
        // A v4-mapped address is the IPv4 source.
        assert_eq!(allowed(&mut budget, ip("198.18.0.1"), false, t), 5);
        assert_eq!(allowed(&mut budget, ip("::ffff:198.18.0.1"), false, t), 0);
    }

    #[test]
    fn all_strangers_together_share_one_bucket_members_do_not_use_it() {
        let mut budget = HandshakeBudget::default();
        let t = Instant::now();
        let total: usize = (0..1_000u32)
            .map(|i| {
                allowed(
                    &mut budget,
                    IpAddr::from((0xc612_0000 + i).to_be_bytes()),
                    false,
                    t,
                )
            })
            .sum();
        assert_eq!(total, 200);
        // The shared bucket is empty; a member's endpoint still has its own.
        assert_eq!(allowed(&mut budget, ip("198.18.7.1"), true, t), 5);
        assert_eq!(allowed(&mut budget, ip("198.18.7.2"), false, t), 0);
        // It refills at 200 a second.
        assert_eq!(
            allowed(
                &mut budget,
                ip("198.18.7.2"),
                false,
                t + Duration::from_millis(20)
            ),
            4
        );
    }

    #[test]
    fn the_table_is_bounded_and_idle_sources_are_forgotten() {
        let mut budget = HandshakeBudget::default();
        let mut t = Instant::now();
        for i in 0..(MAX_SOURCES as u32 + 10) {
            // Spread over time so the shared bucket is not what refuses them.
            t += Duration::from_millis(5);
            budget.allow(IpAddr::from((0xc612_0000 + i).to_be_bytes()), false, t);
        }
        assert_eq!(budget.tracked(), MAX_SOURCES);
        assert!(!budget.allow(ip("100.64.0.1"), false, t + Duration::from_millis(5)));
        assert!(budget.allow(ip("100.64.0.2"), true, t + Duration::from_millis(5)));
        budget.forget_idle(t + Duration::from_secs(1));
        assert_eq!(budget.tracked(), 0);
        assert!(budget.allow(ip("100.64.0.1"), false, t + Duration::from_secs(1)));
    }
}
