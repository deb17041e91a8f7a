//! Ed25519 signatures for trust v2 (ed25519-dalek 3): identity keys and device signing keys.
//!
//! Every signature covers a context string that names what is signed (a device list, a
//! countersignature, …) followed by the exact bytes, so a signature made for one kind can never
//! pass as another. Verification is `verify_strict` (no small-order keys, no malleable `R`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use zeroize::Zeroize;

use super::CryptoError;

fn b64_encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn b64_decode(s: &str) -> Result<Vec<u8>, CryptoError> {
    STANDARD
        .decode(s)
        .map_err(|_| CryptoError::InvalidKey("not standard base64"))
}

/// What a signature is for: its bytes prefix the signed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignContext {
    /// The identity key over a device-list statement.
    DeviceListIdentity,
    /// A listed device over the same statement (its proof that it holds its signing key).
    DeviceListDevice,
    /// A sender device over a v2 sealed text: its binding and ciphertext (docs/TRUST.md §6.4).
    Sealed,
    /// A sender device over a v2 key envelope: channel, generation, target and wrap (§6.4).
    Envelope,
    /// A user's device over their directory profile (§6.4).
    Profile,
}

impl SignContext {
    fn prefix(self) -> &'static [u8] {
        match self {
            SignContext::DeviceListIdentity => b"dialtone-v2 device-list identity\0",
            SignContext::DeviceListDevice => b"dialtone-v2 device-list device\0",
            SignContext::Sealed => b"dialtone-v2 sealed\0",
            SignContext::Envelope => b"dialtone-v2 envelope\0",
            SignContext::Profile => b"dialtone-v2 profile\0",
        }
    }
}

fn signed_bytes(context: SignContext, message: &[u8]) -> Vec<u8> {
    let prefix = context.prefix();
    let mut out = Vec::with_capacity(prefix.len() + message.len());
    out.extend_from_slice(prefix);
    out.extend_from_slice(message);
    out
}

/// An Ed25519 private key (an identity key or a device signing key). Zeroized on drop.
#[derive(Clone)]
pub struct SigningKeyPair(SigningKey);

impl SigningKeyPair {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        super::fill_random(&mut seed);
        let key = SigningKey::from_bytes(&seed);
        seed.zeroize();
        SigningKeyPair(key)
    }

    /// From the 32-byte seed as stored (base64).
    pub fn from_b64(seed_b64: &str) -> Result<Self, CryptoError> {
        let mut raw = b64_decode(seed_b64)?;
        let seed: Result<[u8; 32], _> = raw.as_slice().try_into();
        raw.zeroize();
        let mut seed = seed.map_err(|_| CryptoError::InvalidKey("signing key is not 32 bytes"))?;
        let key = SigningKey::from_bytes(&seed);
        seed.zeroize();
        Ok(SigningKeyPair(key))
    }

    /// The 32-byte seed, base64 (for the key store only).
    pub fn seed_b64(&self) -> String {
        let mut seed = self.0.to_bytes();
        let out = b64_encode(&seed);
        seed.zeroize();
        out
    }

    /// The public key, base64 (32 bytes).
    pub fn public_b64(&self) -> String {
        b64_encode(self.0.verifying_key().as_bytes())
    }

    /// Sign `message` for `context`; base64 of the 64-byte signature.
    pub fn sign(&self, context: SignContext, message: &[u8]) -> String {
        let sig: Signature = self.0.sign(&signed_bytes(context, message));
        b64_encode(&sig.to_bytes())
    }
}

/// Check a base64 public key: 32 bytes that decode to a curve point.
pub fn parse_public(public_b64: &str) -> Result<VerifyingKey, CryptoError> {
    let raw = b64_decode(public_b64)?;
    let bytes: [u8; 32] = raw
        .as_slice()
        .try_into()
        .map_err(|_| CryptoError::InvalidKey("signing public key is not 32 bytes"))?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|_| CryptoError::InvalidKey("signing public key is not a curve point"))
}

/// Verify a base64 signature by `public_b64` over `message` for `context` (strict).
pub fn verify(
    public_b64: &str,
    context: SignContext,
    message: &[u8],
    signature_b64: &str,
) -> Result<(), CryptoError> {
    let key = parse_public(public_b64)?;
    let raw = b64_decode(signature_b64)?;
    let sig = Signature::from_slice(&raw)
        .map_err(|_| CryptoError::Signature("signature is not 64 bytes"))?;
    key.verify_strict(&signed_bytes(context, message), &sig)
        .map_err(|_| CryptoError::Signature("signature does not verify"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_under_its_context_only() {
        let k = SigningKeyPair::generate();
        let sig = k.sign(SignContext::DeviceListIdentity, b"statement");
        verify(
            &k.public_b64(),
            SignContext::DeviceListIdentity,
            b"statement",
            &sig,
        )
        .unwrap();
        assert!(
            verify(
                &k.public_b64(),
                SignContext::DeviceListDevice,
                b"statement",
                &sig
            )
            .is_err(),
            "a signature for one context must not pass for another"
        );
        assert!(
            verify(
                &k.public_b64(),
                SignContext::DeviceListIdentity,
                b"statemenT",
                &sig
            )
            .is_err()
        );
        let other = SigningKeyPair::generate();
        assert!(
            verify(
                &other.public_b64(),
                SignContext::DeviceListIdentity,
                b"statement",
                &sig
            )
            .is_err()
        );
    }

    #[test]
    fn the_seed_round_trips_and_bad_input_is_refused() {
        let k = SigningKeyPair::generate();
        let again = SigningKeyPair::from_b64(&k.seed_b64()).unwrap();
        assert_eq!(k.public_b64(), again.public_b64());
        assert!(SigningKeyPair::from_b64("AAAA").is_err());
        assert!(parse_public("AAAA").is_err());
        assert!(
            verify(
                &k.public_b64(),
                SignContext::DeviceListIdentity,
                b"x",
                "AAAA"
            )
            .is_err()
        );
    }

    /// RFC 8032 §7.1 test 1 (empty message), through dalek directly: the crate is the reference,
    /// this only pins that the context prefix is the sole difference from plain Ed25519.
    #[test]
    fn rfc8032_vector_one() {
        let seed: [u8; 32] =
            hex_bytes("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let key = SigningKey::from_bytes(&seed);
        assert_eq!(
            key.verifying_key().as_bytes().to_vec(),
            hex_bytes::<32>("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
                .to_vec()
        );
        let sig = key.sign(b"");
        assert_eq!(
            sig.to_bytes().to_vec(),
            hex_bytes::<64>(
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
            )
            .to_vec()
        );
    }

    fn hex_bytes<const N: usize>(s: &str) -> [u8; N] {
        let mut out = [0u8; N];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }
}
