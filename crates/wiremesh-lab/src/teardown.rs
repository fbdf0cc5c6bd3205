//! Tearing namespaces down: listing them, finding the ones a killed run left behind, and deleting
//! one after stopping what still runs in it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::command::run_bounded;
use crate::process::running;

/// The bound on each `ip` command.
pub(crate) const IP_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);

/// `ip ARGS`, bounded. `run_bounded` gives it a process group of its own, so a Ctrl-C at the
/// terminal (the demo's second one, say) cannot kill it halfway through a teardown.
pub(crate) fn ip(args: &[&str]) -> Result<crate::Output, String> {
    run_bounded(Command::new("ip").args(args), IP_TIMEOUT)
}

/// The names of all network namespaces (`ip netns list`).
pub fn namespaces() -> Result<Vec<String>, String> {
    let out = ip(&["netns", "list"])?;
    if !out.success() {
        return Err(format!("`ip netns list` failed: {}", out.stderr.trim()));
    }
    Ok(names_in_listing(&out.stdout))
}

/// The namespaces named `<prefix><pid>-…` whose process `pid` no longer runs: a run killed by a
/// signal (so its teardown never ran) left them behind. Empty when namespaces cannot be listed.
pub fn orphaned_namespaces(prefix: &str) -> Vec<String> {
    let names = namespaces().unwrap_or_default();
    orphans(&names, prefix, |pid| {
        Path::new(&format!("/proc/{pid}")).exists()
    })
}

/// The pids of the processes that live in namespace `name` (empty when they cannot be listed).
fn namespace_pids(name: &str) -> Vec<i32> {
    ip(&["netns", "pids", name])
        .map(|out| pids_in_listing(&out.stdout))
        .unwrap_or_default()
}

/// The pids in `ip netns pids` output. Only positive ones: kill(2) reads 0 as "my process group"
/// and -1 as "every process I may signal".
fn pids_in_listing(listing: &str) -> Vec<i32> {
    listing
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|&pid| pid > 0)
        .collect()
}

/// Stops what still runs in namespace `name` (SIGTERM, up to `grace` for it to exit, then SIGKILL)
/// and deletes the namespace and its `/etc/netns/<name>` (files `ip netns exec` mounts there, e.g.
/// a resolv.conf; `ip netns del` leaves them). `Err` says why `ip netns del` failed.
pub fn delete_namespace(name: &str, grace: Duration) -> Result<(), String> {
    kill_all(&namespace_pids(name), grace);
    let out = ip(&["netns", "del", name])?;
    if let Some(dir) = etc_dir(name) {
        let _ = std::fs::remove_dir_all(dir);
    }
    if out.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip netns del {name}` failed: {}",
            out.stderr.trim()
        ))
    }
}

fn kill_all(pids: &[i32], grace: Duration) {
    for &pid in pids {
        // SAFETY: kill has no memory preconditions; these pids live in a namespace we made.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + grace;
    while pids.iter().any(|&p| running(p)) && Instant::now() < deadline {
        std::thread::sleep(POLL);
    }
    for &pid in pids.iter().filter(|&&p| running(p)) {
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// `/etc/netns/<name>`, or `None` when `name` is not a single path component (it could then
/// point outside /etc/netns).
fn etc_dir(name: &str) -> Option<PathBuf> {
    let plain = !name.is_empty() && name != "." && name != ".." && !name.contains('/');
    plain.then(|| Path::new("/etc/netns").join(name))
}

/// The names in `ip netns list` output, whose lines may carry an `(id: N)` after the name.
fn names_in_listing(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The names `<prefix><pid>-…` whose `pid` (all digits: a namespace someone else named
/// `<prefix>foo-…` is not ours to delete) is not `running`.
fn orphans(names: &[String], prefix: &str, running: impl Fn(&str) -> bool) -> Vec<String> {
    names
        .iter()
        .filter(|name| {
            name.strip_prefix(prefix)
                .and_then(|rest| rest.split_once('-'))
                .is_some_and(|(pid, _)| {
                    !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) && !running(pid)
                })
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_gives_the_names_without_ids() {
        let listing = "wmt-12-0-a (id: 3)\nwmdemo-7-switch\n\n";
        assert_eq!(names_in_listing(listing), ["wmt-12-0-a", "wmdemo-7-switch"]);
    }

    #[test]
    fn the_etc_dir_of_a_namespace_stays_inside_etc_netns() {
        assert_eq!(
            etc_dir("wmt-12-0-a"),
            Some(PathBuf::from("/etc/netns/wmt-12-0-a"))
        );
        for name in ["", ".", "..", "../etc", "a/b", "/"] {
            assert_eq!(etc_dir(name), None, "{name:?}");
        }
    }

    #[test]
    fn orphans_are_the_prefixed_names_whose_process_is_gone() {
        let names: Vec<String> = ["wmt-12-0-a", "wmt-13-1-b", "wmdemo-12-switch", "other"]
            .map(str::to_owned)
            .to_vec();
        assert_eq!(orphans(&names, "wmt-", |pid| pid == "13"), ["wmt-12-0-a"]);
        assert_eq!(orphans(&names, "wmdemo-", |_| false), ["wmdemo-12-switch"]);
        assert!(orphans(&names, "wmt-", |_| true).is_empty());
    }

    #[test]
    fn only_names_with_a_numeric_pid_and_a_role_can_be_orphans() {
        let names: Vec<String> = ["wmt-foo-a", "wmt--a", "wmt-12", "wmt-1x-a", "wmt-12-a"]
            .map(str::to_owned)
            .to_vec();
        assert_eq!(orphans(&names, "wmt-", |_| false), ["wmt-12-a"]);
    }

    #[test]
    fn pid_listings_yield_only_positive_pids() {
        assert_eq!(pids_in_listing("12\n0\n-1\nx\n345\n"), [12, 345]);
    }
}
