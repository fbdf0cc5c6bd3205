//! The harness itself: namespaces disappear even after a panic, commands and waits are bounded,
//! and the underlay, netem, capture, TCP transfer and wireguard-go helpers do what the agent tests
//! rely on. None of these needs the wiremesh binaries.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use wiremesh_netns_tests::{
    Capture, Netns, WgGo, namespaces, run_bounded, tcp_transfer, veth, wait_until,
};

fn namespace_exists(name: &str) -> bool {
    namespaces()
        .expect("ip netns list runs")
        .iter()
        .any(|n| n == name)
}

fn pair() -> (Netns, Netns) {
    let a = Netns::new("a");
    let b = Netns::new("b");
    veth(&a, "eth0", &b, "eth0");
    a.ip(&["addr", "add", "198.18.1.1/24", "dev", "eth0"]);
    b.ip(&["addr", "add", "198.18.1.2/24", "dev", "eth0"]);
    a.ip(&["addr", "add", "fd00:1::1/64", "dev", "eth0", "nodad"]);
    b.ip(&["addr", "add", "fd00:1::2/64", "dev", "eth0", "nodad"]);
    (a, b)
}

#[test]
fn namespaces_and_their_processes_are_removed_even_when_a_test_panics() {
    let mut seen = String::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let ns = Netns::new("doomed");
        seen = ns.name().to_owned();
        assert!(namespace_exists(&seen));
        let log = tempfile::NamedTempFile::new().unwrap();
        let _sleeper = ns.spawn("sleeper", &["sleep", "600"], &[], log.path());
        panic!("deliberate");
    }));
    assert!(result.is_err());
    assert!(seen.starts_with("wmt-"), "unexpected name {seen}");
    assert!(!namespace_exists(&seen), "{seen} survived the panic");
}

#[test]
fn a_namespaces_etc_netns_dir_goes_with_it() {
    // `ip netns exec` mounts /etc/netns/<name>/* over /etc; `ip netns del` leaves the directory.
    let parent = Path::new("/etc/netns");
    let made_parent = !parent.exists();
    let ns = Netns::new("etc");
    let dir = parent.join(ns.name());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("resolv.conf"), "nameserver 198.18.0.53\n").unwrap();
    drop(ns);
    let survived = dir.exists();
    let _ = std::fs::remove_dir_all(&dir);
    if made_parent {
        let _ = std::fs::remove_dir(parent);
    }
    assert!(!survived, "{} survived its namespace", dir.display());
}

#[test]
fn names_are_unique_per_process_and_counter() {
    let a = Netns::new("same");
    let b = Netns::new("same");
    assert_ne!(a.name(), b.name());
    assert!(a.name().contains(&std::process::id().to_string()));
}

#[test]
fn a_command_that_overruns_its_bound_is_killed() {
    let start = std::time::Instant::now();
    let err = run_bounded(Command::new("sleep").arg("30"), Duration::from_millis(300)).unwrap_err();
    assert!(err.contains("did not finish"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5));
    let waited = wait_until("never", Duration::from_millis(200), || false).unwrap_err();
    assert!(waited.contains("timed out"), "{waited}");
}

#[test]
fn veth_underlay_carries_ping_and_a_tcp_transfer_with_matching_sha256() {
    let (a, b) = pair();
    a.wait_ping("198.18.1.2".parse().unwrap(), Duration::from_secs(5))
        .unwrap();
    a.wait_ping("fd00:1::2".parse().unwrap(), Duration::from_secs(5))
        .unwrap();
    let t = tcp_transfer(
        &a,
        &b,
        "fd00:1::2".parse().unwrap(),
        5201,
        8 << 20,
        Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(t.received_bytes, 8 << 20);
    assert_eq!(t.sent_sha256, t.received_sha256);
}

#[test]
fn random_loss_drops_about_the_requested_share() {
    let (a, _b) = pair();
    let dst = "198.18.1.2";
    a.wait_ping(dst.parse().unwrap(), Duration::from_secs(5))
        .unwrap();
    a.random_loss("eth0", 30);
    // 200 echoes each cross the rule twice (request out, reply in): about 51 % are lost.
    let out = a
        .try_run(
            &["ping", "-c", "200", "-i", "0.005", "-W", "1", "-q", dst],
            Duration::from_secs(30),
        )
        .unwrap();
    let received: u32 = out
        .stdout
        .split(", ")
        .find_map(|part| part.strip_suffix(" received"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no 'received' count in {}", out.stdout));
    assert!(
        (40..=160).contains(&received),
        "{received} of 200 echoes came back"
    );
}

#[test]
fn capture_sees_the_packets_that_cross_the_link() {
    let (a, b) = pair();
    let dir = tempfile::tempdir().unwrap();
    let cap = Capture::start(&b, "eth0", "icmp", dir.path(), "icmp");
    assert!(a.ping_once("198.18.1.2".parse().unwrap()));
    let lines = cap.finish();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("198.18.1.1 > 198.18.1.2: ICMP echo request")),
        "{lines:?}"
    );
}

#[test]
fn two_wireguard_go_peers_configured_by_wg_pass_traffic() {
    let (a, b) = pair();
    let dir = tempfile::tempdir().unwrap();
    let wa = WgGo::start(&a, dir.path(), 51820);
    let wb = WgGo::start(&b, dir.path(), 51820);
    let ep = |s: &str| SocketAddr::new(s.parse().unwrap(), 51820);
    wa.set_peer(
        &a,
        wb.public_key(),
        ep("198.18.1.2"),
        &["100.66.0.2/32"],
        None,
    );
    wb.set_peer(
        &b,
        wa.public_key(),
        ep("198.18.1.1"),
        &["100.66.0.1/32"],
        None,
    );
    wa.up(&a, &["100.66.0.1/24"], 1420);
    wb.up(&b, &["100.66.0.2/24"], 1420);
    a.wait_ping("100.66.0.2".parse().unwrap(), Duration::from_secs(10))
        .unwrap();
    assert!(wa.dump(&a).contains(wb.public_key()));
}
