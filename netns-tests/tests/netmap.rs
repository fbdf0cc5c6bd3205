//! Agents driven by a signed netmap (`wiremesh netmap build`, `--netmap FILE`): a newer netmap that
//! revokes a member is applied as a diff on SIGHUP, an older one is refused, and an agent restarted
//! without its netmap file runs from the last good one in its state directory. A netmap is trusted
//! only while the config pins its key, and the epoch floor survives a restart without
//! `--state-dir`.

use std::net::IpAddr;
use std::time::Duration;

use wiremesh_core::keys::NetworkKey;
use wiremesh_netns_tests::{Lab, assert_reload_changed, serial};
use wiremesh_proto::status::Source;

fn epoch_of(lab: &Lab, member: usize) -> Option<u64> {
    match lab.members[member].status().source {
        Source::Netmap { epoch, .. } => Some(epoch),
        Source::Config => None,
    }
}

/// Handshake times in the status are whole seconds derived from "time since", so they may move by
/// one; a session redone at least [`SETTLE`] later moves them by two or more.
const SETTLE: Duration = Duration::from_millis(3500);

#[test]
fn a_revoking_netmap_is_applied_as_a_diff_an_older_one_refused_and_the_last_good_one_kept() {
    let _one_at_a_time = serial();
    let mut lab = Lab::planned(&["alpha", "beta", "gamma"]);
    let first = lab.build_netmap(1, &[], "epoch1.netmap");
    let live = lab.dir().join("alpha.netmap");
    std::fs::copy(&first, &live).expect("the lab dir is writable");
    lab.members[0].netmap = Some(live.clone());
    lab.start_all();
    assert_eq!(
        epoch_of(&lab, 0),
        Some(1),
        "alpha does not run from the netmap"
    );
    lab.assert_all_pairs_ping();
    let beta4 = IpAddr::V4(lab.members[1].overlay4());
    let gamma4 = IpAddr::V4(lab.members[2].overlay4());
    std::thread::sleep(SETTLE);
    let beta_before = lab.members[0].peer_status("beta");

    // Epoch 2 revokes gamma.
    let second = lab.build_netmap(2, &["gamma"], "epoch2.netmap");
    std::fs::copy(&second, &live).expect("the lab dir is writable");
    let logged = lab.members[0].reload("reloaded");
    assert_reload_changed(&logged, "member removed", "gamma", "beta");
    assert_eq!(epoch_of(&lab, 0), Some(2));
    let alpha = &lab.members[0];
    alpha.assert_member_gone("gamma", gamma4, "beta", beta4);
    alpha.assert_same_session("beta", &beta_before);

    // Epoch 1 again is older: refused, epoch 2 stays.
    std::fs::copy(&first, &live).expect("the lab dir is writable");
    lab.members[0].reload("keeping the netmap in use");
    assert_eq!(
        epoch_of(&lab, 0),
        Some(2),
        "alpha went back to an older netmap"
    );
    assert!(
        !lab.members[0].ns.ping_once(gamma4),
        "gamma came back with the old netmap"
    );

    // Restarted without its netmap file, alpha runs from the last good one (epoch 2).
    let status = lab.members[0].stop();
    assert!(
        status.success(),
        "alpha's agent did not exit cleanly: {status}"
    );
    std::fs::remove_file(&live).expect("the netmap file exists");
    lab.members[0].start();
    assert_eq!(
        epoch_of(&lab, 0),
        Some(2),
        "alpha did not start from its last good netmap"
    );
    lab.members[0]
        .ns
        .wait_ping(beta4, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("alpha → beta from the last good netmap: {e}"));
    assert!(
        !lab.members[0].ns.ping_once(gamma4),
        "the revoked gamma is back after the restart"
    );
}

#[test]
fn a_new_network_key_in_the_config_drops_the_netmap_signed_by_the_old_one() {
    let _one_at_a_time = serial();
    let mut lab = Lab::planned(&["alpha", "beta", "gamma"]);
    let netmap = lab.build_netmap(2, &["gamma"], "epoch2.netmap");
    lab.members[0].netmap = Some(netmap);
    lab.start_all();
    assert_eq!(epoch_of(&lab, 0), Some(2));
    let gamma4 = IpAddr::V4(lab.members[2].overlay4());
    assert!(
        !lab.members[0].ns.ping_once(gamma4),
        "revoked gamma answers"
    );

    // The network key is rotated in the config; the netmap file still holds the old map.
    let alpha = &mut lab.members[0];
    let mut config = alpha
        .config
        .clone()
        .expect("a planned member has a configuration");
    config.network_public_key = NetworkKey::generate().expect("randomness").public_key();
    alpha.write_config(config);
    let logged = alpha.reload("reloaded");
    assert!(
        logged.contains("the netmap of epoch 2 was dropped"),
        "alpha did not say why it dropped the netmap:\n{logged}"
    );
    assert!(
        logged.contains("refused: netmap is for network"),
        "the old netmap file was not refused under the new key:\n{logged}"
    );
    let status = alpha.status();
    assert_eq!(status.source, Source::Config, "alpha kept the old netmap");
    assert!(
        status.warnings.iter().any(|w| w.contains("was dropped")),
        "status does not show it: {:?}",
        status.warnings
    );
    assert!(
        alpha
            .status_text()
            .contains("warning: the netmap of epoch 2 was dropped"),
        "{}",
        alpha.status_text()
    );
    // The config's peer list is in force: gamma is a member there.
    alpha
        .ns
        .wait_ping(gamma4, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("alpha → gamma from the config's peer list: {e}"));
}

/// Removes a default state directory under /var/lib/wiremesh, before and after the test.
struct DefaultStateDir(std::path::PathBuf);

impl DefaultStateDir {
    fn new(interface: &str) -> Self {
        let dir = DefaultStateDir(std::path::Path::new("/var/lib/wiremesh").join(interface));
        let _ = std::fs::remove_dir_all(&dir.0);
        dir
    }
}

impl Drop for DefaultStateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        // The parent too, when this test made it (only an empty directory is removed).
        if let Some(parent) = self.0.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

#[test]
fn an_older_netmap_is_refused_after_a_restart_without_state_dir() {
    let _one_at_a_time = serial();
    let mut lab = Lab::planned(&["alpha", "beta", "gamma"]);
    let first = lab.build_netmap(1, &[], "epoch1.netmap");
    let second = lab.build_netmap(2, &["gamma"], "epoch2.netmap");
    // A name of this run's own, so the default directory is nobody else's.
    let interface = format!("wmf{}", std::process::id() % 100_000);
    let state = DefaultStateDir::new(&interface);
    let alpha = &mut lab.members[0];
    let mut config = alpha
        .config
        .clone()
        .expect("a planned member has a configuration");
    config.interface = interface;
    alpha.write_config(config);
    alpha.default_state_dir = true;
    alpha.netmap = Some(second.clone());
    lab.start_all();
    assert_eq!(epoch_of(&lab, 0), Some(2));
    let stored = state.0.join("last-good-netmap.bin");
    assert!(stored.exists(), "no netmap stored in {}", state.0.display());

    // Restarted with epoch 1, which lists gamma and is still valid. The stored netmap is gone
    // too, so only the epoch floor knows that epoch 2 was accepted: refused.
    let restart = |lab: &mut Lab, netmap: &std::path::Path| {
        let alpha = &mut lab.members[0];
        assert!(alpha.stop().success(), "alpha's agent did not exit cleanly");
        let _ = std::fs::remove_file(&stored);
        alpha.netmap = Some(netmap.to_path_buf());
        alpha.start();
        alpha.agent_log()
    };
    let log = restart(&mut lab, &first);
    assert!(
        log.contains("refused: epoch 1 is not newer than the last accepted epoch 2"),
        "the older netmap was not refused:\n{log}"
    );
    assert_eq!(epoch_of(&lab, 0), None, "alpha runs from epoch 1");

    // The netmap that set the floor is no older than it: taken again, gamma stays revoked.
    restart(&mut lab, &second);
    assert_eq!(
        epoch_of(&lab, 0),
        Some(2),
        "the floor's own netmap was refused"
    );
    let gamma4 = IpAddr::V4(lab.members[2].overlay4());
    assert!(
        !lab.members[0].ns.ping_once(gamma4),
        "revoked gamma is back"
    );
    let beta4 = IpAddr::V4(lab.members[1].overlay4());
    lab.members[0]
        .ns
        .wait_ping(beta4, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("alpha → beta after the restart: {e}"));
}
