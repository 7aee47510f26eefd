//! Tokens, keys and secrets: generation, hashing, constant-time comparison.

use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// SHA-256 of a token or key. Only this is ever stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TokenHash(pub [u8; 32]);

/// Hashes a presented token for lookup and storage.
pub fn hash_token(token: &str) -> TokenHash {
    TokenHash(Sha256::digest(token.as_bytes()).into())
}

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    b
}

/// A new engine-made signing secret: `whsec_` + base64 of 32 random bytes.
pub fn generate_secret() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(random_bytes::<32>())
    )
}

/// A new device token: a UUID v4 (docs/api.md).
pub fn new_device_token() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A new admin key: `sk_admin_` + 64 hex digits.
pub fn generate_admin_key() -> String {
    format!("sk_admin_{}", hex::encode(random_bytes::<32>()))
}

/// A new organization ingest key: `ik_` + 64 hex digits.
pub fn generate_ingest_key() -> String {
    format!("ik_{}", hex::encode(random_bytes::<32>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_sha256() {
        // printf 'abc' | sha256sum
        assert_eq!(
            hex::encode(hash_token("abc").0),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn secrets_and_keys_have_their_shapes() {
        let s = generate_secret();
        assert!(s.starts_with("whsec_"));
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(&s[6..])
                .map(|b| b.len()),
            Ok(32)
        );
        assert!(generate_admin_key().starts_with("sk_admin_"));
        assert_ne!(generate_secret(), generate_secret());
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
