//! The epoch floor: the highest netmap epoch this agent accepted, per network key, and which netmap
//! that was, kept in the state directory so that after a restart an older netmap that is still
//! valid (one that lists a member revoked since) is refused, while the very netmap that set the
//! floor is still taken. The floor is saved like the rest of the state: a failed save only warns. So that the next start knows the floor may be behind, a small marker file is made
//! while the disk still takes writes (at start) and kept open; a failed save is written into it
//! in place, which needs no new space, no directory entry and no permission on the directory.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use wiremesh_core::files::read_text_bounded;
use wiremesh_core::keys::NetworkPublicKey;
use wiremesh_core::netmap::Netmap;

use super::config::write_atomically;

const FLOOR_FILE: &str = "epoch-floor.json";
const MARK_FILE: &str = "epoch-floor.unsaved";
/// The marker's fixed size: room for a network key, an epoch and a digest.
const MARK_LEN: usize = 256;
/// The floor file holds a line per network; more than this is not ours.
const MAX_FLOOR_BYTES: usize = 1 << 20;

/// The highest epoch accepted for one network, and which netmap it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Floor {
    pub epoch: u64,
    /// The netmap's signature (base64): one netmap has one.
    pub digest: String,
}

impl Floor {
    pub fn of(netmap: &Netmap) -> Floor {
        Floor {
            epoch: netmap.content().epoch,
            digest: BASE64.encode(netmap.signature().to_bytes()),
        }
    }

    /// Whether `netmap` may still be used: newer than the floor, or the netmap that set it.
    pub fn admits(&self, netmap: &Netmap) -> bool {
        let epoch = netmap.content().epoch;
        epoch > self.epoch || (epoch == self.epoch && *self == Floor::of(netmap))
    }
}

/// The floors, and where they are kept.
pub struct EpochFloor {
    path: PathBuf,
    floors: BTreeMap<String, Floor>,
    /// The marker, opened (and sized) at start; none when that failed.
    mark: Option<File>,
    /// What the last run left in the marker: the network and the floor it could not store.
    unsaved: Option<(String, Floor)>,
}

impl EpochFloor {
    /// Reads the floors in `dir` and prepares the marker. Problems are returned as warnings: the
    /// agent runs without a floor rather than not at all.
    pub fn open(dir: &Path) -> (EpochFloor, Vec<String>) {
        let mut warnings = Vec::new();
        let path = dir.join(FLOOR_FILE);
        let floors = match read_floors(&path) {
            Ok(floors) => floors,
            Err(e) => {
                warnings.push(format!("{e:#}; no epoch floor is known"));
                BTreeMap::new()
            }
        };
        let mark_path = dir.join(MARK_FILE);
        let (mark, unsaved) = match open_mark(&mark_path) {
            Ok((file, text)) => (Some(file), parse_mark(&text)),
            Err(e) => {
                warnings.push(format!(
                    "{}: {e:#}; should saving the epoch floor fail, the next start will not know",
                    mark_path.display()
                ));
                (None, None)
            }
        };
        let floor = EpochFloor {
            path,
            floors,
            mark,
            unsaved,
        };
        (floor, warnings)
    }

    /// The floor of `network`, counting one the last run could not store.
    pub fn get(&self, network: &NetworkPublicKey) -> Option<&Floor> {
        let key = network.to_base64();
        match (self.floors.get(&key), self.unsaved_for(&key)) {
            (Some(s), Some(u)) if u.epoch > s.epoch => Some(u),
            (saved, unsaved) => saved.or(unsaved),
        }
    }

    /// What the last run could not store for the network with this key.
    fn unsaved_for(&self, key: &str) -> Option<&Floor> {
        self.unsaved
            .as_ref()
            .filter(|(k, _)| k == key)
            .map(|(_, f)| f)
    }

    /// Why the floor of `network` may be behind: the last run could not store an epoch above the
    /// one saved. None when the saved floor is known to be complete.
    pub fn stale(&self, network: &NetworkPublicKey) -> Option<String> {
        let (key, unsaved) = self.unsaved.as_ref()?;
        let epoch = unsaved.epoch;
        if *key != network.to_base64() || self.floors.get(key).is_some_and(|f| f.epoch >= epoch) {
            return None;
        }
        Some(format!(
            "the epoch floor may be stale: the last run could not store netmap epoch {epoch} in {}; \
             older epochs are refused, but a later one that run accepted may be missing",
            self.path.display()
        ))
    }

    /// Records that `netmap` of `network` was accepted. A failed save is written into the marker,
    /// for the next start, and returned.
    pub fn raise(&mut self, network: &NetworkPublicKey, netmap: &Netmap) -> Result<()> {
        let key = network.to_base64();
        let floor = Floor::of(netmap);
        if self
            .floors
            .get(&key)
            .is_some_and(|f| f.epoch >= floor.epoch)
        {
            return Ok(());
        }
        let mut floors = self.floors.clone();
        floors.insert(key.clone(), floor.clone());
        let text = serde_json::to_string_pretty(&floors)
            .map_err(|e| anyhow!("cannot encode the epoch floor: {e}"))?;
        let saved = write_atomically(&self.path, text.as_bytes());
        let unsaved = self.unsaved_for(&key).map(|f| f.epoch);
        match &saved {
            Ok(()) => {
                self.floors = floors;
                if unsaved.is_some_and(|e| e <= floor.epoch) {
                    self.unsaved = None;
                    self.write_mark("");
                }
            }
            Err(_) if unsaved.is_none_or(|e| e < floor.epoch) => {
                self.write_mark(&format!("{key} {} {}", floor.epoch, floor.digest));
                self.unsaved = Some((key, floor));
            }
            Err(_) => {}
        }
        saved
    }

    /// Overwrites the marker in place (blanks for none).
    fn write_mark(&mut self, text: &str) {
        let Some(file) = &mut self.mark else {
            return;
        };
        let mut bytes = [b' '; MARK_LEN];
        let n = text.len().min(MARK_LEN);
        bytes[..n].copy_from_slice(&text.as_bytes()[..n]);
        let written = file
            .seek(SeekFrom::Start(0))
            .and_then(|_| file.write_all(&bytes))
            .and_then(|()| file.sync_data());
        if let Err(e) = written {
            tracing::warn!("cannot note the unsaved epoch floor for the next start: {e}");
        }
    }
}

fn read_floors(path: &Path) -> Result<BTreeMap<String, Floor>> {
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    let text = read_text_bounded(path, MAX_FLOOR_BYTES).context("the epoch floor")?;
    serde_json::from_str(&text).map_err(|e| {
        anyhow!(
            "{}: expected an object of network keys, each with an epoch and a digest: {e}",
            path.display()
        )
    })
}

/// Opens the marker, creating it with its full size so that later writes need no new space.
fn open_mark(path: &Path) -> Result<(File, String)> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    let mut text = String::new();
    (&mut file)
        .take(MARK_LEN as u64)
        .read_to_string(&mut text)?;
    if fs::metadata(path)?.len() < MARK_LEN as u64 {
        file.seek(SeekFrom::Start(0))?;
        let mut bytes = [b' '; MARK_LEN];
        let n = text.len().min(MARK_LEN);
        bytes[..n].copy_from_slice(&text.as_bytes()[..n]);
        file.write_all(&bytes)?;
        file.sync_all()?;
    }
    Ok((file, text))
}

/// `"<network key> <epoch> <digest>"`, or nothing.
fn parse_mark(text: &str) -> Option<(String, Floor)> {
    let mut words = text.split_whitespace();
    let key = words.next()?.to_string();
    let epoch = words.next()?.parse().ok()?;
    let digest = words.next()?.to_string();
    Some((key, Floor { epoch, digest }))
}

#[cfg(test)]
pub(super) mod tests {
    use wiremesh_core::keys::NetworkKey;
    use wiremesh_core::netmap::NetmapContent;

    use super::*;

    /// A signed netmap of `epoch` with no members (shared with the agent's other tests).
    pub(crate) fn netmap(key: &NetworkKey, epoch: u64) -> Netmap {
        NetmapContent {
            network: key.public_key(),
            instance: "my-vpn".into(),
            epoch,
            issued_at: 1,
            expires_at: 2,
            members: vec![],
        }
        .canonicalize()
        .unwrap()
        .sign(key.secret())
    }

    fn key() -> NetworkKey {
        NetworkKey::generate().unwrap()
    }

    fn epoch(floor: Option<&Floor>) -> Option<u64> {
        floor.map(|f| f.epoch)
    }

    #[test]
    fn floors_survive_a_restart_per_network() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (key(), key());
        let (mut floor, warnings) = EpochFloor::open(dir.path());
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(floor.get(&a.public_key()), None);
        floor.raise(&a.public_key(), &netmap(&a, 7)).unwrap();
        floor.raise(&a.public_key(), &netmap(&a, 3)).unwrap();
        floor.raise(&b.public_key(), &netmap(&b, 2)).unwrap();
        let (floor, warnings) = EpochFloor::open(dir.path());
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(epoch(floor.get(&a.public_key())), Some(7));
        assert_eq!(epoch(floor.get(&b.public_key())), Some(2));
        assert_eq!(floor.stale(&a.public_key()), None);
    }

    #[test]
    fn the_floor_admits_newer_netmaps_and_the_one_that_set_it() {
        let a = key();
        let seven = netmap(&a, 7);
        let floor = Floor::of(&seven);
        assert!(floor.admits(&seven));
        assert!(floor.admits(&netmap(&a, 8)));
        assert!(!floor.admits(&netmap(&a, 6)));
        // Another netmap of the same epoch is not the one accepted.
        let other = NetmapContent {
            instance: "other".into(),
            ..seven.content().clone()
        }
        .sign(a.secret());
        assert!(!floor.admits(&other));
    }

    #[test]
    fn a_failed_save_is_noted_for_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let a = key();
        let net = a.public_key();
        let (mut floor, _) = EpochFloor::open(dir.path());
        floor.raise(&net, &netmap(&a, 4)).unwrap();
        let saved = fs::read_to_string(dir.path().join(FLOOR_FILE)).unwrap();
        // A directory where the floor file goes: no rename can replace it (root or not).
        let path = dir.path().join(FLOOR_FILE);
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        fs::write(path.join("x"), "").unwrap();
        let nine = netmap(&a, 9);
        assert!(
            floor.raise(&net, &nine).is_err(),
            "the save should have failed"
        );
        fs::remove_dir_all(&path).unwrap();
        fs::write(&path, saved).unwrap();

        let (floor, _) = EpochFloor::open(dir.path());
        // The marker carries the netmap that was lost: older ones are refused, it is not.
        assert_eq!(floor.get(&net), Some(&Floor::of(&nine)));
        let stale = floor.stale(&net).expect("the next start knows");
        assert!(stale.contains("could not store netmap epoch 9"), "{stale}");
        assert_eq!(floor.stale(&key().public_key()), None);

        // Once a save works again, the note is gone.
        let (mut floor, _) = EpochFloor::open(dir.path());
        floor.raise(&net, &netmap(&a, 10)).unwrap();
        let (floor, _) = EpochFloor::open(dir.path());
        assert_eq!(
            (epoch(floor.get(&net)), floor.stale(&net)),
            (Some(10), None)
        );
    }

    #[test]
    fn a_damaged_floor_file_is_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FLOOR_FILE), "[1, 2]").unwrap();
        let (floor, warnings) = EpochFloor::open(dir.path());
        assert_eq!(floor.get(&key().public_key()), None);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("epoch-floor.json: expected an object of network keys"),
            "{warnings:?}"
        );
    }
}
