//! Decoding allocates at most a small multiple of its input, whatever lengths the input claims.
//! A counting global allocator measures the peak; this file holds one test so that nothing else
//! allocates while it measures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use wiremesh_core::messages::Message;
use wiremesh_core::netmap::{DecodeError, MAX_MEMBERS, Netmap};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: the caller's layout contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes allocated at the peak of `f`, above what was allocated before it.
fn peak_of<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let r = f();
    (r, PEAK.load(Ordering::Relaxed) - base)
}

fn varint(mut n: usize, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A netmap around `body`, the content after its member count.
fn netmap_of(members: usize, rest: &[u8]) -> Vec<u8> {
    let mut body = vec![0u8; 32]; // network key
    body.extend([1, b'i', 1, 1, 2]); // instance "i", epoch, issued-at, expires-at
    varint(members, &mut body);
    body.extend(rest);
    let mut wire = vec![wiremesh_core::netmap::NETMAP_VERSION as u8];
    varint(body.len(), &mut wire);
    wire.extend(body);
    wire.extend([0u8; 64]);
    wire
}

/// A netmap of one member whose endpoint list is `count` empty strings (one byte each on the
/// wire, 24 bytes each as `String`s).
fn netmap_of_empty_endpoints(count: usize) -> Vec<u8> {
    let mut body = vec![1, b'a']; // one member named "a"
    body.extend([0u8; 64]); // both keys
    body.push(0); // no IPv4
    body.extend([0u8; 16]); // IPv6
    varint(count, &mut body);
    body.extend(std::iter::repeat_n(0u8, count));
    body.extend([0, 0, 0]); // no routes, no flags, no candidates
    netmap_of(1, &body)
}

#[test]
fn decoders_allocate_in_proportion_to_their_input() {
    let wire = netmap_of_empty_endpoints(15 << 20);
    let (result, peak) = peak_of(|| Netmap::decode(&wire));
    assert!(
        matches!(result, Err(DecodeError::Body(_))),
        "{:?}",
        result.map(|_| ())
    );
    assert!(
        peak < 2 * wire.len(),
        "decoding {} bytes allocated {peak} bytes at the peak",
        wire.len()
    );

    // As many members as allowed, declared in front of as many bytes (postcard trusts a length
    // no longer than the input) that are no member at all. A member is 168 bytes: reserving the
    // declared count took 16 MiB for this 100 kB.
    let wire = netmap_of(MAX_MEMBERS, &vec![0xff; MAX_MEMBERS]);
    let (result, peak) = peak_of(|| Netmap::decode(&wire));
    assert!(
        matches!(result, Err(DecodeError::Body(_))),
        "{:?}",
        result.map(|_| ())
    );
    assert!(
        peak < 2 * wire.len(),
        "decoding {} bytes allocated {peak} bytes at the peak",
        wire.len()
    );

    // The same list in an endpoint report, the message any agent may send the controller.
    let mut report = vec![4u8];
    varint(15 << 20, &mut report);
    report.extend(std::iter::repeat_n(0u8, 15 << 20));
    let (result, peak) = peak_of(|| Message::decode(&report));
    assert!(result.is_err());
    assert!(
        peak < 2 * report.len(),
        "decoding {} bytes allocated {peak} bytes at the peak",
        report.len()
    );
}
