//! A mesh lab: one namespace per member, all plugged into the public switch of a
//! `wiremesh_lab::Topology` (the underlay, 198.18.0.0/24 and fd00:18::/64), each running a `wiremesh-peer` agent from an agent
//! configuration file (schema version 1, `wiremesh_core::config`). Extra namespaces (a stock
//! WireGuard peer, an attacker) can be plugged into the same switch.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use wiremesh_core::config::{Addresses, AgentConfig, Networks, PeerConfig};
use wiremesh_core::keys::{Identity, NetworkKey};
use wiremesh_proto::status::{self, MemberStatus, Status};

use crate::controller::RunningController;
use crate::daemon::{Daemon, notify_socket};
use crate::env::{project_binary, require_root, require_tools};
use crate::netns::{Netns, namespace};
use crate::planned::Planning;
use crate::wait::{wait_for, wait_until};
use wiremesh_lab::{Topology, run_bounded};

/// The UDP port every agent listens on.
pub const AGENT_PORT: u16 = 51820;
/// The tunnel interface name inside each member's namespace.
pub const TUN_NAME: &str = "wm0";
/// How long an agent may take from start to READY=1.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The underlay's public segment, where the members are.
const PUBLIC4: &str = "198.18.0.0/24";
const PUBLIC6: &str = "fd00:18::/64";
const OVERLAY4: &str = "100.77.0.0/16";
const OVERLAY6: &str = "fd77:77::/48";

/// One mesh member: its namespace, addresses, identity and (when started) its agent.
pub struct Member {
    // Declared first so it is dropped (stopped) before the namespace goes away.
    agent: Option<Daemon>,
    // Kept bound while the agent runs, so its later notifications (STOPPING=1) find a listener.
    notify: Option<UnixDatagram>,
    pub name: String,
    pub ns: Netns,
    pub underlay4: Ipv4Addr,
    pub underlay6: Ipv6Addr,
    pub identity: Identity,
    pub config: Option<AgentConfig>,
    /// Passed as `--netmap` when set.
    pub netmap: Option<PathBuf>,
    /// Start without `--state-dir`, so the agent uses its default directory.
    pub default_state_dir: bool,
    /// Start with `--join TICKET` and no `--config`: a machine outside the inventory.
    pub join: Option<String>,
    /// The overlay addresses the agent reported holding ([`Member::wait_for_ipv4`]): a leased
    /// IPv4 address, and both addresses of a machine that joined with a ticket.
    learned: Option<Addresses>,
    dir: PathBuf,
}

impl Member {
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("agent.json")
    }
    pub fn identity_path(&self) -> PathBuf {
        self.dir.join("identity")
    }
    pub fn status_socket(&self) -> PathBuf {
        self.dir.join("status.sock")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// The member's overlay IPv4 address: from its configuration, else the one its agent
    /// reported (a lease, see [`Member::wait_for_ipv4`]).
    pub fn overlay4(&self) -> Ipv4Addr {
        self.config
            .as_ref()
            .and_then(|c| c.addresses.ipv4)
            .or_else(|| self.learned.and_then(|a| a.ipv4))
            .unwrap_or_else(|| panic!("member {} has no overlay IPv4 address", self.name))
    }

    /// The member's overlay IPv6 address: from its configuration, else the one its agent reported.
    pub fn overlay6(&self) -> Ipv6Addr {
        match (&self.config, self.learned) {
            (Some(config), _) => config.addresses.ipv6,
            (None, Some(learned)) => learned.ipv6,
            (None, None) => panic!("member {} has no overlay IPv6 address yet", self.name),
        }
    }

    /// Waits (at most `timeout`) until the agent's status lists an IPv4 overlay address (a leased
    /// one, for a member without a static address) and remembers its addresses, so that
    /// [`Member::overlay4`] and [`Member::overlay6`] give them; returns the IPv4 address.
    pub fn wait_for_ipv4(&mut self, timeout: Duration) -> Ipv4Addr {
        let mut learned = None;
        let mut last = None;
        let waited = wait_until(
            &format!("agent {} to hold an IPv4 overlay address", self.name),
            timeout,
            || {
                let Ok(status) = status::query(&self.status_socket()) else {
                    return false;
                };
                let parsed: Vec<IpAddr> = status
                    .addresses
                    .iter()
                    .filter_map(|a| a.split('/').next()?.parse().ok())
                    .collect();
                last = Some(status.addresses);
                let v4 = parsed.iter().find_map(|a| match a {
                    IpAddr::V4(v4) => Some(*v4),
                    IpAddr::V6(_) => None,
                });
                let v6 = parsed.iter().find_map(|a| match a {
                    IpAddr::V6(v6) => Some(*v6),
                    IpAddr::V4(_) => None,
                });
                learned = v4.zip(v6);
                learned.is_some()
            },
        );
        if let Err(e) = waited {
            panic!("{e}; its addresses: {last:?}; log:\n{}", self.agent_log());
        }
        let (ipv4, ipv6) = learned.expect("the wait ended with both addresses");
        self.learned = Some(Addresses {
            ipv4: Some(ipv4),
            ipv6,
        });
        ipv4
    }

    /// Writes `config` as this member's agent configuration file.
    pub fn write_config(&mut self, config: AgentConfig) {
        std::fs::write(self.config_path(), config.to_json()).expect("the lab dir is writable");
        self.config = Some(config);
    }

    /// Starts the agent and waits (bounded) until it tells the notify socket READY=1.
    pub fn start(&mut self) {
        self.try_start().unwrap_or_else(|e| panic!("{e}"));
    }

    /// [`Member::start`], with `Err` (saying why, with the log) when the agent exits before it is
    /// ready or is not ready in time. An agent that exited stays recorded: [`Member::stop`] gives
    /// its exit status and [`Member::agent_log`] its log.
    pub fn try_start(&mut self) -> Result<(), String> {
        assert!(
            self.agent.is_none(),
            "agent {} is already running",
            self.name
        );
        let notify_path = self.dir.join("notify.sock");
        let notify = notify_socket(&notify_path);
        let peer_bin = project_binary("wiremesh-peer");
        let path = |p: PathBuf| p.to_string_lossy().into_owned();
        let mut argv = vec![path(peer_bin), "run".into()];
        match &self.join {
            // A machine outside the inventory: no config, the ticket says everything.
            Some(ticket) => argv.extend([
                "--join".into(),
                ticket.clone(),
                "--listen-port".into(),
                AGENT_PORT.to_string(),
                "--interface".into(),
                TUN_NAME.into(),
            ]),
            None => argv.extend(["--config".into(), path(self.config_path())]),
        }
        argv.extend([
            "--identity".into(),
            path(self.identity_path()),
            "--status-socket".into(),
            path(self.status_socket()),
        ]);
        if !self.default_state_dir {
            argv.extend(["--state-dir".into(), path(self.state_dir())]);
        }
        if let Some(netmap) = &self.netmap {
            argv.extend(["--netmap".into(), path(netmap.clone())]);
        }
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let notify_env = path(notify_path);
        let mut agent = self.ns.spawn(
            &format!("agent {}", self.name),
            &argv,
            &[
                ("NOTIFY_SOCKET", &notify_env),
                ("RUST_LOG", "info"),
                ("NO_COLOR", "1"),
            ],
            &self.dir.join("agent.log"),
        );
        let ready = agent.wait_ready(&notify, READY_TIMEOUT);
        self.agent = Some(agent);
        self.notify = Some(notify);
        ready
    }

    /// The agent's process id while one was started.
    pub fn agent_pid(&self) -> Option<i32> {
        self.agent.as_ref().map(Daemon::pid)
    }

    /// Stops the agent with SIGTERM (SIGKILL after a grace period); panics if it was not running.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut agent = self
            .agent
            .take()
            .unwrap_or_else(|| panic!("agent {} is not running", self.name));
        self.notify = None;
        agent.stop()
    }

    /// The agent's log so far (empty when it never ran).
    pub fn agent_log(&self) -> String {
        self.agent
            .as_ref()
            .map(Daemon::log_text)
            .unwrap_or_default()
    }

    /// Sends SIGHUP and waits (bounded) until the agent logs `marker` once more than before;
    /// returns what the agent logged meanwhile.
    pub fn reload(&mut self, marker: &str) -> String {
        let before = self.agent_log();
        let seen = before.matches(marker).count();
        self.signal_agent(libc::SIGHUP);
        wait_for(
            &format!("agent {} to log {marker:?} after SIGHUP", self.name),
            Duration::from_secs(10),
            || self.agent_log().matches(marker).count() > seen,
        );
        self.agent_log()
            .get(before.len()..)
            .unwrap_or_default()
            .to_owned()
    }

    /// Sends a signal to the running agent (SIGHUP: reload).
    pub fn signal_agent(&mut self, signal: i32) {
        self.agent
            .as_mut()
            .unwrap_or_else(|| panic!("agent {} is not running", self.name))
            .signal(signal);
    }

    /// True while the agent process runs.
    pub fn agent_running(&mut self) -> bool {
        self.agent.as_mut().is_some_and(|a| a.exited().is_none())
    }

    /// The agent's status, read from its status socket with the typed client that
    /// `wiremesh status` uses.
    pub fn status(&self) -> Status {
        status::query(&self.status_socket())
            .unwrap_or_else(|e| panic!("status of agent {}: {e}", self.name))
    }

    /// Asserts that this agent's session with `peer` is still the one `before` showed, and returns
    /// the entry now. Handshake times in the status are whole seconds derived from "time since", so
    /// the same session may show one second more or less; a session redone a few seconds later
    /// moves them by two or more.
    pub fn assert_same_session(&self, peer: &str, before: &MemberStatus) -> MemberStatus {
        let after = self.peer_status(peer);
        let same = matches!(
            (before.latest_handshake_unix, after.latest_handshake_unix),
            (Some(b), Some(a)) if a.abs_diff(b) <= 1
        );
        assert!(
            same,
            "{}: the session with {peer} was redone: {before:?} → {after:?}",
            self.name
        );
        after
    }

    /// Asserts that `gone` is no longer a member of this agent and cannot be reached at
    /// `gone_addr`, while `kept` still answers at `kept_addr`.
    pub fn assert_member_gone(&self, gone: &str, gone_addr: IpAddr, kept: &str, kept_addr: IpAddr) {
        let members = self.status().members;
        assert!(
            members.iter().all(|m| m.name != gone),
            "{gone} is still a member of {}: {members:?}",
            self.name
        );
        assert!(
            !self.ns.ping_once(gone_addr),
            "{} still reaches {gone}",
            self.name
        );
        assert!(
            self.ns.ping_once(kept_addr),
            "{} → {kept} broke when {gone} went",
            self.name
        );
    }

    /// The entry for member `peer` in this agent's status.
    pub fn peer_status(&self, peer: &str) -> MemberStatus {
        let status = self.status();
        status
            .members
            .iter()
            .find(|m| m.name == peer)
            .cloned()
            .unwrap_or_else(|| {
                panic!(
                    "no member {peer} in the status of {}: {status:?}",
                    self.name
                )
            })
    }

    /// `wiremesh status --json` against this member's agent, parsed.
    pub fn status_json(&self) -> serde_json::Value {
        let cli = project_binary("wiremesh");
        let out = run_bounded(
            std::process::Command::new(cli)
                .args(["status", "--json", "--socket"])
                .arg(self.status_socket()),
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.success(),
            "wiremesh status --json for {} failed ({}): {}",
            self.name,
            out.status,
            out.stderr
        );
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "wiremesh status --json for {} printed invalid JSON ({e}): {}",
                self.name, out.stdout
            )
        })
    }

    /// `wiremesh status` (human-readable) against this member's agent.
    pub fn status_text(&self) -> String {
        let cli = project_binary("wiremesh");
        let out = run_bounded(
            std::process::Command::new(cli)
                .args(["status", "--socket"])
                .arg(self.status_socket()),
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        format!("{}{}", out.stdout, out.stderr)
    }

    /// Moves the member's underlay IPv4 address to `new` (same /24), as a roaming laptop would.
    /// The old address goes first: deleting a primary address also deletes the secondaries of its
    /// subnet, so adding the new one first would leave none.
    pub fn move_underlay4(&mut self, new: Ipv4Addr) {
        let old = format!("{}/24", self.underlay4);
        self.ns.ip(&["addr", "del", &old, "dev", "eth0"]);
        self.ns
            .ip(&["addr", "add", &format!("{new}/24"), "dev", "eth0"]);
        self.underlay4 = new;
    }
}

/// The members and the underlay topology they are plugged into.
pub struct Lab {
    // Declared first so it is stopped before the members' namespaces go away.
    pub(crate) controller: Option<RunningController>,
    pub members: Vec<Member>,
    /// What [`Lab::planned`] and its siblings planned, so the inventory can be planned anew.
    pub(crate) planning: Option<Planning>,
    pub(crate) underlay: Topology,
    /// How many NAT routers [`Lab::add_nat`] has added.
    pub(crate) nats: u8,
    network_key: NetworkKey,
    dir: tempfile::TempDir,
}

/// Asserts that the reload whose log is `logged` made `change` ("member removed", "member added")
/// to `member` and touched nothing of `untouched`.
pub fn assert_reload_changed(logged: &str, change: &str, member: &str, untouched: &str) {
    assert!(
        logged.contains(&format!("{change} member={member}")),
        "no '{change}' for {member} in the log:\n{logged}"
    );
    assert!(
        !logged.contains(&format!("member={untouched}")),
        "the reload touched {untouched}:\n{logged}"
    );
}

impl Lab {
    /// Builds the underlay for `names`: member `i` gets 198.18.0.(11+i)/24 and fd00:18::(11+i)/64 on
    /// its `eth0`, plugged into the public switch of the lab's topology ([`Lab::topology`]). Every member gets a fresh
    /// identity written to its identity file. No agent configuration yet.
    pub fn underlay(names: &[&str]) -> Self {
        require_root();
        require_tools(&["ip", "ping"]);
        assert!(names.len() < 100, "at most 99 members");
        let dir = tempfile::Builder::new()
            .prefix("wiremesh-netns-")
            .tempdir()
            .expect("a temp dir can be made");
        let underlay = Topology::new(
            namespace("switch"),
            PUBLIC4.parse().expect("a valid prefix"),
            Some(PUBLIC6.parse().expect("a valid prefix")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let network_key = NetworkKey::generate().expect("the OS has randomness");
        let mut lab = Self {
            controller: None,
            members: Vec::new(),
            planning: None,
            underlay,
            nats: 0,
            network_key,
            dir,
        };
        for name in names {
            lab.add_machine(name);
        }
        lab
    }

    /// Adds machine `name` to the lab: a namespace plugged into the switch at 198.18.0.(11+i)/24
    /// and fd00:18::(11+i)/64 (`i` its index among the members), a fresh identity written to its
    /// identity file, and no agent configuration yet.
    pub fn add_machine(&mut self, name: &str) -> &mut Member {
        let i = self.members.len();
        let host = u8::try_from(11 + i).expect("fewer than 100 members");
        assert!(i < 99, "at most 99 members");
        let underlay4 = Ipv4Addr::new(198, 18, 0, host);
        let underlay6 = Ipv6Addr::new(0xfd00, 0x18, 0, 0, 0, 0, 0, u16::from(host));
        let ns = Netns::new(name);
        self.plug(&ns, underlay4, underlay6);
        let member_dir = self.dir.path().join(name);
        std::fs::create_dir_all(member_dir.join("state")).expect("the lab dir is writable");
        let identity = Identity::generate().expect("the OS has randomness");
        let member = Member {
            agent: None,
            notify: None,
            name: name.to_owned(),
            ns,
            underlay4,
            underlay6,
            identity,
            config: None,
            netmap: None,
            default_state_dir: false,
            join: None,
            learned: None,
            dir: member_dir,
        };
        write_secret(&member.identity_path(), &member.identity.to_file_text());
        self.members.push(member);
        self.members.last_mut().expect("just pushed")
    }

    /// [`Lab::underlay`] plus one agent configuration per member, written directly from the
    /// identities: member `i` is 100.77.0.(1+i) and fd77:77::(1+i), every other member is a peer
    /// with its underlay IPv4 endpoint and a persistent keepalive of 25 s.
    pub fn direct(names: &[&str]) -> Self {
        let mut lab = Self::underlay(names);
        let overlay: Vec<Addresses> = (0..names.len())
            .map(|i| {
                let host = u8::try_from(1 + i).expect("fewer than 100 members");
                Addresses {
                    ipv4: Some(Ipv4Addr::new(100, 77, 0, host)),
                    ipv6: Ipv6Addr::new(0xfd77, 0x77, 0, 0, 0, 0, 0, u16::from(host)),
                }
            })
            .collect();
        for i in 0..lab.members.len() {
            let peers = lab
                .members
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(j, m)| PeerConfig {
                    name: m.name.clone(),
                    wireguard_public_key: m.identity.wireguard_public_key(),
                    node_public_key: m.identity.node_public_key(),
                    addresses: overlay[j],
                    endpoints: vec![
                        SocketAddr::new(IpAddr::V4(m.underlay4), AGENT_PORT).to_string(),
                    ],
                    routes: vec![],
                    persistent_keepalive: Some(25),
                })
                .collect();
            let config = lab.config_for(&lab.members[i].name, overlay[i], peers);
            lab.members[i].write_config(config);
        }
        lab
    }

    /// An agent configuration for `machine` in the lab's overlay networks.
    fn config_for(
        &self,
        machine: &str,
        addresses: Addresses,
        peers: Vec<PeerConfig>,
    ) -> AgentConfig {
        AgentConfig {
            version: 1,
            instance: "lab".into(),
            machine: machine.into(),
            roles: vec!["peer".into()],
            settings: BTreeMap::from([("peer".into(), serde_json::json!({}))]),
            interface: TUN_NAME.into(),
            listen_port: AGENT_PORT,
            mtu: 1420,
            persistent_keepalive: Some(25),
            network: Networks {
                ipv4: Some(OVERLAY4.parse().expect("a valid prefix")),
                ipv6: OVERLAY6.parse().expect("a valid prefix"),
            },
            addresses,
            ip_ranges: vec![
                OVERLAY4.parse().expect("a valid prefix"),
                OVERLAY6.parse().expect("a valid prefix"),
            ],
            routes: vec![],
            peers,
            controllers: vec![],
            network_public_key: self.network_key.public_key(),
        }
    }

    /// A scratch directory removed with the lab.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Plugs `ns` into the switch: its `eth0` with the two addresses (/24 and /64).
    pub fn plug(&self, ns: &Netns, addr4: Ipv4Addr, addr6: Ipv6Addr) {
        self.underlay
            .plug(ns, addr4, Some(addr6))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// The underlay the members are plugged into, to add NAT routers and hosts behind them.
    pub fn topology(&mut self) -> &mut Topology {
        &mut self.underlay
    }

    pub fn member(&mut self, name: &str) -> &mut Member {
        self.members
            .iter_mut()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no member {name} in the lab"))
    }

    /// Starts every member's agent.
    pub fn start_all(&mut self) {
        for member in &mut self.members {
            member.start();
        }
    }

    /// Starts every member's agent and waits (10 s at most) until the first member pings the
    /// second over IPv4; returns the second's IPv4 overlay address.
    pub fn start_all_and_ping_second(&mut self) -> IpAddr {
        self.start_all();
        let (first, second) = (&self.members[0], &self.members[1]);
        let dst = IpAddr::V4(second.overlay4());
        first
            .ns
            .wait_ping(dst, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{} → {}: {e}", first.name, second.name));
        dst
    }

    /// Asserts that every ordered pair of members exchanges pings over IPv4 and IPv6, each within
    /// 10 s; the panic lists every pair that failed.
    pub fn assert_all_pairs_ping(&self) {
        let timeout = Duration::from_secs(10);
        let mut failures = Vec::new();
        for from in &self.members {
            for to in self.members.iter().filter(|m| m.name != from.name) {
                for dst in [IpAddr::V4(to.overlay4()), IpAddr::V6(to.overlay6())] {
                    if let Err(e) = from.ns.wait_ping(dst, timeout) {
                        failures.push(format!("{} → {} ({dst}): {e}", from.name, to.name));
                    }
                }
            }
        }
        assert!(
            failures.is_empty(),
            "pings failed:\n{}",
            failures.join("\n")
        );
    }
}

/// Writes a secret file with mode 0600.
fn write_secret(path: &Path, text: &str) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .expect("the lab dir is writable");
    file.write_all(text.as_bytes())
        .expect("the lab dir is writable");
}
