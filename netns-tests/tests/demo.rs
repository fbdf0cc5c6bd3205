//! `wiremesh demo`, the README's main command: it brings the example mesh up, every pair answers,
//! and it leaves no namespace behind, whether it ends by itself or by Ctrl-C under `--keep`.

use std::process::Command;
use std::time::Duration;

use wiremesh_netns_tests::{Daemon, namespaces, project_binary, run_bounded, serial, wait_for};

fn demo_namespaces(pid: u32) -> Vec<String> {
    let prefix = format!("wmdemo-{pid}-");
    namespaces()
        .expect("ip netns list runs")
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

#[test]
fn the_demo_pings_every_pair_and_removes_everything() {
    let _one_at_a_time = serial();
    project_binary("wiremesh-peer");
    project_binary("wiremesh-controller");
    let mut cmd = Command::new(project_binary("wiremesh"));
    cmd.arg("demo");
    let out = run_bounded(&mut cmd, Duration::from_secs(180)).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.success(),
        "wiremesh demo failed ({}):\n{}\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
    assert!(
        out.stdout
            .contains("demo OK: 3 agents, 12/12 pings answered over IPv4 and IPv6"),
        "{}",
        out.stdout
    );
    for machine in ["server", "laptop", "desktop"] {
        assert!(
            out.stdout
                .contains(&format!("== wiremesh status on {machine}")),
            "{}",
            out.stdout
        );
    }
    // The example gives no machine a static IPv4 address: the controller leases every one, and
    // the pings above went over those leases.
    for machine in ["server", "laptop", "desktop"] {
        assert!(
            out.stderr.contains(&format!("  {machine} holds 100.96.0.")),
            "{}",
            out.stderr
        );
    }
    assert!(
        out.stdout
            .contains("== wiremesh-controller status on server")
            && out.stdout.contains("3 of 65534 addresses leased"),
        "{}",
        out.stdout
    );
    // laptop and desktop sit behind NATs of their own: they punched a direct path to each
    // other's NAT, and the controller relayed nothing.
    for (from, to, nat) in [("desktop", "laptop", 102), ("laptop", "desktop", 101)] {
        let line = out
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{from} → {to} ")) && !l.contains("ok"))
            .unwrap_or_else(|| panic!("no path line {from} → {to}:\n{}", out.stdout));
        assert!(
            line.contains(&format!("direct 198.18.0.{nat}:")),
            "{line}\n{}",
            out.stdout
        );
    }
    assert!(
        !out.stdout.contains("relayed desktop -> laptop"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("removed every namespace and daemon"),
        "{}",
        out.stderr
    );
    // Its progress lines name its namespaces, `wmdemo-<pid>-<machine>`.
    let pid: u32 = out
        .stderr
        .split("namespace wmdemo-")
        .nth(1)
        .and_then(|rest| rest.split('-').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no namespace named in the progress lines: {}", out.stderr));
    let leftovers = demo_namespaces(pid);
    assert!(
        leftovers.is_empty(),
        "namespaces left behind: {leftovers:?}"
    );
}

#[test]
fn ctrl_c_during_keep_tears_the_demo_down() {
    let _one_at_a_time = serial();
    project_binary("wiremesh-peer");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("demo.log");
    let mut cmd = Command::new(project_binary("wiremesh"));
    cmd.args(["demo", "--keep"]);
    let mut demo = Daemon::spawn("wiremesh demo --keep", cmd, &log);
    let pid = u32::try_from(demo.pid()).unwrap();
    wait_for(
        "the demo to be up and waiting for Ctrl-C",
        Duration::from_secs(120),
        || demo.log_text().contains("Press Ctrl-C") || demo.exited().is_some(),
    );
    assert!(
        demo.exited().is_none(),
        "the demo ended early:\n{}",
        demo.log_text()
    );
    assert_eq!(
        demo_namespaces(pid).len(),
        6,
        "a switch, three machines and the NAT routers of laptop and desktop while up"
    );
    demo.signal(libc::SIGINT);
    wait_for(
        "the demo to exit after Ctrl-C",
        Duration::from_secs(30),
        || demo.exited().is_some(),
    );
    let status = demo.exited().expect("it exited");
    assert!(
        status.success(),
        "exit status after Ctrl-C: {status}\n{}",
        demo.log_text()
    );
    assert!(
        demo_namespaces(pid).is_empty(),
        "namespaces left behind: {:?}",
        demo_namespaces(pid)
    );
}
