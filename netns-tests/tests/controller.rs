//! Agents under a running `wiremesh-controller`: enrollment and a leased IPv4 address reached by
//! every pair, a member added to the inventory and reached without restarting anyone, the tunnels
//! outliving the controller (and an agent restarted from its cache meanwhile), revocation, join
//! tickets (once, not twice, not expired) and a wg-quick credential for a stock WireGuard peer.

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use serde_json::Value;
use wiremesh_netns_tests::{LEASE_RANGE, Lab, Member, TUN_NAME, serial, wait_for, wait_until};

/// How long an agent may take to enroll and hold its leased address.
const LEASE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a change the controller makes (a member added, a member revoked) may take to reach
/// the agents' data path.
const PUSH_BOUND: Duration = Duration::from_secs(5);
/// How long a ping between members may take once both are up.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// A planned lab (the first member is the controller, the `leased` ones have no static IPv4)
/// with its controller and every agent started, and the leased members holding their leases.
fn controlled_lab(names: &[&str], leased: &[&str]) -> Lab {
    let mut lab = Lab::planned_with_controller(names, leased);
    lab.start_controller();
    lab.start_all();
    let range: Ipv4Net = LEASE_RANGE.parse().expect("a valid prefix");
    for name in leased {
        let lease = lab.member(name).wait_for_ipv4(LEASE_TIMEOUT);
        assert!(
            range.contains(&lease),
            "{name} holds {lease}, outside the lease range {range}"
        );
    }
    lab
}

/// `wiremesh status --json` on `m`: the one agent's entry.
fn agent_status(m: &Member) -> Value {
    let json = m.status_json();
    match json.as_array().map(Vec::as_slice) {
        Some([one]) => one.clone(),
        _ => panic!(
            "wiremesh status --json on {} lists other than one agent: {json}",
            m.name
        ),
    }
}

/// The one controller entry of `wiremesh status --json` on `m`.
fn controller_entry(m: &Member) -> Value {
    let status = agent_status(m);
    let controllers = status["controllers"].as_array().unwrap_or_else(|| {
        panic!(
            "no \"controllers\" list in the status of {}: {status}",
            m.name
        )
    });
    assert_eq!(
        controllers.len(),
        1,
        "{} lists other than one controller: {status}",
        m.name
    );
    controllers[0].clone()
}

/// Waits (bounded) until `m`'s status says its controller connection stands as `connected`;
/// returns the entry.
fn wait_controller_connected(m: &Member, connected: bool, timeout: Duration) -> Value {
    let mut entry = Value::Null;
    let waited = wait_until(
        &format!("{} to show its controller connected={connected}", m.name),
        timeout,
        || {
            entry = controller_entry(m);
            entry["connected"] == Value::Bool(connected)
        },
    );
    if let Err(e) = waited {
        panic!("{e}: {entry}\nlog:\n{}", m.agent_log());
    }
    entry
}

/// The entry for `name` in `wiremesh-controller status --json`.
fn controller_member(lab: &Lab, name: &str) -> Value {
    let status = lab.controller_status();
    status["members"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no member {name} in wiremesh-controller status: {status}"))
}

/// The netmap epoch `m`'s agent runs from.
fn netmap_epoch(m: &Member) -> u64 {
    let status = agent_status(m);
    assert_eq!(
        status["source"]["kind"], "netmap",
        "{} runs from no netmap: {status}",
        m.name
    );
    status["source"]["epoch"]
        .as_u64()
        .unwrap_or_else(|| panic!("no epoch in the status of {}: {status}", m.name))
}

/// True when `ip addr` shows `addr` on `m`'s tunnel interface.
fn tun_holds(m: &Member, addr: Ipv4Addr) -> bool {
    m.ns.run(&["ip", "-4", "addr", "show", "dev", TUN_NAME])
        .contains(&format!("inet {addr}/"))
}

#[test]
fn peers_enroll_and_every_pair_pings_including_a_leased_address() {
    let _one_at_a_time = serial();
    let mut lab = controlled_lab(&["alpha", "beta", "gamma", "delta"], &["delta"]);
    let lease = lab.member("delta").overlay4();
    assert!(
        tun_holds(lab.member("delta"), lease),
        "delta's {TUN_NAME} does not hold its lease {lease}"
    );
    lab.assert_all_pairs_ping();

    let controller = lab.members[0].name.clone();
    let endpoint = format!("{}:51821", lab.members[0].underlay4);
    for m in &lab.members {
        let entry = wait_controller_connected(m, true, LEASE_TIMEOUT);
        assert_eq!(entry["name"], controller.as_str(), "{}: {entry}", m.name);
        assert_eq!(entry["endpoint"], endpoint.as_str(), "{}: {entry}", m.name);
        assert_eq!(entry["lastError"], Value::Null, "{}: {entry}", m.name);
        netmap_epoch(m);
    }

    let status = lab.controller_status();
    let delta = controller_member(&lab, "delta");
    assert_eq!(delta["leased"], true, "{status}");
    assert_eq!(delta["ipv4"], lease.to_string().as_str(), "{status}");
    let beta = controller_member(&lab, "beta");
    assert_eq!(beta["leased"], false, "{status}");
    assert_eq!(beta["ipv4"], "100.77.0.2", "{status}");
    for m in &lab.members {
        assert!(
            !controller_member(&lab, &m.name)["connection"].is_null(),
            "{} is not shown connected: {status}",
            m.name
        );
    }
    assert!(status["epoch"].as_u64().is_some_and(|e| e > 0), "{status}");
}

#[test]
fn a_member_added_to_the_inventory_is_reached_without_restarting_the_others() {
    let _one_at_a_time = serial();
    let mut lab = controlled_lab(&["alpha", "beta", "gamma"], &["gamma"]);
    let old: Vec<(String, i32)> = lab
        .members
        .iter()
        .map(|m| {
            (
                m.name.clone(),
                m.agent_pid().expect("the agent was started"),
            )
        })
        .collect();
    let epoch = netmap_epoch(&lab.members[1]);

    lab.add_planned_member("delta", false);
    let logged = lab.reload_controller();
    assert!(
        logged.contains("added [delta]"),
        "the controller's reload did not add delta:\n{logged}"
    );
    lab.member("delta").start();
    let started = Instant::now();
    let delta4 = IpAddr::V4(lab.member("delta").overlay4());
    for (name, _) in &old {
        let m = &lab
            .members
            .iter()
            .find(|m| &m.name == name)
            .expect("a member");
        let left = PUSH_BOUND.saturating_sub(started.elapsed());
        m.ns.wait_ping(delta4, left).unwrap_or_else(|e| {
            panic!(
                "{name} → delta within {PUSH_BOUND:?} of its start: {e}\nlog of {name}:\n{}",
                m.agent_log()
            )
        });
    }
    eprintln!(
        "every old member reached delta {:?} after its start",
        started.elapsed()
    );
    for m in lab.members.iter().filter(|m| m.name != "delta") {
        assert!(
            netmap_epoch(m) > epoch,
            "{} still runs from epoch {epoch}",
            m.name
        );
    }
    // The new member reaches the leased one too, over IPv4 and IPv6.
    let gamma = lab.member("gamma");
    let (gamma4, gamma6) = (gamma.overlay4(), gamma.overlay6());
    let delta = lab.member("delta");
    for dst in [IpAddr::V4(gamma4), IpAddr::V6(gamma6)] {
        delta
            .ns
            .wait_ping(dst, PING_TIMEOUT)
            .unwrap_or_else(|e| panic!("delta → gamma: {e}"));
    }
    for (name, pid) in old {
        let m = lab.member(&name);
        assert!(m.agent_running(), "the agent of {name} stopped");
        assert_eq!(
            m.agent_pid(),
            Some(pid),
            "the agent of {name} was restarted"
        );
    }
}

#[test]
fn tunnels_outlive_the_controller_and_a_restarted_agent_comes_back_from_its_cache() {
    let _one_at_a_time = serial();
    let mut lab = controlled_lab(&["alpha", "beta", "gamma"], &["gamma"]);
    lab.assert_all_pairs_ping();
    let epoch = netmap_epoch(lab.member("gamma"));
    let lease = lab.member("gamma").overlay4();

    lab.kill_controller();
    lab.assert_all_pairs_ping();

    let gamma = lab.member("gamma");
    gamma.stop();
    gamma.start();
    wait_for(
        "gamma's tunnel to hold its lease again, from its cache",
        PING_TIMEOUT,
        || tun_holds(gamma, lease),
    );
    assert_eq!(
        gamma.wait_for_ipv4(PING_TIMEOUT),
        lease,
        "gamma came back with another address"
    );
    assert_eq!(netmap_epoch(gamma), epoch, "gamma runs from another netmap");
    let entry = controller_entry(gamma);
    assert_eq!(
        entry["connected"], false,
        "gamma says it is connected to a dead controller: {entry}"
    );
    lab.assert_all_pairs_ping();
}

#[test]
fn a_revoked_member_is_cut_off_and_cannot_enroll_again() {
    let _one_at_a_time = serial();
    let mut lab = controlled_lab(&["alpha", "beta", "gamma"], &["gamma"]);
    lab.assert_all_pairs_ping();
    let addr = |lab: &mut Lab, name: &str| IpAddr::V4(lab.member(name).overlay4());
    let (alpha4, beta4, gamma4) = (
        addr(&mut lab, "alpha"),
        addr(&mut lab, "beta"),
        addr(&mut lab, "gamma"),
    );

    let said = lab.controller_admin_ok(&["revoke", "gamma"]);
    let revoked = Instant::now();
    let (alpha, beta, gamma) = (&lab.members[0], &lab.members[1], &lab.members[2]);
    // When the check that saw gamma cut off began: a failing ping takes a second, so the check
    // ends later than the cut.
    let checked = Cell::new(Duration::ZERO);
    let cut = || {
        checked.set(revoked.elapsed());
        !beta.ns.ping_once(gamma4) && !alpha.ns.ping_once(gamma4) && !gamma.ns.ping_once(beta4)
    };
    if let Err(e) = wait_until("gamma to be cut off", PUSH_BOUND, cut) {
        panic!(
            "{e} after `revoke` said {said:?}\nlog of beta:\n{}\nlog of gamma:\n{}",
            beta.agent_log(),
            gamma.agent_log()
        );
    }
    eprintln!("gamma was cut off {:?} after the revocation", checked.get());
    // Still cut off a moment later (no handshake brings it back), and the others still talk.
    std::thread::sleep(Duration::from_secs(1));
    assert!(cut(), "gamma came back after its revocation");
    beta.ns
        .wait_ping(alpha4, PING_TIMEOUT)
        .unwrap_or_else(|e| panic!("beta → alpha after gamma's revocation: {e}"));
    assert_eq!(
        controller_member(&lab, "gamma")["revoked"],
        true,
        "the controller does not show gamma revoked"
    );

    let gamma = lab.member("gamma");
    gamma.stop();
    // The agent runs on from its cache (a controller's refusal never stops the mesh), and its
    // status says why the controller turns it away.
    if let Err(e) = gamma.try_start() {
        panic!(
            "the revoked gamma's agent did not start: {e}\n{}",
            gamma.agent_log()
        );
    }
    let mut entry = Value::Null;
    let refused = wait_until(
        "gamma's status to show the controller's refusal",
        LEASE_TIMEOUT,
        || {
            entry = controller_entry(gamma);
            entry["connected"] == false
                && entry["lastError"]
                    .as_str()
                    .is_some_and(|e| e.contains("revoked"))
        },
    );
    if let Err(e) = refused {
        panic!("{e}: {entry}\nlog:\n{}", gamma.agent_log());
    }
    assert!(
        !gamma.ns.ping_once(beta4),
        "the restarted gamma reaches beta"
    );
}

/// A new machine `name` started with `--join ticket` exits non-zero, its log giving `reason`.
fn assert_join_refused(lab: &mut Lab, name: &str, ticket: &str, reason: &str) {
    let m = lab.add_machine(name);
    m.join = Some(ticket.to_owned());
    let why = m
        .try_start()
        .expect_err("a machine joined with a ticket that admits it no longer");
    let log = m.agent_log();
    assert!(!m.stop().success(), "{name} refused, but exited 0: {why}");
    assert!(
        log.contains(reason),
        "{name}'s refusal does not say {reason:?}: {why}"
    );
}

#[test]
fn a_join_ticket_admits_one_machine_once_and_not_after_it_expired() {
    let _one_at_a_time = serial();
    let mut lab = controlled_lab(&["alpha", "beta"], &[]);
    let beta4 = IpAddr::V4(lab.member("beta").overlay4());
    let ticket = lab.controller_admin_ok(&["token", "create", "--name", "omega", "--ttl", "1h"]);
    let ticket = ticket.trim().to_owned();
    assert!(
        !ticket.is_empty() && !ticket.contains('\n'),
        "token create printed other than one line: {ticket:?}"
    );

    let omega = lab.add_machine("omega");
    omega.join = Some(ticket.clone());
    omega.start();
    let lease = omega.wait_for_ipv4(LEASE_TIMEOUT);
    let range: Ipv4Net = LEASE_RANGE.parse().expect("a valid prefix");
    assert!(
        range.contains(&lease),
        "omega holds {lease}, outside {range}"
    );
    // The same ticket, another machine (another identity): refused.
    assert_join_refused(
        &mut lab,
        "sigma",
        &ticket,
        "the join token was used already",
    );
    // An expired ticket: refused.
    let expired = lab.controller_admin_ok(&["token", "create", "--name", "tau", "--ttl", "1s"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_join_refused(&mut lab, "tau", expired.trim(), "the join token expired");

    // The member that joined starts again with the same arguments, without spending a token,
    // and talks with the members both ways.
    let omega = lab.member("omega");
    omega.stop();
    omega.start();
    assert_eq!(omega.wait_for_ipv4(LEASE_TIMEOUT), lease);
    // A join that kept nothing (as if the answer was lost after the controller spent the token)
    // runs again with the spent ticket: the controller knows the key.
    omega.stop();
    let joined = omega.state_dir().join("joined-config.json");
    std::fs::remove_file(&joined)
        .unwrap_or_else(|e| panic!("the joined agent kept no {}: {e}", joined.display()));
    omega.start();
    assert_eq!(omega.wait_for_ipv4(LEASE_TIMEOUT), lease);
    assert!(joined.is_file(), "the second join kept no configuration");
    let omega = &lab.members[2];
    if let Err(e) = omega.ns.wait_ping(beta4, PING_TIMEOUT) {
        panic!(
            "omega → beta: {e}\nstatus of omega: {}\nroutes of omega:\n{}",
            agent_status(omega),
            omega.ns.run(&["ip", "route"])
        );
    }
    lab.members[1]
        .ns
        .wait_ping(IpAddr::V4(lease), PING_TIMEOUT)
        .unwrap_or_else(|e| panic!("beta → omega's lease {lease}: {e}"));
    assert_eq!(controller_member(&lab, "omega")["leased"], true);
}

#[test]
fn a_wg_quick_credential_brings_up_a_stock_wireguard_peer() {
    let _one_at_a_time = serial();
    let lab = controlled_lab(&["alpha", "beta"], &[]);
    let printed = lab.controller_admin_ok(&["device", "add", "phone"]);
    // The wg-quick text, then its QR code in Unicode block characters.
    let wg_quick: Vec<&str> = printed.lines().take_while(|l| l.is_ascii()).collect();
    assert!(
        printed.lines().count() > wg_quick.len() + 10,
        "device add printed no QR code:\n{printed}"
    );
    let wg_quick = wg_quick.join("\n");
    for key in [
        "[Interface]",
        "PrivateKey",
        "Address",
        "[Peer]",
        "PublicKey",
        "AllowedIPs",
        "Endpoint",
    ] {
        assert!(wg_quick.contains(key), "no {key} in:\n{wg_quick}");
    }
    let phone = lab.wg_quick_device("phone", 60, &wg_quick);
    let alpha = &lab.members[0];
    for dst in [IpAddr::V4(alpha.overlay4()), IpAddr::V6(alpha.overlay6())] {
        phone.ns.wait_ping(dst, PING_TIMEOUT).unwrap_or_else(|e| {
            panic!(
                "phone → alpha: {e}\nwg-quick:\n{wg_quick}\nwg show:\n{}\nlog of alpha:\n{}",
                phone.wg.dump(&phone.ns),
                alpha.agent_log()
            )
        });
    }
    // The members learn the phone's endpoint from its handshake; then they reach it too.
    let beta = &lab.members[1];
    phone
        .ns
        .wait_ping(IpAddr::V4(beta.overlay4()), PING_TIMEOUT)
        .unwrap_or_else(|e| panic!("phone → beta: {e}"));
    beta.ns
        .wait_ping(IpAddr::V4(phone.overlay4), PING_TIMEOUT)
        .unwrap_or_else(|e| panic!("beta → phone: {e}"));
}
