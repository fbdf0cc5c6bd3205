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

impl Lab {
    /// [`Lab::underlay`] plus configurations from `wiremesh plan`: an inventory where the first
    /// member is also the controller, every member is a peer (tag `all`) with static IPv4
    /// 100.77.0.(1+i) in 100.77.0.0/16, IPv6 in fd77:77::/48 derived from its name, and its underlay
    /// IPv4 address as endpoint; keys from `wiremesh keygen`.
    pub fn planned(names: &[&str]) -> Self {
        Self::planned_with(names, |m| format!("{}:{AGENT_PORT}", m.underlay4))
    }

    /// [`Lab::planned`] with every member's endpoint on the IPv6 underlay (`[fd00:18::…]:port`).
    pub fn planned_over_ipv6(names: &[&str]) -> Self {
        Self::planned_with(names, |m| format!("[{}]:{AGENT_PORT}", m.underlay6))
    }

    fn planned_with(names: &[&str], endpoint: impl Fn(&Member) -> String) -> Self {
        let mut lab = Self::underlay(names);
        let dir = lab.dir().to_owned();
        let cli = project_binary("wiremesh");
        let mut machines = serde_json::Map::new();
        let mut peers = serde_json::Map::new();
        for (i, m) in lab.members.iter_mut().enumerate() {
            machines.insert(m.name.clone(), json!({}));
            peers.insert(
                m.name.clone(),
                json!({ "settings": {
                    "ipv4": format!("100.77.0.{}", i + 1),
                    "endpoints": [endpoint(m)],
                    "interface": TUN_NAME,
                }}),
            );
            // The machine's identity is the one `wiremesh keygen` makes, not the lab's own.
            let identity = m.identity_path();
            std::fs::remove_file(&identity).expect("the lab wrote an identity");
            cli_ok(&cli, &["keygen", "--out", &path_arg(&identity)]);
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
                let key = cli_ok(&cli, &["pubkey", flag, &path_arg(&identity)]);
                write_var(&vars.join(var), &key);
            }
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

        let controller = &lab.members[0];
        let inventory = json!({
            "machines": Value::Object(machines),
            "instances": { INSTANCE: {
                "module": { "name": "wiremesh", "input": "wiremesh" },
                "roles": {
                    "controller": { "machines": { controller.name.clone(): { "settings": {
                        "endpoint": controller.underlay4.to_string(),
                        "ipv4Network": "100.77.0.0/16",
                        "ipv6Network": "fd77:77::/48",
                    }}}},
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
            &cli,
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
        for m in &mut lab.members {
            let path = plan_dir.join(format!("{}.json", m.name));
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("wiremesh plan wrote no {}: {e}", path.display()));
            let config = AgentConfig::from_json(&text)
                .unwrap_or_else(|e| panic!("{}: the agent would refuse it: {e}", path.display()));
            m.write_config(config);
        }
        lab
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

fn path_arg(path: &Path) -> String {
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
