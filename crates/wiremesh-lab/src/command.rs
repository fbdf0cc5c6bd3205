//! Running a short command with a time bound: its output goes to anonymous temp files (so a
//! chatty command or a grandchild holding a pipe open can never block the caller), and it is
//! killed when the bound passes or the caller's stop check turns true.

use std::fs::File;
use std::io::{Read as _, Seek as _};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(10);

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
/// too long (it is then killed; the error holds what it printed); a non-zero exit is an `Ok`
/// with that status.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Result<Output, String> {
    run_bounded_until(cmd, timeout, || false)
}

/// [`run_bounded`], also killing the command as soon as `stop` returns true (it is polled every
/// 10 ms), e.g. on Ctrl-C.
pub fn run_bounded_until(
    cmd: &mut Command,
    timeout: Duration,
    stop: impl Fn() -> bool,
) -> Result<Output, String> {
    let described = format!("{cmd:?}");
    let temp_file_error = |e: std::io::Error| format!("temp file for {described}: {e}");
    let mut out = tempfile::tempfile().map_err(temp_file_error)?;
    let mut err = tempfile::tempfile().map_err(temp_file_error)?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().map_err(temp_file_error)?)
        .stderr(err.try_clone().map_err(temp_file_error)?)
        .spawn()
        .map_err(|e| format!("cannot start {described}: {e}"))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if stop() => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{described} was stopped before it finished"));
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
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

fn read_all(file: &mut File) -> String {
    let mut bytes = Vec::new();
    let _ = file.rewind();
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sh -c SCRIPT` through [`run_bounded_until`].
    fn sh(script: &str, timeout: Duration, stop: bool) -> Result<Output, String> {
        run_bounded_until(Command::new("sh").args(["-c", script]), timeout, || stop)
    }

    #[test]
    fn a_finished_command_gives_its_output_and_status() {
        let out = sh(
            "echo out; echo err >&2; exit 3",
            Duration::from_secs(10),
            false,
        )
        .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert!(!out.success());
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
    }

    #[test]
    fn an_overrun_is_killed_and_its_output_kept_in_the_error() {
        let err = sh(
            "echo early; echo oops >&2; exec sleep 30",
            Duration::from_millis(300),
            false,
        )
        .unwrap_err();
        assert!(err.contains("did not finish within"), "{err}");
        assert!(err.contains("stdout: early"), "{err}");
        assert!(err.contains("stderr: oops"), "{err}");
    }

    #[test]
    fn a_stop_request_kills_the_command() {
        let err = sh("exec sleep 30", Duration::from_secs(30), true).unwrap_err();
        assert!(err.contains("was stopped"), "{err}");
    }

    #[test]
    fn a_missing_program_is_an_error_naming_it() {
        let err = run_bounded(
            &mut Command::new("/nonexistent/wiremesh-lab-test"),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(err.contains("cannot start"), "{err}");
        assert!(err.contains("wiremesh-lab-test"), "{err}");
    }
}
