//! Reading the inventory JSON: size and syntax checks with a path for every failure, then the
//! structure of `machines`, `tags` and `instances` (settings are checked later, per role).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::{ErrorKind, ResolveError};
use crate::path::{Path, quote_attr};
use crate::shape::{document, invalid, known_keys, object, string, strings, wrong_type};

const KIND: ErrorKind = ErrorKind::InvalidInventory;

/// Parses JSON text with a size limit; a syntax error reports where it happened as a path (the
/// innermost container being read) plus line and column.
pub(crate) fn parse_json(text: &str, kind: ErrorKind) -> Result<Value, ResolveError> {
    if text.len() > crate::MAX_INPUT_BYTES {
        return Err(ResolveError::new(
            ErrorKind::InputTooLarge,
            "",
            format!(
                "the input is {} bytes; at most {} are accepted",
                text.len(),
                crate::MAX_INPUT_BYTES
            ),
        ));
    }
    serde_json::from_str(text).map_err(|e| {
        let offset = byte_offset(text, e.line(), e.column());
        let path = path_at(text, offset);
        let at = if path.is_empty() {
            String::new()
        } else {
            format!(" in `{path}`")
        };
        ResolveError::new(
            kind,
            path,
            format!("{} is not valid JSON{at}: {e}", document(kind)),
        )
    })
}

fn byte_offset(text: &str, line: usize, column: usize) -> usize {
    let line_start = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum::<usize>();
    (line_start + column.saturating_sub(1)).min(text.len())
}

/// The JSON path of the innermost container open at byte `offset`, found by a flat scan (no
/// recursion; the stack is capped well above serde_json's nesting limit).
fn path_at(text: &str, offset: usize) -> String {
    enum Frame {
        Object {
            key: Option<String>,
            expect_key: bool,
        },
        Array {
            index: usize,
        },
    }
    const MAX_FRAMES: usize = 512;
    let bytes = text.as_bytes();
    let mut stack: Vec<Frame> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < offset.min(bytes.len()) {
        match bytes[i] {
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                let raw = text.get(start..(i + 1).min(text.len())).unwrap_or("");
                if depth <= MAX_FRAMES
                    && let Some(Frame::Object { key, expect_key }) = stack.last_mut()
                    && *expect_key
                {
                    *key = Some(serde_json::from_str(raw).unwrap_or_else(|_| raw.to_string()));
                    *expect_key = false;
                }
            }
            b'{' | b'[' => {
                depth += 1;
                if depth <= MAX_FRAMES {
                    stack.push(if bytes[i] == b'{' {
                        Frame::Object {
                            key: None,
                            expect_key: true,
                        }
                    } else {
                        Frame::Array { index: 0 }
                    });
                }
            }
            b'}' | b']' => {
                if depth <= MAX_FRAMES {
                    stack.pop();
                }
                depth = depth.saturating_sub(1);
            }
            b',' if depth <= MAX_FRAMES => match stack.last_mut() {
                Some(Frame::Object { key, expect_key }) => {
                    *key = None;
                    *expect_key = true;
                }
                Some(Frame::Array { index }) => *index += 1,
                None => {}
            },
            _ => {}
        }
        i += 1;
    }
    let mut out = String::new();
    for frame in &stack {
        match frame {
            Frame::Object { key: Some(key), .. } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&quote_attr(key));
            }
            Frame::Object { key: None, .. } => {}
            Frame::Array { index } => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

/// `machines.<m>`: what resolution uses of a machine.
pub(crate) struct Machine<'v> {
    pub class: &'v str,
    pub tags: Vec<&'v str>,
}

/// The inventory's top level, instances still unparsed.
pub(crate) struct Inventory<'v> {
    pub machines: BTreeMap<&'v str, Machine<'v>>,
    pub tags: BTreeMap<&'v str, Vec<&'v str>>,
    pub instances: BTreeMap<&'v str, &'v Value>,
}

const TOP_KEYS: [&str; 6] = [
    "machines",
    "tags",
    "instances",
    "meta",
    "modules",
    "assertions",
];

pub(crate) fn parse_inventory(value: &Value) -> Result<Inventory<'_>, ResolveError> {
    let root = Path::ROOT;
    let top = object(KIND, value, &root)?;
    if top.contains_key("services") {
        return Err(invalid(
            KIND,
            &root.key("services"),
            "The `inventory.services` option has been removed. Use `inventory.instances` instead.",
        ));
    }
    known_keys(KIND, top, &TOP_KEYS, false, &root)?;

    let mut machines = BTreeMap::new();
    if let Some(all) = top.get("machines") {
        let at_machines = root.key("machines");
        for (name, spec) in object(KIND, all, &at_machines)? {
            let at = at_machines.key(name);
            let spec = object(KIND, spec, &at)?;
            let class = match spec.get("machineClass") {
                None | Some(Value::Null) => "nixos",
                Some(class) => {
                    let at_class = at.key("machineClass");
                    match string(KIND, class, &at_class)? {
                        c @ ("nixos" | "darwin") => c,
                        other => {
                            return Err(invalid(
                                KIND,
                                &at_class,
                                format!(
                                    "machineClass {other:?} is not one of \"nixos\", \"darwin\""
                                ),
                            ));
                        }
                    }
                }
            };
            let tags = match spec.get("tags") {
                None | Some(Value::Null) => Vec::new(),
                Some(tags) => strings(KIND, tags, &at.key("tags"))?,
            };
            machines.insert(name.as_str(), Machine { class, tags });
        }
    }

    let mut tags = BTreeMap::new();
    if let Some(all) = top.get("tags") {
        let at_tags = root.key("tags");
        for (tag, members) in object(KIND, all, &at_tags)? {
            tags.insert(tag.as_str(), strings(KIND, members, &at_tags.key(tag))?);
        }
    }

    let mut instances = BTreeMap::new();
    if let Some(all) = top.get("instances") {
        for (name, spec) in object(KIND, all, &root.key("instances"))? {
            instances.insert(name.as_str(), spec);
        }
    }
    Ok(Inventory {
        machines,
        tags,
        instances,
    })
}

/// `instances.<i>.module` with Clan's defaults applied.
pub(crate) struct ModuleSpec<'v> {
    pub name: &'v str,
    pub input: Option<&'v str>,
}

/// Reads `instances.<i>.module`; `name` defaults to the instance name, `input` to null.
pub(crate) fn parse_module_spec<'v>(
    instance: &'v str,
    spec: &'v Value,
    at: &Path,
) -> Result<ModuleSpec<'v>, ResolveError> {
    let map = object(KIND, spec, at)?;
    known_keys(KIND, map, &["module", "roles"], false, at)?;
    let mut module = ModuleSpec {
        name: instance,
        input: None,
    };
    if let Some(m) = map.get("module") {
        let at_module = at.key("module");
        let m = object(KIND, m, &at_module)?;
        known_keys(KIND, m, &["name", "input"], false, &at_module)?;
        if let Some(name) = m.get("name") {
            module.name = string(KIND, name, &at_module.key("name"))?;
        }
        match m.get("input") {
            None | Some(Value::Null) => {}
            Some(input) => module.input = Some(string(KIND, input, &at_module.key("input"))?),
        }
    }
    Ok(module)
}

/// One `roles.<r>` of an instance.
pub(crate) struct RoleSpec<'v> {
    /// `machines.<m>.settings`, sorted by machine.
    pub machines: BTreeMap<&'v str, Option<&'v Value>>,
    /// `tags` as a list or as `{ "<t>": { "settings": ... } }`, sorted by tag.
    pub tags: BTreeMap<&'v str, Option<&'v Value>>,
    pub settings: Option<&'v Value>,
}

/// The `roles` of an instance, sorted by role name.
pub(crate) fn parse_roles<'v>(
    spec: &'v Value,
    at: &Path,
) -> Result<BTreeMap<&'v str, RoleSpec<'v>>, ResolveError> {
    let mut roles = BTreeMap::new();
    let Some(all) = spec.get("roles") else {
        return Ok(roles);
    };
    let at_roles = at.key("roles");
    for (role, role_spec) in object(KIND, all, &at_roles)? {
        let at_role = at_roles.key(role);
        let map = object(KIND, role_spec, &at_role)?;
        known_keys(
            KIND,
            map,
            &["machines", "tags", "settings", "extraModules"],
            false,
            &at_role,
        )?;

        let mut machines = BTreeMap::new();
        if let Some(all) = map.get("machines") {
            let at_machines = at_role.key("machines");
            for (machine, entry) in object(KIND, all, &at_machines)? {
                let at_machine = at_machines.key(machine);
                machines.insert(machine.as_str(), settings_of(entry, &at_machine)?);
            }
        }

        let mut tags = BTreeMap::new();
        match map.get("tags") {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) => {
                let at_tags = at_role.key("tags");
                for (i, tag) in list.iter().enumerate() {
                    tags.insert(string(KIND, tag, &at_tags.index(i))?, None);
                }
            }
            Some(Value::Object(map)) => {
                let at_tags = at_role.key("tags");
                for (tag, entry) in map {
                    tags.insert(tag.as_str(), settings_of(entry, &at_tags.key(tag))?);
                }
            }
            Some(other) => {
                return Err(wrong_type(
                    KIND,
                    &at_role.key("tags"),
                    "a list of tag names or an object { \"<tag>\": { \"settings\": {...} } }",
                    other,
                ));
            }
        }

        let settings = match map.get("settings") {
            None | Some(Value::Null) => None,
            Some(s) => Some(s),
        };
        roles.insert(
            role.as_str(),
            RoleSpec {
                machines,
                tags,
                settings,
            },
        );
    }
    Ok(roles)
}

/// `{ "settings": ... }` (both optional) as found under `machines.<m>` and `tags.<t>`.
fn settings_of<'v>(entry: &'v Value, at: &Path) -> Result<Option<&'v Value>, ResolveError> {
    if entry.is_null() {
        return Ok(None);
    }
    let map = object(KIND, entry, at)?;
    known_keys(KIND, map, &["settings"], false, at)?;
    Ok(match map.get("settings") {
        None | Some(Value::Null) => None,
        Some(s) => Some(s),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_name_the_innermost_container() {
        let text = "{\"instances\": {\"my-vpn\": {\"roles\": [1, 2, }}}";
        let err = parse_json(text, ErrorKind::InvalidJson).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidJson);
        assert_eq!(err.path, "instances.my-vpn.roles[2]");
        assert!(err.message.contains("line 1"), "{}", err.message);

        let text = "{\"a\": {\"b\\\"c\": tru}}";
        assert_eq!(
            parse_json(text, ErrorKind::InvalidJson).unwrap_err().path,
            "a.\"b\\\"c\""
        );
        assert_eq!(parse_json("", ErrorKind::InvalidJson).unwrap_err().path, "");
        assert_eq!(
            parse_json("{\"x\": 1", ErrorKind::InvalidJson)
                .unwrap_err()
                .path,
            "x"
        );
    }

    #[test]
    fn deep_nesting_is_an_error_with_a_path() {
        let text = format!(
            "{{\"machines\": {}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let err = parse_json(&text, ErrorKind::InvalidJson).unwrap_err();
        assert!(err.message.contains("recursion limit"), "{}", err.message);
        assert!(err.path.starts_with("machines[0][0]"), "{}", err.path);
    }
}
