//! A stock WireGuard peer (Debian's wireguard-go, configured with `wg`) that knows a wiremesh
//! agent's public key and addresses passes traffic with it both ways, whichever side starts.

use std::net::IpAddr;
use std::time::Duration;

use wiremesh_netns_tests::{Lab, serial, tcp_transfer};

const MIB: u64 = 1 << 20;

#[test]
fn wiremesh_starts_the_session_with_wireguard_go_and_traffic_flows_both_ways() {
    let _one_at_a_time = serial();
    let mut lab = Lab::direct(&["alpha"]);
    let go = lab.wireguard_go("gopher", 60, true);
    lab.start_all();
    let alpha = &lab.members[0];

    alpha
        .ns
        .wait_ping(IpAddr::V4(go.overlay4), Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("wiremesh → wireguard-go: {e}"));
    alpha
        .ns
        .wait_ping(IpAddr::V6(go.overlay6), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("wiremesh → wireguard-go over IPv6: {e}"));
    go.ns
        .wait_ping(IpAddr::V4(alpha.overlay4()), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("wireguard-go → wiremesh: {e}"));

    for (from, to, addr, what) in [
        (
            &alpha.ns,
            &go.ns,
            IpAddr::V4(go.overlay4),
            "wiremesh → wireguard-go",
        ),
        (
            &go.ns,
            &alpha.ns,
            IpAddr::V6(alpha.overlay6()),
            "wireguard-go → wiremesh",
        ),
    ] {
        let t = tcp_transfer(from, to, addr, 5201, 10 * MIB, Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("10 MiB {what}: {e}"));
        assert_eq!(t.received_bytes, 10 * MIB, "{what}");
        assert_eq!(
            t.sent_sha256, t.received_sha256,
            "{what}: the data arrived altered"
        );
    }

    let fields = go.peer_dump(&alpha.identity.wireguard_public_key().to_base64());
    assert_ne!(
        fields[4], "0",
        "wireguard-go reports no handshake: {fields:?}"
    );
    let entry = alpha.peer_status("gopher");
    assert!(
        entry.rx_bytes > 10 * MIB,
        "alpha's status does not count what wireguard-go sent: {entry:?}"
    );
}

#[test]
fn wireguard_go_starts_the_session_with_wiremesh() {
    let _one_at_a_time = serial();
    let mut lab = Lab::direct(&["alpha"]);
    let go = lab.wireguard_go("gopher", 60, true);
    lab.start_all();
    let alpha = &lab.members[0];
    go.ns
        .wait_ping(IpAddr::V6(alpha.overlay6()), Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("wireguard-go → wiremesh over IPv6: {e}"));
    alpha
        .ns
        .wait_ping(IpAddr::V4(go.overlay4), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("wiremesh → wireguard-go: {e}"));
    let entry = alpha.peer_status("gopher");
    assert_eq!(
        entry.endpoint.as_deref(),
        Some("198.18.0.60:51820"),
        "alpha's status: {entry:?}"
    );
}
