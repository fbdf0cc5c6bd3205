//! What an agent refuses: a handshake from a key that is not a member gets no answer at all, and a
//! decrypted packet whose inner source is not the sender's address is dropped and counted, even
//! when the sender's own route covers that address (cryptokey routing: the longest prefix owns).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use wiremesh_netns_tests::{Capture, Lab, Netns, Output, TUN_NAME, serial};

/// `count` pings from `ns` to `dst` with source address `src` (one of `ns`'s own).
fn ping_as(ns: &Netns, src: IpAddr, dst: IpAddr, count: u32) -> Output {
    let (src, dst, count) = (src.to_string(), dst.to_string(), count.to_string());
    let argv = [
        "ping", "-c", &count, "-i", "0.2", "-W", "1", "-q", "-I", &src, &dst,
    ];
    ns.try_run(&argv, Duration::from_secs(10))
        .expect("ping runs")
}

#[test]
fn a_handshake_from_an_unknown_key_gets_no_response() {
    let _one_at_a_time = serial();
    let mut lab = Lab::planned(&["alpha", "beta"]);
    let intruder = lab.wireguard_go("intruder", 50, false);
    lab.start_all();
    let alpha4 = IpAddr::V4(lab.members[0].overlay4());
    lab.members[1]
        .ns
        .wait_ping(alpha4, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("the legitimate mesh does not work: {e}"));

    let alpha = &lab.members[0];
    let cap = Capture::start(
        &alpha.ns,
        "eth0",
        "udp and host 198.18.0.50",
        lab.dir(),
        "intruder",
    );
    // Six seconds of pings: wireguard-go sends an initiation at once and retries after 5 s.
    let out = intruder
        .ns
        .try_run(
            &[
                "ping",
                "-c",
                "6",
                "-i",
                "1",
                "-W",
                "1",
                "-q",
                &alpha4.to_string(),
            ],
            Duration::from_secs(20),
        )
        .expect("ping runs");
    let lines = cap.finish();
    assert!(
        !out.success(),
        "the intruder got echo replies: {}",
        out.stdout
    );
    let inbound = lines
        .iter()
        .filter(|l| l.contains("198.18.0.50.51820 > 198.18.0.11.51820"))
        .count();
    let answers: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("198.18.0.11.51820 > 198.18.0.50"))
        .collect();
    assert!(
        inbound >= 1,
        "the intruder's initiations never reached alpha: {lines:?}"
    );
    assert!(
        answers.is_empty(),
        "alpha answered an unknown key: {answers:?}"
    );
    let fields = intruder.peer_dump(&alpha.identity.wireguard_public_key().to_base64());
    assert_eq!(
        fields[4], "0",
        "wireguard-go completed a handshake: {fields:?}"
    );
    eprintln!("{inbound} initiations from the unknown key, no answer");

    // Alpha still serves its members.
    lab.members[1]
        .ns
        .wait_ping(alpha4, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("beta → alpha after the intrusion: {e}"));
}

#[test]
fn packets_whose_inner_source_is_not_the_senders_are_dropped_and_counted() {
    let _one_at_a_time = serial();
    let mut lab = Lab::planned(&["alpha", "beta"]);
    let go = lab.wireguard_go("gopher", 60, true);
    lab.start_all();
    let alpha = &lab.members[0];
    let (alpha4, alpha6) = (alpha.overlay4(), alpha.overlay6());
    go.ns
        .wait_ping(IpAddr::V4(alpha4), Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("gopher → alpha from its own address: {e}"));

    // Stock WireGuard sends whatever its TUN hands it, so gopher can claim any source: an unused
    // address of the network, and beta's address.
    let unused4 = Ipv4Addr::new(100, 77, 9, 9);
    let beta4 = lab.members[1].overlay4();
    let unused6 = Ipv6Addr::new(0xfd77, 0x77, 0, 0, 0, 0, 9, 9);
    for addr in [IpAddr::V4(unused4), IpAddr::V4(beta4), IpAddr::V6(unused6)] {
        go.wg.add_address(&go.ns, addr);
    }
    let alpha_key = alpha.identity.wireguard_public_key().to_base64();
    let tx_before: u64 = go.peer_dump(&alpha_key)[6].parse().expect("a byte count");
    let dropped_before = alpha.peer_status("gopher").dropped_spoofed;

    let cap = Capture::start(&alpha.ns, TUN_NAME, "icmp or icmp6", lab.dir(), "spoof");
    for (src, dst) in [
        (IpAddr::V4(unused4), IpAddr::V4(alpha4)),
        (IpAddr::V4(beta4), IpAddr::V4(alpha4)),
        (IpAddr::V6(unused6), IpAddr::V6(alpha6)),
    ] {
        let out = ping_as(&go.ns, src, dst, 2);
        assert!(
            !out.success(),
            "a ping from spoofed {src} was answered: {}",
            out.stdout
        );
    }
    // Control: the same tunnel still delivers gopher's own address while the capture runs.
    assert!(
        go.ns.ping_once(IpAddr::V4(alpha4)),
        "gopher's own ping failed"
    );
    let lines = cap.finish();

    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("{} > {alpha4}", go.overlay4))),
        "the capture on alpha's TUN missed the legitimate ping: {lines:?}"
    );
    let leaked: Vec<&String> = lines
        .iter()
        .filter(|l| {
            l.contains(&unused4.to_string())
                || l.contains(&format!("{beta4} > "))
                || l.contains(&unused6.to_string())
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "spoofed packets reached alpha's TUN: {leaked:?}"
    );
    let tx_after: u64 = go.peer_dump(&alpha_key)[6].parse().expect("a byte count");
    assert!(
        tx_after >= tx_before + 6 * 96,
        "wireguard-go did not send the spoofed pings into the tunnel ({tx_before} → {tx_after} bytes)"
    );
    let dropped_after = alpha.peer_status("gopher").dropped_spoofed;
    assert!(
        dropped_after >= dropped_before + 6,
        "alpha counted {} spoofed drops for 6 spoofed packets",
        dropped_after - dropped_before
    );
}

#[test]
fn a_member_whose_route_covers_another_members_address_cannot_send_as_it() {
    let _one_at_a_time = serial();
    let mut lab = Lab::planned(&["alpha", "beta"]);
    let go = lab.wireguard_go("router", 70, true);
    // The router advertises 100.77.0.0/24, which holds beta's address: beta's /32 is longer.
    let route = "100.77.0.0/24".parse().expect("a prefix");
    for m in &mut lab.members {
        let mut config = m
            .config
            .clone()
            .expect("a planned member has a configuration");
        for peer in config.peers.iter_mut().filter(|p| p.name == "router") {
            peer.routes = vec![route];
        }
        m.write_config(config);
    }
    lab.start_all();
    let alpha = &lab.members[0];
    let alpha4 = alpha.overlay4();
    let beta4 = lab.members[1].overlay4();
    assert!(
        route.contains(&IpAddr::V4(beta4)),
        "beta {beta4} is outside {route}"
    );
    go.ns
        .wait_ping(IpAddr::V4(alpha4), Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("router → alpha from its own address: {e}"));

    // An address of the route that no member holds is the router's; beta's is not.
    let routed = Ipv4Addr::new(100, 77, 0, 200);
    for addr in [routed, beta4] {
        go.wg.add_address(&go.ns, IpAddr::V4(addr));
    }
    let dropped_before = alpha.peer_status("router").dropped_spoofed;
    let cap = Capture::start(&alpha.ns, TUN_NAME, "icmp", lab.dir(), "route-spoof");
    let routed_ping = ping_as(&go.ns, IpAddr::V4(routed), IpAddr::V4(alpha4), 3);
    let spoofed_ping = ping_as(&go.ns, IpAddr::V4(beta4), IpAddr::V4(alpha4), 3);
    let lines = cap.finish();
    assert!(
        routed_ping.success(),
        "a ping from the router's routed {routed} was not answered: {}",
        routed_ping.stdout
    );
    assert!(
        !spoofed_ping.success(),
        "a ping from beta's {beta4} sent by the router was answered: {}",
        spoofed_ping.stdout
    );
    let leaked: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(&format!("{beta4} > ")))
        .collect();
    assert!(
        leaked.is_empty(),
        "beta's address came out of the router's tunnel: {leaked:?}"
    );
    let dropped = alpha.peer_status("router").dropped_spoofed - dropped_before;
    assert!(
        dropped >= 3,
        "alpha counted {dropped} spoofed drops for 3 pings as beta"
    );
    // Beta itself is still beta.
    lab.members[1]
        .ns
        .wait_ping(IpAddr::V4(alpha4), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("beta → alpha: {e}"));
}
