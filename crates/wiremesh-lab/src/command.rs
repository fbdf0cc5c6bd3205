//! Running a short command with a time bound: its output goes to anonymous temp files (so a
//! chatty command or a grandchild holding a pipe open can never block the caller), and it runs in
//! a process group of its own, which is killed whole when the bound passes or the caller's stop
//! check turns true. Its own group also keeps a Ctrl-C at the terminal from reaching it: the
//! caller decides.

use std::fs::File;
use std::io::{Read as _, Seek as _};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, ExitStatus, Stdio};
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
        .process_group(0)
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
                kill_group(&mut child);
                return Err(format!("{described} was stopped before it finished"));
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
            Ok(None) => {
                kill_group(&mut child);
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

/// Kills the command's process group (its pid is the group's id) and reaps the command.
fn kill_group(child: &mut Child) {
    match i32::try_from(child.id()) {
        // SAFETY: kill has no memory preconditions; pid > 0, so -pid names exactly that group.
        Ok(pid) if pid > 0 => unsafe {
            libc::kill(-pid, libc::SIGKILL);
        },
        _ => {
            let _ = child.kill();
        }
    }
    let _ = child.wait();
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
    fn an_overrun_kills_the_children_of_the_command_too() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
        sh(&script, Duration::from_millis(500), false).unwrap_err();
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while crate::process::running(pid) && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        assert!(
            !crate::process::running(pid),
            "the command's child {pid} outlived it"
        );
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
