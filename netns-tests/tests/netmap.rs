//! Agents driven by a signed netmap (`wiremesh netmap build`, `--netmap FILE`): a newer netmap that
//! revokes a member is applied as a diff on SIGHUP, an older one is refused, and an agent restarted
//! without its netmap file runs from the last good one in its state directory.

use std::net::IpAddr;
use std::time::Duration;

use wiremesh_netns_tests::{Lab, assert_reload_changed, serial};
use wiremesh_peer::status::Source;

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
