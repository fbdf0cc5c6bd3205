//! Ctrl-C (SIGINT) and SIGTERM set a flag that every wait of the demo polls, so the demo always
//! reaches its teardown instead of dying with namespaces left behind.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::SeqCst);
}

/// Routes SIGINT and SIGTERM to the flag.
pub fn install() {
    let handler = on_signal as extern "C" fn(libc::c_int);
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(signal, handler as libc::sighandler_t) };
    }
}

/// True once Ctrl-C or SIGTERM arrived.
pub fn requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// `Err` once a stop was requested, for `?` between steps.
pub fn check() -> Result<(), String> {
    if requested() {
        Err("interrupted".to_owned())
    } else {
        Ok(())
    }
}
