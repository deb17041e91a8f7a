//! REST request and response bodies (SPEC §4).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every error response: `{"error": "<human message>", "code": "<snake_case>"}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ErrorBody {
    pub error: String,
    pub code: String,
    /// Only on a refused envelope upload (409 `envelope_conflict` or `not_key_holder`): the
    /// target device ids the upload was refused for. Nothing of that upload was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_ids: Option<Vec<String>>,
    /// [v2] Only on a refused key rotation (409 `envelope_coverage`): active member devices the
    /// new generation has no envelope for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<Vec<String>>,
    /// [v2] Only on a refused key rotation (409 `envelope_coverage`): envelopes for devices that
    /// are not an active member's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Vec<String>>,
}

impl ErrorBody {
    pub fn new(error: impl Into<String>, code: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            code: code.into(),
            device_ids: None,
            missing: None,
            extra: None,
        }
    }
}

/// `{"status": "ok"}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct StatusOk {
    pub status: String,
}

impl StatusOk {
    pub fn ok() -> Self {
        Self {
            status: "ok".to_owned(),
        }
    }
}

// ---- registration and sessions ----

#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Trimmed and lowercased, then 2–32 characters with no whitespace or control character (the
    /// dialtone v1 rule); a new name also refuses invisible, formatting and bidi characters.
    #[schema(
        min_length = 2,
        max_length = 32,
        pattern = "^[^\\u0000-\\u0020\\u007f-\\u009f]*$"
    )]
    pub username: String,
    #[schema(
        min_length = 8,
        max_length = 1024,
        pattern = "^[A-Za-z0-9]*([A-Za-z][A-Za-z0-9]*[0-9]|[0-9][A-Za-z0-9]*[A-Za-z])[A-Za-z0-9]*$"
    )]
    pub password: String,
    #[schema(pattern = "^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$")]
    pub public_key: String,
    #[schema(min_length = 1)]
    pub invite_token: String,
}

#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Trimmed and lowercased, then 2–32 characters with no whitespace or control character (the
    /// dialtone v1 rule); a new name also refuses invisible, formatting and bidi characters.
    #[schema(
        min_length = 2,
        max_length = 32,
        pattern = "^[^\\u0000-\\u0020\\u007f-\\u009f]*$"
    )]
    pub username: String,
    #[schema(
        min_length = 8,
        max_length = 1024,
        pattern = "^[A-Za-z0-9]*([A-Za-z][A-Za-z0-9]*[0-9]|[0-9][A-Za-z0-9]*[A-Za-z])[A-Za-z0-9]*$"
    )]
    pub password: String,
    #[schema(pattern = "^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$")]
    pub public_key: String,
    /// Sent by dialtone v1 clients; accepted and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite_token: Option<String>,
}

/// Response of register (201) and login (200).
#[derive(Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct AuthResponse {
    pub token: String,
    pub user_id: String,
    pub device_id: String,
    pub expires_at: String,
    pub username: String,
    pub device_public_key: String,
    pub is_admin: bool,
    pub is_trusted: bool,
}

// ---- users, profiles ----

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    /// Trimmed and lowercased, then 2–32 characters with no whitespace or control character (the
    /// dialtone v1 rule); a new name also refuses invisible, formatting and bidi characters.
    #[schema(
        min_length = 2,
        max_length = 32,
        pattern = "^[^\\u0000-\\u0020\\u007f-\\u009f]*$"
    )]
    pub username: String,
}

/// A user as the admin sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub username: String,
    pub is_admin: bool,
    pub is_trusted: bool,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<String>,
    #[serde(default)]
    pub has_password: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileRequest {
    #[schema(min_length = 1, max_length = 4096, pattern = "^[^\\u0000]*$")]
    pub name_enc: String,
    /// [v2] The calling device's signature over the profile (docs/TRUST.md §6.4). A profile
    /// posted without one (a v1 client) is stored unsigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<ProfileSignature>,
}

/// [v2] A device's Ed25519 signature over `"dialtone-v2 profile\0" ‖ user_id ‖ "\n" ‖ device_id
/// ‖ "\n" ‖ name_enc`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProfileSignature {
    /// The signing device: on upload, the caller's own device.
    #[schema(format = Uuid)]
    pub device_id: String,
    /// Standard base64 of the 64-byte signature.
    #[schema(pattern = "^[A-Za-z0-9+/]{86}==$")]
    pub signature: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Profile {
    pub user_id: String,
    pub name_enc: String,
    pub updated_at: String,
    /// [v2] Present when the profile was posted signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<ProfileSignature>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ProfilesResponse {
    pub profiles: Vec<Profile>,
}

// ---- devices ----

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDeviceRequest {
    #[schema(format = Uuid)]
    pub user_id: String,
    #[schema(pattern = "^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$")]
    pub public_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Device {
    pub id: String,
    pub user_id: String,
    pub public_key: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct DevicesResponse {
    pub devices: Vec<Device>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct DeviceKey {
    /// Present in `?all=1` listings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    pub device_id: String,
    pub public_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct DeviceKeysResponse {
    /// The requested user, or `""` for `?all=1`.
    pub user_id: String,
    pub keys: Vec<DeviceKey>,
}

// ---- channels and history ----

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Channel {
    pub id: String,
    pub name_enc: String,
    pub created_by: String,
    pub created_at: String,
    /// [v2] `private` or `direct` (members only); absent for a v1 public channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// [v2] Private and direct channels: the current key generation (0 until the first is posted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_generation: Option<i64>,
    /// [v2] Private and direct channels: sends are refused until generation
    /// `key_generation + 1` is posted (a member or a member's device left).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_required: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ChannelsResponse {
    pub channels: Vec<Channel>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateChannelRequest {
    #[schema(min_length = 1, max_length = 4096, pattern = "^[^\\u0000]*$")]
    pub name_enc: String,
    /// [v2] A private channel: members only, the caller its first admin. Any user may create
    /// one; a public channel needs an admin.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub private: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateChannelRequest {
    #[schema(format = Uuid)]
    pub channel_id: String,
    #[schema(min_length = 1, max_length = 4096, pattern = "^[^\\u0000]*$")]
    pub name_enc: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ChannelResponse {
    pub channel: Channel,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ChannelMessage {
    pub id: String,
    pub channel_id: String,
    pub sender_id: String,
    pub sender_name_enc: String,
    pub body: String,
    pub sent_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_message_id: Option<String>,
    /// [ext] Position in the channel: 1, 2, 3, ... in commit order, with no gap.
    /// (Defaults to 0 when read from a server without seqs.)
    #[serde(default)]
    pub seq: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct MessagesResponse {
    pub channel_id: String,
    /// Ascending time order.
    pub messages: Vec<ChannelMessage>,
    /// [ext] More messages exist beyond this page in the paging direction.
    #[serde(default)]
    pub has_more: bool,
}

// ---- key envelopes ----

/// An envelope as uploaded. `channel_id` may be repeated inside each envelope by v1 clients.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeUpload {
    #[schema(format = Uuid)]
    pub device_id: String,
    #[schema(format = Uuid)]
    pub sender_device_id: String,
    #[schema(pattern = "^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$")]
    pub sender_public_key: String,
    #[schema(min_length = 1, max_length = 4096, pattern = "^[^\\u0000]*$")]
    pub envelope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub channel_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelKeysUpload {
    #[schema(format = Uuid)]
    pub channel_id: String,
    #[schema(min_items = 1)]
    pub envelopes: Vec<EnvelopeUpload>,
    /// [v2] Private channels: which key generation these envelopes wrap (default: the current
    /// one). Only active members' devices may receive one, and only generations from the one
    /// current when their user joined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub generation: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectoryKeysUpload {
    #[schema(min_items = 1)]
    pub envelopes: Vec<EnvelopeUpload>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ChannelKeyEnvelope {
    pub channel_id: String,
    pub device_id: String,
    pub sender_device_id: String,
    pub sender_public_key: String,
    pub envelope: String,
    pub created_at: String,
    /// [v2] Private channels: the key generation this envelope wraps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct DirectoryKeyEnvelope {
    pub device_id: String,
    pub sender_device_id: String,
    pub sender_public_key: String,
    pub envelope: String,
    pub created_at: String,
}

// ---- presence ----

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PresenceRequest {
    #[schema(max_items = 1000)]
    pub user_ids: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct PresenceResponse {
    pub statuses: BTreeMap<String, bool>,
    pub admins: BTreeMap<String, bool>,
}

// ---- invites ----

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInviteRequest {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole_number"
    )]
    #[schema(minimum = 1, maximum = 31536000)]
    pub expires_in_seconds: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole_number"
    )]
    #[schema(minimum = 1, maximum = 100000)]
    pub max_uses: Option<u32>,
}

#[derive(Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct InviteResponse {
    pub token: String,
    pub expires_at: String,
    /// [ext] Id for listing and revoking; not the token.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub max_uses: u32,
}

/// An optional count: JSON has one number type, so `3600.0` is the integer 3600 (as JSON Schema
/// says); a fraction, a negative or an out-of-range value is still an error.
fn whole_number<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::de::Error;
    let Some(n) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let whole = n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
            .map(|f| f as u64)
    });
    whole
        .and_then(|w| T::try_from(w).ok())
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("expected a non-negative whole number, got {n}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invite_counts_take_integral_floats_only() {
        let r: CreateInviteRequest =
            serde_json::from_str(r#"{"expires_in_seconds": 3365.0, "max_uses": 2}"#).unwrap();
        assert_eq!((r.expires_in_seconds, r.max_uses), (Some(3365), Some(2)));
        for bad in [
            r#"{"max_uses": 1.5}"#,
            r#"{"max_uses": -1}"#,
            r#"{"max_uses": 4294967296}"#,
            r#"{"max_uses": "1"}"#,
        ] {
            assert!(
                serde_json::from_str::<CreateInviteRequest>(bad).is_err(),
                "{bad}"
            );
        }
        let r: CreateInviteRequest = serde_json::from_str(r#"{"max_uses": null}"#).unwrap();
        assert_eq!(r.max_uses, None);
        let r: CreateInviteRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(r.max_uses, None);
    }
}
