//! Packet capture with tcpdump inside a namespace, for tests that must prove something was NOT sent
//! or NOT delivered.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::daemon::Daemon;
use crate::env::require_tools;
use crate::netns::Netns;
use crate::wait::wait_for;
use wiremesh_lab::run_bounded;

/// A running tcpdump writing a pcap file.
pub struct Capture {
    daemon: Daemon,
    pcap: PathBuf,
}

impl Capture {
    /// Captures packets on `dev` in `ns` that match the BPF `filter`; returns once tcpdump listens.
    pub fn start(ns: &Netns, dev: &str, filter: &str, dir: &Path, label: &str) -> Self {
        require_tools(&["tcpdump"]);
        let pcap = dir.join(format!("{label}.pcap"));
        let log = dir.join(format!("{label}.tcpdump.log"));
        let pcap_arg = pcap.to_string_lossy().into_owned();
        // --immediate-mode: without it, packets can sit in the kernel ring buffer and be lost on stop.
        let mut argv = vec![
            "tcpdump",
            "-i",
            dev,
            "-n",
            "-U",
            "--immediate-mode",
            "-w",
            &pcap_arg,
        ];
        argv.extend(filter.split_whitespace());
        let daemon = ns.spawn(&format!("tcpdump {label}"), &argv, &[], &log);
        wait_for(
            &format!("tcpdump on {dev} in {} to listen", ns.name()),
            Duration::from_secs(10),
            || daemon.log_text().contains("listening on"),
        );
        Self { daemon, pcap }
    }

    /// Stops the capture and returns one summary line per captured packet.
    pub fn finish(mut self) -> Vec<String> {
        // SIGINT makes tcpdump flush and close the file; stop() then only reaps it.
        self.daemon.signal(libc::SIGINT);
        self.daemon.stop();
        let out = run_bounded(
            std::process::Command::new("tcpdump")
                .args(["-r"])
                .arg(&self.pcap)
                .arg("-n"),
            Duration::from_secs(30),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        out.stdout.lines().map(str::to_owned).collect()
    }
}
