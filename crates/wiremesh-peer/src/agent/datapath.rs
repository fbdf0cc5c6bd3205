//! The two hot threads. TX: TUN read (a TSO super-packet split into MTU-sized packets) → route →
//! encrypt straight into a GSO train → one `sendmsg` per train. RX: `recvmmsg` + UDP GRO → decrypt
//! into TUN buffers → GRO-coalesce → one TUN write per flow. All buffers are allocated once, before
//! the loops start.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use quinn_udp::RecvMeta;
use tun_rs::{GROTable, IDEAL_BATCH_SIZE, SyncDevice, VIRTIO_NET_HDR_LEN};
use wiremesh_peer::mesh::{Inbound, MemberId, Mesh, Outbound, WG_MAX_CONTROL, encapsulate_out_len};

use super::udp::{self, MAX_GSO_BYTES, Udp};

/// How long a hot thread sleeps in poll before it looks at the stop flag again.
const POLL: Duration = Duration::from_millis(200);
/// TUN reads per TX batch before the trains are flushed (bounds added latency).
const TX_READS_PER_BATCH: usize = 8;
/// Messages per `recvmmsg`.
const RX_BATCH: usize = 32;
/// The largest IP packet a TUN write can carry (GRO coalesces up to this).
const MAX_IP_PACKET: usize = 65_535;
/// At most one warning per this interval per thread, so a broken peer cannot flood the log.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// What the hot threads share with the control thread.
pub struct Shared {
    pub mesh: RwLock<Mesh>,
    pub udp: Udp,
    pub tun: SyncDevice,
    pub stop: AtomicBool,
    /// Largest packet the TUN hands us (the interface MTU).
    pub mtu: usize,
    pub info: Mutex<super::Info>,
}

struct Warner(Option<Instant>);

impl Warner {
    fn warn(&mut self, what: &str, e: &io::Error) {
        let now = Instant::now();
        if self.0.is_none_or(|t| now.duration_since(t) >= WARN_EVERY) {
            self.0 = Some(now);
            tracing::warn!("{what}: {e}");
        }
    }
}

/// Encrypted datagrams for one destination, laid out back to back for one GSO send.
struct Train {
    buf: Vec<u8>,
    len: usize,
    segment: usize,
    count: usize,
    to: Option<SocketAddr>,
    /// A shorter datagram was appended: it must be the last one.
    closed: bool,
}

impl Train {
    fn new(max_packet: usize) -> Train {
        Train {
            buf: vec![0; MAX_GSO_BYTES + encapsulate_out_len(max_packet)],
            len: 0,
            segment: 0,
            count: 0,
            to: None,
            closed: false,
        }
    }

    fn send(&mut self, udp: &Udp, end: usize, warner: &mut Warner) {
        if let (Some(to), true) = (self.to, end > 0)
            && let Err(e) = udp.send(&self.buf[..end], to, Some(self.segment))
        {
            warner.warn("UDP send failed", &e);
        }
    }

    fn flush(&mut self, udp: &Udp, warner: &mut Warner) {
        self.send(udp, self.len, warner);
        self.len = 0;
        self.count = 0;
        self.closed = false;
    }

    /// Encrypts `packet` for `member` in place at the end of the train.
    fn push(
        &mut self,
        mesh: &Mesh,
        udp: &Udp,
        member: MemberId,
        packet: &[u8],
        warner: &mut Warner,
    ) {
        let start = self.len;
        let need = encapsulate_out_len(packet.len());
        match mesh.encapsulate(member, packet, &mut self.buf[start..start + need]) {
            Outbound::Send {
                len,
                to,
                data: true,
            } => {
                let fits = self.count == 0
                    || (self.to == Some(to)
                        && !self.closed
                        && len <= self.segment
                        && self.count < udp.max_segments(self.segment)
                        && start + len <= MAX_GSO_BYTES);
                let start = if fits {
                    start
                } else {
                    // Send what came before, then move this datagram to the front.
                    self.send(udp, start, warner);
                    self.buf.copy_within(start..start + len, 0);
                    self.count = 0;
                    self.closed = false;
                    0
                };
                if self.count == 0 {
                    self.to = Some(to);
                    self.segment = len;
                } else if len < self.segment {
                    self.closed = true;
                }
                self.count += 1;
                self.len = start + len;
            }
            Outbound::Send { len, to, .. } => {
                // A handshake initiation goes out on its own; the train is unchanged.
                if let Err(e) = udp.send(&self.buf[start..start + len], to, None) {
                    warner.warn("UDP send failed", &e);
                }
            }
            Outbound::Nothing | Outbound::Drop(_) => {}
        }
    }
}

fn read_mesh(shared: &Shared) -> std::sync::RwLockReadGuard<'_, Mesh> {
    shared.mesh.read().unwrap_or_else(|e| e.into_inner())
}

/// TUN → encrypt → UDP until the stop flag is set.
pub fn tx_loop(shared: &Shared) {
    let mut warner = Warner(None);
    let packet_cap = shared.mtu.max(1500) + 64;
    let mut original = vec![0u8; VIRTIO_NET_HDR_LEN + MAX_IP_PACKET];
    let mut bufs = vec![vec![0u8; packet_cap]; IDEAL_BATCH_SIZE];
    let mut sizes = vec![0usize; IDEAL_BATCH_SIZE];
    let mut train = Train::new(packet_cap);
    while !shared.stop.load(Ordering::Relaxed) {
        let mesh = read_mesh(shared);
        let mut reads = 0;
        while reads < TX_READS_PER_BATCH {
            match shared
                .tun
                .recv_multiple(&mut original, &mut bufs, &mut sizes, 0)
            {
                Ok(n) => {
                    reads += 1;
                    for (buf, &size) in bufs.iter().zip(&sizes).take(n) {
                        let packet = &buf[..size];
                        match mesh.route(packet) {
                            Some(member) => {
                                train.push(&mesh, &shared.udp, member, packet, &mut warner)
                            }
                            None => mesh.count_drop(wiremesh_peer::mesh::DropReason::NoRoute),
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    warner.warn("TUN read failed", &e);
                    break;
                }
            }
        }
        train.flush(&shared.udp, &mut warner);
        drop(mesh);
        if reads == 0
            && let Err(e) = udp::wait(&shared.tun, libc::POLLIN, POLL)
        {
            warner.warn("poll on TUN failed", &e);
        }
    }
}

/// UDP → decrypt → TUN until the stop flag is set.
pub fn rx_loop(shared: &Shared) {
    const OFF: usize = VIRTIO_NET_HDR_LEN;
    let mut warner = Warner(None);
    let chunk = (shared.udp.gro_segments() * (shared.mtu + 64)).max(MAX_IP_PACKET);
    let mut recv_buf = vec![0u8; chunk * RX_BATCH];
    let mut metas = [RecvMeta::default(); RX_BATCH];
    let mut out: Vec<Vec<u8>> = (0..IDEAL_BATCH_SIZE)
        .map(|_| Vec::with_capacity(OFF + MAX_IP_PACKET))
        .collect();
    let mut scratch = vec![0u8; encapsulate_out_len(MAX_IP_PACKET)];
    let mut gro = GROTable::default();
    while !shared.stop.load(Ordering::Relaxed) {
        let received = {
            let mut chunks = recv_buf.chunks_mut(chunk);
            let mut iovs: [IoSliceMut<'_>; RX_BATCH] =
                std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()));
            shared.udp.recv(&mut iovs, &mut metas)
        };
        let n = match received {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Err(e) = shared.udp.wait_readable(POLL) {
                    warner.warn("poll on UDP failed", &e);
                }
                continue;
            }
            Err(e) => {
                warner.warn("UDP receive failed", &e);
                continue;
            }
        };
        let mesh = read_mesh(shared);
        let mut k = 0;
        for (i, meta) in metas.iter().enumerate().take(n) {
            let data = &recv_buf[i * chunk..i * chunk + meta.len.min(chunk)];
            for datagram in data.chunks(meta.stride.max(1)) {
                let b = &mut out[k];
                let need = OFF + datagram.len().max(WG_MAX_CONTROL);
                if b.len() < need {
                    b.resize(need, 0);
                } else {
                    b.truncate(need);
                }
                match mesh.decapsulate(meta.addr, datagram, &mut b[OFF..]) {
                    Inbound::Tunnel { len, .. } => {
                        b.truncate(OFF + len);
                        k += 1;
                        if k == out.len() {
                            write_tun(shared, &mut gro, &mut out[..k], &mut warner);
                            k = 0;
                        }
                    }
                    Inbound::Reply { len, to, member } => {
                        if let Err(e) = shared.udp.send(&b[OFF..OFF + len], to, None) {
                            warner.warn("UDP send failed", &e);
                        }
                        if let Some(member) = member {
                            while let Some((len, to)) = mesh.flush_queued(member, &mut scratch) {
                                if let Err(e) = shared.udp.send(&scratch[..len], to, None) {
                                    warner.warn("UDP send failed", &e);
                                }
                            }
                        }
                    }
                    Inbound::Nothing | Inbound::Drop(_) => {}
                }
            }
        }
        drop(mesh);
        write_tun(shared, &mut gro, &mut out[..k], &mut warner);
    }
}

fn write_tun(shared: &Shared, gro: &mut GROTable, bufs: &mut [Vec<u8>], warner: &mut Warner) {
    if bufs.is_empty() {
        return;
    }
    if let Err(e) = shared.tun.send_multiple(gro, bufs, VIRTIO_NET_HDR_LEN) {
        warner.warn("TUN write failed", &e);
    }
}
