//! Row types. Encrypted columns hold their stored (`enc:v1:`) form here: decryption happens in the
//! service layer, through the database actor's field cipher.

use diesel::prelude::*;

use super::schema::*;
use super::types::{Json, Time};

#[derive(Clone, Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = users)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct UserRow {
    pub id: String,
    pub username_hash: String,
    pub password_hash: Option<String>,
    pub is_admin: bool,
    pub is_trusted: bool,
    pub created_at: Time,
    pub username: Option<String>,
    pub disabled_at: Option<Time>,
}

impl std::fmt::Debug for UserRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password hash is offline-crackable; the username (encrypted or not) is personal data.
        f.debug_struct("UserRow")
            .field("id", &self.id)
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "<redacted>"),
            )
            .field("is_admin", &self.is_admin)
            .field("is_trusted", &self.is_trusted)
            .field("created_at", &self.created_at)
            .field("disabled_at", &self.disabled_at)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = devices)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct DeviceRow {
    pub id: String,
    pub user_id: String,
    pub public_key: String,
    pub created_at: Time,
    pub last_seen_at: Option<Time>,
    pub public_key_hash: Option<String>,
}

/// One version of a user's signed device list (trust v2); `statement` is field-encrypted.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = device_lists)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct DeviceListRow {
    pub id: String,
    pub user_id: String,
    pub version: i64,
    pub statement: String,
    pub identity_signature: String,
    pub hash: String,
    pub created_at: Time,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = sessions)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct SessionRow {
    pub id: String,
    pub token_hash: String,
    pub user_id: String,
    pub device_id: String,
    pub created_at: Time,
    pub expires_at: Time,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = server_invites)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct InviteRow {
    pub id: String,
    pub created_at: Time,
    pub expires_at: Time,
    pub consumed_at: Option<Time>,
    pub consumed_by: Option<String>,
    pub token_hash: Option<String>,
    pub max_uses: i32,
    pub uses: i32,
    pub revoked_at: Option<Time>,
    pub created_by: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = channels)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct ChannelRow {
    pub id: String,
    pub name_enc: String,
    pub created_by: Option<String>,
    pub created_at: Time,
    pub kind: String,
    pub key_generation: i64,
    pub rotation_required: bool,
    pub direct_pair: Option<String>,
}

impl ChannelRow {
    /// Members only (private or direct), as opposed to a v1 public channel.
    pub fn is_private(&self) -> bool {
        self.kind != channel_kind::PUBLIC
    }
}

/// `channels.kind`.
pub mod channel_kind {
    pub const PUBLIC: &str = "public";
    pub const PRIVATE: &str = "private";
    pub const DIRECT: &str = "direct";
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = channel_members)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct MemberRow {
    pub channel_id: String,
    pub user_id: String,
    pub role: String,
    pub joined_generation: i64,
    pub joined_at: Time,
    pub removed_at: Option<Time>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = channel_generation_envelopes)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct GenerationEnvelopeRow {
    pub channel_id: String,
    pub generation: i64,
    pub device_id: String,
    pub sender_device_id: String,
    pub sender_public_key: String,
    pub envelope: String,
    pub created_at: Time,
}

/// Also the cluster bus's form of a committed message (`actors::hub::cluster`).
#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize, serde::Deserialize)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = channel_messages)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct MessageRow {
    pub id: String,
    pub channel_id: String,
    pub sender_id: String,
    pub sender_name_enc: String,
    pub body: String,
    pub sent_at: Time,
    pub client_message_id: Option<String>,
    /// Position in the channel; assigned inside the group commit (0 until then).
    pub seq: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = channel_key_envelopes)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct ChannelEnvelopeRow {
    pub channel_id: String,
    pub device_id: String,
    pub sender_device_id: String,
    pub sender_public_key: String,
    pub envelope: String,
    pub created_at: Time,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = directory_key_envelopes)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct DirectoryEnvelopeRow {
    pub device_id: String,
    pub sender_device_id: String,
    pub sender_public_key: String,
    pub envelope: String,
    pub created_at: Time,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = user_profiles)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct ProfileRow {
    pub user_id: String,
    pub name_enc: String,
    pub updated_at: Time,
    /// Trust v2: the device that signed the profile, and its signature (both or neither).
    pub signer_device_id: Option<String>,
    pub signature: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(table_name = broadcast_messages)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct BroadcastRow {
    pub id: String,
    pub sender_id: String,
    pub sender_public_key: String,
    pub sender_name_enc: String,
    pub body: String,
    pub key_envelopes: Json,
    pub sent_at: Time,
}

#[cfg(test)]
mod tests {
    use super::{Time, UserRow};

    #[test]
    fn user_row_debug_hides_hash_and_name() {
        let row = UserRow {
            id: "u1".into(),
            username_hash: "h".into(),
            password_hash: Some("$argon2id$v=19$secret-hash".into()),
            is_admin: false,
            is_trusted: false,
            created_at: Time(chrono::Utc::now()),
            username: Some("alice-name".into()),
            disabled_at: None,
        };
        let out = format!("{row:?}");
        assert!(
            !out.contains("secret-hash") && !out.contains("alice-name"),
            "{out}"
        );
        assert!(out.contains("<redacted>"), "{out}");
    }
}
