//! SIGKILL of `wiremesh-controller run` while 200 agents enroll at once, then a restart on the
//! same state directory: no address is leased twice, no lease an agent was given is lost, and
//! every member gets its old address back when it enrolls again.

// Each test binary uses its own part of the shared helpers.
#[allow(dead_code)]
mod fleet;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use fleet::{Fleet, Tracker};
use wiremesh_proto::admin::Status;

const AGENTS: usize = 200;
/// Acknowledged enrollments before the kill; the rest are in flight or not yet started.
const KILL_AFTER: usize = 20;
/// Every wait here ends after this long at most.
const BOUND: Duration = Duration::from_secs(30);

/// The leased IPv4 address of each member the status lists, checked to be distinct.
fn leases(status: &Status) -> BTreeMap<String, Ipv4Addr> {
    let leased: BTreeMap<String, Ipv4Addr> = status
        .members
        .iter()
        .filter_map(|m| Some((m.name.clone(), m.ipv4.as_deref()?.parse().unwrap())))
        .collect();
    let distinct: BTreeSet<_> = leased.values().collect();
    assert_eq!(
        distinct.len(),
        leased.len(),
        "an address leased twice: {leased:?}"
    );
    leased
}

fn given(fleet: &Fleet, tracker: &Tracker) -> BTreeMap<String, Ipv4Addr> {
    tracker
        .leases
        .iter()
        .map(|(agent, ipv4)| (fleet.agents[*agent].0.clone(), ipv4.expect("a lease")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_enrollments_loses_no_lease_and_leases_none_twice() {
    let fleet = Fleet::new(AGENTS).unwrap();
    let mut daemon = fleet.start(BOUND).unwrap();
    let (swarm, mut tracker) = fleet.enroll(daemon.addr, 0..AGENTS, false, BOUND).unwrap();
    tracker
        .wait("the first enrollments", BOUND, |t| {
            t.leases.len() >= KILL_AFTER
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", daemon.log_tail()));
    daemon.kill().unwrap();
    // Whatever reached an agent before the kill counts as acknowledged; the rest fail now.
    swarm.stop(BOUND).await;
    tracker.drain();
    let acknowledged = given(&fleet, &tracker);
    assert!(
        acknowledged.len() < AGENTS,
        "all {AGENTS} enrolled before the kill; it hit no enrollment in flight"
    );

    let daemon = fleet.start(BOUND).unwrap();
    let stored = leases(&fleet.status(BOUND).await.unwrap());
    for (name, address) in &acknowledged {
        assert_eq!(
            stored.get(name),
            Some(address),
            "{name} was given {address} before the kill"
        );
    }

    let (swarm, mut tracker) = fleet.enroll(daemon.addr, 0..AGENTS, false, BOUND).unwrap();
    tracker
        .wait("enrolling again", BOUND, |t| t.leases.len() == AGENTS)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", daemon.log_tail()));
    swarm.stop(BOUND).await;
    let again = given(&fleet, &tracker);
    for (name, address) in &stored {
        assert_eq!(again.get(name), Some(address), "{name} lost its lease");
    }
    let distinct: BTreeSet<_> = again.values().collect();
    assert_eq!(distinct.len(), AGENTS, "an address given twice: {again:?}");
    assert_eq!(leases(&fleet.status(BOUND).await.unwrap()), again);
    println!(
        "{} of {AGENTS} leases acknowledged before the kill, {} stored",
        acknowledged.len(),
        stored.len()
    );
}
