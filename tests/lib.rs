//! Shared helpers for the workspace integration tests: where the example files and built binaries are.
//!
//! `cargo test --workspace` does not build other packages' binaries for this package's tests (and
//! `CARGO_BIN_EXE_*` only exists for a package's own binaries), so [`binary`] builds the binary it is
//! asked for with the same cargo, profile and target directory as the running test, then returns
//! its path. A binary that cannot be built is a test failure with cargo's output, never a skip.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The workspace root (the directory holding the root Cargo.toml).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent directory")
}

/// A file below the workspace root, e.g. `workspace_file("examples/inventory.json")`.
pub fn workspace_file(relative: &str) -> PathBuf {
    workspace_root().join(relative)
}

/// The build directory and cargo profile of the running test binary, from its path
/// `<dir>/<profile dir>/deps/<test>`. The nested cargo finds the same target directory on its own
/// (same environment and configuration); the directory is only named in messages.
fn target_and_profile() -> (PathBuf, String) {
    let exe = std::env::current_exe().expect("the test binary knows its own path");
    let profile_dir = exe.parent().and_then(Path::parent).unwrap_or_else(|| {
        panic!(
            "test binary {} is not in <target>/<profile>/deps/",
            exe.display()
        )
    });
    let target = profile_dir
        .parent()
        .unwrap_or_else(|| panic!("no target directory above {}", profile_dir.display()));
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_string(),
        Some(name) => name.to_string(),
        None => panic!(
            "cannot tell the cargo profile from {}",
            profile_dir.display()
        ),
    };
    (target.to_path_buf(), profile)
}

/// The path of binary `bin` of workspace package `package`, built (or found up to date) by cargo
/// for this test run. Panics with cargo's output if it cannot be built.
pub fn binary(package: &str, bin: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<(String, PathBuf)>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(Vec::new()));
    let mut built = built
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, path)) = built.iter().find(|(name, _)| name == bin) {
        return path.clone();
    }
    let (target, profile) = target_and_profile();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .args([
            "build",
            "--quiet",
            "--message-format=json-render-diagnostics",
            "--profile",
            &profile,
        ])
        .args(["-p", package, "--bin", bin])
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo:?} to build the `{bin}` binary: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let executable = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact" && msg["target"]["name"] == bin)
        .find_map(|msg| msg["executable"].as_str().map(PathBuf::from));
    match executable {
        Some(path) if output.status.success() && path.is_file() => {
            built.push((bin.to_string(), path.clone()));
            path
        }
        _ => panic!(
            "could not build the `{bin}` binary of package `{package}` (cargo build --profile {profile}, target dir {}): {}\n{}",
            target.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// The `wiremesh` admin CLI.
pub fn wiremesh() -> PathBuf {
    binary("wiremesh-cli", "wiremesh")
}

/// The `wiremesh-controller` daemon and admin CLI.
pub fn wiremesh_controller() -> PathBuf {
    binary("wiremesh-controller", "wiremesh-controller")
}

/// How long [`run`] waits for a program before killing it and failing the test.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs `program` with `args` in the workspace root, feeding `stdin`, and returns its output.
/// Panics if it cannot be started or does not finish within [`RUN_TIMEOUT`] (it is killed then).
/// Standard input is written and the outputs are read on their own threads, so that a program
/// writing before it has read all its input cannot deadlock with the test.
pub fn run(program: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(workspace_root())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let input = input.to_vec();
        // A program that exits early closes the pipe; its exit status tells the test why.
        std::thread::spawn(move || pipe.write_all(&input));
    }
    let stdout = child.stdout.take().map(read_all);
    let stderr = child.stderr.take().map(read_all);
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} {args:?} did not finish within {RUN_TIMEOUT:?}",
                    program.display()
                );
            }
            Err(e) => panic!("cannot wait for {}: {e}", program.display()),
        }
    };
    let collect = |reader: Option<std::thread::JoinHandle<Vec<u8>>>| {
        reader
            .map(|r| r.join().unwrap_or_default())
            .unwrap_or_default()
    };
    Output {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    }
}

fn read_all(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}
