-- Additive changes over the v1 schema: encrypted and hashed columns, sessions, hashed invites with
-- use counts and revocation, and the indexes the queries need.

-- users: encrypted username (v1 kept only the hash; filled at the next login or registration).
ALTER TABLE users ADD COLUMN IF NOT EXISTS username TEXT;
ALTER TABLE users ADD COLUMN IF NOT EXISTS disabled_at TIMESTAMPTZ;

-- devices: keyed hash of the public key (legacy rows are filled when first read).
ALTER TABLE devices ADD COLUMN IF NOT EXISTS public_key_hash TEXT;
CREATE INDEX IF NOT EXISTS devices_user_id_key_hash ON devices (user_id, public_key_hash);

-- History pages and sync walk (channel_id, sent_at, id).
ALTER TABLE channel_messages ADD COLUMN IF NOT EXISTS client_message_id TEXT;
CREATE INDEX IF NOT EXISTS channel_messages_channel_time ON channel_messages (channel_id, sent_at, id);
CREATE INDEX IF NOT EXISTS channels_created_at ON channels (created_at);
CREATE INDEX IF NOT EXISTS user_profiles_updated_at ON user_profiles (updated_at);
CREATE INDEX IF NOT EXISTS broadcast_messages_sent_at ON broadcast_messages (sent_at);
CREATE INDEX IF NOT EXISTS channel_key_envelopes_device ON channel_key_envelopes (device_id);

-- Envelopes stay readable after their sending device is removed: the sender's public key is stored
-- beside each envelope, so the device row is not needed to unwrap it.
ALTER TABLE channel_key_envelopes DROP CONSTRAINT IF EXISTS channel_key_envelopes_sender_device_id_fkey;
ALTER TABLE directory_key_envelopes DROP CONSTRAINT IF EXISTS directory_key_envelopes_sender_device_id_fkey;

-- Invites: stored by token hash, with use counts and revocation.
ALTER TABLE server_invites ADD COLUMN IF NOT EXISTS token_hash TEXT;
ALTER TABLE server_invites ADD COLUMN IF NOT EXISTS max_uses INTEGER NOT NULL DEFAULT 1;
ALTER TABLE server_invites ADD COLUMN IF NOT EXISTS uses INTEGER NOT NULL DEFAULT 0;
ALTER TABLE server_invites ADD COLUMN IF NOT EXISTS revoked_at TIMESTAMPTZ;
ALTER TABLE server_invites ADD COLUMN IF NOT EXISTS created_by TEXT;
UPDATE server_invites SET uses = 1 WHERE consumed_at IS NOT NULL AND uses = 0;
-- v1 used the plaintext token as the row id: keep only its hash, give the row a fresh id.
UPDATE server_invites
   SET token_hash = encode(sha256(convert_to(id, 'UTF8')), 'hex'),
       id = gen_random_uuid()::text
 WHERE token_hash IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS server_invites_token_hash ON server_invites (token_hash);

-- Sessions survive restarts; only the token's hash is stored.
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_user_id ON sessions (user_id);
CREATE INDEX IF NOT EXISTS sessions_device_id ON sessions (device_id);
CREATE INDEX IF NOT EXISTS sessions_expires_at ON sessions (expires_at);
