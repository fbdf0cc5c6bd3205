//! `wiremesh netmap verify` as scripts use it: exit 0 accepted, 1 refused, 2 not checked; the
//! refusal on standard error; `--json` one object on standard output whenever the netmap was checked.

use std::path::PathBuf;
use std::process::Output;

use wiremesh_tests::{run, wiremesh, workspace_file};

/// A scratch directory removed on drop (also when the test fails).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "wiremesh-netmap-verify-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn s(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_string()
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

fn ok(o: Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    stdout(&o)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes `value` to `relative` below the scratch directory, creating its parents.
fn put(dir: &Scratch, relative: &str, value: &str) {
    let path = dir.0.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, value).unwrap();
}

/// Vars for the example inventory's machines and a netmap `map.bin` of instance my-vpn signed
/// with `network.key`: epoch 5, issued at 1000, expiring at 1100. Returns the network public key.
fn signed_netmap(dir: &Scratch) -> String {
    for machine in ["server", "laptop", "desktop"] {
        let id = dir.s(&format!("{machine}.id"));
        ok(wm(&["keygen", "--out", &id]));
        for (flag, file) in [
            ("--wireguard", "wireguard-public-key"),
            ("--node", "node-public-key"),
        ] {
            let key = ok(wm(&["pubkey", flag, &id]));
            put(
                dir,
                &format!("vars/per-machine/{machine}/wiremesh-my-vpn/{file}/value"),
                &key,
            );
        }
    }
    ok(wm(&["keygen", "--network", "--out", &dir.s("network.key")]));
    let network = ok(wm(&["pubkey", &dir.s("network.key")]));
    put(
        dir,
        "vars/shared/wiremesh-network-my-vpn/network-public-key/value",
        &network,
    );
    let inventory = workspace_file("examples/inventory.json");
    ok(wm(&[
        "netmap",
        "build",
        "--inventory",
        inventory.to_str().unwrap(),
        "--instance",
        "my-vpn",
        "--keys",
        &dir.s(""),
        "--network-key",
        &dir.s("network.key"),
        "--epoch",
        "5",
        "--issued-at",
        "1000",
        "--valid-for",
        "100",
        "--out",
        &dir.s("map.bin"),
    ]));
    network.trim().to_string()
}

/// `wiremesh netmap verify FILE --keys DIR --instance my-vpn EXTRA`.
fn verify(dir: &Scratch, file: &str, extra: &[&str]) -> Output {
    let keys = dir.s("");
    let mut args = vec![
        "netmap",
        "verify",
        file,
        "--keys",
        &keys,
        "--instance",
        "my-vpn",
    ];
    args.extend_from_slice(extra);
    wm(&args)
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(o)))
}

#[test]
fn exit_status_tells_accepted_refused_and_unchecked_apart() {
    let dir = Scratch::new("status");
    signed_netmap(&dir);
    let map = dir.s("map.bin");

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

#[test]
fn json_reports_the_verdict_and_the_netmap() {
    let dir = Scratch::new("json");
    let network = signed_netmap(&dir);
    let map = dir.s("map.bin");

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
