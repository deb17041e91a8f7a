//! The E2E encoding of every field the server relays (SPEC §7), as pure functions over keys:
//! message bodies and sender names and channel names under the channel key, profile names under
//! the directory key, broadcasts under a fresh per-message key, and key envelopes per device.
//!
//! Nothing here talks to the network, so every rule (what is encrypted with which key, which
//! devices get an envelope, how a failure reads) is unit-tested here; [`super::chat`] only moves
//! the results over the wire.

use std::collections::BTreeMap;

use super::error::ChatError;
use crate::crypto::CryptoError;
use crate::crypto::e2e::{self, DeviceKeypair, SymmetricKey};
use crate::protocol::rest::{ChannelMessage, DeviceKey, EnvelopeUpload};
use crate::protocol::ws::{ClientFrame, Event};

/// A decrypted message (channel message or broadcast).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub id: String,
    /// `None` for a broadcast.
    pub channel_id: Option<String>,
    pub sender_id: String,
    /// The sender's display name: from their signed directory profile when it verifies
    /// (`name_verified`), else the name the message itself claims.
    pub sender_name: String,
    /// `sender_name` comes from the sender's profile, signed by a device on their verified
    /// device list, not from the message (which any key holder could write).
    pub name_verified: bool,
    pub text: String,
    /// RFC 3339, UTC.
    pub sent_at: String,
    pub client_message_id: Option<String>,
    /// Whether the sender's device signed the text (trust v2), or why that is not known.
    pub authenticity: Authenticity,
}

/// Who vouches for a message's text (docs/TRUST.md §6.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authenticity {
    /// A v2 text signed by `device_id`, a device on the sender's signed device list as this
    /// device verified it, and bound to this channel, generation and sender.
    Verified { device_id: String },
    /// Not signed, or the signer could not be checked: anyone who holds the channel key, or the
    /// server, may have written it or changed its sender. The reason says which.
    Unverified(String),
}

impl Authenticity {
    pub fn is_verified(&self) -> bool {
        matches!(self, Authenticity::Verified { .. })
    }
}

/// Why a v1 text is unverified.
pub const V1_UNVERIFIED: &str = "a v1 message: not signed, so anyone with the channel key, or the server, could have written it or changed its sender";

impl ChatMessage {
    /// A stored channel message with its decrypted sender name and text (the name as the
    /// message claims it, until [`super::Chat`] checks the sender's profile).
    pub fn of_stored(
        m: &ChannelMessage,
        sender_name: String,
        text: String,
        authenticity: Authenticity,
    ) -> Self {
        Self {
            id: m.id.clone(),
            channel_id: Some(m.channel_id.clone()),
            sender_id: m.sender_id.clone(),
            sender_name,
            name_verified: false,
            text,
            sent_at: m.sent_at.clone(),
            client_message_id: m.client_message_id.clone(),
            authenticity,
        }
    }
}

/// The two ciphertexts of a channel message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedMessage {
    pub body: String,
    pub sender_name_enc: String,
}

/// A device that was not given a key, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedDevice {
    pub device_id: String,
    pub user_id: Option<String>,
    pub reason: String,
}

impl std::fmt::Display for SkippedDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "device {}", self.device_id)?;
        if let Some(u) = &self.user_id {
            write!(f, " (user {u})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// The envelopes of one key for a set of devices.
#[derive(Debug, Default)]
pub struct Wrapped {
    /// `(device_id, envelope)`.
    pub envelopes: Vec<(String, String)>,
    /// Devices whose public key does not parse or is unusable (e.g. low order): skipped, never a
    /// reason to withhold the key from the others.
    pub skipped: Vec<SkippedDevice>,
}

impl Wrapped {
    /// As `POST /channels/keys` / `POST /directory/keys` entries from `me`.
    pub fn uploads(&self, me: &DeviceKeypair, my_device_id: &str) -> Vec<EnvelopeUpload> {
        self.envelopes
            .iter()
            .map(|(device_id, envelope)| EnvelopeUpload {
                device_id: device_id.clone(),
                sender_device_id: my_device_id.to_owned(),
                sender_public_key: me.public_key_b64(),
                envelope: envelope.clone(),
                channel_id: None,
            })
            .collect()
    }
}

/// Wrap `key` for every device in `devices` whose public key parses and gives a usable pairwise
/// key; the rest are reported in [`Wrapped::skipped`]. Duplicate device ids are wrapped once.
pub fn wrap_for_devices(me: &DeviceKeypair, key: &[u8; 32], devices: &[DeviceKey]) -> Wrapped {
    let mut out = Wrapped::default();
    let mut done = std::collections::BTreeSet::new();
    for d in devices {
        if !done.insert(d.device_id.as_str()) {
            continue;
        }
        let parsed =
            e2e::parse_public_key(&d.public_key).and_then(|_| me.wrap_for(&d.public_key, key));
        match parsed {
            Ok(envelope) => out.envelopes.push((d.device_id.clone(), envelope)),
            Err(e) => out.skipped.push(SkippedDevice {
                device_id: d.device_id.clone(),
                user_id: d.user_id.clone(),
                reason: e.to_string(),
            }),
        }
    }
    out
}

/// The reason of a decryption failure, without the generic prefix.
fn reason(e: &CryptoError) -> String {
    match e {
        CryptoError::Decrypt(r) | CryptoError::InvalidKey(r) => (*r).to_owned(),
        other => other.to_string(),
    }
}

fn decrypt_error(what: impl Into<String>, e: &CryptoError) -> ChatError {
    ChatError::Decrypt {
        what: what.into(),
        reason: reason(e),
    }
}

/// Encrypt a text field (channel name, profile name).
pub fn seal_text(key: &[u8; 32], text: &str) -> String {
    e2e::seal(key, text.as_bytes())
}

/// Decrypt a text field; `what` names it in the error ("channel c1's name").
pub fn open_text(key: &[u8; 32], sealed: &str, what: &str) -> Result<String, ChatError> {
    e2e::open_text(key, sealed).map_err(|e| decrypt_error(what, &e))
}

/// Encrypt a channel message: body and sender name, both under the channel key.
pub fn seal_message(channel_key: &[u8; 32], sender_name: &str, text: &str) -> SealedMessage {
    SealedMessage {
        body: e2e::seal(channel_key, text.as_bytes()),
        sender_name_enc: e2e::seal(channel_key, sender_name.as_bytes()),
    }
}

/// Decrypt a stored channel message. Tampering or the wrong key gives
/// `cannot decrypt message <id>: authentication failed …`, never garbage.
pub fn open_message(channel_key: &[u8; 32], m: &ChannelMessage) -> Result<ChatMessage, ChatError> {
    let text = e2e::open_text(channel_key, &m.body)
        .map_err(|e| decrypt_error(format!("message {}", m.id), &e))?;
    let sender_name = e2e::open_text(channel_key, &m.sender_name_enc)
        .map_err(|e| decrypt_error(format!("the sender name of message {}", m.id), &e))?;
    Ok(ChatMessage::of_stored(
        m,
        sender_name,
        text,
        Authenticity::Unverified(V1_UNVERIFIED.into()),
    ))
}

/// A `channel.message.new` event as the stored message it announces.
pub fn event_as_message(e: &Event) -> ChannelMessage {
    ChannelMessage {
        id: e.message_id.clone(),
        channel_id: e.channel_id.clone().unwrap_or_default(),
        sender_id: e.sender.clone(),
        sender_name_enc: e.sender_name_enc.clone().unwrap_or_default(),
        body: e.body.clone(),
        sent_at: e.sent_at.clone(),
        client_message_id: e.client_message_id.clone(),
        seq: e.seq.unwrap_or_default(),
    }
}

/// A `message.broadcast` frame: a fresh random key encrypts body and sender name and is wrapped
/// for every device in `devices` (`key_envelopes`); `public_key` is `me`'s.
pub fn seal_broadcast(
    me: &DeviceKeypair,
    sender_name: &str,
    text: &str,
    devices: &[DeviceKey],
) -> (ClientFrame, Wrapped) {
    let message_key: SymmetricKey = e2e::generate_key();
    let wrapped = wrap_for_devices(me, &message_key, devices);
    let envelopes: BTreeMap<String, String> = wrapped.envelopes.iter().cloned().collect();
    let frame = ClientFrame::broadcast(
        e2e::seal(&message_key, text.as_bytes()),
        e2e::seal(&message_key, sender_name.as_bytes()),
        me.public_key_b64(),
        envelopes,
    );
    (frame, wrapped)
}

/// Decrypt a received `message.broadcast`: unwrap this device's `key_envelope` with the sender's
/// public key, then open body and sender name.
pub fn open_broadcast(me: &DeviceKeypair, e: &Event) -> Result<ChatMessage, ChatError> {
    let what = || format!("broadcast {}", e.message_id);
    let envelope = e.key_envelope.as_deref().unwrap_or_default();
    if envelope.is_empty() {
        return Err(ChatError::Decrypt {
            what: what(),
            reason: "the sender wrapped no key for this device".into(),
        });
    }
    let sender_key = e.sender_public_key.as_deref().unwrap_or_default();
    let key = me
        .unwrap_from(sender_key, envelope)
        .map_err(|err| decrypt_error(what(), &err))?;
    let text = e2e::open_text(&key, &e.body).map_err(|err| decrypt_error(what(), &err))?;
    let sender_name = e2e::open_text(&key, e.sender_name_enc.as_deref().unwrap_or_default())
        .map_err(|err| {
            decrypt_error(
                format!("the sender name of broadcast {}", e.message_id),
                &err,
            )
        })?;
    Ok(ChatMessage {
        id: e.message_id.clone(),
        channel_id: None,
        sender_id: e.sender.clone(),
        sender_name,
        name_verified: false,
        text,
        sent_at: e.sent_at.clone(),
        client_message_id: None,
        authenticity: Authenticity::Unverified(
            "a broadcast: not signed, so the server could have changed its sender".into(),
        ),
    })
}

/// Unwrap a key envelope addressed to `me` by the device whose public key is `sender_public_key`.
pub fn unwrap_envelope(
    me: &DeviceKeypair,
    sender_public_key: &str,
    envelope: &str,
    what: &str,
) -> Result<SymmetricKey, ChatError> {
    me.unwrap_from(sender_public_key, envelope)
        .map_err(|e| decrypt_error(what, &e))
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    use super::*;

    fn device_key(id: &str, user: &str, kp: &DeviceKeypair) -> DeviceKey {
        DeviceKey {
            user_id: Some(user.into()),
            device_id: id.into(),
            public_key: kp.public_key_b64(),
        }
    }

    fn stored(id: &str, sealed: &SealedMessage) -> ChannelMessage {
        ChannelMessage {
            id: id.into(),
            channel_id: "c1".into(),
            sender_id: "u1".into(),
            sender_name_enc: sealed.sender_name_enc.clone(),
            body: sealed.body.clone(),
            sent_at: "2026-01-01T00:00:00.000000Z".into(),
            client_message_id: None,
            seq: 1,
        }
    }

    #[test]
    fn message_round_trip_and_nothing_in_the_clear() {
        let key = e2e::generate_key();
        let sealed = seal_message(&key, "alice", "meet at noon");
        assert!(!sealed.body.contains("noon") && !sealed.sender_name_enc.contains("alice"));
        let m = open_message(&key, &stored("m1", &sealed)).unwrap();
        assert_eq!(
            (m.sender_name.as_str(), m.text.as_str()),
            ("alice", "meet at noon")
        );
        assert_eq!(m.channel_id.as_deref(), Some("c1"));
    }

    #[test]
    fn tampered_body_or_wrong_key_is_a_clear_error() {
        let key = e2e::generate_key();
        let mut sealed = seal_message(&key, "alice", "meet at noon");
        let mut raw = STANDARD.decode(&sealed.body).unwrap();
        raw[13] ^= 0x80;
        sealed.body = STANDARD.encode(raw);
        let err = open_message(&key, &stored("m1", &sealed)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot decrypt message m1: authentication failed (wrong key or tampered)"
        );

        let sealed = seal_message(&key, "alice", "hi");
        let err = open_message(&e2e::generate_key(), &stored("m2", &sealed)).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot decrypt message m2: authentication failed")
        );
        let err = open_text(&key, "not base64!", "channel c1's name").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot decrypt channel c1's name:"),
            "{err}"
        );
    }

    #[test]
    fn junk_keys_are_skipped_and_reported_while_everyone_else_gets_the_key() {
        let me = DeviceKeypair::generate();
        let bob = DeviceKeypair::generate();
        let carol = DeviceKeypair::generate();
        let key = e2e::generate_key();
        let devices = vec![
            device_key("d-bob", "u-bob", &bob),
            DeviceKey {
                user_id: Some("u-junk".into()),
                device_id: "d-junk".into(),
                public_key: "not a key at all".into(),
            },
            DeviceKey {
                user_id: None,
                device_id: "d-short".into(),
                public_key: STANDARD.encode([1u8; 16]),
            },
            DeviceKey {
                user_id: None,
                device_id: "d-zero".into(),
                // Parses, but a low-order point: the pairwise key would be all zero.
                public_key: STANDARD.encode([0u8; 32]),
            },
            device_key("d-carol", "u-carol", &carol),
            device_key("d-bob", "u-bob", &bob),
        ];
        let wrapped = wrap_for_devices(&me, &key, &devices);
        let ids: Vec<&str> = wrapped.envelopes.iter().map(|(d, _)| d.as_str()).collect();
        assert_eq!(ids, ["d-bob", "d-carol"]);
        let skipped: Vec<&str> = wrapped
            .skipped
            .iter()
            .map(|s| s.device_id.as_str())
            .collect();
        assert_eq!(skipped, ["d-junk", "d-short", "d-zero"]);
        assert!(wrapped.skipped[0].to_string().contains("user u-junk"));
        assert!(
            wrapped.skipped[0].reason.contains("base64"),
            "{}",
            wrapped.skipped[0]
        );

        for (kp, (_, envelope)) in [&bob, &carol].into_iter().zip(&wrapped.envelopes) {
            let got = unwrap_envelope(kp, &me.public_key_b64(), envelope, "envelope").unwrap();
            assert_eq!(*got, *key);
        }
        let uploads = wrapped.uploads(&me, "d-me");
        assert!(uploads.iter().all(|u| u.sender_device_id == "d-me" && u.sender_public_key == me.public_key_b64()));
    }

    #[test]
    fn broadcast_each_device_opens_only_with_its_own_envelope() {
        let me = DeviceKeypair::generate();
        let bob = DeviceKeypair::generate();
        let eve = DeviceKeypair::generate();
        let devices = vec![
            device_key("d-me", "u-me", &me),
            device_key("d-bob", "u-bob", &bob),
        ];
        let (frame, wrapped) = seal_broadcast(&me, "alice", "all hands at 3", &devices);
        assert!(wrapped.skipped.is_empty());
        let envelopes = frame.key_envelopes.clone().unwrap();
        assert_eq!(envelopes.len(), 2);
        assert_eq!(
            frame.public_key.as_deref(),
            Some(me.public_key_b64().as_str())
        );

        let event_for = |device: &str| Event {
            kind: "message.broadcast".into(),
            message_id: "b1".into(),
            sender: "u-me".into(),
            body: frame.body.clone().unwrap(),
            sender_name_enc: frame.sender_name_enc.clone(),
            sender_public_key: frame.public_key.clone(),
            key_envelope: Some(envelopes.get(device).cloned().unwrap_or_default()),
            ..Event::default()
        };
        for (kp, device) in [(&me, "d-me"), (&bob, "d-bob")] {
            let m = open_broadcast(kp, &event_for(device)).unwrap();
            assert_eq!(
                (m.sender_name.as_str(), m.text.as_str()),
                ("alice", "all hands at 3")
            );
            assert_eq!(m.channel_id, None);
        }
        let err = open_broadcast(&eve, &event_for("d-eve")).unwrap_err();
        assert!(err.to_string().contains("no key for this device"), "{err}");
        // Someone else's envelope does not open for eve either.
        let err = open_broadcast(&eve, &event_for("d-bob")).unwrap_err();
        assert!(err.to_string().contains("authentication failed"), "{err}");
    }

    #[test]
    fn text_fields_round_trip() {
        let key = e2e::generate_key();
        let sealed = seal_text(&key, "general");
        assert_eq!(open_text(&key, &sealed, "name").unwrap(), "general");
    }
}
