//! A mesh of wiremesh agents in namespaces, configured by `wiremesh keygen` and `wiremesh plan`: every pair talks over IPv4 and IPv6, bulk TCP arrives
//! intact, a restarted agent is reconnected by the others, a member that changes its underlay
//! address is followed, and TCP survives a lossy underlay.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use wiremesh_netns_tests::{Lab, Netns, TUN_NAME, Transfer, serial, tcp_transfer};

const MIB: u64 = 1 << 20;

/// Sends `bytes` over TCP from `from` to `dst` (an address in `to`) within `timeout`; panics,
/// naming `what`, unless every byte arrives unaltered.
fn transfer_intact(
    from: &Netns,
    to: &Netns,
    dst: IpAddr,
    port: u16,
    bytes: u64,
    timeout: Duration,
    what: &str,
) -> Transfer {
    let t =
        tcp_transfer(from, to, dst, port, bytes, timeout).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(t.received_bytes, bytes, "{what}: bytes received");
    assert_eq!(
        t.sent_sha256, t.received_sha256,
        "{what}: the data arrived altered"
    );
    t
}

#[test]
fn three_members_ping_every_pair_over_ipv4_and_ipv6_and_move_50_mb_intact() {
    let _one_at_a_time = serial();
    let mut lab = Lab::planned(&["alpha", "beta", "gamma"]);
    lab.start_all();
    lab.assert_all_pairs_ping();

    let (from, to) = (&lab.members[0], &lab.members[2]);
    let t = transfer_intact(
        &from.ns,
        &to.ns,
        IpAddr::V4(to.overlay4()),
        5201,
        50 * MIB,
        Duration::from_secs(180),
        "50 MiB alpha → gamma",
    );
    eprintln!("50 MiB alpha → gamma over IPv4 in {:?}", t.elapsed);

    transfer_intact(
        &to.ns,
        &lab.members[1].ns,
        IpAddr::V6(lab.members[1].overlay6()),
        5202,
        10 * MIB,
        Duration::from_secs(120),
        "10 MiB gamma → beta over IPv6",
    );

    let beta = from.peer_status("beta");
    assert!(
        beta.latest_handshake_unix.is_some(),
        "no handshake with beta: {beta:?}"
    );
    assert!(beta.tx_bytes > 0, "no bytes sent to beta: {beta:?}");
    assert!(beta.direct, "beta's path is not direct: {beta:?}");
    // The CLI prints the same status: one array element per agent.
    let json = from.status_json();
    let names: Vec<&str> = json[0]["members"]
        .as_array()
        .map(|ms| ms.iter().filter_map(|m| m["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["beta", "gamma"], "wiremesh status --json: {json}");
    let text = from.status_text();
    assert!(
        text.contains("beta") && text.contains("gamma"),
        "wiremesh status: {text}"
    );
    let gamma = from.peer_status("gamma");
    assert!(
        gamma.tx_bytes > 50 * MIB,
        "alpha's status does not count the 50 MiB sent to gamma: {gamma:?}"
    );
}

#[test]
fn members_whose_endpoints_are_on_the_ipv6_underlay_pass_ipv4_and_ipv6_traffic() {
    let _one_at_a_time = serial();
    let mut lab = Lab::planned_over_ipv6(&["alpha", "beta"]);
    lab.start_all();
    lab.assert_all_pairs_ping();
    let beta = &lab.members[1];
    transfer_intact(
        &lab.members[0].ns,
        &beta.ns,
        IpAddr::V4(beta.overlay4()),
        5201,
        10 * MIB,
        Duration::from_secs(120),
        "10 MiB alpha → beta over the IPv6 underlay",
    );
    let entry = lab.members[0].peer_status("beta");
    assert_eq!(
        entry.endpoint.as_deref(),
        Some(format!("[{}]:51820", beta.underlay6).as_str()),
        "alpha's status: {entry:?}"
    );
}

#[test]
fn a_restarted_agent_is_reconnected_by_the_others_without_action() {
    let _one_at_a_time = serial();
    let mut lab = Lab::planned(&["alpha", "beta", "gamma"]);
    lab.start_all();
    lab.assert_all_pairs_ping();

    let beta4 = IpAddr::V4(lab.members[1].overlay4());
    let status = lab.member("beta").stop();
    assert!(
        status.success(),
        "beta's agent did not exit cleanly on SIGTERM: {status}"
    );
    assert!(
        !lab.members[1].ns.run(&["ip", "link"]).contains(TUN_NAME),
        "beta's agent left its TUN device behind"
    );
    assert!(
        !lab.members[0].ns.ping_once(beta4),
        "beta answered while stopped"
    );

    lab.member("beta").start();
    let restarted = Instant::now();
    // Only beta's side is new: alpha and gamma keep their old sessions and must recover alone.
    for i in [0, 2] {
        let m = &lab.members[i];
        let took =
            m.ns.wait_ping(beta4, Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("{} → restarted beta: {e}", m.name));
        eprintln!("{} → beta works again {took:?} after the restart", m.name);
        let back = IpAddr::V6(m.overlay6());
        lab.members[1]
            .ns
            .wait_ping(back, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("restarted beta → {}: {e}", m.name));
    }
    eprintln!("all pairs with beta recovered in {:?}", restarted.elapsed());
}

#[test]
fn a_member_that_moves_to_another_underlay_address_is_reachable_again_within_5_s() {
    let _one_at_a_time = serial();
    let mut lab = Lab::planned(&["alpha", "beta", "gamma"]);
    lab.start_all();
    lab.assert_all_pairs_ping();

    let new_addr = "198.18.0.113".parse().unwrap();
    lab.member("gamma").move_underlay4(new_addr);
    let moved = Instant::now();
    let budget = Duration::from_secs(5);
    let gamma = &lab.members[2];
    for (i, peer) in lab.members.iter().enumerate().take(2) {
        let left = budget.saturating_sub(moved.elapsed());
        gamma
            .ns
            .wait_ping(IpAddr::V4(peer.overlay4()), left)
            .unwrap_or_else(|e| panic!("gamma → {} after the move (member {i}): {e}", peer.name));
        let left = budget.saturating_sub(moved.elapsed());
        peer.ns
            .wait_ping(IpAddr::V6(gamma.overlay6()), left)
            .unwrap_or_else(|e| panic!("{} → gamma after the move: {e}", peer.name));
    }
    eprintln!(
        "traffic resumed both ways {:?} after the move",
        moved.elapsed()
    );
    for peer in &lab.members[..2] {
        let entry = peer.peer_status("gamma");
        assert_eq!(
            entry.endpoint.as_deref(),
            Some("198.18.0.113:51820"),
            "{} did not learn gamma's new endpoint: {entry:?}",
            peer.name
        );
    }
}

#[test]
fn tcp_completes_over_an_underlay_that_loses_5_percent_of_packets() {
    let _one_at_a_time = serial();
    let mut lab = Lab::planned(&["alpha", "beta"]);
    // Both directions of alpha's underlay link lose 5 %, from before the first handshake on.
    lab.members[0].ns.random_loss("eth0", 5);
    lab.start_all();
    let beta = &lab.members[1];
    lab.members[0]
        .ns
        .wait_ping(IpAddr::V4(beta.overlay4()), Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("alpha → beta under 5 % loss: {e}"));
    let t = transfer_intact(
        &lab.members[0].ns,
        &beta.ns,
        IpAddr::V4(beta.overlay4()),
        5201,
        10 * MIB,
        Duration::from_secs(240),
        "10 MiB alpha → beta under 5 % loss",
    );
    let dropped = lab.members[0].ns.random_loss_dropped();
    assert!(dropped > 0, "the loss rule dropped nothing");
    eprintln!(
        "10 MiB under 5 % loss in {:?}; {dropped} underlay packets (GSO trains count once) dropped",
        t.elapsed
    );
}
