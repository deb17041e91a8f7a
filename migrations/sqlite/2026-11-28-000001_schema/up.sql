-- The embedded store: the same logical schema as migrations/postgres, in SQLite types.
-- Timestamps are TEXT in a fixed-width RFC 3339 UTC form (text order = time order).
CREATE TABLE users (
    id TEXT PRIMARY KEY NOT NULL,
    username_hash TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    is_admin BOOLEAN NOT NULL DEFAULT FALSE,
    is_trusted BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TEXT NOT NULL,
    username TEXT,
    disabled_at TEXT
);

CREATE TABLE devices (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    public_key TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_seen_at TEXT,
    public_key_hash TEXT
);
CREATE INDEX devices_user_id_key_hash ON devices (user_id, public_key_hash);

CREATE TABLE broadcast_messages (
    id TEXT PRIMARY KEY NOT NULL,
    sender_id TEXT NOT NULL REFERENCES users(id),
    sender_public_key TEXT NOT NULL,
    sender_name_enc TEXT NOT NULL,
    body TEXT NOT NULL,
    key_envelopes TEXT NOT NULL,
    sent_at TEXT NOT NULL
);
CREATE INDEX broadcast_messages_sent_at ON broadcast_messages (sent_at);

CREATE TABLE channels (
    id TEXT PRIMARY KEY NOT NULL,
    name_enc TEXT NOT NULL,
    created_by TEXT REFERENCES users(id),
    created_at TEXT NOT NULL
);
CREATE INDEX channels_created_at ON channels (created_at);

CREATE TABLE channel_messages (
    id TEXT PRIMARY KEY NOT NULL,
    channel_id TEXT NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    sender_id TEXT NOT NULL REFERENCES users(id),
    sender_name_enc TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_at TEXT NOT NULL,
    client_message_id TEXT
);
CREATE INDEX channel_messages_channel_time ON channel_messages (channel_id, sent_at, id);

CREATE TABLE channel_key_envelopes (
    channel_id TEXT NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    sender_device_id TEXT NOT NULL,
    sender_public_key TEXT NOT NULL,
    envelope TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (channel_id, device_id)
);
CREATE INDEX channel_key_envelopes_device ON channel_key_envelopes (device_id);

CREATE TABLE user_profiles (
    user_id TEXT PRIMARY KEY NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name_enc TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX user_profiles_updated_at ON user_profiles (updated_at);

CREATE TABLE directory_key_envelopes (
    device_id TEXT PRIMARY KEY NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    sender_device_id TEXT NOT NULL,
    sender_public_key TEXT NOT NULL,
    envelope TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE server_invites (
    id TEXT PRIMARY KEY NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    consumed_at TEXT,
    consumed_by TEXT REFERENCES users(id),
    token_hash TEXT UNIQUE,
    max_uses INTEGER NOT NULL DEFAULT 1,
    uses INTEGER NOT NULL DEFAULT 0,
    revoked_at TEXT,
    created_by TEXT
);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_device_id ON sessions (device_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
