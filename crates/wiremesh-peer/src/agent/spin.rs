//! When a hot thread finds its queue empty: yield and look again for a moment, or block.
//!
//! A blocked thread costs a wake-up when the next packet comes, and on a VM waking a thread on
//! the other CPU is an inter-processor interrupt through the hypervisor (measured: without
//! spinning a CPU halts 15 % of the time under one TCP stream, and single-stream throughput is
//! 8 % lower). Under a dense stream the next packet is microseconds away, so looking again, with
//! `sched_yield` between looks so that anything runnable on this CPU still runs, is cheaper.
//! The thread spins only while its idle stretches have been shorter than the window, that is
//! while it would otherwise be woken more than about 7,000 times a second; a sparse stream or an
//! idle link blocks at once and costs nothing.

use std::time::{Duration, Instant};

/// How long a thread looks again before it blocks.
const WINDOW: Duration = Duration::from_micros(150);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Yield the CPU, then look at the queue again.
    Spin,
    /// Block until the queue is ready.
    Block,
}

/// One hot thread's policy; the caller passes the time in.
#[derive(Debug, Default)]
pub struct Spinner {
    /// When the current idle stretch began (the first empty look after work).
    idle_since: Option<Instant>,
    /// Whether the last idle stretch was shorter than the window.
    dense: bool,
}

impl Spinner {
    /// The queue was empty at `now`.
    pub fn empty(&mut self, now: Instant) -> Action {
        let since = *self.idle_since.get_or_insert(now);
        if self.dense && now.duration_since(since) < WINDOW {
            Action::Spin
        } else {
            Action::Block
        }
    }

    /// Work was found at `now`: the idle stretch, if any, ends.
    pub fn work(&mut self, now: Instant) {
        if let Some(since) = self.idle_since.take() {
            self.dense = now.duration_since(since) < WINDOW;
        }
    }
}

/// Gives the CPU to another runnable thread, if there is one.
pub fn yield_now() {
    // SAFETY: sched_yield has no preconditions; it cannot fail on Linux.
    unsafe { libc::sched_yield() };
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    #[test]
    fn a_fresh_thread_blocks() {
        assert_eq!(Spinner::default().empty(Instant::now()), Action::Block);
    }

    #[test]
    fn after_a_short_stretch_it_spins_for_the_window_then_blocks() {
        let t = Instant::now();
        let mut s = Spinner::default();
        assert_eq!(s.empty(t), Action::Block);
        // Woken 20 µs later: the stream is dense.
        s.work(t + 20 * US);
        assert_eq!(s.empty(t + 30 * US), Action::Spin);
        assert_eq!(s.empty(t + 100 * US), Action::Spin);
        assert_eq!(s.empty(t + 30 * US + WINDOW), Action::Block);
    }

    #[test]
    fn a_stretch_longer_than_the_window_stops_the_spinning_until_a_short_one() {
        let t = Instant::now();
        let mut s = Spinner::default();
        s.empty(t);
        s.work(t + 10 * US);
        assert_eq!(s.empty(t + 20 * US), Action::Spin);
        // The spin ran out, the thread blocked, and the next packet came after 1 ms.
        assert_eq!(s.empty(t + 20 * US + WINDOW), Action::Block);
        s.work(t + 1020 * US);
        assert_eq!(
            s.empty(t + 1030 * US),
            Action::Block,
            "sparse: block at once"
        );
        s.work(t + 1040 * US);
        assert_eq!(s.empty(t + 1050 * US), Action::Spin, "dense again");
    }

    #[test]
    fn back_to_back_work_keeps_the_last_verdict() {
        let t = Instant::now();
        let mut s = Spinner::default();
        s.empty(t);
        s.work(t + US);
        s.work(t + 5000 * US);
        assert_eq!(s.empty(t + 5001 * US), Action::Spin);
    }
}
