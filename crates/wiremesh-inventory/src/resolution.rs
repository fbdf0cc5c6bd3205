//! The result of resolving an inventory. Its serde form is exactly the CLI's `--format json`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Warning;

/// `instances.<i>.module` as written: `name` defaults to the instance name, `input` to null
/// (Clan's built-in modules). `"clan-core"` stays `"clan-core"`: the module is echoed, not
/// normalised.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ModuleRef {
    pub input: Option<String>,
    pub name: String,
}

/// The members of one role of one instance, sorted bytewise, without duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedRole {
    pub machines: Vec<String>,
}

/// One instance: its module and the members of each role it declares (only declared roles, as
/// Clan's perInstance `roles` argument).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedInstance {
    pub module: ModuleRef,
    pub roles: BTreeMap<String, ResolvedRole>,
}

/// One role a machine holds in one instance, with its final settings: every layer merged and the
/// interface defaults applied; required options nobody defined are absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineRole {
    pub instance: String,
    pub module: ModuleRef,
    pub role: String,
    pub settings: Value,
}

/// Which machine holds which role of which instance, with which settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    pub instances: BTreeMap<String, ResolvedInstance>,
    /// Each machine's effective tags, sorted: its own, the static `tags.<t>` naming it, `all` and
    /// its class (`nixos` or `darwin`).
    #[serde(rename = "machineTags")]
    pub machine_tags: BTreeMap<String, Vec<String>>,
    /// Every inventory machine, also those in no instance (`[]`); entries sorted by (instance, role).
    pub machines: BTreeMap<String, Vec<MachineRole>>,
    pub warnings: Vec<Warning>,
}

impl Resolution {
    /// The CLI's `--format json` text: every object key sorted, 2-space indentation, no trailing
    /// newline. Struct fields are declared in sorted order and settings objects are built with
    /// sorted keys, so serde_json's pretty printer writes them sorted whatever its map type.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| {
            // Only string-keyed maps and plain data: serialisation has no way to fail.
            format!("{{\"error\": \"cannot serialise resolution: {e}\"}}")
        })
    }

    /// The roles `machine` holds, sorted by (instance, role); empty for an unknown machine.
    pub fn roles_of(&self, machine: &str) -> &[MachineRole] {
        self.machines.get(machine).map(Vec::as_slice).unwrap_or(&[])
    }
}
