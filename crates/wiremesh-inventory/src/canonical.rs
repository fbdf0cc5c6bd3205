//! JSON values on one line with object keys sorted bytewise, for messages and tables. It does not
//! rely on serde_json's map order, which a `preserve_order` feature anywhere in the build would
//! change.

use serde_json::Value;

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
    fn sorts_keys_and_escapes_strings() {
        let v = json!({"b": [1, {"y": null, "x": "s\"q"}], "a": {}, "c": [], "d": {"k": true}});
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
