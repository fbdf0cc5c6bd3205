//! The daemon: the thin tokio shell around the [`Controller`]. It reads the configuration and
//! the key files, opens the SQLite store in the state directory, serves the QUIC control channel
//! and the admin socket, and hands everything to the core thread ([`core`]). The probe and relay
//! service has a UDP socket and a thread of its own ([`relay`]), off the async runtime.

mod admin;
mod connection;
mod core;
mod relay;

use std::net::{Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use wiremesh_core::config::MAX_CONFIG_BYTES;
use wiremesh_core::controller_config::ControllerFile;
use wiremesh_core::files::read_text_bounded;
use wiremesh_core::keys::{Identity, NetworkKey, permission_warning};
use wiremesh_proto::admin::SOCKET_FILE;

use self::core::{Command, CoreHandle, RelayLink};
use self::relay::{RelayThread, SEND_WAIT, Udp};
use crate::relay::{Limits as RelayLimits, Relay};
use crate::store::STORE_FILE;
use crate::{ConfigDiff, Controller, Output, SqliteStore};

/// The time in Unix seconds; a test passes its own clock.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl Clock {
    pub fn system() -> Self {
        Self(Arc::new(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        }))
    }

    pub fn new(now: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    pub fn now(&self) -> u64 {
        (self.0)()
    }
}

/// Bounds on what one connection may cost.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// For the TLS handshake and for opening the control stream.
    pub handshake: Duration,
    /// For the hello and the enrollment, counted from the stream's opening.
    pub enroll: Duration,
    /// Connections served at once; more wait in the kernel's and quinn's queues.
    pub connections: usize,
    /// A connection with no packet for this long is closed.
    pub idle: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            handshake: Duration::from_secs(10),
            enroll: Duration::from_secs(10),
            connections: 4096,
            idle: Duration::from_secs(60),
        }
    }
}

/// What `wiremesh-controller run` is given.
#[derive(Clone)]
pub struct Options {
    pub config: PathBuf,
    /// `None`: the configuration's `networkKeyPath`.
    pub network_key: Option<PathBuf>,
    pub identity: PathBuf,
    pub state_dir: PathBuf,
    /// Overrides `[::]:controlPort`, e.g. `127.0.0.1:0` in tests.
    pub listen: Option<SocketAddr>,
    /// Overrides `[::]:relay.port` (when the relay is on).
    pub relay_listen: Option<SocketAddr>,
    pub limits: Limits,
    pub clock: Clock,
}

/// A running controller.
pub struct Server {
    endpoint: quinn::Endpoint,
    core: CoreHandle,
    core_thread: std::thread::JoinHandle<()>,
    relay: Option<(RelayThread, SocketAddr)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    admin_socket: PathBuf,
    config_path: PathBuf,
}

/// Reads and checks a controller configuration; errors name the file.
pub fn load_config(path: &Path) -> Result<ControllerFile, String> {
    let text = read_text_bounded(path, MAX_CONFIG_BYTES).map_err(|e| e.to_string())?;
    ControllerFile::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn prepare_state_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    let at = |e: std::io::Error| format!("state directory {}: {e}", dir.display());
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {
            if m.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    "state directory {} has mode {:04o}, so other users may read the store; run `chmod 700 {}`",
                    dir.display(),
                    m.permissions().mode() & 0o7777,
                    dir.display()
                );
            }
            Ok(())
        }
        Ok(_) => Err(format!(
            "state directory {}: not a directory",
            dir.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(at),
        Err(e) => Err(at(e)),
    }
}

fn transport(limits: &Limits) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    // One control stream per connection; a client opening more is held by flow control.
    t.max_concurrent_bidi_streams(1u8.into());
    t.max_concurrent_uni_streams(0u8.into());
    t.stream_receive_window(quinn::VarInt::from_u32(256 << 10));
    t.receive_window(quinn::VarInt::from_u32(256 << 10));
    t.max_idle_timeout(limits.idle.try_into().ok());
    t.keep_alive_interval(Some(limits.idle / 4));
    Arc::new(t)
}

impl Server {
    /// Loads everything and starts listening; a bad file or store is an error naming it.
    pub async fn start(options: Options) -> Result<Server, String> {
        let config = load_config(&options.config)?;
        let network_key_path = options
            .network_key
            .clone()
            .unwrap_or_else(|| PathBuf::from(&config.network_key_path));
        for path in [&network_key_path, &options.identity] {
            if let Some(warning) = permission_warning(path) {
                tracing::warn!("{warning}");
            }
        }
        let network_key = NetworkKey::load(&network_key_path).map_err(|e| e.to_string())?;
        let identity = Identity::load(&options.identity).map_err(|e| e.to_string())?;
        prepare_state_dir(&options.state_dir)?;
        let store =
            SqliteStore::open(&options.state_dir.join(STORE_FILE)).map_err(|e| e.to_string())?;
        let listen = options.listen.unwrap_or(SocketAddr::from((
            Ipv6Addr::UNSPECIFIED,
            config.control_port,
        )));
        let relay_config = config.relay;
        let relay_listen = options
            .relay_listen
            .unwrap_or(SocketAddr::from((Ipv6Addr::UNSPECIFIED, relay_config.port)));
        // Bound first: a port in use stops the start before anything else listens.
        let relay_udp = if relay_config.enable {
            Some(Udp::bind(relay_listen, SEND_WAIT).map_err(|e| {
                format!(
                    "cannot listen on UDP {relay_listen} for the relay: {e} (set relay.port, or relay.enable = false)"
                )
            })?)
        } else {
            None
        };
        let (controller, outputs) = Controller::open(
            store,
            config,
            network_key.secret().clone(),
            identity.node_public_key(),
            options.clock.now(),
        )
        .map_err(|e| format!("{}: {e}", options.config.display()))?;
        for output in outputs {
            if let Output::Warn(text) = output {
                tracing::warn!("{text}");
            }
        }
        let mut server_config =
            wiremesh_proto::tls::server_config(identity.node_secret(), transport(&options.limits))
                .map_err(|e| e.to_string())?;
        server_config.max_incoming(options.limits.connections);
        let endpoint = quinn::Endpoint::server(server_config, listen)
            .map_err(|e| format!("cannot listen on UDP {listen}: {e}"))?;
        let admin_socket = options.state_dir.join(SOCKET_FILE);
        let admin = admin::bind(&admin_socket)?;
        let relay_socket = if let Some(udp) = relay_udp {
            let addr = udp.local_addr().map_err(|e| e.to_string())?;
            let mut relay = Relay::new(
                identity.node_secret().clone(),
                RelayLimits::from_config(&relay_config),
                relay::mono_now(),
            );
            // The members are there before the first datagram is; the core keeps them current.
            relay.set_members(controller.relay_members(), relay::mono_now());
            Some((udp, addr, Arc::new(Mutex::new(relay))))
        } else {
            None
        };
        let link = relay_socket.as_ref().map(|(_, addr, relay)| RelayLink {
            relay: relay.clone(),
            port: addr.port(),
            config_port: relay_config.port,
        });
        let (core, core_thread) = core::spawn(controller, options.clock.clone(), link)
            .map_err(|e| format!("cannot start the core thread: {e}"))?;
        let relay = match relay_socket {
            Some((udp, addr, relay)) => Some((
                RelayThread::spawn(udp, relay, core.clone())
                    .map_err(|e| format!("cannot start the relay thread: {e}"))?,
                addr,
            )),
            None => None,
        };
        let tasks = vec![
            tokio::spawn(accept(endpoint.clone(), core.clone(), options.limits)),
            tokio::spawn(admin::serve(admin, core.clone())),
        ];
        Ok(Server {
            endpoint,
            core,
            core_thread,
            relay,
            tasks,
            admin_socket,
            config_path: options.config,
        })
    }

    /// The UDP address the control channel listens on.
    pub fn local_addr(&self) -> Result<SocketAddr, String> {
        self.endpoint.local_addr().map_err(|e| e.to_string())
    }

    /// The UDP address the probes and the relay are served on, when the relay is on.
    pub fn relay_addr(&self) -> Option<SocketAddr> {
        self.relay.as_ref().map(|(_, addr)| *addr)
    }

    pub fn admin_socket(&self) -> &Path {
        &self.admin_socket
    }

    /// Re-reads the configuration file and applies it as a diff.
    pub async fn reload(&self) -> Result<ConfigDiff, String> {
        let config = load_config(&self.config_path)?;
        self.core
            .ask(|reply| Command::Reload {
                config: Box::new(config),
                reply,
            })
            .await
            .unwrap_or_else(|| Err("the controller is stopping".into()))
    }

    /// Closes every connection and the admin socket, and stops the core once it has finished
    /// what it was doing (its last commit included).
    pub async fn shutdown(self) {
        self.endpoint
            .close(quinn::VarInt::from_u32(0), b"the controller is stopping");
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        let _ = std::fs::remove_file(&self.admin_socket);
        if let Some((thread, _)) = self.relay {
            let _ = tokio::task::spawn_blocking(move || thread.stop()).await;
        }
        drop(self.core);
        // Connection tasks hold handles too; they end with the endpoint's connections. The core
        // finishes the command it is running (a commit included) before it sees the end.
        let thread = self.core_thread;
        let joined = tokio::task::spawn_blocking(move || thread.join());
        if tokio::time::timeout(Duration::from_secs(5), joined)
            .await
            .is_err()
        {
            tracing::warn!("the core thread did not stop within 5 s");
        }
    }
}

async fn accept(endpoint: quinn::Endpoint, core: CoreHandle, limits: Limits) {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.connections));
    while let Some(incoming) = endpoint.accept().await {
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            incoming.refuse();
            continue;
        };
        let core = core.clone();
        tokio::spawn(async move {
            connection::serve(incoming, core, limits).await;
            drop(slot);
        });
    }
}

/// `wiremesh-controller run`: starts, tells systemd it is ready, reloads on SIGHUP and stops
/// cleanly on SIGTERM or SIGINT.
pub async fn run(options: Options) -> Result<(), String> {
    let signals = |kind| signal(kind).map_err(|e| format!("cannot handle signals: {e}"));
    let (mut hup, mut term, mut int) = (
        signals(SignalKind::hangup())?,
        signals(SignalKind::terminate())?,
        signals(SignalKind::interrupt())?,
    );
    let server = Server::start(options).await?;
    tracing::info!(
        "serving the control channel on UDP {} and the admin socket {}",
        server.local_addr()?,
        server.admin_socket().display()
    );
    match server.relay_addr() {
        Some(addr) => tracing::info!("serving probes and the relay on UDP {addr}"),
        None => tracing::info!("the relay is off (relay.enable = false)"),
    }
    if let Err(e) = wiremesh_proto::sd_notify::notify("READY=1") {
        tracing::warn!("cannot notify systemd: {e}");
    }
    loop {
        tokio::select! {
            _ = hup.recv() => match server.reload().await {
                Ok(diff) => tracing::info!(
                    "configuration reloaded: added [{}], removed [{}], changed [{}]",
                    diff.added.join(", "),
                    diff.removed.join(", "),
                    diff.changed.join(", ")
                ),
                Err(e) => tracing::error!("reload refused, keeping the running configuration: {e}"),
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("stopping");
    let _ = wiremesh_proto::sd_notify::notify("STOPPING=1");
    server.shutdown().await;
    Ok(())
}
