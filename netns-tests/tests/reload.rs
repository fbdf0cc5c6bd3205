//! SIGHUP re-reads the agent's configuration and applies only the difference: removing and adding
//! a member leaves the sessions with the others untouched, a new MTU is applied to the interface
//! without disturbing the session, and a broken file is refused while the running mesh carries on.
//! A state directory that cannot be written costs a warning, never the mesh.

use std::net::IpAddr;
use std::time::Duration;

use wiremesh_netns_tests::{Lab, TUN_NAME, assert_reload_changed, serial};

/// Handshake times in the status are whole seconds derived from "time since", so they may move by
/// one; a session redone at least [`SETTLE`] later moves them by two or more.
const SETTLE: Duration = Duration::from_millis(3500);

#[test]
fn removing_and_adding_a_member_on_sighup_leaves_the_other_sessions_alone() {
    let _one_at_a_time = serial();
    let mut lab = Lab::planned(&["alpha", "beta", "gamma"]);
    lab.start_all();
    lab.assert_all_pairs_ping();
    let beta4 = IpAddr::V4(lab.members[1].overlay4());
    let gamma4 = IpAddr::V4(lab.members[2].overlay4());
    std::thread::sleep(SETTLE);
    let beta_before = lab.members[0].peer_status("beta");

    // Alpha forgets gamma.
    let full = lab.members[0].config.clone().expect("planned");
    let mut without_gamma = full.clone();
    without_gamma.peers.retain(|p| p.name != "gamma");
    lab.members[0].write_config(without_gamma);
    let logged = lab.members[0].reload("reloaded");
    assert_reload_changed(&logged, "member removed", "gamma", "beta");
    let alpha = &lab.members[0];
    alpha.assert_member_gone("gamma", gamma4, "beta", beta4);
    let beta_after = alpha.assert_same_session("beta", &beta_before);
    assert!(
        beta_after.tx_bytes > beta_before.tx_bytes,
        "beta's counters restarted, so its session was rebuilt: {beta_before:?} → {beta_after:?}"
    );

    // And takes gamma back.
    lab.members[0].write_config(full);
    let logged = lab.members[0].reload("reloaded");
    assert_reload_changed(&logged, "member added", "gamma", "beta");
    let alpha = &lab.members[0];
    alpha
        .ns
        .wait_ping(gamma4, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("alpha → gamma after adding it back: {e}"));
    alpha.assert_same_session("beta", &beta_before);
}

#[test]
fn a_broken_configuration_on_sighup_is_refused_and_the_mesh_keeps_working() {
    let _one_at_a_time = serial();
    let mut lab = Lab::planned(&["alpha", "beta"]);
    let beta4 = lab.start_all_and_ping_second();
    std::fs::write(
        lab.members[0].config_path(),
        "{\"version\": 1, \"peers\": [",
    )
    .expect("the lab dir is writable");
    lab.members[0].reload("reload failed");
    let alpha = &mut lab.members[0];
    assert!(alpha.agent_running(), "the agent died on a broken config");
    assert!(
        alpha.ns.ping_once(beta4),
        "alpha → beta broke after the refused reload"
    );
}

#[test]
fn an_agent_whose_config_broke_while_it_was_down_starts_from_the_last_good_one() {
    let _one_at_a_time = serial();
    let mut lab = Lab::planned(&["alpha", "beta"]);
    let beta4 = lab.start_all_and_ping_second();
    let status = lab.members[0].stop();
    assert!(
        status.success(),
        "alpha's agent did not exit cleanly: {status}"
    );
    std::fs::write(lab.members[0].config_path(), "not json at all")
        .expect("the lab dir is writable");
    lab.members[0].start();
    assert!(
        lab.members[0].agent_log().contains("last good config"),
        "alpha's agent did not say it fell back to its state directory:\n{}",
        lab.members[0].agent_log()
    );
    lab.members[0]
        .ns
        .wait_ping(beta4, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("alpha → beta from the last good config: {e}"));
}

#[test]
fn a_state_directory_that_cannot_be_written_stops_neither_the_start_nor_a_reload() {
    let _one_at_a_time = serial();
    let mut lab = Lab::planned(&["alpha", "beta"]);
    // A directory where the last good config goes: every atomic rename onto it fails.
    let blocker = lab.members[0].state_dir().join("last-good-config.json");
    std::fs::create_dir_all(blocker.join("x")).expect("the lab dir is writable");
    let beta4 = lab.start_all_and_ping_second();
    let alpha = &mut lab.members[0];
    assert!(
        alpha.agent_log().contains("cannot store the config"),
        "alpha's agent did not warn about its state directory:\n{}",
        alpha.agent_log()
    );
    let logged = alpha.reload("reloaded");
    assert!(
        logged.contains("cannot store the config") && !logged.contains("reload failed"),
        "the reload should apply and only warn about the state directory:\n{logged}"
    );
    assert!(
        alpha.ns.ping_once(beta4),
        "alpha → beta broke after the reload"
    );
}

#[test]
fn a_new_mtu_on_sighup_is_applied_to_the_interface_and_packets_of_that_size_pass() {
    let _one_at_a_time = serial();
    let mut lab = Lab::planned(&["alpha", "beta"]);
    let beta4 = lab.start_all_and_ping_second();
    std::thread::sleep(SETTLE);
    let beta_before = lab.members[0].peer_status("beta");

    let mut config = lab.members[0].config.clone().expect("planned");
    let old_mtu = config.mtu;
    let new_mtu = old_mtu - 100;
    config.mtu = new_mtu;
    lab.members[0].write_config(config);
    let logged = lab.members[0].reload("reloaded");
    assert!(
        logged.contains("MTU changed"),
        "alpha did not log the MTU change:\n{logged}"
    );
    let alpha = &lab.members[0];
    let link = alpha.ns.run(&["ip", "link", "show", TUN_NAME]);
    assert!(
        link.contains(&format!(" mtu {new_mtu} ")),
        "{TUN_NAME} does not have the new MTU {new_mtu}:\n{link}"
    );
    // Full-size packets of the new MTU pass unfragmented; those of the old one no longer fit.
    let ping = |size: u32| {
        alpha
            .ns
            .try_run(
                &[
                    "ping",
                    "-c",
                    "1",
                    "-W",
                    "2",
                    "-M",
                    "do",
                    "-s",
                    &(size - 28).to_string(),
                    &beta4.to_string(),
                ],
                Duration::from_secs(5),
            )
            .unwrap_or_else(|e| panic!("ping: {e}"))
    };
    let fits = ping(new_mtu);
    assert!(
        fits.success(),
        "a {new_mtu}-byte packet did not pass: {}{}",
        fits.stdout,
        fits.stderr
    );
    assert!(
        !ping(old_mtu).success(),
        "a {old_mtu}-byte packet passed unfragmented through an interface of MTU {new_mtu}"
    );
    alpha.assert_same_session("beta", &beta_before);
}
