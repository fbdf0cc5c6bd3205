//! Settings: checking one layer against a role interface, and merging the layers of one member the
//! way Nix's module system does (objects merge, lists concatenate most specific layer first,
//! scalars must agree, override priorities decide, defaults fill only what nobody defined).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::canonical::to_compact;
use crate::error::{ErrorKind, ResolveError};
use crate::module::{OptionDecl, Type};
use crate::path::{Path, attr_path, join};
use crate::suggest;

/// The priority of a plain definition (Nix's `defaultOverridePriority`).
const PLAIN_PRIORITY: i64 = 100;
/// The priority of an interface default (`mkOptionDefault`): any definition beats it.
const OPTION_DEFAULT_PRIORITY: i64 = 1500;

/// Where a settings layer sits, for error messages.
pub(crate) struct Site<'a> {
    /// Rendered path of the settings object; an error's `path` is this plus the option's path.
    pub prefix: &'a str,
    /// Names the definition in "- In `...`" lines.
    pub origin: &'a str,
    /// Names the interface in unknown-setting messages, e.g. "role 'peer' of module 'wiremesh'".
    pub interface: &'a str,
    /// Catalog defaults may not use override wrappers; inventory settings may.
    pub overrides_allowed: bool,
}

fn describe_value(value: &Value) -> String {
    let text = to_compact(value);
    if text.len() > 120 {
        let cut = (0..=117)
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        format!("{}...", &text[..cut])
    } else {
        text
    }
}

fn type_error(
    ty: &Type,
    value: &Value,
    path: &Path,
    site: &Site,
    reason: Option<&str>,
) -> ResolveError {
    let full = join(site.prefix, &path.render());
    let reason = reason.map(|r| format!(" ({r})")).unwrap_or_default();
    ResolveError::new(
        ErrorKind::InvalidSettingType,
        full.clone(),
        format!(
            "A definition for option `{full}` is not of type `{}`. Definition values:\n- In `{}`: {}{reason}",
            ty.describe(),
            site.origin,
            describe_value(value)
        ),
    )
}

/// Checks one settings layer (a JSON object) against a role interface: every key is an option,
/// every value has its option's type. Runs once per layer, whether or not a member reads it.
pub(crate) fn validate_layer(
    options: &BTreeMap<String, OptionDecl>,
    value: &Value,
    site: &Site,
) -> Result<(), ResolveError> {
    match value {
        Value::Object(map) if !is_wrapper(map) => validate_options(options, map, &Path::ROOT, site),
        _ => Err(ResolveError::new(
            ErrorKind::InvalidSettingType,
            site.prefix,
            format!(
                "`{}` must be an attribute set (a JSON object of options), not {}; put overrides on individual options",
                site.prefix,
                describe_value(value)
            ),
        )),
    }
}

fn is_wrapper(map: &Map<String, Value>) -> bool {
    map.contains_key("_type")
}

fn validate_options(
    options: &BTreeMap<String, OptionDecl>,
    map: &Map<String, Value>,
    path: &Path,
    site: &Site,
) -> Result<(), ResolveError> {
    for (key, value) in map {
        let at = path.key(key);
        let Some(decl) = options.get(key) else {
            let full = join(site.prefix, &at.render());
            let names = || options.keys().map(String::as_str);
            let hint = suggest::closest(key, names())
                .map(|c| format!("Did you mean `{c}`?\n"))
                .unwrap_or_default();
            return Err(ResolveError::new(
                ErrorKind::UnknownSetting,
                full.clone(),
                format!(
                    "The option `{full}` does not exist. Definition values:\n- In `{}`: {}\n{hint}Options of {}: {}",
                    site.origin,
                    describe_value(value),
                    site.interface,
                    suggest::list(names())
                ),
            ));
        };
        validate(&decl.ty, value, &at, site)?;
    }
    Ok(())
}

/// Checks one value against a type, unwrapping an override wrapper first.
pub(crate) fn validate(
    ty: &Type,
    value: &Value,
    path: &Path,
    site: &Site,
) -> Result<(), ResolveError> {
    validate_as(ty, ty, value, path, site)
}

/// [`validate`], naming `shown` in a type error: `nullOr` reports itself, not its element type.
fn validate_as(
    ty: &Type,
    shown: &Type,
    value: &Value,
    path: &Path,
    site: &Site,
) -> Result<(), ResolveError> {
    let value = match value {
        Value::Object(map) if is_wrapper(map) => check_wrapper(map, path, site)?,
        other => other,
    };
    match ty {
        Type::Str(format) => match (value.as_str(), format) {
            (None, _) => Err(type_error(shown, value, path, site, None)),
            (Some(s), Some(format)) => format
                .check(s)
                .map_err(|reason| type_error(shown, value, path, site, Some(&reason))),
            (Some(_), None) => Ok(()),
        },
        Type::Int { min, max } => match value.as_i64() {
            Some(n) if min.is_none_or(|m| n >= m) && max.is_none_or(|m| n <= m) => Ok(()),
            _ => Err(type_error(shown, value, path, site, None)),
        },
        Type::Bool if value.is_boolean() => Ok(()),
        Type::Port if value.as_u64().is_some_and(|p| p <= 65535) => Ok(()),
        Type::Enum(values) if values.contains(value) => Ok(()),
        Type::NullOr(_) if value.is_null() => Ok(()),
        Type::NullOr(of) => validate_as(of, shown, value, path, site),
        Type::ListOf(of) => match value {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    validate(of, item, &path.index(i), site)?;
                }
                Ok(())
            }
            _ => Err(type_error(shown, value, path, site, None)),
        },
        Type::AttrsOf(of) => match value {
            Value::Object(map) => {
                for (key, item) in map {
                    validate(of, item, &path.key(key), site)?;
                }
                Ok(())
            }
            _ => Err(type_error(shown, value, path, site, None)),
        },
        Type::Submodule(options) => match value {
            Value::Object(map) => validate_options(options, map, path, site),
            _ => Err(type_error(shown, value, path, site, None)),
        },
        Type::Bool | Type::Port | Type::Enum(_) => Err(type_error(shown, value, path, site, None)),
    }
}

/// Checks `{"_type":"override","priority":N,"content":V}` and returns `V`. Nested wrappers are
/// refused, as are other `_type`s (mkIf, mkMerge, mkOrder have no JSON form here).
fn check_wrapper<'v>(
    map: &'v Map<String, Value>,
    path: &Path,
    site: &Site,
) -> Result<&'v Value, ResolveError> {
    let full = join(site.prefix, &path.render());
    let fail = |why: String| {
        Err(ResolveError::new(
            ErrorKind::InvalidSettingType,
            full.clone(),
            format!(
                "The definition of `{full}` in `{}` {why}. The only accepted form is {{\"_type\":\"override\",\"priority\":N,\"content\":V}} (lib.mkForce is priority 50, lib.mkDefault 1000).",
                site.origin
            ),
        ))
    };
    if !site.overrides_allowed {
        return fail("is an override, which is not allowed here".into());
    }
    if map.get("_type") != Some(&Value::String("override".into())) {
        return fail(format!(
            "has `_type` = {}, which is not supported",
            describe_value(map.get("_type").unwrap_or(&Value::Null))
        ));
    }
    if let Some(extra) = map
        .keys()
        .find(|k| !matches!(k.as_str(), "_type" | "priority" | "content"))
    {
        return fail(format!("has the unknown key `{extra}`"));
    }
    if map.get("priority").and_then(Value::as_i64).is_none() {
        return fail("has no integer `priority`".into());
    }
    match map.get("content") {
        None => fail("has no `content`".into()),
        Some(Value::Object(inner)) if is_wrapper(inner) => {
            fail("wraps another `_type` value".into())
        }
        Some(content) => Ok(content),
    }
}

/// Which layer a definition comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin<'a> {
    Default,
    Role,
    Machine,
    Tag(&'a str),
}

/// One definition of an option.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Def<'v> {
    pub value: &'v Value,
    pub origin: Origin<'v>,
}

/// The member whose settings are being merged, for error messages.
pub(crate) struct Member<'a> {
    pub instance: &'a str,
    pub role: &'a str,
    pub machine: &'a str,
    pub module: &'a str,
}

impl Member<'_> {
    fn origin(&self, origin: Origin) -> String {
        let base = ["instances", self.instance, "roles", self.role];
        match origin {
            Origin::Default => format!(
                "the default in the interface of role '{}' of module '{}'",
                self.role, self.module
            ),
            Origin::Role => attr_path(&[&base[..], &["settings"]].concat()),
            Origin::Machine => {
                attr_path(&[&base[..], &["machines", self.machine, "settings"]].concat())
            }
            Origin::Tag(tag) => attr_path(&[&base[..], &["tags", tag, "settings"]].concat()),
        }
    }

    fn prefix(&self) -> String {
        attr_path(&[
            "instances",
            self.instance,
            "roles",
            self.role,
            "machines",
            self.machine,
            "settings",
        ])
    }

    fn conflict(&self, path: &Path, defs: &[Def], what: &str) -> ResolveError {
        let full = join(&self.prefix(), &path.render());
        let lines: Vec<String> = defs
            .iter()
            .rev()
            .map(|d| {
                format!(
                    "- In `{}`: {}",
                    self.origin(d.origin),
                    describe_value(d.value)
                )
            })
            .collect();
        ResolveError::new(
            ErrorKind::ConflictingSettings,
            full.clone(),
            format!(
                "The option `{full}` {what}:\n{}\nUse `lib.mkForce value` or `lib.mkDefault value` to change the priority on any of these definitions; in JSON: {{\"_type\":\"override\",\"priority\":50,\"content\":value}}.",
                lines.join("\n")
            ),
        )
    }
}

fn unwrap(def: Def<'_>) -> (i64, Def<'_>) {
    if def.origin == Origin::Default {
        return (OPTION_DEFAULT_PRIORITY, def);
    }
    if let Value::Object(map) = def.value
        && map.get("_type").and_then(Value::as_str) == Some("override")
        && let (Some(priority), Some(content)) = (
            map.get("priority").and_then(Value::as_i64),
            map.get("content"),
        )
    {
        return (
            priority,
            Def {
                value: content,
                origin: def.origin,
            },
        );
    }
    (PLAIN_PRIORITY, def)
}

/// The final settings of one member: `layers` in definition order (role, machine, then the role's
/// tags the member carries, sorted), each already checked by [`validate_layer`].
pub(crate) fn merge_settings(
    options: &BTreeMap<String, OptionDecl>,
    layers: &[Def],
    member: &Member,
) -> Result<Value, ResolveError> {
    merge_options(options, layers, &Path::ROOT, member).map(Value::Object)
}

/// Every option's default merged through its type; `None` only if a catalog default is invalid.
pub(crate) fn defaults_of(options: &BTreeMap<String, OptionDecl>) -> Option<Value> {
    let member = Member {
        instance: "",
        role: "",
        machine: "",
        module: "",
    };
    merge_options(options, &[], &Path::ROOT, &member)
        .ok()
        .map(Value::Object)
}

fn merge_options(
    options: &BTreeMap<String, OptionDecl>,
    defs: &[Def],
    path: &Path,
    member: &Member,
) -> Result<Map<String, Value>, ResolveError> {
    let mut given = by_attribute(defs);
    let mut out = Map::new();
    for (name, decl) in options {
        let mut sub: Vec<Def> = decl
            .default
            .iter()
            .map(|value| Def {
                value,
                origin: Origin::Default,
            })
            .collect();
        sub.extend(given.remove(name.as_str()).unwrap_or_default());
        if let Some(value) = merge_option(&decl.ty, &sub, &path.key(name), member)? {
            out.insert(name.clone(), value);
        }
    }
    Ok(out)
}

/// The definitions of each attribute found in definitions of an attribute set, in layer order.
/// One pass over every definition's keys: the cost is the size of the layers, not the number of
/// attributes times the number of layers.
fn by_attribute<'v>(defs: &[Def<'v>]) -> BTreeMap<&'v str, Vec<Def<'v>>> {
    let mut out: BTreeMap<&str, Vec<Def>> = BTreeMap::new();
    for def in defs {
        for (key, value) in def.value.as_object().into_iter().flatten() {
            out.entry(key.as_str()).or_default().push(Def {
                value,
                origin: def.origin,
            });
        }
    }
    out
}

/// Keeps the definitions with the best (lowest) priority and merges them; `None` if there are none.
fn merge_option(
    ty: &Type,
    defs: &[Def],
    path: &Path,
    member: &Member,
) -> Result<Option<Value>, ResolveError> {
    let unwrapped: Vec<(i64, Def)> = defs.iter().map(|d| unwrap(*d)).collect();
    let Some(best) = unwrapped.iter().map(|(p, _)| *p).min() else {
        return Ok(None);
    };
    let kept: Vec<Def> = unwrapped
        .into_iter()
        .filter(|(p, _)| *p == best)
        .map(|(_, d)| d)
        .collect();
    merge_type(ty, &kept, path, member).map(Some)
}

/// Merges definitions of equal priority (at least one) of type `ty`.
fn merge_type(
    ty: &Type,
    defs: &[Def],
    path: &Path,
    member: &Member,
) -> Result<Value, ResolveError> {
    match ty {
        Type::Str(_) | Type::Int { .. } | Type::Bool | Type::Port | Type::Enum(_) => {
            let first = defs[0].value;
            if defs.iter().all(|d| d.value == first) {
                Ok(first.clone())
            } else {
                Err(member.conflict(path, defs, "has conflicting definition values"))
            }
        }
        Type::NullOr(of) => {
            let nulls = defs.iter().filter(|d| d.value.is_null()).count();
            if nulls == defs.len() {
                Ok(Value::Null)
            } else if nulls > 0 {
                Err(member.conflict(path, defs, "is defined both null and not null"))
            } else {
                merge_type(of, defs, path, member)
            }
        }
        Type::ListOf(of) => {
            // Nix concatenates in reverse definition order: tags (z to a), machine, role.
            let mut out = Vec::new();
            for def in defs.iter().rev() {
                for (i, item) in def.value.as_array().into_iter().flatten().enumerate() {
                    let (_, item) = unwrap(Def {
                        value: item,
                        origin: def.origin,
                    });
                    out.push(merge_type(of, &[item], &path.index(i), member)?);
                }
            }
            Ok(Value::Array(out))
        }
        Type::AttrsOf(of) => {
            let mut out = Map::new();
            for (key, sub) in by_attribute(defs) {
                if let Some(value) = merge_option(of, &sub, &path.key(key), member)? {
                    out.insert(key.to_string(), value);
                }
            }
            Ok(Value::Object(out))
        }
        Type::Submodule(options) => merge_options(options, defs, path, member).map(Value::Object),
    }
}
