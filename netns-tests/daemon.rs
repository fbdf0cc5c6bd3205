//! Long-running processes (agents, wireguard-go, tcpdump) that are stopped on drop, with their log
//! shown when the test is failing.

use std::fs::File;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::wait::wait_until;

/// How long a daemon gets to exit after SIGTERM before it is killed.
const GRACE: Duration = Duration::from_secs(5);

/// A child process with its output in a log file; SIGTERM then SIGKILL on drop.
pub struct Daemon {
    label: String,
    child: Child,
    log: PathBuf,
    status: Option<ExitStatus>,
}

impl Daemon {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(label: &str, mut cmd: Command, log: &Path) -> Self {
        let file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("cannot open log {}: {e}", log.display()));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("a log file handle can be cloned"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label} ({cmd:?}): {e}"));
        Self {
            label: label.to_owned(),
            child,
            log: log.to_owned(),
            status: None,
        }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pids fit in i32")
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The exit status once it has exited, `None` while it runs.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Sends `signal` to the process (if it still runs).
    pub fn signal(&mut self, signal: i32) {
        if self.exited().is_none() {
            // SAFETY: kill has no memory preconditions; the pid is our unreaped child.
            unsafe { libc::kill(self.pid(), signal) };
        }
    }

    /// Waits until the daemon tells `notify` (its NOTIFY_SOCKET, see [`notify_socket`]) READY=1,
    /// at most `timeout`. `Err` with its log when it exits first or the time is up; the daemon is
    /// left as it is (a test may still want its exit status).
    pub fn wait_ready(&mut self, notify: &UnixDatagram, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            if let Ok(n) = notify.recv(&mut buf)
                && String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == "READY=1")
            {
                return Ok(());
            }
            if let Some(status) = self.exited() {
                return Err(format!(
                    "{} exited ({status}) before it was ready; log:\n{}",
                    self.label,
                    self.log_text()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} did not send READY=1 to NOTIFY_SOCKET within {timeout:?}; log:\n{}",
                    self.label,
                    self.log_text()
                ));
            }
        }
    }

    /// SIGTERM, then SIGKILL after a grace period; returns how it exited.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        if wait_until(&format!("{} to exit", self.label), GRACE, || {
            self.exited().is_some()
        })
        .is_err()
        {
            let _ = self.child.kill();
        }
        match self.status {
            Some(status) => status,
            None => {
                let status = self.child.wait().expect("a killed child can be reaped");
                self.status = Some(status);
                status
            }
        }
    }
}

/// A NOTIFY_SOCKET (systemd's readiness protocol) bound at `path`, replacing what was there, with
/// a short read timeout so [`Daemon::wait_ready`] can look at the daemon between reads.
pub fn notify_socket(path: &Path) -> UnixDatagram {
    let _ = std::fs::remove_file(path);
    let notify = UnixDatagram::bind(path)
        .unwrap_or_else(|e| panic!("cannot bind the notify socket {}: {e}", path.display()));
    notify
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("a read timeout can be set");
    notify
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let log = self.log_text();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!(
                "---- last lines of {} ({}):",
                self.label,
                self.log.display()
            );
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}
