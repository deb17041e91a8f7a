-- Private and direct channels are capped per creator (DIALTONE_MAX_CHANNELS_PER_USER): the
-- count runs on every creation.
CREATE INDEX IF NOT EXISTS channels_created_by ON channels (created_by, kind);
