//! Ingest-key authentication.

use hookrelay_core::{constant_time_eq, hash_token, TokenHash};

/// The accepted ingest keys, kept only as SHA-256 hashes.
#[derive(Clone, Debug, Default)]
pub struct IngestKeys {
    hashes: Vec<TokenHash>,
}

impl IngestKeys {
    /// Hashes the configured keys (empty ones are ignored).
    pub fn new(keys: &[String]) -> Self {
        Self {
            hashes: keys
                .iter()
                .filter(|k| !k.is_empty())
                .map(|k| hash_token(k))
                .collect(),
        }
    }

    /// Whether an `authorization` header value (`Bearer <key>`) is accepted.
    /// Every configured key is compared, in constant time, whatever matches.
    pub fn check_bearer(&self, header: Option<&str>) -> bool {
        let Some(key) = header.and_then(bearer) else {
            return false;
        };
        let presented = hash_token(key);
        self.hashes
            .iter()
            .fold(false, |ok, h| constant_time_eq(&h.0, &presented.0) | ok)
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive).
fn bearer(h: &str) -> Option<&str> {
    let (scheme, token) = h.trim().split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_keys_are_checked() {
        let k = IngestKeys::new(&["k1".into(), "k2".into(), String::new()]);
        assert!(k.check_bearer(Some("Bearer k1")));
        assert!(k.check_bearer(Some("bearer k2")));
        assert!(!k.check_bearer(Some("Bearer k3")));
        assert!(!k.check_bearer(Some("k1")));
        assert!(!k.check_bearer(Some("Bearer ")));
        assert!(!k.check_bearer(None));
        assert!(!IngestKeys::new(&[]).check_bearer(Some("Bearer ")));
    }
}
