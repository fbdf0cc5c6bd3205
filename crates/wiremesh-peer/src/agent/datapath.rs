//! The two hot threads. TX: TUN read (a TSO super-packet, split in place into MTU-sized packets)
//! → route → encrypt straight into a GSO train → one `sendmsg` per train. RX: `recvmmsg` + UDP GRO
//! → decrypt straight into the super-packet being coalesced → one TUN write per super-packet. All
//! buffers are allocated once, before the loops start. An empty queue under a dense stream is
//! looked at again for a moment before the thread blocks (see `spin`).

use std::fmt::Display;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use quinn_udp::RecvMeta;
use tun_rs::SyncDevice;
use wiremesh_core::disco::RELAY_HEADER_LEN;
use wiremesh_peer::mesh::{
    DropReason, FLUSH_OUT_LEN, Inbound, MAX_IP_PACKET, MemberId, Mesh, Outbound, WG_OVERHEAD,
    encapsulate_out_len,
};
use wiremesh_peer::offload::coalesce::Coalescer;
use wiremesh_peer::offload::split::split;
use wiremesh_peer::offload::{MAX_TUN_READ, VNET_HDR_LEN, VnetHdr};

use super::backlog::Backlog;
use super::spin::{self, Action, Spinner};
use wiremesh_udp::{self as udp, MAX_GSO_BYTES, Udp};

/// How long a hot thread sleeps in poll before it looks at the stop flag again.
const POLL: Duration = Duration::from_millis(200);
/// TUN reads per TX batch before the trains are flushed (bounds added latency).
const TX_READS_PER_BATCH: usize = 8;
/// Messages per `recvmmsg`.
const RX_BATCH: usize = 32;
/// Packets and super-packets the RX thread holds before it must write them to the TUN.
const RX_SLOTS: usize = 32;
/// Pause after an unexpected I/O error before trying again.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);
/// At most one warning per this interval per thread, so a broken peer cannot flood the log.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// Bytes of a train's buffer: a full train and one more datagram of any size behind it.
const TRAIN_LEN: usize = MAX_GSO_BYTES + WG_OVERHEAD + RELAY_HEADER_LEN + MAX_TUN_READ;

/// What the hot threads share with the timer, status and main (signal and reload) threads.
pub struct Shared {
    pub mesh: RwLock<Mesh>,
    pub udp: Udp,
    pub tun: SyncDevice,
    pub stop: AtomicBool,
    /// Largest packet the TUN hands us (the interface MTU).
    pub mtu: usize,
    pub info: Mutex<super::Info>,
}

// A thread that panicked while holding one of these locks cannot leave the value in a state
// worse than stopping the agent would: every user takes the value as it is.
impl Shared {
    pub fn mesh(&self) -> RwLockReadGuard<'_, Mesh> {
        self.mesh.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn mesh_mut(&self) -> RwLockWriteGuard<'_, Mesh> {
        self.mesh.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn info(&self) -> MutexGuard<'_, super::Info> {
        self.info.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Warner(Option<Instant>);

impl Warner {
    fn warn(&mut self, what: &str, e: &dyn Display) {
        let now = Instant::now();
        if self.0.is_none_or(|t| now.duration_since(t) >= WARN_EVERY) {
            self.0 = Some(now);
            tracing::warn!("{what}: {e}");
        }
    }
}

/// The shape of a GSO train: where it goes and how its datagrams are laid out. Decides whether
/// one more datagram may join; kept apart from the buffer so the rules can be tested alone.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Layout {
    to: Option<SocketAddr>,
    /// Size of every datagram but possibly the last.
    segment: usize,
    count: usize,
    /// Bytes in the train.
    len: usize,
    /// A shorter datagram was appended: it must stay the last one.
    closed: bool,
}

impl Layout {
    /// Whether a `len`-byte datagram for `to` may be appended: same destination, not longer than
    /// the segment size, nothing after a short one, within the segment and byte caps.
    fn fits(&self, to: SocketAddr, len: usize, max_segments: usize) -> bool {
        self.count == 0
            || (self.to == Some(to)
                && !self.closed
                && len <= self.segment
                && self.count < max_segments
                && self.len + len <= MAX_GSO_BYTES)
    }

    /// Whether the buffer has room behind the train for a datagram of up to `need` bytes. Only
    /// a datagram longer than a train may be (an MTU near 64 KiB) leaves too little.
    fn has_room(&self, need: usize) -> bool {
        self.len + need <= TRAIN_LEN
    }

    fn append(&mut self, to: SocketAddr, len: usize) {
        if self.count == 0 {
            self.to = Some(to);
            self.segment = len;
        } else if len < self.segment {
            self.closed = true;
        }
        self.count += 1;
        self.len += len;
    }
}

/// Encrypted datagrams for one destination, laid out back to back for one GSO send.
struct Train {
    buf: Vec<u8>,
    layout: Layout,
}

impl Train {
    fn new() -> Train {
        Train {
            buf: vec![0; TRAIN_LEN],
            layout: Layout::default(),
        }
    }

    /// Sends the train, or queues it in `backlog` when the socket is full.
    fn flush(&mut self, udp: &Udp, backlog: &mut Backlog, warner: &mut Warner) {
        let layout = std::mem::take(&mut self.layout);
        if let (Some(to), true) = (layout.to, layout.len > 0)
            && let Err(e) = backlog.send(udp, &self.buf[..layout.len], to, Some(layout.segment))
        {
            warner.warn("UDP send failed", &e);
        }
    }

    /// Encrypts `packet` for `member` in place at the end of the train.
    fn push(&mut self, mesh: &Mesh, out: &mut Sender<'_>, member: MemberId, packet: &[u8]) {
        let need = encapsulate_out_len(packet.len());
        if !self.layout.has_room(need) {
            self.flush(out.udp, out.backlog, out.warner);
        }
        let start = self.layout.len;
        match mesh.encapsulate(member, packet, &mut self.buf[start..start + need]) {
            Outbound::Send { len, to } => {
                if !self
                    .layout
                    .fits(to, len, out.udp.max_segments(self.layout.segment))
                {
                    // Send what came before, then move this datagram to the front.
                    self.flush(out.udp, out.backlog, out.warner);
                    self.buf.copy_within(start..start + len, 0);
                }
                self.layout.append(to, len);
            }
            Outbound::Handshake { at, len } => {
                // A handshake initiation goes out on its own, every way the member may be
                // reached; the train is unchanged.
                let initiation = &self.buf[start + at..start + at + len];
                let (udp, backlog, warner) = (out.udp, &mut *out.backlog, &mut *out.warner);
                mesh.send_handshake(member, initiation, out.now, &mut |datagram, to| {
                    if let Err(e) = backlog.send(udp, datagram, to, None) {
                        warner.warn("UDP send failed", &e);
                    }
                });
            }
            Outbound::Nothing | Outbound::Drop(_) => {}
        }
    }
}

/// Reads one packet (with its vnet header when the TUN has one) into `buf`.
fn read_tun(tun: &SyncDevice, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length.
    let n = unsafe { libc::read(tun.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Writes one packet (with its vnet header when the TUN has one).
fn write_tun(tun: &SyncDevice, packet: &[u8], warner: &mut Warner) {
    // SAFETY: `packet` is valid for reads of its length.
    let n = unsafe { libc::write(tun.as_raw_fd(), packet.as_ptr().cast(), packet.len()) };
    if n < 0 {
        warner.warn("TUN write failed", &io::Error::last_os_error());
    }
}

/// Where the TX thread's datagrams go: the socket, or the backlog while it is full.
struct Sender<'a> {
    udp: &'a Udp,
    backlog: &'a mut Backlog,
    warner: &'a mut Warner,
    /// When the batch being sent was read.
    now: Instant,
}

/// Routes one packet read from the TUN and encrypts what it stands for into `train`.
fn send_read(mesh: &Mesh, out: &mut Sender<'_>, vnet: bool, read: &mut [u8], train: &mut Train) {
    let (hdr, packet) = if vnet {
        let Some(hdr) = VnetHdr::decode(read) else {
            return;
        };
        (hdr, &mut read[VNET_HDR_LEN..])
    } else {
        (VnetHdr::default(), read)
    };
    // Every segment of a super-packet has the same destination: one lookup.
    let Some(member) = mesh.route(packet) else {
        mesh.count_unroutable(packet);
        return;
    };
    let result = split(&hdr, packet, |segment| {
        train.push(mesh, out, member, segment)
    });
    if let Err(e) = result {
        mesh.count_drop(DropReason::Invalid);
        out.warner.warn("TUN packet dropped", &e);
    }
}

/// TUN → encrypt → UDP until the stop flag is set.
pub fn tx_loop(shared: &Shared) {
    let mut warner = Warner(None);
    let vnet = shared.tun.tcp_gso();
    let mut buf = vec![0u8; MAX_TUN_READ];
    let mut train = Train::new();
    let mut backlog = Backlog::default();
    let mut spinner = Spinner::default();
    while !shared.stop.load(Ordering::Relaxed) {
        // When this look at the queue began: the spinner must not count the time spent
        // encrypting and sending a batch as idle time.
        let now = Instant::now();
        let mesh = shared.mesh();
        let mut out = Sender {
            udp: &shared.udp,
            backlog: &mut backlog,
            warner: &mut warner,
            now,
        };
        let mut reads = 0;
        while reads < TX_READS_PER_BATCH {
            match read_tun(&shared.tun, &mut buf) {
                Ok(n) => {
                    reads += 1;
                    send_read(&mesh, &mut out, vnet, &mut buf[..n], &mut train);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    out.warner.warn("TUN read failed", &e);
                    std::thread::sleep(ERROR_BACKOFF);
                    break;
                }
            }
        }
        train.flush(out.udp, out.backlog, out.warner);
        drop(mesh);
        backlog.drain(&shared.udp, &mut |e| warner.warn("UDP send failed", &e));
        if reads > 0 {
            spinner.work(now);
        } else if spinner.empty(now) == Action::Spin {
            spin::yield_now();
        } else if let Err(e) = udp::wait(&shared.tun, libc::POLLIN, POLL) {
            warner.warn("poll on TUN failed", &e);
        }
    }
}

/// UDP → decrypt → TUN until the stop flag is set.
pub fn rx_loop(shared: &Shared) {
    let mut warner = Warner(None);
    let chunk = (shared.udp.gro_segments() * (shared.mtu + 64)).max(MAX_IP_PACKET);
    let mut recv_buf = vec![0u8; chunk * RX_BATCH];
    let mut metas = [RecvMeta::default(); RX_BATCH];
    let mut coalescer = Coalescer::new(RX_SLOTS, shared.tun.tcp_gso(), shared.tun.udp_gso());
    let mut scratch = vec![0u8; FLUSH_OUT_LEN];
    let mut backlog = Backlog::default();
    let mut spinner = Spinner::default();
    while !shared.stop.load(Ordering::Relaxed) {
        let received = {
            let mut chunks = recv_buf.chunks_mut(chunk);
            let mut iovs: [IoSliceMut<'_>; RX_BATCH] =
                std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()));
            shared.udp.recv(&mut iovs, &mut metas)
        };
        let now = Instant::now();
        let n = match received {
            Ok(n) => {
                spinner.work(now);
                n
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if spinner.empty(now) == Action::Spin {
                    spin::yield_now();
                } else if let Err(e) = shared.udp.wait_readable(POLL) {
                    warner.warn("poll on UDP failed", &e);
                }
                continue;
            }
            Err(e) => {
                warner.warn("UDP receive failed", &e);
                // A persistent error must not turn this loop into a busy spin.
                std::thread::sleep(ERROR_BACKOFF);
                continue;
            }
        };
        let mesh = shared.mesh();
        for (i, meta) in metas.iter().enumerate().take(n) {
            let data = &recv_buf[i * chunk..i * chunk + meta.len.min(chunk)];
            for datagram in data.chunks(meta.stride.max(1)) {
                if coalescer.is_full() {
                    coalescer.flush(|p| write_tun(&shared.tun, p, &mut warner));
                }
                let out = coalescer.reserve(datagram.len());
                match mesh.decapsulate(meta.addr, datagram, out, now) {
                    Inbound::Tunnel { len, .. } => coalescer.commit(len),
                    Inbound::Reply { len, to, member } => {
                        if let Err(e) = backlog.send(&shared.udp, &out[..len], to, None) {
                            warner.warn("UDP send failed", &e);
                        }
                        coalescer.abort();
                        if let Some(member) = member {
                            while let Some((len, to)) = mesh.flush_queued(member, &mut scratch) {
                                if let Err(e) = backlog.send(&shared.udp, &scratch[..len], to, None)
                                {
                                    warner.warn("UDP send failed", &e);
                                }
                            }
                        }
                    }
                    Inbound::Nothing | Inbound::Drop(_) => coalescer.abort(),
                }
            }
        }
        drop(mesh);
        backlog.drain(&shared.udp, &mut |e| warner.warn("UDP send failed", &e));
        coalescer.flush(|p| write_tun(&shared.tun, p, &mut warner));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn trains_take_equal_datagrams_for_one_destination() {
        let a = addr("198.18.0.1:51820");
        let b = addr("198.18.0.2:51820");
        let mut layout = Layout::default();
        assert!(layout.fits(a, 1452, 45));
        layout.append(a, 1452);
        assert!(layout.fits(a, 1452, 45));
        assert!(
            !layout.fits(b, 1452, 45),
            "another destination starts a new train"
        );
        assert!(
            !layout.fits(a, 1500, 45),
            "a longer datagram starts a new train"
        );
        layout.append(a, 100);
        assert!(
            !layout.fits(a, 100, 45),
            "nothing may follow a short datagram"
        );
    }

    #[test]
    fn trains_respect_the_segment_and_64k_caps() {
        let a = addr("[fd00::1]:51820");
        let mut layout = Layout::default();
        for _ in 0..3 {
            layout.append(a, 1452);
        }
        assert!(!layout.fits(a, 1452, 3));
        let mut layout = Layout::default();
        while layout.fits(a, 1452, 64) {
            layout.append(a, 1452);
        }
        // 45 × 1452 = 65,340 bytes: one more would exceed what one UDP_SEGMENT send may carry.
        assert_eq!(layout.count, 45);
        assert!(layout.len <= MAX_GSO_BYTES);
        assert!(layout.has_room(encapsulate_out_len(MAX_TUN_READ)));
    }

    #[test]
    fn a_datagram_longer_than_a_train_leaves_no_room_behind_it() {
        // With an MTU of 65,535 one datagram alone exceeds a train; the next one must not be
        // encrypted behind it (it would run past the buffer).
        let a = addr("[fd00::1]:51820");
        let mut layout = Layout::default();
        let big = encapsulate_out_len(65_535);
        assert!(layout.fits(a, big, 64));
        layout.append(a, big);
        assert!(!layout.has_room(big));
        assert!(!layout.fits(a, big, 64));
        assert!(Layout::default().has_room(encapsulate_out_len(MAX_TUN_READ)));
    }
}
