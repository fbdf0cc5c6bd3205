//! Running a short command with a time bound: its output goes to anonymous temp files (so a
//! chatty command or a grandchild holding a pipe open can never block the test), and it is killed
//! when the bound passes.

use std::io::{Read as _, Seek as _};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What a finished command printed and how it exited.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// Runs `cmd` to completion, at most `timeout`. `Err` says which command failed to start or ran
/// too long (it is then killed); a non-zero exit is an `Ok` with that status.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Result<Output, String> {
    let described = format!("{cmd:?}");
    let mut out = tempfile::tempfile().map_err(|e| format!("temp file for {described}: {e}"))?;
    let mut err = tempfile::tempfile().map_err(|e| format!("temp file for {described}: {e}"))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().map_err(|e| e.to_string())?)
        .stderr(err.try_clone().map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("cannot start {described}: {e}"))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{described} did not finish within {timeout:?} and was killed; stdout: {}; stderr: {}",
                    read_all(&mut out),
                    read_all(&mut err)
                ));
            }
            Err(e) => return Err(format!("waiting for {described}: {e}")),
        }
    };
    Ok(Output {
        status,
        stdout: read_all(&mut out),
        stderr: read_all(&mut err),
    })
}

fn read_all(file: &mut std::fs::File) -> String {
    let mut bytes = Vec::new();
    let _ = file.rewind();
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}
