//! The relay's packet path: one UDP socket (dual-stack `[::]:relay.port`, else `0.0.0.0`, with
//! big buffers) served by a plain thread of its own, not by the tokio runtime, which is for the
//! control plane only. It receives batches with recvmmsg and GRO (quinn-udp), runs each datagram
//! through the sans-IO [`Relay`] under a mutex it shares with the core thread (held for one
//! batch, never across a send), and sends what that decided: the relayed packets of a batch
//! that go to one destination as GSO trains (a received GRO train stays in place; packets that
//! arrived apart are copied together, which is cheaper than a send each), probe replies one by
//! one. Binding changes go to the core thread, which publishes them in the netmap.
//! Bindings' lifetimes, budgets and quotas run on a monotonic clock ([`mono_now`]), so a step
//! of the wall clock neither ends bindings nor resets quotas; the wall clock ([`unix_now`])
//! only judges the probes' timestamps.

use std::collections::HashMap;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use quinn_udp::RecvMeta;
use wiremesh_core::disco::PROBE_REPLY_LEN;
use wiremesh_udp::MAX_GSO_BYTES;
pub use wiremesh_udp::Udp;

use super::core::{Command, CoreHandle};
use crate::relay::{Action, Now, Relay};

/// Receive buffers per recvmmsg; each holds a GRO train of up to 64 KiB.
const BATCH: usize = 32;
const CHUNK: usize = 1 << 16;
/// Receive calls per wake-up before the stop flag and the timers are looked at again.
const ROUNDS: usize = 64;
/// How long the thread sleeps waiting for a datagram.
const POLL: Duration = Duration::from_millis(500);
/// How long a send waits for room in a full socket buffer before the packet is dropped.
pub const SEND_WAIT: Duration = Duration::from_millis(10);
/// How often expired bindings are swept.
const SWEEP: Duration = Duration::from_secs(1);

/// The time since the Unix epoch: the relay's wall clock, for probes' timestamps only.
pub fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// The relay's monotonic clock: the time since its first reading in this process.
pub fn mono_now() -> Duration {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

/// Both clocks, as [`Relay::handle`] takes them.
pub fn now() -> Now {
    Now {
        mono: mono_now(),
        unix: unix_now(),
    }
}

/// Locks the relay; a thread that panicked while holding it left nothing half-done that matters
/// more than keeping the relay up.
pub fn lock(relay: &Mutex<Relay>) -> MutexGuard<'_, Relay> {
    relay.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where a train's bytes are: still in the receive buffer, or copied together.
#[derive(Debug)]
enum Body {
    InPlace { start: usize, len: usize },
    Copied(Vec<u8>),
}

/// Relayed datagrams that leave as one send: all to `to`, all `segment` bytes but the last.
#[derive(Debug)]
struct Train {
    to: SocketAddr,
    segment: usize,
    count: usize,
    len: usize,
    /// The last datagram was shorter than `segment`: nothing more may follow.
    closed: bool,
    body: Body,
}

/// The trains of one batch, in the order their first datagrams arrived; a destination's
/// datagrams keep their order.
#[derive(Debug)]
struct Trains {
    trains: Vec<Train>,
    /// Each destination's newest train.
    last: HashMap<SocketAddr, usize>,
    /// Buffers of earlier batches' copied trains, reused.
    pool: Vec<Vec<u8>>,
    max_segments: usize,
}

/// Copy buffers kept for reuse.
const POOL: usize = 64;

impl Trains {
    fn new(max_segments: usize) -> Self {
        Trains {
            trains: Vec::new(),
            last: HashMap::new(),
            pool: Vec::new(),
            max_segments,
        }
    }

    fn clear(&mut self) {
        for train in self.trains.drain(..) {
            if let Body::Copied(buf) = train.body
                && self.pool.len() < POOL
            {
                self.pool.push(buf);
            }
        }
        self.last.clear();
    }

    /// Adds the relayed datagram `storage[start..start + len]` for `to`.
    fn add(&mut self, storage: &[u8], start: usize, len: usize, to: SocketAddr) {
        if let Some(&i) = self.last.get(&to)
            && let Some(t) = self.trains.get_mut(i)
            && !t.closed
            && len <= t.segment
            && t.len + len <= MAX_GSO_BYTES
            && t.count < self.max_segments
        {
            let datagram = &storage[start..start + len];
            match &mut t.body {
                Body::InPlace { start: s, len: l } if *s + *l == start => *l += len,
                Body::InPlace { start: s, len: l } => {
                    let mut buf = self.pool.pop().unwrap_or_default();
                    buf.clear();
                    buf.extend_from_slice(&storage[*s..*s + *l]);
                    buf.extend_from_slice(datagram);
                    t.body = Body::Copied(buf);
                }
                Body::Copied(buf) => buf.extend_from_slice(datagram),
            }
            t.count += 1;
            t.len += len;
            t.closed = len < t.segment;
            return;
        }
        self.last.insert(to, self.trains.len());
        self.trains.push(Train {
            to,
            segment: len,
            count: 1,
            len,
            closed: false,
            body: Body::InPlace { start, len },
        });
    }

    /// Each train: its bytes, destination and segment size (none for a single datagram).
    fn each<'a>(
        &'a self,
        storage: &'a [u8],
    ) -> impl Iterator<Item = (&'a [u8], SocketAddr, Option<usize>)> + 'a {
        self.trains.iter().map(move |t| {
            let contents = match &t.body {
                Body::InPlace { start, len } => &storage[*start..*start + *len],
                Body::Copied(buf) => &buf[..],
            };
            (contents, t.to, (t.count > 1).then_some(t.segment))
        })
    }
}

/// The running packet thread.
pub struct RelayThread {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl RelayThread {
    /// Starts serving `udp`; binding changes go to `core`.
    pub fn spawn(udp: Udp, relay: Arc<Mutex<Relay>>, core: CoreHandle) -> io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("relay".into())
            .spawn(move || serve(&udp, &relay, &core, &flag))?;
        Ok(RelayThread { stop, thread })
    }

    /// Stops the thread (within [`POLL`]) and waits for it.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        if self.thread.join().is_err() {
            tracing::warn!("the relay thread panicked");
        }
    }
}

fn serve(udp: &Udp, relay: &Mutex<Relay>, core: &CoreHandle, stop: &AtomicBool) {
    let mut storage = vec![0u8; CHUNK * BATCH];
    let mut metas = [RecvMeta::default(); BATCH];
    let mut trains = Trains::new(udp.max_segments(1));
    let mut replies: Vec<(SocketAddr, [u8; PROBE_REPLY_LEN])> = Vec::new();
    let mut reply = [0u8; PROBE_REPLY_LEN];
    let mut last_sweep = Instant::now();
    let mut last_warning: Option<Instant> = None;
    let mut warn = |what: &str, e: &io::Error| {
        if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            last_warning = Some(Instant::now());
            tracing::warn!("relay: {what}: {e}");
        }
    };
    while !stop.load(Ordering::Relaxed) {
        if last_sweep.elapsed() >= SWEEP {
            last_sweep = Instant::now();
            let changes = {
                let mut relay = lock(relay);
                relay.tick(mono_now());
                relay.take_changes()
            };
            if !changes.is_empty() {
                core.send(Command::Bindings { changes });
            }
        }
        match udp.wait_readable(POLL) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                warn("poll failed", &e);
                std::thread::sleep(POLL);
                continue;
            }
        }
        for _ in 0..ROUNDS {
            let received = {
                let mut chunks = storage.chunks_mut(CHUNK);
                let mut iovs: [IoSliceMut<'_>; BATCH] =
                    std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()));
                udp.recv(&mut iovs, &mut metas)
            };
            let n = match received {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    warn("receive failed", &e);
                    break;
                }
            };
            trains.clear();
            replies.clear();
            let changes = {
                let mut relay = lock(relay);
                let now = now();
                for (i, meta) in metas.iter().enumerate().take(n) {
                    let base = i * CHUNK;
                    let len = meta.len.min(CHUNK);
                    let stride = meta.stride.clamp(1, CHUNK);
                    let mut at = 0;
                    while at < len {
                        let end = (at + stride).min(len);
                        let datagram = &mut storage[base + at..base + end];
                        match relay.handle(meta.addr, datagram, &mut reply, now) {
                            Action::Forward { to } => trains.add(&storage, base + at, end - at, to),
                            Action::Reply { to, .. } => replies.push((to, reply)),
                            Action::Drop(_) => {}
                        }
                        at = end;
                    }
                }
                relay.take_changes()
            };
            for (contents, to, segment) in trains.each(&storage) {
                if let Err(e) = udp.send(contents, to, segment) {
                    warn("send failed", &e);
                }
            }
            for (to, reply) in &replies {
                if let Err(e) = udp.send(reply, *to, None) {
                    warn("send failed", &e);
                }
            }
            if !changes.is_empty() {
                core.send(Command::Bindings { changes });
            }
            if n < BATCH {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(trains: &Trains, storage: &[u8]) -> Vec<(Vec<u8>, SocketAddr, Option<usize>)> {
        trains
            .each(storage)
            .map(|(c, to, seg)| (c.to_vec(), to, seg))
            .collect()
    }

    #[test]
    fn datagrams_to_one_destination_make_trains_in_their_order() {
        let a: SocketAddr = "198.18.1.1:1".parse().unwrap();
        let b: SocketAddr = "198.18.2.2:2".parse().unwrap();
        // Datagram n is n repeated; each at its own place in the buffer.
        let mut storage = vec![0u8; 1000];
        let mut at = 0;
        let mut put = |n: u8, len: usize| {
            storage[at..at + len].fill(n);
            at += len;
            at - len
        };
        let d: Vec<(usize, usize)> = [(1, 10), (2, 10), (3, 10), (4, 10), (5, 4), (6, 10), (7, 12)]
            .iter()
            .map(|&(n, len)| (put(n, len), len))
            .collect();
        let mut trains = Trains::new(64);
        // 1, 2 to a: contiguous, in place. 3 to b. 4 to a: copied onto 1, 2. 5 (short) to a
        // closes that train; 6 to a starts another. 7 (longer) to b: a new train.
        for (i, to) in [a, a, b, a, a, a, b].into_iter().enumerate() {
            trains.add(&storage, d[i].0, d[i].1, to);
        }
        let got = shape(&trains, &storage);
        let bytes = |parts: &[(u8, usize)]| -> Vec<u8> {
            parts
                .iter()
                .flat_map(|&(n, len)| std::iter::repeat_n(n, len))
                .collect()
        };
        assert_eq!(
            got,
            [
                (bytes(&[(1, 10), (2, 10), (4, 10), (5, 4)]), a, Some(10)),
                (bytes(&[(3, 10)]), b, None),
                (bytes(&[(6, 10)]), a, None),
                (bytes(&[(7, 12)]), b, None),
            ]
        );
        assert!(matches!(trains.trains[1].body, Body::InPlace { .. }));
        assert!(matches!(trains.trains[0].body, Body::Copied(_)));
        trains.clear();
        assert_eq!(trains.pool.len(), 1, "the copy buffer is kept for reuse");
        assert!(trains.each(&storage).next().is_none());
    }

    #[test]
    fn trains_keep_to_the_kernels_limits() {
        let a: SocketAddr = "198.18.1.1:1".parse().unwrap();
        let storage = vec![0u8; 100_000];
        let mut trains = Trains::new(2);
        for i in 0..5 {
            trains.add(&storage, i * 100, 100, a);
        }
        assert_eq!(trains.trains.len(), 3, "two segments a send at most");
        let mut trains = Trains::new(64);
        for i in 0..50 {
            trains.add(&storage, i * 1500, 1500, a);
        }
        assert!(trains.trains.iter().all(|t| t.len <= MAX_GSO_BYTES));
        assert_eq!(trains.trains.iter().map(|t| t.count).sum::<usize>(), 50);
    }
}
