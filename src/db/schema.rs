//! The logical schema, shared by both backends (hand-maintained: timestamp and JSON columns use the
//! cross-backend types of [`super::types`], which `diesel print-schema` does not know).
//!
//! Tables and columns of dialtone v1 keep their names; additions are marked.

diesel::table! {
    use diesel::sql_types::*;
    use crate::db::types::TimestampUtc;

    users (id) {
        id -> Text,
        username_hash -> Text,
        password_hash -> Nullable<Text>,
        is_admin -> Bool,
        is_trusted -> Bool,
        created_at -> TimestampUtc,
        /// Added: `enc:v1:` ciphertext of the normalized username.
        username -> Nullable<Text>,
        /// Added: set while an admin has disabled the account.
        disabled_at -> Nullable<TimestampUtc>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::db::types::TimestampUtc;

    devices (id) {
        id -> Text,
        user_id -> Text,
        /// `enc:v1:` ciphertext (legacy rows: plaintext, encrypted on first read).
        public_key -> Text,
        created_at -> TimestampUtc,
        last_seen_at -> Nullable<TimestampUtc>,
        /// Added: keyed hash of the public key for lookups.
        public_key_hash -> Nullable<Text>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::db::types::{JsonDoc, TimestampUtc};

    broadcast_messages (id) {
        id -> Text,
        sender_id -> Text,
        /// `enc:v1:` at rest.
        sender_public_key -> Text,
        /// Client ciphertext, encrypted again at rest (`enc:v1:`).
        sender_name_enc -> Text,
        body -> Text,
        key_envelopes -> JsonDoc,
        sent_at -> TimestampUtc,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::db::types::TimestampUtc;

    channels (id) {
        id -> Text,
        name_enc -> Text,
        created_by -> Nullable<Text>,
        created_at -> TimestampUtc,
        /// Added: the highest `channel_messages.seq` handed out in this channel.
        last_seq -> BigInt,
        /// Added (trust v2): `public`, `private` or `direct`.
        kind -> Text,
        /// Added (trust v2): the current key generation of a private channel (0: none yet).
        key_generation -> BigInt,
        /// Added (trust v2): sends wait for generation n+1 (a member or device left).
        rotation_required -> Bool,
        /// Added (trust v2): `user_a:user_b` (sorted) of a direct channel.
        direct_pair -> Nullable<Text>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::db::types::TimestampUtc;

    channel_messages (id) {
        id -> Text,
        channel_id -> Text,
        sender_id -> Text,
        sender_name_enc -> Text,
        body -> Text,
        sent_at -> TimestampUtc,
        /// Added: the sender's correlation id, echoed in history and sync.
        client_message_id -> Nullable<Text>,
        /// Added: position in the channel, 1, 2, 3, ... in commit order with no gap.
        seq -> BigInt,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::db::types::TimestampUtc;

    channel_key_envelopes (channel_id, device_id) {
        channel_id -> Text,
        device_id -> Text,
        sender_device_id -> Text,
        sender_public_key -> Text,
        envelope -> Text,
        created_at -> TimestampUtc,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::db::types::TimestampUtc;

    user_profiles (user_id) {
        user_id -> Text,
        name_enc -> Text,
        updated_at -> TimestampUtc,
        signer_device_id -> Nullable<Text>,
        signature -> Nullable<Text>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::db::types::TimestampUtc;

    directory_key_envelopes (device_id) {
        device_id -> Text,
        sender_device_id -> Text,
        sender_public_key -> Text,
        envelope -> Text,
        created_at -> TimestampUtc,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::db::types::TimestampUtc;

    server_invites (id) {
        id -> Text,
        created_at -> TimestampUtc,
        expires_at -> TimestampUtc,
        consumed_at -> Nullable<TimestampUtc>,
        consumed_by -> Nullable<Text>,
        /// Added: hex SHA-256 of the token (v1 rows are converted by the migration).
        token_hash -> Nullable<Text>,
        max_uses -> Integer,
        uses -> Integer,
        revoked_at -> Nullable<TimestampUtc>,
        created_by -> Nullable<Text>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::db::types::TimestampUtc;

    /// Added: login sessions, stored by token hash so they survive restarts.
    sessions (id) {
        id -> Text,
        token_hash -> Text,
        user_id -> Text,
        device_id -> Text,
        created_at -> TimestampUtc,
        expires_at -> TimestampUtc,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::db::types::TimestampUtc;

    /// Added (trust v2): each version of a user's signed device list.
    device_lists (id) {
        id -> Text,
        user_id -> Text,
        version -> BigInt,
        /// Field-encrypted: the statement's base64, exactly as signed.
        statement -> Text,
        identity_signature -> Text,
        hash -> Text,
        created_at -> TimestampUtc,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::db::types::TimestampUtc;

    channel_members (channel_id, user_id) {
        channel_id -> Text,
        user_id -> Text,
        role -> Text,
        joined_generation -> BigInt,
        joined_at -> TimestampUtc,
        removed_at -> Nullable<TimestampUtc>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::db::types::TimestampUtc;

    channel_generation_envelopes (channel_id, generation, device_id) {
        channel_id -> Text,
        generation -> BigInt,
        device_id -> Text,
        sender_device_id -> Text,
        sender_public_key -> Text,
        envelope -> Text,
        created_at -> TimestampUtc,
    }
}

diesel::joinable!(devices -> users (user_id));
diesel::joinable!(device_lists -> users (user_id));
diesel::joinable!(channel_messages -> channels (channel_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(user_profiles -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    users,
    devices,
    device_lists,
    broadcast_messages,
    channels,
    channel_messages,
    channel_key_envelopes,
    channel_members,
    channel_generation_envelopes,
    user_profiles,
    directory_key_envelopes,
    server_invites,
    sessions,
);
