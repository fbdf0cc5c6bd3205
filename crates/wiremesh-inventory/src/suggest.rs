//! "Did you mean" hints for misspelt names, by edit distance.

/// Names longer than this get no suggestion: edit distance costs the product of both lengths, and
/// a typo hint for a name of hundreds of characters helps nobody.
const MAX_NAME_CHARS: usize = 64;

/// The candidate closest to `word`, if it is close enough to be a plausible typo: at most 2 edits,
/// or a third of the word's length for long names, or one is a prefix of the other (`string` and
/// `str`). Ties go to the bytewise smallest candidate.
pub(crate) fn closest<'c, I>(word: &str, candidates: I) -> Option<&'c str>
where
    I: IntoIterator<Item = &'c str>,
{
    let length = word.chars().count();
    if length > MAX_NAME_CHARS {
        return None;
    }
    let limit = (length / 3).max(2);
    candidates
        .into_iter()
        .filter(|c| c.chars().count() <= MAX_NAME_CHARS)
        .map(|c| {
            let lower = (word.to_ascii_lowercase(), c.to_ascii_lowercase());
            let prefix = lower.0.len().min(lower.1.len()) >= 3
                && (lower.0.starts_with(&lower.1) || lower.1.starts_with(&lower.0));
            let distance = if lower.0 == lower.1 {
                0
            } else if prefix {
                1
            } else {
                strsim::damerau_levenshtein(word, c)
            };
            (distance, c)
        })
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c)
}

/// `" Did you mean `x`?"` or nothing.
pub(crate) fn hint<'c, I>(word: &str, candidates: I) -> String
where
    I: IntoIterator<Item = &'c str>,
{
    closest(word, candidates)
        .map(|c| format!(" Did you mean `{c}`?"))
        .unwrap_or_default()
}

/// Names as a JSON-ish list for messages: `["a","b"]`.
pub(crate) fn list<'c, I>(names: I) -> String
where
    I: IntoIterator<Item = &'c str>,
{
    let quoted: Vec<String> = names
        .into_iter()
        .map(|n| serde_json::to_string(n).unwrap_or_default())
        .collect();
    format!("[{}]", quoted.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let options = ["endpoint", "controlPort", "dynamicIp", "ipv4Network"];
        assert_eq!(closest("endpont", options), Some("endpoint"));
        assert_eq!(closest("Endpoint", options), Some("endpoint"));
        assert_eq!(closest("controlport", options), Some("controlPort"));
        assert_eq!(closest("dynamicIP", options), Some("dynamicIp"));
        assert_eq!(closest("zzz", options), None);
        assert_eq!(closest("string", ["str", "int"]), Some("str"));
        assert_eq!(hint("zzz", options), "");
        assert_eq!(hint("endpont", options), " Did you mean `endpoint`?");
        assert_eq!(list(["a", "b"]), r#"["a","b"]"#);
    }

    #[test]
    fn long_names_get_no_suggestion_instead_of_a_quadratic_search() {
        let long = "a".repeat(200_000);
        let near = format!("b{}", &long[1..]);
        assert_eq!(closest(&near, [long.as_str()]), None);
        assert_eq!(
            closest("endpont", [long.as_str(), "endpoint"]),
            Some("endpoint")
        );
        let name = "x".repeat(MAX_NAME_CHARS);
        let typo = format!("{}y", &name[1..]);
        assert_eq!(closest(&typo, [name.as_str()]), Some(name.as_str()));
    }
}
