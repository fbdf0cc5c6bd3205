//! The module catalog: role interfaces of clan services other than wiremesh, read from a JSON file
//! (`--modules`). Shape:
//!
//! ```text
//! { "<input>": { "<moduleName>": Module | "=<input>/<moduleName>" }, "_comment": ... }
//! Module = { "manifest": { "name": str, "constraints"?: { "maxInstances"?: int|null,
//!              "roles"?: { "<r>": { "minMachines"?: int|null, "maxMachines"?: int|null } } } },
//!            "roles": { "<r>": { "interface": { "<option>": Option } } } }
//! Option = { "type": Type, "default"?: any }
//! Type   = {"type": "str", "format"?: F} | {"type": "int", "min"?: n, "max"?: n}
//!        | {"type": "bool"|"port"} | {"type": "nullOr"|"listOf"|"attrsOf", "of": Type}
//!        | {"type": "enum", "values": [...]} | {"type": "submodule", "options": {"<o>": Option}}
//! ```
//!
//! The input `"<clan-core>"` holds the modules used when `module.input` is null. A string starting
//! with `=` aliases another entry. Keys starting with `_` are comments at the top level, in an
//! input's map and in every module, manifest, role, option and type object. `description`,
//! `example` and unrecognised manifest keys (`categories`, `readme`, ...) are accepted and ignored.
//! `format` and `min`/`max` are wiremesh's additions; Clan's `default.nix` files have no such keys.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::error::{ErrorKind, ResolveError};
use crate::format::StrFormat;
use crate::module::{
    Constraints, EnumValues, Manifest, Module, OptionDecl, RoleConstraints, RoleInterface, Type,
};
use crate::path::Path;
use crate::settings::{self, Site};
use crate::shape::{self, invalid, known_keys, object, string};
use crate::suggest;

/// The catalog input that stands for `module.input = null` (Clan's built-in modules).
pub const CLAN_CORE_INPUT: &str = "<clan-core>";

/// Deepest nesting of types (`listOf (attrsOf (submodule ...))`) accepted. It bounds the recursion
/// of checking and merging settings, which follows the type, also for catalogs built with
/// [`Catalog::from_value`] from values no parser has limited.
const MAX_TYPE_DEPTH: usize = 32;

/// Longest alias chain followed before giving up (a cycle).
const MAX_ALIAS_HOPS: usize = 32;

const KIND: ErrorKind = ErrorKind::InvalidCatalog;

/// Modules by input and name, aliases resolved.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    inputs: BTreeMap<String, BTreeMap<String, Arc<Module>>>,
}

enum Entry {
    Module(Module),
    Alias(String, String),
}

impl Catalog {
    /// A catalog with no modules: only the built-in wiremesh module resolves.
    pub fn new() -> Catalog {
        Catalog::default()
    }

    /// Parses a catalog file's text.
    pub fn from_json(text: &str) -> Result<Catalog, ResolveError> {
        let value = crate::inventory::parse_json(text, KIND)?;
        Catalog::from_value(&value)
    }

    /// Builds a catalog from parsed JSON.
    pub fn from_value(value: &Value) -> Result<Catalog, ResolveError> {
        let root = Path::ROOT;
        let top = object(KIND, value, &root)?;
        let mut entries: BTreeMap<&str, BTreeMap<&str, Entry>> = BTreeMap::new();
        for (input, modules) in top {
            if input.starts_with('_') {
                continue;
            }
            let at_input = root.key(input);
            let mut parsed = BTreeMap::new();
            for (name, module) in object(KIND, modules, &at_input)? {
                if name.starts_with('_') {
                    continue;
                }
                let at = at_input.key(name);
                let entry = match module {
                    Value::String(alias) => parse_alias(alias, &at)?,
                    other => Entry::Module(parse_module(other, &at)?),
                };
                parsed.insert(name.as_str(), entry);
            }
            entries.insert(input.as_str(), parsed);
        }
        let mut inputs: BTreeMap<String, BTreeMap<String, Arc<Module>>> = BTreeMap::new();
        for (input, modules) in &entries {
            let slot = inputs.entry(input.to_string()).or_default();
            for (name, entry) in modules {
                if let Entry::Module(module) = entry {
                    slot.insert(name.to_string(), Arc::new(module.clone()));
                }
            }
        }
        for (input, modules) in &entries {
            for (name, entry) in modules {
                if let Entry::Alias(..) = entry {
                    let (to_input, to_name) = follow_alias(&entries, input, name)?;
                    let target = inputs.get(to_input).and_then(|m| m.get(to_name)).cloned();
                    if let (Some(module), Some(slot)) = (target, inputs.get_mut(*input)) {
                        slot.insert(name.to_string(), module);
                    }
                }
            }
        }
        Ok(Catalog { inputs })
    }

    /// The module `name` of `input` (`"<clan-core>"` for null).
    pub fn module(&self, input: &str, name: &str) -> Option<&Module> {
        self.inputs.get(input)?.get(name).map(Arc::as_ref)
    }

    /// Whether the catalog has an entry for `input`.
    pub fn has_input(&self, input: &str) -> bool {
        self.inputs.contains_key(input)
    }

    /// The inputs, sorted.
    pub fn inputs(&self) -> Vec<&str> {
        self.inputs.keys().map(String::as_str).collect()
    }

    /// The module names of `input`, sorted.
    pub fn module_names(&self, input: &str) -> Vec<&str> {
        self.inputs
            .get(input)
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }
}

fn parse_alias(alias: &str, at: &Path) -> Result<Entry, ResolveError> {
    let target = alias.strip_prefix('=').ok_or_else(|| {
        invalid(
            KIND,
            at,
            format!("a module is an object or an alias \"=<input>/<moduleName>\", found the string {alias:?}"),
        )
    })?;
    let (input, name) = target.split_once('/').ok_or_else(|| {
        invalid(
            KIND,
            at,
            format!("alias {alias:?} must have the form \"=<input>/<moduleName>\""),
        )
    })?;
    Ok(Entry::Alias(input.to_string(), name.to_string()))
}

fn follow_alias<'e>(
    entries: &'e BTreeMap<&str, BTreeMap<&str, Entry>>,
    input: &'e str,
    name: &'e str,
) -> Result<(&'e str, &'e str), ResolveError> {
    let start = Path::ROOT;
    let start_input = start.key(input);
    let at = start_input.key(name);
    let (mut input, mut name) = (input, name);
    for _ in 0..MAX_ALIAS_HOPS {
        match entries.get(input).and_then(|m| m.get(name)) {
            Some(Entry::Module(_)) => return Ok((input, name)),
            Some(Entry::Alias(i, n)) => (input, name) = (i.as_str(), n.as_str()),
            None => {
                let known = entries
                    .get(input)
                    .map(|m| m.keys().copied().collect::<Vec<_>>());
                let hint = known.map(|k| suggest::hint(name, k)).unwrap_or_default();
                return Err(invalid(
                    KIND,
                    &at,
                    format!("alias target `{input}/{name}` is not in the catalog.{hint}"),
                ));
            }
        }
    }
    Err(invalid(
        KIND,
        &at,
        format!("alias chain is a cycle or longer than {MAX_ALIAS_HOPS} aliases"),
    ))
}

/// Parses one module object (also used for the built-in wiremesh module).
pub(crate) fn parse_module(value: &Value, at: &Path) -> Result<Module, ResolveError> {
    let map = object(KIND, value, at)?;
    known_keys(KIND, map, &["manifest", "roles", "description"], true, at)?;
    let at_manifest = at.key("manifest");
    let manifest = map
        .get("manifest")
        .ok_or_else(|| invalid(KIND, at, "a module needs a `manifest` with a `name`"))?;
    let manifest = parse_manifest(manifest, &at_manifest)?;
    let at_roles = at.key("roles");
    let roles_value = map.get("roles").ok_or_else(|| {
        invalid(
            KIND,
            at,
            format!(
                "Role behavior of service '{}' must be defined.",
                manifest.name
            ),
        )
    })?;
    let mut roles = BTreeMap::new();
    for (role, spec) in object(KIND, roles_value, &at_roles)? {
        let at_role = at_roles.key(role);
        let spec_map = object(KIND, spec, &at_role)?;
        known_keys(
            KIND,
            spec_map,
            &["interface", "description"],
            true,
            &at_role,
        )?;
        let options = match spec_map.get("interface") {
            None => BTreeMap::new(),
            Some(interface) => parse_options(
                interface,
                &at_role.key("interface"),
                &manifest.name,
                role,
                0,
            )?,
        };
        roles.insert(role.clone(), RoleInterface { options });
    }
    for role in manifest.constraints.roles.keys() {
        if !roles.contains_key(role) {
            return Err(invalid(
                KIND,
                &at_manifest.key("constraints").key("roles").key(role),
                format!("constrains role '{role}', which the module does not define"),
            ));
        }
    }
    Ok(Module { manifest, roles })
}

fn parse_manifest(value: &Value, at: &Path) -> Result<Manifest, ResolveError> {
    let map = object(KIND, value, at)?;
    let name = map
        .get("name")
        .ok_or_else(|| invalid(KIND, at, "`manifest.name` is required"))?;
    let name = string(KIND, name, &at.key("name"))?.to_string();
    let constraints = match map.get("constraints") {
        None | Some(Value::Null) => Constraints::default(),
        Some(c) => parse_constraints(c, &at.key("constraints"))?,
    };
    Ok(Manifest { name, constraints })
}

fn count(value: Option<&Value>, at: &Path) -> Result<Option<u64>, ResolveError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| shape::wrong_type(KIND, at, "a non-negative integer or null", v)),
    }
}

fn parse_constraints(value: &Value, at: &Path) -> Result<Constraints, ResolveError> {
    let map = object(KIND, value, at)?;
    known_keys(KIND, map, &["maxInstances", "roles"], true, at)?;
    let max_instances = count(map.get("maxInstances"), &at.key("maxInstances"))?;
    let mut roles = BTreeMap::new();
    if let Some(role_map) = map.get("roles") {
        let at_roles = at.key("roles");
        for (role, spec) in object(KIND, role_map, &at_roles)? {
            let at_role = at_roles.key(role);
            let spec = object(KIND, spec, &at_role)?;
            known_keys(KIND, spec, &["minMachines", "maxMachines"], true, &at_role)?;
            roles.insert(
                role.clone(),
                RoleConstraints {
                    min_machines: count(spec.get("minMachines"), &at_role.key("minMachines"))?,
                    max_machines: count(spec.get("maxMachines"), &at_role.key("maxMachines"))?,
                },
            );
        }
    }
    Ok(Constraints {
        max_instances,
        roles,
    })
}

fn parse_options(
    value: &Value,
    at: &Path,
    module: &str,
    role: &str,
    depth: usize,
) -> Result<BTreeMap<String, OptionDecl>, ResolveError> {
    let mut options = BTreeMap::new();
    for (name, spec) in object(KIND, value, at)? {
        let at_option = at.key(name);
        options.insert(
            name.clone(),
            parse_option(spec, &at_option, module, role, depth)?,
        );
    }
    Ok(options)
}

fn parse_option(
    value: &Value,
    at: &Path,
    module: &str,
    role: &str,
    depth: usize,
) -> Result<OptionDecl, ResolveError> {
    let map = object(KIND, value, at)?;
    known_keys(
        KIND,
        map,
        &["type", "default", "description", "example"],
        true,
        at,
    )?;
    let ty_value = map
        .get("type")
        .ok_or_else(|| invalid(KIND, at, "an option needs a `type`"))?;
    let ty = parse_type(ty_value, &at.key("type"), module, role, depth)?;
    let default = map.get("default").cloned();
    if let Some(default) = &default {
        let at_default = at.key("default");
        let prefix = at_default.render();
        let interface = format!("role '{role}' of module '{module}'");
        let site = Site {
            prefix: &prefix,
            origin: "the module catalog",
            interface: &interface,
            overrides_allowed: false,
        };
        settings::validate(&ty, default, &Path::ROOT, &site)
            .map_err(|e| ResolveError { kind: KIND, ..e })?;
    }
    Ok(OptionDecl { ty, default })
}

fn bound(map: &Map<String, Value>, key: &str, at: &Path) -> Result<Option<i64>, ResolveError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| shape::wrong_type(KIND, &at.key(key), "an integer", v)),
    }
}

fn parse_type(
    value: &Value,
    at: &Path,
    module: &str,
    role: &str,
    depth: usize,
) -> Result<Type, ResolveError> {
    if depth >= MAX_TYPE_DEPTH {
        return Err(invalid(
            KIND,
            at,
            format!("types are nested deeper than {MAX_TYPE_DEPTH} levels"),
        ));
    }
    const TYPES: [&str; 9] = [
        "str",
        "int",
        "bool",
        "port",
        "enum",
        "nullOr",
        "listOf",
        "attrsOf",
        "submodule",
    ];
    let map = object(KIND, value, at)?;
    let name_value = map.get("type").ok_or_else(|| {
        invalid(
            KIND,
            at,
            format!("a type needs a `type`, one of {}", suggest::list(TYPES)),
        )
    })?;
    let name = string(KIND, name_value, &at.key("type"))?;
    let element = |key: &str| -> Result<Box<Type>, ResolveError> {
        let inner = map.get("of").ok_or_else(|| {
            invalid(
                KIND,
                at,
                format!("type `{key}` needs `of`, the element type"),
            )
        })?;
        parse_type(inner, &at.key("of"), module, role, depth + 1).map(Box::new)
    };
    let allowed: &[&str] = match name {
        "str" => &["type", "format"],
        "int" => &["type", "min", "max"],
        "bool" | "port" => &["type"],
        "enum" => &["type", "values"],
        "nullOr" | "listOf" | "attrsOf" => &["type", "of"],
        "submodule" => &["type", "options"],
        other => {
            return Err(invalid(
                KIND,
                &at.key("type"),
                format!(
                    "unknown type `{other}`.{} Types: {}",
                    suggest::hint(other, TYPES),
                    suggest::list(TYPES)
                ),
            ));
        }
    };
    known_keys(KIND, map, allowed, true, at)?;
    Ok(match name {
        "str" => match map.get("format") {
            None | Some(Value::Null) => Type::Str(None),
            Some(f) => {
                let f_name = string(KIND, f, &at.key("format"))?;
                let format = StrFormat::from_name(f_name).ok_or_else(|| {
                    invalid(
                        KIND,
                        &at.key("format"),
                        format!(
                            "unknown format `{f_name}`.{} Formats: {}",
                            suggest::hint(f_name, StrFormat::names()),
                            suggest::list(StrFormat::names())
                        ),
                    )
                })?;
                Type::Str(Some(format))
            }
        },
        "int" => Type::Int {
            min: bound(map, "min", at)?,
            max: bound(map, "max", at)?,
        },
        "bool" => Type::Bool,
        "port" => Type::Port,
        "enum" => {
            let at_values = at.key("values");
            let values = map.get("values").and_then(Value::as_array).ok_or_else(|| {
                invalid(
                    KIND,
                    at,
                    "type `enum` needs `values`, a list of allowed values",
                )
            })?;
            if let Some((i, v)) = values
                .iter()
                .enumerate()
                .find(|(_, v)| v.is_array() || v.is_object())
            {
                return Err(shape::wrong_type(
                    KIND,
                    &at_values.index(i),
                    "a string, number, boolean or null",
                    v,
                ));
            }
            Type::Enum(EnumValues::new(values.clone()))
        }
        "nullOr" => Type::NullOr(element(name)?),
        "listOf" => Type::ListOf(element(name)?),
        "attrsOf" => Type::AttrsOf(element(name)?),
        _ => {
            let options = map
                .get("options")
                .ok_or_else(|| invalid(KIND, at, "type `submodule` needs `options`"))?;
            Type::Submodule(parse_options(
                options,
                &at.key("options"),
                module,
                role,
                depth + 1,
            )?)
        }
    })
}
