//! The demo's network, built with `wiremesh_lab::Topology`: one namespace per machine, the
//! controllers plugged into the public switch (underlay 198.18.0.0/24) and, unless NAT is off,
//! every other machine on a home LAN of its own (198.19.N.0/24) behind its own NAT router; the
//! agents running in them, and the teardown that removes all of it when the lab is dropped (on
//! success, on error, on Ctrl-C and on panic). What is left here is the demo's policy: names,
//! addresses, which daemons run where, what to print.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use wiremesh_lab::{Mapping, Namespace, Output, Topology};

use super::signal;

/// Every namespace of a demo is `wmdemo-<pid>-<role>`.
const PREFIX: &str = "wmdemo-";
/// The bound on each short command (ip, ping).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
/// How long an agent may take to report READY=1.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long what is left in an orphaned namespace has after SIGTERM.
const TEARDOWN_GRACE: Duration = Duration::from_secs(1);

/// One machine's namespace and underlay address.
pub struct Node {
    pub machine: String,
    pub ns: Namespace,
    /// Its address on the switch, or on its LAN when it is behind a NAT.
    pub underlay: Ipv4Addr,
    /// The public address of the NAT in front of it, if any.
    pub nat: Option<Ipv4Addr>,
}

/// A running daemon (an agent or a controller).
struct Agent {
    /// "the agent of laptop", "the controller of server".
    who: String,
    child: Child,
    log: PathBuf,
}

/// The namespaces and agents of one demo run.
pub struct Lab {
    agents: Vec<Agent>,
    pub nodes: Vec<Node>,
    underlay: Option<Topology>,
    dir: PathBuf,
}

impl Lab {
    /// Builds the switch and one namespace per machine; machine `i` gets 198.18.0.(i+1)/24 on the
    /// switch, or, when `nat` is set and it is not one of `public`, 198.19.(i+1).2/24 behind a NAT
    /// router of that mapping at 198.18.0.(101+i). A failure halfway tears down what was built
    /// (each namespace deletes itself when dropped).
    pub fn build(
        machines: &[String],
        public: &[String],
        nat: Option<Mapping>,
        dir: &Path,
    ) -> Result<Self, String> {
        if machines.len() > 250 {
            return Err(format!(
                "{} machines is more than the demo's /24 underlay holds",
                machines.len()
            ));
        }
        remove_orphans();
        let pid = std::process::id();
        let switch = Namespace::create(format!("{PREFIX}{pid}-switch"))?;
        let public4 = "198.18.0.0/24".parse().expect("a valid prefix");
        let mut underlay = Topology::new(switch, public4, None)?;
        let mut nodes = Vec::new();
        for (i, machine) in machines.iter().enumerate() {
            signal::check()?;
            let ns = Namespace::create(format!("{PREFIX}{pid}-{machine}"))?;
            let host = u8::try_from(i + 1).map_err(|_| "too many machines".to_owned())?;
            let (addr, nat) = match nat.filter(|_| !public.contains(machine)) {
                Some(mapping) => {
                    let router = Namespace::create(format!("{PREFIX}{pid}-{machine}-nat"))?;
                    let wan = Ipv4Addr::new(198, 18, 0, host.saturating_add(100));
                    let lan = format!("198.19.{host}.0/24")
                        .parse()
                        .map_err(|e| format!("LAN of {machine}: {e}"))?;
                    let id = underlay.add_nat(router, mapping, wan, lan)?;
                    (underlay.attach(&ns, id)?, Some(wan))
                }
                None => {
                    let addr = Ipv4Addr::new(198, 18, 0, host);
                    underlay.plug(&ns, addr, None)?;
                    (addr, None)
                }
            };
            nodes.push(Node {
                machine: machine.clone(),
                ns,
                underlay: addr,
                nat,
            });
        }
        Ok(Self {
            agents: Vec::new(),
            nodes,
            underlay: Some(underlay),
            dir: dir.to_owned(),
        })
    }

    pub fn node(&self, machine: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.machine == machine)
    }

    /// Starts `wiremesh-peer run` in the machine's namespace and waits until it sends READY=1 to
    /// its notify socket.
    pub fn start_agent(
        &mut self,
        peer_bin: &Path,
        machine: &str,
        config: &Path,
        identity: &Path,
        status_socket: &Path,
    ) -> Result<(), String> {
        let state = self.dir.join(machine).join("state");
        let mut cmd = Command::new(peer_bin);
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .arg("--identity")
            .arg(identity)
            .arg("--state-dir")
            .arg(state)
            .arg("--status-socket")
            .arg(status_socket);
        self.start(machine, "agent", cmd)
    }

    /// Starts `wiremesh-controller run` in `machine`'s namespace, its store in
    /// `<dir>/<machine>/controller`, and waits for its READY=1.
    pub fn start_controller(
        &mut self,
        controller_bin: &Path,
        machine: &str,
        config: &Path,
        network_key: &Path,
        identity: &Path,
    ) -> Result<PathBuf, String> {
        let state = self.dir.join(machine).join("controller");
        let mut cmd = Command::new(controller_bin);
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .arg("--network-key")
            .arg(network_key)
            .arg("--identity")
            .arg(identity)
            .arg("--state-dir")
            .arg(&state);
        self.start(machine, "controller", cmd)?;
        Ok(state)
    }

    /// Runs `cmd` in `machine`'s namespace as its `role` daemon (log in `<dir>/<machine>/<role>.log`)
    /// and waits until it tells systemd's protocol READY=1.
    fn start(&mut self, machine: &str, role: &str, cmd: Command) -> Result<(), String> {
        let program = cmd.get_program().to_owned();
        let mut inside = self
            .node(machine)
            .map(|n| n.ns.command(&program))
            .ok_or_else(|| format!("no namespace for machine {machine}"))?;
        let mdir = self.dir.join(machine);
        let notify_path = mdir.join(format!("{role}-notify.sock"));
        let notify = UnixDatagram::bind(&notify_path)
            .map_err(|e| format!("cannot bind {}: {e}", notify_path.display()))?;
        notify
            .set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        let log = mdir.join(format!("{role}.log"));
        let log_file =
            File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let log_err = log_file.try_clone().map_err(|e| e.to_string())?;
        let child = inside
            .args(cmd.get_args())
            .env("NOTIFY_SOCKET", &notify_path)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            // Its own process group: Ctrl-C reaches only the demo, which then stops daemons in order.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let who = format!("the {role} of {machine}");
        self.agents.push(Agent {
            who: who.clone(),
            child,
            log: log.clone(),
        });
        let agent = self.agents.last_mut().expect("just pushed");
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut buf = [0u8; 4096];
        loop {
            signal::check()?;
            if let Ok(n) = notify.recv(&mut buf)
                && String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == "READY=1")
            {
                return Ok(());
            }
            if let Ok(Some(status)) = agent.child.try_wait() {
                return Err(format!(
                    "{who} exited ({status}) before it was ready; its log:\n{}",
                    tail(&log)
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{who} did not report ready within {READY_TIMEOUT:?}; its log:\n{}",
                    tail(&log)
                ));
            }
        }
    }

    /// The daemons that have exited ("the agent of laptop"), with how and their log's tail.
    pub fn dead_agents(&mut self) -> Vec<(String, ExitStatus, String)> {
        let mut dead = Vec::new();
        for agent in &mut self.agents {
            if let Ok(Some(status)) = agent.child.try_wait() {
                dead.push((agent.who.clone(), status, tail(&agent.log)));
            }
        }
        dead
    }

    /// Runs a command inside a machine's namespace with a time bound (and Ctrl-C aborting it).
    pub fn exec(&self, machine: &str, argv: &[&str]) -> Result<Output, String> {
        let node = self
            .node(machine)
            .ok_or_else(|| format!("no namespace for machine {machine}"))?;
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| "an empty command line".to_owned())?;
        run(node.ns.command(program).args(args), COMMAND_TIMEOUT)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.agents.is_empty() && self.nodes.is_empty() && self.underlay.is_none() {
            return;
        }
        eprintln!("demo: tearing down");
        for agent in &mut self.agents {
            if let Ok(None) = agent.child.try_wait() {
                let pid = i32::try_from(agent.child.id()).unwrap_or(i32::MAX);
                // SAFETY: kill has no memory preconditions; the pid is our unreaped child.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for agent in &mut self.agents {
            loop {
                match agent.child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Ok(None) => {
                        eprintln!("demo: {} ignored SIGTERM; killing it", agent.who);
                        let _ = agent.child.kill();
                        let _ = agent.child.wait();
                        break;
                    }
                }
            }
        }
        for node in self.nodes.drain(..) {
            let name = node.ns.name().to_owned();
            if let Err(e) = node.ns.delete() {
                eprintln!("demo: {e}; remove it with `ip netns del {name}`");
            }
        }
        // The switch; its own drop reports what it could not delete.
        self.underlay = None;
        eprintln!("demo: removed every namespace and daemon");
    }
}

/// Runs `cmd` with a time bound (in its own process group, so Ctrl-C reaches only the demo); Ctrl-C
/// kills it too and makes the error "interrupted".
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<Output, String> {
    wiremesh_lab::run_bounded_until(cmd, timeout, signal::requested).map_err(
        |e| match signal::check() {
            Ok(()) => e,
            Err(interrupted) => interrupted,
        },
    )
}

/// The last lines of a log file.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Deletes namespaces of earlier demo runs whose process is gone (it was killed with SIGKILL).
fn remove_orphans() {
    for name in wiremesh_lab::orphaned_namespaces(PREFIX) {
        eprintln!("demo: removing {name}, left behind by an earlier run");
        if let Err(e) = wiremesh_lab::delete_namespace(&name, TEARDOWN_GRACE) {
            eprintln!("demo: {e}; remove it with `ip netns del {name}`");
        }
    }
}
