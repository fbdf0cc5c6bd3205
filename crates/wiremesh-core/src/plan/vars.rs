//! Where the plan finds public keys: Clan's vars layout below a keys directory. The files are read
//! through a caller-supplied function, so planning itself does no I/O.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::PlanError;
use crate::keys::{KeyParseError, NetworkPublicKey, NodePublicKey, WireguardPublicKey};

/// `vars/per-machine/<m>/wiremesh-<i>/wireguard-public-key/value`, relative to the keys directory.
pub fn wireguard_key_path(instance: &str, machine: &str) -> PathBuf {
    per_machine(instance, machine, "wireguard-public-key")
}

/// `vars/per-machine/<m>/wiremesh-<i>/node-public-key/value`.
pub fn node_key_path(instance: &str, machine: &str) -> PathBuf {
    per_machine(instance, machine, "node-public-key")
}

/// `vars/shared/wiremesh-network-<i>/network-public-key/value`.
pub fn network_key_path(instance: &str) -> PathBuf {
    Path::new("vars/shared")
        .join(format!("wiremesh-network-{instance}"))
        .join("network-public-key/value")
}

/// Where a controller machine holds the network private key once deployed: Clan puts the secret
/// file `network-private-key` of the shared generator `wiremesh-network-<i>` at
/// `/run/secrets/vars/<generator>/<file>`.
pub fn network_secret_path(instance: &str) -> String {
    format!("/run/secrets/vars/wiremesh-network-{instance}/network-private-key")
}

/// Whether `name` is exactly one normal path component, so joining it cannot leave the directory.
pub(super) fn is_path_component(name: &str) -> bool {
    !matches!(name, "" | "." | "..") && !name.contains(['/', '\0'])
}

fn per_machine(instance: &str, machine: &str, file: &str) -> PathBuf {
    Path::new("vars/per-machine")
        .join(machine)
        .join(format!("wiremesh-{instance}"))
        .join(file)
        .join("value")
}

/// Reads a key file: `Ok(text)` or `Err(reason)` such as "No such file or directory".
pub type ReadKey<'a> = dyn FnMut(&Path) -> Result<String, String> + 'a;

/// Reads every member's two public keys and the network public key. A missing or bad file, or a
/// key two members share, is an error in `errors`; the map holds only the members whose keys both
/// read.
pub(super) fn read_keys<'m>(
    instance: &str,
    machines: impl Iterator<Item = &'m str>,
    keys_dir: &Path,
    read_key: &mut ReadKey<'_>,
    errors: &mut Vec<PlanError>,
) -> (
    BTreeMap<&'m str, (WireguardPublicKey, NodePublicKey)>,
    Option<NetworkPublicKey>,
) {
    let mut keys = BTreeMap::new();
    for machine in machines {
        let wg = read_public::<WireguardPublicKey>(
            keys_dir,
            &wireguard_key_path(instance, machine),
            Some(machine),
            "WireGuard public key",
            read_key,
            errors,
        );
        let node = read_public::<NodePublicKey>(
            keys_dir,
            &node_key_path(instance, machine),
            Some(machine),
            "node public key",
            read_key,
            errors,
        );
        if let (Some(wg), Some(node)) = (wg, node) {
            keys.insert(machine, (wg, node));
        }
    }
    let mut wireguard_owner = BTreeMap::new();
    let mut node_owner = BTreeMap::new();
    for (machine, (wg, node)) in &keys {
        for (what, first) in [
            ("WireGuard public key", wireguard_owner.insert(wg, *machine)),
            ("node public key", node_owner.insert(node, *machine)),
        ] {
            if let Some(first) = first {
                errors.push(PlanError::SharedKey {
                    what,
                    first: first.to_string(),
                    second: machine.to_string(),
                });
            }
        }
    }
    let network_key = read_public::<NetworkPublicKey>(
        keys_dir,
        &network_key_path(instance),
        None,
        "network public key",
        read_key,
        errors,
    );
    (keys, network_key)
}

fn read_public<K: std::str::FromStr<Err = KeyParseError>>(
    keys_dir: &Path,
    relative: &Path,
    machine: Option<&str>,
    what: &'static str,
    read_key: &mut ReadKey<'_>,
    errors: &mut Vec<PlanError>,
) -> Option<K> {
    let path = keys_dir.join(relative);
    let machine = machine.map(str::to_string);
    match read_key(&path) {
        Err(reason) => {
            errors.push(PlanError::MissingKey {
                machine,
                what,
                path,
                reason,
            });
            None
        }
        Ok(text) => match text.trim().parse::<K>() {
            Ok(key) => Some(key),
            Err(problem) => {
                errors.push(PlanError::BadKey {
                    machine,
                    what,
                    path,
                    problem,
                });
                None
            }
        },
    }
}
