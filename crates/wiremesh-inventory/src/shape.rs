//! Checks on the shape of JSON documents (inventory and catalog) that report the path, what was
//! found and what is allowed.

use serde_json::{Map, Value};

use crate::error::{ErrorKind, ResolveError};
use crate::path::Path;
use crate::suggest;

/// "an object", "a string", ... for messages.
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A shape error at `path`: `<document> at `<path>`: expected X, found Y`.
pub(crate) fn wrong_type(
    kind: ErrorKind,
    path: &Path,
    expected: &str,
    found: &Value,
) -> ResolveError {
    let at = path.render();
    ResolveError::new(
        kind,
        at.clone(),
        format!(
            "{} at `{}`: expected {expected}, found {}",
            document(kind),
            display_path(&at),
            json_type(found)
        ),
    )
}

/// The document an error of `kind` is about, as messages name it.
pub(crate) fn document(kind: ErrorKind) -> &'static str {
    if kind == ErrorKind::InvalidCatalog {
        "module catalog"
    } else {
        "inventory"
    }
}

fn display_path(at: &str) -> &str {
    if at.is_empty() { "(top level)" } else { at }
}

pub(crate) fn object<'v>(
    kind: ErrorKind,
    value: &'v Value,
    path: &Path,
) -> Result<&'v Map<String, Value>, ResolveError> {
    value
        .as_object()
        .ok_or_else(|| wrong_type(kind, path, "an object", value))
}

pub(crate) fn string<'v>(
    kind: ErrorKind,
    value: &'v Value,
    path: &Path,
) -> Result<&'v str, ResolveError> {
    value
        .as_str()
        .ok_or_else(|| wrong_type(kind, path, "a string", value))
}

/// A list of strings, in order.
pub(crate) fn strings<'v>(
    kind: ErrorKind,
    value: &'v Value,
    path: &Path,
) -> Result<Vec<&'v str>, ResolveError> {
    let items = value
        .as_array()
        .ok_or_else(|| wrong_type(kind, path, "a list of strings", value))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| string(kind, item, &path.index(i)))
        .collect()
}

/// Refuses keys outside `allowed` (and, if `comments`, not starting with `_`), suggesting the
/// closest allowed key.
pub(crate) fn known_keys(
    kind: ErrorKind,
    map: &Map<String, Value>,
    allowed: &[&str],
    comments: bool,
    path: &Path,
) -> Result<(), ResolveError> {
    for key in map.keys() {
        if allowed.contains(&key.as_str()) || (comments && key.starts_with('_')) {
            continue;
        }
        let at = path.key(key).render();
        return Err(ResolveError::new(
            kind,
            at.clone(),
            format!(
                "{} at `{at}`: unknown key `{key}`.{} Allowed keys: {}",
                document(kind),
                suggest::hint(key, allowed.iter().copied()),
                suggest::list(allowed.iter().copied())
            ),
        ));
    }
    Ok(())
}

/// A message-only error at `path`.
pub(crate) fn invalid(kind: ErrorKind, path: &Path, what: impl std::fmt::Display) -> ResolveError {
    let at = path.render();
    ResolveError::new(
        kind,
        at.clone(),
        format!("{} at `{}`: {what}", document(kind), display_path(&at)),
    )
}
