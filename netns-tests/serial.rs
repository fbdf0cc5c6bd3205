//! One lab at a time per test binary: the machine has two cores, and agents racing each other for
//! them would make timing bounds flaky. Test binaries themselves already run one after another.

use std::sync::{Mutex, MutexGuard};

static LOCK: Mutex<()> = Mutex::new(());

/// Holds the lock for the rest of the test; a test that panicked while holding it does not poison
/// the others.
pub fn serial() -> MutexGuard<'static, ()> {
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
