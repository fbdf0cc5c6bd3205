//! Preconditions: root, the external tools, and the project's binaries, built for the test run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use wiremesh_lab::run_bounded;

/// A cold release build of the agent takes minutes on two cores; nothing takes longer.
const BUILD_TIMEOUT: Duration = Duration::from_secs(1200);

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

/// The path of a workspace binary (`wiremesh`, `wiremesh-peer`, `wiremesh-controller`), built for
/// this test run: `cargo test` does not build other packages' binaries for this package's tests,
/// so this runs `cargo build -p <package> --bin <name>` once per binary and test process, with the
/// cargo, profile and target directory of the running test (`target/<profile>/deps/<test>`). A
/// binary that cannot be built fails the test with cargo's output.
pub fn project_binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<(String, PathBuf)>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(|| Mutex::new(Vec::new()))
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, path)) = built.iter().find(|(bin, _)| bin == name) {
        return path.clone();
    }
    let package = match name {
        "wiremesh" => "wiremesh-cli",
        "wiremesh-peer" => "wiremesh-peer",
        "wiremesh-controller" => "wiremesh-controller",
        other => panic!("no workspace binary named {other}"),
    };
    let exe = std::env::current_exe().expect("the test knows its own executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in <target>/<profile>/deps");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => panic!(
            "cannot tell the cargo profile from {}",
            profile_dir.display()
        ),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = run_bounded(
        Command::new(&cargo)
            .args([
                "build",
                "--quiet",
                "--profile",
                profile,
                "-p",
                package,
                "--bin",
                name,
            ])
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("..")),
        BUILD_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("building {name}: {e}"));
    let path = profile_dir.join(name);
    assert!(
        out.success() && is_executable(&path),
        "could not build {} (cargo build --profile {profile} -p {package} --bin {name}: {}): {}",
        path.display(),
        out.status,
        out.stderr
    );
    built.push((name.to_owned(), path.clone()));
    path
}
