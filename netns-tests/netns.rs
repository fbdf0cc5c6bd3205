//! Network namespaces with unique names (prefix, test process id, counter) that delete themselves
//! (`wiremesh_lab::Namespace`, which they dereference to), with panicking helpers for tests, and
//! the veth links between them.

use std::fs::File;
use std::net::IpAddr;
use std::ops::Deref;
use std::os::fd::AsRawFd as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wiremesh_lab::{Namespace, delete_namespace, orphaned_namespaces};

use crate::daemon::Daemon;
use crate::env::{require_root, require_tools};
use crate::wait::wait_until;

/// Every namespace the harness makes starts with this, then the test process id.
const PREFIX: &str = "wmt-";
/// The bound on every short command (ip, tc, sysctl, ping -c 1).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long what still runs in an orphaned namespace has to exit after SIGTERM.
const TEARDOWN_GRACE: Duration = Duration::from_secs(3);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Makes `wmt-<pid>-<n>-<role>` (loopback up, IPv6 duplicate address detection off). First
/// removes namespaces left by test processes that died without cleaning up (killed by a signal,
/// so `Drop` never ran).
pub fn namespace(role: &str) -> Namespace {
    require_root();
    require_tools(&["ip"]);
    remove_orphans();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("{PREFIX}{}-{n}-{role}", std::process::id());
    Namespace::create(name).unwrap_or_else(|e| panic!("{e}"))
}

/// A network namespace made for one test; deleted on drop after killing what still runs in it.
pub struct Netns {
    ns: Namespace,
}

impl Deref for Netns {
    type Target = Namespace;
    fn deref(&self) -> &Namespace {
        &self.ns
    }
}

impl Netns {
    /// A namespace named by [`namespace`].
    pub fn new(role: &str) -> Self {
        Self {
            ns: namespace(role),
        }
    }

    /// Runs `argv` in the namespace and returns its stdout; panics unless it exits 0.
    pub fn run(&self, argv: &[&str]) -> String {
        self.ns.run(argv).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `ip -n <ns> <args>`, panicking on failure.
    pub fn ip(&self, args: &[&str]) {
        self.ns.ip(args).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Loads an nftables ruleset into the namespace, panicking on failure.
    pub fn nft(&self, ruleset: &str) {
        self.ns.nft(ruleset).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts a long-running program in the namespace; its output goes to `log`.
    pub fn spawn(&self, label: &str, argv: &[&str], env: &[(&str, &str)], log: &Path) -> Daemon {
        let (program, args) = argv.split_first().expect("a command line is not empty");
        let mut cmd = self.command(program);
        cmd.args(args);
        for (key, value) in env {
            cmd.env(key, value);
        }
        Daemon::spawn(label, cmd, log)
    }

    /// One ICMP echo (v4 or v6 by the address), waiting at most one second for the reply.
    pub fn ping_once(&self, dst: IpAddr) -> bool {
        self.try_run(
            &["ping", "-c", "1", "-W", "1", "-q", &dst.to_string()],
            COMMAND_TIMEOUT,
        )
        .is_ok_and(|out| out.success())
    }

    /// Pings `dst` until a reply comes, at most `timeout`; `Err` names the namespace and address.
    pub fn wait_ping(&self, dst: IpAddr, timeout: Duration) -> Result<Duration, String> {
        wait_until(
            &format!("a ping reply from {dst} in {}", self.name()),
            timeout,
            || self.ping_once(dst),
        )
    }

    /// Drops `percent` % of the packets leaving and of those arriving on `dev`, at random.
    ///
    /// This is what `tc qdisc add dev DEV root netem loss P%` would do on egress, but done with
    /// nftables (`numgen random`), because kernels built without `CONFIG_NET_SCH_NETEM` (like the
    /// project's CI machine) have no netem, while nf_tables is nearly always there.
    pub fn random_loss(&self, dev: &str, percent: u8) {
        assert!(percent <= 100, "a loss rate is 0..=100 %, not {percent}");
        require_tools(&["nft"]);
        let ruleset = format!(
            "table inet wiremesh_loss {{\n\
             \tchain out {{ type filter hook output priority 0; oifname \"{dev}\" numgen random mod 100 < {percent} counter drop; }}\n\
             \tchain in {{ type filter hook input priority 0; iifname \"{dev}\" numgen random mod 100 < {percent} counter drop; }}\n\
             }}\n"
        );
        self.nft(&ruleset);
    }

    /// How many packets [`Netns::random_loss`] has dropped so far (both directions).
    pub fn random_loss_dropped(&self) -> u64 {
        let listing = self.run(&["nft", "list", "table", "inet", "wiremesh_loss"]);
        listing
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] == "packets")
            .filter_map(|w| w[1].parse::<u64>().ok())
            .sum()
    }
}

/// A veth pair: `a_dev` in `a` and `b_dev` in `b`, both up, panicking on failure.
pub fn veth(a: &Netns, a_dev: &str, b: &Netns, b_dev: &str) {
    wiremesh_lab::veth(a, a_dev, b, b_dev).unwrap_or_else(|e| panic!("{e}"));
}

/// Runs `f` on a new thread that first enters namespace `ns` (setns), so the sockets it opens live
/// there; the handle gives `f`'s result, or why the thread could not enter.
pub fn spawn_in<T: Send + 'static>(
    ns: &Namespace,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> JoinHandle<Result<T, String>> {
    let name = ns.name().to_owned();
    std::thread::spawn(move || {
        enter(&name)?;
        f()
    })
}

/// Moves the calling thread into the named network namespace.
pub(crate) fn enter(name: &str) -> Result<(), String> {
    let path = format!("/run/netns/{name}");
    let file = File::open(&path).map_err(|e| format!("open {path}: {e}"))?;
    // SAFETY: setns on a valid namespace fd only changes this thread's network namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Deletes `wmt-<pid>-…` namespaces whose test process is gone.
fn remove_orphans() {
    for name in orphaned_namespaces(PREFIX) {
        let _ = delete_namespace(&name, TEARDOWN_GRACE);
    }
}
