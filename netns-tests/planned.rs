//! Labs configured the way a user configures a mesh: an inventory, `wiremesh keygen` per machine
//! (and `--network`), the public keys laid out as Clan vars, `wiremesh plan`, and signed netmaps
//! from `wiremesh netmap build`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use wiremesh_core::config::AgentConfig;
use wiremesh_core::keys::Identity;

use crate::env::project_binary;
use crate::lab::{AGENT_PORT, Lab, Member, TUN_NAME};
use wiremesh_lab::run_bounded;

/// The instance name of planned labs.
const INSTANCE: &str = "lab";

/// The range leases come from in labs planned with [`Lab::planned_with_controller`].
pub const LEASE_RANGE: &str = "100.77.128.0/24";

/// What a planned lab was planned with; kept so that machines can be added and the inventory
/// planned anew.
pub(crate) struct Planning {
    /// Endpoints on the IPv6 underlay instead of IPv4.
    ipv6_endpoints: bool,
    /// The controller's `dynamicIp.enable`.
    dynamic_ip: bool,
    /// The machines of the inventory in order, and whether each one's IPv4 address is leased
    /// (no static `ipv4` setting).
    machines: Vec<(String, bool)>,
    /// Machines planned without `endpoints` (they sit behind NAT: no address of theirs is
    /// reachable from outside).
    endpointless: Vec<String>,
}

impl Lab {
    /// [`Lab::underlay`] plus configurations from `wiremesh plan`: an inventory where the first
    /// member is also the controller, every member is a peer (tag `all`) with static IPv4
    /// 100.77.0.(1+i) in 100.77.0.0/16, IPv6 in fd77:77::/48 derived from its name, and its underlay
    /// IPv4 address as endpoint; keys from `wiremesh keygen`.
    pub fn planned(names: &[&str]) -> Self {
        Self::planned_as(names, false, false, &[], &[])
    }

    /// [`Lab::planned`] with every member's endpoint on the IPv6 underlay (`[fd00:18::…]:port`).
    pub fn planned_over_ipv6(names: &[&str]) -> Self {
        Self::planned_as(names, true, false, &[], &[])
    }

    /// [`Lab::planned`] for a lab run with its controller (see [`Lab::start_controller`]): the
    /// first member's controller settings are `endpoint` = its underlay IPv4 address and
    /// `dynamicIp.enable = true` (range [`LEASE_RANGE`]), and the members named in `leased` have no
    /// static `ipv4`, so they get theirs by lease.
    pub fn planned_with_controller(names: &[&str], leased: &[&str]) -> Self {
        Self::planned_as(names, false, true, leased, &[])
    }

    /// [`Lab::planned_with_controller`] with no leased member, where the members named in
    /// `endpointless` are planned without `endpoints`, as machines behind NAT are (their agents
    /// learn how to reach each other from the controller). The controller's relay has its
    /// defaults (on, port 51822).
    pub fn planned_for_nat(names: &[&str], endpointless: &[&str]) -> Self {
        Self::planned_as(names, false, true, &[], endpointless)
    }

    fn planned_as(
        names: &[&str],
        ipv6_endpoints: bool,
        dynamic_ip: bool,
        leased: &[&str],
        endpointless: &[&str],
    ) -> Self {
        assert!(
            leased.iter().chain(endpointless).all(|l| names.contains(l)),
            "leased {leased:?} or endpointless {endpointless:?} members are not all among {names:?}"
        );
        let mut lab = Self::underlay(names);
        let cli = project_binary("wiremesh");
        let dir = lab.dir().to_owned();
        for m in &mut lab.members {
            keygen_as_clan(m, &dir, &cli);
        }
        let network_key = dir.join("network.key");
        cli_ok(
            &cli,
            &["keygen", "--network", "--out", &path_arg(&network_key)],
        );
        let network_public = cli_ok(&cli, &["pubkey", &path_arg(&network_key)]);
        let network_public = network_public.rsplit("= ").next().unwrap_or_default();
        write_var(
            &dir.join(format!(
                "clan/vars/shared/wiremesh-network-{INSTANCE}/network-public-key"
            )),
            network_public,
        );
        lab.planning = Some(Planning {
            ipv6_endpoints,
            dynamic_ip,
            machines: names
                .iter()
                .map(|n| ((*n).to_owned(), leased.contains(n)))
                .collect(),
            endpointless: endpointless.iter().map(|n| (*n).to_owned()).collect(),
        });
        lab.plan();
        lab
    }

    /// Adds machine `name` to a planned lab's inventory (a new namespace on the switch, keys from
    /// `wiremesh keygen`), leased or with the next static address, and plans anew: every member's
    /// configuration file and the controller's are rewritten; running daemons are not told.
    pub fn add_planned_member(&mut self, name: &str, leased: bool) -> &mut Member {
        assert!(self.planning.is_some(), "the lab was not planned");
        let cli = project_binary("wiremesh");
        let dir = self.dir().to_owned();
        keygen_as_clan(self.add_machine(name), &dir, &cli);
        if let Some(planning) = &mut self.planning {
            planning.machines.push((name.to_owned(), leased));
        }
        self.plan();
        self.member(name)
    }

    /// The controller configuration `wiremesh plan` wrote for the first member.
    pub fn controller_config_path(&self) -> PathBuf {
        self.dir()
            .join("plan")
            .join(format!("{}.controller.json", self.members[0].name))
    }

    /// Writes the inventory of the planning, runs `wiremesh plan` and gives every member of the
    /// inventory its configuration.
    fn plan(&mut self) {
        let planning = self.planning.as_ref().expect("the lab was planned");
        let dir = self.dir().to_owned();
        let mut machines = serde_json::Map::new();
        let mut peers = serde_json::Map::new();
        for (name, leased) in &planning.machines {
            let i = self
                .members
                .iter()
                .position(|m| &m.name == name)
                .expect("every planned machine is a member");
            let m = &self.members[i];
            let endpoint = if planning.ipv6_endpoints {
                format!("[{}]:{AGENT_PORT}", m.underlay6)
            } else {
                format!("{}:{AGENT_PORT}", m.underlay4)
            };
            let mut settings = json!({
                "endpoints": [endpoint],
                "interface": TUN_NAME,
            });
            if planning.endpointless.contains(name) {
                settings["endpoints"] = json!([]);
            }
            if !leased {
                settings["ipv4"] = json!(format!("100.77.0.{}", i + 1));
            }
            machines.insert(name.clone(), json!({}));
            peers.insert(name.clone(), json!({ "settings": settings }));
        }
        let controller = &self.members[0];
        let mut controller_settings = json!({
            "endpoint": controller.underlay4.to_string(),
            "ipv4Network": "100.77.0.0/16",
            "ipv6Network": "fd77:77::/48",
        });
        if planning.dynamic_ip {
            controller_settings["dynamicIp"] = json!({ "enable": true, "range": LEASE_RANGE });
        }
        let inventory = json!({
            "machines": Value::Object(machines),
            "instances": { INSTANCE: {
                "module": { "name": "wiremesh", "input": "wiremesh" },
                "roles": {
                    "controller": { "machines": { controller.name.clone(): {
                        "settings": controller_settings,
                    }}},
                    "peer": {
                        "tags": ["all"],
                        "machines": Value::Object(peers),
                        "settings": { "ipRanges": ["all"] },
                    },
                },
            }},
        });
        let inventory_path = dir.join("inventory.json");
        std::fs::write(&inventory_path, inventory.to_string()).expect("the lab dir is writable");
        let plan_dir = dir.join("plan");
        cli_ok(
            &project_binary("wiremesh"),
            &[
                "plan",
                "--inventory",
                &path_arg(&inventory_path),
                "--instance",
                INSTANCE,
                "--keys",
                &path_arg(&dir.join("clan")),
                "--out",
                &path_arg(&plan_dir),
            ],
        );
        let planned: Vec<String> = planning.machines.iter().map(|(n, _)| n.clone()).collect();
        for m in self
            .members
            .iter_mut()
            .filter(|m| planned.contains(&m.name))
        {
            let path = plan_dir.join(format!("{}.json", m.name));
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("wiremesh plan wrote no {}: {e}", path.display()));
            let config = AgentConfig::from_json(&text)
                .unwrap_or_else(|e| panic!("{}: the agent would refuse it: {e}", path.display()));
            m.write_config(config);
        }
    }
}

/// Replaces `m`'s identity with one from `wiremesh keygen` and lays its public keys out as the
/// Clan vars of the lab in `dir`.
fn keygen_as_clan(m: &mut Member, dir: &Path, cli: &Path) {
    let identity = m.identity_path();
    std::fs::remove_file(&identity).expect("the lab wrote an identity");
    cli_ok(cli, &["keygen", "--out", &path_arg(&identity)]);
    m.identity = Identity::load(&identity)
        .unwrap_or_else(|e| panic!("wiremesh keygen wrote an unreadable identity: {e}"));
    let vars = dir
        .join("clan/vars/per-machine")
        .join(&m.name)
        .join(format!("wiremesh-{INSTANCE}"));
    for (var, flag) in [
        ("wireguard-public-key", "--wireguard"),
        ("node-public-key", "--node"),
    ] {
        let key = cli_ok(cli, &["pubkey", flag, &path_arg(&identity)]);
        write_var(&vars.join(var), &key);
    }
}

impl Lab {
    /// `wiremesh netmap build` of the planned instance, signed with the lab's network key, with
    /// `revoked` members marked revoked; returns the file.
    pub fn build_netmap(&self, epoch: u64, revoked: &[&str], name: &str) -> PathBuf {
        let dir = self.dir();
        let out = dir.join(name);
        let mut args = vec![
            "netmap".to_owned(),
            "build".into(),
            "--inventory".into(),
            path_arg(&dir.join("inventory.json")),
            "--instance".into(),
            INSTANCE.into(),
            "--keys".into(),
            path_arg(&dir.join("clan")),
            "--network-key".into(),
            path_arg(&dir.join("network.key")),
            "--epoch".into(),
            epoch.to_string(),
            "--out".into(),
            path_arg(&out),
        ];
        for m in revoked {
            args.extend(["--revoke".to_owned(), (*m).to_owned()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli_ok(&project_binary("wiremesh"), &args);
        out
    }
}

pub(crate) fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Runs the `wiremesh` CLI; returns its trimmed stdout, panicking with its stderr on failure.
fn cli_ok(cli: &Path, args: &[&str]) -> String {
    let out = run_bounded(Command::new(cli).args(args), Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.success(),
        "wiremesh {} failed ({}): {}{}",
        args.join(" "),
        out.status,
        out.stdout,
        out.stderr
    );
    out.stdout.trim().to_owned()
}

/// Writes a Clan var: `<dir>/value`.
fn write_var(dir: &Path, value: &str) {
    std::fs::create_dir_all(dir).expect("the lab dir is writable");
    std::fs::write(dir.join("value"), format!("{value}\n")).expect("the lab dir is writable");
}
