//! The UDP socket of wiremesh's two packet paths, the agent's WireGuard port and the controller's
//! relay: bound dual-stack (`[::]` taking IPv4 too, `0.0.0.0` where the machine has no IPv6),
//! with big buffers, sending GSO trains and receiving with recvmmsg and GRO through quinn-udp.
//! Both keep their send policy (what waits, what is queued) to themselves; this crate only says
//! how a socket is opened, how a datagram goes out and comes in, and how a thread waits for one.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use socket2::{Domain, Protocol, Socket, Type};

/// Socket buffer size asked for (root may exceed rmem_max/wmem_max with the FORCE options).
const SOCKET_BUFFER: usize = 16 << 20;
/// The kernel refuses (EMSGSIZE) a UDP_SEGMENT send whose payload exceeds this, and quinn-udp
/// turns that error into a silent success, so trains stay below it.
pub const MAX_GSO_BYTES: usize = 65_507;

pub struct Udp {
    socket: UdpSocket,
    state: UdpSocketState,
    /// Bound to an IPv6 socket: IPv4 destinations are written as v4-mapped addresses.
    v6: bool,
    /// How long [`Udp::send`] waits for room in a full socket buffer.
    send_wait: Duration,
}

fn force_buffer(socket: &Socket, option: libc::c_int, size: usize) -> bool {
    let value = size as libc::c_int;
    // SAFETY: setsockopt with a valid fd and a pointer to a c_int of the size passed.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

impl Udp {
    /// Binds `listen`; `[::]` accepts IPv4 too, and falls back to `0.0.0.0` where IPv6 is off
    /// (a port in use stays an error). [`Udp::send`] waits at most `send_wait` for room.
    pub fn bind(listen: SocketAddr, send_wait: Duration) -> io::Result<Udp> {
        let bind = |addr: SocketAddr| -> io::Result<Socket> {
            let domain = if addr.is_ipv6() {
                Domain::IPV6
            } else {
                Domain::IPV4
            };
            let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
            if addr.is_ipv6() && addr.ip().is_unspecified() {
                s.set_only_v6(false)?;
            }
            s.bind(&addr.into())?;
            Ok(s)
        };
        let socket = match bind(listen) {
            Err(e)
                if listen.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                    && e.kind() != io::ErrorKind::AddrInUse =>
            {
                bind(SocketAddr::from(([0, 0, 0, 0], listen.port()))).map_err(|_| e)?
            }
            other => other?,
        };
        if !force_buffer(&socket, libc::SO_RCVBUFFORCE, SOCKET_BUFFER) {
            socket.set_recv_buffer_size(SOCKET_BUFFER)?;
        }
        if !force_buffer(&socket, libc::SO_SNDBUFFORCE, SOCKET_BUFFER) {
            socket.set_send_buffer_size(SOCKET_BUFFER)?;
        }
        let v6 = socket
            .local_addr()?
            .as_socket()
            .is_some_and(|a| a.is_ipv6());
        let socket: UdpSocket = socket.into();
        // Also enables UDP_GRO and makes the socket non-blocking.
        let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
        Ok(Udp {
            socket,
            state,
            v6,
            send_wait,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    pub fn local_port(&self) -> io::Result<u16> {
        Ok(self.socket.local_addr()?.port())
    }

    /// Most segments one GSO send may carry for datagrams of `segment` bytes.
    pub fn max_segments(&self, segment: usize) -> usize {
        self.state
            .max_gso_segments()
            .min(MAX_GSO_BYTES / segment.max(1))
            .max(1)
    }

    /// Datagrams the kernel may coalesce into one receive buffer.
    pub fn gro_segments(&self) -> usize {
        self.state.gro_segments()
    }

    fn destination(&self, to: SocketAddr) -> SocketAddr {
        match to {
            SocketAddr::V4(v4) if self.v6 => {
                SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
            }
            other => other,
        }
    }

    /// Sends `contents` to `to`, as equal `segment`-byte datagrams (the last may be shorter)
    /// when `segment` is given; `WouldBlock` when the socket buffer is full.
    pub fn try_send(
        &self,
        contents: &[u8],
        to: SocketAddr,
        segment: Option<usize>,
    ) -> io::Result<()> {
        let transmit = Transmit {
            destination: self.destination(to),
            ecn: None,
            contents,
            segment_size: segment.filter(|s| *s < contents.len()),
            src_ip: None,
        };
        self.state
            .try_send(UdpSockRef::from(&self.socket), &transmit)
    }

    /// [`Udp::try_send`], waiting briefly when the socket buffer is full.
    pub fn send(&self, contents: &[u8], to: SocketAddr, segment: Option<usize>) -> io::Result<()> {
        loop {
            match self.try_send(contents, to, segment) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !wait(&self.socket, libc::POLLOUT, self.send_wait)? {
                        return Err(e);
                    }
                }
                other => return other,
            }
        }
    }

    /// Receives a batch: fills `bufs`/`metas`, returns how many messages arrived. Source
    /// addresses are canonical (v4-mapped IPv6 turned back into IPv4).
    pub fn recv(&self, bufs: &mut [IoSliceMut<'_>], metas: &mut [RecvMeta]) -> io::Result<usize> {
        let n = self
            .state
            .recv(UdpSockRef::from(&self.socket), bufs, metas)?;
        for meta in &mut metas[..n] {
            meta.addr = SocketAddr::new(meta.addr.ip().to_canonical(), meta.addr.port());
        }
        Ok(n)
    }

    pub fn wait_readable(&self, timeout: Duration) -> io::Result<bool> {
        wait(&self.socket, libc::POLLIN, timeout)
    }
}

/// Waits until `fd` is ready for `events`; false on timeout (or a signal).
pub fn wait(fd: &impl AsRawFd, events: libc::c_short, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&raw mut pfd, 1, timeout.as_millis() as libc::c_int) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(e);
    }
    Ok(r > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dual_stack_socket_sends_to_ipv4_and_reads_canonical_sources() {
        let wait = Duration::from_millis(100);
        let a = Udp::bind("[::]:0".parse().unwrap(), wait).unwrap();
        let b = Udp::bind("127.0.0.1:0".parse().unwrap(), wait).unwrap();
        let to = SocketAddr::from(([127, 0, 0, 1], b.local_port().unwrap()));
        a.send(b"hello", to, None).unwrap();
        assert!(b.wait_readable(Duration::from_secs(5)).unwrap());
        let mut buf = [0u8; 64];
        let mut metas = [RecvMeta::default(); 1];
        let n = b
            .recv(&mut [IoSliceMut::new(&mut buf)], &mut metas)
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(&buf[..metas[0].len], b"hello");
        assert_eq!(
            metas[0].addr,
            SocketAddr::from(([127, 0, 0, 1], a.local_port().unwrap()))
        );
    }

    #[test]
    fn a_port_in_use_is_an_error_not_a_fallback() {
        let wait = Duration::from_millis(100);
        let a = Udp::bind("[::]:0".parse().unwrap(), wait).unwrap();
        let port = a.local_port().unwrap();
        let taken = Udp::bind(
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
            wait,
        );
        assert_eq!(
            taken.err().map(|e| e.kind()),
            Some(io::ErrorKind::AddrInUse)
        );
    }

    #[test]
    fn gso_trains_stay_below_the_kernels_limit() {
        let udp = Udp::bind("127.0.0.1:0".parse().unwrap(), Duration::ZERO).unwrap();
        assert!(udp.max_segments(1452) * 1452 <= MAX_GSO_BYTES);
        assert_eq!(udp.max_segments(MAX_GSO_BYTES + 1), 1);
    }
}
