//! Preconditions: root, the external tools, and the project's binaries built next to the test.

use std::path::{Path, PathBuf};

/// Panics unless the process runs as root: the tests create namespaces and TUN devices.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "the netns tests must run as root (euid is {euid}): they create network namespaces, veth \
         links and TUN devices. Run `sudo cargo test -p wiremesh-netns-tests` or the README's test \
         command as root."
    );
}

/// The Debian package (or install command) that provides each tool the tests use.
fn provider(tool: &str) -> &'static str {
    match tool {
        "ip" | "tc" | "ss" => "apt-get install iproute2",
        "ping" => "apt-get install iputils-ping",
        "tcpdump" => "apt-get install tcpdump",
        "wg" => "apt-get install wireguard-tools",
        "wireguard-go" => "apt-get install wireguard-go",
        "iperf3" => "apt-get install iperf3",
        "nft" => "apt-get install nftables",
        _ => "install it",
    }
}

/// Panics, naming the package to install, unless every tool is on `PATH`.
pub fn require_tools(tools: &[&str]) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<String> = tools
        .iter()
        .filter(|tool| !std::env::split_paths(&path).any(|dir| is_executable(&dir.join(tool))))
        .map(|tool| format!("'{tool}' ({})", provider(tool)))
        .collect();
    assert!(
        missing.is_empty(),
        "the netns tests need these tools, which are not on PATH: {}",
        missing.join(", ")
    );
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The path of one of the workspace's binaries (`wiremesh`, `wiremesh-peer`) in the same target
/// profile directory as this test executable (`target/<profile>/deps/<test>` →
/// `target/<profile>/<name>`). `cargo test --workspace` builds them before running any test; with
/// `-p wiremesh-netns-tests` alone they must be built first, which the panic message says.
pub fn project_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| {
            if deps.ends_with("deps") {
                deps.parent()
            } else {
                Some(deps)
            }
        })
        .expect("the test executable lives in a directory");
    let path = profile_dir.join(name);
    assert!(
        is_executable(&path),
        "{} is not built. Build the binaries first, in the same profile as the tests: \
         `cargo build -p wiremesh-cli -p wiremesh-peer` (or run `cargo test --workspace`, which \
         builds them).",
        path.display()
    );
    path
}
