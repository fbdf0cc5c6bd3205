//! A stock WireGuard peer: Debian's wireguard-go, configured with `wg` over its UAPI socket, for the
//! interoperability and filtering tests.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::daemon::Daemon;
use crate::env::require_tools;
use crate::netns::Netns;
use crate::wait::wait_for;
use wiremesh_lab::run_bounded;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A wireguard-go interface in a namespace with a fresh key.
pub struct WgGo {
    daemon: Daemon,
    dev: String,
    private_key: PathBuf,
    public_key: String,
}

impl WgGo {
    /// Starts wireguard-go with a fresh private key and `port` as its listen port. The interface
    /// name is unique on the host, because the UAPI socket `/var/run/wireguard/<dev>.sock` is a
    /// host-wide path even though the interface lives in a namespace.
    pub fn start(ns: &Netns, dir: &Path, port: u16) -> Self {
        require_tools(&["wg"]);
        Self::start_with_key(ns, dir, port, wg(&["genkey"], None).trim())
    }

    /// [`WgGo::start`] with a given private key (base64, as `wg genkey` prints it), e.g. one a
    /// wg-quick configuration holds.
    pub fn start_with_key(ns: &Netns, dir: &Path, port: u16, key: &str) -> Self {
        require_tools(&["wireguard-go", "wg"]);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dev = format!("wg{n}x{}", std::process::id());
        let private_key = dir.join(format!("{dev}.key"));
        std::fs::write(&private_key, format!("{key}\n")).expect("the test dir is writable");
        let public_key = wg(&["pubkey"], Some(&private_key)).trim().to_owned();
        let log = dir.join(format!("{dev}.log"));
        let daemon = ns.spawn(
            &format!("wireguard-go {dev}"),
            &["wireguard-go", "-f", &dev],
            &[("WG_PROCESS_FOREGROUND", "1")],
            &log,
        );
        let sock = uapi_socket(&dev);
        wait_for(
            &format!("wireguard-go to create {}", sock.display()),
            Duration::from_secs(10),
            || sock.exists(),
        );
        let this = Self {
            daemon,
            dev,
            private_key,
            public_key,
        };
        let key_path = this.private_key.to_string_lossy().into_owned();
        ns.run(&[
            "wg",
            "set",
            &this.dev,
            "private-key",
            &key_path,
            "listen-port",
            &port.to_string(),
        ]);
        this
    }

    /// The base64 public key, as `wg pubkey` prints it.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// Adds (or updates) a peer with `wg set`.
    pub fn set_peer(
        &self,
        ns: &Netns,
        public_key: &str,
        endpoint: SocketAddr,
        allowed_ips: &[&str],
        keepalive: Option<u16>,
    ) {
        let endpoint = endpoint.to_string();
        let allowed = allowed_ips.join(",");
        let keepalive = keepalive.map_or_else(|| "off".to_owned(), |k| k.to_string());
        ns.run(&[
            "wg",
            "set",
            &self.dev,
            "peer",
            public_key,
            "endpoint",
            &endpoint,
            "allowed-ips",
            &allowed,
            "persistent-keepalive",
            &keepalive,
        ]);
    }

    /// Assigns overlay addresses (`addr/prefix`), sets the MTU and brings the interface up.
    pub fn up(&self, ns: &Netns, addresses: &[&str], mtu: u16) {
        for addr in addresses {
            ns.ip(&["addr", "add", addr, "dev", &self.dev]);
        }
        ns.ip(&["link", "set", &self.dev, "mtu", &mtu.to_string(), "up"]);
    }

    /// Routes `net` (`addr/prefix`) into the interface, as wg-quick does for each AllowedIPs.
    pub fn route(&self, ns: &Netns, net: &str) {
        ns.ip(&["route", "replace", net, "dev", &self.dev]);
    }

    /// Adds one more address (no route) to the interface, e.g. to send from a spoofed source.
    pub fn add_address(&self, ns: &Netns, addr: IpAddr) {
        let prefix = if addr.is_ipv4() { "32" } else { "128" };
        ns.ip(&["addr", "add", &format!("{addr}/{prefix}"), "dev", &self.dev]);
    }

    /// `wg show <dev> dump`: the interface line and one line per peer.
    pub fn dump(&self, ns: &Netns) -> String {
        ns.run(&["wg", "show", &self.dev, "dump"])
    }
}

impl Drop for WgGo {
    fn drop(&mut self) {
        self.daemon.stop();
        let _ = std::fs::remove_file(uapi_socket(&self.dev));
    }
}

fn uapi_socket(dev: &str) -> PathBuf {
    PathBuf::from(format!("/var/run/wireguard/{dev}.sock"))
}

/// Runs `wg` on the host (key generation only), optionally with a file on stdin.
fn wg(args: &[&str], stdin: Option<&Path>) -> String {
    let mut line = format!("wg {}", args.join(" "));
    if let Some(path) = stdin {
        line.push_str(&format!(" < '{}'", path.display()));
    }
    let out = run_bounded(
        std::process::Command::new("sh").arg("-c").arg(&line),
        Duration::from_secs(10),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.success(), "`{line}` failed: {}", out.stderr);
    out.stdout
}
