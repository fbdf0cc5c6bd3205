//! Why a plan fails: every error names the machine(s) and, for keys, the file.

use std::fmt;
use std::path::PathBuf;

use crate::claims::PrefixClash;
use crate::keys::KeyParseError;

/// Something that stops the plan. Every variant names the machine(s) and, for keys, the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    NoPeers,
    /// An instance or machine name that cannot be one directory name in the vars layout (nor the
    /// file name `wiremesh plan --out` writes).
    BadName {
        what: &'static str,
        name: String,
    },
    BadSettings {
        machine: String,
        role: String,
        message: String,
    },
    ConflictingNetworks {
        setting: &'static str,
        first: (String, String),
        second: (String, String),
    },
    BadNetwork {
        machine: String,
        setting: &'static str,
        message: String,
    },
    BadSetting {
        machine: String,
        setting: String,
        value: String,
        expected: &'static str,
    },
    BadInterface {
        machine: String,
        message: String,
    },
    Address(String),
    MissingKey {
        machine: Option<String>,
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// Two members have the same public key (a copied vars file): agents refuse such a peer list.
    SharedKey {
        what: &'static str,
        first: String,
        second: String,
    },
    BadKey {
        machine: Option<String>,
        what: &'static str,
        path: PathBuf,
        problem: KeyParseError,
    },
    /// Two members claim the identical prefix (an address or a route).
    SharedPrefix(PrefixClash),
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoPeers => f.write_str("the instance has no machine with the peer role"),
            Self::BadName { what, name } => write!(
                f,
                "{what} name {name:?} cannot name a directory: it must be non-empty, not `.` or `..`, and hold no `/` or NUL"
            ),
            Self::BadSettings {
                machine,
                role,
                message,
            } => {
                write!(f, "machine {machine:?}, role {role:?}: settings: {message}")
            }
            Self::ConflictingNetworks {
                setting,
                first,
                second,
            } => write!(
                f,
                "controllers {:?} and {:?} set different {setting}: {} and {}",
                first.0, second.0, first.1, second.1
            ),
            Self::BadNetwork {
                machine,
                setting,
                message,
            } => {
                write!(f, "controller {machine:?}: {setting}: {message}")
            }
            Self::BadSetting {
                machine,
                setting,
                value,
                expected,
            } => {
                write!(
                    f,
                    "machine {machine:?}: {setting}: {value:?} is not {expected}"
                )
            }
            Self::BadInterface { machine, message } => write!(f, "machine {machine:?}: {message}"),
            Self::Address(problem) => f.write_str(problem),
            Self::MissingKey {
                machine,
                what,
                path,
                reason,
            } => {
                if let Some(m) = machine {
                    write!(f, "machine {m:?}: ")?;
                }
                write!(
                    f,
                    "{what} missing: expected the file {} ({reason})",
                    path.display()
                )
            }
            Self::SharedKey {
                what,
                first,
                second,
            } => write!(
                f,
                "machines {first:?} and {second:?} have the same {what}; each machine needs its own (regenerate the vars of one)"
            ),
            Self::BadKey {
                machine,
                what,
                path,
                problem,
            } => {
                if let Some(m) = machine {
                    write!(f, "machine {m:?}: ")?;
                }
                write!(f, "{what} in {}: {problem}", path.display())
            }
            Self::SharedPrefix(clash) => write!(f, "{clash}"),
        }
    }
}
