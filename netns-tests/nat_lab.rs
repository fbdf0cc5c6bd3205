//! Labs behind NAT: NAT routers added to a lab's switch, members moved behind them (their
//! namespace re-wired from the switch to a router's LAN), the path each agent uses to each member
//! as `wiremesh status --json` shows it (direct at an address, through a controller's relay, or
//! none), the controller's relay counters, and a long-lived TCP stream through the tunnel that
//! must survive a path change.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use wiremesh_lab::{Mapping, NatId};

use crate::lab::{Lab, Member};
use crate::netns::{Netns, enter, namespace};
use crate::transfer::{Noise, accept_until, listen_in, receive_hashed};
use crate::wait::wait_until;

/// The path an agent uses towards one member, from `wiremesh status --json`:
/// `"path": {"kind": "direct"|"relay"|"none", "addr": "ip:port", "via": "<controller>"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPath {
    pub kind: String,
    /// Where a direct path goes.
    pub addr: Option<SocketAddr>,
    /// Which controller relays.
    pub via: Option<String>,
}

impl PeerPath {
    pub fn is_direct(&self) -> bool {
        self.kind == "direct"
    }
    pub fn is_relay(&self) -> bool {
        self.kind == "relay"
    }
}

impl Lab {
    /// Adds a NAT router to the switch: namespace `nat-<label>`, public address 198.18.0.(201+n)
    /// and LAN 198.19.(1+n).0/24 for the `n`th router of the lab.
    pub fn add_nat(&mut self, label: &str, mapping: Mapping) -> NatId {
        let n = self.nats;
        assert!(n < 50, "at most 50 NAT routers");
        self.nats += 1;
        let router = namespace(&format!("nat-{label}"));
        let public4 = Ipv4Addr::new(198, 18, 0, 201 + n);
        let lan4 = format!("198.19.{}.0/24", 1 + n)
            .parse()
            .expect("a valid prefix");
        self.topology()
            .add_nat(router, mapping, public4, lan4)
            .unwrap_or_else(|e| panic!("NAT {label}: {e}"))
    }

    /// Moves member `name` behind `nat`: its `eth0` (on the switch or on another NAT's LAN) is
    /// replaced by a link to the router's LAN with the LAN's next address (returned, and now the
    /// member's `underlay4`) and a default route via the router. Its IPv6 underlay address is gone.
    pub fn put_behind(&mut self, name: &str, nat: NatId) -> Ipv4Addr {
        let i = self
            .members
            .iter()
            .position(|m| m.name == name)
            .unwrap_or_else(|| panic!("no member {name} in the lab"));
        let addr = self
            .underlay
            .move_host(&self.members[i].ns, nat)
            .unwrap_or_else(|e| panic!("moving {name} behind a NAT: {e}"));
        self.members[i].underlay4 = addr;
        addr
    }

    /// The public address of `nat` (what the switch sees of its LAN hosts) and its LAN.
    pub fn nat_addresses(&mut self, nat: NatId) -> (Ipv4Addr, ipnet::Ipv4Net) {
        let nat = self.topology().nat(nat);
        (nat.public4(), nat.lan4())
    }

    /// Drops UDP between the public addresses of two NATs (both ways).
    pub fn block_udp(&mut self, a: NatId, b: NatId) {
        self.topology()
            .block_udp(a, b)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Undoes [`Lab::block_udp`].
    pub fn unblock_udp(&mut self, a: NatId, b: NatId) {
        self.topology()
            .unblock_udp(a, b)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// The relay section of `wiremesh-controller status --json`; panics when there is none (a
    /// controller without a relay cannot prove it relayed nothing).
    pub fn relay_status(&self) -> Value {
        let status = self.controller_status();
        let relay = status["relay"].clone();
        assert!(
            relay.is_object(),
            "no \"relay\" object in wiremesh-controller status --json: {status}"
        );
        relay
    }

    /// The bytes the controller's relay forwarded, over all pairs.
    pub fn relayed_bytes(&self) -> u64 {
        relay_pairs(&self.relay_status())
            .iter()
            .map(|p| p.bytes)
            .sum()
    }

    /// The bytes the relay forwarded between members `a` and `b` (either way).
    pub fn relayed_bytes_between(&self, a: &str, b: &str) -> u64 {
        relay_pairs(&self.relay_status())
            .iter()
            .filter(|p| p.is_pair(a, b))
            .map(|p| p.bytes)
            .sum()
    }
}

/// One ordered pair's line of the controller's relay counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayPair {
    pub from: String,
    pub to: String,
    pub packets: u64,
    pub bytes: u64,
}

impl RelayPair {
    /// Whether this line counts traffic between `x` and `y`, either way.
    pub fn is_pair(&self, x: &str, y: &str) -> bool {
        (self.from == x && self.to == y) || (self.from == y && self.to == x)
    }
}

/// The datagrams the relay dropped, over all reasons (`"drops": {"not-a-member": N, …}`);
/// panics on any other shape.
pub fn relay_drops(relay: &Value) -> u64 {
    relay["drops"]
        .as_object()
        .unwrap_or_else(|| panic!("no \"drops\" object in the relay status: {relay}"))
        .iter()
        .map(|(reason, n)| {
            n.as_u64()
                .unwrap_or_else(|| panic!("the drop count {reason:?} is {n}"))
        })
        .sum()
}

/// The per-pair counters of the controller's relay status (`wiremesh_proto::admin`),
/// `{"pairs": [{"from", "to", "packets", "bytes"}]}`; panics on any other shape, so that a changed
/// status cannot pass for "nothing relayed".
pub fn relay_pairs(relay: &Value) -> Vec<RelayPair> {
    let pairs = relay["pairs"]
        .as_array()
        .unwrap_or_else(|| panic!("no \"pairs\" list in the relay status: {relay}"));
    pairs
        .iter()
        .map(|p| {
            let text = |k: &str| {
                p[k].as_str()
                    .unwrap_or_else(|| panic!("no {k:?} in the relay pair {p}"))
                    .to_owned()
            };
            let number = |k: &str| {
                p[k].as_u64()
                    .unwrap_or_else(|| panic!("no {k:?} in the relay pair {p}"))
            };
            RelayPair {
                from: text("from"),
                to: text("to"),
                packets: number("packets"),
                bytes: number("bytes"),
            }
        })
        .collect()
}

impl Member {
    /// This agent's entry for member `peer` in `wiremesh status --json`.
    pub fn member_json(&self, peer: &str) -> Value {
        let json = self.status_json();
        let agent = match json.as_array().map(Vec::as_slice) {
            Some([one]) => one.clone(),
            _ => panic!(
                "wiremesh status --json on {} lists other than one agent: {json}",
                self.name
            ),
        };
        agent["members"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["name"] == peer))
            .cloned()
            .unwrap_or_else(|| panic!("no member {peer} in the status of {}: {agent}", self.name))
    }

    /// The path this agent uses towards `peer`; panics when the status has no well-formed path.
    pub fn path_to(&self, peer: &str) -> PeerPath {
        let entry = self.member_json(peer);
        parse_path(&entry["path"]).unwrap_or_else(|e| {
            panic!(
                "{}'s status of {peer}: {e}: {entry}\nlog:\n{}",
                self.name,
                self.agent_log()
            )
        })
    }

    /// Polls (at most `timeout`) until the path towards `peer` satisfies `ok`; returns how long
    /// that took and the path, or `Err` with the last path seen and the agent's log.
    pub fn wait_path(
        &self,
        peer: &str,
        what: &str,
        timeout: Duration,
        ok: impl Fn(&PeerPath) -> bool,
    ) -> Result<(Duration, PeerPath), String> {
        let mut last = None;
        let waited = wait_until(
            &format!("{}'s path to {peer} to be {what}", self.name),
            timeout,
            || {
                let path = self.path_to(peer);
                let done = ok(&path);
                last = Some(path);
                done
            },
        );
        match waited {
            Ok(took) => Ok((took, last.expect("checked at least once"))),
            Err(e) => Err(format!(
                "{e}; last path {last:?}; status: {}\nlog of {}:\n{}",
                self.member_json(peer),
                self.name,
                self.agent_log()
            )),
        }
    }
}

/// Reads a status `path` object.
pub fn parse_path(path: &Value) -> Result<PeerPath, String> {
    let kind = path["kind"]
        .as_str()
        .ok_or("no \"path\".\"kind\"")?
        .to_owned();
    let addr = match &path["addr"] {
        Value::Null => None,
        Value::String(s) => Some(
            s.parse()
                .map_err(|e| format!("\"path\".\"addr\" {s:?}: {e}"))?,
        ),
        other => return Err(format!("\"path\".\"addr\" is {other}")),
    };
    let via = path["via"].as_str().map(str::to_owned);
    match kind.as_str() {
        "direct" if addr.is_none() => Err("a direct path without an address".into()),
        "relay" if via.is_none() => Err("a relay path without \"via\"".into()),
        "direct" | "relay" | "none" => Ok(PeerPath { kind, addr, via }),
        other => Err(format!("an unknown path kind {other:?}")),
    }
}

/// How long one write or read of a [`Stream`] may stall: longer than a path change may take.
const STREAM_STALL: Duration = Duration::from_secs(40);
const STREAM_CHUNK: usize = 16 * 1024;

/// A long-lived TCP connection through the tunnel: a sender thread in one namespace writes
/// pseudo-random bytes at a modest pace to a receiver thread in another until stopped; both hash
/// what they saw. A reset, a stall longer than 40 s or a byte lost or changed makes
/// [`Stream::finish`] fail.
pub struct Stream {
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    sender: Option<JoinHandle<Result<Side, String>>>,
    receiver: Option<JoinHandle<Result<Side, String>>>,
}

/// What one side of a [`Stream`] saw: bytes and their sha256.
type Side = (u64, [u8; 32]);

/// What a finished [`Stream`] moved.
#[derive(Debug)]
pub struct StreamResult {
    pub sent: u64,
    pub received: u64,
    pub sent_sha256: [u8; 32],
    pub received_sha256: [u8; 32],
}

impl Stream {
    /// Listens on `to_addr` in `to`, connects from `from` (bounded) and starts sending
    /// `bytes_per_second` (in chunks of 16 KiB). Panics when the connection cannot be made.
    pub fn start(from: &Netns, to: &Netns, to_addr: SocketAddr, bytes_per_second: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let to_name = to.name().to_owned();
        let counter = Arc::clone(&received);
        let receiver = std::thread::spawn(move || -> Result<Side, String> {
            let listener = listen_in(&to_name, to_addr, &ready_tx)?;
            let deadline = Instant::now() + STREAM_STALL;
            let mut stream = accept_until(&listener, to_addr, deadline, STREAM_STALL)?;
            receive_hashed(&mut stream, STREAM_CHUNK, None, |total| {
                counter.store(total, Ordering::Relaxed)
            })
        });
        match ready_rx.recv_timeout(STREAM_STALL) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("stream receiver in {}: {e}", to.name()),
            Err(e) => panic!("the stream receiver in {} did not start: {e}", to.name()),
        }
        let from_name = from.name().to_owned();
        let stopped = Arc::clone(&stop);
        let sender = std::thread::spawn(move || -> Result<Side, String> {
            enter(&from_name)?;
            let mut stream = TcpStream::connect_timeout(&to_addr, Duration::from_secs(10))
                .map_err(|e| format!("connect to {to_addr}: {e}"))?;
            stream
                .set_write_timeout(Some(STREAM_STALL))
                .map_err(|e| e.to_string())?;
            let mut hash = Sha256::new();
            let mut noise = Noise(0x2545_F491_4F6C_DD1D);
            let mut buf = vec![0u8; STREAM_CHUNK];
            let mut sent = 0u64;
            let start = Instant::now();
            while !stopped.load(Ordering::Relaxed) {
                noise.fill(&mut buf);
                stream
                    .write_all(&buf)
                    .map_err(|e| format!("sending after {sent} bytes: {e}"))?;
                hash.update(&buf);
                sent += buf.len() as u64;
                // Pace: no further ahead of the wall clock than the rate allows.
                let due = Duration::from_secs_f64(sent as f64 / bytes_per_second.max(1) as f64);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait.min(Duration::from_millis(200)));
                }
            }
            stream
                .shutdown(std::net::Shutdown::Write)
                .map_err(|e| format!("shutdown after {sent} bytes: {e}"))?;
            Ok((sent, hash.finalize().into()))
        });
        Self {
            stop,
            received,
            sender: Some(sender),
            receiver: Some(receiver),
        }
    }

    /// The bytes received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Waits (at most `timeout`) until at least `more` bytes beyond `since` have arrived.
    pub fn wait_progress(&self, since: u64, more: u64, timeout: Duration) -> Result<u64, String> {
        wait_until(
            &format!("{more} more bytes through the stream"),
            timeout,
            || self.received() >= since + more,
        )
        .map(|_| self.received())
        .map_err(|e| format!("{e} (received {} in all)", self.received()))
    }

    /// Stops the sender, waits for the receiver to see the end (each bounded by the stall
    /// limit) and returns what both saw.
    pub fn finish(mut self) -> Result<StreamResult, String> {
        self.stop.store(true, Ordering::Relaxed);
        let (sent, sent_sha256) = self
            .sender
            .take()
            .expect("finish runs once")
            .join()
            .map_err(|_| "the stream sender panicked".to_owned())??;
        let (received, received_sha256) =
            self.receiver
                .take()
                .expect("finish runs once")
                .join()
                .map_err(|_| "the stream receiver panicked".to_owned())??;
        Ok(StreamResult {
            sent,
            received,
            sent_sha256,
            received_sha256,
        })
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // A test that panicked before finish: let the threads end on their own bounds.
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_are_read_by_kind() {
        let direct = parse_path(&json!({"kind": "direct", "addr": "198.18.0.202:40000"})).unwrap();
        assert!(direct.is_direct());
        assert_eq!(direct.addr, Some("198.18.0.202:40000".parse().unwrap()));
        let relay = parse_path(&json!({"kind": "relay", "via": "server"})).unwrap();
        assert!(relay.is_relay());
        assert_eq!(relay.via.as_deref(), Some("server"));
        assert!(parse_path(&json!({"kind": "none"})).is_ok());
        assert!(parse_path(&json!({"kind": "direct"})).is_err());
        assert!(parse_path(&json!({"kind": "relay"})).is_err());
        assert!(parse_path(&json!({"kind": "teleport"})).is_err());
        assert!(parse_path(&Value::Null).is_err());
    }

    #[test]
    fn relay_pairs_are_read_and_matched_either_way() {
        let pairs = relay_pairs(&json!({"pairs": [
            {"from": "alpha", "to": "beta", "packets": 3, "bytes": 300},
        ]}));
        assert_eq!(pairs.len(), 1);
        assert!(pairs[0].is_pair("beta", "alpha"));
        assert!(!pairs[0].is_pair("alpha", "gamma"));
        assert!(relay_pairs(&json!({"pairs": []})).is_empty());
        assert_eq!(
            relay_drops(&json!({"drops": {"not-a-member": 2, "bad-probe": 3}})),
            5
        );
    }

    #[test]
    #[should_panic(expected = "no \"pairs\"")]
    fn an_unknown_relay_status_is_no_zero() {
        relay_pairs(&json!({"total": 0}));
    }
}
