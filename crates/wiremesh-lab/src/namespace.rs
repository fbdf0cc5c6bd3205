//! A network namespace owned by a value: made with loopback up and IPv6 duplicate address
//! detection off (addresses are usable at once), deleted when the value is dropped (also on panic)
//! after stopping what still runs in it; and the veth links between two of them.

use std::ffi::OsStr;
use std::process::Command;
use std::time::Duration;

use crate::command::{Output, run_bounded};
use crate::teardown::{IP_TIMEOUT, delete_namespace, ip};

/// How long what still runs in a namespace being dropped has to exit after SIGTERM.
const TEARDOWN_GRACE: Duration = Duration::from_secs(3);

/// A network namespace that deletes itself on drop. Its name is the caller's: both users follow
/// `<prefix><pid>-…`, so [`crate::orphaned_namespaces`] finds what a killed run left.
#[derive(Debug)]
pub struct Namespace {
    name: String,
    deleted: bool,
}

impl Namespace {
    /// `ip netns add NAME`, loopback up, `accept_dad` 0. A failure after the add deletes it again.
    pub fn create(name: impl Into<String>) -> Result<Self, String> {
        let name = name.into();
        ok(&["netns", "add", &name])?;
        let ns = Self {
            name,
            deleted: false,
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        for conf in ["all", "default"] {
            ns.sysctl(&format!("net/ipv6/conf/{conf}/accept_dad"), "0")?;
        }
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` inside this namespace (`ip netns exec NAME program`).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `argv` in the namespace within `timeout`, whatever its exit status.
    pub fn try_run(&self, argv: &[&str], timeout: Duration) -> Result<Output, String> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| "an empty command line".to_owned())?;
        run_bounded(self.command(program).args(args), timeout)
    }

    /// Runs `argv` in the namespace (bounded); its stdout, or `Err` unless it exits 0.
    pub fn run(&self, argv: &[&str]) -> Result<String, String> {
        let out = self
            .try_run(argv, IP_TIMEOUT)
            .map_err(|e| format!("in namespace {}: {e}", self.name))?;
        if out.success() {
            Ok(out.stdout)
        } else {
            Err(format!(
                "in namespace {}: {argv:?} failed ({}): {}{}",
                self.name, out.status, out.stdout, out.stderr
            ))
        }
    }

    /// `ip -n NAME ARGS`, `Err` with its stderr on failure.
    pub fn ip(&self, args: &[&str]) -> Result<(), String> {
        let mut argv = vec!["-n", &self.name];
        argv.extend_from_slice(args);
        ok(&argv)
    }

    /// Writes a sysctl of this namespace (`key` as a path under /proc/sys, e.g.
    /// `net/ipv4/ip_forward`).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), String> {
        self.run(&["sh", "-c", &format!("echo {value} > /proc/sys/{key}")])
            .map(drop)
    }

    /// Loads an nftables ruleset (`nft -f`) into this namespace.
    pub fn nft(&self, ruleset: &str) -> Result<(), String> {
        let file = tempfile::NamedTempFile::new().map_err(|e| format!("a temp file: {e}"))?;
        std::fs::write(file.path(), ruleset).map_err(|e| format!("a temp file: {e}"))?;
        let path = file.path().to_string_lossy().into_owned();
        self.run(&["nft", "-f", &path]).map(drop)
    }

    /// Gives the namespace up without deleting it (a command-line tool that builds a topology
    /// for a shell script, which removes it later by name); returns its name.
    pub fn keep(mut self) -> String {
        self.deleted = true;
        std::mem::take(&mut self.name)
    }

    /// Deletes the namespace now (what runs in it is stopped first); `Err` says why it failed.
    pub fn delete(mut self) -> Result<(), String> {
        self.deleted = true;
        delete_namespace(&self.name, TEARDOWN_GRACE)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if !self.deleted
            && let Err(e) = delete_namespace(&self.name, TEARDOWN_GRACE)
        {
            eprintln!("{e}; remove it with `ip netns del {}`", self.name);
        }
    }
}

/// A veth pair: `a_dev` in `a` and `b_dev` in `b`, both up. Made from inside `a`, so the link
/// never appears in the host's namespace.
pub fn veth(a: &Namespace, a_dev: &str, b: &Namespace, b_dev: &str) -> Result<(), String> {
    a.ip(&[
        "link", "add", a_dev, "type", "veth", "peer", "name", b_dev, "netns", &b.name,
    ])?;
    a.ip(&["link", "set", a_dev, "up"])?;
    b.ip(&["link", "set", b_dev, "up"])
}

/// `ip ARGS` (always with `-n` or `netns`), `Err` with its stderr on failure.
fn ok(args: &[&str]) -> Result<(), String> {
    let out = ip(args)?;
    if out.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            out.stderr.trim()
        ))
    }
}
