//! Canonical JSON text: object keys sorted bytewise, 2-space indentation. It does not rely on
//! serde_json's map order, which a `preserve_order` feature anywhere in the build would change.

use serde_json::Value;

/// `value` as pretty JSON with sorted keys, the layout of `serde_json::to_string_pretty`.
pub fn to_pretty(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value, 0);
    out
}

/// Nesting below which [`to_compact`] writes `...`: it prints values from user input in messages,
/// and a caller may build a `Value` deeper than any parser allows.
const COMPACT_DEPTH: usize = 32;

/// `value` on one line with sorted keys (for messages and tables); nesting deeper than 32 levels is
/// elided as `...`.
pub fn to_compact(value: &Value) -> String {
    let mut out = String::new();
    write_compact(&mut out, value, 0);
    out
}

fn write_scalar(out: &mut String, value: &Value) {
    match value {
        Value::String(s) => out.push_str(&quote(s)),
        other => out.push_str(&other.to_string()),
    }
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\""))
}

fn sorted(map: &serde_json::Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

// Recursion depth equals the value's nesting, which serde_json's parser caps at 128 for parsed
// input; values built by this crate are shallower than the catalog types that shape them.
fn write_value(out: &mut String, value: &Value, depth: usize) {
    match value {
        Value::Array(items) if !items.is_empty() => {
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                indent(out, depth + 1);
                write_value(out, item, depth + 1);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            indent(out, depth);
            out.push(']');
        }
        Value::Object(map) if !map.is_empty() => {
            out.push_str("{\n");
            let entries = sorted(map);
            let last = entries.len() - 1;
            for (i, (key, item)) in entries.into_iter().enumerate() {
                indent(out, depth + 1);
                out.push_str(&quote(key));
                out.push_str(": ");
                write_value(out, item, depth + 1);
                out.push_str(if i < last { ",\n" } else { "\n" });
            }
            indent(out, depth);
            out.push('}');
        }
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
        scalar => write_scalar(out, scalar),
    }
}

fn write_compact(out: &mut String, value: &Value, depth: usize) {
    match value {
        Value::Array(_) | Value::Object(_) if depth >= COMPACT_DEPTH => out.push_str("..."),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_compact(out, item, depth + 1);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in sorted(map).into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&quote(key));
                out.push(':');
                write_compact(out, item, depth + 1);
            }
            out.push('}');
        }
        scalar => write_scalar(out, scalar),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_serde_json_pretty_layout() {
        let v = json!({"b": [1, {"y": null, "x": "s\"q"}], "a": {}, "c": [], "d": {"k": true}});
        let expected = "{\n  \"a\": {},\n  \"b\": [\n    1,\n    {\n      \"x\": \"s\\\"q\",\n      \"y\": null\n    }\n  ],\n  \"c\": [],\n  \"d\": {\n    \"k\": true\n  }\n}";
        assert_eq!(to_pretty(&v), expected);
        assert_eq!(
            to_compact(&v),
            r#"{"a":{},"b":[1,{"x":"s\"q","y":null}],"c":[],"d":{"k":true}}"#
        );
    }

    #[test]
    fn compact_elides_deep_nesting() {
        let mut deep = json!(1);
        for _ in 0..100_000 {
            deep = Value::Array(vec![deep]);
        }
        assert_eq!(
            to_compact(&deep),
            format!("{}...{}", "[".repeat(32), "]".repeat(32))
        );
        // serde_json drops values recursively: unwind this one iteratively.
        while let Value::Array(mut items) = deep {
            deep = items.pop().unwrap_or(Value::Null);
        }
    }
}
