//! Reading the agent config and the signed netmap, turning them into a [`MeshSpec`], and keeping
//! the last good config and netmap in the state directory so the agent can start when a file is
//! unreadable (or the controller unreachable).

use std::fs;
use std::io::{ErrorKind, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use ipnet::IpNet;
use wiremesh_core::addresses::check_interface_name;
use wiremesh_core::claims::{find_clashes, owned_prefixes};
use wiremesh_core::config::{Addresses, AgentConfig, MAX_CONFIG_BYTES};
use wiremesh_core::files::{read_bounded, read_text_bounded};
use wiremesh_core::keys::WireguardPublicKey;
use wiremesh_core::netmap::{Candidate, Flags, MAX_NETMAP_BYTES, Netmap, NetmapContent, Rejection};
use wiremesh_peer::spec::{MemberSpec, MeshSpec, RelaySpec, SpecSource};

use super::floor::Floor;
use super::resolve::Resolved;

/// Smallest MTU the agent accepts (IPv6 needs 1280).
const MIN_MTU: u32 = 1280;
/// Largest MTU whose packets still fit one UDP datagram over an IPv4 underlay once encrypted:
/// 65,507 bytes of UDP payload = 32 bytes of WireGuard framing + the packet padded to 16 bytes.
/// A larger packet would be refused by the kernel (EMSGSIZE) and vanish silently.
const MAX_MTU: u32 = 65_472;

const LAST_GOOD_CONFIG: &str = "last-good-config.json";
const LAST_GOOD_NETMAP: &str = "last-good-netmap.bin";

/// Parses and checks a config text; `origin` names the file in errors.
pub fn parse(text: &str, origin: &Path) -> Result<AgentConfig> {
    let config = AgentConfig::from_json(text).map_err(|e| anyhow!("{}: {e}", origin.display()))?;
    // The name also names the default state directory, so it must be one path component.
    if let Err(e) = check_interface_name(&config.interface) {
        bail!(
            "{}: \"interface\" is {:?}: {e}; expected a Linux interface name",
            origin.display(),
            config.interface
        );
    }
    let claims = config
        .peers
        .iter()
        .map(|p| (p.name.as_str(), owned_prefixes(&p.addresses, &p.routes)));
    if let Some(clash) = find_clashes(claims).into_iter().next() {
        bail!("{}: \"peers\": {clash}", origin.display());
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
    let text = read_text_bounded(path, MAX_CONFIG_BYTES).context("the agent config")?;
    let config = parse(&text, path)?;
    Ok((text, config))
}

fn addresses(a: &Addresses) -> Vec<IpAddr> {
    a.ipv4
        .map(IpAddr::V4)
        .into_iter()
        .chain([IpAddr::V6(a.ipv6)])
        .collect()
}

/// The spec's parts that come from this machine's config: addresses, networks, ranges, and the
/// relays of the controllers whose key it pins.
fn base(config: &AgentConfig, own: &Addresses, resolved: &Resolved) -> MeshSpec {
    let mut networks = Vec::new();
    if let Some(net) = config.network.ipv4 {
        networks.push(IpNet::V4(net));
    }
    networks.push(IpNet::V6(config.network.ipv6));
    let mut addresses = Vec::new();
    if let Some(v4) = own.ipv4 {
        let len = config.network.ipv4.map_or(32, |n| n.prefix_len());
        addresses.extend(IpNet::new(IpAddr::V4(v4), len).ok());
    }
    addresses.extend(IpNet::new(IpAddr::V6(own.ipv6), config.network.ipv6.prefix_len()).ok());
    let relays = config
        .controllers
        .iter()
        .filter_map(|c| {
            // IPv4 first: a relayed datagram is 12 bytes longer, and over IPv6 (40-byte header)
            // a full one at the default MTU no longer fits a 1,500-byte link.
            let found = resolved.get(c.relay_endpoint.as_ref()?).ok()?;
            let addr = *found
                .iter()
                .find(|a| a.is_ipv4())
                .or_else(|| found.first())?;
            Some(RelaySpec {
                name: c.name.clone(),
                addr,
                node_public_key: c.node_public_key?,
            })
        })
        .collect();
    MeshSpec {
        addresses,
        networks,
        ip_ranges: config.ip_ranges.clone(),
        members: Vec::new(),
        relays,
        source: SpecSource::Config,
    }
}

/// The addresses of a member's endpoints, each once; endpoints that did not resolve become
/// warnings.
fn endpoint_addresses(
    name: &str,
    endpoints: &[String],
    resolved: &Resolved,
    warnings: &mut Vec<String>,
) -> Vec<SocketAddr> {
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for endpoint in endpoints {
        match resolved.get(endpoint) {
            Ok(found) => {
                for addr in found {
                    if !addrs.contains(addr) {
                        addrs.push(*addr);
                    }
                }
            }
            Err(why) => warnings.push(format!("peer '{name}': endpoint '{endpoint}' {why}")),
        }
    }
    addrs
}

/// A member as its config peer entry or netmap entry describes it.
fn member_spec(
    name: &str,
    public_key: &WireguardPublicKey,
    member_addresses: &Addresses,
    routes: &[IpNet],
    endpoints: Vec<SocketAddr>,
    candidates: &[Candidate],
    persistent_keepalive: Option<u16>,
) -> MemberSpec {
    MemberSpec {
        name: name.to_owned(),
        public_key: *public_key.as_bytes(),
        addresses: addresses(member_addresses),
        routes: routes.to_vec(),
        endpoints,
        candidates: candidates.iter().map(|c| (c.addr, c.kind)).collect(),
        persistent_keepalive,
    }
}

/// Every endpoint the spec will need: the netmap's members' when there is a netmap, else the
/// config's peers', and the controllers' relays.
pub fn endpoints<'a>(
    config: &'a AgentConfig,
    netmap: Option<&'a NetmapContent>,
) -> Vec<&'a String> {
    let relays = config
        .controllers
        .iter()
        .filter_map(|c| c.relay_endpoint.as_ref());
    match netmap {
        Some(n) => n
            .members
            .iter()
            .flat_map(|m| &m.endpoints)
            .chain(relays)
            .collect(),
        None => config
            .peers
            .iter()
            .flat_map(|p| &p.endpoints)
            .chain(relays)
            .collect(),
    }
}

/// The mesh a config describes, with its precomputed peer list. Returns warnings for endpoints
/// that did not resolve.
pub fn spec(config: &AgentConfig, resolved: &Resolved) -> (MeshSpec, Vec<String>) {
    let mut warnings = Vec::new();
    let mut spec = base(config, &config.addresses, resolved);
    spec.members = config
        .peers
        .iter()
        .map(|peer| {
            member_spec(
                &peer.name,
                &peer.wireguard_public_key,
                &peer.addresses,
                &peer.routes,
                endpoint_addresses(&peer.name, &peer.endpoints, resolved, &mut warnings),
                &[],
                peer.persistent_keepalive.or(config.persistent_keepalive),
            )
        })
        .collect();
    (spec, warnings)
}

/// The mesh a netmap describes: its members (revoked ones left out) replace the config's peer
/// list, and this machine's own entry, when present, gives its addresses (a dynamic IPv4 lease).
pub fn netmap_spec(
    config: &AgentConfig,
    netmap: &NetmapContent,
    own_key: &[u8; 32],
    resolved: &Resolved,
) -> (MeshSpec, Vec<String>) {
    let mut warnings = Vec::new();
    let own = netmap
        .members
        .iter()
        .find(|m| m.wireguard_public_key.as_bytes() == own_key)
        .map_or(config.addresses, |m| m.addresses);
    let mut spec = base(config, &own, resolved);
    spec.members = netmap
        .members
        .iter()
        .filter(|m| {
            !m.flags.contains(Flags::REVOKED) && m.wireguard_public_key.as_bytes() != own_key
        })
        .map(|m| {
            member_spec(
                &m.name,
                &m.wireguard_public_key,
                &m.addresses,
                &m.routes,
                endpoint_addresses(&m.name, &m.endpoints, resolved, &mut warnings),
                &m.candidates,
                config.persistent_keepalive,
            )
        })
        .collect();
    spec.source = SpecSource::Netmap {
        epoch: netmap.epoch,
        expires_unix: netmap.expires_at,
    };
    (spec, warnings)
}

/// Reads and decodes a netmap file (the signature is checked by [`accept`]).
pub fn read_netmap(path: &Path) -> Result<Netmap> {
    let bytes = read_bounded(path, MAX_NETMAP_BYTES).context("the netmap")?;
    Netmap::decode(&bytes).map_err(|e| anyhow!("{}: not a netmap: {e}", path.display()))
}

/// Whether `candidate` may replace `current` (which the caller has checked against the key the
/// config pins): `Ok(true)` when it is a new, valid netmap newer than `current` and above
/// `floor` (the highest epoch accepted before) or the very netmap that set the floor, `Ok(false)`
/// when it is the netmap already in use, the rejection otherwise.
pub fn accept(
    candidate: &Netmap,
    config: &AgentConfig,
    current: Option<&Netmap>,
    floor: Option<&Floor>,
    now_unix: u64,
) -> Result<bool, Rejection> {
    if current.is_some_and(|c| c == candidate) {
        return Ok(false);
    }
    // The netmap that set the floor is taken again: it may be the one whose save was lost.
    let floor = floor
        .filter(|f| **f != Floor::of(candidate))
        .map(|f| f.epoch);
    let last = floor.max(current.map(|c| c.content().epoch));
    candidate.verify(&config.network_public_key, last, now_unix)?;
    Ok(true)
}

/// The agent's directory for state that must survive restarts.
pub struct StateDir(PathBuf);

impl StateDir {
    pub fn open(path: &Path) -> Result<StateDir> {
        fs::create_dir_all(path)
            .with_context(|| format!("{}: cannot create the state directory", path.display()))?;
        Ok(StateDir(path.to_path_buf()))
    }

    pub fn path(&self) -> &Path {
        &self.0
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

    fn netmap_path(&self) -> PathBuf {
        self.0.join(LAST_GOOD_NETMAP)
    }

    pub fn save_netmap(&self, netmap: &Netmap) -> Result<()> {
        write_atomically(&self.netmap_path(), &netmap.encode())
    }

    /// The last accepted netmap, if one was stored and still carries the network's signature.
    /// Its expiry is not checked: expiry refuses a netmap as new input, and this one was
    /// accepted before; running from it is what keeps the mesh up while the controller is away.
    pub fn load_netmap(&self, config: &AgentConfig) -> Option<Netmap> {
        let path = self.netmap_path();
        if !path.exists() {
            return None;
        }
        match read_netmap(&path) {
            Ok(netmap) => match netmap.verify(&config.network_public_key, None, 0) {
                Ok(_) => Some(netmap),
                Err(e) => {
                    tracing::warn!("{}: ignored: {e}", path.display());
                    None
                }
            },
            Err(e) => {
                tracing::warn!("{e:#}");
                None
            }
        }
    }
}

/// Writes `bytes` to `path` through a temporary file beside it: created exclusively with mode
/// 0600, fsynced, renamed over `path`, then the directory fsynced.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let create = || {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
    };
    let write = || -> std::io::Result<()> {
        // A file by this name was left by a crashed run with the same process id: one thread at a
        // time writes each state file, so no writer of ours has it open. It is removed, never
        // written through (it may be a link to elsewhere); a fixed name, unlike a random one,
        // leaves no file behind per crash.
        let mut file = match create() {
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                fs::remove_file(&tmp)?;
                create()?
            }
            created => created?,
        };
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
    use wiremesh_core::keys::{NetworkKey, NodePublicKey, WireguardPublicKey};
    use wiremesh_core::netmap::Member;

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

    fn lookup(config: &AgentConfig, netmap: Option<&NetmapContent>) -> Resolved {
        Resolved::lookup(endpoints(config, netmap), super::super::resolve::DEADLINE)
    }

    #[test]
    fn config_becomes_a_spec() {
        let config = parse(CONFIG, Path::new("c.json")).unwrap();
        let (spec, warnings) = spec(&config, &lookup(&config, None));
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
        // It names the default state directory: no path may hide in it.
        for bad in ["..", "/etc", "a/b"] {
            let err = parse(&CONFIG.replace("wm-my-vpn", bad), Path::new("x.json"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("\"interface\""), "{bad}: {err}");
        }
        // A peer whose route is another peer's address exactly.
        let mut config = parse(CONFIG, Path::new("x.json")).unwrap();
        let mut other = config.peers[0].clone();
        other.name = "other".into();
        other.wireguard_public_key = WireguardPublicKey::from_bytes([9; 32]);
        other.node_public_key = NodePublicKey::from_bytes([8; 32]);
        other.addresses.ipv6 = "fd12:3456:789a::9".parse().unwrap();
        other.routes = vec!["fd12:3456:789a::1/128".parse().unwrap()];
        config.peers.push(other);
        let err = parse(&config.to_json(), Path::new("x.json"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "x.json: \"peers\": members \"server\" and \"other\" both claim \
                 fd12:3456:789a::1/128"
            ),
            "{err}"
        );
        let mtu = CONFIG.replace("1420", "100");
        let err = parse(&mtu, Path::new("x.json")).unwrap_err().to_string();
        assert!(err.contains("\"mtu\" is 100"), "{err}");
        let mtu = CONFIG.replace("1420", "65473");
        let err = parse(&mtu, Path::new("x.json")).unwrap_err().to_string();
        assert!(err.contains("allowed: 1280 to 65472"), "{err}");
        assert!(parse(&CONFIG.replace("1420", "65472"), Path::new("x.json")).is_ok());
        let err = parse("{", Path::new("x.json")).unwrap_err().to_string();
        assert!(err.starts_with("x.json: "), "{err}");
    }

    #[test]
    fn file_errors_say_which_file_is_meant() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        fs::write(&path, b"{\xff}").unwrap();
        let err = format!("{:#}", read(&path).unwrap_err());
        assert_eq!(
            err,
            format!(
                "the agent config: cannot read {}: not UTF-8 text (invalid byte at offset 1)",
                path.display()
            )
        );
        let absent = dir.path().join("absent");
        let err = format!("{:#}", read_netmap(&absent).unwrap_err());
        assert!(
            err.starts_with(&format!("the netmap: cannot read {}: ", absent.display())),
            "{err}"
        );
    }

    fn netmap(config: &AgentConfig, key: &NetworkKey, epoch: u64, expires_at: u64) -> Netmap {
        let member = |name: &str, wg: u8, v6: &str, flags: Flags| Member {
            candidates: Vec::new(),
            name: name.into(),
            wireguard_public_key: WireguardPublicKey::from_bytes([wg; 32]),
            node_public_key: NodePublicKey::from_bytes([wg; 32]),
            addresses: Addresses {
                ipv4: Some(format!("100.77.0.{wg}").parse().unwrap()),
                ipv6: v6.parse().unwrap(),
            },
            endpoints: vec!["198.18.0.9:51820".into()],
            routes: vec![],
            flags,
        };
        NetmapContent {
            network: config.network_public_key,
            instance: "my-vpn".into(),
            epoch,
            issued_at: 100,
            expires_at,
            members: vec![
                member("laptop", 5, "fd12:3456:789a::55", Flags::default()),
                member("revoked", 6, "fd12:3456:789a::6", Flags::REVOKED),
                member("server", 1, "fd12:3456:789a::1", Flags::CONTROLLER),
            ],
        }
        .canonicalize()
        .unwrap()
        .sign(key.secret())
    }

    fn keyed_config() -> (AgentConfig, NetworkKey) {
        let key = NetworkKey::generate().unwrap();
        let mut config = parse(CONFIG, Path::new("c.json")).unwrap();
        config.network_public_key = key.public_key();
        (config, key)
    }

    #[test]
    fn netmap_members_replace_the_peer_list() {
        let (config, key) = keyed_config();
        let map = netmap(&config, &key, 7, 1_000);
        let (spec, _) = netmap_spec(
            &config,
            map.content(),
            &[5; 32],
            &lookup(&config, Some(map.content())),
        );
        let names: Vec<&str> = spec.members.iter().map(|m| m.name.as_str()).collect();
        // Ourselves (key 5) and the revoked member are not peers.
        assert_eq!(names, ["server"]);
        assert_eq!(spec.members[0].persistent_keepalive, Some(25));
        // Our own entry gives our addresses.
        let own: Vec<String> = spec.addresses.iter().map(|a| a.to_string()).collect();
        assert_eq!(own, ["100.77.0.5/16", "fd12:3456:789a::55/48"]);
        assert_eq!(
            spec.source,
            SpecSource::Netmap {
                epoch: 7,
                expires_unix: 1_000
            }
        );
    }

    #[test]
    fn netmaps_are_accepted_only_when_signed_newer_and_unexpired() {
        let (config, key) = keyed_config();
        let current = netmap(&config, &key, 7, 1_000);
        assert_eq!(accept(&current, &config, None, None, 500), Ok(true));
        assert_eq!(
            accept(&current, &config, Some(&current), None, 500),
            Ok(false)
        );
        let newer = netmap(&config, &key, 8, 1_000);
        assert_eq!(accept(&newer, &config, Some(&current), None, 500), Ok(true));
        assert!(matches!(
            accept(&current, &config, Some(&newer), None, 500),
            Err(Rejection::StaleEpoch { .. })
        ));
        // After a restart with no netmap in use, the floor refuses what is older than the netmap
        // that set it, and takes that one again.
        let floor = Floor::of(&newer);
        assert!(matches!(
            accept(&current, &config, None, Some(&floor), 500),
            Err(Rejection::StaleEpoch { epoch: 7, last: 8 })
        ));
        assert_eq!(accept(&newer, &config, None, Some(&floor), 500), Ok(true));
        let same_epoch = netmap(&config, &key, 8, 999);
        assert!(matches!(
            accept(&same_epoch, &config, None, Some(&floor), 500),
            Err(Rejection::StaleEpoch { epoch: 8, last: 8 })
        ));
        assert_eq!(
            accept(
                &netmap(&config, &key, 9, 1_000),
                &config,
                None,
                Some(&floor),
                500
            ),
            Ok(true)
        );
        assert!(matches!(
            accept(&newer, &config, Some(&current), None, 1_000),
            Err(Rejection::Expired { .. })
        ));
        let other = NetworkKey::generate().unwrap();
        let forged = netmap(&config, &other, 9, 1_000);
        assert!(matches!(
            accept(&forged, &config, Some(&current), None, 500),
            Err(Rejection::BadSignature(_))
        ));
    }

    #[test]
    fn state_dir_keeps_the_last_good_netmap_even_after_expiry() {
        let (config, key) = keyed_config();
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        assert_eq!(state.load_netmap(&config), None);
        // Expired long ago (Unix second 200), yet still the last good one.
        let map = netmap(&config, &key, 3, 200);
        state.save_netmap(&map).unwrap();
        assert_eq!(state.load_netmap(&config), Some(map));
        // A netmap of another network is not used.
        let (other_config, _) = keyed_config();
        assert_eq!(state.load_netmap(&other_config), None);
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

    #[test]
    fn state_files_are_written_with_mode_0600_never_through_a_stale_temp_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last-good");
        let outside = dir.path().join("outside");
        let stale = dir
            .path()
            .join(format!(".last-good.tmp-{}", std::process::id()));
        // Left by a crashed run with this process id: a world-readable file, or a link.
        fs::write(&stale, "stale").unwrap();
        fs::set_permissions(&stale, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomically(&path, b"first").unwrap();
        let mode = |path: &Path| fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600, "{:o}", mode(&path));
        fs::write(&outside, "keep me").unwrap();
        std::os::unix::fs::symlink(&outside, &stale).unwrap();
        write_atomically(&path, b"second").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "second");
        assert_eq!(fs::read_to_string(&outside).unwrap(), "keep me");
        assert_eq!(mode(&path), 0o600, "{:o}", mode(&path));
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no temp file left"
        );
    }
}
