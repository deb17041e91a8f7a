//! WebSocket frames (SPEC §5): one JSON object per text frame.
//!
//! Both directions are flat objects with a `type`, as in dialtone v1. Server events always carry
//! v1's five legacy fields (`message_id`, `sender`, `sender_name`, `body`, `sent_at`, empty when not
//! meaningful); everything else is present only when meaningful.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `type` values of client frames.
pub mod client_type {
    pub const CHANNEL_MESSAGE_SEND: &str = "channel.message.send";
    pub const MESSAGE_BROADCAST: &str = "message.broadcast";
    pub const MESSAGE_SEND: &str = "message.send";
    pub const SUBSCRIBE: &str = "subscribe";
    pub const UNSUBSCRIBE: &str = "unsubscribe";
    pub const SYNC: &str = "sync";
}

/// `type` values of server events.
pub mod event_type {
    pub const CHANNEL_MESSAGE_NEW: &str = "channel.message.new";
    pub const MESSAGE_BROADCAST: &str = "message.broadcast";
    pub const CHANNEL_UPDATED: &str = "channel.updated";
    pub const CHANNEL_DELETED: &str = "channel.deleted";
    pub const USER_PROFILE_UPDATED: &str = "user.profile.updated";
    pub const DEVICE_JOINED: &str = "device.joined";
    pub const PRESENCE_UPDATED: &str = "presence.updated";
    /// [v2] A user published a new signed device list: `{sender, version}`.
    pub const DEVICE_LIST_UPDATED: &str = "device_list.updated";
    /// [v2] A user joined a private channel (`channel_id`, `sender` the member, `role`).
    pub const MEMBER_ADDED: &str = "member.added";
    /// [v2] A user left or was removed from a private channel (`channel_id`, `sender`).
    pub const MEMBER_REMOVED: &str = "member.removed";
    /// [v2] A private channel's key moved to `key_generation`.
    pub const KEY_ROTATED: &str = "key.rotated";
    /// [ext] Ends the replay of a `sync` request.
    pub const SYNC_COMPLETE: &str = "sync.complete";
    pub const ERROR: &str = "error";
}

/// `code` values of `error` events.
pub mod error_code {
    pub const INVALID_MESSAGE: &str = "invalid_message";
    pub const CHANNELS_ONLY: &str = "channels_only";
    pub const UNSUPPORTED_TYPE: &str = "unsupported_type";
    pub const CHANNEL_NOT_FOUND: &str = "channel_not_found";
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const SERVER_ERROR: &str = "server_error";
    /// [v2] A member or a member's device left a private channel: a new key generation must be
    /// posted before the next message.
    pub const ROTATION_REQUIRED: &str = "rotation_required";
    /// [v2] The body is not sealed under the private channel's current key generation.
    pub const STALE_KEY_GENERATION: &str = "stale_key_generation";
}

/// Close codes the server uses.
pub mod close_code {
    /// Normal closure (logout, revoked session, expired session, disabled user).
    pub const NORMAL: u16 = 1000;
    /// Server shutting down. (A client silent past the idle timeout gets no close frame: it is not
    /// reading, so the server drops the connection without a handshake.)
    pub const GOING_AWAY: u16 = 1001;
    /// Policy violation: slow consumer (outbound queue overflow).
    pub const POLICY: u16 = 1008;
    /// Inbound frame larger than the limit.
    pub const TOO_BIG: u16 = 1009;
}

/// Subprotocol the server speaks; browsers offer it with `bearer.<token>`.
pub const SUBPROTOCOL: &str = "dialtone.v1";
/// Prefix of the subprotocol entry that carries the bearer token.
pub const BEARER_SUBPROTOCOL_PREFIX: &str = "bearer.";
/// Largest `body` of a channel message, in bytes.
pub const MAX_BODY_BYTES: usize = 16_384;

/// A client → server frame.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ClientFrame {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_name_enc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_message_id: Option<String>,
    /// `message.broadcast`: the sender device's public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    // Boxed to keep the frame small: it travels by value through the session's queues.
    /// `message.broadcast`: device id → envelope of the message key for that device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_envelopes: Option<Box<BTreeMap<String, String>>>,
    /// `sync`: replay messages after this message id (absent: the newest page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// [ext] `sync`: replay messages with a `seq` above this one, in seq order (not with `after`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_seq: Option<i64>,
}

impl ClientFrame {
    pub fn channel_message(
        channel_id: impl Into<String>,
        body: impl Into<String>,
        sender_name_enc: impl Into<String>,
        client_message_id: Option<String>,
    ) -> Self {
        Self {
            kind: client_type::CHANNEL_MESSAGE_SEND.to_owned(),
            channel_id: Some(channel_id.into()),
            body: Some(body.into()),
            sender_name_enc: Some(sender_name_enc.into()),
            client_message_id,
            ..Self::default()
        }
    }

    pub fn broadcast(
        body: impl Into<String>,
        sender_name_enc: impl Into<String>,
        public_key: impl Into<String>,
        key_envelopes: BTreeMap<String, String>,
    ) -> Self {
        Self {
            kind: client_type::MESSAGE_BROADCAST.to_owned(),
            body: Some(body.into()),
            sender_name_enc: Some(sender_name_enc.into()),
            public_key: Some(public_key.into()),
            key_envelopes: Some(Box::new(key_envelopes)),
            ..Self::default()
        }
    }

    pub fn subscribe(channel_id: impl Into<String>) -> Self {
        Self::with_channel(client_type::SUBSCRIBE, channel_id)
    }

    pub fn unsubscribe(channel_id: impl Into<String>) -> Self {
        Self::with_channel(client_type::UNSUBSCRIBE, channel_id)
    }

    pub fn sync(channel_id: impl Into<String>, after: Option<String>) -> Self {
        Self {
            after,
            ..Self::with_channel(client_type::SYNC, channel_id)
        }
    }

    /// `sync` from a sequence number: the messages after `after_seq`.
    pub fn sync_after_seq(channel_id: impl Into<String>, after_seq: i64) -> Self {
        Self {
            after_seq: Some(after_seq),
            ..Self::with_channel(client_type::SYNC, channel_id)
        }
    }

    /// What a frame that is JSON but not a valid `ClientFrame` (a field of the wrong type, say)
    /// still tells about the request it is, so its error names the send to fix: its `channel_id`
    /// and `client_message_id`, when they are strings. Anything else: no correlation.
    pub fn correlation(bytes: &[u8]) -> Self {
        let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(bytes) else {
            return Self::default();
        };
        let text = |name: &str| fields.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        Self {
            channel_id: text("channel_id"),
            client_message_id: text("client_message_id"),
            ..Self::default()
        }
    }

    fn with_channel(kind: &str, channel_id: impl Into<String>) -> Self {
        Self {
            kind: kind.to_owned(),
            channel_id: Some(channel_id.into()),
            ..Self::default()
        }
    }
}

/// A server → client event.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub message_id: String,
    #[serde(default)]
    pub sender: String,
    /// Always empty: display names travel encrypted in `sender_name_enc`.
    #[serde(default)]
    pub sender_name: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub sent_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_name_enc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_name_enc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_public_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_envelope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_more: Option<bool>,
    /// [ext] `error` events refused by a limit or a full queue: whole seconds (at least 1) before
    /// a retry can pass, as REST's `Retry-After`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// [ext] `channel.message.new`: the message's position in its channel (1, 2, 3, ... in
    /// commit order, no gap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    /// [v2] On `device_list.updated`: the list's new version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// [v2] On `member.added`: the member's role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// [v2] On `key.rotated`: the new current generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_generation: Option<i64>,
}

impl Event {
    fn of(kind: &str) -> Self {
        Self {
            kind: kind.to_owned(),
            ..Self::default()
        }
    }

    pub fn channel_message(
        message_id: String,
        channel_id: String,
        sender: String,
        sender_name_enc: String,
        body: String,
        sent_at: String,
        client_message_id: Option<String>,
    ) -> Self {
        Self {
            message_id,
            sender,
            body,
            sent_at,
            channel_id: Some(channel_id),
            sender_name_enc: Some(sender_name_enc),
            client_message_id,
            ..Self::of(event_type::CHANNEL_MESSAGE_NEW)
        }
    }

    /// Attach a message's `seq`.
    pub fn with_seq(mut self, seq: i64) -> Self {
        self.seq = Some(seq);
        self
    }

    pub fn channel_updated(channel_id: String, channel_name_enc: String) -> Self {
        Self {
            channel_id: Some(channel_id),
            channel_name_enc: Some(channel_name_enc),
            ..Self::of(event_type::CHANNEL_UPDATED)
        }
    }

    pub fn channel_deleted(channel_id: String) -> Self {
        Self {
            channel_id: Some(channel_id),
            ..Self::of(event_type::CHANNEL_DELETED)
        }
    }

    pub fn profile_updated(user_id: String) -> Self {
        Self {
            sender: user_id,
            ..Self::of(event_type::USER_PROFILE_UPDATED)
        }
    }

    pub fn device_joined(user_id: String, device_id: String) -> Self {
        Self {
            sender: user_id,
            device_id: Some(device_id),
            ..Self::of(event_type::DEVICE_JOINED)
        }
    }

    pub fn device_list_updated(user_id: String, version: u64) -> Self {
        Self {
            sender: user_id,
            version: Some(version),
            ..Self::of(event_type::DEVICE_LIST_UPDATED)
        }
    }

    pub fn member_added(channel_id: String, user_id: String, role: String) -> Self {
        Self {
            channel_id: Some(channel_id),
            sender: user_id,
            role: Some(role),
            ..Self::of(event_type::MEMBER_ADDED)
        }
    }

    pub fn member_removed(channel_id: String, user_id: String) -> Self {
        Self {
            channel_id: Some(channel_id),
            sender: user_id,
            ..Self::of(event_type::MEMBER_REMOVED)
        }
    }

    pub fn key_rotated(channel_id: String, generation: i64) -> Self {
        Self {
            channel_id: Some(channel_id),
            key_generation: Some(generation),
            ..Self::of(event_type::KEY_ROTATED)
        }
    }

    pub fn presence(user_id: String, online: bool) -> Self {
        Self {
            sender: user_id,
            online: Some(online),
            ..Self::of(event_type::PRESENCE_UPDATED)
        }
    }

    pub fn sync_complete(channel_id: String, has_more: bool) -> Self {
        Self {
            channel_id: Some(channel_id),
            has_more: Some(has_more),
            ..Self::of(event_type::SYNC_COMPLETE)
        }
    }

    pub fn error(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: Some(code.to_owned()),
            message: Some(message.into()),
            ..Self::of(event_type::ERROR)
        }
    }

    /// A `rate_limited` error: refused by a limit or a full queue, retry after `secs` (at least 1).
    pub fn rate_limited(message: impl Into<String>, retry_after_secs: u64) -> Self {
        Self {
            retry_after: Some(retry_after_secs.max(1)),
            ..Self::error(error_code::RATE_LIMITED, message)
        }
    }

    /// Attach the request's correlation fields to an error.
    pub fn for_request(
        mut self,
        channel_id: Option<String>,
        client_message_id: Option<String>,
    ) -> Self {
        self.channel_id = channel_id;
        self.client_message_id = client_message_id;
        self
    }

    pub fn is(&self, kind: &str) -> bool {
        self.kind == kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_always_carry_the_five_v1_fields() {
        let json = serde_json::to_value(Event::channel_deleted("c1".into())).unwrap();
        for f in ["message_id", "sender", "sender_name", "body", "sent_at"] {
            assert_eq!(json[f], "", "{f}");
        }
        assert_eq!(json["type"], "channel.deleted");
        assert_eq!(json["channel_id"], "c1");
        assert!(json.get("online").is_none());
    }

    #[test]
    fn client_frames_tolerate_extra_fields() {
        let f: ClientFrame = serde_json::from_str(
            r#"{"type":"channel.message.send","channel_id":"c","body":"b","sender_name_enc":"n","recipient_id":"x"}"#,
        )
        .unwrap();
        assert_eq!(f.kind, client_type::CHANNEL_MESSAGE_SEND);
        assert_eq!(f, ClientFrame::channel_message("c", "b", "n", None));
    }

    #[test]
    fn error_event_shape() {
        let json = serde_json::to_value(Event::error(error_code::CHANNELS_ONLY, "x")).unwrap();
        assert_eq!(json["type"], "error");
        assert_eq!(json["code"], "channels_only");
        assert_eq!(json["message"], "x");
        assert!(json.get("retry_after").is_none());
    }

    #[test]
    fn rate_limited_events_carry_a_retry_after_of_at_least_one_second() {
        let json = serde_json::to_value(Event::rate_limited("slow down", 7)).unwrap();
        assert_eq!(json["code"], "rate_limited");
        assert_eq!(json["retry_after"], 7);
        let json = serde_json::to_value(Event::rate_limited("slow down", 0)).unwrap();
        assert_eq!(json["retry_after"], 1);
    }
}
