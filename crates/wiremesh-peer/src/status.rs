//! The local status socket's protocol, shared by the agent (server) and `wiremesh status` (client).
//!
//! One request per connection over a unix stream socket, one JSON document per line: the client
//! writes `{"request":"status"}\n`, the agent answers with one [`Response`] line and closes. Plain
//! std + serde so the CLI needs no async runtime. The socket is root-only (mode 0600 in a 0700
//! directory) because it reveals endpoints and traffic counters.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    pub name: String,
    pub public_key: String,
    pub addresses: Vec<String>,
    pub routes: Vec<String>,
    pub endpoint: Option<String>,
    /// When the current session was established (Unix seconds); none while there is no session.
    pub latest_handshake_unix: Option<u64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// True when packets go straight to the member's endpoint (this agent has no relays, so every
    /// member with a known endpoint is direct).
    pub direct: bool,
    /// Packets from this member dropped because their inner source was not the member's.
    pub dropped_spoofed: u64,
}

/// Asks the agent behind `socket` for its status.
pub fn query(socket: &Path) -> Result<Status, String> {
    let fail = |what: &str, e: std::io::Error| format!("{}: {what}: {e}", socket.display());
    let mut stream = UnixStream::connect(socket).map_err(|e| fail("cannot connect", e))?;
    let timeout = Some(Duration::from_secs(5));
    stream
        .set_read_timeout(timeout)
        .and_then(|()| stream.set_write_timeout(timeout))
        .map_err(|e| fail("cannot set timeouts", e))?;
    let mut request = serde_json::to_string(&Request::Status)
        .map_err(|e| format!("cannot encode request: {e}"))?;
    request.push('\n');
    stream
        .write_all(request.as_bytes())
        .map_err(|e| fail("cannot send request", e))?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| fail("no answer", e))?;
    let response: Response = serde_json::from_str(&line).map_err(|e| {
        format!(
            "{}: the agent's answer is not a status response: {e}",
            socket.display()
        )
    })?;
    match (response.status, response.error) {
        (Some(status), _) => Ok(status),
        (None, Some(error)) => Err(format!("{}: the agent says: {error}", socket.display())),
        (None, None) => Err(format!("{}: empty answer", socket.display())),
    }
}

fn bytes(n: u64) -> String {
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
            self.interface, self.instance, self.machine
        );
        let _ = writeln!(out, "  public key: {}", self.public_key);
        let _ = writeln!(out, "  listening port: {}", self.listen_port);
        let _ = writeln!(out, "  addresses: {}", self.addresses.join(", "));
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
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        if !dropped.is_empty() {
            let _ = writeln!(out, "  dropped packets: {}", dropped.join(", "));
        }
        for m in &self.members {
            let _ = writeln!(out);
            let _ = writeln!(out, "member: {}", m.name);
            let _ = writeln!(out, "  public key: {}", m.public_key);
            let _ = writeln!(out, "  addresses: {}", m.addresses.join(", "));
            if !m.routes.is_empty() {
                let _ = writeln!(out, "  routes: {}", m.routes.join(", "));
            }
            match &m.endpoint {
                Some(e) => {
                    let path = if m.direct { "direct" } else { "relayed" };
                    let _ = writeln!(out, "  endpoint: {e} ({path})");
                }
                None => {
                    let _ = writeln!(out, "  endpoint: (unknown until it connects)");
                }
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
                latest_handshake_unix: Some(1_700_000_000 - 12),
                rx_bytes: 3 * 1024 * 1024,
                tx_bytes: 500,
                direct: true,
                dropped_spoofed: 0,
            }],
            drops: BTreeMap::from([("spoofed-source".to_string(), 2)]),
            now_unix: 1_700_000_000,
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
        assert!(
            text.contains("endpoint: 198.18.0.1:51820 (direct)"),
            "{text}"
        );
        assert!(text.contains("latest handshake: 12 seconds ago"), "{text}");
        assert!(text.contains("3.00 MiB received, 500 B sent"), "{text}");
        assert!(
            text.contains("netmap epoch 7, expires 2027-01-15 08:00:00 UTC (valid)"),
            "{text}"
        );
        assert!(text.contains("IPv6 only"), "{text}");
        assert!(text.contains("dropped packets: spoofed-source 2"), "{text}");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }
}
