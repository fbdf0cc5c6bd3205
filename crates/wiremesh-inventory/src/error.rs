//! What resolution reports: one error that stops it, or warnings that do not.

use serde::{Deserialize, Serialize};

/// Why resolution failed. Serialises kebab-case (`unknown-role`, ...), the `kind` of the CLI's error
/// JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The inventory text is not JSON (syntax, or nested deeper than the parser allows).
    InvalidJson,
    /// The inventory text is larger than [`crate::MAX_INPUT_BYTES`], or it resolves to more than
    /// [`crate::MAX_RESULTS`] (instance, role, machine) results.
    InputTooLarge,
    /// A file could not be read or is not UTF-8 (reported by callers that read files, like the CLI).
    UnreadableInput,
    /// The inventory is JSON but not an inventory: a wrong type or an unknown key outside `settings`.
    InvalidInventory,
    /// The module catalog (`--modules`) is malformed.
    InvalidCatalog,
    /// An instance uses a role its module does not define.
    UnknownRole,
    /// `module.name` is not provided by `module.input`, or the input itself is unknown.
    UnknownModule,
    /// A role names a machine that is not in `machines`.
    UnknownMachine,
    /// A settings layer defines an option the role interface does not declare.
    UnknownSetting,
    /// A setting does not have its option's type (including wiremesh's CIDR, address and
    /// `host:port` formats).
    InvalidSettingType,
    /// Layers define different values for a scalar option at the same priority.
    ConflictingSettings,
    /// A module's `manifest.constraints` (min/max machines per role, max instances) is violated.
    ConstraintViolation,
}

impl ErrorKind {
    /// The kebab-case name used in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidJson => "invalid-json",
            ErrorKind::InputTooLarge => "input-too-large",
            ErrorKind::UnreadableInput => "unreadable-input",
            ErrorKind::InvalidInventory => "invalid-inventory",
            ErrorKind::InvalidCatalog => "invalid-catalog",
            ErrorKind::UnknownRole => "unknown-role",
            ErrorKind::UnknownModule => "unknown-module",
            ErrorKind::UnknownMachine => "unknown-machine",
            ErrorKind::UnknownSetting => "unknown-setting",
            ErrorKind::InvalidSettingType => "invalid-setting-type",
            ErrorKind::ConflictingSettings => "conflicting-settings",
            ErrorKind::ConstraintViolation => "constraint-violation",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A resolution failure: what kind, a message in Clan's wording that names the instance, role,
/// machine, setting and layers involved, and the JSON path of the offending value (`""` is the
/// document itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind} at `{path}`: {message}")]
pub struct ResolveError {
    pub kind: ErrorKind,
    pub message: String,
    pub path: String,
}

impl ResolveError {
    /// The CLI's error output, `{"error": {"kind", "message", "path"}}` with 2-space indentation;
    /// the fields are declared in sorted order.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(&serde_json::json!({ "error": self })).unwrap_or_else(|e| {
            // A struct of strings: serialisation has no way to fail.
            format!("{{\"error\": \"cannot serialise error: {e}\"}}")
        })
    }

    pub(crate) fn new(
        kind: ErrorKind,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ResolveError {
            kind,
            message: message.into(),
            path: path.into(),
        }
    }
}

/// Something worth telling the user that does not stop resolution. Serialises as an object with a
/// `kind` (`empty-tag`) and the fields, keys sorted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Warning {
    /// A role lists a tag that no machine carries (Clan warns too).
    EmptyTag {
        instance: String,
        role: String,
        tag: String,
    },
}

// By hand because serde's internally tagged form writes `kind` first; the CLI's JSON sorts keys.
impl Serialize for Warning {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        match self {
            Warning::EmptyTag {
                instance,
                role,
                tag,
            } => {
                let mut s = serializer.serialize_struct("Warning", 4)?;
                s.serialize_field("instance", instance)?;
                s.serialize_field("kind", "empty-tag")?;
                s.serialize_field("role", role)?;
                s.serialize_field("tag", tag)?;
                s.end()
            }
        }
    }
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Warning::EmptyTag {
                instance,
                role,
                tag,
            } => write!(
                f,
                "Service instance '{instance}': - {role} tags: no machine with tag '{tag}' found."
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_is_the_cli_contract() {
        let err = ResolveError::new(ErrorKind::UnknownRole, "instances.a.roles.b", "m\n\"x\"");
        assert_eq!(
            err.to_json_pretty(),
            "{\n  \"error\": {\n    \"kind\": \"unknown-role\",\n    \"message\": \"m\\n\\\"x\\\"\",\n    \"path\": \"instances.a.roles.b\"\n  }\n}"
        );
    }

    #[test]
    fn kinds_serialise_as_their_names() {
        let kinds = [
            ErrorKind::InvalidJson,
            ErrorKind::InputTooLarge,
            ErrorKind::UnreadableInput,
            ErrorKind::InvalidInventory,
            ErrorKind::InvalidCatalog,
            ErrorKind::UnknownRole,
            ErrorKind::UnknownModule,
            ErrorKind::UnknownMachine,
            ErrorKind::UnknownSetting,
            ErrorKind::InvalidSettingType,
            ErrorKind::ConflictingSettings,
            ErrorKind::ConstraintViolation,
        ];
        for kind in kinds {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
            let back: ErrorKind = serde_json::from_value(kind.as_str().into()).unwrap();
            assert_eq!(back, kind);
        }
    }
}
