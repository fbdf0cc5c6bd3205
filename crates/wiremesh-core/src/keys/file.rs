//! The text formats of key files: a machine identity and a network key.
//!
//! One `key = value` per line; `#` starts a comment line; blank lines are ignored. Every field is
//! required exactly once and unknown fields are refused, so a truncated or mixed-up file is caught
//! when it is read and not when a handshake fails later.

use std::fmt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::{
    KeyParseError, NetworkPublicKey, NetworkSecret, NodePublicKey, NodeSecret, WireguardPublicKey,
    WireguardSecret, decode_key_base64,
};

const WIREGUARD_FIELD: &str = "wireguard-private-key";
const NODE_FIELD: &str = "node-private-key";
const NETWORK_FIELD: &str = "network-private-key";
/// The largest key file read; real ones are about 170 bytes, and the bound keeps `/dev/zero` or a
/// mistaken path from being read into memory whole.
pub const MAX_KEY_FILE_BYTES: usize = 64 << 10;

/// What is wrong with a key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyFileProblem {
    /// The file could not be read (only from the `load` helpers).
    Unreadable(String),
    TooLarge,
    NotUtf8,
    Empty,
    /// A non-comment line without `=`.
    NotKeyValue,
    UnknownField {
        name: String,
        allowed: &'static [&'static str],
    },
    DuplicateField(String),
    MissingField {
        name: &'static str,
        found: Vec<String>,
    },
    BadKey {
        name: String,
        problem: KeyParseError,
    },
}

/// A key file error; names the file (when read from one) and the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct KeyFileError {
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    pub problem: KeyFileProblem,
}

impl KeyFileError {
    fn at(line: usize, problem: KeyFileProblem) -> Self {
        Self {
            file: None,
            line: Some(line),
            problem,
        }
    }
    fn whole(problem: KeyFileProblem) -> Self {
        Self {
            file: None,
            line: None,
            problem,
        }
    }
    /// The same error, naming `path` as the file it came from.
    pub fn in_file(mut self, path: &Path) -> Self {
        self.file = Some(path.to_path_buf());
        self
    }
}

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "key file {}", file.display())?,
            None => f.write_str("key file")?,
        }
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        f.write_str(": ")?;
        match &self.problem {
            KeyFileProblem::Unreadable(e) => write!(f, "cannot read it: {e}"),
            KeyFileProblem::TooLarge => write!(
                f,
                "larger than {MAX_KEY_FILE_BYTES} bytes, so not a key file"
            ),
            KeyFileProblem::NotUtf8 => f.write_str("not UTF-8 text"),
            KeyFileProblem::Empty => {
                f.write_str("the file is empty (expected `name = base64` lines)")
            }
            KeyFileProblem::NotKeyValue => {
                f.write_str("expected `name = base64`, a `#` comment or a blank line")
            }
            KeyFileProblem::UnknownField { name, allowed } => {
                write!(
                    f,
                    "unknown field {name:?}; allowed here: {}",
                    allowed.join(", ")
                )
            }
            KeyFileProblem::DuplicateField(name) => write!(f, "field {name:?} appears twice"),
            KeyFileProblem::MissingField { name, found } if found.is_empty() => {
                write!(f, "missing {name:?} (is the file truncated?)")
            }
            KeyFileProblem::MissingField { name, found } => write!(
                f,
                "missing {name:?} (is the file truncated? it holds only {})",
                found.join(", ")
            ),
            KeyFileProblem::BadKey { name, problem } => write!(f, "{name}: {problem}"),
        }
    }
}

/// The `name = value` fields of a key file, in file order, with their line numbers.
fn parse_fields<'t>(
    text: &'t str,
    allowed: &'static [&'static str],
) -> Result<Vec<(usize, &'t str, &'t str)>, KeyFileError> {
    let mut fields: Vec<(usize, &str, &str)> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (name, value) = trimmed
            .split_once('=')
            .ok_or(KeyFileError::at(line, KeyFileProblem::NotKeyValue))?;
        let (name, value) = (name.trim(), value.trim());
        if !allowed.contains(&name) {
            return Err(KeyFileError::at(
                line,
                KeyFileProblem::UnknownField {
                    name: name.to_string(),
                    allowed,
                },
            ));
        }
        if fields.iter().any(|(_, n, _)| *n == name) {
            return Err(KeyFileError::at(
                line,
                KeyFileProblem::DuplicateField(name.to_string()),
            ));
        }
        fields.push((line, name, value));
    }
    if fields.is_empty() {
        return Err(KeyFileError::whole(KeyFileProblem::Empty));
    }
    Ok(fields)
}

fn field(
    fields: &[(usize, &str, &str)],
    name: &'static str,
) -> Result<Zeroizing<[u8; 32]>, KeyFileError> {
    let (line, _, value) = fields.iter().find(|(_, n, _)| *n == name).ok_or_else(|| {
        KeyFileError::whole(KeyFileProblem::MissingField {
            name,
            found: fields.iter().map(|(_, n, _)| n.to_string()).collect(),
        })
    })?;
    decode_key_base64(value).map_err(|problem| {
        KeyFileError::at(
            *line,
            KeyFileProblem::BadKey {
                name: name.to_string(),
                problem,
            },
        )
    })
}

fn read_text(path: &Path) -> Result<Zeroizing<String>, KeyFileError> {
    use std::io::Read as _;
    let fail = |problem| KeyFileError::whole(problem).in_file(path);
    // Full capacity up front: a growing Vec would leave copies of the secret in freed memory.
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE_BYTES + 1));
    std::fs::File::open(path)
        .and_then(|file| {
            file.take(MAX_KEY_FILE_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
        })
        .map_err(|e| fail(KeyFileProblem::Unreadable(e.to_string())))?;
    if bytes.len() > MAX_KEY_FILE_BYTES {
        return Err(fail(KeyFileProblem::TooLarge));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| fail(KeyFileProblem::NotUtf8))?;
    Ok(Zeroizing::new(text.to_string()))
}

/// A warning when a secret file with Unix `mode` can be read or written by group or others.
pub fn mode_warning(path: &Path, mode: u32) -> Option<String> {
    (mode & 0o077 != 0).then(|| {
        format!(
            "warning: key file {} has mode {:04o}, so other users may read it; run `chmod 600 {}`",
            path.display(),
            mode & 0o7777,
            path.display()
        )
    })
}

/// [`mode_warning`] for the regular file at `path`; `None` when it is private, not a regular file
/// (a device or directory is refused as a key file anyway) or cannot be inspected.
pub fn permission_warning(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let metadata = std::fs::metadata(path).ok().filter(|m| m.is_file())?;
    mode_warning(path, metadata.permissions().mode())
}

/// Formats key file text into a buffer that is large enough from the start: `format!` grows its
/// String as it writes, which would leave partial copies of the secret in freed memory.
fn secret_text(args: fmt::Arguments<'_>) -> Zeroizing<String> {
    use fmt::Write as _;
    let mut text = Zeroizing::new(String::with_capacity(512));
    text.write_fmt(args)
        .unwrap_or_else(|e| unreachable!("writing to a String cannot fail: {e}"));
    text
}

/// A machine's identity: its WireGuard key and its ed25519 node key.
#[derive(Clone, Debug)]
pub struct Identity {
    wireguard: WireguardSecret,
    node: NodeSecret,
}

impl Identity {
    pub fn new(wireguard: WireguardSecret, node: NodeSecret) -> Self {
        Self { wireguard, node }
    }
    /// A fresh identity from the OS random source.
    pub fn generate() -> Result<Self, getrandom::Error> {
        Ok(Self::new(
            WireguardSecret::generate()?,
            NodeSecret::generate()?,
        ))
    }
    /// Parses the identity file format (see the crate docs in `interfaces.md`).
    pub fn from_file_text(text: &str) -> Result<Self, KeyFileError> {
        let fields = parse_fields(text, &[WIREGUARD_FIELD, NODE_FIELD])?;
        Ok(Self::new(
            WireguardSecret::from_bytes(*field(&fields, WIREGUARD_FIELD)?),
            NodeSecret::from_seed(*field(&fields, NODE_FIELD)?),
        ))
    }
    /// Reads and parses an identity file; errors name the file.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        Self::from_file_text(&read_text(path)?).map_err(|e| e.in_file(path))
    }
    /// The file text; zeroised when dropped.
    pub fn to_file_text(&self) -> Zeroizing<String> {
        secret_text(format_args!(
            "# wiremesh identity: keep secret\n{WIREGUARD_FIELD} = {}\n{NODE_FIELD} = {}\n",
            self.wireguard.to_base64().as_str(),
            self.node.to_base64().as_str()
        ))
    }
    pub fn wireguard_secret(&self) -> &WireguardSecret {
        &self.wireguard
    }
    pub fn node_secret(&self) -> &NodeSecret {
        &self.node
    }
    pub fn wireguard_public_key(&self) -> WireguardPublicKey {
        self.wireguard.public_key()
    }
    pub fn node_public_key(&self) -> NodePublicKey {
        self.node.public_key()
    }
}

/// The network key file: the controller's ed25519 network secret.
#[derive(Clone, Debug)]
pub struct NetworkKey {
    secret: NetworkSecret,
}

impl NetworkKey {
    pub fn new(secret: NetworkSecret) -> Self {
        Self { secret }
    }
    pub fn generate() -> Result<Self, getrandom::Error> {
        Ok(Self::new(NetworkSecret::generate()?))
    }
    pub fn from_file_text(text: &str) -> Result<Self, KeyFileError> {
        let fields = parse_fields(text, &[NETWORK_FIELD])?;
        Ok(Self::new(NetworkSecret::from_seed(*field(
            &fields,
            NETWORK_FIELD,
        )?)))
    }
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        Self::from_file_text(&read_text(path)?).map_err(|e| e.in_file(path))
    }
    pub fn to_file_text(&self) -> Zeroizing<String> {
        secret_text(format_args!(
            "# wiremesh network key: keep secret; only the controller needs it\n{NETWORK_FIELD} = {}\n",
            self.secret.to_base64().as_str()
        ))
    }
    pub fn secret(&self) -> &NetworkSecret {
        &self.secret
    }
    pub fn public_key(&self) -> NetworkPublicKey {
        self.secret.public_key()
    }
}

/// Either kind of key file, told apart by its fields.
#[derive(Clone, Debug)]
pub enum KeyFile {
    Identity(Identity),
    Network(NetworkKey),
}

impl KeyFile {
    pub fn from_file_text(text: &str) -> Result<Self, KeyFileError> {
        let is_network = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .any(|(name, _)| name.trim() == NETWORK_FIELD);
        if is_network {
            NetworkKey::from_file_text(text).map(Self::Network)
        } else {
            Identity::from_file_text(text).map(Self::Identity)
        }
    }
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        Self::from_file_text(&read_text(path)?).map_err(|e| e.in_file(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WG: &str = "iJ0LzaEth8stwToVq+6cDb07H2zgmV09g+9yOVBnjFc=";
    const NODE: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn text() -> String {
        format!("# comment\n\nwireguard-private-key = {WG}\nnode-private-key = {NODE}\n")
    }

    #[test]
    fn identity_round_trips_through_file_text() {
        let id = Identity::from_file_text(&text()).unwrap();
        assert_eq!(
            id.wireguard_public_key().to_base64(),
            "sOsdVzmEMSWIVOpsVkP90WmKFT3u9XV20Hd8RFvphmM="
        );
        let again = Identity::from_file_text(&id.to_file_text()).unwrap();
        assert_eq!(again.wireguard_public_key(), id.wireguard_public_key());
        assert_eq!(again.node_public_key(), id.node_public_key());
        assert_eq!(
            again.node_secret().seed_bytes(),
            &core::array::from_fn(|i| i as u8)
        );
    }

    #[test]
    fn generated_identity_parses() {
        let id = Identity::generate().unwrap();
        let text = id.to_file_text();
        assert!(text.starts_with("# wiremesh identity: keep secret\n"));
        // Still the first buffer: it never grew, so no partial copy of the secret was freed.
        assert_eq!(text.capacity(), 512);
        assert_eq!(
            NetworkKey::generate().unwrap().to_file_text().capacity(),
            512
        );
        let back = Identity::from_file_text(&text).unwrap();
        assert_eq!(
            back.wireguard_secret().as_bytes(),
            id.wireguard_secret().as_bytes()
        );
    }

    #[test]
    fn network_key_round_trips_and_is_told_apart() {
        let key = NetworkKey::generate().unwrap();
        let text = key.to_file_text();
        match KeyFile::from_file_text(&text).unwrap() {
            KeyFile::Network(back) => assert_eq!(back.public_key(), key.public_key()),
            KeyFile::Identity(_) => panic!("network key read as identity"),
        }
        assert!(matches!(
            KeyFile::from_file_text(&self::text()).unwrap(),
            KeyFile::Identity(_)
        ));
    }

    fn problem(text: &str) -> (Option<usize>, KeyFileProblem) {
        let e = Identity::from_file_text(text).unwrap_err();
        (e.line, e.problem)
    }

    #[test]
    fn bad_files_say_what_and_where() {
        assert_eq!(problem(""), (None, KeyFileProblem::Empty));
        assert_eq!(problem("# only a comment\n"), (None, KeyFileProblem::Empty));
        assert_eq!(problem("garbage\n"), (Some(1), KeyFileProblem::NotKeyValue));
        let truncated = &text()[..text().len() - 30];
        let (line, p) = problem(truncated);
        assert_eq!(line, Some(4));
        assert!(matches!(p, KeyFileProblem::BadKey { .. }), "{p:?}");
        let (line, p) = problem(&format!("wireguard-private-key = {WG}\n"));
        assert_eq!(line, None);
        assert_eq!(
            p,
            KeyFileProblem::MissingField {
                name: "node-private-key",
                found: vec!["wireguard-private-key".into()]
            }
        );
        assert_eq!(
            problem(&format!(
                "wireguard-private-key = AAAA\nnode-private-key = {NODE}\n"
            )),
            (
                Some(1),
                KeyFileProblem::BadKey {
                    name: "wireguard-private-key".into(),
                    problem: KeyParseError::WrongLength(3)
                }
            )
        );
        assert_eq!(
            problem(&format!(
                "wireguard-private-key = {WG}\nnode-private-key = ***\n"
            )),
            (
                Some(2),
                KeyFileProblem::BadKey {
                    name: "node-private-key".into(),
                    problem: KeyParseError::BadBase64
                }
            )
        );
        assert_eq!(
            problem(&format!("{}node-private-key = {NODE}\n", text())),
            (
                Some(5),
                KeyFileProblem::DuplicateField("node-private-key".into())
            )
        );
        let (line, p) = problem("network-private-key = x\n");
        assert_eq!(line, Some(1));
        assert!(matches!(p, KeyFileProblem::UnknownField { .. }));
    }

    #[test]
    fn errors_name_the_file() {
        let e = Identity::from_file_text("x\n")
            .unwrap_err()
            .in_file(Path::new("/etc/id"));
        assert_eq!(
            e.to_string(),
            "key file /etc/id, line 1: expected `name = base64`, a `#` comment or a blank line"
        );
    }

    #[test]
    fn open_modes_warn() {
        assert_eq!(mode_warning(Path::new("k"), 0o100600), None);
        assert_eq!(mode_warning(Path::new("k"), 0o400), None);
        let w = mode_warning(Path::new("k"), 0o100644).unwrap();
        assert!(w.contains("k has mode 0644"), "{w}");
    }

    #[test]
    fn endless_and_special_files_are_refused_without_reading_them_whole() {
        let e = KeyFile::load(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(e.problem, KeyFileProblem::TooLarge);
        assert_eq!(
            e.to_string(),
            "key file /dev/zero: larger than 65536 bytes, so not a key file"
        );
        assert_eq!(permission_warning(Path::new("/dev/zero")), None);
    }
}
