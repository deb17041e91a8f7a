-- Trust v2 signed device lists (docs/TRUST.md §2): one row per version of a user's chain. The
-- statement is stored as the exact bytes its identity key signed (field-encrypted at rest, since
-- it names device keys); (user_id, version) is unique, so of two uploads of the same version
-- exactly one commits.
CREATE TABLE device_lists (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    version BIGINT NOT NULL,
    statement TEXT NOT NULL,
    identity_signature TEXT NOT NULL,
    hash TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX device_lists_user_version ON device_lists (user_id, version);
