//! Network namespaces with unique names (prefix, test process id, counter) that delete themselves,
//! and the veth links between them.

use std::ffi::OsStr;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use wiremesh_lab::{Output, delete_namespace, orphaned_namespaces, run_bounded};

use crate::daemon::Daemon;
use crate::env::{require_root, require_tools};
use crate::wait::wait_until;

/// Every namespace the harness makes starts with this, then the test process id.
const PREFIX: &str = "wmt-";
/// The bound on every short command (ip, tc, sysctl, ping -c 1).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long what still runs in a namespace being deleted has to exit after SIGTERM.
const TEARDOWN_GRACE: Duration = Duration::from_secs(3);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A network namespace made for one test; deleted on drop after killing what still runs in it.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Makes `wmt-<pid>-<n>-<role>` with loopback up and IPv6 duplicate address detection off (so
    /// addresses are usable at once). First removes namespaces left by test processes that died
    /// without cleaning up (killed by a signal, so `Drop` never ran).
    pub fn new(role: &str) -> Self {
        require_root();
        require_tools(&["ip"]);
        remove_orphans();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{}-{n}-{role}", std::process::id());
        host(&["ip", "netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        for conf in ["all", "default"] {
            ns.sysctl(&format!("net/ipv6/conf/{conf}/accept_dad"), "0");
        }
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` inside this namespace.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `argv` in the namespace with a bound, whatever its exit status.
    pub fn try_run(&self, argv: &[&str], timeout: Duration) -> Result<Output, String> {
        let (program, args) = argv.split_first().expect("a command line is not empty");
        run_bounded(self.command(program).args(args), timeout)
    }

    /// Runs `argv` in the namespace and returns its stdout; panics unless it exits 0.
    pub fn run(&self, argv: &[&str]) -> String {
        let out = self
            .try_run(argv, COMMAND_TIMEOUT)
            .unwrap_or_else(|e| panic!("in namespace {}: {e}", self.name));
        assert!(
            out.success(),
            "in namespace {}: {argv:?} failed ({}): {}{}",
            self.name,
            out.status,
            out.stdout,
            out.stderr
        );
        out.stdout
    }

    /// `ip -n <ns> <args>`, panicking on failure.
    pub fn ip(&self, args: &[&str]) {
        let mut argv = vec!["ip", "-n", &self.name];
        argv.extend_from_slice(args);
        host(&argv);
    }

    /// Writes a sysctl of this namespace (`key` as a path under /proc/sys, e.g. `net/ipv4/ip_forward`).
    pub fn sysctl(&self, key: &str, value: &str) {
        self.run(&["sh", "-c", &format!("echo {value} > /proc/sys/{key}")]);
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
            &format!("a ping reply from {dst} in {}", self.name),
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
        let file = tempfile::NamedTempFile::new().expect("a temp file can be made");
        std::fs::write(file.path(), ruleset).expect("a temp file is writable");
        let path = file.path().to_string_lossy().into_owned();
        self.run(&["nft", "-f", &path]);
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

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = delete_namespace(&self.name, TEARDOWN_GRACE);
    }
}

/// A veth pair: `a_dev` in `a` and `b_dev` in `b`, both up. Created from inside `a`, so the link
/// never appears in the host's namespace.
pub fn veth(a: &Netns, a_dev: &str, b: &Netns, b_dev: &str) {
    a.ip(&[
        "link",
        "add",
        a_dev,
        "type",
        "veth",
        "peer",
        "name",
        b_dev,
        "netns",
        b.name(),
    ]);
    a.ip(&["link", "set", a_dev, "up"]);
    b.ip(&["link", "set", b_dev, "up"]);
}

/// Runs a command in the host namespace (only `ip`/`tc` with an explicit `-n`), panicking on failure.
fn host(argv: &[&str]) {
    let (program, args) = argv.split_first().expect("a command line is not empty");
    let out = run_bounded(Command::new(program).args(args), COMMAND_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.success(),
        "{argv:?} failed ({}): {}{}",
        out.status,
        out.stdout,
        out.stderr
    );
}

/// Deletes `wmt-<pid>-…` namespaces whose test process is gone.
fn remove_orphans() {
    for name in orphaned_namespaces(PREFIX) {
        let _ = delete_namespace(&name, TEARDOWN_GRACE);
    }
}
