//! A clan service's interface as the resolver needs it: manifest name, constraints, and for each
//! role the typed options of its settings. This is the in-memory form of the catalog format.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::canonical::to_compact;
use crate::format::StrFormat;

/// One clan service (`_class = "clan.service"`) as far as resolution is concerned.
#[derive(Debug, Clone, PartialEq)]
pub struct Module {
    pub manifest: Manifest,
    pub roles: BTreeMap<String, RoleInterface>,
}

/// `manifest`: the service's name (e.g. `clan-core/zerotier`) and its constraints.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Manifest {
    pub name: String,
    pub constraints: Constraints,
}

/// `manifest.constraints`. `None` means unconstrained.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Constraints {
    pub max_instances: Option<u64>,
    pub roles: BTreeMap<String, RoleConstraints>,
}

/// `manifest.constraints.roles.<r>`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RoleConstraints {
    pub min_machines: Option<u64>,
    pub max_machines: Option<u64>,
}

/// `roles.<r>.interface`: the options a member's settings may define.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RoleInterface {
    pub options: BTreeMap<String, OptionDecl>,
}

/// One option: its type and, unless it is required, its default.
#[derive(Debug, Clone, PartialEq)]
pub struct OptionDecl {
    pub ty: Type,
    pub default: Option<Value>,
}

/// An option type, with Nix's merge semantics.
#[derive(Debug, Clone, PartialEq)]
pub enum Type {
    /// `types.str`, optionally with a wiremesh format check.
    Str(Option<StrFormat>),
    /// `types.int`, optionally bounded (both ends inclusive).
    Int {
        min: Option<i64>,
        max: Option<i64>,
    },
    Bool,
    /// `types.port`: 0..=65535.
    Port,
    /// `types.enum`: one of these JSON scalars.
    Enum(EnumValues),
    NullOr(Box<Type>),
    ListOf(Box<Type>),
    AttrsOf(Box<Type>),
    Submodule(BTreeMap<String, OptionDecl>),
}

impl Type {
    /// The type's description in Nix's words, as in `is not of type `signed integer'`.
    pub fn describe(&self) -> String {
        match self {
            Type::Str(None) => "string".into(),
            Type::Str(Some(format)) => format!("string: {}", format.describe()),
            Type::Int {
                min: None,
                max: None,
            } => "signed integer".into(),
            Type::Int { min, max } => format!(
                "integer between {} and {} (both inclusive)",
                min.map_or("-infinity".to_string(), |v| v.to_string()),
                max.map_or("infinity".to_string(), |v| v.to_string())
            ),
            Type::Bool => "boolean".into(),
            Type::Port => "16 bit unsigned integer; between 0 and 65535 (both inclusive)".into(),
            Type::Enum(values) => {
                const SHOWN: usize = 20;
                let shown: Vec<String> =
                    values.declared.iter().take(SHOWN).map(to_compact).collect();
                let more = values.declared.len().saturating_sub(SHOWN);
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                format!("one of {}{more}", shown.join(", "))
            }
            Type::NullOr(of) => format!("null or {}", of.describe()),
            Type::ListOf(of) => format!("list of {}", of.describe()),
            Type::AttrsOf(of) => format!("attribute set of {}", of.describe()),
            Type::Submodule(_) => "submodule".into(),
        }
    }
}

/// The values of an enum type: as declared, for messages, and as sorted JSON text, so that
/// checking a value costs a binary search however long the list is.
#[derive(Debug, Clone, PartialEq)]
pub struct EnumValues {
    declared: Vec<Value>,
    sorted: Vec<String>,
}

impl EnumValues {
    /// `values` must be JSON scalars (the catalog parser checks).
    pub fn new(values: Vec<Value>) -> EnumValues {
        let mut sorted: Vec<String> = values.iter().map(to_compact).collect();
        sorted.sort_unstable();
        EnumValues {
            declared: values,
            sorted,
        }
    }

    /// Whether `value` is one of the values (JSON equality: `1` is not `1.0`).
    pub fn contains(&self, value: &Value) -> bool {
        !value.is_array()
            && !value.is_object()
            && self.sorted.binary_search(&to_compact(value)).is_ok()
    }
}

impl Module {
    /// The role names this module defines, sorted.
    pub fn role_names(&self) -> Vec<&str> {
        self.roles.keys().map(String::as_str).collect()
    }

    /// The settings a member of `role` gets when no layer defines anything: every option's default
    /// merged through its type; required options are absent. `None` for an unknown role.
    pub fn defaults(&self, role: &str) -> Option<Value> {
        let interface = self.roles.get(role)?;
        crate::settings::defaults_of(&interface.options)
    }
}
