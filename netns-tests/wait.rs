//! Bounded polling: the only way the tests wait for anything.

use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(50);

/// Calls `check` until it returns true or `timeout` has passed; `Ok` carries how long it took.
/// `check` is always called at least once, and once more at the deadline.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> bool,
) -> Result<Duration, String> {
    let start = Instant::now();
    loop {
        if check() {
            return Ok(start.elapsed());
        }
        if start.elapsed() >= timeout {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        std::thread::sleep(POLL.min(timeout.saturating_sub(start.elapsed())));
    }
}

/// [`wait_until`], panicking with `what` on timeout.
pub fn wait_for(what: &str, timeout: Duration, check: impl FnMut() -> bool) -> Duration {
    wait_until(what, timeout, check).unwrap_or_else(|e| panic!("{e}"))
}
