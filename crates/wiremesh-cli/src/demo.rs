//! `wiremesh demo`: brings up a real mesh on this machine in network namespaces, as root. It plans
//! an inventory (by default the bundled `examples/inventory.json`) with throwaway keys, one
//! namespace per machine, the controllers on a public switch and every other machine behind a NAT
//! of its own (`--nat`), the instance's `wiremesh-controller` in its machine's namespace and one
//! `wiremesh-peer` agent per namespace. Members without a static IPv4 address get theirs by lease
//! from the controller; members behind NAT find each other through it (hole punching, or its
//! relay behind symmetric NATs). It prints each agent's `wiremesh status`, pings every pair over
//! IPv4 and IPv6 (the leased addresses included), shows the path each pair took, prints
//! `wiremesh-controller status`, and tears it all down on exit, on error and on Ctrl-C. Progress
//! goes to stderr, results to stdout.

mod lab;
mod signal;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde_json::{Value, json};
use wiremesh_core::config::AgentConfig;
use wiremesh_core::keys::{Identity, NetworkKey};
use wiremesh_inventory::{Catalog, ResolveOptions, resolve};
use wiremesh_proto::status::Source;

use lab::Lab;

/// The example the README shows; used when no `--inventory` is given.
const EXAMPLE_INVENTORY: &str = include_str!("../../../examples/inventory.json");
/// How long each pair may take to answer its first ping (the first one includes the handshake).
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the agents may take to get their leases from the controller.
const LEASE_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(clap::Args)]
pub struct Args {
    /// The inventory to plan (default: the bundled examples/inventory.json).
    #[arg(long, value_name = "FILE")]
    inventory: Option<PathBuf>,
    /// The wiremesh instance of the inventory to bring up.
    #[arg(long, default_value = "my-vpn")]
    instance: String,
    /// Keep the mesh running after the checks until Ctrl-C, to explore it with `ip netns exec`.
    #[arg(long)]
    keep: bool,
    /// The NAT in front of every machine that is not a controller: `eim` (endpoint-independent
    /// mapping, like most home routers: members punch through), `symmetric` (a new port per
    /// destination: members go through the controller's relay), or `none` (all on the switch).
    #[arg(long, value_enum, default_value_t = NatKind::Eim)]
    nat: NatKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum NatKind {
    Eim,
    Symmetric,
    None,
}

impl NatKind {
    fn mapping(self) -> Option<wiremesh_lab::Mapping> {
        match self {
            NatKind::Eim => Some(wiremesh_lab::Mapping::EndpointIndependent),
            NatKind::Symmetric => Some(wiremesh_lab::Mapping::Symmetric),
            NatKind::None => None,
        }
    }
}

pub fn run(args: Args) -> ExitCode {
    signal::install();
    match demo(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("wiremesh demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn progress(text: &str) {
    eprintln!("demo: {text}");
}

/// Runs the demo; `Ok(false)` when the mesh came up but a check failed.
fn demo(args: &Args) -> Result<bool, String> {
    preflight()?;
    let peer_bin = sibling_binary("wiremesh-peer")?;
    let (source, text) = match &args.inventory {
        Some(path) => (
            path.display().to_string(),
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        ),
        None => (
            "the bundled examples/inventory.json".to_owned(),
            EXAMPLE_INVENTORY.to_owned(),
        ),
    };
    let inventory: Value =
        serde_json::from_str(&text).map_err(|e| format!("{source} is not valid JSON: {e}"))?;
    let members = instance_members(&text, &args.instance).map_err(|e| format!("{source}: {e}"))?;
    progress(&format!(
        "instance {:?} of {source}: machines {}",
        args.instance,
        members
            .iter()
            .map(|(m, _)| m.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));

    let dir = tempfile::Builder::new()
        .prefix("wiremesh-demo-")
        .tempdir()
        .map_err(|e| format!("cannot make a temp dir: {e}"))?;
    let machines: Vec<String> = members.iter().map(|(m, _)| m.clone()).collect();
    let public = controller_machines(&inventory, &args.instance);
    progress(&match args.nat.mapping() {
        Some(_) => format!(
            "building namespaces: a switch (198.18.0.0/24) with the controllers, and a {} NAT \
             with a LAN of its own (198.19.N.0/24) in front of every other machine",
            if args.nat == NatKind::Eim {
                "endpoint-independent"
            } else {
                "symmetric"
            }
        ),
        None => "building namespaces: a switch and one per machine, underlay 198.18.0.0/24".into(),
    });
    let mut lab = Lab::build(&machines, &public, args.nat.mapping(), dir.path())?;
    for node in &lab.nodes {
        let behind = node
            .nat
            .map(|wan| format!(", behind a NAT at {wan}"))
            .unwrap_or_default();
        progress(&format!(
            "  {} → namespace {} at {}{behind}",
            node.machine,
            node.ns.name(),
            node.underlay
        ));
    }

    progress("generating throwaway keys");
    let network_key = write_keys(dir.path(), &args.instance, &machines)?;
    let rewritten = with_underlay_endpoints(&inventory, &args.instance, &lab, &members)?;
    let configs = plan(dir.path(), &rewritten, &args.instance, &machines)?;

    let mut controllers = Vec::new();
    for machine in &machines {
        let config = dir
            .path()
            .join("plan")
            .join(format!("{machine}.controller.json"));
        if !config.is_file() {
            continue;
        }
        signal::check()?;
        progress(&format!("starting the controller on {machine}"));
        let state = lab.start_controller(
            &sibling_binary("wiremesh-controller")?,
            machine,
            &config,
            &network_key,
            &dir.path().join(machine).join("identity"),
        )?;
        controllers.push((machine.clone(), state));
    }

    for machine in &machines {
        signal::check()?;
        progress(&format!("starting the agent of {machine}"));
        let mdir = dir.path().join(machine);
        std::fs::create_dir_all(mdir.join("state"))
            .map_err(|e| format!("cannot make {}: {e}", mdir.display()))?;
        lab.start_agent(
            &peer_bin,
            machine,
            &dir.path().join("plan").join(format!("{machine}.json")),
            &mdir.join("identity"),
            &mdir.join("status.sock"),
        )?;
    }

    let addresses = wait_for_leases(dir.path(), &configs, !controllers.is_empty())?;
    progress("pinging every pair over IPv4 and IPv6");
    let results = ping_all(&lab, &addresses)?;
    let paths = paths(dir.path(), &machines)?;
    for machine in &machines {
        signal::check()?;
        println!("== wiremesh status on {machine}");
        println!(
            "{}",
            status_text(&dir.path().join(machine).join("status.sock"))?
        );
    }
    for (machine, state) in &controllers {
        signal::check()?;
        println!("== wiremesh-controller status on {machine}");
        println!("{}", controller_status_text(state)?);
    }
    print_paths(&paths);
    let ok = report(&results, &mut lab, machines.len());
    if ok && args.keep {
        keep_until_ctrl_c(&mut lab, &configs, &machines, dir.path())?;
    }
    drop(lab);
    Ok(ok)
}

/// The machines that hold the controller role of `instance`.
fn controller_machines(inventory: &Value, instance: &str) -> Vec<String> {
    inventory
        .pointer(&format!(
            "/instances/{}/roles/controller/machines",
            pointer_escape(instance)
        ))
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Each agent's path to each member, as `wiremesh status` reports it: (from, to, path).
fn paths(dir: &Path, machines: &[String]) -> Result<Vec<(String, String, String)>, String> {
    let mut out = Vec::new();
    for machine in machines {
        let socket = dir.join(machine).join("status.sock");
        let status = wiremesh_proto::status::query(&socket)
            .map_err(|e| format!("status of {machine}: {e}"))?;
        for m in &status.members {
            out.push((machine.clone(), m.name.clone(), m.path.to_string()));
        }
    }
    Ok(out)
}

fn print_paths(paths: &[(String, String, String)]) {
    println!("== paths (direct through NAT when hole punching worked, else through the relay)");
    for (from, to, path) in paths {
        println!("  {from:>10} → {to:<10} {path}");
    }
}

/// Prints the ping results and the agents that died; true when everything passed.
fn report(results: &[PingResult], lab: &mut Lab, agents: usize) -> bool {
    println!("== pings over the mesh (the first one of each pair includes the handshake)");
    let mut failed = 0;
    for r in results {
        match &r.outcome {
            Ok(rtt) => println!("  {:>10} → {:<10} {:<40} ok  {rtt}", r.from, r.to, r.addr),
            Err(e) => {
                failed += 1;
                println!("  {:>10} → {:<10} {:<40} FAILED: {e}", r.from, r.to, r.addr);
            }
        }
    }
    let dead = lab.dead_agents();
    for (who, status, log) in &dead {
        println!("{who} exited ({status}); its log:\n{log}");
    }
    let ok = failed == 0 && dead.is_empty();
    println!(
        "== {}: {agents} agents, {}/{} pings answered over IPv4 and IPv6",
        if ok { "demo OK" } else { "demo FAILED" },
        results.len() - failed,
        results.len()
    );
    ok
}

/// `--keep`: says how to look around, then waits for Ctrl-C (or an agent dying).
fn keep_until_ctrl_c(
    lab: &mut Lab,
    configs: &BTreeMap<String, AgentConfig>,
    machines: &[String],
    dir: &Path,
) -> Result<(), String> {
    println!("The mesh stays up. Try, in another shell:");
    if let (Some(first), Some(last)) = (
        lab.nodes.first(),
        machines.last().and_then(|m| configs.get(m)),
    ) {
        let target = last
            .addresses
            .ipv4
            .map_or_else(|| last.addresses.ipv6.to_string(), |v4| v4.to_string());
        println!("  sudo ip netns exec {} ping {target}", first.ns.name());
    }
    println!(
        "  sudo {} status --socket {}",
        std::env::current_exe().map_or_else(|_| "wiremesh".into(), |p| p.display().to_string()),
        dir.join(&machines[0]).join("status.sock").display()
    );
    println!("Press Ctrl-C to tear it down.");
    // Ctrl-C is the normal end here: the exit status stays that of the checks.
    while !signal::requested() {
        if let Some((who, status, log)) = lab.dead_agents().into_iter().next() {
            return Err(format!("{who} exited ({status}); its log:\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

fn preflight() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(
            "the demo needs root: it creates network namespaces, veth links and TUN \
                    devices. Run it with sudo."
                .to_owned(),
        );
    }
    for (tool, package) in [("ip", "iproute2"), ("ping", "iputils-ping")] {
        let found = std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(tool).is_file()));
        if !found {
            return Err(format!(
                "'{tool}' is not on PATH: apt-get install {package}"
            ));
        }
    }
    Ok(())
}

/// A binary of this workspace installed next to the running `wiremesh`.
fn sibling_binary(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let path = exe.with_file_name(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found: the demo runs the agent that sits next to `wiremesh`. Build both: \
             cargo build --release -p wiremesh-cli -p wiremesh-peer -p wiremesh-controller",
            path.display()
        ))
    }
}

/// The instance's machines with their final `peer` settings, sorted by name; machines holding only
/// the controller role get an empty object.
fn instance_members(text: &str, instance: &str) -> Result<Vec<(String, Value)>, String> {
    let resolution = resolve(text, &Catalog::new(), &ResolveOptions::default())
        .map_err(|e| format!("cannot resolve the inventory: {e}"))?;
    let Some(inst) = resolution.instances.get(instance) else {
        let known: Vec<&String> = resolution.instances.keys().collect();
        return Err(format!("no instance {instance:?} (instances: {known:?})"));
    };
    let mut members: BTreeMap<String, Value> = BTreeMap::new();
    for role in inst.roles.values() {
        for machine in &role.machines {
            members.entry(machine.clone()).or_insert_with(|| json!({}));
        }
    }
    for (machine, roles) in &resolution.machines {
        for r in roles
            .iter()
            .filter(|r| r.instance == instance && r.role == "peer")
        {
            members.insert(machine.clone(), r.settings.clone());
        }
    }
    if members.len() < 2 {
        return Err(format!(
            "instance {instance:?} has {} machines; a mesh needs two",
            members.len()
        ));
    }
    Ok(members.into_iter().collect())
}

/// Writes each machine's identity (mode 0600) and the public keys in Clan's public vars layout,
/// which `wiremesh plan --keys` reads, and the network key the controller signs with; returns
/// the network key's path.
fn write_keys(dir: &Path, instance: &str, machines: &[String]) -> Result<PathBuf, String> {
    let vars = dir.join("keys").join("vars");
    for machine in machines {
        let identity = Identity::generate().map_err(|e| format!("no randomness: {e}"))?;
        let mdir = dir.join(machine);
        std::fs::create_dir_all(&mdir)
            .map_err(|e| format!("cannot make {}: {e}", mdir.display()))?;
        write_secret(&mdir.join("identity"), &identity.to_file_text())?;
        let public = vars
            .join("per-machine")
            .join(machine)
            .join(format!("wiremesh-{instance}"));
        write_value(
            &public.join("wireguard-public-key"),
            &identity.wireguard_public_key().to_base64(),
        )?;
        write_value(
            &public.join("node-public-key"),
            &identity.node_public_key().to_base64(),
        )?;
    }
    let network = NetworkKey::generate().map_err(|e| format!("no randomness: {e}"))?;
    write_value(
        &vars
            .join("shared")
            .join(format!("wiremesh-network-{instance}"))
            .join("network-public-key"),
        &network.public_key().to_base64(),
    )?;
    let path = dir.join("network.key");
    write_secret(&path, &network.to_file_text())?;
    Ok(path)
}

fn write_value(dir: &Path, text: &str) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
    let path = dir.join("value");
    std::fs::write(&path, format!("{text}\n"))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn write_secret(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The value as a top-priority definition (Nix's mkForce), so it wins over whatever layer of the
/// inventory set the option.
fn forced(value: Value) -> Value {
    json!({ "_type": "override", "priority": 50, "content": value })
}

/// The inventory with each member's `endpoints` set to its underlay address and port, and each
/// controller's `endpoint` set to its underlay address.
fn with_underlay_endpoints(
    inventory: &Value,
    instance: &str,
    lab: &Lab,
    members: &[(String, Value)],
) -> Result<Value, String> {
    let mut out = inventory.clone();
    let roles = out
        .pointer_mut(&format!("/instances/{}/roles", pointer_escape(instance)))
        .and_then(Value::as_object_mut)
        .ok_or_else(|| format!("instances.{instance}.roles is not an object"))?;
    for (machine, settings) in members {
        let node = lab
            .node(machine)
            .ok_or_else(|| format!("no namespace for {machine}"))?;
        // Behind a NAT a machine has no address others could reach it at: it is found through
        // the controller.
        if roles.contains_key("peer") && settings.get("port").is_some() && node.nat.is_none() {
            let port = settings["port"].as_u64().unwrap_or(51820);
            machine_settings(roles, "peer", machine).insert(
                "endpoints".into(),
                forced(json!([format!("{}:{port}", node.underlay)])),
            );
        }
        let is_controller = roles.get("controller").is_some_and(|c| {
            c.pointer(&format!("/machines/{}", pointer_escape(machine)))
                .is_some()
        });
        if is_controller {
            machine_settings(roles, "controller", machine)
                .insert("endpoint".into(), forced(json!(node.underlay.to_string())));
        }
    }
    Ok(out)
}

/// `roles.<role>.machines.<machine>.settings` as a mutable object, created where missing. The
/// inventory already resolved, so every level that exists is an object.
fn machine_settings<'a>(
    roles: &'a mut serde_json::Map<String, Value>,
    role: &str,
    machine: &str,
) -> &'a mut serde_json::Map<String, Value> {
    let mut node = roles.entry(role).or_insert_with(|| json!({}));
    for key in ["machines", machine, "settings"] {
        if !node.is_object() {
            *node = json!({});
        }
        node = node
            .as_object_mut()
            .expect("made an object just above")
            .entry(key)
            .or_insert_with(|| json!({}));
    }
    if !node.is_object() {
        *node = json!({});
    }
    node.as_object_mut().expect("made an object just above")
}

fn pointer_escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Writes the inventory and runs `wiremesh plan` (this executable) into `<dir>/plan`; returns the
/// per-machine configurations.
fn plan(
    dir: &Path,
    inventory: &Value,
    instance: &str,
    machines: &[String],
) -> Result<BTreeMap<String, AgentConfig>, String> {
    signal::check()?;
    let inventory_path = dir.join("inventory.json");
    let text = serde_json::to_string_pretty(inventory).map_err(|e| e.to_string())?;
    std::fs::write(&inventory_path, text)
        .map_err(|e| format!("cannot write {}: {e}", inventory_path.display()))?;
    let out_dir = dir.join("plan");
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    progress(&format!("wiremesh plan --instance {instance}"));
    let out = lab::run(
        Command::new(exe)
            .arg("plan")
            .arg("--inventory")
            .arg(&inventory_path)
            .arg("--instance")
            .arg(instance)
            .arg("--keys")
            .arg(dir.join("keys"))
            .arg("--out")
            .arg(&out_dir),
        Duration::from_secs(60),
    )?;
    if !out.status.success() {
        return Err(format!(
            "wiremesh plan failed ({}): {}{}",
            out.status, out.stdout, out.stderr
        ));
    }
    let mut configs = BTreeMap::new();
    for machine in machines {
        let path = out_dir.join(format!("{machine}.json"));
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("wiremesh plan wrote no {}: {e}", path.display()))?;
        let config =
            AgentConfig::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        configs.insert(machine.clone(), config);
    }
    Ok(configs)
}

struct PingResult {
    from: String,
    to: String,
    addr: IpAddr,
    outcome: Result<String, String>,
}

/// Each machine's overlay addresses as its agent reports them: the planned ones, and a leased
/// IPv4 address once the controller's netmap brought it. With a controller, waits (at most
/// [`LEASE_TIMEOUT`]) until every agent runs on its netmap and every member planned without an
/// IPv4 address in an IPv4 network has its lease.
fn wait_for_leases(
    dir: &Path,
    configs: &BTreeMap<String, AgentConfig>,
    controller: bool,
) -> Result<BTreeMap<String, Vec<IpAddr>>, String> {
    if controller {
        progress("waiting for the agents to enroll and get their leases");
    }
    let deadline = Instant::now() + LEASE_TIMEOUT;
    let mut announced = std::collections::BTreeSet::new();
    loop {
        signal::check()?;
        let mut addresses = BTreeMap::new();
        let mut waiting = Vec::new();
        for (machine, config) in configs {
            let socket = dir.join(machine).join("status.sock");
            let status = wiremesh_proto::status::query(&socket)?;
            let own: Vec<IpAddr> = status
                .addresses
                .iter()
                .filter_map(|a| a.parse::<IpNet>().ok().map(|n| n.addr()))
                .collect();
            let leased = config.addresses.ipv4.is_none() && config.network.ipv4.is_some();
            let ready = !controller
                || (matches!(status.source, Source::Netmap { .. })
                    && (!leased || own.iter().any(IpAddr::is_ipv4)));
            if !ready {
                waiting.push(machine.as_str());
            } else if controller
                && leased
                && let Some(v4) = own.iter().find(|a| a.is_ipv4())
                && announced.insert(machine.clone())
            {
                progress(&format!("  {machine} holds {v4}, leased by the controller"));
            }
            addresses.insert(machine.clone(), own);
        }
        if waiting.is_empty() {
            return Ok(addresses);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no netmap or lease from the controller within {LEASE_TIMEOUT:?} for {}",
                waiting.join(", ")
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Pings every ordered pair of machines at each of the target's overlay addresses, retrying until
/// the first reply or [`PING_TIMEOUT`].
fn ping_all(
    lab: &Lab,
    addresses: &BTreeMap<String, Vec<IpAddr>>,
) -> Result<Vec<PingResult>, String> {
    let mut results = Vec::new();
    for from in addresses.keys() {
        for (to, addrs) in addresses.iter().filter(|(to, _)| *to != from) {
            for &addr in addrs {
                signal::check()?;
                let outcome = ping_until_reply(lab, from, addr)?;
                results.push(PingResult {
                    from: from.clone(),
                    to: to.clone(),
                    addr,
                    outcome,
                });
            }
        }
    }
    Ok(results)
}

/// `Ok(Ok(rtt))` on a reply, `Ok(Err(why))` when none came in time, `Err` on Ctrl-C.
fn ping_until_reply(lab: &Lab, from: &str, addr: IpAddr) -> Result<Result<String, String>, String> {
    let start = Instant::now();
    loop {
        let out = lab.exec(from, &["ping", "-c", "1", "-W", "1", &addr.to_string()])?;
        if out.status.success() {
            let rtt = out
                .stdout
                .lines()
                .find_map(|l| l.split("time=").nth(1))
                .unwrap_or("")
                .trim()
                .to_owned();
            let waited = start.elapsed();
            return Ok(Ok(if waited > Duration::from_millis(500) {
                format!("{rtt} (first reply after {:.1} s)", waited.as_secs_f64())
            } else {
                rtt
            }));
        }
        if start.elapsed() > PING_TIMEOUT {
            return Ok(Err(format!("no reply within {PING_TIMEOUT:?}")));
        }
        signal::check()?;
    }
}

/// `wiremesh-controller status --state-dir DIR`, as text.
fn controller_status_text(state: &Path) -> Result<String, String> {
    let out = lab::run(
        Command::new(sibling_binary("wiremesh-controller")?)
            .arg("status")
            .arg("--state-dir")
            .arg(state),
        Duration::from_secs(10),
    )?;
    Ok(format!("{}{}", out.stdout, out.stderr)
        .trim_end()
        .to_owned())
}

/// `wiremesh status --socket PATH` (this executable), as text.
fn status_text(socket: &Path) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let out = lab::run(
        Command::new(exe).arg("status").arg("--socket").arg(socket),
        Duration::from_secs(10),
    )?;
    Ok(format!("{}{}", out.stdout, out.stderr)
        .trim_end()
        .to_owned())
}
