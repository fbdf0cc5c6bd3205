//! A TCP transfer between two namespaces, done by the test process itself: one thread enters the
//! receiver's namespace (setns) and listens, another enters the sender's and streams
//! pseudo-random bytes; both hash what they saw with sha256. No extra tools, and every socket
//! operation has a timeout.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::netns::{Netns, enter};

const CHUNK: usize = 64 * 1024;
/// No single read, write or connect may stall longer than this.
const STALL: Duration = Duration::from_secs(20);

/// What each side saw.
#[derive(Debug)]
pub struct Transfer {
    pub bytes: u64,
    pub sent_sha256: [u8; 32],
    pub received_bytes: u64,
    pub received_sha256: [u8; 32],
    pub elapsed: Duration,
}

/// Sends `bytes` bytes over TCP from `from` to `to_addr`:`port` (an address in `to`), within
/// `timeout` overall.
pub fn tcp_transfer(
    from: &Netns,
    to: &Netns,
    to_addr: IpAddr,
    port: u16,
    bytes: u64,
    timeout: Duration,
) -> Result<Transfer, String> {
    let deadline = Instant::now() + timeout;
    let target = SocketAddr::new(to_addr, port);
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let to_name = to.name().to_owned();
    let from_name = from.name().to_owned();
    let receiver = std::thread::spawn(move || -> Result<(u64, [u8; 32]), String> {
        let listener = listen_in(&to_name, target, &ready_tx)?;
        let mut stream = accept_until(&listener, target, deadline, STALL)?;
        receive_hashed(&mut stream, CHUNK, Some(deadline), |_| {})
    });
    match ready_rx.recv_timeout(STALL) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(format!("receiver in {}: {e}", to.name())),
        Err(e) => return Err(format!("receiver in {} did not start: {e}", to.name())),
    }
    let start = Instant::now();
    let sender = std::thread::spawn(move || -> Result<[u8; 32], String> {
        enter(&from_name)?;
        let mut stream = TcpStream::connect_timeout(&target, STALL)
            .map_err(|e| format!("connect to {target}: {e}"))?;
        stream
            .set_write_timeout(Some(STALL))
            .map_err(|e| e.to_string())?;
        let mut hash = Sha256::new();
        let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
        let mut buf = vec![0u8; CHUNK];
        let mut left = bytes;
        while left > 0 {
            if Instant::now() > deadline {
                return Err(format!("sending: deadline passed with {left} bytes left"));
            }
            noise.fill(&mut buf);
            let n = usize::try_from(left.min(CHUNK as u64)).expect("a chunk fits usize");
            stream
                .write_all(&buf[..n])
                .map_err(|e| format!("sending with {left} bytes left: {e}"))?;
            hash.update(&buf[..n]);
            left -= n as u64;
        }
        stream
            .shutdown(std::net::Shutdown::Write)
            .map_err(|e| format!("shutdown: {e}"))?;
        Ok(hash.finalize().into())
    });
    let sent = sender
        .join()
        .map_err(|_| "the sender thread panicked".to_owned())?
        .map_err(|e| format!("sender in {}: {e}", from.name()))?;
    let (received_bytes, received) = receiver
        .join()
        .map_err(|_| "the receiver thread panicked".to_owned())?
        .map_err(|e| format!("receiver in {}: {e}", to.name()))?;
    Ok(Transfer {
        bytes,
        sent_sha256: sent,
        received_bytes,
        received_sha256: received,
        elapsed: start.elapsed(),
    })
}

/// Enters namespace `ns`, listens on `addr` (non-blocking, for [`accept_until`]) and says on
/// `ready` whether that worked, so the sender connects only to a listener that is there.
pub(crate) fn listen_in(
    ns: &str,
    addr: SocketAddr,
    ready: &mpsc::Sender<Result<(), String>>,
) -> Result<TcpListener, String> {
    let listener = enter(ns)
        .and_then(|()| TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}")))
        .and_then(|l| {
            l.set_nonblocking(true).map_err(|e| e.to_string())?;
            Ok(l)
        });
    let _ = ready.send(listener.as_ref().map(drop).map_err(Clone::clone));
    listener
}

/// The first connection to `listener` (at `addr`) before `deadline`, blocking from then on, with
/// reads bounded by `stall`.
pub(crate) fn accept_until(
    listener: &TcpListener,
    addr: SocketAddr,
    deadline: Instant,
    stall: Duration,
) -> Result<TcpStream, String> {
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(format!("accept on {addr}: {e}")),
        }
    };
    stream.set_nonblocking(false).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(stall))
        .map_err(|e| e.to_string())?;
    Ok(stream)
}

/// Reads `stream` to its end in `chunk`-byte reads (before `deadline`, when given), telling
/// `progress` the total after each; the bytes read and their sha256.
pub(crate) fn receive_hashed(
    stream: &mut TcpStream,
    chunk: usize,
    deadline: Option<Instant>,
    mut progress: impl FnMut(u64),
) -> Result<(u64, [u8; 32]), String> {
    let mut hash = Sha256::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; chunk];
    loop {
        if deadline.is_some_and(|d| Instant::now() > d) {
            return Err(format!("receiving: deadline passed after {total} bytes"));
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hash.update(&buf[..n]);
                total += n as u64;
                progress(total);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("receiving after {total} bytes: {e}")),
        }
    }
    Ok((total, hash.finalize().into()))
}

/// xorshift64: cheap bytes that do not compress and differ per position.
pub(crate) struct Noise(pub(crate) u64);

impl Noise {
    pub(crate) fn fill(&mut self, buf: &mut [u8]) {
        for word in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            word.copy_from_slice(&self.0.to_le_bytes()[..word.len()]);
        }
    }
}
