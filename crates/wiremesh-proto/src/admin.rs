//! The controller's admin protocol over its root-only unix socket: one JSON [`Request`] line, one
//! JSON [`Response`] line, then the controller closes.

use serde::{Deserialize, Serialize};

/// Bumped when a field changes meaning; new fields may be added without a bump.
pub const ADMIN_VERSION: u32 = 1;
/// The longest request line the controller reads.
pub const MAX_REQUEST_LINE: usize = 4096;
/// The longest answer a client reads (a status of 100,000 members fits).
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;
/// The socket's file name in the state directory.
pub const SOCKET_FILE: &str = "admin.sock";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    Status,
    /// A single-use join token for `name`, valid for `ttl_seconds`.
    TokenCreate {
        name: String,
        ttl_seconds: u64,
    },
    Revoke {
        name: String,
    },
    /// A complete credential for a device that runs no agent.
    DeviceAdd {
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub version: u32,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Outcome {
    Status(Status),
    Token {
        token: String,
        name: String,
        expires_at: u64,
    },
    Revoked {
        name: String,
        epoch: u64,
    },
    Device {
        name: String,
        wg_quick: String,
        epoch: u64,
    },
    Error {
        message: String,
    },
}

/// The controller's view: members, leases, connected agents, the epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub instance: String,
    /// Unix seconds when the status was taken.
    pub now: u64,
    pub epoch: u64,
    pub issued_at: u64,
    pub expires_at: u64,
    pub pool: Option<Pool>,
    pub members: Vec<MemberStatus>,
    pub tokens: Vec<TokenStatus>,
    /// The probe and relay service; missing when it is off (or from an older controller).
    #[serde(default)]
    pub relay: Option<RelayStatus>,
}

/// The controller's probe and relay service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelayStatus {
    /// The UDP port it serves on.
    pub port: u16,
    /// Members with a binding: the address their last valid probe came from.
    pub bound: Vec<RelayBinding>,
    /// What was relayed, by ordered pair of members.
    pub pairs: Vec<RelayPair>,
    /// Datagrams dropped, by reason (`not-a-member`, `unknown-destination`, `rate`, `quota`,
    /// `bad-probe`, `replay`, `probe-flood`, `malformed`).
    pub drops: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelayBinding {
    pub name: String,
    pub address: String,
    /// Seconds since its last valid probe.
    pub age_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelayPair {
    pub from: String,
    pub to: String,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pool {
    pub range: String,
    pub size: u64,
    pub leased: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    pub name: String,
    /// `inventory`, `agent` (joined with a token) or `device`.
    pub kind: String,
    pub ipv4: Option<String>,
    pub ipv6: String,
    /// The IPv4 address is a dynamic lease.
    pub leased: bool,
    pub revoked: bool,
    /// Set while the member's agent is connected.
    pub connection: Option<Connection>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    pub remote: String,
    pub since: u64,
    pub last_contact: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenStatus {
    pub name: String,
    pub expires_at: u64,
}

/// Sends one request to the controller's admin socket and reads its answer, all within
/// `timeout`; the answer is read up to [`MAX_RESPONSE_BYTES`]. Errors name the socket.
pub fn request(
    socket: &std::path::Path,
    request: &Request,
    timeout: std::time::Duration,
) -> Result<Response, String> {
    use std::io::{Read as _, Write as _};
    let at = |e: std::io::Error| format!("controller admin socket {}: {e}", socket.display());
    let deadline = std::time::Instant::now() + timeout;
    let mut stream = std::os::unix::net::UnixStream::connect(socket).map_err(at)?;
    stream.set_write_timeout(Some(timeout)).map_err(at)?;
    let mut line = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    line.push(b'\n');
    stream.write_all(&line).map_err(at)?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 16 << 10];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(format!(
                "controller admin socket {}: no answer within {timeout:?}",
                socket.display()
            ));
        }
        stream.set_read_timeout(Some(left)).map_err(at)?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(at(e)),
        }
        if answer.len() > MAX_RESPONSE_BYTES {
            return Err(format!(
                "controller admin socket {}: answer larger than {MAX_RESPONSE_BYTES} bytes",
                socket.display()
            ));
        }
        if answer.ends_with(b"\n") {
            break;
        }
    }
    serde_json::from_slice(&answer).map_err(|e| {
        format!(
            "controller admin socket {}: not an answer ({e})",
            socket.display()
        )
    })
}
