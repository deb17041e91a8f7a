//! Keyed hashes for equality lookups on encrypted columns (SPEC §6).
//!
//! - `users.username_hash` = hex HMAC-SHA256(pepper, normalized username), exactly as dialtone v1,
//!   so existing databases keep working;
//! - `devices.public_key_hash` = hex HMAC-SHA256(k, canonical public key) with `k` an HKDF subkey of
//!   the channel key dedicated to this purpose. After a key rotation the hashes under the previous
//!   keys are also offered for lookups until `dialtone rekey` (or a lazy read) rewrites them.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::derive_key;

type HmacSha256 = Hmac<Sha256>;

/// The keys behind every lookup hash.
pub struct KeyedHasher {
    pepper: Vec<u8>,
    device_current: [u8; 32],
    device_previous: Vec<[u8; 32]>,
}

impl KeyedHasher {
    pub fn new(pepper: &[u8], channel_key: &[u8], previous: &[&[u8]]) -> Self {
        Self {
            pepper: pepper.to_vec(),
            device_current: device_hash_key(channel_key),
            device_previous: previous.iter().map(|k| device_hash_key(k)).collect(),
        }
    }

    /// Hash of an already normalized username (see `service::validate::normalize_username`).
    pub fn username_hash(&self, normalized: &str) -> String {
        hmac_hex(&self.pepper, normalized.as_bytes())
    }

    /// Hash of a device public key under the current key.
    pub fn device_key_hash(&self, public_key: &str) -> String {
        hmac_hex(&self.device_current, public_key.as_bytes())
    }

    /// Hashes of a device public key under every configured key, current first.
    pub fn device_key_hashes(&self, public_key: &str) -> Vec<String> {
        std::iter::once(&self.device_current)
            .chain(self.device_previous.iter())
            .map(|k| hmac_hex(k, public_key.as_bytes()))
            .collect()
    }
}

fn device_hash_key(channel_key: &[u8]) -> [u8; 32] {
    derive_key(channel_key, b"dialtone/at-rest/device-key-hash/v1")
}

fn hmac_hex(key: &[u8], data: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return String::new();
    };
    mac.update(data);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_hash_matches_plain_hmac_sha256() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let h = KeyedHasher::new(b"Jefe", &[0u8; 32], &[]);
        assert_eq!(
            h.username_hash("what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn device_hash_uses_a_key_separate_from_pepper_and_rotates() {
        let h1 = KeyedHasher::new(b"pepper", &[1u8; 32], &[]);
        let h2 = KeyedHasher::new(b"pepper", &[2u8; 32], &[&[1u8; 32]]);
        let k = "AAAA";
        assert_ne!(h1.device_key_hash(k), h1.username_hash(k));
        assert_ne!(h1.device_key_hash(k), h2.device_key_hash(k));
        assert_eq!(
            h2.device_key_hashes(k),
            vec![h2.device_key_hash(k), h1.device_key_hash(k)]
        );
    }
}
