//! Sends that would wait for room in the socket buffer, held until the mesh lock is released. The
//! hot threads and the timer thread send while they hold the mesh's read lock, and a send that
//! waited there would hold the lock for as long: a reload waiting for the write lock would then
//! stall the other hot thread and the timers behind it (the lock lets no new reader pass a
//! waiting writer). So under the lock a send only tries; what the socket has no room for is copied
//! here, in order, and sent, waiting as needed, once the lock is gone.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;

/// A datagram socket that can try a send or wait for room.
pub trait Socket {
    /// Sends, or `WouldBlock` at once when the socket has no room.
    fn try_send(&self, contents: &[u8], to: SocketAddr, segment: Option<usize>) -> io::Result<()>;
    /// Sends, waiting a bounded time for room.
    fn send(&self, contents: &[u8], to: SocketAddr, segment: Option<usize>) -> io::Result<()>;
}

impl Socket for wiremesh_udp::Udp {
    fn try_send(&self, contents: &[u8], to: SocketAddr, segment: Option<usize>) -> io::Result<()> {
        wiremesh_udp::Udp::try_send(self, contents, to, segment)
    }

    fn send(&self, contents: &[u8], to: SocketAddr, segment: Option<usize>) -> io::Result<()> {
        wiremesh_udp::Udp::send(self, contents, to, segment)
    }
}

/// Datagrams waiting for room, back to back, with where each goes and its GSO segment size.
/// Its buffers grow to the largest backlog seen and are kept.
#[derive(Default)]
pub struct Backlog {
    bytes: Vec<u8>,
    sends: Vec<(Range<usize>, SocketAddr, Option<usize>)>,
}

impl Backlog {
    /// Sends at once if the socket has room and nothing waits before it; else queues behind what
    /// waits, so datagrams to one destination keep their order. Errors other than a full socket
    /// are returned (the datagram is dropped, as a lost datagram would be).
    pub fn send(
        &mut self,
        socket: &impl Socket,
        contents: &[u8],
        to: SocketAddr,
        segment: Option<usize>,
    ) -> io::Result<()> {
        if self.sends.is_empty() {
            match socket.try_send(contents, to, segment) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return other,
            }
        }
        let start = self.bytes.len();
        self.bytes.extend_from_slice(contents);
        self.sends.push((start..self.bytes.len(), to, segment));
        Ok(())
    }

    /// Sends everything that waits, in order, waiting for room as needed. Call with no lock held.
    /// `failed` gets each send that still failed.
    pub fn drain(&mut self, socket: &impl Socket, failed: &mut dyn FnMut(io::Error)) {
        for (range, to, segment) in self.sends.drain(..) {
            if let Err(e) = socket.send(&self.bytes[range], to, segment) {
                failed(e);
            }
        }
        self.bytes.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use super::*;

    /// A socket whose buffer is full for the next `full` tries; it records what it sent and
    /// whether each send was allowed to wait.
    #[derive(Default)]
    struct Fake {
        full: Cell<usize>,
        sent: RefCell<Vec<(Vec<u8>, bool)>>,
    }

    impl Socket for Fake {
        fn try_send(&self, contents: &[u8], _: SocketAddr, _: Option<usize>) -> io::Result<()> {
            if self.full.get() > 0 {
                self.full.set(self.full.get() - 1);
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.sent.borrow_mut().push((contents.to_vec(), false));
            Ok(())
        }

        fn send(&self, contents: &[u8], _: SocketAddr, _: Option<usize>) -> io::Result<()> {
            self.sent.borrow_mut().push((contents.to_vec(), true));
            Ok(())
        }
    }

    fn to() -> SocketAddr {
        "198.18.0.1:51820".parse().unwrap()
    }

    #[test]
    fn with_room_a_send_goes_at_once_and_nothing_waits() {
        let socket = Fake::default();
        let mut backlog = Backlog::default();
        backlog.send(&socket, b"a", to(), None).unwrap();
        assert!(backlog.sends.is_empty());
        assert_eq!(*socket.sent.borrow(), [(b"a".to_vec(), false)]);
    }

    #[test]
    fn a_full_socket_queues_in_order_and_only_the_drain_waits() {
        let socket = Fake {
            full: Cell::new(1),
            ..Fake::default()
        };
        let mut backlog = Backlog::default();
        backlog.send(&socket, b"first", to(), Some(1)).unwrap();
        // The socket has room again, but "second" must not overtake "first".
        backlog.send(&socket, b"second", to(), None).unwrap();
        assert!(
            socket.sent.borrow().is_empty(),
            "nothing may wait under the lock"
        );
        assert!(!backlog.sends.is_empty());
        backlog.drain(&socket, &mut |e| panic!("{e}"));
        assert_eq!(
            *socket.sent.borrow(),
            [(b"first".to_vec(), true), (b"second".to_vec(), true)]
        );
        assert!(backlog.sends.is_empty());
        // Drained, the next send tries at once again.
        backlog.send(&socket, b"third", to(), None).unwrap();
        assert_eq!(
            socket.sent.borrow().last(),
            Some(&(b"third".to_vec(), false))
        );
    }

    #[test]
    fn other_errors_are_returned_not_queued() {
        struct Broken;
        impl Socket for Broken {
            fn try_send(&self, _: &[u8], _: SocketAddr, _: Option<usize>) -> io::Result<()> {
                Err(io::ErrorKind::ConnectionRefused.into())
            }
            fn send(&self, _: &[u8], _: SocketAddr, _: Option<usize>) -> io::Result<()> {
                unreachable!("nothing was queued")
            }
        }
        let mut backlog = Backlog::default();
        assert!(backlog.send(&Broken, b"x", to(), None).is_err());
        assert!(backlog.sends.is_empty());
    }
}
