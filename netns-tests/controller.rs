//! The controller of a planned lab ([`Lab::planned_with_controller`]): `wiremesh-controller run`
//! in the first member's namespace with the plan's controller configuration, the lab's network key
//! and the first member's identity, its store and admin socket in a state directory of the lab;
//! started, killed and restarted by the tests, and asked with the admin commands
//! (`status`, `token create`, `revoke`, `device add`). Its log survives restarts.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use wiremesh_lab::{Output, run_bounded};

use crate::daemon::{Daemon, notify_socket};
use crate::env::project_binary;
use crate::lab::Lab;
use crate::planned::path_arg;
use crate::wait::wait_for;

/// How long the controller may take from start to READY=1.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// The bound on one admin command and on a reload.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);

/// A started controller daemon and the notify socket it reports to.
pub(crate) struct RunningController {
    daemon: Daemon,
    // Kept bound while it runs, so its later notifications (STOPPING=1) find a listener.
    _notify: UnixDatagram,
}

impl Lab {
    /// Where the controller keeps its store and admin socket.
    pub fn controller_state_dir(&self) -> PathBuf {
        self.dir().join("controller-state")
    }

    /// The controller's log (all its runs).
    pub fn controller_log(&self) -> String {
        std::fs::read(self.dir().join("controller.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Starts `wiremesh-controller run` in the first member's namespace and waits (bounded) for its
    /// READY=1; panics with its log when it exits or is not ready in time.
    pub fn start_controller(&mut self) {
        assert!(
            self.controller.is_none(),
            "the controller is already running"
        );
        let dir = self.dir().to_owned();
        let host = &self.members[0];
        let notify_path = dir.join("controller-notify.sock");
        let notify = notify_socket(&notify_path);
        let argv = [
            path_arg(&project_binary("wiremesh-controller")),
            "run".into(),
            "--config".into(),
            path_arg(&self.controller_config_path()),
            "--network-key".into(),
            path_arg(&dir.join("network.key")),
            "--identity".into(),
            path_arg(&host.identity_path()),
            "--state-dir".into(),
            path_arg(&self.controller_state_dir()),
        ];
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let mut daemon = host.ns.spawn(
            &format!("controller on {}", host.name),
            &argv,
            &[
                ("NOTIFY_SOCKET", &path_arg(&notify_path)),
                ("RUST_LOG", "info"),
                ("NO_COLOR", "1"),
            ],
            &dir.join("controller.log"),
        );
        if let Err(e) = daemon.wait_ready(&notify, READY_TIMEOUT) {
            panic!("{e}");
        }
        self.controller = Some(RunningController {
            daemon,
            _notify: notify,
        });
    }

    /// Kills the controller with SIGKILL (no chance to clean up) and waits until it is gone.
    pub fn kill_controller(&mut self) {
        let mut running = self
            .controller
            .take()
            .expect("the controller is not running");
        running.daemon.signal(libc::SIGKILL);
        wait_for("the controller to die of SIGKILL", ADMIN_TIMEOUT, || {
            running.daemon.exited().is_some()
        });
    }

    /// Sends SIGHUP to the controller and waits (bounded) until it logs that it reloaded; panics
    /// when it refused the new configuration. Returns what it logged meanwhile.
    pub fn reload_controller(&mut self) -> String {
        let before = self.controller_log();
        let seen = |log: &str| {
            log.matches("configuration reloaded").count() + log.matches("reload refused").count()
        };
        let count = seen(&before);
        self.controller
            .as_mut()
            .expect("the controller is not running")
            .daemon
            .signal(libc::SIGHUP);
        wait_for(
            "the controller to reload after SIGHUP",
            ADMIN_TIMEOUT,
            || seen(&self.controller_log()) > count,
        );
        let logged = self
            .controller_log()
            .get(before.len()..)
            .unwrap_or_default()
            .to_owned();
        assert!(
            !logged.contains("reload refused"),
            "the controller refused the new configuration:\n{logged}"
        );
        logged
    }

    /// Runs `wiremesh-controller ARGS --state-dir <the controller's>` (an admin command; the admin
    /// socket is a file, so it runs outside the namespaces), whatever its exit status.
    pub fn controller_admin(&self, args: &[&str]) -> Output {
        run_bounded(
            Command::new(project_binary("wiremesh-controller"))
                .args(args)
                .arg("--state-dir")
                .arg(self.controller_state_dir()),
            ADMIN_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Lab::controller_admin`], panicking unless it succeeds; returns its stdout.
    pub fn controller_admin_ok(&self, args: &[&str]) -> String {
        let out = self.controller_admin(args);
        assert!(
            out.success(),
            "wiremesh-controller {} failed ({}): {}{}\ncontroller log:\n{}",
            args.join(" "),
            out.status,
            out.stdout,
            out.stderr,
            self.controller_log()
        );
        out.stdout
    }

    /// `wiremesh-controller status --json`, parsed.
    pub fn controller_status(&self) -> Value {
        let text = self.controller_admin_ok(&["status", "--json"]);
        serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("wiremesh-controller status --json printed invalid JSON ({e}): {text}")
        })
    }
}
