//! CLI-level tests of the core verbs: keygen, pubkey, address, plan and netmap build/show/verify.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Output;

use wiremesh_tests::{run, wiremesh, workspace_file};

/// A scratch directory removed on drop (also when the test fails).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("wiremesh-core-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    fn s(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn wm(args: &[&str]) -> Output {
    run(&wiremesh(), args, None)
}

/// `wiremesh address --instance INSTANCE --machine MACHINE EXTRA`.
fn address(instance: &str, machine: &str, extra: &[&str]) -> Output {
    let mut args = vec!["address", "--instance", instance, "--machine", machine];
    args.extend_from_slice(extra);
    wm(&args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "failed: {}\n{}", o.status, stderr(&o));
    stdout(&o)
}

/// The output the Nix vars generators store: byte-for-byte, forever.
#[test]
fn address_output_is_golden() {
    assert_eq!(
        ok(address("my-vpn", "laptop", &[])),
        "ipv6-network = fd8c:65c0:2740::/48\n\
         ipv6 = fd8c:65c0:2740:8337:bf72:5f02:6fda:9c78\n\
         ipv4-network = 100.96.0.0/16\n\
         interface = wm-my-vpn\n"
    );
    assert_eq!(
        ok(address("home-network-for-family", "phone", &["--json"])),
        "{\"interface\":\"wm-home-n-1e945\",\"ipv4Network\":\"100.106.0.0/16\",\
         \"ipv6\":\"fd1e:945c:d8be:7bf4:72d7:a864:ef47:8145\",\"ipv6Network\":\"fd1e:945c:d8be::/48\"}\n"
    );
    assert_eq!(
        ok(address(
            "my-vpn",
            "laptop",
            &[
                "--network",
                "fd00:1:2:3::/64",
                "--network",
                "100.77.0.0/16",
                "--field",
                "ipv6"
            ]
        )),
        "fd00:1:2:3:bf72:5f02:6fda:9c78\n"
    );
    let bad = address("i", "m", &["--network", "100.77.0.1/16"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("did you mean 100.77.0.0/16"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn keygen_writes_a_private_file_and_pubkey_reads_it() {
    let dir = Scratch::new("keygen");
    let id = dir.s("id");
    let printed = ok(wm(&["keygen", "--out", &id]));
    let mode = std::fs::metadata(&id).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&id).unwrap();
    assert!(
        text.starts_with("# wiremesh identity: keep secret\n"),
        "{text}"
    );
    assert_eq!(ok(wm(&["pubkey", &id])), printed);
    let wg = ok(wm(&["pubkey", "--wireguard", &id]));
    assert!(
        printed.contains(&format!("wireguard-public-key = {wg}")),
        "{printed} vs {wg}"
    );
    let again = wm(&["keygen", "--out", &id]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("refusing to replace"),
        "{}",
        stderr(&again)
    );
    assert_eq!(std::fs::read_to_string(&id).unwrap(), text);
    let replaced = ok(wm(&["keygen", "--force", "--out", &id]));
    assert_ne!(replaced, printed);
    assert_eq!(ok(wm(&["pubkey", &id])), replaced);
    let mode = std::fs::metadata(&id).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let net = dir.s("net");
    let printed = ok(wm(&["keygen", "--network", "--out", &net]));
    let public = ok(wm(&["pubkey", &net]));
    assert_eq!(printed, format!("network-public-key = {public}"));
    assert!(!wm(&["pubkey", "--node", &net]).status.success());
    let mut files: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["id", "net"], "temporary files left behind");
}

/// `wg genkey | tee priv | wg pubkey` (wireguard-tools v1.0.20210914) gave this pair.
#[test]
fn pubkey_matches_wg_pubkey() {
    let dir = Scratch::new("wgvector");
    let id = dir.path("id");
    std::fs::write(
        &id,
        "wireguard-private-key = iJ0LzaEth8stwToVq+6cDb07H2zgmV09g+9yOVBnjFc=\n\
         node-private-key = AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
    )
    .unwrap();
    std::fs::set_permissions(&id, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = wm(&["pubkey", "--wireguard", id.to_str().unwrap()]);
    assert_eq!(ok(out), "sOsdVzmEMSWIVOpsVkP90WmKFT3u9XV20Hd8RFvphmM=\n");
}

#[test]
fn bad_key_files_are_named_and_explained() {
    let dir = Scratch::new("badkeys");
    let good = "wireguard-private-key = iJ0LzaEth8stwToVq+6cDb07H2zgmV09g+9yOVBnjFc=\n\
                node-private-key = AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n";
    let cases: [(&str, String, &str); 4] = [
        (
            "short",
            good.replace("iJ0LzaEth8stwToVq+6cDb07H2zgmV09g+9yOVBnjFc=", "AAAA"),
            "line 1: wireguard-private-key: decodes to 3 bytes, expected 32",
        ),
        (
            "notb64",
            good.replace("AAECAwQF", "!!!!!!!!"),
            "line 2: node-private-key: not valid standard base64",
        ),
        (
            "truncated",
            good[..good.len() - 20].to_string(),
            "line 2: node-private-key: not valid standard base64",
        ),
        (
            "cut",
            good.lines().next().unwrap().to_string(),
            "missing \"node-private-key\" (is the file truncated?",
        ),
    ];
    for (name, text, expected) in cases {
        let path = dir.path(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let out = wm(&["pubkey", path.to_str().unwrap()]);
        assert!(!out.status.success(), "{name}");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("key file {}, {expected}", path.display()))
                || err.contains(&format!("key file {}: {expected}", path.display())),
            "{name}: {err}"
        );
    }
    let open = dir.path("open");
    std::fs::write(&open, good).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = wm(&["pubkey", open.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(
        stderr(&out).contains(&format!(
            "warning: key file {} has mode 0644",
            open.display()
        )),
        "{}",
        stderr(&out)
    );
}

/// `wiremesh plan` of instance my-vpn in `inventory` with the vars below `keys`, then `extra`.
fn plan(inventory: &Path, keys: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["plan", "--inventory", inventory.to_str().unwrap()];
    args.extend(["--instance", "my-vpn", "--keys", keys.to_str().unwrap()]);
    args.extend_from_slice(extra);
    wm(&args)
}

/// A clan-like directory with vars for the example inventory's three machines.
fn example_vars(dir: &Scratch) {
    for machine in ["server", "laptop", "desktop"] {
        let id = dir.s(&format!("{machine}.id"));
        ok(wm(&["keygen", "--out", &id]));
        for (flag, file) in [
            ("--wireguard", "wireguard-public-key"),
            ("--node", "node-public-key"),
        ] {
            let value = dir.path(&format!(
                "vars/per-machine/{machine}/wiremesh-my-vpn/{file}/value"
            ));
            std::fs::create_dir_all(value.parent().unwrap()).unwrap();
            std::fs::write(&value, ok(wm(&["pubkey", flag, &id]))).unwrap();
        }
    }
    ok(wm(&["keygen", "--network", "--out", &dir.s("network.key")]));
    let value = dir.path("vars/shared/wiremesh-network-my-vpn/network-public-key/value");
    std::fs::create_dir_all(value.parent().unwrap()).unwrap();
    std::fs::write(&value, ok(wm(&["pubkey", &dir.s("network.key")]))).unwrap();
}

#[test]
fn plan_writes_one_config_per_member() {
    let dir = Scratch::new("plan");
    example_vars(&dir);
    let example = workspace_file("examples/inventory.json");
    let plan = |extra: &[&str]| plan(&example, &dir.0, extra);
    let table = ok(plan(&["--out", &dir.s("out")]));
    assert!(table.starts_with("machine\troles\tinterface"), "{table}");
    for machine in ["server", "laptop", "desktop"] {
        let text = std::fs::read_to_string(dir.path(&format!("out/{machine}.json"))).unwrap();
        let config: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(config["version"], 1);
        assert_eq!(config["machine"], machine);
        assert_eq!(config["interface"], "wm-my-vpn");
        assert_eq!(config["peers"].as_array().unwrap().len(), 2);
        let wg = std::fs::read_to_string(dir.path(&format!(
            "vars/per-machine/{machine}/wiremesh-my-vpn/wireguard-public-key/value"
        )))
        .unwrap();
        let other = if machine == "laptop" {
            "server"
        } else {
            "laptop"
        };
        let other_config: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path(&format!("out/{other}.json"))).unwrap(),
        )
        .unwrap();
        let me = other_config["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == machine)
            .unwrap();
        assert_eq!(me["wireguardPublicKey"], wg.trim());
    }
    let text = std::fs::read_to_string(dir.path("out/server.controller.json")).unwrap();
    let controller: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(controller["version"], 1);
    assert_eq!(controller["machine"], "server");
    assert_eq!(controller["controlPort"], 51821);
    assert_eq!(controller["dynamicIp"]["enable"], true);
    assert_eq!(
        controller["networkKeyPath"],
        "/run/secrets/vars/wiremesh-network-my-vpn/network-private-key"
    );
    let network = std::fs::read_to_string(
        dir.path("vars/shared/wiremesh-network-my-vpn/network-public-key/value"),
    )
    .unwrap();
    assert_eq!(controller["networkPublicKey"], network.trim());
    let members = controller["members"].as_array().unwrap();
    let names: Vec<&str> = members
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["desktop", "laptop", "server"]);
    for m in members {
        let node = std::fs::read_to_string(dir.path(&format!(
            "vars/per-machine/{}/wiremesh-my-vpn/node-public-key/value",
            m["name"].as_str().unwrap()
        )))
        .unwrap();
        assert_eq!(m["nodePublicKey"], node.trim());
        assert_eq!(m["controller"], m["name"] == "server");
    }
    for machine in ["laptop", "desktop"] {
        assert!(!dir.path(&format!("out/{machine}.controller.json")).exists());
    }

    let json = ok(plan(&["--json"]));
    let all: serde_json::Value = serde_json::from_str(&json).unwrap();
    for machine in ["server", "laptop", "desktop"] {
        let text = std::fs::read_to_string(dir.path(&format!("out/{machine}.json"))).unwrap();
        let file: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(all[machine], file, "--json and --out disagree on {machine}");
    }
    assert_eq!(
        all["server"]["controllers"][0]["endpoint"],
        "vpn.example.org:51821"
    );

    let missing = dir.path("vars/per-machine/desktop/wiremesh-my-vpn/node-public-key/value");
    std::fs::remove_file(&missing).unwrap();
    let out = plan(&[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("expected the file {}", missing.display())),
        "{}",
        stderr(&out)
    );
}

/// Builds `map.bin` for the example vars (see [`example_vars`]) signed with `network.key`: epoch 5,
/// issued at 1000, expiring at 1100, plus `extra` options. Returns its path.
fn build_netmap(dir: &Scratch, extra: &[&str]) -> String {
    let inventory = workspace_file("examples/inventory.json");
    let (keys, network_key, map) = (dir.s(""), dir.s("network.key"), dir.s("map.bin"));
    let mut args = vec![
        "netmap",
        "build",
        "--inventory",
        inventory.to_str().unwrap(),
    ];
    args.extend(["--instance", "my-vpn", "--keys", &keys]);
    args.extend(["--network-key", &network_key, "--epoch", "5"]);
    args.extend(["--issued-at", "1000", "--valid-for", "100", "--out", &map]);
    args.extend_from_slice(extra);
    ok(wm(&args));
    map
}

/// `wiremesh netmap verify FILE --keys DIR --instance my-vpn EXTRA`.
fn verify(dir: &Scratch, file: &str, extra: &[&str]) -> Output {
    let keys = dir.s("");
    let mut args = vec!["netmap", "verify", file, "--keys", &keys];
    args.extend(["--instance", "my-vpn"]);
    args.extend_from_slice(extra);
    wm(&args)
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(o)))
}

#[test]
fn netmap_build_show_verify() {
    let dir = Scratch::new("netmap");
    example_vars(&dir);
    let map = build_netmap(&dir, &["--revoke", "desktop"]);
    let shown = ok(wm(&["netmap", "show", &map]));
    assert!(shown.contains("epoch = 5\n"), "{shown}");
    assert!(shown.contains("\nserver\t"), "{shown}");
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("desktop\t") && l.contains("\trevoked\t")),
        "{shown}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(wm(&["netmap", "show", "--json", &map]))).unwrap();
    assert_eq!(json["members"].as_array().unwrap().len(), 3);
    assert_eq!(json["expiresAt"], 1100);

    assert!(
        ok(verify(&dir, &map, &["--now", "1050", "--last-epoch", "4"]))
            .starts_with("accepted: my-vpn epoch 5, 3 members")
    );
    let stale = verify(&dir, &map, &["--now", "1050", "--last-epoch", "5"]);
    assert!(!stale.status.success());
    assert_eq!(
        stderr(&stale),
        format!(
            "wiremesh netmap verify: {map}: rejected: epoch 5 is not newer than the last accepted epoch 5\n"
        )
    );
    let expired = verify(&dir, &map, &["--now", "1100"]);
    assert_eq!(
        stderr(&expired),
        format!("wiremesh netmap verify: {map}: rejected: expired at 1100 (now 1100)\n")
    );

    let mut bytes = std::fs::read(&map).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&map, &bytes).unwrap();
    let forged = verify(&dir, &map, &["--now", "1050"]);
    assert!(!forged.status.success());
    assert!(
        stderr(&forged).contains(": rejected: bad signature"),
        "{}",
        stderr(&forged)
    );
    std::fs::write(&map, &bytes[..10]).unwrap();
    let truncated = wm(&["netmap", "show", &map]);
    assert!(!truncated.status.success());
    assert!(
        stderr(&truncated).contains("not a netmap"),
        "{}",
        stderr(&truncated)
    );
    assert!(Path::new(&map).exists());
}

/// `netmap verify` as scripts use it: exit 0 accepted, 1 refused, 2 not checked; the refusal on
/// standard error.
#[test]
fn netmap_verify_exit_status_tells_accepted_refused_and_unchecked_apart() {
    let dir = Scratch::new("verify-status");
    example_vars(&dir);
    let map = build_netmap(&dir, &[]);

    let accepted = verify(&dir, &map, &["--now", "1050", "--last-epoch", "4"]);
    assert_eq!(
        ok(accepted),
        "accepted: my-vpn epoch 5, 3 members, expires at 1100 (50 s from now)\n"
    );

    let stale = verify(&dir, &map, &["--now", "1050", "--last-epoch", "5"]);
    assert_eq!(stale.status.code(), Some(1), "{}", stderr(&stale));
    assert_eq!(stdout(&stale), "");
    assert_eq!(
        stderr(&stale),
        format!(
            "wiremesh netmap verify: {map}: rejected: epoch 5 is not newer than the last accepted epoch 5\n"
        )
    );

    // Another network's key: read and decoded fine, so refused (1), not "could not check" (2).
    ok(wm(&["keygen", "--network", "--out", &dir.s("other.key")]));
    let other = ok(wm(&["pubkey", &dir.s("other.key")]));
    let foreign = wm(&[
        "netmap",
        "verify",
        &map,
        "--network-public-key",
        other.trim(),
        "--now",
        "1050",
    ]);
    assert_eq!(foreign.status.code(), Some(1), "{}", stderr(&foreign));
    assert!(
        stderr(&foreign).contains(": rejected: netmap is for network "),
        "{}",
        stderr(&foreign)
    );

    let missing = verify(&dir, &dir.s("absent.bin"), &["--now", "1050"]);
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));
    assert_eq!(stdout(&missing), "");
    assert!(
        stderr(&missing).starts_with(&format!(
            "wiremesh netmap verify: cannot read {}: ",
            dir.s("absent.bin")
        )),
        "{}",
        stderr(&missing)
    );

    std::fs::write(dir.s("garbage.bin"), b"not a netmap at all").unwrap();
    let garbage = verify(&dir, &dir.s("garbage.bin"), &[]);
    assert_eq!(garbage.status.code(), Some(2), "{}", stderr(&garbage));
    assert!(
        stderr(&garbage).contains("not a netmap"),
        "{}",
        stderr(&garbage)
    );

    let too_big = verify(&dir, "/dev/zero", &[]);
    assert_eq!(too_big.status.code(), Some(2), "{}", stderr(&too_big));

    let no_key = wm(&[
        "netmap",
        "verify",
        &map,
        "--keys",
        &dir.s("nowhere"),
        "--instance",
        "my-vpn",
    ]);
    assert_eq!(no_key.status.code(), Some(2), "{}", stderr(&no_key));

    let usage = wm(&["netmap", "verify", &map, "--keys", &dir.s("")]);
    assert_eq!(usage.status.code(), Some(2), "{}", stderr(&usage));
}

/// `netmap verify --json`: one object on standard output whenever the netmap was checked.
#[test]
fn netmap_verify_json_reports_the_verdict_and_the_netmap() {
    let dir = Scratch::new("verify-json");
    example_vars(&dir);
    let map = build_netmap(&dir, &[]);
    let network = ok(wm(&["pubkey", &dir.s("network.key")]));
    let network = network.trim();

    let accepted = verify(&dir, &map, &["--now", "1050", "--json"]);
    assert_eq!(accepted.status.code(), Some(0), "{}", stderr(&accepted));
    assert_eq!(stderr(&accepted), "");
    assert_eq!(
        json(&accepted),
        serde_json::json!({
            "accepted": true,
            "network": network,
            "instance": "my-vpn",
            "epoch": 5,
            "issuedAt": 1000,
            "expiresAt": 1100,
            "members": 3,
        })
    );

    let expired = verify(&dir, &map, &["--now", "1100", "--json"]);
    assert_eq!(expired.status.code(), Some(1), "{}", stderr(&expired));
    let value = json(&expired);
    assert_eq!(value["accepted"], false);
    assert_eq!(value["rejection"], "expired");
    assert_eq!(value["reason"], "expired at 1100 (now 1100)");
    assert_eq!(value["epoch"], 5);
    assert_eq!(value["members"], 3);
    assert!(
        stderr(&expired).ends_with(": rejected: expired at 1100 (now 1100)\n"),
        "{}",
        stderr(&expired)
    );

    let mut bytes = std::fs::read(&map).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(dir.s("forged.bin"), &bytes).unwrap();
    let forged = verify(&dir, &dir.s("forged.bin"), &["--now", "1050", "--json"]);
    assert_eq!(forged.status.code(), Some(1), "{}", stderr(&forged));
    let value = json(&forged);
    assert_eq!(value["accepted"], false);
    assert_eq!(value["rejection"], "badSignature");
    assert!(
        value["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("bad signature")),
        "{value}"
    );

    // Nothing was checked: the error is on standard error only, as with the CLI's other --json.
    let missing = verify(&dir, &dir.s("absent.bin"), &["--json"]);
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));
    assert_eq!(stdout(&missing), "");
}

/// Endless or huge inputs are refused after a bounded read, not read into memory whole.
#[test]
fn endless_files_are_refused() {
    let shown = wm(&["netmap", "show", "/dev/zero"]);
    assert!(!shown.status.success());
    assert_eq!(
        stderr(&shown),
        "wiremesh netmap: cannot read /dev/zero: larger than 16777216 bytes\n"
    );
    let key = wm(&["pubkey", "/dev/zero"]);
    assert!(!key.status.success());
    assert_eq!(
        stderr(&key),
        "wiremesh: key file /dev/zero: larger than 65536 bytes, so not a key file\n"
    );
}

/// The agent configuration the example inventory gives the laptop and the server's controller
/// configuration, byte for byte: the daemons, the Nix module and the documented schemas all read
/// these files.
#[test]
fn plan_output_is_golden() {
    let golden = std::fs::read_to_string(workspace_file(
        "crates/wiremesh-core/tests/agent-config.json",
    ))
    .unwrap();
    let config: serde_json::Value = serde_json::from_str(&golden).unwrap();
    let dir = Scratch::new("golden");
    let write = |relative: String, value: &str| {
        let path = dir.path(&relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, format!("{value}\n")).unwrap();
    };
    let own = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    for machine in ["laptop", "desktop", "server"] {
        let peer = config["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == machine);
        for (file, key) in [
            ("wireguard-public-key", "wireguardPublicKey"),
            ("node-public-key", "nodePublicKey"),
        ] {
            let value = peer.map_or(own, |p| p[key].as_str().unwrap());
            write(
                format!("vars/per-machine/{machine}/wiremesh-my-vpn/{file}/value"),
                value,
            );
        }
    }
    write(
        "vars/shared/wiremesh-network-my-vpn/network-public-key/value".into(),
        config["networkPublicKey"].as_str().unwrap(),
    );
    let example = workspace_file("examples/inventory.json");
    ok(plan(
        &example,
        &dir.0,
        &["--out", &dir.s("out"), "--hosts", &dir.s("out/hosts")],
    ));
    assert_eq!(
        std::fs::read_to_string(dir.path("out/laptop.json")).unwrap(),
        golden
    );
    assert_eq!(
        std::fs::read_to_string(dir.path("out/server.controller.json")).unwrap(),
        std::fs::read_to_string(workspace_file(
            "crates/wiremesh-core/tests/controller-config.json"
        ))
        .unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(dir.path("out/hosts")).unwrap(),
        "fd8c:65c0:2740:bb23:31b8:cc39:9153:22e4 desktop.my-vpn\n\
         fd8c:65c0:2740:8337:bf72:5f02:6fda:9c78 laptop.my-vpn\n\
         fd8c:65c0:2740:31b5:2523:5103:2c9b:3e7a server.my-vpn\n"
    );
}

/// `--hosts` names static IPv4 addresses too, and leaves out a controller that is no member.
#[test]
fn plan_hosts_lists_static_ipv4_and_only_members() {
    let dir = Scratch::new("hosts");
    example_vars(&dir);
    let inventory = dir.path("inventory.json");
    std::fs::write(
        &inventory,
        r#"{"machines": {"server": {}, "laptop": {}},
            "instances": {"my-vpn": {"module": {"name": "wiremesh", "input": "wiremesh"},
              "roles": {"controller": {"machines": {"server": {"settings": {"endpoint": "vpn.example.org"}}}},
                        "peer": {"machines": {"laptop": {"settings": {"ipv4": "100.96.0.7"}}}}}}}}"#,
    )
    .unwrap();
    ok(plan(&inventory, &dir.0, &["--hosts", &dir.s("hosts")]));
    assert_eq!(
        std::fs::read_to_string(dir.path("hosts")).unwrap(),
        "fd8c:65c0:2740:8337:bf72:5f02:6fda:9c78 laptop.my-vpn\n100.96.0.7 laptop.my-vpn\n"
    );
}

/// A machine name that is not one directory name is refused before any key is read or any file
/// written: `--out` would otherwise write `<out>/../evil.json`.
#[test]
fn plan_refuses_names_that_leave_the_directory() {
    let dir = Scratch::new("evil");
    let inventory = dir.path("inventory.json");
    std::fs::write(
        &inventory,
        r#"{"machines": {"server": {}, "../evil": {}},
            "instances": {"my-vpn": {"module": {"name": "wiremesh", "input": "wiremesh"},
              "roles": {"controller": {"machines": {"server": {"settings": {"endpoint": "vpn.example.org"}}}},
                        "peer": {"tags": ["all"]}}}}}"#,
    )
    .unwrap();
    let out = plan(&inventory, &dir.0, &["--out", &dir.s("out/sub")]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("machine name \"../evil\" cannot name a directory"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path("out").exists());
}
