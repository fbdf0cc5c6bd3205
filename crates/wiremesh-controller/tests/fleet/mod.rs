//! Simulated agents against a real `wiremesh-controller run` child process, shared by the scale
//! benchmark (`benches/scale.rs`) and the crash test (`tests/crash.rs`): N generated identities,
//! the controller's files, starting and killing the daemon, and concurrent enrollments over
//! loopback QUIC that report every lease and netmap epoch they see. Every wait is bounded.

use std::collections::{BTreeMap, VecDeque};
use std::io::BufRead as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::Ipv4Net;
use tokio::sync::mpsc;
use wiremesh_core::config::{Addresses, Networks};
use wiremesh_core::controller_config::{ControllerFile, DynamicIp, MemberConfig};
use wiremesh_core::keys::{Identity, NetworkKey, NodePublicKey};
use wiremesh_core::messages::ErrorCode;
use wiremesh_core::netmap::Netmap;
use wiremesh_proto::admin::{self, Outcome, Request, SOCKET_FILE, Status};
use wiremesh_proto::client::{ControlError, ControlSettings, enroll};

pub const INSTANCE: &str = "scale-vpn";
/// The controller binary of this build (cargo builds it for the package's tests and benches).
const CONTROLLER: &str = env!("CARGO_BIN_EXE_wiremesh-controller");
/// Log lines of the daemon kept for error messages.
const LOG_LINES: usize = 40;

/// N agents `agent-00000`… (no static IPv4, so each leases from 100.64.0.0/16) and the
/// controller's configuration, network key and identity in a temporary directory.
pub struct Fleet {
    dir: tempfile::TempDir,
    pub agents: Vec<(String, Identity)>,
    controller: NodePublicKey,
}

impl Fleet {
    pub fn new(n: usize) -> Result<Self, String> {
        let random = |e: getrandom::Error| format!("no random numbers for the keys: {e}");
        let dir = tempfile::tempdir().map_err(|e| format!("no temporary directory: {e}"))?;
        let network = NetworkKey::generate().map_err(random)?;
        let controller = Identity::generate().map_err(random)?;
        let mut agents = Vec::with_capacity(n);
        let mut members = Vec::with_capacity(n);
        for i in 0..n {
            let name = format!("agent-{i:05}");
            let identity = Identity::generate().map_err(random)?;
            members.push(MemberConfig {
                name: name.clone(),
                wireguard_public_key: identity.wireguard_public_key(),
                node_public_key: identity.node_public_key(),
                addresses: Addresses {
                    ipv4: None,
                    ipv6: format!("fd12:3456:789a::{:x}", i + 2)
                        .parse()
                        .map_err(|e| format!("agent {i}: {e}"))?,
                },
                // Each member announces an underlay endpoint, as real ones do (RFC 2544 range).
                endpoints: vec![format!("198.18.{}.{}:51820", i / 250 % 256, i % 250 + 1)],
                routes: vec![],
                controller: false,
            });
            agents.push((name, identity));
        }
        let config = ControllerFile {
            version: 1,
            instance: INSTANCE.into(),
            machine: "controller".into(),
            endpoint: "127.0.0.1".into(),
            control_port: 51821,
            relay: Default::default(),
            network: Networks {
                ipv4: Some(
                    Ipv4Net::new(Ipv4Addr::new(100, 64, 0, 0), 16).map_err(|e| e.to_string())?,
                ),
                ipv6: "fd12:3456:789a::/48".parse().map_err(|e| format!("{e}"))?,
            },
            dynamic_ip: DynamicIp {
                enable: true,
                range: None,
            },
            network_public_key: network.public_key(),
            network_key_path: "network.key".into(),
            members,
        };
        let fleet = Fleet {
            dir,
            agents,
            controller: controller.node_public_key(),
        };
        fleet.write("controller.json", config.to_json().as_bytes())?;
        fleet.write("network.key", network.to_file_text().as_bytes())?;
        fleet.write("identity", controller.to_file_text().as_bytes())?;
        Ok(fleet)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.path(name);
        std::fs::write(&path, bytes)
            .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)))
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Starts `wiremesh-controller run` on 127.0.0.1 (a port of the kernel's choosing) with the
    /// state directory kept across restarts; returns once it listens.
    pub fn start(&self, bound: Duration) -> Result<Daemon, String> {
        let path = |name: &str| self.path(name).into_os_string();
        let mut child = Command::new(CONTROLLER)
            .arg("run")
            .arg("--config")
            .arg(path("controller.json"))
            .arg("--network-key")
            .arg(path("network.key"))
            .arg("--identity")
            .arg(path("identity"))
            .arg("--state-dir")
            .arg(path("state"))
            .args(["--listen", "127.0.0.1:0"])
            .args(["--relay-listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {CONTROLLER}: {e}"))?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (listening, addr) = std::sync::mpsc::channel();
        if let Some(stderr) = child.stderr.take() {
            let log = log.clone();
            // Reads the log to its end, so the daemon never blocks on a full pipe.
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(rest) = line.split("serving the control channel on UDP ").nth(1) {
                        let _ = listening.send(rest.split(' ').next().unwrap_or("").to_string());
                    }
                    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                    if log.len() == LOG_LINES {
                        log.pop_front();
                    }
                    log.push_back(line);
                }
            });
        }
        let mut daemon = Daemon {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
        };
        let text = addr.recv_timeout(bound).map_err(|_| {
            format!(
                "the controller did not listen within {bound:?}\n{}",
                daemon.log_tail()
            )
        })?;
        daemon.addr = text
            .parse()
            .map_err(|e| format!("the controller logged the address {text:?}: {e}"))?;
        Ok(daemon)
    }

    /// One request on the admin socket, as `wiremesh-controller status --json` and the other
    /// admin commands send it.
    pub async fn admin(&self, request: Request, bound: Duration) -> Result<Outcome, String> {
        let socket = self.path("state").join(SOCKET_FILE);
        let response =
            tokio::task::spawn_blocking(move || admin::request(&socket, &request, bound))
                .await
                .map_err(|e| e.to_string())??;
        match response.outcome {
            Outcome::Error { message } => Err(format!("the controller refused: {message}")),
            outcome => Ok(outcome),
        }
    }

    pub async fn status(&self, bound: Duration) -> Result<Status, String> {
        match self.admin(Request::Status, bound).await? {
            Outcome::Status(status) => Ok(status),
            other => Err(format!("not a status: {other:?}")),
        }
    }

    /// Starts one task per agent in `agents` that enrolls (each within `bound`) and, with
    /// `follow`, keeps reading pushed netmaps and, like a real agent, tries again after a
    /// connection that failed on the way (never after a refusal); all of it is reported to the
    /// returned [`Tracker`].
    pub fn enroll(
        &self,
        addr: SocketAddr,
        agents: std::ops::Range<usize>,
        follow: bool,
        bound: Duration,
    ) -> Result<(Swarm, Tracker), String> {
        // Agents share a few UDP sockets: one each would cost 1,000 file descriptors for nothing
        // the controller can tell apart.
        let sockets = (agents.len() / 64).clamp(1, 16);
        let endpoints = (0..sockets)
            .map(|_| quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("no client socket: {e}"))?;
        let (events, received) = mpsc::unbounded_channel();
        let mut tasks = Vec::with_capacity(agents.len());
        for agent in agents.clone() {
            let (name, identity) = &self.agents[agent];
            let settings = ControlSettings {
                instance: INSTANCE.into(),
                name: name.clone(),
                identity: identity.clone(),
                controller: self.controller,
                join: None,
                last_epoch: None,
            };
            let endpoint = endpoints[agent % sockets].clone();
            let events = events.clone();
            tasks.push(tokio::spawn(async move {
                run_agent(agent, endpoint, addr, settings, follow, bound, events).await;
            }));
        }
        let tracker = Tracker {
            events: received,
            size: agents.len(),
            leases: BTreeMap::new(),
            epochs: BTreeMap::new(),
            netmap_bytes: BTreeMap::new(),
            failures: Vec::new(),
            retries: 0,
        };
        Ok((Swarm { endpoints, tasks }, tracker))
    }
}

async fn run_agent(
    agent: usize,
    endpoint: quinn::Endpoint,
    addr: SocketAddr,
    settings: ControlSettings,
    follow: bool,
    bound: Duration,
    events: mpsc::UnboundedSender<Event>,
) {
    let start = tokio::time::Instant::now();
    let mut enrolled = loop {
        match enroll(&endpoint, addr, &settings, bound).await {
            Ok(enrolled) => break enrolled,
            // Everything but a refusal of this agent: a connection cut off, a handshake or an
            // enrollment that the loaded controller did not finish within its 10 s.
            Err(e)
                if follow
                    && start.elapsed() < bound
                    && !matches!(&e, ControlError::Refused(_))
                    && !matches!(&e, ControlError::Controller { code, .. } if *code != ErrorCode::TIMEOUT) =>
            {
                let _ = events.send(Event::Retried(agent, e.to_string()));
                // The agent's first backoff step, spread by the agent's number.
                let wait = 500 + (agent % 250) as u64;
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
            Err(e) => {
                let _ = events.send(Event::Failed(agent, format!("enrollment: {e}")));
                return;
            }
        }
    };
    let _ = events.send(Event::Enrolled(agent, enrolled.addresses.ipv4));
    let _ = events.send(netmap_event(agent, &enrolled.netmap));
    if !follow {
        return;
    }
    loop {
        match enrolled.session.next_netmap().await {
            Ok(netmap) => {
                let _ = events.send(netmap_event(agent, &netmap));
            }
            Err(e) => {
                let _ = events.send(Event::Failed(agent, format!("after enrolling: {e}")));
                return;
            }
        }
    }
}

/// The netmap's epoch. Agent 0 decodes every netmap in full, as a check that they are netmaps;
/// the others read only the epoch from the front of the body, so that the simulated agents,
/// who share the controller's CPU here, spend it on little beyond QUIC.
fn netmap_event(agent: usize, bytes: &[u8]) -> Event {
    let epoch = if agent == 0 {
        Netmap::decode(bytes)
            .map(|map| map.content().epoch)
            .map_err(|e| e.to_string())
    } else {
        epoch_of(bytes)
    };
    match epoch {
        Ok(epoch) => Event::Netmap(agent, epoch, bytes.len()),
        Err(e) => Event::Failed(agent, format!("a netmap that does not decode: {e}")),
    }
}

/// The wire format is the format version and the body (postcard); the body begins with the
/// network key (32 bytes), the instance name and the epoch.
fn epoch_of(bytes: &[u8]) -> Result<u64, String> {
    let (_version, rest) = postcard::take_from_bytes::<u32>(bytes).map_err(|e| e.to_string())?;
    let (body, _) = postcard::take_from_bytes::<&[u8]>(rest).map_err(|e| e.to_string())?;
    let ((_network, _instance, epoch), _) =
        postcard::take_from_bytes::<([u8; 32], &str, u64)>(body).map_err(|e| e.to_string())?;
    Ok(epoch)
}

/// What an agent task reports.
enum Event {
    Enrolled(usize, Option<Ipv4Addr>),
    /// The agent, the netmap's epoch and its size in bytes.
    Netmap(usize, u64, usize),
    Failed(usize, String),
    /// An enrollment that failed on the way and is tried again, and why.
    Retried(usize, String),
}

/// The agents' tasks and their sockets.
pub struct Swarm {
    endpoints: Vec<quinn::Endpoint>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Swarm {
    /// Closes every connection at once and waits (bounded) for the tasks to end.
    pub async fn stop(self, bound: Duration) {
        for endpoint in &self.endpoints {
            endpoint.close(quinn::VarInt::from_u32(0), b"done");
        }
        let all = async {
            for task in self.tasks {
                let _ = task.await;
            }
        };
        let _ = tokio::time::timeout(bound, all).await;
    }
}

/// What the agents have seen so far.
pub struct Tracker {
    events: mpsc::UnboundedReceiver<Event>,
    size: usize,
    /// The IPv4 address each enrolled agent was given.
    pub leases: BTreeMap<usize, Option<Ipv4Addr>>,
    /// The newest netmap epoch each agent holds.
    pub epochs: BTreeMap<usize, u64>,
    /// The size of each epoch's netmap.
    pub netmap_bytes: BTreeMap<u64, usize>,
    pub failures: Vec<(usize, String)>,
    /// Enrollments that failed on the way and were tried again.
    pub retries: usize,
}

impl Tracker {
    /// How many agents hold epoch `epoch` or a newer one.
    pub fn at_epoch(&self, epoch: u64) -> usize {
        self.epochs.values().filter(|e| **e >= epoch).count()
    }

    fn apply(&mut self, event: Event) {
        match event {
            Event::Enrolled(agent, ipv4) => {
                self.leases.insert(agent, ipv4);
            }
            Event::Netmap(agent, epoch, bytes) => {
                let newest = self.epochs.entry(agent).or_default();
                *newest = (*newest).max(epoch);
                self.netmap_bytes.insert(epoch, bytes);
            }
            Event::Failed(agent, e) => self.failures.push((agent, e)),
            Event::Retried(..) => self.retries += 1,
        }
    }

    /// Takes in what has been reported so far, without waiting.
    pub fn drain(&mut self) {
        while let Ok(event) = self.events.try_recv() {
            self.apply(event);
        }
    }

    /// Waits until `done` holds; an agent's failure or `bound` passing is an error naming `what`.
    pub async fn wait(
        &mut self,
        what: &str,
        bound: Duration,
        done: impl Fn(&Self) -> bool,
    ) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            self.drain();
            if let Some((agent, e)) = self.failures.first() {
                return Err(format!("{what}: agent {agent} failed: {e}"));
            }
            if done(self) {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => self.apply(event),
                Ok(None) => return Err(format!("{what}: every agent task ended")),
                Err(_) => {
                    return Err(format!(
                        "{what}: not within {bound:?} ({} of {} agents enrolled, epochs held: {:?})",
                        self.leases.len(),
                        self.size,
                        epoch_counts(&self.epochs)
                    ));
                }
            }
        }
    }
}

fn epoch_counts(epochs: &BTreeMap<usize, u64>) -> BTreeMap<u64, usize> {
    let mut counts = BTreeMap::new();
    for epoch in epochs.values() {
        *counts.entry(*epoch).or_default() += 1;
    }
    counts
}

/// A running controller; killed when dropped.
pub struct Daemon {
    child: Child,
    /// Where it serves the control channel.
    pub addr: SocketAddr,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl Daemon {
    /// SIGKILL: no shutdown code runs, as in a crash or power loss of the process.
    pub fn kill(&mut self) -> Result<(), String> {
        self.child
            .kill()
            .and_then(|()| self.child.wait())
            .map(drop)
            .map_err(|e| format!("cannot kill the controller: {e}"))
    }

    /// The peak and current resident set size in bytes (VmHWM and VmRSS).
    pub fn memory(&self) -> Result<(u64, u64), String> {
        let path = format!("/proc/{}/status", self.child.id());
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().strip_suffix(" kB"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|kib| kib * 1024)
                .ok_or_else(|| format!("{path}: no {name} in kB"))
        };
        Ok((field("VmHWM:")?, field("VmRSS:")?))
    }

    /// The CPU time (user and system) the controller has used so far.
    pub fn cpu(&self) -> Result<Duration, String> {
        cpu_time(&self.child.id().to_string())
    }

    /// The daemon's last log lines, for error messages.
    pub fn log_tail(&self) -> String {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.iter().map(|l| format!("  {l}\n")).collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// The CPU time (user plus system) of process `pid` (`self` for this one) from
/// `/proc/<pid>/stat`, whose clock ticks are USER_HZ, 100 on every Linux architecture.
pub fn cpu_time(pid: &str) -> Result<Duration, String> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // The command name in parentheses may hold spaces; the fields after it are numbers.
    let fields: Vec<&str> = text
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of the line: 11 and 12 counted from 0 after the name.
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => Ok(Duration::from_millis((user + system) * 10)),
        _ => Err(format!("{path}: no utime and stime")),
    }
}
