-- Trust v2 private channels and direct messages (docs/TRUST.md §6).
--
-- `kind`: 'public' (v1: everyone reads), 'private' (members only) or 'direct' (a private channel
-- of exactly two members, found again by `direct_pair`). `key_generation` is the current key
-- generation (0: none yet); `rotation_required` is set when a member is removed or a member's
-- device revoked, and sends are refused until generation n+1 is posted.
ALTER TABLE channels ADD COLUMN kind TEXT NOT NULL DEFAULT 'public';
ALTER TABLE channels ADD COLUMN key_generation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE channels ADD COLUMN rotation_required BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE channels ADD COLUMN direct_pair TEXT;
CREATE UNIQUE INDEX channels_direct_pair ON channels (direct_pair) WHERE direct_pair IS NOT NULL;

-- Members of private and direct channels. A removed member keeps its row (removed_at set), so a
-- re-add is an update and the history says who was in when. `joined_generation`: the generation
-- current when the member (re)joined, the oldest one it may be given.
CREATE TABLE channel_members (
    channel_id TEXT NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    joined_generation BIGINT NOT NULL,
    joined_at TEXT NOT NULL,
    removed_at TEXT,
    PRIMARY KEY (channel_id, user_id)
);
CREATE INDEX channel_members_user ON channel_members (user_id);

-- The key envelopes of private channels, one per (channel, generation, device). Old generations
-- stay: whoever held them can still read what they sealed.
CREATE TABLE channel_generation_envelopes (
    channel_id TEXT NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    generation BIGINT NOT NULL,
    device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    sender_device_id TEXT NOT NULL,
    sender_public_key TEXT NOT NULL,
    envelope TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (channel_id, generation, device_id)
);
CREATE INDEX channel_generation_envelopes_device ON channel_generation_envelopes (device_id);
