//! The end-to-end scheme of SPEC §7, byte-compatible with dialtone v1. Client side only: the
//! server never calls into this module.
//!
//! - device keys: X25519, public keys as standard padded base64 (44 characters);
//! - pairwise key: HKDF-SHA256(ikm = X25519(mine, theirs), no salt, info `dialtone-e2e-v1`, 32 bytes),
//!   refusing an all-zero shared secret (a low-order peer key);
//! - sealing: AES-256-GCM, random 12-byte nonce, no associated data, base64(nonce ‖ ct ‖ tag);
//! - channel and directory keys: 32 random bytes, sealed under the pairwise key as envelopes.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hkdf::Hkdf;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::{CryptoError, fill_random};

/// HKDF info string of the pairwise key.
pub const PAIRWISE_INFO: &[u8] = b"dialtone-e2e-v1";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// A 32-byte symmetric key (channel key, directory key or pairwise key), wiped on drop.
pub type SymmetricKey = Zeroizing<[u8; 32]>;

/// A device's X25519 key pair.
#[derive(Clone)]
pub struct DeviceKeypair {
    secret: StaticSecret,
    public: PublicKey,
}

impl std::fmt::Debug for DeviceKeypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceKeypair")
            .field("public", &self.public_key_b64())
            .finish_non_exhaustive()
    }
}

impl DeviceKeypair {
    /// A fresh key pair from the OS CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        fill_random(bytes.as_mut());
        Self::from_secret_bytes(*bytes)
    }

    pub fn from_secret_bytes(bytes: [u8; 32]) -> Self {
        let secret = StaticSecret::from(bytes);
        let public = PublicKey::from(&secret);
        Self { secret, public }
    }

    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.secret.to_bytes())
    }

    /// The public key as sent to the server: standard padded base64.
    pub fn public_key_b64(&self) -> String {
        STANDARD.encode(self.public.as_bytes())
    }

    /// The pairwise key shared with `peer`.
    pub fn pairwise_key(&self, peer: &PublicKey) -> Result<SymmetricKey, CryptoError> {
        let shared = self.secret.diffie_hellman(peer);
        if !shared.was_contributory() {
            return Err(CryptoError::InvalidKey(
                "peer public key gives an all-zero shared secret",
            ));
        }
        let hk = Hkdf::<Sha256>::new(None, shared.as_bytes());
        let mut out = Zeroizing::new([0u8; 32]);
        hk.expand(PAIRWISE_INFO, out.as_mut())
            .map_err(|_| CryptoError::InvalidKey("HKDF output length"))?;
        Ok(out)
    }

    /// Wrap `key` (a channel or directory key) for the device whose public key is `peer_b64`.
    pub fn wrap_for(&self, peer_b64: &str, key: &[u8; 32]) -> Result<String, CryptoError> {
        let peer = parse_public_key(peer_b64)?;
        let pairwise = self.pairwise_key(&peer)?;
        Ok(seal(&pairwise, key))
    }

    /// Unwrap an envelope sealed for this device by the device whose public key is `sender_b64`.
    pub fn unwrap_from(
        &self,
        sender_b64: &str,
        envelope: &str,
    ) -> Result<SymmetricKey, CryptoError> {
        let sender = parse_public_key(sender_b64)?;
        let pairwise = self.pairwise_key(&sender)?;
        let plain = Zeroizing::new(open(&pairwise, envelope)?);
        let key: [u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Decrypt("envelope does not hold a 32-byte key"))?;
        Ok(Zeroizing::new(key))
    }
}

/// Parse a standard-base64 X25519 public key of exactly 32 bytes.
pub fn parse_public_key(b64: &str) -> Result<PublicKey, CryptoError> {
    let bytes = STANDARD
        .decode(b64.trim())
        .map_err(|_| CryptoError::InvalidKey("public key is not standard base64"))?;
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| CryptoError::InvalidKey("public key is not 32 bytes"))?;
    Ok(PublicKey::from(arr))
}

/// A fresh random 32-byte symmetric key.
pub fn generate_key() -> SymmetricKey {
    let mut k = Zeroizing::new([0u8; 32]);
    fill_random(k.as_mut());
    k
}

/// AES-256-GCM seal: base64(nonce ‖ ciphertext ‖ tag).
pub fn seal(key: &[u8; 32], plaintext: &[u8]) -> String {
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce);
    seal_with_nonce(key, nonce, plaintext)
}

/// [`seal`] with a caller-chosen nonce: for known-answer tests only; a nonce must never repeat.
pub fn seal_with_nonce(key: &[u8; 32], nonce: [u8; NONCE_LEN], plaintext: &[u8]) -> String {
    seal_parts(key, nonce, plaintext, b"")
}

/// [`seal`] with associated data (trust v2): the ciphertext opens only with the same `aad`, so
/// what it binds (channel, generation, sender, kind) cannot be changed without detection. With
/// an empty `aad` it is exactly [`seal`].
pub fn seal_bound(key: &[u8; 32], plaintext: &[u8], aad: &[u8]) -> String {
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce);
    seal_parts(key, nonce, plaintext, aad)
}

fn seal_parts(key: &[u8; 32], nonce: [u8; NONCE_LEN], plaintext: &[u8], aad: &[u8]) -> String {
    let aead = Aes256Gcm::new(&(*key).into());
    // Fails only beyond GCM's 64 GiB message limit.
    let sealed = aead
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .unwrap_or_default();
    let mut blob = Vec::with_capacity(NONCE_LEN + sealed.len());
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&sealed);
    STANDARD.encode(blob)
}

/// Open a value made by [`seal`]. Tampering or the wrong key is an error, never garbage.
pub fn open(key: &[u8; 32], b64: &str) -> Result<Vec<u8>, CryptoError> {
    open_bound(key, b64, b"")
}

/// Open a value made by [`seal_bound`] with the same `aad`.
pub fn open_bound(key: &[u8; 32], b64: &str, aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let blob = STANDARD
        .decode(b64.trim())
        .map_err(|_| CryptoError::Decrypt("ciphertext is not standard base64"))?;
    if blob.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Decrypt("ciphertext too short"));
    }
    let (nonce, sealed) = blob.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce
        .try_into()
        .map_err(|_| CryptoError::Decrypt("ciphertext too short"))?;
    Aes256Gcm::new(&(*key).into())
        .decrypt(&Nonce::from(nonce), Payload { msg: sealed, aad })
        .map_err(|_| CryptoError::Decrypt("authentication failed (wrong key or tampered)"))
}

/// Open a sealed UTF-8 text.
pub fn open_text(key: &[u8; 32], b64: &str) -> Result<String, CryptoError> {
    String::from_utf8(open(key, b64)?).map_err(|_| CryptoError::Decrypt("plaintext is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex<const N: usize>(s: &str) -> [u8; N] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    /// RFC 7748 §6.1 Diffie-Hellman test vector.
    #[test]
    fn x25519_rfc7748_vector() {
        let alice = StaticSecret::from(unhex::<32>(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ));
        let alice_pub = PublicKey::from(&alice);
        assert_eq!(
            hex::encode(alice_pub.as_bytes()),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        let bob_pub = PublicKey::from(unhex::<32>(
            "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
        ));
        assert_eq!(
            hex::encode(alice.diffie_hellman(&bob_pub).as_bytes()),
            "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
        );
    }

    /// RFC 5869 test case 3 (HKDF-SHA256 with empty salt and info).
    #[test]
    fn hkdf_rfc5869_case3() {
        let ikm = [0x0bu8; 22];
        let hk = Hkdf::<Sha256>::new(None, &ikm);
        let mut okm = [0u8; 42];
        hk.expand(&[], &mut okm).unwrap();
        assert_eq!(
            hex::encode(okm),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
        );
    }

    /// Pins the envelope format: fixed device keys, fixed nonce, fixed channel key.
    #[test]
    fn envelope_vector_is_pinned() {
        let alice = DeviceKeypair::from_secret_bytes(unhex(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ));
        let bob = DeviceKeypair::from_secret_bytes(unhex(
            "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
        ));
        let pairwise = alice
            .pairwise_key(&parse_public_key(&bob.public_key_b64()).unwrap())
            .unwrap();
        assert_eq!(
            *pairwise,
            *bob.pairwise_key(&parse_public_key(&alice.public_key_b64()).unwrap())
                .unwrap()
        );
        let channel_key = [0x42u8; 32];
        let envelope = seal_with_nonce(&pairwise, [1u8; 12], &channel_key);
        assert_eq!(envelope, PINNED_ENVELOPE);
        let unwrapped = bob.unwrap_from(&alice.public_key_b64(), &envelope).unwrap();
        assert_eq!(*unwrapped, channel_key);
    }
    /// Computed independently with pyca/cryptography (OpenSSL): X25519 of the RFC 7748 keys, HKDF-SHA256
    /// with info `dialtone-e2e-v1`, AES-256-GCM with nonce 01×12 over 42×32.
    const PINNED_ENVELOPE: &str =
        "AQEBAQEBAQEBAQEBgF+olXdNZ3KvQ6YMsLHaeDjSLaNbrCB9keVRSoMhmW/PjTQVQeA6yrg6ypsx14+y";

    #[test]
    fn low_order_peer_key_is_refused() {
        let me = DeviceKeypair::generate();
        let zero = PublicKey::from([0u8; 32]);
        assert!(me.pairwise_key(&zero).is_err());
    }

    #[test]
    fn public_keys_must_be_32_bytes_of_base64() {
        assert!(parse_public_key("AAAA").is_err());
        assert!(parse_public_key("not base64 at all!!").is_err());
        let kp = DeviceKeypair::generate();
        assert_eq!(kp.public_key_b64().len(), 44);
        assert!(parse_public_key(&kp.public_key_b64()).is_ok());
    }

    #[test]
    fn tampered_or_wrong_key_fails_clearly() {
        let k = generate_key();
        let sealed = seal(&k, b"hello");
        assert_eq!(open_text(&k, &sealed).unwrap(), "hello");
        let other = generate_key();
        assert!(open(&other, &sealed).is_err());
        let mut raw = STANDARD.decode(&sealed).unwrap();
        raw[14] ^= 1;
        let err = open(&k, &STANDARD.encode(raw)).unwrap_err();
        assert!(err.to_string().contains("authentication failed"));
    }
}
