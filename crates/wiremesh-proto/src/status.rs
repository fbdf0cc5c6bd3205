//! The local status socket's protocol, shared by the agent (server) and `wiremesh status` (client).
//!
//! One request per connection over a unix stream socket, one JSON document per line: the client
//! writes `{"request":"status"}\n`, the agent answers with one [`Response`] line and closes. Plain
//! std + serde so the CLI needs no async runtime. The socket is root-only (mode 0600 in a 0700
//! directory) because it reveals endpoints and traffic counters. The client bounds the whole
//! exchange in time and the answer in size, so a hung or broken agent cannot hold it, and escapes
//! control characters in what it prints.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Where agents put their status sockets: `<dir>/<interface>.sock`.
pub const SOCKET_DIR: &str = "/run/wiremesh";
/// Bumped when a field changes meaning; new fields may be added without a bump.
pub const PROTOCOL_VERSION: u32 = 1;
/// The longest request line the agent reads.
pub const MAX_REQUEST_LINE: usize = 4096;

pub fn default_socket_path(interface: &str) -> PathBuf {
    Path::new(SOCKET_DIR).join(format!("{interface}.sock"))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case")]
pub enum Request {
    Status,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where the member list came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Source {
    /// The precomputed peer list of the agent config (no netmap).
    Config,
    Netmap {
        epoch: u64,
        expires_unix: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub instance: String,
    pub machine: String,
    pub interface: String,
    pub public_key: String,
    pub listen_port: u16,
    /// This machine's overlay addresses with their network prefix length.
    pub addresses: Vec<String>,
    /// True when this machine has no IPv4 overlay address.
    pub ipv6_only: bool,
    pub source: Source,
    pub members: Vec<MemberStatus>,
    /// Packets dropped by the data path, by reason.
    pub drops: BTreeMap<String, u64>,
    /// The agent's clock when it answered (Unix seconds), so relative times are right.
    pub now_unix: u64,
    /// Conditions the operator should know of (a netmap dropped, an epoch floor that may be
    /// stale). Absent from older agents.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The controllers this agent takes netmaps from. Absent from older agents.
    #[serde(default)]
    pub controllers: Vec<ControllerStatus>,
    /// The controllers' probe and relay services.
    #[serde(default)]
    pub relays: Vec<RelayStatus>,
}

/// How packets reach a member: `kind` is `direct` (to `addr`), `relay` (through the relay of
/// controller `via`) or `none` (no way known yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathStatus {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

impl Default for PathStatus {
    fn default() -> Self {
        PathStatus {
            kind: "none".into(),
            addr: None,
            via: None,
        }
    }
}

impl std::fmt::Display for PathStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.kind.as_str(), &self.addr, &self.via) {
            ("direct", Some(addr), _) => write!(f, "direct {}", printable(addr)),
            ("relay", _, Some(via)) => write!(f, "relay via {}", printable(via)),
            (kind, _, _) => write!(f, "{}", printable(kind)),
        }
    }
}

/// An address a member may be reached at: `kind` is `configured`, `local` or `mapped`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CandidateStatus {
    pub addr: String,
    pub kind: String,
}

/// The last search for a path to a member (or for a direct one while it is relayed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeStatus {
    /// Milliseconds since it started.
    pub ago_ms: u64,
    /// A direct try while relayed, not a search for any path.
    pub upgrade: bool,
    /// The path that answered (`direct ADDR`, `relay`), none while waiting or after giving up.
    pub answered_by: Option<String>,
    /// Milliseconds until the answer.
    pub took_ms: Option<u64>,
}

/// A controller's probe and relay service as this agent sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelayStatus {
    pub name: String,
    pub addr: String,
    /// It answered a probe lately, so packets may go through it.
    pub alive: bool,
    /// The address it saw this agent's WireGuard socket at (behind NAT: the NAT's mapping).
    pub observed: Option<String>,
    pub rtt_ms: Option<u64>,
}

/// How the agent's connection to one controller stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ControllerStatus {
    pub name: String,
    pub endpoint: String,
    /// Enrolled, and receiving netmaps.
    pub connected: bool,
    /// Why the last attempt failed or the last connection ended.
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    pub name: String,
    pub public_key: String,
    pub addresses: Vec<String>,
    pub routes: Vec<String>,
    /// Where packets to the member go: its direct address, or the relay's.
    pub endpoint: Option<String>,
    /// How packets reach the member.
    #[serde(default)]
    pub path: PathStatus,
    /// Every address the member may be reached at directly, configured ones first.
    #[serde(default)]
    pub candidates: Vec<CandidateStatus>,
    /// How the last search for a path to the member went.
    #[serde(default)]
    pub last_probe: Option<ProbeStatus>,
    /// When the current session was established (Unix seconds); none while there is no session.
    pub latest_handshake_unix: Option<u64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// True when packets go straight to the member's endpoint, not through a relay.
    pub direct: bool,
    /// Packets from this member dropped because their inner source was not the member's.
    pub dropped_spoofed: u64,
}

/// How long `wiremesh status` waits for one agent, from connecting to the last byte.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer the client reads; far above any real mesh's status, low enough that a
/// broken agent cannot exhaust memory.
pub const MAX_RESPONSE: u64 = 16 * 1024 * 1024;

/// Asks the agent behind `socket` for its status.
pub fn query(socket: &Path) -> Result<Status, String> {
    query_within(socket, QUERY_TIMEOUT, MAX_RESPONSE)
}

/// [`query`] with the whole exchange bounded by `timeout` and the answer by `limit` bytes.
fn query_within(socket: &Path, timeout: Duration, limit: u64) -> Result<Status, String> {
    let deadline = Instant::now() + timeout;
    let fail = |what: &str, e: io::Error| {
        if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            format!("{}: no answer within {timeout:?}", socket.display())
        } else {
            format!("{}: {what}: {e}", socket.display())
        }
    };
    let stream = connect(socket, deadline).map_err(|e| fail("cannot connect", e))?;
    let mut request = serde_json::to_string(&Request::Status)
        .map_err(|e| format!("cannot encode request: {e}"))?;
    request.push('\n');
    remaining(deadline)
        .and_then(|left| stream.set_write_timeout(Some(left)))
        .and_then(|()| (&stream).write_all(request.as_bytes()))
        .map_err(|e| fail("cannot send request", e))?;
    let mut line = Vec::new();
    // One byte over the limit tells a too-large answer from one of exactly `limit` bytes.
    BufReader::new(DeadlineReader { stream, deadline }.take(limit.saturating_add(1)))
        .read_until(b'\n', &mut line)
        .map_err(|e| fail("cannot read the answer", e))?;
    if line.len() as u64 > limit {
        return Err(format!(
            "{}: the agent's answer is larger than {limit} bytes",
            socket.display()
        ));
    }
    let response: Response = serde_json::from_slice(&line).map_err(|e| {
        format!(
            "{}: the agent's answer is not a status response: {e}",
            socket.display()
        )
    })?;
    match (response.status, response.error) {
        (Some(status), _) => Ok(status),
        (None, Some(error)) => Err(format!(
            "{}: the agent says: {}",
            socket.display(),
            printable(&error)
        )),
        (None, None) => Err(format!("{}: empty answer", socket.display())),
    }
}

/// The time left until `deadline`; a `TimedOut` error once it has passed (a zero socket
/// timeout would mean "wait forever").
fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(io::ErrorKind::TimedOut.into())
    } else {
        Ok(left)
    }
}

/// Connects before `deadline`. Connecting to a unix socket blocks while the agent's accept
/// backlog is full (a hung agent), and std offers no connect timeout, so the connect runs on a
/// helper thread. A thread given up on ends when the agent accepts or goes away, or with the
/// process; the stream it may still get is dropped.
fn connect(socket: &Path, deadline: Instant) -> io::Result<UnixStream> {
    let (done, result) = mpsc::sync_channel(1);
    let path = socket.to_path_buf();
    thread::Builder::new()
        .name("status-connect".into())
        .spawn(move || {
            // The receiver is gone when the caller stopped waiting.
            let _ = done.send(UnixStream::connect(path));
        })?;
    match result.recv_timeout(remaining(deadline)?) {
        Ok(connected) => connected,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(io::ErrorKind::TimedOut.into()),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(io::Error::other(
            "the connecting thread ended without a result",
        )),
    }
}

/// Reads with each read's timeout set to the time left, so the deadline bounds the whole answer
/// rather than each read (an agent dribbling a byte at a time cannot hold the client).
struct DeadlineReader {
    stream: UnixStream,
    deadline: Instant,
}

impl Read for DeadlineReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream
            .set_read_timeout(Some(remaining(self.deadline)?))?;
        self.stream.read(buf)
    }
}

/// Text for a terminal: control characters in names and other strings from the config or the
/// socket (escape sequences, line breaks, NUL) are written escaped, like `\u{1b}`.
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// [`printable`] for a list, comma-separated.
fn printable_list(items: &[String]) -> String {
    printable(&items.join(", "))
}

/// `n` bytes for people: `512 B`, `3.00 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

fn ago(now: u64, then: u64) -> String {
    let secs = now.saturating_sub(then);
    match secs {
        0..=119 => format!("{secs} seconds ago"),
        120..=7199 => format!("{} minutes ago", secs / 60),
        _ => format!("{} hours ago", secs / 3600),
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` for Unix seconds (proleptic Gregorian calendar).
pub fn utc(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let rem = unix % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

impl Status {
    /// The human-readable form, in the spirit of `wg show`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "interface: {} (instance {}, machine {})",
            printable(&self.interface),
            printable(&self.instance),
            printable(&self.machine)
        );
        let _ = writeln!(out, "  public key: {}", printable(&self.public_key));
        let _ = writeln!(out, "  listening port: {}", self.listen_port);
        let _ = writeln!(out, "  addresses: {}", printable_list(&self.addresses));
        if self.ipv6_only {
            let _ = writeln!(
                out,
                "  note: this machine has IPv6 only (no IPv4 overlay address)"
            );
        }
        match &self.source {
            Source::Config => {
                let _ = writeln!(out, "  member list: precomputed config (no netmap)");
            }
            Source::Netmap {
                epoch,
                expires_unix,
            } => {
                let state = if *expires_unix <= self.now_unix {
                    "EXPIRED"
                } else {
                    "valid"
                };
                let _ = writeln!(
                    out,
                    "  member list: netmap epoch {epoch}, expires {} ({state})",
                    utc(*expires_unix)
                );
            }
        }
        let dropped: Vec<String> = self
            .drops
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{} {n}", printable(k)))
            .collect();
        if !dropped.is_empty() {
            let _ = writeln!(out, "  dropped packets: {}", dropped.join(", "));
        }
        for c in &self.controllers {
            let state = match (c.connected, &c.last_error) {
                (true, _) => "connected".to_string(),
                (false, Some(why)) => format!("not connected: {}", printable(why)),
                (false, None) => "connecting".to_string(),
            };
            let _ = writeln!(
                out,
                "  controller: {} at {} ({state})",
                printable(&c.name),
                printable(&c.endpoint)
            );
        }
        for r in &self.relays {
            let state = match (r.alive, &r.observed, r.rtt_ms) {
                (true, Some(seen), Some(rtt)) => {
                    format!("alive, sees us at {}, {rtt} ms", printable(seen))
                }
                (true, _, _) => "alive".to_string(),
                (false, _, _) => "not answering probes".to_string(),
            };
            let _ = writeln!(
                out,
                "  relay: {} at {} ({state})",
                printable(&r.name),
                printable(&r.addr)
            );
        }
        for warning in &self.warnings {
            let _ = writeln!(out, "  warning: {}", printable(warning));
        }
        for m in &self.members {
            let _ = writeln!(out);
            let _ = writeln!(out, "member: {}", printable(&m.name));
            let _ = writeln!(out, "  public key: {}", printable(&m.public_key));
            let _ = writeln!(out, "  addresses: {}", printable_list(&m.addresses));
            if !m.routes.is_empty() {
                let _ = writeln!(out, "  routes: {}", printable_list(&m.routes));
            }
            if m.path.kind == "none" {
                let _ = writeln!(out, "  path: (unknown until it connects)");
            } else {
                let _ = writeln!(out, "  path: {}", m.path);
            }
            if !m.candidates.is_empty() {
                let list: Vec<String> = m
                    .candidates
                    .iter()
                    .map(|c| format!("{} ({})", printable(&c.addr), printable(&c.kind)))
                    .collect();
                let _ = writeln!(out, "  candidates: {}", list.join(", "));
            }
            if let Some(p) = &m.last_probe {
                let what = if p.upgrade {
                    "direct try"
                } else {
                    "path search"
                };
                let result = match (&p.answered_by, p.took_ms) {
                    (Some(by), Some(ms)) => format!("answered by {} in {ms} ms", printable(by)),
                    _ => "no answer yet".to_string(),
                };
                let _ = writeln!(
                    out,
                    "  last probe: {what} {} s ago, {result}",
                    p.ago_ms / 1000
                );
            }
            match m.latest_handshake_unix {
                Some(t) => {
                    let _ = writeln!(out, "  latest handshake: {}", ago(self.now_unix, t));
                }
                None => {
                    let _ = writeln!(out, "  latest handshake: (none)");
                }
            }
            let _ = writeln!(
                out,
                "  transfer: {} received, {} sent",
                bytes(m.rx_bytes),
                bytes(m.tx_bytes)
            );
            if m.dropped_spoofed > 0 {
                let _ = writeln!(out, "  dropped (spoofed source): {}", m.dropped_spoofed);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Status {
        Status {
            instance: "my-vpn".into(),
            machine: "laptop".into(),
            interface: "wm-my-vpn".into(),
            public_key: "cHVi".into(),
            listen_port: 51820,
            addresses: vec!["fd12::5/48".into()],
            ipv6_only: true,
            source: Source::Netmap {
                epoch: 7,
                expires_unix: 1_800_000_000,
            },
            members: vec![MemberStatus {
                name: "server".into(),
                public_key: "c2Vy".into(),
                addresses: vec!["fd12::1".into()],
                routes: vec![],
                endpoint: Some("198.18.0.1:51820".into()),
                path: PathStatus {
                    kind: "direct".into(),
                    addr: Some("198.18.0.1:51820".into()),
                    via: None,
                },
                candidates: vec![
                    CandidateStatus {
                        addr: "198.18.0.1:51820".into(),
                        kind: "configured".into(),
                    },
                    CandidateStatus {
                        addr: "198.19.1.2:51820".into(),
                        kind: "local".into(),
                    },
                ],
                last_probe: Some(ProbeStatus {
                    ago_ms: 4_200,
                    upgrade: false,
                    answered_by: Some("direct 198.18.0.1:51820".into()),
                    took_ms: Some(3),
                }),
                latest_handshake_unix: Some(1_700_000_000 - 12),
                rx_bytes: 3 * 1024 * 1024,
                tx_bytes: 500,
                direct: true,
                dropped_spoofed: 0,
            }],
            drops: BTreeMap::from([("spoofed-source".to_string(), 2)]),
            now_unix: 1_700_000_000,
            warnings: vec!["the netmap of epoch 6 was dropped\u{1b}[2J".into()],
            controllers: vec![ControllerStatus {
                name: "server".into(),
                endpoint: "vpn.example.org:51821".into(),
                connected: false,
                last_error: Some("no answer from the controller within 10s".into()),
            }],
            relays: vec![RelayStatus {
                name: "server".into(),
                addr: "198.18.0.3:51822".into(),
                alive: true,
                observed: Some("198.18.0.7:40001".into()),
                rtt_ms: Some(2),
            }],
        }
    }

    #[test]
    fn response_round_trips_as_one_json_line() {
        let response = Response {
            version: PROTOCOL_VERSION,
            status: Some(sample()),
            error: None,
        };
        let line = serde_json::to_string(&response).unwrap();
        assert!(!line.contains('\n'));
        assert!(line.contains("\"kind\":\"netmap\""));
        assert_eq!(serde_json::from_str::<Response>(&line).unwrap(), response);
        assert_eq!(
            serde_json::to_string(&Request::Status).unwrap(),
            r#"{"request":"status"}"#
        );
    }

    #[test]
    fn text_shows_members_handshakes_and_the_netmap() {
        let text = sample().render();
        assert!(text.contains("member: server"), "{text}");
        assert!(text.contains("  path: direct 198.18.0.1:51820\n"), "{text}");
        assert!(
            text.contains("candidates: 198.18.0.1:51820 (configured), 198.19.1.2:51820 (local)"),
            "{text}"
        );
        assert!(
            text.contains(
                "last probe: path search 4 s ago, answered by direct 198.18.0.1:51820 in 3 ms"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "  relay: server at 198.18.0.3:51822 (alive, sees us at 198.18.0.7:40001, 2 ms)\n"
            ),
            "{text}"
        );
        let mut relayed = sample();
        relayed.members[0].path = PathStatus {
            kind: "relay".into(),
            addr: None,
            via: Some("server".into()),
        };
        assert!(relayed.render().contains("  path: relay via server\n"));
        assert!(text.contains("latest handshake: 12 seconds ago"), "{text}");
        assert!(text.contains("3.00 MiB received, 500 B sent"), "{text}");
        assert!(
            text.contains("netmap epoch 7, expires 2027-01-15 08:00:00 UTC (valid)"),
            "{text}"
        );
        assert!(text.contains("IPv6 only"), "{text}");
        assert!(
            text.contains(
                "  controller: server at vpn.example.org:51821 (not connected: no answer from the controller within 10s)\n"
            ),
            "{text}"
        );
        assert!(text.contains("dropped packets: spoofed-source 2"), "{text}");
        assert!(
            text.contains("  warning: the netmap of epoch 6 was dropped\\u{1b}[2J\n"),
            "{text}"
        );
    }

    #[test]
    fn text_escapes_control_characters_from_the_config() {
        let mut status = sample();
        status.members[0].name = "\x1b[31mevil\nmember: fake".into();
        status.members[0].path.addr = Some("198.18.0.1:1\x07".into());
        status.machine = "lap\x1b]0;title\x07top".into();
        let text = status.render();
        assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text}");
        assert!(
            text.contains("member: \\u{1b}[31mevil\\nmember: fake\n"),
            "{text}"
        );
        assert!(text.contains("path: direct 198.18.0.1:1\\u{7}"), "{text}");
        assert!(
            text.contains("machine lap\\u{1b}]0;title\\u{7}top)"),
            "{text}"
        );
    }

    /// A listener in a fresh directory whose first connection `agent` handles on a thread.
    fn fake_agent(
        agent: impl FnOnce(UnixStream) + Send + 'static,
    ) -> (tempfile::TempDir, PathBuf, thread::JoinHandle<()>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wm-test.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let handle = thread::spawn(move || agent(listener.accept().unwrap().0));
        (dir, path, handle)
    }

    /// Bound on how long a fake agent keeps a connection open, so no test can hang.
    const AGENT_BOUND: Duration = Duration::from_secs(10);

    #[test]
    fn query_reads_the_status_answer() {
        let (_dir, path, agent) = fake_agent(|stream| {
            let mut request = String::new();
            BufReader::new(&stream).read_line(&mut request).unwrap();
            assert_eq!(request, "{\"request\":\"status\"}\n");
            let response = Response {
                version: PROTOCOL_VERSION,
                status: Some(sample()),
                error: None,
            };
            let line = serde_json::to_string(&response).unwrap() + "\n";
            (&stream).write_all(line.as_bytes()).unwrap();
        });
        assert_eq!(query(&path).unwrap(), sample());
        agent.join().unwrap();
    }

    #[test]
    fn an_agent_that_never_answers_times_out() {
        let (_dir, path, agent) = fake_agent(|mut stream| {
            stream.set_read_timeout(Some(AGENT_BOUND)).unwrap();
            // Holds the connection until the client gives up and closes it.
            let _ = io::copy(&mut stream, &mut io::sink());
        });
        let start = Instant::now();
        let err = query_within(&path, Duration::from_millis(300), MAX_RESPONSE).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(3), "{err}");
        assert_eq!(
            err,
            format!("{}: no answer within 300ms", path.display()),
            "{err}"
        );
        agent.join().unwrap();
    }

    #[test]
    fn the_deadline_bounds_the_whole_answer_not_each_read() {
        let (_dir, path, agent) = fake_agent(|mut stream| {
            let start = Instant::now();
            while start.elapsed() < AGENT_BOUND && stream.write_all(b"x").is_ok() {
                thread::sleep(Duration::from_millis(20));
            }
        });
        let start = Instant::now();
        let err = query_within(&path, Duration::from_millis(300), MAX_RESPONSE).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(3), "{err}");
        assert!(err.contains("no answer within 300ms"), "{err}");
        agent.join().unwrap();
    }

    #[test]
    fn an_endless_line_is_cut_at_the_limit() {
        let (_dir, path, agent) = fake_agent(|mut stream| {
            stream.set_write_timeout(Some(AGENT_BOUND)).unwrap();
            while stream.write_all(&[b'x'; 4096]).is_ok() {}
        });
        let err = query_within(&path, Duration::from_secs(5), 65_536).unwrap_err();
        assert_eq!(
            err,
            format!(
                "{}: the agent's answer is larger than 65536 bytes",
                path.display()
            )
        );
        agent.join().unwrap();
    }

    /// A hung agent whose accept backlog is full: connecting itself would block forever.
    #[test]
    fn connecting_to_a_full_backlog_times_out() {
        use socket2::{Domain, SockAddr, Socket, Type};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wm-test.sock");
        let listener = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
        listener.bind(&SockAddr::unix(&path).unwrap()).unwrap();
        listener.listen(0).unwrap();
        let mut queued = Vec::new();
        loop {
            let client = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
            client.set_nonblocking(true).unwrap();
            match client.connect(&SockAddr::unix(&path).unwrap()) {
                Ok(()) => queued.push(client),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("connect: {e}"),
            }
            assert!(queued.len() < 64, "the backlog never filled");
        }
        let start = Instant::now();
        let err = query_within(&path, Duration::from_millis(300), MAX_RESPONSE).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(3), "{err}");
        assert_eq!(err, format!("{}: no answer within 300ms", path.display()));
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }
}
