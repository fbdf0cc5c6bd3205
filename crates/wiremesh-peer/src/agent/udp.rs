//! The one UDP socket: dual-stack, large buffers, quinn-udp for GSO sends and GRO/recvmmsg
//! receives.

use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use socket2::{Domain, Protocol, Socket, Type};

/// Socket buffer size we ask for (root may exceed rmem_max/wmem_max with the FORCE options).
const SOCKET_BUFFER: usize = 16 << 20;
/// The kernel refuses (EMSGSIZE) a UDP_SEGMENT send whose payload exceeds this, and quinn-udp
/// turns that error into a silent success (datapath.md §8.1), so trains stay below it.
pub const MAX_GSO_BYTES: usize = 65_507;
/// How long a sender waits for room in a full socket buffer before dropping the train.
const SEND_WAIT: Duration = Duration::from_millis(100);

pub struct Udp {
    socket: UdpSocket,
    state: UdpSocketState,
    /// True when bound to `[::]`: IPv4 destinations must be written as v4-mapped addresses.
    dual_stack: bool,
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
    /// Binds `[::]:port` accepting IPv4 too; falls back to `0.0.0.0:port` where IPv6 is off.
    pub fn bind(port: u16) -> io::Result<Udp> {
        let (socket, dual_stack) = match Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))
        {
            Ok(s) => {
                s.set_only_v6(false)?;
                s.bind(&SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port).into())?;
                (s, true)
            }
            Err(_) => {
                let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
                s.bind(&SocketAddr::new(IpAddr::from([0, 0, 0, 0]), port).into())?;
                (s, false)
            }
        };
        if !force_buffer(&socket, libc::SO_RCVBUFFORCE, SOCKET_BUFFER) {
            socket.set_recv_buffer_size(SOCKET_BUFFER)?;
        }
        if !force_buffer(&socket, libc::SO_SNDBUFFORCE, SOCKET_BUFFER) {
            socket.set_send_buffer_size(SOCKET_BUFFER)?;
        }
        let socket: UdpSocket = socket.into();
        // Also enables UDP_GRO and makes the socket non-blocking.
        let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
        Ok(Udp {
            socket,
            state,
            dual_stack,
        })
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
            SocketAddr::V4(v4) if self.dual_stack => {
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
                    if !wait(&self.socket, libc::POLLOUT, SEND_WAIT)? {
                        return Err(e);
                    }
                }
                other => return other,
            }
        }
    }

    /// Receives a batch: fills `bufs`/`metas`, returns how many messages arrived. Source
    /// addresses are canonical (v4-mapped IPv6 turned back into IPv4).
    pub fn recv(
        &self,
        bufs: &mut [io::IoSliceMut<'_>],
        metas: &mut [RecvMeta],
    ) -> io::Result<usize> {
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

/// Waits until `fd` is ready for `events`; false on timeout.
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
