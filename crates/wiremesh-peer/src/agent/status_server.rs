//! The status socket: a root-only unix socket answering one JSON request per connection.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use wiremesh_peer::spec::SpecSource;
use wiremesh_peer::status::{
    MAX_REQUEST_LINE, MemberStatus, PROTOCOL_VERSION, Request, Response, Source, Status,
};

use wiremesh_peer::mesh::Mesh;

use super::Info;
use super::datapath::Shared;
use super::udp;

pub struct StatusServer {
    listener: UnixListener,
}

impl StatusServer {
    /// Binds the socket with mode 0600; creates its directory with mode 0700 when missing.
    pub fn bind(path: &Path) -> Result<StatusServer> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| {
                    format!("{}: cannot create the socket directory", dir.display())
                })?;
        }
        // A socket there was left by a crashed agent (a live agent would hold the same TUN name,
        // which failed earlier). Anything else is not ours to delete: a mistyped --status-socket
        // must not remove a regular file.
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => fs::remove_file(path)
                .with_context(|| format!("{}: cannot remove the stale socket", path.display()))?,
            Ok(_) => bail!(
                "{}: something other than a unix socket is there; expected the status socket \
                 or nothing at this path (choose another with --status-socket)",
                path.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("{}: cannot inspect the status socket path", path.display())
                });
            }
        }
        let listener = UnixListener::bind(path)
            .with_context(|| format!("{}: cannot bind the status socket", path.display()))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .with_context(|| format!("{}: cannot restrict permissions", path.display()))?;
        listener.set_nonblocking(true)?;
        Ok(StatusServer { listener })
    }

    pub fn serve(self, shared: &Shared) {
        while !shared.stop.load(Ordering::Relaxed) {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if let Err(e) = answer(stream, shared) {
                        tracing::debug!("status request failed: {e}");
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let _ = udp::wait(&self.listener, libc::POLLIN, Duration::from_millis(200));
                }
                Err(e) => {
                    tracing::warn!("status socket accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }
}

fn answer(stream: UnixStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut line = String::new();
    BufReader::new((&stream).take(MAX_REQUEST_LINE as u64)).read_line(&mut line)?;
    let response = match serde_json::from_str::<Request>(&line) {
        Ok(Request::Status) => Response {
            version: PROTOCOL_VERSION,
            status: Some({
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let mesh = shared.mesh();
                let info = shared.info();
                status(&mesh, &info, now)
            }),
            error: None,
        },
        Err(e) => Response {
            version: PROTOCOL_VERSION,
            status: None,
            error: Some(format!(
                "unknown request ({e}); expected one JSON line like {{\"request\":\"status\"}}"
            )),
        },
    };
    let mut text = serde_json::to_string(&response).map_err(std::io::Error::other)?;
    text.push('\n');
    (&stream).write_all(text.as_bytes())
}

/// The status message for the mesh as it is now (`now` in Unix seconds).
fn status(mesh: &Mesh, info: &Info, now: u64) -> Status {
    let spec = mesh.spec();
    let mut members: Vec<MemberStatus> = mesh
        .members()
        .map(|(_, m)| {
            let snap = m.snapshot();
            let spec = m.spec();
            MemberStatus {
                name: spec.name.clone(),
                public_key: BASE64.encode(spec.public_key),
                addresses: spec.addresses.iter().map(|a| a.to_string()).collect(),
                routes: spec.routes.iter().map(|r| r.to_string()).collect(),
                endpoint: snap.endpoint.map(|e| e.to_string()),
                latest_handshake_unix: snap
                    .since_handshake
                    .map(|d| now.saturating_sub(d.as_secs())),
                rx_bytes: snap.rx_bytes,
                tx_bytes: snap.tx_bytes,
                direct: snap.endpoint.is_some(),
                dropped_spoofed: snap.dropped_spoofed,
            }
        })
        .collect();
    members.sort_by(|a, b| a.name.cmp(&b.name));
    let drops: BTreeMap<String, u64> = mesh
        .drop_counts()
        .into_iter()
        .map(|(reason, n)| (reason.name().to_string(), n))
        .collect();
    Status {
        instance: info.instance.clone(),
        machine: info.machine.clone(),
        interface: info.interface.clone(),
        public_key: BASE64.encode(mesh.public_key()),
        listen_port: info.listen_port,
        addresses: spec.addresses.iter().map(|a| a.to_string()).collect(),
        ipv6_only: !spec.addresses.iter().any(|a| a.addr().is_ipv4()),
        source: match spec.source {
            SpecSource::Config => Source::Config,
            SpecSource::Netmap {
                epoch,
                expires_unix,
            } => Source::Netmap {
                epoch,
                expires_unix,
            },
        },
        members,
        drops,
        now_unix: now,
        warnings: info.warnings.values().cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremesh_peer::mesh::OsIndexSource;
    use wiremesh_peer::spec::{MemberSpec, MeshSpec};

    #[test]
    fn bind_refuses_to_replace_what_is_not_a_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("foo");
        fs::write(&path, "keep me").unwrap();
        let err = format!("{:#}", StatusServer::bind(&path).err().unwrap());
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("expected the status socket"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "keep me");
    }

    #[test]
    fn bind_replaces_a_stale_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wm-test.sock");
        drop(UnixListener::bind(&path).unwrap());
        assert!(
            UnixStream::connect(&path).is_err(),
            "the old socket is dead"
        );
        let _server = StatusServer::bind(&path).unwrap();
        assert!(UnixStream::connect(&path).is_ok());
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn status_lists_members_and_flags_ipv6_only() {
        let spec = MeshSpec {
            addresses: vec!["fd12::5/48".parse().unwrap()],
            networks: vec!["fd12::/48".parse().unwrap()],
            ip_ranges: vec!["fd12::/48".parse().unwrap()],
            members: vec![MemberSpec {
                name: "server".into(),
                public_key: [9; 32],
                addresses: vec!["fd12::1".parse().unwrap()],
                routes: vec!["100.100.0.0/24".parse().unwrap()],
                endpoints: vec!["198.18.0.1:51820".parse().unwrap()],
                persistent_keepalive: None,
            }],
            source: SpecSource::Netmap {
                epoch: 3,
                expires_unix: 2_000,
            },
        };
        let (mesh, _) = Mesh::new([5; 32], &spec, &mut OsIndexSource);
        let info = Info {
            instance: "my-vpn".into(),
            machine: "laptop".into(),
            interface: "wm-my-vpn".into(),
            listen_port: 51820,
            warnings: BTreeMap::from([("netmap", "dropped".to_string())]),
        };
        let s = status(&mesh, &info, 1_000);
        assert_eq!(s.warnings, ["dropped"]);
        assert!(s.ipv6_only);
        assert_eq!(
            s.source,
            Source::Netmap {
                epoch: 3,
                expires_unix: 2_000
            }
        );
        assert_eq!(s.members.len(), 1);
        let m = &s.members[0];
        assert_eq!(m.name, "server");
        assert_eq!(m.endpoint.as_deref(), Some("198.18.0.1:51820"));
        assert_eq!(m.latest_handshake_unix, None);
        assert_eq!(m.routes, ["100.100.0.0/24"]);
        assert!(m.direct);
        assert_eq!(s.drops["spoofed-source"], 0);
    }
}
