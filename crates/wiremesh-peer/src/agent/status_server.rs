//! The status socket: a root-only unix socket answering one JSON request per connection.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use wiremesh_peer::path::Path as MemberPath;
use wiremesh_peer::spec::{MemberSpec, SpecSource};
use wiremesh_proto::status::{
    CandidateStatus, ControllerStatus, MAX_REQUEST_LINE, MemberStatus, PROTOCOL_VERSION,
    PathStatus, ProbeStatus, RelayStatus, Request, Response, Source, Status,
};

use wiremesh_peer::mesh::Mesh;

use super::Info;
use super::datapath::Shared;

pub struct StatusServer {
    listener: UnixListener,
}

impl StatusServer {
    /// Binds the socket with mode 0600 from the start; creates its directory with mode 0700 when
    /// missing and refuses one that others may write to (see [`check_dir`]).
    pub fn bind(path: &Path) -> Result<StatusServer> {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("{}: cannot create the socket directory", dir.display()))?;
        let meta = fs::metadata(dir)
            .with_context(|| format!("{}: cannot inspect the socket directory", dir.display()))?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        check_dir(dir, meta.mode(), meta.uid(), unsafe { libc::geteuid() })?;
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
        // bind creates the socket with mode 0777 minus the umask, so this mask makes it 0600 from
        // the start, with no moment at which others may connect. The umask is process-wide; that
        // is safe here because this runs once at start-up before the agent's threads exist (lookup
        // threads of the first name lookup may still run, and they create no files).
        // SAFETY: umask only swaps the process's file mode mask.
        let umask = unsafe { libc::umask(0o177) };
        let bound = UnixListener::bind(path);
        // SAFETY: as above; puts back the mask found.
        unsafe { libc::umask(umask) };
        let listener =
            bound.with_context(|| format!("{}: cannot bind the status socket", path.display()))?;
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
                    let _ = wiremesh_udp::wait(
                        &self.listener,
                        libc::POLLIN,
                        Duration::from_millis(200),
                    );
                }
                Err(e) => {
                    tracing::warn!("status socket accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }
}

/// Refuses a socket directory that others could use to put their own socket in place of this
/// one (`wiremesh status` would then talk to an impostor): one that group or others may write to,
/// or one owned by another user, who could open it up at any time. Root may own it: root can
/// replace the socket anyway.
fn check_dir(dir: &Path, mode: u32, owner: u32, euid: u32) -> Result<()> {
    if mode & 0o022 != 0 {
        bail!(
            "{}: the status socket's directory has mode {:04o}; expected one that neither group \
             nor others may write to (such as 0700 or 0755)",
            dir.display(),
            mode & 0o7777
        );
    }
    if owner != euid && owner != 0 {
        bail!(
            "{}: the status socket's directory is owned by uid {owner}; expected uid {euid} (the \
             agent's user) or 0 (root)",
            dir.display()
        );
    }
    Ok(())
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
    let instant = Instant::now();
    let relays = mesh.relays(instant);
    let active = relays.iter().find(|r| r.alive);
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
                endpoint: match snap.path {
                    Some(MemberPath::Direct(a)) => Some(a.to_string()),
                    Some(MemberPath::Relay) => active.map(|r| r.addr.to_string()),
                    None => None,
                },
                path: path_status(snap.path, active.map(|r| r.name.as_str())),
                candidates: candidates(spec),
                last_probe: snap.outcome.map(|o| ProbeStatus {
                    ago_ms: millis(instant.saturating_duration_since(o.started)),
                    upgrade: o.upgrade,
                    answered_by: o.answered.map(|(path, _)| match path {
                        MemberPath::Direct(a) => format!("direct {a}"),
                        MemberPath::Relay => "relay".to_string(),
                    }),
                    took_ms: o.answered.map(|(_, took)| millis(took)),
                }),
                latest_handshake_unix: snap
                    .since_handshake
                    .map(|d| now.saturating_sub(d.as_secs())),
                rx_bytes: snap.rx_bytes,
                tx_bytes: snap.tx_bytes,
                direct: matches!(snap.path, Some(MemberPath::Direct(_))),
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
        controllers: info
            .controllers
            .iter()
            .map(|c| ControllerStatus {
                name: c.name.clone(),
                endpoint: c.endpoint.clone(),
                connected: c.connected,
                last_error: c.last_error.clone(),
            })
            .collect(),
        relays: relays
            .iter()
            .map(|r| RelayStatus {
                name: r.name.clone(),
                addr: r.addr.to_string(),
                alive: r.alive,
                observed: r.observed.map(|a| a.to_string()),
                rtt_ms: r.rtt.map(millis),
            })
            .collect(),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn path_status(path: Option<MemberPath>, relay: Option<&str>) -> PathStatus {
    match path {
        Some(MemberPath::Direct(a)) => PathStatus {
            kind: "direct".into(),
            addr: Some(a.to_string()),
            via: None,
        },
        Some(MemberPath::Relay) => PathStatus {
            kind: "relay".into(),
            addr: None,
            via: Some(relay.unwrap_or("(no relay answers)").to_string()),
        },
        None => PathStatus::default(),
    }
}

/// A member's configured endpoints, then its candidates, each once.
fn candidates(spec: &MemberSpec) -> Vec<CandidateStatus> {
    let mut out: Vec<CandidateStatus> = Vec::new();
    let all = spec
        .endpoints
        .iter()
        .map(|a| (*a, "configured"))
        .chain(spec.candidates.iter().map(|(a, k)| (*a, k.name())));
    for (addr, kind) in all {
        let addr = addr.to_string();
        if !out.iter().any(|c| c.addr == addr) {
            out.push(CandidateStatus {
                addr,
                kind: kind.into(),
            });
        }
    }
    out
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
        let mode = fs::metadata(&path).unwrap().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn the_socket_is_created_with_mode_0600_not_narrowed_afterwards() {
        use std::os::fd::{FromRawFd, OwnedFd};
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wm-test.sock");
        // SAFETY: plain syscalls; the descriptor is owned by `events` from here on.
        let events = unsafe {
            let fd = libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC);
            assert!(fd >= 0, "{}", std::io::Error::last_os_error());
            fs::File::from(OwnedFd::from_raw_fd(fd))
        };
        let watched = std::ffi::CString::new(dir.path().as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid inotify descriptor and a NUL-terminated path.
        let wd = unsafe {
            libc::inotify_add_watch(
                std::os::fd::AsRawFd::as_raw_fd(&events),
                watched.as_ptr(),
                libc::IN_CREATE | libc::IN_ATTRIB,
            )
        };
        assert!(wd >= 0, "{}", std::io::Error::last_os_error());
        let _server = StatusServer::bind(&path).unwrap();
        let mut buf = [0u8; 4096];
        let n = (&events).read(&mut buf).unwrap();
        // struct inotify_event: wd, mask, cookie, name length (4 bytes each), then the name.
        let mut masks = Vec::new();
        let mut at = 0;
        while at + 16 <= n {
            let word = |i: usize| u32::from_ne_bytes(buf[at + i..at + i + 4].try_into().unwrap());
            masks.push(word(4));
            at += 16 + word(12) as usize;
        }
        assert_eq!(masks, [libc::IN_CREATE], "created, then no mode change");
        let mode = fs::metadata(&path).unwrap().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }

    #[test]
    fn bind_refuses_a_directory_others_may_write_to() {
        use std::os::unix::fs::PermissionsExt;
        for mode in [0o777, 0o770, 0o1777] {
            let dir = tempfile::tempdir().unwrap();
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(mode)).unwrap();
            let path = dir.path().join("wm-test.sock");
            let err = format!("{:#}", StatusServer::bind(&path).err().unwrap());
            let found = format!(
                "{}: the status socket's directory has mode {mode:04o}",
                dir.path().display()
            );
            assert!(err.starts_with(&found), "{err}");
            assert!(err.contains("neither group nor others may write"), "{err}");
            assert!(!path.exists());
        }
    }

    #[test]
    fn the_socket_directory_belongs_to_the_agent_or_root() {
        let dir = Path::new("/run/wm");
        assert!(check_dir(dir, 0o700, 1000, 1000).is_ok());
        assert!(check_dir(dir, 0o755, 0, 1000).is_ok());
        let err = check_dir(dir, 0o700, 1001, 1000).unwrap_err().to_string();
        assert_eq!(
            err,
            "/run/wm: the status socket's directory is owned by uid 1001; expected uid 1000 (the \
             agent's user) or 0 (root)"
        );
        assert!(check_dir(dir, 0o720, 0, 0).is_err());
    }

    #[test]
    fn status_lists_members_and_flags_ipv6_only() {
        let spec = MeshSpec {
            relays: Vec::new(),
            addresses: vec!["fd12::5/48".parse().unwrap()],
            networks: vec!["fd12::/48".parse().unwrap()],
            ip_ranges: vec!["fd12::/48".parse().unwrap()],
            members: vec![MemberSpec {
                candidates: Vec::new(),
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
            lan: Vec::new(),
            instance: "my-vpn".into(),
            machine: "laptop".into(),
            interface: "wm-my-vpn".into(),
            listen_port: 51820,
            warnings: BTreeMap::from([("netmap", "dropped".to_string())]),
            controllers: Vec::new(),
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
