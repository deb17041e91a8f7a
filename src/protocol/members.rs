//! Trust v2 wire types for private channels, key generations and direct messages
//! (docs/TRUST.md §6).
//!
//! A private channel's messages are sealed under one key generation at a time. The generation is
//! visible to the server in the body's header (`v2.<generation>.<payload>`), so it can refuse a
//! message sealed under a generation a removed member still holds.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::rest::EnvelopeUpload;

/// Header of every v2 channel-message body: `v2.<generation>.<payload>`.
pub const V2_BODY_PREFIX: &str = "v2.";

/// The key generation a v2 body names, `None` for anything else (a v1 body, or a malformed
/// header).
pub fn body_generation(body: &str) -> Option<i64> {
    let rest = body.strip_prefix(V2_BODY_PREFIX)?;
    let (digits, payload) = rest.split_once('.')?;
    if digits.is_empty() || digits.len() > 18 || payload.is_empty() {
        return None;
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    digits.parse().ok().filter(|g| *g >= 1)
}

/// `role` of a member.
pub mod role {
    /// Adds and removes members, renames the channel.
    pub const ADMIN: &str = "admin";
    pub const MEMBER: &str = "member";
}

/// One member of a private or direct channel.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ChannelMember {
    pub user_id: String,
    /// `admin` or `member`.
    #[schema(pattern = "^(admin|member)$")]
    pub role: String,
    pub joined_at: String,
    /// The generation current when the user (re)joined: the oldest one they may be given.
    pub joined_generation: i64,
    /// Set once removed; a removed member gets nothing sent after this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_at: Option<String>,
}

/// `GET /channels/members`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct MembersResponse {
    pub channel_id: String,
    pub key_generation: i64,
    pub rotation_required: bool,
    /// Active and removed members, in join order.
    pub members: Vec<ChannelMember>,
    /// The devices of the active members: exactly who generation `key_generation + 1` must
    /// reach.
    pub device_ids: Vec<String>,
}

/// `POST /channels/members`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMemberRequest {
    #[schema(format = Uuid)]
    pub channel_id: String,
    #[schema(format = Uuid)]
    pub user_id: String,
    /// `admin` or `member` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^\\s*(admin|member)\\s*$")]
    pub role: Option<String>,
}

/// `POST /channels/rotate`: generation `generation` of a private channel's key, wrapped for every
/// active member device.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKeyRequest {
    #[schema(format = Uuid)]
    pub channel_id: String,
    /// Must be the current generation + 1: of two rotations from the same generation exactly one
    /// wins.
    #[schema(minimum = 1)]
    pub generation: i64,
    #[schema(min_items = 1)]
    pub envelopes: Vec<EnvelopeUpload>,
}

/// `POST /channels/rotate` accepted.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct KeyRotated {
    pub channel_id: String,
    pub generation: i64,
}

/// `POST /channels/direct`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenDirectRequest {
    /// The other user.
    #[schema(format = Uuid)]
    pub user_id: String,
    /// The channel's encrypted name, used only when the channel is created.
    #[schema(min_length = 1, max_length = 4096, pattern = "^[^\\u0000]*$")]
    pub name_enc: String,
}

#[cfg(test)]
mod tests {
    use super::body_generation;

    #[test]
    fn body_generation_reads_only_a_well_formed_header() {
        assert_eq!(body_generation("v2.1.abc"), Some(1));
        assert_eq!(body_generation("v2.42.x.y"), Some(42));
        for bad in [
            "",
            "abc",
            "v2.",
            "v2..x",
            "v2.0.x",
            "v2.01.x",
            "v2.-1.x",
            "v2.1.",
            "v2.1",
            "v2.a.x",
            "v3.1.x",
            "v2.9999999999999999999.x",
        ] {
            assert_eq!(body_generation(bad), None, "{bad:?}");
        }
    }
}
