//! The agent's I/O shell: sets up the TUN device, routes and UDP socket, and runs the two hot
//! threads, a timer thread (every member's WireGuard timers), a status thread, a reload thread
//! and, when the config pins a controller, a control thread that passes the controller's netmaps
//! to the reload thread. The main thread only waits for signals: SIGHUP asks the reload thread
//! for a reload, SIGTERM/SIGINT shut down. A reload may block for seconds resolving endpoint names; neither the
//! timers nor a shutdown wait for it, so no handshake, keepalive, rekey or `systemctl stop` waits
//! for DNS.

mod backlog;
mod config;
mod control;
mod datapath;
mod floor;
mod interfaces;
mod join;
mod netlink;
mod notify;
mod resolve;
mod spin;
mod status_server;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use ipnet::IpNet;
use tokio::sync::mpsc::Sender as AsyncSender;
use wiremesh_core::config::AgentConfig;
use wiremesh_core::keys::{Identity, NetworkPublicKey};
use wiremesh_core::netmap::Netmap;
use wiremesh_peer::mesh::{ApplyReport, Mesh, OsIndexSource, TICK_OUT_LEN};
use wiremesh_peer::spec::MeshSpec;

use backlog::Backlog;
use config::StateDir;
use control::ControllerState;
use datapath::Shared;
use floor::{EpochFloor, Floor};
use resolve::Resolved;

/// How often every member's WireGuard timers run.
const TICK: Duration = Duration::from_millis(200);
/// How long a packet thread waits for room in a full UDP socket buffer before it drops a train.
const UDP_SEND_WAIT: Duration = Duration::from_millis(100);
/// Punch requests waiting for the control thread.
const PUNCH_QUEUE: usize = 64;
/// How often the interface addresses are looked at: a laptop that moved to another network
/// finds its paths again this much sooner.
const LAN_SCAN: Duration = Duration::from_secs(1);
/// Where the state directory is without `--state-dir`: `<this>/<interface>`.
const DEFAULT_STATE_ROOT: &str = "/var/lib/wiremesh";
/// Keys of [`Info::warnings`].
const NETMAP_WARNING: &str = "netmap";
const FLOOR_WARNING: &str = "epoch-floor";

pub use join::{JoinOptions, join};

/// What the reload thread is asked to do.
pub enum Request {
    /// SIGHUP: read the config (and the netmap file) again.
    Reload,
    /// A netmap a controller sent (wire bytes, not verified yet).
    Netmap(Vec<u8>),
}

/// What `wiremesh-peer run` was told.
pub struct Options {
    pub config: PathBuf,
    pub identity: PathBuf,
    pub state_dir: Option<PathBuf>,
    pub netmap: Option<PathBuf>,
    pub status_socket: Option<PathBuf>,
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The netmap to start from: the `--netmap` file when it is valid and passes the epoch floor,
/// else the last good netmap in the state directory when the floor admits it. None when neither
/// `--netmap` nor a controller gives netmaps: the config's peer list is then all there is.
fn initial_netmap(
    options: &Options,
    config: &AgentConfig,
    state: Option<&StateDir>,
    floor: Option<&Floor>,
) -> Option<Netmap> {
    let stored = state.and_then(|s| s.load_netmap(config));
    let Some(path) = options.netmap.as_ref() else {
        // A controller's netmap outlives it: an agent started while no controller answers
        // comes up from the last one it sent.
        let stored = stored
            .filter(|_| !control::controllers(config).is_empty())
            .filter(|n| floor.is_none_or(|f| f.admits(n)))?;
        tracing::info!(
            "starting from the last netmap the controller sent (epoch {})",
            stored.content().epoch
        );
        return Some(stored);
    };
    let fallback = |why: String, stored: Option<Netmap>| match stored {
        Some(n) if floor.is_none_or(|f| f.admits(&n)) => {
            tracing::warn!(
                "{why}; running from the last good netmap (epoch {})",
                n.content().epoch
            );
            Some(n)
        }
        Some(n) => {
            tracing::warn!(
                "{why}; the last good netmap (epoch {}) is older than the epoch floor; \
                     running from the config's peer list",
                n.content().epoch
            );
            None
        }
        None => {
            tracing::warn!("{why}; running from the config's peer list");
            None
        }
    };
    match config::read_netmap(path) {
        Ok(candidate) => {
            match config::accept(&candidate, config, stored.as_ref(), floor, now_unix()) {
                Ok(new) => {
                    if new && let Some(state) = state {
                        store("netmap", state.save_netmap(&candidate));
                    }
                    Some(candidate)
                }
                Err(e) => fallback(format!("{}: refused: {e}", path.display()), stored),
            }
        }
        Err(e) => fallback(format!("{e:#}"), stored),
    }
}

/// The spec from the netmap when there is one, else from the config's peer list, with its
/// endpoint names looked up now (waiting [`resolve::DEADLINE`] at most); `quiet` leaves out the
/// warnings about endpoints that did not resolve.
fn spec_of(
    options: &Options,
    config: &AgentConfig,
    netmap: Option<&Netmap>,
    own_key: &[u8; 32],
    quiet: bool,
) -> (MeshSpec, Resolved) {
    let content = netmap.map(Netmap::content);
    let resolved = Resolved::lookup(config::endpoints(config, content), resolve::DEADLINE);
    let (spec, warnings) = match content {
        Some(n) => config::netmap_spec(config, n, own_key, &resolved),
        None => config::spec(config, &resolved),
    };
    if !quiet {
        for w in &warnings {
            tracing::warn!("{}: {w}", options.config.display());
        }
    }
    (spec, resolved)
}

/// Descriptive facts for status output, refreshed on reload.
pub struct Info {
    pub instance: String,
    pub machine: String,
    pub interface: String,
    pub listen_port: u16,
    /// Conditions an operator should see in `wiremesh status`, by topic.
    pub warnings: BTreeMap<&'static str, String>,
    /// The controllers the control thread talks to, in the config's order.
    pub controllers: Vec<ControllerState>,
    /// This machine's LAN addresses, which the control thread reports as candidates.
    pub lan: Vec<IpAddr>,
}

impl Info {
    fn of(config: &AgentConfig) -> Info {
        Info {
            instance: config.instance.clone(),
            machine: config.machine.clone(),
            interface: config.interface.clone(),
            listen_port: config.listen_port,
            warnings: BTreeMap::new(),
            controllers: control::controllers(config)
                .into_iter()
                .map(|c| ControllerState {
                    name: c.name,
                    endpoint: c.endpoint,
                    connected: false,
                    last_error: None,
                })
                .collect(),
            lan: Vec::new(),
        }
    }
}

/// The state directory without `--state-dir`, one per interface like other daemons keep theirs.
fn default_state_dir(interface: &str) -> PathBuf {
    Path::new(DEFAULT_STATE_ROOT).join(interface)
}

fn log_report(report: &ApplyReport) {
    for name in &report.added {
        tracing::info!(member = %name, "member added");
    }
    for name in &report.removed {
        tracing::info!(member = %name, "member removed");
    }
    for name in &report.updated {
        tracing::info!(member = %name, "member updated");
    }
    for name in &report.rekeyed {
        tracing::info!(member = %name, "member session rebuilt (persistent keepalive changed)");
    }
    for warning in &report.warnings {
        tracing::warn!("{warning}");
    }
}

/// Reads the config; when it cannot be used, falls back to the last good one in the state dir.
fn load_config(options: &Options, state: Option<&StateDir>) -> Result<(String, AgentConfig)> {
    match config::read(&options.config) {
        Ok(loaded) => Ok(loaded),
        Err(e) => match state.map(StateDir::load_config) {
            Some(Ok(last)) => {
                tracing::warn!("{e:#}; starting from the last good config in the state directory");
                Ok(last)
            }
            _ => Err(e),
        },
    }
}

/// Blocks the signals the main thread waits for, in this thread and every thread it spawns.
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local, zero-initialised set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&raw mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut());
        set
    }
}

/// Waits for one of the blocked signals. With a valid set, sigwaitinfo fails only with EINTR (a
/// signal outside the set, e.g. SIGCONT after SIGSTOP), so it is simply asked again.
fn wait_signal(set: &libc::sigset_t) -> libc::c_int {
    loop {
        // SAFETY: valid set; no siginfo requested.
        let sig = unsafe { libc::sigwaitinfo(set, std::ptr::null_mut()) };
        if sig > 0 {
            return sig;
        }
    }
}

/// Runs every member's WireGuard timers each [`TICK`] until the stop flag is set (the thread is
/// unparked then, so it ends without waiting out the tick). The mesh is read-locked only while
/// ticking, so a reload's write lock waits at most one tick.
fn timer_loop(shared: &Shared, punches: AsyncSender<String>) {
    let mut out = vec![0u8; TICK_OUT_LEN];
    let mut backlog = Backlog::default();
    let mut next = Instant::now();
    let mut next_scan = next;
    let mut lan = None;
    while !shared.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now < next {
            std::thread::park_timeout(next - now);
            continue;
        }
        next = now + TICK;
        if now >= next_scan {
            next_scan = now + LAN_SCAN;
            scan_lan(shared, &mut lan, now);
        }
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let punch = shared
            .mesh()
            .tick(now, unix_ms, &mut out, &mut |packet, to| {
                if let Err(e) = backlog.send(&shared.udp, packet, to, None) {
                    tracing::debug!("timer packet to {to} not sent: {e}");
                }
            });
        for name in punch {
            // Nobody listens without a controller, and while it is unreachable the queue
            // fills up: requests beyond it are dropped (a punch is only useful now).
            let _ = punches.try_send(name);
        }
        backlog.drain(&shared.udp, &mut |e| {
            tracing::debug!("timer packet not sent: {e}");
        });
    }
}

/// Looks at the interface addresses; when they changed since the last look, this machine moved
/// (or its LAN did): the mesh looks for every path again.
fn scan_lan(shared: &Shared, last: &mut Option<Vec<IpAddr>>, now: Instant) {
    let interface = shared.info().interface.clone();
    let found = match interfaces::lan_addresses(&interface) {
        Ok(found) => found,
        Err(e) => {
            tracing::debug!("cannot list the interface addresses: {e}");
            return;
        }
    };
    if last.as_ref() == Some(&found) {
        return;
    }
    if last.is_some() {
        tracing::info!(addresses = ?found, "interface addresses changed; looking for paths again");
        shared.mesh().network_changed(now);
    }
    shared.info().lan = found.clone();
    *last = Some(found);
}

/// The TUN device with offloads, addresses and MTU; falls back to no offload where the kernel
/// refuses it.
fn create_tun(config: &AgentConfig, spec: &MeshSpec) -> Result<tun_rs::SyncDevice> {
    let build = |offload: bool| {
        let mut builder = tun_rs::DeviceBuilder::new()
            .name(&config.interface)
            .mtu(config.mtu as u16);
        for net in &spec.addresses {
            builder = match net.addr() {
                IpAddr::V4(a) => builder.ipv4(a, net.prefix_len(), None),
                IpAddr::V6(a) => builder.ipv6(a, net.prefix_len()),
            };
        }
        builder
            .with(|b| {
                b.offload(offload);
            })
            .build_sync()
    };
    let tun = match build(true) {
        Ok(tun) => tun,
        Err(e) => {
            tracing::warn!("TUN with offloads failed ({e}); trying without");
            build(false)
                .with_context(|| format!("cannot create TUN device '{}'", config.interface))?
        }
    };
    tun.set_nonblocking(true)
        .context("cannot make the TUN device non-blocking")?;
    tracing::info!(
        interface = %config.interface,
        tcp_gso = tun.tcp_gso(),
        udp_gso = tun.udp_gso(),
        "TUN device up"
    );
    Ok(tun)
}

/// Routes the TUN needs beyond those the kernel adds with each address.
fn wanted_routes(spec: &MeshSpec) -> Vec<IpNet> {
    let connected: Vec<IpNet> = spec.addresses.iter().map(IpNet::trunc).collect();
    spec.tun_routes()
        .into_iter()
        .filter(|net| !connected.contains(&net.trunc()))
        .collect()
}

/// Routes into the TUN that this agent added (and must remove).
struct Routes {
    if_index: u32,
    added: Vec<IpNet>,
}

impl Routes {
    fn sync(&mut self, wanted: &[IpNet]) {
        self.added.retain(|net| {
            if wanted.contains(net) {
                return true;
            }
            if let Err(e) = netlink::remove_route(net, self.if_index) {
                tracing::warn!("cannot remove route {net}: {e}");
            }
            false
        });
        for net in wanted {
            if self.added.contains(net) {
                continue;
            }
            match netlink::add_route(net, self.if_index) {
                Ok(true) => self.added.push(*net),
                Ok(false) => {}
                Err(e) => tracing::warn!("cannot add route {net}: {e}"),
            }
        }
    }
}

/// Applies addresses that changed in a reload to the TUN device.
fn sync_addresses(tun: &tun_rs::SyncDevice, old: &[IpNet], new: &[IpNet]) {
    for net in old.iter().filter(|n| !new.contains(n)) {
        if let Err(e) = tun.remove_address(net.addr()) {
            tracing::warn!("cannot remove address {net}: {e}");
        }
    }
    for net in new.iter().filter(|n| !old.contains(n)) {
        let result = match net.addr() {
            IpAddr::V4(a) => tun.add_address_v4(a, net.prefix_len()),
            IpAddr::V6(a) => tun.add_address_v6(a, net.prefix_len()),
        };
        if let Err(e) = result {
            tracing::warn!("cannot add address {net}: {e}");
        }
    }
}

/// Applies an MTU that changed in a reload to the TUN device. The data path needs no change: it
/// splits and encrypts whatever segment size the kernel hands it, and its receive buffers hold
/// any datagram.
fn sync_mtu(tun: &tun_rs::SyncDevice, mtu: u32) {
    let Ok(mtu) = u16::try_from(mtu) else {
        tracing::warn!("MTU {mtu} is out of range; keeping the current one");
        return;
    };
    match tun.mtu() {
        Ok(current) if current == mtu => {}
        Ok(current) => match tun.set_mtu(mtu) {
            Ok(()) => tracing::info!(from = current, to = mtu, "MTU changed"),
            Err(e) => tracing::warn!("cannot change the MTU from {current} to {mtu}: {e}"),
        },
        Err(e) => tracing::warn!("cannot read the MTU of the TUN device: {e}"),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The state directory is a cache for starts without a usable config or controller: a full or
/// broken disk must not stop (or half-apply) the mesh that runs, so a failed write only warns.
fn store(what: &str, result: Result<()>) {
    if let Err(e) = result {
        tracing::warn!("cannot store the {what} in the state directory: {e:#}");
    }
}

/// What [`Info::warnings`] should say of the epoch floor once it is raised to `netmap`: why it
/// may be behind, or nothing. Call with no lock held: a save syncs to disk.
fn raise_floor(
    floor: &mut EpochFloor,
    network: &NetworkPublicKey,
    netmap: &Netmap,
) -> Option<String> {
    match floor.raise(network, netmap) {
        Ok(()) => floor.stale(network),
        Err(e) => {
            tracing::warn!("cannot store the epoch floor in the state directory: {e:#}");
            Some(format!(
                "netmap epoch {} could not be stored as the epoch floor ({e:#}); it is noted for \
                 the next start, unless that note could not be written either",
                netmap.content().epoch
            ))
        }
    }
}

/// Sets or clears one of [`Info::warnings`].
fn set_warning(
    warnings: &mut BTreeMap<&'static str, String>,
    topic: &'static str,
    text: Option<String>,
) {
    match text {
        Some(text) => warnings.insert(topic, text),
        None => warnings.remove(topic),
    };
}

/// Of the netmaps a controller sent while the reload thread was busy, the newest by epoch (two
/// controllers may each have sent one); one that does not decode only when nothing else did.
fn newer(newest: Option<Result<Netmap>>, bytes: &[u8]) -> Option<Result<Netmap>> {
    let decoded = Netmap::decode(bytes).map_err(|e| anyhow!("not a netmap: {e}"));
    Some(match (newest, decoded) {
        (Some(Ok(old)), Ok(new)) if old.content().epoch > new.content().epoch => Ok(old),
        (Some(Ok(old)), Err(_)) => Ok(old),
        (_, decoded) => decoded,
    })
}

/// What reloads need, owned by the reload thread.
struct Reloader {
    options: Options,
    state: Option<StateDir>,
    floor: Option<EpochFloor>,
    /// Shared with the main thread, which removes the routes at shutdown. Held while a reload
    /// applies its changes, never while it resolves names.
    routes: Arc<Mutex<Routes>>,
    netmap: Option<Netmap>,
    /// The config in use: names are looked up again from it, not from the file, whose changes
    /// wait for a SIGHUP.
    config: AgentConfig,
    /// What the endpoint names in use resolved to.
    resolved: Resolved,
}

impl Reloader {
    /// Serves requests until the main thread hangs up or the agent stops. Requests that arrive
    /// during a reload are merged: one more reload, which sees the files as they are then, and
    /// the newest netmap. Between requests, endpoint names are looked up again when due.
    fn serve(mut self, shared: &Shared, requests: Receiver<Request>) {
        loop {
            let request = match self.resolved.next_lookup() {
                Some(due) => requests.recv_timeout(due),
                None => requests.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            if shared.stop.load(Ordering::Relaxed) {
                return;
            }
            match request {
                Ok(first) => {
                    let (mut reload, mut newest) = (false, None);
                    for request in std::iter::once(first).chain(requests.try_iter()) {
                        match request {
                            Request::Reload => reload = true,
                            Request::Netmap(bytes) => newest = newer(newest, &bytes),
                        }
                    }
                    if let Some(candidate) = newest {
                        self.take_netmap(shared, candidate);
                    }
                    if reload && let Err(e) = self.reload(shared) {
                        tracing::error!("reload failed, keeping the running configuration: {e:#}");
                    }
                }
                Err(RecvTimeoutError::Timeout) => self.look_up_again(shared),
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Looks the endpoint names of the config and netmap in use up again, and applies the
    /// members whose addresses changed (a name that now resolves, or resolves elsewhere).
    fn look_up_again(&mut self, shared: &Shared) {
        let own_key = shared.mesh().public_key();
        let (spec, resolved) = spec_of(
            &self.options,
            &self.config,
            self.netmap.as_ref(),
            &own_key,
            true,
        );
        if resolved.same_as(&self.resolved) {
            return;
        }
        // Held like a reload does, so a shutdown that removes the routes never races an apply.
        let _routes = lock(&self.routes);
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        tracing::info!("endpoint names resolve differently now");
        let report = shared.mesh_mut().apply(&spec, &mut OsIndexSource);
        log_report(&report);
        self.resolved = resolved;
    }

    /// A netmap from a controller: applied when it verifies under the config's network key and
    /// is newer than the one in use and the epoch floor; otherwise the netmap in use stays.
    fn take_netmap(&mut self, shared: &Shared, candidate: Result<Netmap>) {
        let floor = self
            .floor
            .as_ref()
            .and_then(|f| f.get(&self.config.network_public_key));
        let candidate = candidate.and_then(|c| {
            config::accept(&c, &self.config, self.netmap.as_ref(), floor, now_unix())
                .map(|new| new.then_some(c))
                .map_err(|e| anyhow!("refused: {e}"))
        });
        match candidate {
            Ok(Some(netmap)) => {
                let config = self.config.clone();
                if let Err(e) = self.adopt(shared, config, None, Some(netmap), None) {
                    tracing::error!("cannot apply the controller's netmap: {e:#}");
                }
            }
            Ok(None) => {}
            Err(e) => {
                // Connected but refusing what it sends: the operator must see it in the status.
                let warning = format!("the controller's netmap: {e:#}; keeping the netmap in use");
                tracing::warn!("{warning}");
                shared.info().warnings.insert(NETMAP_WARNING, warning);
            }
        }
    }

    /// SIGHUP: re-read the config (and the netmap file) and apply the difference.
    fn reload(&mut self, shared: &Shared) -> Result<()> {
        let options = &self.options;
        let (text, config) = config::read(&options.config)?;
        // The netmap in use is trusted only while the config pins the key it is signed with.
        let distrusted = self.netmap.as_ref().and_then(|n| {
            n.verify(&config.network_public_key, None, 0)
                .err()
                .map(|why| (n.content().epoch, why.to_string()))
        });
        let current = self.netmap.as_ref().filter(|_| distrusted.is_none());
        let floor = self
            .floor
            .as_ref()
            .and_then(|f| f.get(&config.network_public_key));
        let mut new_netmap = None;
        if let Some(path) = &options.netmap {
            let candidate = config::read_netmap(path).and_then(|c| {
                config::accept(&c, &config, current, floor, now_unix())
                    .map(|new| (c, new))
                    .map_err(|e| anyhow!("{}: refused: {e}", path.display()))
            });
            match candidate {
                Ok((c, true)) => new_netmap = Some(c),
                Ok((_, false)) => {}
                Err(e) => tracing::warn!("{e:#}; keeping the netmap in use"),
            }
        }
        self.adopt(shared, config, Some(text), new_netmap, distrusted)?;
        tracing::info!("reloaded {}", self.options.config.display());
        Ok(())
    }

    /// Makes `config` with `new_netmap` (or the netmap in use, unless `distrusted` names why it
    /// was dropped) the running state: stores the netmap and raises the epoch floor, then
    /// applies MTU, addresses, routes and members. `text` is a config read from the file, kept
    /// as the last good one. Nothing is applied or stored once the agent is stopping.
    fn adopt(
        &mut self,
        shared: &Shared,
        config: AgentConfig,
        text: Option<String>,
        new_netmap: Option<Netmap>,
        distrusted: Option<(u64, String)>,
    ) -> Result<()> {
        let current = self.netmap.as_ref().filter(|_| distrusted.is_none());
        let own_key = shared.mesh().public_key();
        // Endpoint names are resolved here, which may take seconds.
        let (spec, resolved) = spec_of(
            &self.options,
            &config,
            new_netmap.as_ref().or(current),
            &own_key,
            false,
        );
        let mut routes = lock(&self.routes);
        if shared.stop.load(Ordering::Relaxed) {
            tracing::info!("shutting down: the change is not applied");
            return Ok(());
        }
        if let Some((epoch, why)) = distrusted {
            let instead = match &new_netmap {
                Some(c) => format!("netmap epoch {}", c.content().epoch),
                None => "the config's peer list".to_string(),
            };
            let warning = format!(
                "the netmap of epoch {epoch} was dropped: the config now pins network key {} and \
                 the netmap is refused under it ({why}); running from {instead}",
                config.network_public_key
            );
            tracing::warn!("{warning}");
            shared.info().warnings.insert(NETMAP_WARNING, warning);
            self.netmap = None;
        }
        if let Some(c) = new_netmap {
            tracing::info!(epoch = c.content().epoch, "new netmap");
            if let Some(state) = &self.state {
                store("netmap", state.save_netmap(&c));
            }
            if let Some(floor) = &mut self.floor {
                let why = raise_floor(floor, &config.network_public_key, &c);
                set_warning(&mut shared.info().warnings, FLOOR_WARNING, why);
            }
            shared.info().warnings.remove(NETMAP_WARNING);
            self.netmap = Some(c);
        }
        {
            let info = shared.info();
            if info.interface != config.interface || info.listen_port != config.listen_port {
                tracing::warn!(
                    "interface name and listen port changes take effect only after a restart"
                );
            }
            if control::controllers(&config) != control::controllers(&self.config) {
                tracing::warn!("a change of controllers takes effect only after a restart");
            }
        }
        let old_addresses = shared.mesh().spec().addresses.clone();
        sync_mtu(&shared.tun, config.mtu);
        sync_addresses(&shared.tun, &old_addresses, &spec.addresses);
        routes.sync(&wanted_routes(&spec));
        let report = shared.mesh_mut().apply(&spec, &mut OsIndexSource);
        log_report(&report);
        {
            let mut info = shared.info();
            info.instance = config.instance.clone();
            info.machine = config.machine.clone();
        }
        if let Some(text) = text
            && let Some(state) = self
                .state
                .as_ref()
                .filter(|_| self.options.state_dir.is_some())
        {
            store("config", state.save_config(&text));
        }
        self.config = config;
        self.resolved = resolved;
        Ok(())
    }
}

/// Runs the agent until SIGTERM/SIGINT.
pub fn run(options: Options) -> Result<()> {
    let signals = block_signals();
    let identity = Identity::load(&options.identity).map_err(|e| anyhow!("{e}"))?;
    if let Some(warning) = wiremesh_core::keys::permission_warning(&options.identity) {
        tracing::warn!("{warning}");
    }
    let explicit = options
        .state_dir
        .as_deref()
        .map(StateDir::open)
        .transpose()?;
    let (text, config) = load_config(&options, explicit.as_ref())?;
    let state = match explicit {
        Some(state) => Some(state),
        // A directory nobody asked for is no reason not to start.
        None => match StateDir::open(&default_state_dir(&config.interface)) {
            Ok(state) => Some(state),
            Err(e) => {
                tracing::warn!(
                    "{e:#}; running without one: the epoch floor will not survive a restart"
                );
                None
            }
        },
    };
    let network = config.network_public_key;
    let mut warnings = BTreeMap::new();
    let mut floor = state.as_ref().map(|s| {
        let (floor, problems) = EpochFloor::open(s.path());
        for problem in problems {
            tracing::warn!("{problem}");
        }
        if let Some(why) = floor.stale(&network) {
            tracing::warn!("{why}");
            warnings.insert(FLOOR_WARNING, why);
        }
        floor
    });
    let netmap = initial_netmap(
        &options,
        &config,
        state.as_ref(),
        floor.as_ref().and_then(|f| f.get(&network)),
    );
    if let (Some(floor), Some(netmap)) = (&mut floor, &netmap) {
        let why = raise_floor(floor, &network, netmap);
        set_warning(&mut warnings, FLOOR_WARNING, why);
    }
    let own_key = *identity.wireguard_public_key().as_bytes();
    let (spec, resolved) = spec_of(&options, &config, netmap.as_ref(), &own_key, false);

    let tun = create_tun(&config, &spec)?;
    let mut routes = Routes {
        if_index: tun
            .if_index()
            .context("cannot read the TUN interface index")?,
        added: Vec::new(),
    };
    routes.sync(&wanted_routes(&spec));
    let listen = SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), config.listen_port);
    let udp = wiremesh_udp::Udp::bind(listen, UDP_SEND_WAIT)
        .with_context(|| format!("cannot bind UDP port {}", config.listen_port))?;
    tracing::info!(
        port = udp.local_port().unwrap_or(config.listen_port),
        gso_segments = udp.max_segments(config.mtu as usize + 32),
        gro_segments = udp.gro_segments(),
        "UDP socket bound"
    );
    let (mut mesh, report) = Mesh::new(
        *identity.wireguard_secret().as_bytes(),
        &spec,
        &mut OsIndexSource,
    );
    // The WireGuard key lives in the mesh from here on. The identity's copies are wiped now, not
    // at exit, unless a controller is pinned: the control thread proves the node key with it,
    // and the mesh signs its probes to the controllers' relays with it.
    let controllers = control::controllers(&config);
    if !controllers.is_empty() {
        mesh.enable_probes(identity.node_secret().clone());
    }
    let control = (!controllers.is_empty()).then(|| control::Control {
        instance: config.instance.clone(),
        name: config.machine.clone(),
        identity,
        controllers,
    });
    log_report(&report);
    // The last good config is read back only from `--state-dir`: the default directory is named
    // after the config's interface, so it cannot be found when the config is what is missing.
    if let Some(state) = state.as_ref().filter(|_| options.state_dir.is_some()) {
        store("config", state.save_config(&text));
    }

    let shared = Arc::new(Shared {
        mesh: RwLock::new(mesh),
        udp,
        tun,
        stop: AtomicBool::new(false),
        mtu: config.mtu as usize,
        info: Mutex::new(Info {
            warnings,
            ..Info::of(&config)
        }),
    });
    let socket_path = options
        .status_socket
        .clone()
        .unwrap_or_else(|| wiremesh_proto::status::default_socket_path(&config.interface));
    let status = status_server::StatusServer::bind(&socket_path)?;

    let routes = Arc::new(Mutex::new(routes));
    let interface = config.interface.clone();
    let mut threads = Vec::new();
    // Unbounded: the reload thread merges whatever queued up while it was busy, and the
    // controller sends a netmap only when something changed.
    let (request_reload, requests) = mpsc::channel::<Request>();
    let (punch, punches) = tokio::sync::mpsc::channel(PUNCH_QUEUE);
    let started = start_threads(&shared, status, punch, &mut threads).and_then(|()| {
        let reloader = Reloader {
            options,
            state,
            floor,
            routes: routes.clone(),
            netmap,
            config,
            resolved,
        };
        // Never joined: at shutdown it may be waiting for a name server (see `shut_down`).
        spawn(&shared, "wm-reload", move |shared| {
            reloader.serve(shared, requests)
        })?;
        if let Some(control) = control {
            let netmaps = request_reload.clone();
            threads.push(spawn(&shared, "wm-control", move |shared| {
                control::serve(control, shared, netmaps, punches)
            })?);
        }
        Ok(())
    });
    if let Err(e) = started {
        shut_down(&shared, threads, &routes, &socket_path);
        return Err(e);
    }

    if let Err(e) = notify::notify("READY=1") {
        tracing::warn!("cannot notify systemd: {e}");
    }
    tracing::info!(
        interface = %interface,
        members = spec.members.len(),
        status_socket = %socket_path.display(),
        "ready"
    );

    let outcome = loop {
        match wait_signal(&signals) {
            libc::SIGHUP => {
                // Only a panic ends the reload thread early, perhaps halfway through applying a
                // change: stop with an error, so that the service manager starts the agent afresh.
                if request_reload.send(Request::Reload).is_err() {
                    break Err(anyhow!("the reload thread has ended unexpectedly"));
                }
            }
            sig => {
                tracing::info!(signal = sig, "shutting down");
                break Ok(());
            }
        }
    };

    let _ = notify::notify("STOPPING=1");
    drop(request_reload);
    shut_down(&shared, threads, &routes, &socket_path);
    tracing::info!("stopped");
    outcome
}

/// Starts a named thread that runs `f` on the shared state.
fn spawn(
    shared: &Arc<Shared>,
    name: &str,
    f: impl FnOnce(&Shared) + Send + 'static,
) -> Result<JoinHandle<()>> {
    let shared = shared.clone();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || f(&shared))
        .with_context(|| format!("cannot start thread {name}"))
}

/// Starts the hot, timer and status threads, pushing each onto `threads` as it starts, so that a
/// failure leaves the ones already running to be stopped.
fn start_threads(
    shared: &Arc<Shared>,
    status: status_server::StatusServer,
    punch: AsyncSender<String>,
    threads: &mut Vec<JoinHandle<()>>,
) -> Result<()> {
    threads.push(spawn(shared, "wm-tx", datapath::tx_loop)?);
    threads.push(spawn(shared, "wm-rx", datapath::rx_loop)?);
    threads.push(spawn(shared, "wm-timers", move |shared| {
        timer_loop(shared, punch)
    })?);
    threads.push(spawn(shared, "wm-status", move |shared| {
        status.serve(shared)
    })?);
    Ok(())
}

/// Stops and joins `threads`, then removes the routes and the status socket. A reload still
/// resolving names is not waited for: it holds `routes` only while applying, and once it sees
/// the stop flag it applies nothing. The TUN device, and with it the interface and its
/// addresses, goes when the last reference to `shared` is dropped, or at the latest when the
/// process exits.
fn shut_down(
    shared: &Shared,
    threads: Vec<JoinHandle<()>>,
    routes: &Mutex<Routes>,
    socket_path: &std::path::Path,
) {
    shared.stop.store(true, Ordering::Relaxed);
    for t in threads {
        // The timer thread parks between ticks.
        t.thread().unpark();
        let _ = t.join();
    }
    lock(routes).sync(&[]);
    if let Err(e) = std::fs::remove_file(socket_path) {
        tracing::warn!("cannot remove {}: {e}", socket_path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn of_the_netmaps_that_queued_up_the_newest_is_taken() {
        let key = wiremesh_core::keys::NetworkKey::generate().unwrap();
        let bytes = |epoch| floor::tests::netmap(&key, epoch).encode();
        let epoch = |n: &Option<Result<Netmap>>| match n {
            Some(Ok(n)) => Some(n.content().epoch),
            _ => None,
        };
        let newest = newer(None, &bytes(5));
        assert_eq!(epoch(&newest), Some(5));
        let newest = newer(newest, &bytes(4));
        assert_eq!(epoch(&newest), Some(5), "an older one arrived later");
        let newest = newer(newest, b"garbage");
        assert_eq!(
            epoch(&newest),
            Some(5),
            "a broken one does not replace a good one"
        );
        let newest = newer(newest, &bytes(6));
        assert_eq!(epoch(&newest), Some(6));
        assert!(matches!(newer(None, b"garbage"), Some(Err(_))));
    }

    #[test]
    fn the_state_directory_defaults_to_one_per_interface() {
        assert_eq!(
            default_state_dir("wm-my-vpn"),
            Path::new("/var/lib/wiremesh/wm-my-vpn")
        );
    }
}
