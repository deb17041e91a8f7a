//! Sealing for private and direct channels (trust v2, docs/TRUST.md §6.4): texts sealed under
//! one key generation, with AES-GCM associated data that binds what the server must not change.
//!
//! A sealed value is `v2.<generation>.<base64(nonce ‖ ciphertext ‖ tag)>`. Its AAD is
//!
//! ```text
//! dialtone/v2/<kind>\n<channel id>\n<generation>\n<sender user id, or empty>
//! ```
//!
//! with `kind` one of `body`, `sender_name`, `channel_name`. So the server cannot move a message
//! to another channel, replay it under another generation, pass a body off as a name, or
//! attribute it to another sender: each of those fails authentication, like tampering. (Sender
//! *device* signatures are the part of §6.4 still to come.)

use crate::crypto::e2e;
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

/// Where a value belongs: the binding its AAD carries.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    pub kind: Kind,
    pub channel_id: &'a str,
    pub generation: i64,
    /// The sender's user id (messages); `None` for a channel name.
    pub sender_id: Option<&'a str>,
}

impl Binding<'_> {
    fn aad(&self) -> Vec<u8> {
        format!(
            "dialtone/v2/{}\n{}\n{}\n{}",
            self.kind.label(),
            self.channel_id,
            self.generation,
            self.sender_id.unwrap_or_default()
        )
        .into_bytes()
    }
}

/// Whether a stored value is v2-sealed (else it is a v1 value, opened with the channel key).
pub fn is_bound(sealed: &str) -> bool {
    sealed.starts_with(V2_BODY_PREFIX)
}

/// The generation a v2 value names.
pub fn generation(sealed: &str) -> Option<i64> {
    body_generation(sealed)
}

/// Seal `text` under generation `binding.generation`'s key.
pub fn seal(key: &[u8; 32], binding: &Binding<'_>, text: &str) -> String {
    format!(
        "{V2_BODY_PREFIX}{}.{}",
        binding.generation,
        e2e::seal_bound(key, text.as_bytes(), &binding.aad())
    )
}

/// Why a v2 value did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundError {
    #[error("not a v2 sealed value")]
    Malformed,
    #[error("sealed under generation {found}, not {expected}")]
    WrongGeneration { found: i64, expected: i64 },
    #[error(
        "authentication failed: wrong key, tampered, or moved from another channel, sender or field"
    )]
    Rejected,
}

/// Open a v2 value whose binding (channel, sender, kind) the caller knows; its generation must be
/// `binding.generation`.
pub fn open(key: &[u8; 32], binding: &Binding<'_>, sealed: &str) -> Result<String, BoundError> {
    let found = generation(sealed).ok_or(BoundError::Malformed)?;
    if found != binding.generation {
        return Err(BoundError::WrongGeneration {
            found,
            expected: binding.generation,
        });
    }
    let payload = sealed.splitn(3, '.').nth(2).ok_or(BoundError::Malformed)?;
    let bytes = e2e::open_bound(key, payload, &binding.aad()).map_err(|_| BoundError::Rejected)?;
    String::from_utf8(bytes).map_err(|_| BoundError::Rejected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind<'a>(
        kind: Kind,
        channel: &'a str,
        generation: i64,
        sender: Option<&'a str>,
    ) -> Binding<'a> {
        Binding {
            kind,
            channel_id: channel,
            generation,
            sender_id: sender,
        }
    }

    #[test]
    fn a_value_opens_only_where_it_was_sealed() {
        let key = e2e::generate_key();
        let here = bind(Kind::Body, "c1", 3, Some("alice"));
        let sealed = seal(&key, &here, "hello");
        assert!(sealed.starts_with("v2.3."), "{sealed}");
        assert_eq!(generation(&sealed), Some(3));
        assert_eq!(open(&key, &here, &sealed).as_deref(), Ok("hello"));
        for elsewhere in [
            bind(Kind::Body, "c2", 3, Some("alice")),
            bind(Kind::Body, "c1", 3, Some("mallory")),
            bind(Kind::SenderName, "c1", 3, Some("alice")),
        ] {
            assert_eq!(open(&key, &elsewhere, &sealed), Err(BoundError::Rejected));
        }
        assert_eq!(
            open(&key, &bind(Kind::Body, "c1", 4, Some("alice")), &sealed),
            Err(BoundError::WrongGeneration {
                found: 3,
                expected: 4
            })
        );
        // A header rewritten to claim another generation no longer authenticates.
        let relabeled = sealed.replacen("v2.3.", "v2.4.", 1);
        assert_eq!(
            open(&key, &bind(Kind::Body, "c1", 4, Some("alice")), &relabeled),
            Err(BoundError::Rejected)
        );
        assert_eq!(
            open(&e2e::generate_key(), &here, &sealed),
            Err(BoundError::Rejected)
        );
        assert_eq!(open(&key, &here, "v1-body"), Err(BoundError::Malformed));
    }
}
