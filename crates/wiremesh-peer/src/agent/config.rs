//! Reading the agent config and identity, turning a config into a [`MeshSpec`], and keeping the
//! last good config in the state directory so the agent can start when the file is unreadable.

use std::fs;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use ipnet::IpNet;
use wiremesh_core::config::AgentConfig;
use wiremesh_peer::spec::{MemberSpec, MeshSpec, SpecSource};

/// Smallest MTU the agent accepts (IPv6 needs 1280).
const MIN_MTU: u32 = 1280;
/// Largest MTU a TUN device takes.
const MAX_MTU: u32 = 65_535;

const LAST_GOOD_CONFIG: &str = "last-good-config.json";

/// Parses and checks a config text; `origin` names the file in errors.
pub fn parse(text: &str, origin: &Path) -> Result<AgentConfig> {
    let config = AgentConfig::from_json(text).map_err(|e| anyhow!("{}: {e}", origin.display()))?;
    if config.interface.is_empty() || config.interface.len() > 15 {
        bail!(
            "{}: \"interface\" is {:?}; expected 1 to 15 bytes (a Linux interface name)",
            origin.display(),
            config.interface
        );
    }
    if !(MIN_MTU..=MAX_MTU).contains(&config.mtu) {
        bail!(
            "{}: \"mtu\" is {}; allowed: {MIN_MTU} to {MAX_MTU}",
            origin.display(),
            config.mtu
        );
    }
    Ok(config)
}

pub fn read(path: &Path) -> Result<(String, AgentConfig)> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read the agent config", path.display()))?;
    let config = parse(&text, path)?;
    Ok((text, config))
}

/// Resolves `host:port` / `[v6]:port`; logs and skips what does not resolve.
fn resolve(peer: &str, endpoint: &str, warnings: &mut Vec<String>) -> Option<SocketAddr> {
    match endpoint.to_socket_addrs() {
        Ok(mut addrs) => {
            let first = addrs.next();
            if first.is_none() {
                warnings.push(format!(
                    "peer '{peer}': endpoint '{endpoint}' resolves to no address"
                ));
            }
            first
        }
        Err(e) => {
            warnings.push(format!(
                "peer '{peer}': endpoint '{endpoint}' is not usable (expected host:port or [v6]:port): {e}"
            ));
            None
        }
    }
}

/// The mesh a config describes. Returns warnings for endpoints that could not be resolved.
pub fn spec(config: &AgentConfig) -> (MeshSpec, Vec<String>) {
    let mut warnings = Vec::new();
    let mut addresses = Vec::new();
    let mut networks = Vec::new();
    if let Some(net) = config.network.ipv4 {
        networks.push(IpNet::V4(net));
    }
    networks.push(IpNet::V6(config.network.ipv6));
    if let Some(v4) = config.addresses.ipv4 {
        let len = config.network.ipv4.map_or(32, |n| n.prefix_len());
        addresses.extend(IpNet::new(IpAddr::V4(v4), len).ok());
    }
    addresses.extend(
        IpNet::new(
            IpAddr::V6(config.addresses.ipv6),
            config.network.ipv6.prefix_len(),
        )
        .ok(),
    );
    let members = config
        .peers
        .iter()
        .map(|peer| MemberSpec {
            name: peer.name.clone(),
            public_key: *peer.wireguard_public_key.as_bytes(),
            addresses: peer
                .addresses
                .ipv4
                .map(IpAddr::V4)
                .into_iter()
                .chain([IpAddr::V6(peer.addresses.ipv6)])
                .collect(),
            routes: peer.routes.clone(),
            endpoints: peer
                .endpoints
                .iter()
                .filter_map(|e| resolve(&peer.name, e, &mut warnings))
                .collect(),
            persistent_keepalive: peer.persistent_keepalive.or(config.persistent_keepalive),
        })
        .collect();
    let spec = MeshSpec {
        addresses,
        networks,
        ip_ranges: config.ip_ranges.clone(),
        members,
        source: SpecSource::Config,
    };
    (spec, warnings)
}

/// The agent's directory for state that must survive restarts.
pub struct StateDir(PathBuf);

impl StateDir {
    pub fn open(path: &Path) -> Result<StateDir> {
        fs::create_dir_all(path)
            .with_context(|| format!("{}: cannot create the state directory", path.display()))?;
        Ok(StateDir(path.to_path_buf()))
    }

    fn config_path(&self) -> PathBuf {
        self.0.join(LAST_GOOD_CONFIG)
    }

    /// Stores a config that loaded and applied, atomically (temp file, fsync, rename, fsync dir).
    pub fn save_config(&self, text: &str) -> Result<()> {
        write_atomically(&self.config_path(), text.as_bytes())
    }

    /// The last good config, if one was stored and still parses.
    pub fn load_config(&self) -> Result<(String, AgentConfig)> {
        read(&self.config_path())
    }
}

pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        anyhow!("{}: cannot write atomically: {e}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"{
      "version": 1, "instance": "my-vpn", "machine": "laptop", "roles": ["peer"],
      "settings": {}, "interface": "wm-my-vpn", "listenPort": 51820, "mtu": 1420,
      "persistentKeepalive": 25,
      "network": { "ipv4": "100.77.0.0/16", "ipv6": "fd12:3456:789a::/48" },
      "addresses": { "ipv4": "100.77.0.5", "ipv6": "fd12:3456:789a::5" },
      "ipRanges": ["100.77.0.0/16", "fd12:3456:789a::/48"],
      "routes": [],
      "peers": [
        { "name": "server",
          "wireguardPublicKey": "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
          "nodePublicKey": "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=",
          "addresses": { "ipv4": null, "ipv6": "fd12:3456:789a::1" },
          "endpoints": ["198.18.0.1:51820", "[fd00::1]:51820", "no port"],
          "routes": ["100.100.0.0/24"],
          "persistentKeepalive": null }
      ],
      "controllers": [],
      "networkPublicKey": "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM="
    }"#;

    #[test]
    fn config_becomes_a_spec() {
        let config = parse(CONFIG, Path::new("c.json")).unwrap();
        let (spec, warnings) = spec(&config);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("'no port'"), "{warnings:?}");
        let addresses: Vec<String> = spec.addresses.iter().map(|a| a.to_string()).collect();
        assert_eq!(addresses, ["100.77.0.5/16", "fd12:3456:789a::5/48"]);
        let server = &spec.members[0];
        assert_eq!(server.public_key, [1; 32]);
        assert_eq!(
            server.addresses,
            vec!["fd12:3456:789a::1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(server.endpoints.len(), 2);
        assert_eq!(server.persistent_keepalive, Some(25));
        let routes: Vec<String> = spec.tun_routes().iter().map(|a| a.to_string()).collect();
        assert_eq!(
            routes,
            ["100.77.0.0/16", "fd12:3456:789a::/48", "100.100.0.0/24"]
        );
    }

    #[test]
    fn bad_configs_name_the_file_and_the_field() {
        let long = CONFIG.replace("wm-my-vpn", "a-very-long-interface-name");
        let err = parse(&long, Path::new("/etc/wm.json"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/etc/wm.json") && err.contains("\"interface\""),
            "{err}"
        );
        let mtu = CONFIG.replace("1420", "100");
        let err = parse(&mtu, Path::new("x.json")).unwrap_err().to_string();
        assert!(err.contains("\"mtu\" is 100"), "{err}");
        let err = parse("{", Path::new("x.json")).unwrap_err().to_string();
        assert!(err.starts_with("x.json: "), "{err}");
    }

    #[test]
    fn state_dir_keeps_the_last_good_config() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(&dir.path().join("state")).unwrap();
        assert!(state.load_config().is_err());
        state.save_config(CONFIG).unwrap();
        let (text, config) = state.load_config().unwrap();
        assert_eq!(text, CONFIG);
        assert_eq!(config.machine, "laptop");
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path().join("state")).unwrap().count(), 1);
    }
}
