//! The relay's budgets, with the time passed in: a token bucket (bytes per second for a member's
//! relayed traffic, probes per second per source and overall) and a quota per hour. A clock that
//! steps back refills nothing until it moves forward again, and never locks anyone out.

use std::time::Duration;

/// A token bucket: `rate` tokens a second, at most `burst` saved up; it starts full.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    tokens: f64,
    last: Duration,
}

impl Bucket {
    pub(crate) fn full(burst: f64, now: Duration) -> Self {
        Bucket {
            tokens: burst,
            last: now,
        }
    }

    /// Takes `cost` tokens if there are that many.
    pub(crate) fn take(&mut self, cost: f64, rate: f64, burst: f64, now: Duration) -> bool {
        if now > self.last {
            let refill = (now - self.last).as_secs_f64() * rate;
            self.tokens = (self.tokens + refill).min(burst);
        }
        self.last = now;
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }

    /// When the bucket was last used.
    pub(crate) fn last(&self) -> Duration {
        self.last
    }
}

/// How long a quota window lasts.
pub(crate) const QUOTA_WINDOW: Duration = Duration::from_secs(3600);

/// Bytes used in the current hour: a fixed window that starts with the first byte after the
/// previous one ended.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Quota {
    /// When the current window began; none before the first byte.
    start: Option<Duration>,
    used: u64,
}

impl Quota {
    fn roll(&mut self, now: Duration) {
        let over = self
            .start
            .is_none_or(|start| now < start || now - start >= QUOTA_WINDOW);
        if over {
            self.start = Some(now);
            self.used = 0;
        }
    }

    /// Whether `bytes` more fit under `limit` this hour (nothing is charged).
    pub(crate) fn fits(&mut self, bytes: u64, limit: u64, now: Duration) -> bool {
        self.roll(now);
        self.used.saturating_add(bytes) <= limit
    }

    pub(crate) fn charge(&mut self, bytes: u64) {
        self.used = self.used.saturating_add(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn a_bucket_refills_at_its_rate_up_to_its_burst() {
        let mut b = Bucket::full(10.0, S(100));
        assert!(b.take(10.0, 5.0, 10.0, S(100)));
        assert!(!b.take(1.0, 5.0, 10.0, S(100)));
        assert!(b.take(5.0, 5.0, 10.0, S(101)));
        // An hour of rest saves no more than the burst.
        assert!(!b.take(11.0, 5.0, 10.0, S(4000)));
        assert!(b.take(10.0, 5.0, 10.0, S(4000)));
        // A clock stepped back refills nothing, then refills from there.
        assert!(!b.take(1.0, 5.0, 10.0, S(50)));
        assert!(b.take(5.0, 5.0, 10.0, S(51)));
    }

    #[test]
    fn a_quota_resets_after_an_hour() {
        let mut q = Quota::default();
        assert!(q.fits(100, 100, S(10)));
        q.charge(100);
        assert!(!q.fits(1, 100, S(10 + 3599)));
        assert!(q.fits(100, 100, S(10 + 3600)));
        q.charge(60);
        // A clock stepped back starts a new window rather than locking the member out.
        assert!(q.fits(100, 100, S(5)));
    }
}
