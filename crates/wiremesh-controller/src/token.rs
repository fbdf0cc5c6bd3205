//! Join tokens: 32 random bytes printed as `wmj1.` + unpadded URL-safe base64. The controller
//! stores only their SHA-256, so a copy of the store admits nobody.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::state::TokenHash;

const PREFIX: &str = "wmj1.";
/// The longest token text looked at; real ones are 48 characters.
pub const MAX_TOKEN_LEN: usize = 64;
/// The longest validity a token may be given.
pub const MAX_TTL_SECONDS: u64 = 30 * 24 * 3600;

/// The text of the token made from `secret`.
pub fn token_text(secret: &[u8; 32]) -> String {
    format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(secret))
}

/// The stored hash of a token text, `None` when the text is not a token at all.
pub fn token_hash(text: &str) -> Option<TokenHash> {
    if text.len() > MAX_TOKEN_LEN {
        return None;
    }
    let secret = URL_SAFE_NO_PAD.decode(text.strip_prefix(PREFIX)?).ok()?;
    (secret.len() == 32).then(|| Sha256::digest(&secret).into())
}

/// A duration like `90s`, `15m`, `1h` or `7d` in seconds (at least 1 s, at most 30 days).
pub fn parse_ttl(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "{text:?} is not a duration; expected a number and a unit, like 90s, 15m, 1h or 7d (at most 30d)"
        )
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    match number.checked_mul(scale) {
        Some(seconds) if (1..=MAX_TTL_SECONDS).contains(&seconds) => Ok(seconds),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_hash_and_reject_other_text() {
        let text = token_text(&[7; 32]);
        assert_eq!(text.len(), 48);
        assert_eq!(token_hash(&text), Some(Sha256::digest([7; 32]).into()));
        assert_ne!(token_hash(&text), token_hash(&token_text(&[8; 32])));
        for bad in ["", "wmj1.", "wmj2.AAAA", &text[..40], &format!("{text}x")] {
            assert_eq!(token_hash(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_ttl("1h"), Ok(3600));
        assert_eq!(parse_ttl("90s"), Ok(90));
        assert_eq!(parse_ttl("30d"), Ok(MAX_TTL_SECONDS));
        for bad in [
            "",
            "1",
            "h",
            "0s",
            "31d",
            "1.5h",
            "-1h",
            "99999999999999999999d",
        ] {
            assert!(parse_ttl(bad).is_err(), "{bad:?}");
        }
    }
}
