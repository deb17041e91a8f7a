//! Sealing for private and direct channels (trust v2, docs/TRUST.md §6.4): texts sealed under
//! one key generation, bound by AES-GCM associated data to where they belong, and signed by the
//! sender's device.
//!
//! A sealed value is
//!
//! ```text
//! v2.<generation>.<base64(nonce ‖ ciphertext ‖ tag)>.<signer user id>.<signer device id>.<base64(signature)>
//! ```
//!
//! Its AAD is
//!
//! ```text
//! dialtone/v2/<kind>\n<channel id>\n<generation>\n<signer user id>\n<signer device id>
//! ```
//!
//! with `kind` one of `body`, `sender_name`, `channel_name`, and the signature is the signer
//! device's Ed25519 key over `"dialtone-v2 sealed\0" ‖ AAD ‖ "\n" ‖ payload` (the base64 payload
//! as it travels). So the server cannot move a message to another channel, replay it under
//! another generation, pass a body off as a name, or attribute it to another sender: each of
//! those fails authentication, like tampering. And a member, who holds the generation key and so
//! could seal anything, still cannot sign as another member's device.

use crate::crypto::e2e;
use crate::crypto::sign::{self, SignContext, SigningKeyPair};
use crate::protocol::members::{V2_BODY_PREFIX, body_generation};

/// What a sealed value is, bound into its AAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Body,
    SenderName,
    ChannelName,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Body => "body",
            Kind::SenderName => "sender_name",
            Kind::ChannelName => "channel_name",
        }
    }
}

/// Where a value belongs: the part of its AAD the reader knows from context.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    pub kind: Kind,
    pub channel_id: &'a str,
    pub generation: i64,
}

/// Who seals: this device's user, id and signing key.
#[derive(Clone, Copy)]
pub struct Signer<'a> {
    pub user_id: &'a str,
    pub device_id: &'a str,
    pub key: &'a SigningKeyPair,
}

/// Ids travel inside the value and its AAD, separated by `.` and `\n`: only the characters of
/// the server's UUIDs may appear, so no two bindings share a byte string.
pub fn is_plain_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn aad(b: &Binding<'_>, user_id: &str, device_id: &str) -> String {
    format!(
        "dialtone/v2/{}\n{}\n{}\n{}\n{}",
        b.kind.label(),
        b.channel_id,
        b.generation,
        user_id,
        device_id
    )
}

fn signed_bytes(aad: &str, payload: &str) -> Vec<u8> {
    format!("{aad}\n{payload}").into_bytes()
}

/// Whether a stored value is v2-sealed (else it is a v1 value, opened with the channel key).
pub fn is_bound(sealed: &str) -> bool {
    sealed.starts_with(V2_BODY_PREFIX)
}

/// The generation a v2 value names.
pub fn generation(sealed: &str) -> Option<i64> {
    body_generation(sealed)
}

/// Seal `text` under generation `binding.generation`'s key, signed by `signer`.
pub fn seal(key: &[u8; 32], binding: &Binding<'_>, signer: &Signer<'_>, text: &str) -> String {
    let aad = aad(binding, signer.user_id, signer.device_id);
    let payload = e2e::seal_bound(key, text.as_bytes(), aad.as_bytes());
    let signature = signer
        .key
        .sign(SignContext::Sealed, &signed_bytes(&aad, &payload));
    format!(
        "{V2_BODY_PREFIX}{}.{payload}.{}.{}.{signature}",
        binding.generation, signer.user_id, signer.device_id
    )
}

/// Why a v2 value did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundError {
    #[error("not a signed v2 sealed value")]
    Malformed,
    #[error("sealed under generation {found}, not {expected}")]
    WrongGeneration { found: i64, expected: i64 },
    #[error(
        "authentication failed: wrong key, tampered, or moved from another channel, sender or field"
    )]
    Rejected,
    #[error("the signature does not verify: forged or tampered, refused")]
    BadSignature,
}

/// A v2 value taken apart: what it claims, before anything is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<'s> {
    pub generation: i64,
    payload: &'s str,
    pub signer_user: &'s str,
    pub signer_device: &'s str,
    signature: &'s str,
}

/// Split a v2 value into its parts (no key needed).
pub fn parse(sealed: &str) -> Result<Parsed<'_>, BoundError> {
    let generation = generation(sealed).ok_or(BoundError::Malformed)?;
    let rest = sealed
        .strip_prefix(V2_BODY_PREFIX)
        .and_then(|r| r.split_once('.'))
        .map(|(_, r)| r)
        .ok_or(BoundError::Malformed)?;
    let parts: Vec<&str> = rest.split('.').collect();
    let [payload, signer_user, signer_device, signature] = parts[..] else {
        return Err(BoundError::Malformed);
    };
    if payload.is_empty()
        || signature.is_empty()
        || !is_plain_id(signer_user)
        || !is_plain_id(signer_device)
    {
        return Err(BoundError::Malformed);
    }
    Ok(Parsed {
        generation,
        payload,
        signer_user,
        signer_device,
        signature,
    })
}

impl Parsed<'_> {
    /// Decrypt under the generation's key; the AAD is the binding plus the claimed signer, so a
    /// claim the sealer did not make fails here. The signature is checked by [`Parsed::verify`].
    pub fn open(&self, key: &[u8; 32], binding: &Binding<'_>) -> Result<String, BoundError> {
        if self.generation != binding.generation {
            return Err(BoundError::WrongGeneration {
                found: self.generation,
                expected: binding.generation,
            });
        }
        let aad = aad(binding, self.signer_user, self.signer_device);
        let bytes =
            e2e::open_bound(key, self.payload, aad.as_bytes()).map_err(|_| BoundError::Rejected)?;
        String::from_utf8(bytes).map_err(|_| BoundError::Rejected)
    }

    /// Check the signature with the signer device's Ed25519 public key (as its user's verified
    /// device list names it).
    pub fn verify(&self, binding: &Binding<'_>, signing_key: &str) -> Result<(), BoundError> {
        let aad = aad(binding, self.signer_user, self.signer_device);
        sign::verify(
            signing_key,
            SignContext::Sealed,
            &signed_bytes(&aad, self.payload),
            self.signature,
        )
        .map_err(|_| BoundError::BadSignature)
    }
}

/// The bytes a device signs for a v2 key envelope: the channel and generation it wraps, the
/// target device, the sender (user, device, X25519 key) and the wrap itself. An envelope moved to
/// another channel, generation or device, or claimed by another sender, no longer verifies.
pub fn envelope_bytes(
    channel_id: &str,
    generation: i64,
    target_device: &str,
    sender_device: &str,
    sender_public_key: &str,
    signer_user: &str,
    wrap: &str,
) -> Vec<u8> {
    format!(
        "{channel_id}\n{generation}\n{target_device}\n{signer_user}\n{sender_device}\n{sender_public_key}\n{wrap}"
    )
    .into_bytes()
}

/// A v2 envelope string: `v2.<signer user id>.<wrap>.<signature>`.
pub fn signed_envelope(signer: &Signer<'_>, wrap: &str, signed: &[u8]) -> String {
    let signature = signer.key.sign(SignContext::Envelope, signed);
    format!("{V2_BODY_PREFIX}{}.{wrap}.{signature}", signer.user_id)
}

/// `(signer user, wrap, signature)` of a v2 envelope string; `None` for a v1 (unsigned) one.
pub fn parse_envelope(envelope: &str) -> Option<(&str, &str, &str)> {
    let rest = envelope.strip_prefix(V2_BODY_PREFIX)?;
    let parts: Vec<&str> = rest.split('.').collect();
    let [user, wrap, signature] = parts[..] else {
        return None;
    };
    (is_plain_id(user) && !wrap.is_empty() && !signature.is_empty())
        .then_some((user, wrap, signature))
}

/// The bytes a device signs for its user's directory profile.
pub fn profile_bytes(user_id: &str, device_id: &str, name_enc: &str) -> Vec<u8> {
    format!("{user_id}\n{device_id}\n{name_enc}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(kind: Kind, channel: &str, generation: i64) -> Binding<'_> {
        Binding {
            kind,
            channel_id: channel,
            generation,
        }
    }

    #[test]
    fn a_value_opens_only_where_it_was_sealed_and_verifies_only_for_its_device() {
        let key = e2e::generate_key();
        let device_key = SigningKeyPair::generate();
        let alice = Signer {
            user_id: "alice",
            device_id: "d-alice",
            key: &device_key,
        };
        let here = bind(Kind::Body, "c1", 3);
        let sealed = seal(&key, &here, &alice, "hello");
        assert!(sealed.starts_with("v2.3."), "{sealed}");
        assert_eq!(generation(&sealed), Some(3));
        let p = parse(&sealed).unwrap();
        assert_eq!((p.signer_user, p.signer_device), ("alice", "d-alice"));
        assert_eq!(p.open(&key, &here).as_deref(), Ok("hello"));
        assert_eq!(p.verify(&here, &device_key.public_b64()), Ok(()));
        assert_eq!(
            p.verify(&here, &SigningKeyPair::generate().public_b64()),
            Err(BoundError::BadSignature)
        );
        for elsewhere in [bind(Kind::Body, "c2", 3), bind(Kind::SenderName, "c1", 3)] {
            assert_eq!(p.open(&key, &elsewhere), Err(BoundError::Rejected));
            assert_eq!(
                p.verify(&elsewhere, &device_key.public_b64()),
                Err(BoundError::BadSignature)
            );
        }
        assert_eq!(
            p.open(&key, &bind(Kind::Body, "c1", 4)),
            Err(BoundError::WrongGeneration {
                found: 3,
                expected: 4
            })
        );
        // A header rewritten to claim another generation, or another signer, no longer
        // authenticates.
        let relabeled = sealed.replacen("v2.3.", "v2.4.", 1);
        assert_eq!(
            parse(&relabeled)
                .unwrap()
                .open(&key, &bind(Kind::Body, "c1", 4)),
            Err(BoundError::Rejected)
        );
        let reattributed = sealed.replace(".alice.", ".mallory.");
        assert_eq!(
            parse(&reattributed).unwrap().open(&key, &here),
            Err(BoundError::Rejected)
        );
        assert_eq!(
            parse(&sealed).unwrap().open(&e2e::generate_key(), &here),
            Err(BoundError::Rejected)
        );
        assert_eq!(parse("v1-body"), Err(BoundError::Malformed));
        // The unsigned form (generation and payload only) is not a v2 value.
        let unsigned = sealed.splitn(4, '.').take(3).collect::<Vec<_>>().join(".");
        assert_eq!(parse(&unsigned), Err(BoundError::Malformed));
    }

    #[test]
    fn a_member_with_the_key_cannot_sign_as_another_device() {
        let key = e2e::generate_key();
        let bob_key = SigningKeyPair::generate();
        let mallory_key = SigningKeyPair::generate();
        let here = bind(Kind::Body, "c1", 1);
        // Mallory holds the generation key: she can seal a text that claims Bob's device, but
        // only with her own signing key.
        let forged = seal(
            &key,
            &here,
            &Signer {
                user_id: "bob",
                device_id: "d-bob",
                key: &mallory_key,
            },
            "I owe mallory 100",
        );
        let p = parse(&forged).unwrap();
        assert_eq!(p.open(&key, &here).as_deref(), Ok("I owe mallory 100"));
        assert_eq!(
            p.verify(&here, &bob_key.public_b64()),
            Err(BoundError::BadSignature)
        );
    }

    #[test]
    fn envelopes_parse_only_in_their_signed_form() {
        let k = SigningKeyPair::generate();
        let signer = Signer {
            user_id: "alice",
            device_id: "d-alice",
            key: &k,
        };
        let bytes = envelope_bytes("c1", 2, "d-bob", "d-alice", "pk", "alice", "d3JhcA==");
        let env = signed_envelope(&signer, "d3JhcA==", &bytes);
        let (user, wrap, sig) = parse_envelope(&env).unwrap();
        assert_eq!((user, wrap), ("alice", "d3JhcA=="));
        sign::verify(&k.public_b64(), SignContext::Envelope, &bytes, sig).unwrap();
        let moved = envelope_bytes("c2", 2, "d-bob", "d-alice", "pk", "alice", "d3JhcA==");
        assert!(sign::verify(&k.public_b64(), SignContext::Envelope, &moved, sig).is_err());
        assert_eq!(parse_envelope("d3JhcA=="), None);
        assert!(!is_plain_id("a.b") && !is_plain_id("a\nb") && !is_plain_id(""));
    }
}
