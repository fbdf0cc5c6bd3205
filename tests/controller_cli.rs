//! The `wiremesh-controller` binary: `run` tells systemd it is ready, answers `status`, `token
//! create`, `device add` and `revoke` on its admin socket and stops cleanly on SIGTERM; a damaged
//! store or a bad configuration stops it at start with a message naming the file.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use wiremesh_core::config::{Addresses, Networks};
use wiremesh_core::controller_config::{ControllerFile, DynamicIp, MemberConfig};
use wiremesh_core::keys::{Identity, NetworkKey, NodeSecret, WireguardSecret};
use wiremesh_tests::{run, wiremesh_controller};

/// Every wait here ends after this long at most.
const BOUND: Duration = Duration::from_secs(60);

/// A scratch directory removed on drop (also when the test fails).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "wiremesh-controller-cli-{name}-{}",
            std::process::id()
        ));
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

/// A free UDP port on loopback (bound and released; nothing else on this machine takes it).
fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn member(name: &str, seed: u8, ipv4: Option<&str>) -> MemberConfig {
    MemberConfig {
        name: name.into(),
        wireguard_public_key: WireguardSecret::from_bytes([seed; 32]).public_key(),
        node_public_key: NodeSecret::from_seed([seed; 32]).public_key(),
        addresses: Addresses {
            ipv4: ipv4.map(|a| a.parse().unwrap()),
            ipv6: format!("fd12:3456:789a::{seed}").parse().unwrap(),
        },
        endpoints: vec![format!("198.18.0.{seed}:51820")],
        routes: vec![],
        controller: name == "server",
    }
}

/// Writes the configuration, network key and identity; returns the `run` arguments.
fn setup(dir: &Scratch, port: u16) -> Vec<String> {
    let network = NetworkKey::new(wiremesh_core::keys::NetworkSecret::from_seed([200; 32]));
    let config = ControllerFile {
        version: 1,
        instance: "my-vpn".into(),
        machine: "server".into(),
        endpoint: "127.0.0.1".into(),
        control_port: port,
        relay: Default::default(),
        network: Networks {
            ipv4: Some("100.77.0.0/16".parse().unwrap()),
            ipv6: "fd12:3456:789a::/48".parse().unwrap(),
        },
        dynamic_ip: DynamicIp {
            enable: true,
            range: None,
        },
        network_public_key: network.public_key(),
        network_key_path: dir.s("network.key"),
        members: vec![
            member("laptop", 2, None),
            member("server", 1, Some("100.77.0.1")),
        ],
    };
    std::fs::write(dir.path("server.controller.json"), config.to_json()).unwrap();
    std::fs::write(dir.path("network.key"), network.to_file_text().as_bytes()).unwrap();
    let identity = Identity::new(
        WireguardSecret::from_bytes([1; 32]),
        NodeSecret::from_seed([1; 32]),
    );
    std::fs::write(dir.path("identity"), identity.to_file_text().as_bytes()).unwrap();
    for file in ["network.key", "identity"] {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir.path(file), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    [
        "run",
        "--config",
        &dir.s("server.controller.json"),
        "--network-key",
        &dir.s("network.key"),
        "--identity",
        &dir.s("identity"),
        "--state-dir",
        &dir.s("state"),
        "--relay-listen",
        "127.0.0.1:0",
    ]
    .map(String::from)
    .to_vec()
}

/// Kills the daemon if a test fails before stopping it.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn admin(dir: &Scratch, args: &[&str]) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    let state = dir.s("state");
    all.extend(["--state-dir", &state]);
    run(&wiremesh_controller(), &all, None)
}

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn run_notifies_systemd_answers_the_admin_and_stops_on_sigterm() {
    let dir = Scratch::new("run");
    let args = setup(&dir, free_port());
    let notify = UnixDatagram::bind(dir.path("notify.sock")).unwrap();
    notify.set_read_timeout(Some(BOUND)).unwrap();
    let child = Command::new(wiremesh_controller())
        .args(&args)
        .env("NOTIFY_SOCKET", dir.path("notify.sock"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut daemon = Daemon(child);
    let mut buf = [0u8; 64];
    let n = notify.recv(&mut buf).expect("READY=1 within the bound");
    assert_eq!(&buf[..n], b"READY=1");

    let socket = dir.path("state/admin.sock");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let status: serde_json::Value =
        serde_json::from_str(&ok(admin(&dir, &["status", "--json"]))).unwrap();
    assert_eq!(status["instance"], "my-vpn");
    assert_eq!(status["epoch"], 1);
    assert_eq!(status["members"].as_array().unwrap().len(), 2);
    // The relay listens where --relay-listen said, with nobody bound yet.
    assert_ne!(status["relay"]["port"], 0);
    assert_eq!(status["relay"]["bound"], serde_json::json!([]));
    assert_eq!(status["relay"]["drops"]["not-a-member"], 0);

    let token = ok(admin(
        &dir,
        &["token", "create", "--name", "phone", "--ttl", "1h"],
    ));
    assert!(
        token.starts_with("wmjoin2.") && token.ends_with('\n') && token.lines().count() == 1,
        "{token}"
    );
    let bad_ttl = admin(&dir, &["token", "create", "--name", "tv", "--ttl", "soon"]);
    assert!(!bad_ttl.status.success());
    assert!(String::from_utf8_lossy(&bad_ttl.stderr).contains("--ttl: \"soon\" is not a duration"));

    let device = ok(admin(&dir, &["device", "add", "tablet"]));
    assert!(device.contains("[Interface]\nPrivateKey = "), "{device}");
    assert!(device.contains("Address = 100.77.0.2/32"), "{device}");
    assert!(
        device.contains('█') || device.contains('▀'),
        "no QR code:\n{device}"
    );

    assert_eq!(
        ok(admin(&dir, &["revoke", "laptop"])),
        "revoked laptop; epoch 3 tells the members\n"
    );
    let again = admin(&dir, &["revoke", "laptop"]);
    assert!(!again.status.success());
    assert_eq!(
        String::from_utf8_lossy(&again.stderr),
        "wiremesh-controller: \"laptop\" is already revoked\n"
    );
    let text = ok(admin(&dir, &["status"]));
    assert!(text.contains("laptop\tinventory\t-\t"), "{text}");
    assert!(text.contains("\trevoked\t"), "{text}");
    assert!(text.contains(": 0 members bound\n"), "{text}");
    assert!(
        text.contains("tablet\tdevice\t100.77.0.2 (lease)"),
        "{text}"
    );
    assert!(text.contains("join token for phone valid until"), "{text}");

    // SIGHUP: a member added to the configuration shows up; nothing else changes.
    let pid = i32::try_from(daemon.0.id()).unwrap();
    let config_path = dir.path("server.controller.json");
    let mut config =
        ControllerFile::from_json(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config.members.push(member("desktop", 3, None));
    std::fs::write(&config_path, config.to_json()).unwrap();
    signal(pid, libc::SIGHUP);
    let deadline = Instant::now() + BOUND;
    while !ok(admin(&dir, &["status"])).contains("desktop	inventory	-	") {
        assert!(
            Instant::now() < deadline,
            "desktop not added within {BOUND:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    signal(pid, libc::SIGTERM);
    let deadline = Instant::now() + BOUND;
    let status = loop {
        if let Some(status) = daemon.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "no exit within {BOUND:?} of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert!(!socket.exists(), "the admin socket is left behind");

    // The store kept everything: the lease and the revocation are still there after a restart,
    // here with the network key found through the configuration's networkKeyPath.
    let at = args.iter().position(|a| a == "--network-key").unwrap();
    let mut args = args;
    args.drain(at..at + 2);
    let mut child = Command::new(wiremesh_controller())
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + BOUND;
    while !socket.exists() {
        assert!(
            Instant::now() < deadline,
            "no admin socket within {BOUND:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = ok(admin(&dir, &["status"]));
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        text.contains("tablet\tdevice\t100.77.0.2 (lease)"),
        "{text}"
    );
    assert!(text.contains("\trevoked\t"), "{text}");
    assert!(text.contains(": 0 members bound\n"), "{text}");
}

fn signal(pid: i32, signal: i32) {
    // SAFETY: kill(2) with a child's pid and a signal number has no memory effects.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

fn run_fails(args: &[String]) -> String {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&wiremesh_controller(), &args, None);
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_damaged_store_or_a_bad_config_stops_the_start() {
    let dir = Scratch::new("damaged");
    let args = setup(&dir, free_port());
    std::fs::create_dir_all(dir.path("state")).unwrap();
    let store = dir.path("state/controller.sqlite");
    std::fs::write(&store, vec![0x42; 4096]).unwrap();
    let err = run_fails(&args);
    assert!(
        err.contains(&format!("store {}: ", store.display())) && err.contains("will not start"),
        "{err}"
    );
    std::fs::write(&store, b"").unwrap();
    assert!(run_fails(&args).contains("the file is empty"));
    std::fs::remove_file(&store).unwrap();

    let config = dir.path("server.controller.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("\"controller\": false", "\"controler\": false"),
    )
    .unwrap();
    let err = run_fails(&args);
    assert!(
        err.contains(&format!(
            "{}: \"members\"[0].\"controler\": unknown field",
            config.display()
        )),
        "{err}"
    );
    assert!(!Path::new(&store).exists(), "nothing was created");
}
