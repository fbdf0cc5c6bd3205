//! "Did you mean" hints for misspelt names, by edit distance.

/// Names longer than this get no suggestion: edit distance costs the product of both lengths, and
/// a typo hint for a name of hundreds of characters helps nobody.
const MAX_NAME_CHARS: usize = 64;

/// The most edit-distance work (the product of the two names' lengths, summed over candidates)
/// one suggestion may cost. Ten thousand machine names of ten characters cost a million; past the
/// budget, candidates are still compared for case and prefix matches only.
const MAX_WORK: usize = 10_000_000;

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
    let word_lower = word.to_ascii_lowercase();
    let mut work = 0;
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        let candidate_length = candidate.chars().count();
        if candidate_length > MAX_NAME_CHARS {
            continue;
        }
        let lower = candidate.to_ascii_lowercase();
        let prefix = word_lower.len().min(lower.len()) >= 3
            && (word_lower.starts_with(&lower) || lower.starts_with(&word_lower));
        let distance = if lower == word_lower {
            0
        } else if prefix {
            1
        } else if length.abs_diff(candidate_length) > limit || work > MAX_WORK {
            // The edit distance is at least the difference in length.
            continue;
        } else {
            work += length * candidate_length;
            strsim::damerau_levenshtein(word, candidate)
        };
        if distance <= limit && best.is_none_or(|b| (distance, candidate) < b) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
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
    fn long_names_and_many_candidates_cost_a_bounded_search() {
        let long = "a".repeat(200_000);
        let near = format!("b{}", &long[1..]);
        assert_eq!(closest(&near, [long.as_str()]), None);
        assert_eq!(
            closest("endpont", [long.as_str(), "endpoint"]),
            Some("endpoint")
        );
        // 200,000 unrelated names of 60 letters: the budget covers the first few thousand.
        let mut seed = 1u64;
        let mut letter = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            char::from(b'a' + (seed >> 59) as u8 % 26)
        };
        let many: Vec<String> = (0..200_000)
            .map(|_| (0..60).map(|_| letter()).collect())
            .collect();
        let typo = format!("{}99", &many[123_456][..58]);
        assert_eq!(
            closest(&typo, [many[123_456].as_str()]),
            Some(many[123_456].as_str())
        );
        let exact = "0".repeat(53) + "SEVEN";
        let mut names: Vec<&str> = many.iter().map(String::as_str).collect();
        names.push("zzz-seven");
        assert_eq!(
            closest(&typo, names.iter().copied()),
            None,
            "past the budget"
        );
        assert_eq!(
            closest(&exact.to_lowercase(), [exact.as_str()]),
            Some(exact.as_str())
        );
        assert_eq!(
            closest("ZZZ-SEVEN", names.iter().copied()),
            Some("zzz-seven")
        );
        let name = "x".repeat(MAX_NAME_CHARS);
        let typo = format!("{}y", &name[1..]);
        assert_eq!(closest(&typo, [name.as_str()]), Some(name.as_str()));
    }
}
