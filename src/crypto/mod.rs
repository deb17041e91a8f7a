//! Cryptography, all from audited crates (RustCrypto, dalek): nothing here is hand-rolled.
//!
//! - [`field`]: at-rest field encryption (`enc:v1:` values, AES-256-GCM bound to column and row);
//! - [`keyed_hash`]: HMAC-SHA256 lookup hashes for usernames and device keys;
//! - [`password`]: argon2id hashing, with dialtone v1 bcrypt hashes still verifying;
//! - [`token`]: session/invite tokens and constant-time secret comparison;
//! - [`e2e`]: the client-side end-to-end scheme (X25519 + HKDF-SHA256 + AES-256-GCM);
//! - [`sign`]: trust v2 Ed25519 signatures under a per-kind context;
//! - [`safety`]: trust v2 safety numbers (Signal-style numeric fingerprints);
//! - [`device_list`]: trust v2 signed device lists, checked by the server and by clients.
//!
//! The server reaches [`field`] and [`keyed_hash`] only through the database actor.

pub mod bus_mac;
pub mod device_list;
pub mod e2e;
pub mod field;
pub mod keyed_hash;
pub mod password;
pub mod safety;
pub mod sign;
pub mod token;

use hkdf::Hkdf;
use sha2::Sha256;

/// Errors from the crypto layer. Messages never contain key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("value in {column} is not in the enc:v1 format")]
    Malformed { column: &'static str },
    #[error(
        "value in {column} was encrypted with unknown key id {key_id} (is its key in DIALTONE_CHANNEL_KEY_PREVIOUS?)"
    )]
    UnknownKey {
        column: &'static str,
        key_id: String,
    },
    #[error("value in {column} failed authentication (tampered, or moved from another row)")]
    Tampered { column: &'static str },
    #[error("decrypted value in {column} is not UTF-8")]
    NotUtf8 { column: &'static str },
    #[error("password hashing failed: {0}")]
    PasswordHash(String),
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    #[error("decryption failed: {0}")]
    Decrypt(&'static str),
    #[error("bad signature: {0}")]
    Signature(&'static str),
}

/// `len` bytes from the operating system's CSPRNG.
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    fill_random(&mut buf);
    buf
}

/// Fill `buf` from the operating system's CSPRNG.
///
/// The OS RNG failing is unrecoverable for a crypto service (every nonce and token depends on it),
/// so this aborts rather than continue with weak randomness.
pub fn fill_random(buf: &mut [u8]) {
    if let Err(e) = getrandom::fill(buf) {
        tracing::error!(error = %e, "operating system random number generator failed");
        std::process::abort();
    }
}

/// HKDF-SHA256 expand of `ikm` for one purpose (`info`): never one key for two purposes.
pub(crate) fn derive_key(ikm: &[u8], info: &[u8]) -> [u8; 32] {
    let hk = Hkdf::<Sha256>::new(None, ikm);
    let mut out = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's 255*32 limit, so expand cannot fail.
    let _ = hk.expand(info, &mut out);
    out
}
