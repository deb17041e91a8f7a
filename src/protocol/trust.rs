//! Trust v2 wire types (docs/TRUST.md): signed device lists.
//!
//! A device list travels as the exact bytes its identity key signed (base64 of a JSON
//! [`DeviceListStatement`]); the server stores and returns those bytes verbatim and never
//! re-serializes them, so every signature stays checkable by every client.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `kind` of every device-list statement.
pub const DEVICE_LIST_KIND: &str = "dialtone.device_list.v2";

/// What a user's identity key signs: the user's devices at one version of their list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DeviceListStatement {
    /// Always [`DEVICE_LIST_KIND`].
    pub kind: String,
    pub user_id: String,
    /// 1 for a user's first list; each later list is exactly one more.
    pub version: u64,
    /// Standard base64 of SHA-256 over the previous list's statement bytes; 32 zero bytes for
    /// version 1.
    pub prev_hash: String,
    /// The user's Ed25519 identity public key (standard base64, 32 bytes).
    pub identity_key: String,
    /// At least one device; each at most once.
    pub devices: Vec<ListedDevice>,
    /// RFC 3339, as the signer's clock saw it (informative).
    pub created_at: String,
    /// Set when this list starts under a new identity key (the user reset their identity): the
    /// chain continues, and every contact sees the change.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reset: bool,
}

/// One device in a list, with its own proof that it belongs to this identity.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ListedDevice {
    pub device_id: String,
    /// The device's X25519 key, as registered with `POST /devices`.
    pub public_key: String,
    /// The device's Ed25519 signing key (standard base64, 32 bytes).
    pub signing_key: String,
    /// The device's countersignature: its signing key over the binding of (user, identity key,
    /// device id, X25519 key, signing key) (docs/TRUST.md §2).
    pub binding_signature: String,
}

/// A signed list, as uploaded and as served.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SignedDeviceList {
    /// Standard base64 of the statement's exact JSON bytes.
    pub statement: String,
    /// The identity key's signature over those bytes.
    pub identity_signature: String,
}

/// `GET /devices/list`: a user's lists after `after_version`, ascending (the latest alone when
/// `after_version` is absent). Empty when the user has published none.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct DeviceListsResponse {
    pub user_id: String,
    /// The newest version the server holds (0: none).
    pub latest_version: u64,
    pub lists: Vec<SignedDeviceList>,
}

/// `POST /devices/list` answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct DeviceListAccepted {
    pub version: u64,
    /// Standard base64 SHA-256 of the statement bytes (the next list's `prev_hash`).
    pub hash: String,
}
