//! Bearer tokens (sessions, invites) and secret comparison.
//!
//! Tokens are 32 random bytes, base64url without padding; only their SHA-256 is stored, so a
//! database dump does not hand out sessions or invites.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::random_bytes;

/// A fresh random token.
pub fn generate_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes(32))
}

/// The stored form of a token: hex SHA-256.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Compare two secrets in constant time (also hiding their lengths, by comparing digests).
pub fn secrets_equal(given: &str, expected: &str) -> bool {
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.ct_eq(&b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_url_safe() {
        let a = generate_token();
        let b = generate_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn secret_comparison() {
        assert!(secrets_equal("s3cret-token", "s3cret-token"));
        assert!(!secrets_equal("s3cret-token", "s3cret-tokeN"));
        assert!(!secrets_equal("", "x"));
    }
}
